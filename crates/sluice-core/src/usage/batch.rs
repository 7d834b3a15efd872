//! [`UsageBatch`]: one node's roll-ups since its previous flush, as one
//! replicated command, and how a batch that was retried is counted once.

use super::rollup::{Rollup, MINUTE_MS};
use crate::ApplyError;
use serde::{Deserialize, Serialize};

/// Most roll-ups in one batch (a node with more splits them over several
/// batches).
pub const MAX_ROLLUPS: usize = 4_096;
/// Longest key id, route or provider name a roll-up may carry.
const MAX_NAME_BYTES: usize = 256;

/// One node's flush.
///
/// `(node, boot, seq)` make a batch's identity. A node numbers its batches
/// `seq` = 1, 2, … from each start of its process, `boot` being a random
/// number it draws at that start, and sends them one after another: it
/// proposes batch `n + 1` only after batch `n` committed or was given up.
/// So within one `boot` a batch whose `seq` is not above the last applied
/// one is a retry of a proposal that had committed after all (a timeout
/// that was not a failure), and applying it again would count it twice.
/// The random `boot` (rather than a counter kept on disk, or the clock)
/// means a restarted node never has its fresh batches mistaken for old
/// ones, whatever its clock or disk did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageBatch {
    pub node: u64,
    pub boot: u64,
    pub seq: u64,
    pub rollups: Vec<Rollup>,
}

impl UsageBatch {
    /// Checks what does not depend on the state.
    pub fn validate(&self) -> Result<(), ApplyError> {
        if self.rollups.len() > MAX_ROLLUPS {
            return Err(ApplyError::invalid(
                "rollups",
                format!("at most {MAX_ROLLUPS}"),
            ));
        }
        for (i, r) in self.rollups.iter().enumerate() {
            if r.key.minute_ms % MINUTE_MS != 0 {
                return Err(ApplyError::invalid(
                    format!("rollups[{i}].minute_ms"),
                    "must be the start of a minute",
                ));
            }
            for (field, value) in [
                ("key_id", &r.key.key_id),
                ("route", &r.key.route),
                ("provider", &r.key.provider),
            ] {
                if value.len() > MAX_NAME_BYTES {
                    return Err(ApplyError::invalid(
                        format!("rollups[{i}].{field}"),
                        format!("at most {MAX_NAME_BYTES} bytes"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The last batch applied from one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LastBatch {
    pub(super) boot: u64,
    pub(super) seq: u64,
}

impl LastBatch {
    /// Whether `batch` (from the same node) was applied already.
    pub(super) fn covers(&self, batch: &UsageBatch) -> bool {
        self.boot == batch.boot && batch.seq <= self.seq
    }
}
