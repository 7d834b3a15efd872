//! `[usage]`: how often a node replicates its usage roll-ups, and how long
//! the cluster keeps them (per minute, then per hour).

use super::check::Problems;
use super::raw::RawUsage;
use std::time::Duration;

/// Validated `[usage]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSettings {
    /// Time between two flushes of the node's roll-ups (one `RecordUsage`
    /// Raft entry each, whatever the request rate). The admin API's totals
    /// lag the traffic by up to this.
    pub flush_interval: Duration,
    /// Roll-ups of minutes older than this are compacted away by the leader.
    pub retention_days: u64,
    /// Roll-ups of minutes older than this are merged into hours by the
    /// leader (at most `retention_days` × 24).
    pub minute_retention_hours: u64,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_millis(10_000),
            retention_days: 35,
            minute_retention_hours: 48,
        }
    }
}

impl UsageSettings {
    /// The retention in milliseconds.
    pub fn retention_ms(&self) -> u64 {
        self.retention_days.saturating_mul(86_400_000)
    }

    /// How long minutes are kept as minutes, in milliseconds.
    pub fn minute_retention_ms(&self) -> u64 {
        self.minute_retention_hours.saturating_mul(3_600_000)
    }
}

/// `[usage]`, over [`UsageSettings`]'s defaults.
pub(super) fn settings(p: &mut Problems, raw: &RawUsage) -> UsageSettings {
    let mut settings = UsageSettings::default();
    if let Some(ms) = raw.flush_interval_ms {
        if (100..=600_000).contains(&ms) {
            settings.flush_interval = Duration::from_millis(ms);
        } else {
            p.push("usage.flush_interval_ms", "must be between 100 and 600000");
        }
    }
    if let Some(days) = raw.retention_days {
        if (1..=3_650).contains(&days) {
            settings.retention_days = days;
        } else {
            p.push("usage.retention_days", "must be between 1 and 3650");
        }
    }
    if let Some(hours) = raw.minute_retention_hours {
        let most = settings.retention_days * 24;
        if (1..=most).contains(&hours) {
            settings.minute_retention_hours = hours;
        } else {
            p.push(
                "usage.minute_retention_hours",
                format!("must be between 1 and {most} (usage.retention_days × 24)"),
            );
        }
    } else {
        settings.minute_retention_hours = settings
            .minute_retention_hours
            .min(settings.retention_days * 24);
    }
    settings
}
