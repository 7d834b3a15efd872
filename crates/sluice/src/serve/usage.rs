//! The node's usage flushes: every `[usage] flush_interval_ms` what the
//! proxy's meter gathered becomes `RecordUsage` batches proposed through
//! the Raft leader, and the leader compacts roll-ups past the retention and
//! merges minutes past `minute_retention_hours` into hours.
//!
//! A batch that cannot be committed (no leader, a timeout) is kept and sent
//! again, unchanged and with the same number, before anything newer: the
//! state machine recognises a retry of a batch that had committed after all
//! and counts it once. What is kept is bounded by [`MAX_PENDING_ROLLUPS`];
//! past it the oldest batches are dropped (and logged), so a node cut off
//! from its cluster for long loses its oldest unsent usage rather than its
//! memory.

use sluice_core::usage::{hour_of, minute_of, Rollup, UsageBatch, MAX_ROLLUPS};
use sluice_core::Command;
use sluice_proxy::usage::UsageMeter;
use sluice_raft::{ClusterError, ClusterNode};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most roll-ups kept for the next try while flushes fail (about 100 bytes
/// each). A busy node adds one per minute × key × route × provider in use.
pub const MAX_PENDING_ROLLUPS: usize = 100_000;
/// How long one proposal may take before the flush gives up for this round.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Batches made but not yet committed, oldest first.
#[derive(Debug)]
pub(crate) struct PendingBatches {
    node: u64,
    /// Drawn at each start of the process: a restarted node's batches are
    /// never taken for retries of its previous life's.
    boot: u64,
    next_seq: u64,
    batches: VecDeque<UsageBatch>,
    rollups: usize,
    max_rollups: usize,
}

impl PendingBatches {
    pub(crate) fn new(node: u64, boot: u64, max_rollups: usize) -> Self {
        Self {
            node,
            boot,
            next_seq: 1,
            batches: VecDeque::new(),
            rollups: 0,
            max_rollups,
        }
    }

    /// Queues `rollups` as new batches (at most [`MAX_ROLLUPS`] each).
    /// Returns what had to be dropped to stay within the bound: (batches,
    /// requests they counted).
    pub(crate) fn push(&mut self, rollups: Vec<Rollup>) -> (usize, u64) {
        let mut rollups = rollups.into_iter().peekable();
        while rollups.peek().is_some() {
            let chunk: Vec<Rollup> = rollups.by_ref().take(MAX_ROLLUPS).collect();
            self.rollups += chunk.len();
            self.batches.push_back(UsageBatch {
                node: self.node,
                boot: self.boot,
                seq: self.next_seq,
                rollups: chunk,
            });
            self.next_seq += 1;
        }
        let (mut batches, mut requests) = (0, 0);
        while self.rollups > self.max_rollups {
            let Some(dropped) = self.batches.pop_front() else {
                break;
            };
            self.rollups -= dropped.rollups.len();
            batches += 1;
            requests += dropped
                .rollups
                .iter()
                .map(|r| r.totals.requests)
                .sum::<u64>();
        }
        (batches, requests)
    }

    /// The oldest batch not yet committed.
    pub(crate) fn front(&self) -> Option<&UsageBatch> {
        self.batches.front()
    }

    /// The oldest batch is committed (or given up).
    pub(crate) fn pop(&mut self) {
        if let Some(done) = self.batches.pop_front() {
            self.rollups -= done.rollups.len();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

/// Flushes the meter through the Raft log, and compacts on the leader.
pub(crate) struct UsageFlusher {
    meter: Arc<UsageMeter>,
    node: Arc<ClusterNode>,
    pending: PendingBatches,
    retention_ms: u64,
    minute_retention_ms: u64,
    audit_retention_ms: u64,
}

impl UsageFlusher {
    pub(crate) fn new(
        meter: Arc<UsageMeter>,
        node: Arc<ClusterNode>,
        retention_ms: u64,
        minute_retention_ms: u64,
        audit_retention_ms: u64,
    ) -> Self {
        let pending = PendingBatches::new(node.node_id(), rand::random(), MAX_PENDING_ROLLUPS);
        Self {
            meter,
            node,
            pending,
            retention_ms,
            minute_retention_ms,
            audit_retention_ms,
        }
    }

    /// Flushes every `interval` until `stop`, then hands itself back for the
    /// last flush (after requests have drained).
    pub(crate) async fn run(mut self, interval: Duration, stop: CancellationToken) -> Self {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.cancelled() => return self,
            }
            self.flush().await;
            self.compact_if_due().await;
        }
    }

    /// Sends what the meter gathered and what earlier flushes could not.
    /// Returns whether everything is committed.
    pub(crate) async fn flush(&mut self) -> bool {
        let (dropped, requests) = self.pending.push(self.meter.drain());
        if dropped > 0 {
            tracing::warn!(
                batches = dropped,
                requests,
                bound = MAX_PENDING_ROLLUPS,
                "usage not replicated for too long: dropped the oldest unsent roll-ups"
            );
        }
        while let Some(batch) = self.pending.front() {
            let seq = batch.seq;
            let command = Command::RecordUsage(batch.clone());
            match tokio::time::timeout(WRITE_TIMEOUT, self.node.write(command)).await {
                Ok(Ok(_)) => self.pending.pop(),
                Ok(Err(ClusterError::Rejected(e))) => {
                    // Cannot succeed on a retry: a bug, not an outage.
                    tracing::error!(seq, error = %e, "usage batch refused; dropped");
                    self.pending.pop();
                }
                Ok(Err(e)) => {
                    tracing::debug!(seq, error = %e, "usage flush failed; kept for the next one");
                    return false;
                }
                Err(_) => {
                    tracing::debug!(seq, "usage flush timed out; kept for the next one");
                    return false;
                }
            }
        }
        true
    }

    /// On the leader: drops roll-ups older than the retention and merges
    /// minutes older than the minute retention into hours, and drops audit
    /// entries older than theirs, when there is any such (no log entry
    /// otherwise: the cutoffs move by the minute and the hour, so at most
    /// about one an hour each).
    async fn compact_if_due(&self) {
        let now = now_ms();
        let (before_ms, hourly_before_ms) =
            compaction_cutoffs(now, self.retention_ms, self.minute_retention_ms);
        let audit_before_ms = hour_of(now.saturating_sub(self.audit_retention_ms));
        let state = self.node.local_state();
        let usage_due = state.usage().compaction_due(before_ms, hourly_before_ms);
        let audit_due = state
            .audit()
            .oldest_at_ms()
            .is_some_and(|oldest| oldest < audit_before_ms);
        drop(state);
        if !usage_due && !audit_due {
            return;
        }
        let status = self.node.status().await;
        if status.leader_id != Some(status.node_id) {
            return;
        }
        let mut commands = Vec::with_capacity(2);
        if usage_due {
            commands.push(Command::CompactUsage {
                before_ms,
                hourly_before_ms,
            });
        }
        if audit_due {
            commands.push(Command::CompactAudit {
                before_ms: audit_before_ms,
            });
        }
        for command in commands {
            let kind = command.kind();
            match tokio::time::timeout(WRITE_TIMEOUT, self.node.write(command)).await {
                Ok(Ok(applied)) => tracing::info!(?applied, command = kind, "compacted"),
                Ok(Err(e)) => tracing::warn!(error = %e, command = kind, "compaction failed"),
                Err(_) => tracing::warn!(command = kind, "compaction timed out"),
            }
        }
    }

    /// Roll-ups not yet committed remain (for the shutdown log).
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// At `now_ms`: the first minute kept with `retention_ms`, and the first
/// hour whose minutes are kept as minutes with `minute_retention_ms`.
fn compaction_cutoffs(now_ms: u64, retention_ms: u64, minute_retention_ms: u64) -> (u64, u64) {
    (
        minute_of(now_ms.saturating_sub(retention_ms)),
        hour_of(now_ms.saturating_sub(minute_retention_ms)),
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::usage::{RollupKey, Totals, MINUTE_MS};

    fn rollups(n: usize) -> Vec<Rollup> {
        (0..n)
            .map(|i| Rollup {
                key: RollupKey {
                    minute_ms: 0,
                    key_id: format!("k{i}"),
                    route: "gpt".into(),
                    provider: "p".into(),
                },
                totals: Totals {
                    requests: 2,
                    ..Totals::default()
                },
            })
            .collect()
    }

    #[test]
    fn batches_are_numbered_split_and_sent_oldest_first() {
        let mut p = PendingBatches::new(3, 77, 100_000);
        assert_eq!(p.push(rollups(MAX_ROLLUPS + 1)), (0, 0));
        assert_eq!(p.push(Vec::new()), (0, 0));
        let first = p.front().unwrap();
        assert_eq!((first.node, first.boot, first.seq), (3, 77, 1));
        assert_eq!(first.rollups.len(), MAX_ROLLUPS);
        p.pop();
        assert_eq!(p.front().unwrap().seq, 2);
        assert_eq!(p.front().unwrap().rollups.len(), 1);
        p.pop();
        assert!(p.is_empty());
        p.push(rollups(1));
        assert_eq!(p.front().unwrap().seq, 3);
    }

    #[test]
    fn past_the_bound_the_oldest_batches_go() {
        let mut p = PendingBatches::new(1, 1, 5);
        assert_eq!(p.push(rollups(3)), (0, 0));
        assert_eq!(p.push(rollups(2)), (0, 0));
        // A sixth roll-up: the first batch (3 roll-ups, 6 requests) goes.
        assert_eq!(p.push(rollups(1)), (1, 6));
        assert_eq!(p.front().unwrap().seq, 2);
        assert_eq!(p.rollups, 3);
    }

    #[test]
    fn the_cutoffs_keep_whole_minutes_and_hours_of_the_retentions() {
        let (day, hour) = (86_400_000, 3_600_000);
        let now = 40 * day + 90 * MINUTE_MS;
        assert_eq!(
            compaction_cutoffs(now, 35 * day, 48 * hour),
            (5 * day + 90 * MINUTE_MS, 38 * day + hour)
        );
        assert_eq!(compaction_cutoffs(1_000, 35 * day, 48 * hour), (0, 0));
    }
}
