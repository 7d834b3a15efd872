//! The node's Raft figures as Prometheus metrics, read at scrape time.
//!
//! Gauges come from openraft's `RaftMetrics` (term, leader, log, applied
//! and snapshot positions, replication), the log store (the committed index
//! it persisted) and the state machine (when the latest snapshot was
//! stored); the peer round trips are a histogram the network side observes
//! on every call, and the election attempts a counter the failure detector
//! keeps. Nothing here is written on the Raft path itself.

use super::{index_of, now_ms, Inner};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, IntGauge, IntGaugeVec, Opts};
use std::sync::Arc;

/// The `prometheus` collector of one node's Raft metrics.
pub struct RaftCollector {
    inner: Arc<Inner>,
    term: IntGauge,
    leader_id: IntGauge,
    is_leader: IntGauge,
    last_log_index: IntGauge,
    commit_index: IntGauge,
    applied_index: IntGauge,
    log_entries: IntGauge,
    store_size: IntGauge,
    snapshot_index: IntGauge,
    snapshot_age: Gauge,
    replication_lag: IntGaugeVec,
    stalled: prometheus::Counter,
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid metric")
}

impl RaftCollector {
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        Self {
            inner,
            term: gauge("sluice_raft_term", "The Raft term this node is in."),
            leader_id: gauge(
                "sluice_raft_leader_id",
                "The node id of the leader this node knows of (0: none known).",
            ),
            is_leader: gauge("sluice_raft_is_leader", "1 if this node is the leader."),
            last_log_index: gauge(
                "sluice_raft_last_log_index",
                "Index of the last entry in this node's log.",
            ),
            commit_index: gauge(
                "sluice_raft_commit_index",
                "The committed index this node last persisted.",
            ),
            applied_index: gauge(
                "sluice_raft_applied_index",
                "Index of the last entry this node applied to its state.",
            ),
            log_entries: gauge(
                "sluice_raft_log_entries",
                "Entries in this node's log (after the last purge).",
            ),
            store_size: gauge(
                "sluice_raft_store_size_bytes",
                "Size on disk of this node's store (log, vote, snapshot).",
            ),
            snapshot_index: gauge(
                "sluice_raft_snapshot_index",
                "Last log index the latest snapshot covers (0: no snapshot).",
            ),
            snapshot_age: Gauge::new(
                "sluice_raft_snapshot_age_seconds",
                "Time since this node stored its latest snapshot (built or installed); absent while unknown.",
            )
            .expect("valid metric"),
            stalled: prometheus::Counter::new(
                "sluice_raft_stalled_seconds_total",
                "Time this node did not run its failure detector on time (an overloaded host, a \
                 paused process): not counted as silence of the leader.",
            )
            .expect("valid metric"),
            replication_lag: IntGaugeVec::new(
                Opts::new(
                    "sluice_raft_replication_lag_entries",
                    "On the leader: entries each follower is behind the leader's log.",
                ),
                &["peer"],
            )
            .expect("valid metric"),
        }
    }

    fn gauges(&self) -> [&IntGauge; 9] {
        [
            &self.term,
            &self.leader_id,
            &self.is_leader,
            &self.last_log_index,
            &self.commit_index,
            &self.applied_index,
            &self.log_entries,
            &self.store_size,
            &self.snapshot_index,
        ]
    }

    /// Sets every gauge from the node's figures now.
    fn update(&self) {
        let inner = &self.inner;
        let m = inner.metrics();
        let index = |l: Option<openraft::LogId<u64>>| l.map_or(0, |l| l.index) as i64;
        self.term.set(m.current_term as i64);
        self.leader_id.set(m.current_leader.unwrap_or(0) as i64);
        self.is_leader
            .set(i64::from(m.current_leader == Some(inner.id)));
        let last = m.last_log_index;
        self.last_log_index.set(last.unwrap_or(0) as i64);
        self.commit_index
            .set(index_of(&inner.committed_hint).unwrap_or(0) as i64);
        self.applied_index.set(index(m.last_applied));
        // Entries `purged + 1 ..= last` (`purged` inclusive, none if unset).
        let entries = match (last, m.purged) {
            (Some(last), Some(purged)) => last.saturating_sub(purged.index),
            (Some(last), None) => last + 1,
            (None, _) => 0,
        };
        self.log_entries.set(entries as i64);
        // A few stat calls; the scrape runs off the async workers.
        if let Ok(size) = inner.db.size_on_disk() {
            self.store_size.set(size as i64);
        }
        self.snapshot_index.set(index(m.snapshot));
        if let Some(at) = inner.published.snapshot_at_ms() {
            self.snapshot_age
                .set(now_ms().saturating_sub(at) as f64 / 1000.0);
        }
        let stalled = inner.elections.stalled().as_secs_f64();
        let counted = self.stalled.get();
        if stalled > counted {
            self.stalled.inc_by(stalled - counted);
        }
        self.replication_lag.reset();
        if let (Some(replication), Some(last)) = (&m.replication, last) {
            for (peer, matched) in replication {
                if *peer == inner.id {
                    continue;
                }
                let behind = last.saturating_sub(matched.map_or(0, |l| l.index));
                self.replication_lag
                    .with_label_values(&[&peer.to_string()])
                    .set(behind as i64);
            }
        }
    }
}

impl Collector for RaftCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs: Vec<&Desc> = self.gauges().iter().flat_map(|g| g.desc()).collect();
        descs.extend(self.snapshot_age.desc());
        descs.extend(self.replication_lag.desc());
        descs.extend(self.stalled.desc());
        descs.extend(self.inner.peers.rtt().desc());
        descs.extend(self.inner.elections.attempts().desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.update();
        let mut families: Vec<MetricFamily> =
            self.gauges().iter().flat_map(|g| g.collect()).collect();
        if self.inner.published.snapshot_at_ms().is_some() {
            families.extend(self.snapshot_age.collect());
        }
        families.extend(self.replication_lag.collect());
        families.extend(self.stalled.collect());
        families.extend(self.inner.peers.rtt().collect());
        families.extend(self.inner.elections.attempts().collect());
        families
    }
}
