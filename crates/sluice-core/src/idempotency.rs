//! Idempotency keys: a write sent again under the same key is applied once,
//! and every sending of it answers what the first application produced.
//!
//! A client that got no answer (a timeout, a dropped connection, a leader
//! killed mid-write) cannot tell whether its write was applied. With a key it
//! does not need to: it sends the same request again, to any node, with the
//! same key. The admin API wraps each write of a keyed request in
//! [`Command::Idempotent`]; `State::apply` keeps a [`Replay`] of every keyed
//! write it applied, and answers a later proposal of the same key and step
//! with that record ([`crate::Applied::Replayed`]) instead of applying it
//! again. Since the decision is made where commands are applied, in log
//! order, it holds however the copies raced: two copies in the log, one copy
//! lost with a dead leader, a copy proposed while the first is still in
//! flight.
//!
//! # The window
//! A record is kept for [`WINDOW_MS`] (24 h) of leader-stamped time after its
//! write applied, and at most [`MAX_RECORDS`] (10 000) are kept: past that the
//! oldest goes first. A key sent again after that is a new write. Refused
//! writes leave no record (nothing was applied, so sending one again runs it
//! again). The records are part of the state, so they are replicated, taken
//! into snapshots and found again after a restart; time is only ever the
//! commands' own, so every node forgets the same records at the same entry.
//!
//! # One key, one request
//! Each record holds the SHA-256 of the request it came from (method, path
//! and body, computed by the admin API). The same key with another request is
//! refused ([`crate::ApplyError::IdempotencyKeyReused`]) rather than answered
//! with a result that belongs to something else.

use crate::persistent;
use crate::secret::SealedSecret;
use crate::{Applied, ApplyError, Command};
use imbl::OrdMap;
use serde::{Deserialize, Deserializer, Serialize};

/// How long a record is kept after its write applied (24 h).
pub const WINDOW_MS: u64 = 24 * 60 * 60 * 1000;
/// The most records kept; the oldest is dropped first.
pub const MAX_RECORDS: usize = 10_000;
/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// A write of a keyed request, as proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotent {
    /// The client's key (`Idempotency-Key`): 1-255 printable ASCII characters.
    pub key: String,
    /// Which write of the request this is: a request may propose several,
    /// always in the same order (0, 1, …), and each is recorded on its own.
    pub step: u32,
    /// SHA-256 of the request (method, path, body) the write belongs to.
    pub fingerprint: [u8; 32],
    /// What the proposer needs back on a replay that the state must never
    /// hold in clear: the secret of a created key or admin token, sealed
    /// under the data key. Kept with the record, dropped with it.
    pub sealed_reply: Option<SealedSecret>,
    pub command: Command,
}

impl Idempotent {
    /// Checks the key and that the wrapped command is a plain one.
    pub fn validate(&self) -> Result<(), ApplyError> {
        check_key(&self.key)?;
        if matches!(self.command, Command::Idempotent(_) | Command::Audited(_)) {
            return Err(ApplyError::invalid(
                "command",
                "an idempotent write cannot wrap another one",
            ));
        }
        Ok(())
    }
}

/// Checks an idempotency key's form: 1-[`MAX_KEY_LEN`] printable ASCII
/// characters (space included).
pub fn check_key(key: &str) -> Result<(), ApplyError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ApplyError::invalid(
            "idempotency_key",
            format!("must be 1-{MAX_KEY_LEN} characters"),
        ));
    }
    if !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(ApplyError::invalid(
            "idempotency_key",
            "must be printable ASCII",
        ));
    }
    Ok(())
}

/// What a keyed write produced when it was first applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    /// When it applied (the leader's stamp).
    pub at_ms: u64,
    pub fingerprint: [u8; 32],
    /// The result the first application answered.
    pub applied: Applied,
    pub sealed_reply: Option<SealedSecret>,
}

/// Which record: the key and the step.
type RecordId = (String, u32);

/// The records of applied keyed writes, within the window.
///
/// `by_age` is derived from `records` (rebuilt when decoded, never stored):
/// it orders them by time so expiry looks only at the oldest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Replays {
    #[serde(with = "persistent::ord_map")]
    records: OrdMap<RecordId, Replay>,
    #[serde(skip)]
    by_age: OrdMap<(u64, RecordId), ()>,
}

impl<'de> Deserialize<'de> for Replays {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Stored {
            #[serde(with = "persistent::ord_map")]
            records: OrdMap<RecordId, Replay>,
        }
        let Stored { records } = Stored::deserialize(d)?;
        let by_age = records
            .iter()
            .map(|(id, r)| ((r.at_ms, id.clone()), ()))
            .collect();
        Ok(Replays { records, by_age })
    }
}

impl Replays {
    /// The record of `key`'s write number `step`, if one was applied less
    /// than [`WINDOW_MS`] before `now_ms`.
    pub fn find(&self, key: &str, step: u32, now_ms: u64) -> Option<&Replay> {
        // Borrowing a tuple key needs an owned probe; keys are short.
        self.records
            .get(&(key.to_string(), step))
            .filter(|r| !expired(r.at_ms, now_ms))
    }

    /// Records what `write` produced when it applied at `at_ms`.
    pub fn record(&mut self, write: &Idempotent, applied: Applied, at_ms: u64) {
        let id = (write.key.clone(), write.step);
        let replay = Replay {
            at_ms,
            fingerprint: write.fingerprint,
            applied,
            sealed_reply: write.sealed_reply.clone(),
        };
        if let Some(old) = self.records.insert(id.clone(), replay) {
            self.by_age.remove(&(old.at_ms, id.clone()));
        }
        self.by_age.insert((at_ms, id), ());
    }

    /// Forgets the records past the window as of `now_ms`, then the oldest
    /// ones beyond [`MAX_RECORDS`].
    pub fn expire(&mut self, now_ms: u64) {
        while let Some(((at_ms, id), ())) = self.by_age.get_min().cloned() {
            if !expired(at_ms, now_ms) && self.records.len() <= MAX_RECORDS {
                break;
            }
            self.by_age.remove(&(at_ms, id.clone()));
            self.records.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

fn expired(at_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(at_ms) >= WINDOW_MS
}

#[cfg(test)]
mod tests;
