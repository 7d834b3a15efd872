//! What goes into the Raft log: a [`Proposal`] is a [`Command`] stamped with the
//! leader's clock, and [`Applied`] is what applying it produced.

use crate::audit::{Audited, ClusterChange};
use crate::backup::{ConfigCounts, ConfigSnapshot};
use crate::idempotency::{Idempotent, Replay};
use crate::key::KeySubject;
use crate::quota::{Grant, QuotaPolicy, Return, Scope, Want};
use crate::usage::UsageBatch;
use crate::{AdminToken, Provider, Route, VirtualKey};
use serde::{Deserialize, Serialize};

/// A change to the replicated state. Every variant is validated by
/// [`crate::State::apply`]; an invalid one is refused and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateProvider(Provider),
    /// Replaces a provider by name (keeps its creation time). With
    /// `keep_api_key` the stored credential stays, whatever `provider.api_key`
    /// says, and with `keep_secret_headers` the stored secret headers stay,
    /// whatever `provider.secret_headers` says: decided when the command
    /// applies, so a concurrent credential change is never overwritten with
    /// a stale copy.
    UpdateProvider {
        provider: Provider,
        keep_api_key: bool,
        keep_secret_headers: bool,
    },
    DeleteProvider {
        name: String,
    },
    CreateRoute(Route),
    /// Replaces a route by name (keeps its creation time).
    UpdateRoute(Route),
    DeleteRoute {
        name: String,
    },
    CreateKey(VirtualKey),
    SetKeyEnabled {
        id: String,
        enabled: bool,
    },
    /// Revokes a key for good.
    RevokeKey {
        id: String,
    },
    DeleteKey {
        id: String,
    },
    CreateAdminToken(AdminToken),
    DeleteAdminToken {
        id: String,
    },
    /// Sets (or with `None` removes) the quota policy of a scope.
    SetQuota {
        scope: Scope,
        policy: Option<QuotaPolicy>,
    },
    /// One node's batched lease request for this tick.
    GrantLeases {
        node: u64,
        ttl_ms: u64,
        wants: Vec<Want>,
    },
    /// Lease a node will not spend, given back.
    ReturnLeases {
        node: u64,
        /// The batch's number, increasing over the node's life and across
        /// its restarts: a batch retried after an answer that never came is
        /// applied once.
        batch: u64,
        returns: Vec<Return>,
    },
    /// One node's usage roll-ups since its previous flush (counted once,
    /// however often it is proposed).
    RecordUsage(UsageBatch),
    /// Drops the usage roll-ups of minutes that start before `before_ms`
    /// and merges those before `hourly_before_ms` into hours (the leader
    /// proposes it with its clock minus each retention; see
    /// [`crate::usage::Rollups::compact`] for how the cutoffs round).
    CompactUsage {
        before_ms: u64,
        hourly_before_ms: u64,
    },
    /// Replaces the whole configuration with a backup's (see
    /// [`crate::backup`]). Refused when the state already holds any
    /// configuration, unless `force`. Quota buckets start full and no lease
    /// survives it.
    RestoreConfig {
        config: Box<ConfigSnapshot>,
        force: bool,
    },
    /// A write of a request sent with an idempotency key: applied at most
    /// once per key and step, answered from its record after that (see
    /// [`crate::idempotency`]).
    Idempotent(Box<Idempotent>),
    /// Drops the audit entries made before `before_ms` (the leader proposes
    /// it with its clock minus the configured retention).
    CompactAudit {
        before_ms: u64,
    },
    /// An admin write (plain or keyed) with who made it: applied as its
    /// command, and recorded in the audit log if it changed something
    /// (see [`crate::audit`]).
    Audited(Box<Audited>),
    /// A key and its own quota policy, created at once: no node ever
    /// serves the key without its limits (two commands left a moment, on a
    /// node that had applied the first, when the key was unlimited).
    CreateKeyWithQuota {
        key: VirtualKey,
        policy: QuotaPolicy,
    },
    /// A membership or leadership change the admin API made, for the audit
    /// log: changes nothing else, and is accepted only inside `Audited`.
    NoteClusterChange(ClusterChange),
    /// The key of a JWT subject, made on its first request (by whichever
    /// node saw it): its template's routes and quota policies, under its
    /// own id. Applied once: a subject that has its key gets that key back
    /// (several nodes may propose it for the same first requests).
    RegisterSubject(KeySubject),
}

impl Command {
    /// A short name for logs and metrics (no payload, so no secrets).
    pub fn kind(&self) -> &'static str {
        match self {
            Command::CreateProvider(_) => "create_provider",
            Command::UpdateProvider { .. } => "update_provider",
            Command::DeleteProvider { .. } => "delete_provider",
            Command::CreateRoute(_) => "create_route",
            Command::UpdateRoute(_) => "update_route",
            Command::DeleteRoute { .. } => "delete_route",
            Command::CreateKey(_) => "create_key",
            Command::SetKeyEnabled { .. } => "set_key_enabled",
            Command::RevokeKey { .. } => "revoke_key",
            Command::DeleteKey { .. } => "delete_key",
            Command::CreateAdminToken(_) => "create_admin_token",
            Command::DeleteAdminToken { .. } => "delete_admin_token",
            Command::SetQuota { .. } => "set_quota",
            Command::GrantLeases { .. } => "grant_leases",
            Command::ReturnLeases { .. } => "return_leases",
            Command::RecordUsage(_) => "record_usage",
            Command::CompactUsage { .. } => "compact_usage",
            Command::RestoreConfig { .. } => "restore_config",
            Command::Idempotent(write) => write.command.kind(),
            Command::CompactAudit { .. } => "compact_audit",
            Command::Audited(write) => write.command.kind(),
            Command::NoteClusterChange(change) => change.action.as_str(),
            Command::CreateKeyWithQuota { .. } => "create_key",
            Command::RegisterSubject(_) => "register_subject",
        }
    }
}

/// A command as proposed to the log: the leader stamps `at_ms` (milliseconds
/// since the Unix epoch) when it proposes, and `apply` takes time only from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub at_ms: u64,
    pub command: Command,
}

/// What applying a command produced: the entity as now stored, or nothing
/// for a deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    Provider(Box<Provider>),
    Route(Route),
    Key(VirtualKey),
    AdminToken(AdminToken),
    Deleted,
    /// A scope's quota policy as now stored (`None`: removed).
    Quota(Option<QuotaPolicy>),
    /// The grants of a `GrantLeases`, in the order of its wants (empty for
    /// a `ReturnLeases`).
    Leases(Vec<Grant>),
    /// A `RecordUsage`: `counted` is false when the batch had been applied
    /// before (a retry) and changed nothing.
    UsageRecorded {
        counted: bool,
    },
    /// A `CompactUsage`: how many roll-ups were dropped, and how many
    /// minute roll-ups were merged into hour ones.
    UsageCompacted {
        removed: u64,
        merged: u64,
    },
    /// What a `RestoreConfig` put in place.
    Restored(ConfigCounts),
    /// A `NoteClusterChange`, recorded.
    Noted,
    /// A `CompactAudit`: how many entries were dropped.
    AuditCompacted {
        removed: u64,
    },
    /// A `Command::Idempotent` whose key and step had applied before:
    /// nothing changed, and this is what the first application answered.
    Replayed(Box<Replay>),
}
