//! The replicated state and its deterministic `apply`.

use crate::audit::{self, AuditLog, Audited, Subject};
use crate::idempotency::{Idempotent, Replays};
use crate::key::KeySubject;
use crate::quota::{Ledger, QuotaPolicy, Scope};
use crate::usage::Rollups;
use crate::{
    codec::{self, CodecError},
    AdminToken, Applied, ApplyError, Command, Proposal, Provider, Route, VirtualKey,
};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

/// Most subject keys the cluster keeps (each is a key, its policies and
/// its buckets on every node).
pub const MAX_SUBJECT_KEYS: usize = 100_000;

/// Everything an operator configured, as of the last applied command.
///
/// Only ordered maps: nothing about iteration order can differ between nodes.
/// Persistent ones (`imbl::OrdMap`): the state machine clones the state for
/// every applied batch of Raft entries (readers keep the version they
/// loaded), and a clone shares the maps' nodes instead of copying every key;
/// a change copies only its path. They encode exactly as `BTreeMap`s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(with = "crate::persistent::ord_map")]
    providers: OrdMap<String, Provider>,
    #[serde(with = "crate::persistent::ord_map")]
    routes: OrdMap<String, Route>,
    #[serde(with = "crate::persistent::ord_map")]
    keys: OrdMap<String, VirtualKey>,
    #[serde(with = "crate::persistent::ord_map")]
    admin_tokens: OrdMap<String, AdminToken>,
    /// The latest `at_ms` of any applied command.
    last_at_ms: u64,
    /// Quota policies, bucket levels and the leases nodes hold.
    ledger: Ledger,
    /// Usage roll-ups per minute, key, route and provider.
    usage: Rollups,
    /// What each keyed write produced, within the idempotency window.
    replays: Replays,
    /// Who changed what (admin writes), within the retention.
    audit: AuditLog,
    /// Derived: key id by secret hash, for the proxy's auth look-up.
    /// Rebuilt on decode, never stored.
    #[serde(skip)]
    key_ids_by_hash: OrdMap<[u8; 32], String>,
}

impl State {
    /// Applies one proposal. On `Err` the state is exactly as it was.
    pub fn apply(&mut self, proposal: &Proposal) -> Result<Applied, ApplyError> {
        let now = proposal.at_ms;
        let applied = match &proposal.command {
            Command::Idempotent(write) => self.apply_idempotent(write, now, false)?,
            Command::Audited(write) => self.apply_audited(write, now)?,
            command => self.run(command, now, false)?,
        };
        self.last_at_ms = self.last_at_ms.max(now);
        self.replays.expire(self.last_at_ms);
        Ok(applied)
    }

    /// A keyed write: its record if it applied before, else applied and
    /// recorded (a refusal leaves no record: nothing was applied).
    fn apply_idempotent(
        &mut self,
        write: &Idempotent,
        now: u64,
        audited: bool,
    ) -> Result<Applied, ApplyError> {
        write.validate()?;
        let clock = self.last_at_ms.max(now);
        if let Some(replay) = self.replays.find(&write.key, write.step, clock) {
            if replay.fingerprint != write.fingerprint {
                return Err(ApplyError::IdempotencyKeyReused {
                    key: write.key.clone(),
                });
            }
            return Ok(Applied::Replayed(Box::new(replay.clone())));
        }
        let applied = self.run(&write.command, now, audited)?;
        self.replays.record(write, applied.clone(), now);
        Ok(applied)
    }

    /// An admin write with its actor: applied, then recorded if it
    /// changed something (a replay of a keyed write changed nothing).
    fn apply_audited(&mut self, write: &Audited, now: u64) -> Result<Applied, ApplyError> {
        write.actor.validate()?;
        let target = audit::target(&write.command)?;
        let before = self.subject(audit::unwrap(&write.command));
        let applied = match &write.command {
            Command::Idempotent(keyed) => self.apply_idempotent(keyed, now, true)?,
            command => self.run(command, now, true)?,
        };
        if !matches!(applied, Applied::Replayed(_)) {
            let after = audit::after(&write.command, &applied);
            self.audit.record(
                now,
                &write.actor,
                write.command.kind(),
                target,
                before,
                after,
            );
        }
        Ok(applied)
    }

    /// The object an admin command acts on, as it is now.
    fn subject(&self, command: &Command) -> Option<Subject> {
        match command {
            Command::CreateProvider(p) | Command::UpdateProvider { provider: p, .. } => {
                self.providers.get(&p.name).cloned().map(Subject::Provider)
            }
            Command::DeleteProvider { name } => {
                self.providers.get(name).cloned().map(Subject::Provider)
            }
            Command::CreateRoute(r) | Command::UpdateRoute(r) => {
                self.routes.get(&r.name).cloned().map(Subject::Route)
            }
            Command::DeleteRoute { name } => self.routes.get(name).cloned().map(Subject::Route),
            Command::CreateKey(k) | Command::CreateKeyWithQuota { key: k, .. } => {
                self.keys.get(&k.id).cloned().map(Subject::Key)
            }
            Command::SetKeyEnabled { id, .. }
            | Command::RevokeKey { id }
            | Command::DeleteKey { id } => self.keys.get(id).cloned().map(Subject::Key),
            Command::CreateAdminToken(t) => self
                .admin_tokens
                .get(&t.id)
                .cloned()
                .map(Subject::AdminToken),
            Command::DeleteAdminToken { id } => {
                self.admin_tokens.get(id).cloned().map(Subject::AdminToken)
            }
            Command::SetQuota { scope, .. } => Some(Subject::Quota {
                scope: scope.clone(),
                policy: self.ledger.policy(scope).cloned(),
            }),
            Command::RestoreConfig { .. } => Some(Subject::Config(self.config_counts())),
            _ => None,
        }
    }

    /// Adds key `k`, stamped `now`; refused if a route it allows does not
    /// exist or the key (or its secret) does.
    fn create_key(&mut self, k: &VirtualKey, now: u64) -> Result<VirtualKey, ApplyError> {
        k.validate(now)?;
        if k.subject.is_some() {
            return Err(ApplyError::invalid(
                "subject",
                "a JWT subject's key is made by the gateway on the subject's first request",
            ));
        }
        for (i, route) in k.allowed_routes.iter().enumerate() {
            if !self.routes.contains_key(route) {
                return Err(ApplyError::invalid(
                    format!("allowed_routes[{i}]"),
                    format!("route {route:?} does not exist"),
                ));
            }
        }
        if self.keys.contains_key(&k.id) || self.key_ids_by_hash.contains_key(&k.hash) {
            return Err(ApplyError::conflict(format!(
                "key {:?} already exists",
                k.id
            )));
        }
        let mut k = k.clone();
        k.created_at_ms = now;
        k.revoked_at_ms = None;
        self.key_ids_by_hash.insert(k.hash, k.id.clone());
        self.keys.insert(k.id.clone(), k.clone());
        Ok(k)
    }

    /// The key of `subject` (made now with its template's routes and
    /// quota policies, or the one it already has; moved to its template if
    /// that is not the one it has).
    fn register_subject(
        &mut self,
        subject: &KeySubject,
        now: u64,
    ) -> Result<VirtualKey, ApplyError> {
        let existing = self.keys.get(&subject.key_id());
        if let Some(existing) = existing {
            if existing.subject.as_deref() == Some(subject) {
                return Ok(existing.clone());
            }
        }
        let template = self
            .keys
            .get(&subject.template)
            .ok_or_else(|| ApplyError::not_found("key", &subject.template))?;
        if template.subject.is_some() {
            return Err(ApplyError::invalid(
                "template",
                format!("{} is itself a JWT subject's key", template.id),
            ));
        }
        let subjects = self.keys.values().filter(|k| k.subject.is_some()).count();
        if existing.is_none() && subjects >= MAX_SUBJECT_KEYS {
            return Err(ApplyError::invalid(
                "subject",
                format!("the cluster holds {MAX_SUBJECT_KEYS} subject keys, the most it keeps; delete some"),
            ));
        }
        let mut key = VirtualKey::for_subject(subject.clone(), template, now);
        key.validate(now)?;
        if let Some(existing) = existing {
            // Its claims now select another template: the key takes the new
            // template's routes and quotas (its buckets start afresh), and
            // keeps its creation time, and its revocation or disabling.
            key.created_at_ms = existing.created_at_ms;
            key.enabled = existing.enabled;
            key.revoked_at_ms = existing.revoked_at_ms;
            self.ledger.remove_key(&key.id);
        }
        let policies: Vec<(Scope, QuotaPolicy)> = self
            .ledger
            .policies()
            .filter(|(scope, _)| scope.key_id() == template.id)
            .map(|(scope, policy)| (scope.with_key(key.id.clone()), policy.clone()))
            .collect();
        for (scope, policy) in &policies {
            if let Err(e) = self.ledger.set_policy(scope, Some(policy), now) {
                self.ledger.remove_key(&key.id);
                return Err(e);
            }
        }
        self.key_ids_by_hash.insert(key.hash, key.id.clone());
        self.keys.insert(key.id.clone(), key.clone());
        Ok(key)
    }

    /// The ids of the subject keys made from template `template`.
    fn subject_keys_of(&self, template: &str) -> Vec<String> {
        self.keys
            .values()
            .filter(|k| k.subject.as_ref().is_some_and(|s| s.template == template))
            .map(|k| k.id.clone())
            .collect()
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Runs one plain command (never `Idempotent`: [`Idempotent::validate`]
    /// refuses nesting before this is reached).
    /// `audited`: the command came with its actor.
    fn run(&mut self, command: &Command, now: u64, audited: bool) -> Result<Applied, ApplyError> {
        let applied = match command {
            Command::CreateProvider(p) => {
                p.validate()?;
                p.check_credential()?;
                if self.providers.contains_key(&p.name) {
                    return Err(ApplyError::conflict(format!(
                        "provider {:?} already exists",
                        p.name
                    )));
                }
                let mut p = p.clone();
                p.created_at_ms = now;
                p.updated_at_ms = now;
                self.providers.insert(p.name.clone(), p.clone());
                Applied::Provider(Box::new(p))
            }
            Command::UpdateProvider {
                provider: p,
                keep_api_key,
                keep_secret_headers,
            } => {
                let existing = self
                    .providers
                    .get(&p.name)
                    .ok_or_else(|| ApplyError::not_found("provider", &p.name))?;
                let mut p = p.clone();
                if *keep_api_key {
                    p.api_key = existing.api_key.clone();
                }
                if *keep_secret_headers {
                    p.secret_headers = existing.secret_headers.clone();
                }
                // Checked as it will be stored: kept secret headers must
                // not clash with the new clear ones.
                p.validate()?;
                p.check_credential()?;
                p.created_at_ms = existing.created_at_ms;
                p.updated_at_ms = now;
                self.providers.insert(p.name.clone(), p.clone());
                Applied::Provider(Box::new(p))
            }
            Command::DeleteProvider { name } => {
                if !self.providers.contains_key(name) {
                    return Err(ApplyError::not_found("provider", name));
                }
                if let Some(route) = self
                    .routes
                    .values()
                    .find(|r| r.deployments.iter().any(|d| &d.provider == name))
                {
                    return Err(ApplyError::conflict(format!(
                        "provider {name:?} is used by route {:?}",
                        route.name
                    )));
                }
                self.providers.remove(name);
                Applied::Deleted
            }
            Command::CreateRoute(r) => {
                self.check_route(r)?;
                if self.routes.contains_key(&r.name) {
                    return Err(ApplyError::conflict(format!(
                        "route {:?} already exists",
                        r.name
                    )));
                }
                let mut r = r.clone();
                r.created_at_ms = now;
                r.updated_at_ms = now;
                self.routes.insert(r.name.clone(), r.clone());
                Applied::Route(r)
            }
            Command::UpdateRoute(r) => {
                self.check_route(r)?;
                let existing = self
                    .routes
                    .get(&r.name)
                    .ok_or_else(|| ApplyError::not_found("route", &r.name))?;
                let mut r = r.clone();
                r.created_at_ms = existing.created_at_ms;
                r.updated_at_ms = now;
                self.routes.insert(r.name.clone(), r.clone());
                Applied::Route(r)
            }
            Command::DeleteRoute { name } => {
                if !self.routes.contains_key(name) {
                    return Err(ApplyError::not_found("route", name));
                }
                if let Some(other) = self.routes.values().find(|r| r.fallbacks.contains(name)) {
                    return Err(ApplyError::conflict(format!(
                        "route {name:?} is a fallback of route {:?}",
                        other.name
                    )));
                }
                self.routes.remove(name);
                self.ledger.remove_route(name);
                Applied::Deleted
            }
            Command::CreateKey(k) => Applied::Key(self.create_key(k, now)?),
            Command::RegisterSubject(subject) => Applied::Key(self.register_subject(subject, now)?),
            Command::CreateKeyWithQuota { key, policy } => {
                // Validated before anything changes: all or nothing.
                policy.validate()?;
                let k = self.create_key(key, now)?;
                let scope = Scope::Key {
                    key_id: k.id.clone(),
                };
                if let Err(e) = self.ledger.set_policy(&scope, Some(policy), now) {
                    self.key_ids_by_hash.remove(&k.hash);
                    self.keys.remove(&k.id);
                    return Err(e);
                }
                Applied::Key(k)
            }
            Command::SetKeyEnabled { id, enabled } => {
                let key = self
                    .keys
                    .get_mut(id)
                    .ok_or_else(|| ApplyError::not_found("key", id))?;
                key.enabled = *enabled;
                Applied::Key(key.clone())
            }
            Command::RevokeKey { id } => {
                let key = self
                    .keys
                    .get_mut(id)
                    .ok_or_else(|| ApplyError::not_found("key", id))?;
                if key.revoked_at_ms.is_none() {
                    key.revoked_at_ms = Some(now);
                }
                Applied::Key(key.clone())
            }
            Command::DeleteKey { id } => {
                let key = self
                    .keys
                    .remove(id)
                    .ok_or_else(|| ApplyError::not_found("key", id))?;
                self.key_ids_by_hash.remove(&key.hash);
                self.ledger.remove_key(id);
                // A template's subject keys go with it: they hold nothing
                // of their own (their usage stays, under their ids).
                for subject in self.subject_keys_of(id) {
                    if let Some(removed) = self.keys.remove(&subject) {
                        self.key_ids_by_hash.remove(&removed.hash);
                    }
                    self.ledger.remove_key(&subject);
                }
                Applied::Deleted
            }
            Command::CreateAdminToken(t) => {
                t.validate()?;
                if self.admin_tokens.contains_key(&t.id) {
                    return Err(ApplyError::conflict(format!(
                        "admin token {:?} already exists",
                        t.id
                    )));
                }
                let mut t = t.clone();
                t.created_at_ms = now;
                self.admin_tokens.insert(t.id.clone(), t.clone());
                Applied::AdminToken(t)
            }
            Command::DeleteAdminToken { id } => {
                self.admin_tokens
                    .remove(id)
                    .ok_or_else(|| ApplyError::not_found("admin token", id))?;
                Applied::Deleted
            }
            Command::SetQuota { scope, policy } => {
                let key = self
                    .keys
                    .get(scope.key_id())
                    .ok_or_else(|| ApplyError::not_found("key", scope.key_id()))?;
                if let Some(subject) = &key.subject {
                    return Err(ApplyError::invalid(
                        "scope.key_id",
                        format!(
                            "{} is a JWT subject's key: its quotas are its template's; set them on {}",
                            key.id, subject.template
                        ),
                    ));
                }
                if let Scope::KeyRoute { route, .. } = scope {
                    if !self.routes.contains_key(route) {
                        return Err(ApplyError::invalid(
                            "scope.route",
                            format!("route {route:?} does not exist"),
                        ));
                    }
                }
                // Validated before anything changes: all or nothing.
                if let Some(policy) = policy {
                    policy.validate()?;
                }
                self.ledger.set_policy(scope, policy.as_ref(), now)?;
                // The template's subject keys follow it (each policy was
                // validated above; a subject scope is new or the same shape).
                for subject in self.subject_keys_of(scope.key_id()) {
                    let theirs = scope.with_key(subject);
                    self.ledger.set_policy(&theirs, policy.as_ref(), now)?;
                }
                Applied::Quota(policy.clone())
            }
            Command::GrantLeases {
                node,
                ttl_ms,
                wants,
            } => Applied::Leases(self.ledger.grant(*node, wants, *ttl_ms, now)?),
            Command::ReturnLeases {
                node,
                batch,
                returns,
            } => {
                self.ledger.give_back(*node, *batch, returns, now)?;
                Applied::Leases(Vec::new())
            }
            Command::RecordUsage(batch) => Applied::UsageRecorded {
                counted: self.usage.record(batch)?,
            },
            Command::CompactUsage {
                before_ms,
                hourly_before_ms,
            } => {
                let done = self.usage.compact(*before_ms, *hourly_before_ms);
                Applied::UsageCompacted {
                    removed: done.removed,
                    merged: done.merged,
                }
            }
            Command::RestoreConfig { config, force } => {
                Applied::Restored(self.restore(config, *force, now)?)
            }
            Command::NoteClusterChange(change) => {
                if !audited {
                    return Err(ApplyError::invalid(
                        "command",
                        "a cluster change note is only accepted with its actor",
                    ));
                }
                if let Some(addresses) = &change.addresses {
                    if addresses.iter().any(|a| a.len() > 256) {
                        return Err(ApplyError::invalid("addresses", "at most 256 bytes each"));
                    }
                }
                Applied::Noted
            }
            Command::CompactAudit { before_ms } => Applied::AuditCompacted {
                removed: self.audit.compact(*before_ms),
            },
            Command::Idempotent(_) | Command::Audited(_) => {
                return Err(ApplyError::invalid(
                    "command",
                    "an idempotent or audited write cannot be wrapped in another one",
                ))
            }
        };
        Ok(applied)
    }

    /// Route checks that need the rest of the state: providers and fallbacks exist.
    fn check_route(&self, r: &Route) -> Result<(), ApplyError> {
        r.validate()?;
        for (i, d) in r.deployments.iter().enumerate() {
            if !self.providers.contains_key(&d.provider) {
                return Err(ApplyError::invalid(
                    format!("deployments[{i}].provider"),
                    format!("provider {:?} does not exist", d.provider),
                ));
            }
        }
        for (i, f) in r.fallbacks.iter().enumerate() {
            if !self.routes.contains_key(f) {
                return Err(ApplyError::invalid(
                    format!("fallbacks[{i}]"),
                    format!("route {f:?} does not exist"),
                ));
            }
        }
        Ok(())
    }

    pub fn providers(&self) -> impl ExactSizeIterator<Item = &Provider> {
        self.providers.values()
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name)
    }

    pub fn routes(&self) -> impl ExactSizeIterator<Item = &Route> {
        self.routes.values()
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.get(name)
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &VirtualKey> {
        self.keys.values()
    }

    pub fn key(&self, id: &str) -> Option<&VirtualKey> {
        self.keys.get(id)
    }

    /// The key whose secret hashes to `hash`, if any (usable or not).
    /// A subject key has no secret, so it is never found here.
    pub fn key_by_hash(&self, hash: &[u8; 32]) -> Option<&VirtualKey> {
        self.key_ids_by_hash
            .get(hash)
            .and_then(|id| self.keys.get(id))
            .filter(|k| k.subject.is_none())
    }

    pub fn admin_tokens(&self) -> impl ExactSizeIterator<Item = &AdminToken> {
        self.admin_tokens.values()
    }

    pub fn admin_token_by_hash(&self, hash: &[u8; 32]) -> Option<&AdminToken> {
        self.admin_tokens.values().find(|t| &t.hash == hash)
    }

    /// Quota policies, buckets and leases.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The cluster's membership changed to `members` (voters and learners):
    /// the quota ledger forgets the nodes that left. Applied from the
    /// membership entries of the log, so every node does it at the same
    /// point.
    pub fn retain_members(&mut self, members: &std::collections::BTreeSet<u64>) {
        self.ledger.forget_nodes_except(members);
    }

    /// Usage roll-ups.
    pub fn usage(&self) -> &Rollups {
        &self.usage
    }

    /// The records of applied keyed writes (see [`crate::idempotency`]).
    pub fn replays(&self) -> &Replays {
        &self.replays
    }

    /// The latest command time applied so far.
    pub fn last_at_ms(&self) -> u64 {
        self.last_at_ms
    }

    /// Encodes the state for a snapshot.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    /// SHA-256 of the state's encoding ([`State::encode`]), lowercase hex:
    /// equal on two nodes exactly when they hold the same state, since the
    /// encoding is deterministic (ordered maps only, no derived index, the
    /// ledger and usage roll-ups included). For checks that nodes agree
    /// (the nemesis suite compares it at equal applied indexes); it costs
    /// one encoding of the whole state, so it is not for a hot path.
    pub fn digest(&self) -> Result<String, CodecError> {
        use sha2::{Digest, Sha256};
        Ok(hex::encode(Sha256::digest(self.encode()?)))
    }

    /// Decodes a snapshot made by [`State::encode`] and rebuilds derived indexes.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut state: State = codec::decode(bytes)?;
        state.key_ids_by_hash = state
            .keys
            .values()
            .map(|k| (k.hash, k.id.clone()))
            .collect();
        Ok(state)
    }
}

mod restore;
#[cfg(test)]
pub(crate) mod tests;
