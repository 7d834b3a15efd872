//! `RestoreConfig`: a whole configuration put in place at once, and the
//! snapshot a backup takes of it.
//!
//! The restored configuration is built as a new state and checked with the
//! same rules as the commands that would have made it, one entity at a time,
//! so a backup can never bring in something `apply` would have refused. Only
//! when every check passes does it replace the current state: all or
//! nothing. Timestamps, revocations and expiries are kept as they were in the
//! backup (a key expired there stays expired).

use super::State;
use crate::backup::{ConfigCounts, ConfigSnapshot};
use crate::quota::Scope;
use crate::ApplyError;

impl State {
    /// The configuration part of the state, as a backup carries it.
    pub fn config_snapshot(&self) -> ConfigSnapshot {
        ConfigSnapshot {
            providers: self.providers.values().cloned().collect(),
            routes: self.routes.values().cloned().collect(),
            keys: self.keys.values().cloned().collect(),
            admin_tokens: self.admin_tokens.values().cloned().collect(),
            quotas: self
                .ledger
                .policies()
                .map(|(scope, policy)| (scope.clone(), policy.clone()))
                .collect(),
        }
    }

    /// How much configuration the state holds.
    pub fn config_counts(&self) -> ConfigCounts {
        ConfigCounts {
            providers: self.providers.len() as u64,
            routes: self.routes.len() as u64,
            keys: self.keys.len() as u64,
            admin_tokens: self.admin_tokens.len() as u64,
            quotas: self.ledger.policies().count() as u64,
        }
    }

    /// Replaces the configuration with `config`, checked as a whole first.
    pub(super) fn restore(
        &mut self,
        config: &ConfigSnapshot,
        force: bool,
        now: u64,
    ) -> Result<ConfigCounts, ApplyError> {
        let held = self.config_counts();
        if !force && !held.is_empty() {
            return Err(ApplyError::conflict(format!(
                "the cluster already holds configuration ({held}); restore with force to replace it"
            )));
        }
        // Usage is this cluster's history, not configuration: it stays, and
        // so do the records of keyed writes (a retry must still find them).
        let mut restored = State {
            last_at_ms: self.last_at_ms,
            usage: self.usage.clone(),
            replays: self.replays.clone(),
            audit: self.audit.clone(),
            ..State::default()
        };
        for (i, p) in config.providers.iter().enumerate() {
            let at = |e| prefixed(e, &format!("providers[{i}]"));
            p.validate().map_err(at)?;
            if restored
                .providers
                .insert(p.name.clone(), p.clone())
                .is_some()
            {
                return Err(at(ApplyError::conflict(format!(
                    "provider {:?} is listed twice",
                    p.name
                ))));
            }
        }
        // Every route first: fallbacks may name a route listed after them.
        for (i, r) in config.routes.iter().enumerate() {
            if restored.routes.insert(r.name.clone(), r.clone()).is_some() {
                return Err(ApplyError::invalid(
                    format!("routes[{i}].name"),
                    format!("route {:?} is listed twice", r.name),
                ));
            }
        }
        for (i, r) in config.routes.iter().enumerate() {
            restored
                .check_route(r)
                .map_err(|e| prefixed(e, &format!("routes[{i}]")))?;
        }
        for (i, k) in config.keys.iter().enumerate() {
            let at = |e| prefixed(e, &format!("keys[{i}]"));
            // Expiry is not checked against now: an expired key is restored
            // as the expired key it was.
            k.validate(0).map_err(at)?;
            for (j, route) in k.allowed_routes.iter().enumerate() {
                if !restored.routes.contains_key(route) {
                    return Err(ApplyError::invalid(
                        format!("keys[{i}].allowed_routes[{j}]"),
                        format!("route {route:?} does not exist"),
                    ));
                }
            }
            if restored.keys.contains_key(&k.id) || restored.key_ids_by_hash.contains_key(&k.hash) {
                return Err(ApplyError::invalid(
                    format!("keys[{i}].id"),
                    format!("key {:?} is listed twice", k.id),
                ));
            }
            restored.key_ids_by_hash.insert(k.hash, k.id.clone());
            restored.keys.insert(k.id.clone(), k.clone());
        }
        for (i, t) in config.admin_tokens.iter().enumerate() {
            t.validate()
                .map_err(|e| prefixed(e, &format!("admin_tokens[{i}]")))?;
            if restored
                .admin_tokens
                .insert(t.id.clone(), t.clone())
                .is_some()
            {
                return Err(ApplyError::invalid(
                    format!("admin_tokens[{i}].id"),
                    format!("admin token {:?} is listed twice", t.id),
                ));
            }
        }
        for (i, (scope, policy)) in config.quotas.iter().enumerate() {
            let field = |name: &str| format!("quotas[{i}].{name}");
            if !restored.keys.contains_key(scope.key_id()) {
                return Err(ApplyError::invalid(
                    field("scope.key_id"),
                    format!("key {:?} does not exist", scope.key_id()),
                ));
            }
            if let Scope::KeyRoute { route, .. } = scope {
                if !restored.routes.contains_key(route) {
                    return Err(ApplyError::invalid(
                        field("scope.route"),
                        format!("route {route:?} does not exist"),
                    ));
                }
            }
            if restored.ledger.policy(scope).is_some() {
                return Err(ApplyError::invalid(
                    field("scope"),
                    "this scope's policy is listed twice",
                ));
            }
            restored
                .ledger
                .set_policy(scope, Some(policy), now)
                .map_err(|e| prefixed(e, &format!("quotas[{i}].policy")))?;
        }
        let counts = restored.config_counts();
        *self = restored;
        Ok(counts)
    }
}

/// `err` with its field (or message) placed under `at`.
fn prefixed(err: ApplyError, at: &str) -> ApplyError {
    match err {
        ApplyError::Invalid { field, message } => {
            ApplyError::invalid(format!("{at}.{field}"), message)
        }
        ApplyError::NotFound { kind, name } => {
            ApplyError::invalid(at, format!("{kind} {name:?} not found"))
        }
        ApplyError::Conflict { message } => ApplyError::invalid(at, message),
        // Not raised while checking entities; kept as it is.
        reused @ ApplyError::IdempotencyKeyReused { .. } => reused,
    }
}

#[cfg(test)]
mod tests;
