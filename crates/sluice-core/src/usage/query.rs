//! Reading the roll-ups: totals over a time range, grouped one way, and a
//! key's spend since the start of its budget period.

use super::rollup::{hour_of, minute_of, RollupKey, Totals};
use super::Rollups;
use std::collections::BTreeMap;

/// What totals are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    Route,
    Provider,
}

impl GroupBy {
    /// The group a roll-up belongs to.
    pub fn group_of(self, key: &RollupKey) -> &str {
        match self {
            GroupBy::Key => &key.key_id,
            GroupBy::Route => &key.route,
            GroupBy::Provider => &key.provider,
        }
    }
}

/// Which roll-ups count: all, or those of one key and/or one route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageFilter<'a> {
    pub key_id: Option<&'a str>,
    pub route: Option<&'a str>,
}

impl UsageFilter<'_> {
    fn admits(&self, key: &RollupKey) -> bool {
        self.key_id.is_none_or(|k| k == key.key_id) && self.route.is_none_or(|r| r == key.route)
    }
}

impl Rollups {
    /// The roll-ups of every period that overlaps `[from_ms, to_ms)` and
    /// passes `filter`. The resolution is a minute, and an hour before
    /// [`Rollups::hourly_before_ms`]: a period partly inside the range
    /// counts whole.
    pub fn in_range<'a>(
        &'a self,
        from_ms: u64,
        to_ms: u64,
        filter: UsageFilter<'a>,
    ) -> impl Iterator<Item = (&'a RollupKey, &'a Totals)> + 'a {
        let minute = minute_of(from_ms);
        let first = RollupKey {
            minute_ms: if minute < self.hourly_before_ms {
                hour_of(minute)
            } else {
                minute
            },
            key_id: String::new(),
            route: String::new(),
            provider: String::new(),
        };
        self.totals
            .range(first..)
            .take_while(move |(k, _)| k.minute_ms < to_ms)
            .filter(move |(k, _)| filter.admits(k))
    }

    /// Totals over `[from_ms, to_ms)` (see [`Rollups::in_range`]) by
    /// group, in the group's name order.
    pub fn totals_by(
        &self,
        from_ms: u64,
        to_ms: u64,
        group_by: GroupBy,
        filter: UsageFilter<'_>,
    ) -> BTreeMap<String, Totals> {
        let mut groups: BTreeMap<String, Totals> = BTreeMap::new();
        for (key, totals) in self.in_range(from_ms, to_ms, filter) {
            let group = group_by.group_of(key);
            match groups.get_mut(group) {
                Some(sum) => sum.add(totals),
                None => {
                    groups.insert(group.to_owned(), *totals);
                }
            }
        }
        groups
    }

    /// What `key_id` did from `since_ms` on (whole periods: the minute, or
    /// hour, holding `since_ms` counts).
    pub fn key_totals_since(&self, key_id: &str, since_ms: u64) -> Totals {
        let filter = UsageFilter {
            key_id: Some(key_id),
            route: None,
        };
        let mut sum = Totals::default();
        for (_, totals) in self.in_range(since_ms, u64::MAX, filter) {
            sum.add(totals);
        }
        sum
    }
}
