//! [`RaftTiming`]: heartbeats, the leader lease and the election timeout,
//! and how they map onto openraft's own settings.
//!
//! openraft 0.9 runs elections on its own timer: one election timeout drawn
//! per process, checked on ticks of 1.5 heartbeat intervals, and only after
//! the leader lease has run out as well, so a dead leader used to be replaced
//! after 1.2–1.6 s. Sluice turns that timer off and runs its own failure
//! detector (`node/elections.rs`); openraft keeps the terms, the votes and
//! the leader lease check on every vote request. The settings here are what
//! the detector uses, and [`RaftTiming::openraft_config`] derives what
//! openraft still needs from them.

use std::time::Duration;

/// Election and replication timing.
#[derive(Debug, Clone)]
pub struct RaftTiming {
    /// How often the leader sends every follower a heartbeat.
    pub heartbeat_interval_ms: u64,
    /// A follower that has heard nothing from its leader for a random time
    /// between these two (drawn afresh for every attempt) asks the other
    /// voters whether they lost the leader too, and campaigns if a majority
    /// did.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Per-RPC timeout for peer calls (snapshots get longer).
    pub rpc_timeout_ms: u64,
    /// Build a snapshot (and compact the log) after this many applied entries.
    pub snapshot_every_logs: u64,
    /// Entries kept in the log behind the latest snapshot.
    pub logs_to_keep: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 400,
            rpc_timeout_ms: 2000,
            snapshot_every_logs: 5000,
            logs_to_keep: 1000,
        }
    }
}

impl RaftTiming {
    /// The leader lease: for this long after it last heard from its leader
    /// a voter refuses pre-votes and votes, so a node that merely missed a
    /// few heartbeats cannot unseat a leader the others still hear.
    ///
    /// One heartbeat shorter than the shortest election timeout: when a
    /// leader dies, the voter it reached last may have had one heartbeat
    /// more than the first follower to time out, and must still grant it.
    pub fn leader_lease_ms(&self) -> u64 {
        self.election_timeout_min_ms
            .saturating_sub(self.heartbeat_interval_ms)
            .max(1)
    }

    /// How often the failure detector's clock advances: a fifth of a
    /// heartbeat interval, between 5 and 50 ms. A gap of more than two
    /// steps is the node's own stall, not the leader's silence (see
    /// `node/elections/silence.rs`).
    pub(crate) fn detector_step(&self) -> Duration {
        Duration::from_millis((self.heartbeat_interval_ms / 5).clamp(5, 50))
    }

    /// How long one pre-vote round waits for answers.
    pub(crate) fn pre_vote_timeout(&self) -> Duration {
        Duration::from_millis(self.leader_lease_ms())
    }

    /// openraft's configuration: its election timer off (the detector
    /// decides when to campaign), its own heartbeats off (the node sends
    /// them on time, not on openraft's ticks of 1.5 intervals), and its
    /// three durations derived from the lease:
    ///
    /// * `election_timeout_max` is openraft's leader lease, the rule that
    ///   rejects a vote request while the voter still hears its leader;
    /// * `election_timeout_min` is the timeout of one vote request;
    /// * `heartbeat_interval` is the timeout of one AppendEntries call (a
    ///   follower answers once the entries are flushed) and of the leader's
    ///   quorum check for a linearizable read. openraft requires it below
    ///   `election_timeout_min`.
    ///
    /// The AppendEntries timeout is as long as that allows, nine tenths of
    /// the lease (225 ms with the defaults): it bounds the round trip
    /// between peers at which anything commits at all. A call that times
    /// out is sent again and nothing else waits on it (each follower has its
    /// own replication stream), and a follower hears the leader when the
    /// request arrives, not when it answers; so a longer timeout costs
    /// nothing on a fast network, while at half the lease (125 ms) no write
    /// committed between peers 120 ms apart.
    pub(crate) fn openraft_config(
        &self,
        cluster_name: &str,
    ) -> Result<openraft::Config, openraft::ConfigError> {
        let lease = self.leader_lease_ms().max(20);
        openraft::Config {
            cluster_name: cluster_name.to_string(),
            heartbeat_interval: lease * 9 / 10,
            election_timeout_min: lease * 19 / 20,
            election_timeout_max: lease,
            enable_elect: false,
            enable_heartbeat: false,
            install_snapshot_timeout: self.rpc_timeout_ms.max(1000) * 5,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every_logs),
            max_in_snapshot_log_to_keep: self.logs_to_keep,
            snapshot_max_chunk_size: 1024 * 1024,
            ..Default::default()
        }
        .validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_give_openraft_a_valid_config_with_its_timers_off() {
        let timing = RaftTiming::default();
        assert_eq!(timing.leader_lease_ms(), 250);
        let config = timing.openraft_config("c").expect("valid");
        assert!(!config.enable_elect && !config.enable_heartbeat);
        assert_eq!(config.election_timeout_max, 250);
        assert_eq!(config.heartbeat_interval, 225, "the AppendEntries timeout");
        assert!(config.heartbeat_interval < config.election_timeout_min);
    }

    #[test]
    fn the_lease_ends_a_heartbeat_before_the_shortest_election_timeout() {
        let timing = RaftTiming {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            ..RaftTiming::default()
        };
        assert_eq!(timing.leader_lease_ms(), 300);
        // Degenerate settings (the binary's config check refuses them)
        // still give openraft something it accepts.
        let tight = RaftTiming {
            heartbeat_interval_ms: 5,
            election_timeout_min_ms: 5,
            election_timeout_max_ms: 6,
            ..RaftTiming::default()
        };
        assert!(tight.openraft_config("c").is_ok());
    }
}
