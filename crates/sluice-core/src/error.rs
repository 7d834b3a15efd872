//! Why [`crate::State::apply`] refused a command.

use serde::{Deserialize, Serialize};

/// A refused command. The state is unchanged whenever this is returned.
///
/// It travels back through the Raft log's response to whichever node proposed
/// the command, so it is plain data (serde) and carries what an operator needs:
/// the field at fault, or the thing that was missing or in the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    /// A field of the command is invalid; `field` is its path (`deployments[1].weight`).
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// The command names something that does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound { kind: String, name: String },
    /// The command clashes with what exists (a duplicate name, a reference that
    /// would dangle).
    #[error("conflict: {message}")]
    Conflict { message: String },
    /// An idempotency key that an applied write of another request used
    /// (see [`crate::idempotency`]).
    #[error(
        "idempotency key {key:?} was already used for a different request; \
         a new request needs a new key"
    )]
    IdempotencyKeyReused { key: String },
}

impl ApplyError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApplyError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(kind: &str, name: impl Into<String>) -> Self {
        ApplyError::NotFound {
            kind: kind.to_string(),
            name: name.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApplyError::Conflict {
            message: message.into(),
        }
    }
}
