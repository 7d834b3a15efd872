//! The audit log: who changed what, when, from where, with the object
//! before and after, kept in the replicated state (so it is the same on
//! every node, and a write that applied is never missing from it).
//!
//! An admin write is proposed as [`Command::Audited`]: the command and the
//! [`Actor`] the admin API authenticated. Applying it applies the command
//! and, if that changed something (not a refusal, not the replay of a keyed
//! write), appends an [`AuditEntry`]. Secrets never enter an entry: sealed
//! provider credentials keep only their nonce (which tells that a
//! credential was replaced, and nothing of it), keys and admin tokens only
//! their hashes, as the state holds them.
//!
//! Retention: the leader proposes [`Command::CompactAudit`] with its clock
//! minus the configured retention, and the log never holds more than
//! [`MAX_ENTRIES`] (the oldest go first), so the state stays bounded
//! whatever the write rate.

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::backup::ConfigCounts;
use crate::command::{Applied, Command};
use crate::quota::{QuotaPolicy, Scope};
use crate::{AdminToken, ApplyError, Provider, Role, Route, SealedSecret, VirtualKey};

/// The most entries the log holds: past it the oldest are dropped.
pub const MAX_ENTRIES: usize = 100_000;

/// Who made an admin write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The admin token's id (`bootstrap` for a token of a node's
    /// configuration).
    pub token_id: String,
    /// The token's name (or `bootstrap`).
    pub token_name: String,
    pub role: Role,
    /// The caller's address as the admin listener saw it (`ip:port`).
    pub address: String,
}

impl Actor {
    /// Checks the sizes (an actor is written into every entry).
    pub fn validate(&self) -> Result<(), ApplyError> {
        for (field, value) in [
            ("actor.token_id", &self.token_id),
            ("actor.token_name", &self.token_name),
            ("actor.address", &self.address),
        ] {
            if value.len() > 256 {
                return Err(ApplyError::invalid(field, "at most 256 bytes"));
            }
        }
        Ok(())
    }
}

/// An admin write with its actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audited {
    pub actor: Actor,
    pub command: Command,
}

/// A change of the cluster's membership or leadership made through the
/// admin API. Openraft applies the change itself; this note, proposed
/// (audited) once it is done, puts it in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterChange {
    pub action: ClusterAction,
    /// The node it concerns (the new leader for a transfer).
    pub node: u64,
    /// A new learner's addresses: Raft, admin API, proxy.
    pub addresses: Option<[String; 3]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterAction {
    AddLearner,
    PromoteVoter,
    RemoveMember,
    TransferLeader,
}

impl ClusterAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterAction::AddLearner => "add_learner",
            ClusterAction::PromoteVoter => "promote_voter",
            ClusterAction::RemoveMember => "remove_member",
            ClusterAction::TransferLeader => "transfer_leader",
        }
    }
}

/// The object a write changed, as an entry keeps it (secrets out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subject {
    Provider(Provider),
    Route(Route),
    Key(VirtualKey),
    /// A key created with its own quota policy.
    KeyWithQuota(VirtualKey, QuotaPolicy),
    AdminToken(AdminToken),
    /// A scope's quota policy (`None`: none).
    Quota {
        scope: Scope,
        policy: Option<QuotaPolicy>,
    },
    /// The size of the configuration (a restore's before and after).
    Config(ConfigCounts),
    /// A membership or leadership change (its after).
    Cluster(ClusterChange),
}

impl Subject {
    /// `self` with every sealed secret reduced to its nonce.
    fn redacted(mut self) -> Self {
        if let Subject::Provider(provider) = &mut self {
            for field in provider.sealed_mut() {
                *field.sealed = redact(field.sealed);
            }
        }
        self
    }
}

fn redact(sealed: &SealedSecret) -> SealedSecret {
    SealedSecret {
        key_id: sealed.key_id,
        nonce: sealed.nonce,
        ciphertext: Vec::new(),
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increasing over the cluster's life, never reused.
    pub seq: u64,
    /// When the leader proposed it (ms since the Unix epoch).
    pub at_ms: u64,
    pub actor: Actor,
    /// The command's name (`create_key`, `update_provider`, …).
    pub action: String,
    /// What it acted on: `provider:<name>`, `route:<name>`, `key:<id>`,
    /// `admin_token:<id>`, `quota:key:<id>`, `quota:key:<id>:route:<name>`,
    /// `config`.
    pub target: String,
    pub before: Option<Subject>,
    pub after: Option<Subject>,
}

/// The entries the state keeps, by sequence number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    #[serde(with = "crate::persistent::ord_map")]
    entries: OrdMap<u64, AuditEntry>,
    next_seq: u64,
}

/// Which entries a query wants. Every filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries after this sequence number (the previous page's last).
    pub after_seq: Option<u64>,
    pub token_id: Option<String>,
    pub action: Option<String>,
    /// A target, or a prefix of one ending in `:` (`key:`).
    pub target: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

impl AuditQuery {
    fn matches(&self, entry: &AuditEntry) -> bool {
        self.token_id
            .as_ref()
            .is_none_or(|id| *id == entry.actor.token_id)
            && self.action.as_ref().is_none_or(|a| *a == entry.action)
            && self.target.as_ref().is_none_or(|t| {
                if t.ends_with(':') {
                    entry.target.starts_with(t.as_str())
                } else {
                    *t == entry.target
                }
            })
            && self.since_ms.is_none_or(|since| entry.at_ms >= since)
            && self.until_ms.is_none_or(|until| entry.at_ms < until)
    }
}

impl AuditLog {
    /// Appends a change, dropping the oldest past [`MAX_ENTRIES`].
    pub(crate) fn record(
        &mut self,
        at_ms: u64,
        actor: &Actor,
        action: &str,
        target: String,
        before: Option<Subject>,
        after: Option<Subject>,
    ) {
        self.next_seq += 1;
        let entry = AuditEntry {
            seq: self.next_seq,
            at_ms,
            actor: actor.clone(),
            action: action.to_owned(),
            target,
            before: before.map(Subject::redacted),
            after: after.map(Subject::redacted),
        };
        self.entries.insert(entry.seq, entry);
        while self.entries.len() > MAX_ENTRIES {
            let Some(oldest) = self.entries.get_min().map(|(seq, _)| *seq) else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }

    /// Drops the entries made before `before_ms`; how many.
    pub(crate) fn compact(&mut self, before_ms: u64) -> u64 {
        let doomed: Vec<u64> = self
            .entries
            .iter()
            .take_while(|(_, e)| e.at_ms < before_ms)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &doomed {
            self.entries.remove(seq);
        }
        doomed.len() as u64
    }

    /// Up to `limit` entries `query` wants, oldest first.
    pub fn query(&self, query: &AuditQuery, limit: usize) -> Vec<&AuditEntry> {
        let from = query.after_seq.map_or(0, |seq| seq.saturating_add(1));
        self.entries
            .range(from..)
            .map(|(_, e)| e)
            .filter(|e| query.matches(e))
            .take(limit)
            .collect()
    }

    /// When the oldest entry kept was made.
    pub fn oldest_at_ms(&self) -> Option<u64> {
        self.entries.get_min().map(|(_, e)| e.at_ms)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What an admin command acts on: its target's name in the log.
pub(crate) fn target(command: &Command) -> Result<String, ApplyError> {
    Ok(match command {
        Command::CreateProvider(p) | Command::UpdateProvider { provider: p, .. } => {
            format!("provider:{}", p.name)
        }
        Command::DeleteProvider { name } => format!("provider:{name}"),
        Command::CreateRoute(r) | Command::UpdateRoute(r) => format!("route:{}", r.name),
        Command::DeleteRoute { name } => format!("route:{name}"),
        Command::CreateKey(k) | Command::CreateKeyWithQuota { key: k, .. } => {
            format!("key:{}", k.id)
        }
        Command::SetKeyEnabled { id, .. }
        | Command::RevokeKey { id }
        | Command::DeleteKey { id } => {
            format!("key:{id}")
        }
        Command::CreateAdminToken(t) => format!("admin_token:{}", t.id),
        Command::DeleteAdminToken { id } => format!("admin_token:{id}"),
        Command::SetQuota { scope, .. } => quota_target(scope),
        Command::RestoreConfig { .. } => "config".to_owned(),
        Command::NoteClusterChange(change) => format!("node:{}", change.node),
        Command::Idempotent(write) => target(&write.command)?,
        Command::GrantLeases { .. }
        | Command::ReturnLeases { .. }
        | Command::RecordUsage(_)
        | Command::CompactUsage { .. }
        | Command::CompactAudit { .. }
        | Command::RegisterSubject(_)
        | Command::Audited(_) => {
            return Err(ApplyError::invalid(
                "command",
                format!("`{}` is not an admin write", command.kind()),
            ))
        }
    })
}

fn quota_target(scope: &Scope) -> String {
    match scope {
        Scope::Key { key_id } => format!("quota:key:{key_id}"),
        Scope::KeyRoute { key_id, route } => format!("quota:key:{key_id}:route:{route}"),
    }
}

/// The object an applied command left (`None`: deleted or none).
pub(crate) fn after(command: &Command, applied: &Applied) -> Option<Subject> {
    match applied {
        Applied::Provider(p) => Some(Subject::Provider(Provider::clone(p))),
        Applied::Route(r) => Some(Subject::Route(r.clone())),
        Applied::Key(k) => Some(match unwrap(command) {
            Command::CreateKeyWithQuota { policy, .. } => {
                Subject::KeyWithQuota(k.clone(), policy.clone())
            }
            _ => Subject::Key(k.clone()),
        }),
        Applied::AdminToken(t) => Some(Subject::AdminToken(t.clone())),
        Applied::Quota(policy) => match unwrap(command) {
            Command::SetQuota { scope, .. } => Some(Subject::Quota {
                scope: scope.clone(),
                policy: policy.clone(),
            }),
            _ => None,
        },
        Applied::Restored(counts) => Some(Subject::Config(*counts)),
        Applied::Noted => match unwrap(command) {
            Command::NoteClusterChange(change) => Some(Subject::Cluster(change.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// The command inside a keyed write.
pub(crate) fn unwrap(command: &Command) -> &Command {
    match command {
        Command::Idempotent(write) => &write.command,
        other => other,
    }
}

#[cfg(test)]
mod tests;
