//! The history of a run: every admin write the workload attempted, on
//! which object, through which node, during which phase, and how it ended.
//!
//! Each object (a route or a key, named uniquely) belongs to one writer
//! thread, which writes it one operation at a time and gives it up after
//! its first ambiguous outcome. So an object's history is a sequence of
//! definite outcomes, then at most one ambiguous write at the end: what
//! the final state may hold follows without guessing (see [`super::checker`]).

use std::sync::Mutex;
use std::time::Instant;

/// What kind of object an operation wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A route; its value is its one deployment's weight.
    Route,
    /// A virtual key; its value is 1 when enabled, 0 when disabled.
    Key,
}

/// One write to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create { value: u32 },
    Update { value: u32 },
    Delete,
}

impl Op {
    /// The object after this write took effect (`None`: absent).
    pub fn effect(self) -> Option<u32> {
        match self {
            Op::Create { value } | Op::Update { value } => Some(value),
            Op::Delete => None,
        }
    }
}

/// How a write ended, as its client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A success status: the write took effect.
    Acked,
    /// A definite refusal: a 4xx answer, or the connection was refused (the
    /// request never left). The write did not take effect.
    Failed(String),
    /// No answer, a cut connection, a time-out or a 5xx: the write may or
    /// may not have taken effect.
    Ambiguous(String),
}

/// One attempted write.
#[derive(Debug, Clone)]
pub struct Record {
    /// The object's unique name (route name, or key name).
    pub object: String,
    pub kind: Kind,
    pub op: Op,
    /// The node the request was sent to.
    pub node: u64,
    /// Index of the phase (nemesis) running when the write was invoked.
    pub phase: usize,
    pub invoked: Instant,
    pub completed: Instant,
    pub outcome: Outcome,
}

/// Every record of a run, appended by the writer threads.
#[derive(Debug, Default)]
pub struct History {
    records: Mutex<Vec<Record>>,
}

impl History {
    pub fn push(&self, record: Record) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    /// A copy of every record so far, in order of completion.
    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
