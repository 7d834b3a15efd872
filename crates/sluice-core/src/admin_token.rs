//! Admin tokens: bearer credentials for the admin API, stored hashed.
//!
//! The bootstrap token's hash comes from each node's configuration (written by
//! `sluice init`); further tokens live in the replicated state, so they can be
//! added and retired without touching any node.

use crate::{name::check_ident, secret::hash_secret, ApplyError};
use serde::{Deserialize, Serialize};

/// Every admin token starts with this.
pub const TOKEN_PREFIX: &str = "sluice-admin-";
/// Bytes of randomness in a token.
pub const TOKEN_RANDOM_LEN: usize = 24;

/// What an admin token may do. The bootstrap token is [`Role::Admin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Everything.
    Admin,
    /// The cluster and its membership, snapshots (export and restore), and
    /// reading everything.
    Operator,
    /// Virtual keys (create, change, revoke, enable, disable, delete) and
    /// their quotas, and reading keys, routes and usage.
    Keys,
    /// Reading, never a secret: no snapshot export.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Keys, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Keys => "keys",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A replicated admin token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminToken {
    /// `tok_` + 16 hex digits of the hash.
    pub id: String,
    pub name: String,
    pub hash: [u8; 32],
    pub prefix: String,
    pub role: Role,
    pub created_at_ms: u64,
}

impl AdminToken {
    pub fn new(name: String, secret: &str, role: Role, created_at_ms: u64) -> Self {
        let hash = hash_secret(secret);
        AdminToken {
            id: token_id(&hash),
            name,
            hash,
            prefix: secret.chars().take(TOKEN_PREFIX.len() + 6).collect(),
            role,
            created_at_ms,
        }
    }

    pub fn validate(&self) -> Result<(), ApplyError> {
        check_ident("name", &self.name)?;
        if self.id != token_id(&self.hash) {
            return Err(ApplyError::invalid("id", "does not match the token's hash"));
        }
        Ok(())
    }
}

/// The id of the token whose secret hashes to `hash`.
pub fn token_id(hash: &[u8; 32]) -> String {
    format!("tok_{}", hex::encode(&hash[..8]))
}

/// Formats a new admin token from random bytes the caller drew.
pub fn format_token(random: &[u8; TOKEN_RANDOM_LEN]) -> String {
    format!("{TOKEN_PREFIX}{}", hex::encode(random))
}
