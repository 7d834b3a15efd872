//! Reading the roll-ups: totals over a time range, grouped one way, and a
//! key's spend since the start of its budget period. Calls the gateway
//! refused before it tried any provider (over quota, no quorum) are counted
//! apart from the upstream's failures ([`GroupTotals::refused`]).

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

impl RollupKey {
    /// Whether the calls under this key ended before any provider was
    /// tried: the gateway refused them (over quota, no quorum, every
    /// deployment's breaker open). Such a call always counts as an error.
    pub fn refused_before_routing(&self) -> bool {
        self.provider.is_empty()
    }
}

/// What a group of roll-ups added up to, with the calls refused before
/// routing counted apart: `totals.errors - refused` are the failures of
/// calls a provider was tried for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupTotals {
    pub totals: Totals,
    /// Calls the gateway refused before trying a provider
    /// ([`RollupKey::refused_before_routing`]); part of `totals.errors`.
    pub refused: u64,
}

impl GroupTotals {
    /// Adds the roll-up `totals` under `key` in.
    pub fn add(&mut self, key: &RollupKey, totals: &Totals) {
        self.totals.add(totals);
        if key.refused_before_routing() {
            self.refused = self.refused.saturating_add(totals.requests);
        }
    }

    /// Adds another group's totals in.
    pub fn merge(&mut self, other: &GroupTotals) {
        self.totals.add(&other.totals);
        self.refused = self.refused.saturating_add(other.refused);
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
        self.groups_by(from_ms, to_ms, group_by, filter)
            .into_iter()
            .map(|(group, g)| (group, g.totals))
            .collect()
    }

    /// [`Rollups::totals_by`], with the calls refused before routing
    /// counted apart.
    pub fn groups_by(
        &self,
        from_ms: u64,
        to_ms: u64,
        group_by: GroupBy,
        filter: UsageFilter<'_>,
    ) -> BTreeMap<String, GroupTotals> {
        let mut groups: BTreeMap<String, GroupTotals> = BTreeMap::new();
        for (key, totals) in self.in_range(from_ms, to_ms, filter) {
            let group = group_by.group_of(key);
            match groups.get_mut(group) {
                Some(sum) => sum.add(key, totals),
                None => {
                    let mut sum = GroupTotals::default();
                    sum.add(key, totals);
                    groups.insert(group.to_owned(), sum);
                }
            }
        }
        groups
    }

    /// What `key_id` did from `since_ms` on (whole periods: the minute, or
    /// hour, holding `since_ms` counts).
    pub fn key_totals_since(&self, key_id: &str, since_ms: u64) -> Totals {
        self.key_since(key_id, since_ms).totals
    }

    /// [`Rollups::key_totals_since`], with the calls refused before
    /// routing counted apart.
    pub fn key_since(&self, key_id: &str, since_ms: u64) -> GroupTotals {
        let filter = UsageFilter {
            key_id: Some(key_id),
            route: None,
        };
        let mut sum = GroupTotals::default();
        for (key, totals) in self.in_range(since_ms, u64::MAX, filter) {
            sum.add(key, totals);
        }
        sum
    }
}
