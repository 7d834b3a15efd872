//! The configuration file exactly as written: every field a string or number,
//! nothing checked beyond its TOML type. [`super::validate`] turns it into
//! [`super::Config`].
//!
//! Every struct denies unknown fields, so a typo (`listen.admn`) is an error
//! that names the field instead of a setting silently ignored. The same
//! structs are serialized by `sluice init`, so what it writes is by
//! construction what `load` reads.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Default `[limits] max_body_bytes`: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Default `[log] level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The whole node configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub cluster_id: String,
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub listen: RawListen,
    #[serde(default, skip_serializing_if = "RawAdvertise::is_empty")]
    pub advertise: RawAdvertise,
    pub tls: RawTls,
    pub secrets: RawSecrets,
    pub admin: RawAdmin,
    pub cluster: RawCluster,
    #[serde(default, skip_serializing_if = "RawRaft::is_empty")]
    pub raft: RawRaft,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default, skip_serializing_if = "RawProxy::is_empty")]
    pub proxy: RawProxy,
    #[serde(default, skip_serializing_if = "RawQuotas::is_empty")]
    pub quotas: RawQuotas,
    #[serde(default, skip_serializing_if = "RawUsage::is_empty")]
    pub usage: RawUsage,
    #[serde(default, skip_serializing_if = "RawTracing::is_empty")]
    pub tracing: RawTracing,
}

/// `[listen]`: the sockets this node binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// TCP, the data plane.
    pub proxy: String,
    /// TCP, the admin API.
    pub admin: String,
    /// UDP, QUIC between cluster members.
    pub raft: String,
}

/// `[advertise]`: how other nodes and clients reach this node, when that
/// differs from `[listen]` (NAT, containers, listening on `0.0.0.0`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdvertise {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
}

impl RawAdvertise {
    pub fn is_empty(&self) -> bool {
        self.raft.is_none() && self.admin_url.is_none() && self.proxy_url.is_none()
    }
}

/// `[tls]`: PEM files for the mutual-TLS QUIC transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_cert: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
}

/// `[secrets]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    /// File holding the cluster data key as 64 hex digits.
    pub data_key_file: PathBuf,
}

/// `[admin]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// SHA-256 (hex) of each accepted bootstrap admin token.
    pub token_sha256: Vec<String>,
    /// A connection's first request must arrive within this of accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_request_timeout_ms: Option<u64>,
    /// A client must send its request head within this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_ms: Option<u64>,
    /// A connection with no request in flight this long is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Largest request head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<u64>,
    /// Most header fields in a request head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<u64>,
    /// Most open connections on the admin listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Days of audit entries the cluster keeps (the leader's setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_retention_days: Option<u64>,
    /// The admin listener's certificate chain (PEM): HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Serve the admin API over plain HTTP instead (never the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_http: Option<bool>,
}

/// `[cluster]`: how a fresh node becomes a member. Exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_members: Option<Vec<RawMember>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<Vec<String>>,
}

/// One entry of `cluster.initial_members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMember {
    pub id: u64,
    pub raft: String,
    pub admin_url: String,
    pub proxy_url: String,
}

/// `[raft]`: every field optional, defaults from `sluice_raft::RaftTiming`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRaft {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_timeout_min_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_timeout_max_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_every_logs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_to_keep: Option<u64>,
}

impl RawRaft {
    pub fn is_empty(&self) -> bool {
        *self == RawRaft::default()
    }

    /// Every value set explicitly, as `sluice init` writes them.
    pub fn from_timing(timing: &sluice_raft::RaftTiming) -> Self {
        RawRaft {
            heartbeat_interval_ms: Some(timing.heartbeat_interval_ms),
            election_timeout_min_ms: Some(timing.election_timeout_min_ms),
            election_timeout_max_ms: Some(timing.election_timeout_max_ms),
            rpc_timeout_ms: Some(timing.rpc_timeout_ms),
            snapshot_every_logs: Some(timing.snapshot_every_logs),
            logs_to_keep: Some(timing.logs_to_keep),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// A `tracing_subscriber::EnvFilter` directive, e.g. `info,sluice_raft=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

fn default_log_level() -> String {
    DEFAULT_LOG_LEVEL.to_string()
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[proxy]`: the data plane. Every field optional; the defaults are
/// `sluice_proxy::ProxyConfig::default()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// PEM certificate chain: serve the proxy over TLS (with `tls_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Worker threads serving the proxy listener (default: one per core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Retries on a route after the first attempt, before its fallbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_base_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u64>,
    /// Consecutive failures that open a deployment's circuit breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_cooldown_ms: Option<u64>,
    /// A client must send its request head within this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_ms: Option<u64>,
    /// A connection's first request must arrive within this of accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_request_timeout_ms: Option<u64>,
    /// A connection with no request in flight this long is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Most header fields in a request head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<u64>,
    /// Most open connections on the proxy listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// A client must send its whole body within this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_read_timeout_ms: Option<u64>,
    /// `max_tokens` sent to Anthropic when an OpenAI client set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic_default_max_tokens: Option<u32>,
    /// On shutdown, how long in-flight requests and streams may finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout_ms: Option<u64>,
    /// On SIGTERM, how long the node keeps serving while `/readyz` says 503,
    /// before it stops accepting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_delay_ms: Option<u64>,
    /// `[proxy.upstream_ca]`: provider name -> PEM file of extra CA
    /// certificates trusted for that provider's upstream.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstream_ca: BTreeMap<String, PathBuf>,
    /// `[[proxy.jwt_issuers]]`: identity providers whose JWTs clients may
    /// authenticate with, besides virtual keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_issuers: Vec<RawJwtIssuer>,
    /// `false`: clients authenticate with `jwt_issuers`' tokens only, not
    /// virtual keys (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_virtual_keys: Option<bool>,
}

/// One `[[proxy.jwt_issuers]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtIssuer {
    /// The issuer's name in Sluice (subject keys are named by it).
    pub name: String,
    /// The `iss` claim its tokens carry, exactly.
    pub issuer: String,
    /// Its JWKS (https, or http on loopback).
    pub jwks_url: String,
    /// What the tokens' `aud` must hold.
    pub audience: String,
    /// The claim naming the subject (default `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_claim: Option<String>,
    /// The claim whose value selects a key template from `templates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_claim: Option<String>,
    /// Key template (a key id) by the template claim's value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, String>,
    /// The key template (a key id) of tokens whose claim selects none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_template: Option<String>,
    /// How far `exp` and `nbf` may be off this node's clock (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_s: Option<u64>,
}

impl RawProxy {
    pub fn is_empty(&self) -> bool {
        *self == RawProxy::default()
    }
}

/// `[quotas]`: how this node takes leases from the global quota ledger.
/// Every field optional; the defaults are `sluice_quota::QuotaConfig`'s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuotas {
    /// Time between two lease rounds (one `GrantLeases` each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_ms: Option<u64>,
    /// How long a granted lease stays spendable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl_ms: Option<u64>,
    /// Longest a request waits for a lease round when its pool ran dry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_ms: Option<u64>,
    /// The standing reserves of all nodes together hold what a limit
    /// refills in this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing_ms: Option<u64>,
    /// Completion tokens reserved for a request without `max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_estimate_tokens: Option<u64>,
}

impl RawQuotas {
    pub fn is_empty(&self) -> bool {
        *self == RawQuotas::default()
    }
}

/// `[usage]`: how this node replicates its usage roll-ups. Every field
/// optional; the defaults are [`super::UsageSettings`]'s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    /// Time between two flushes (one `RecordUsage` each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_interval_ms: Option<u64>,
    /// Days of roll-ups the cluster keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u64>,
    /// Hours of per-minute roll-ups; older ones are kept per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minute_retention_hours: Option<u64>,
}

impl RawUsage {
    pub fn is_empty(&self) -> bool {
        *self == RawUsage::default()
    }
}

/// `[tracing]`: OpenTelemetry export of the request spans. Every field
/// optional; without `otlp_endpoint` nothing is exported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// OTLP/HTTP collector, e.g. `http://127.0.0.1:4318` (spans are POSTed
    /// to `/v1/traces` under it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans (default `sluice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Share of requests traced, 0.0 ..= 1.0 (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
}

impl RawTracing {
    pub fn is_empty(&self) -> bool {
        *self == RawTracing::default()
    }
}

/// `[limits]`: sizes the proxy accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest request body the proxy accepts; bigger requests get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Largest request head (request line and headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<u64>,
    /// Largest non-streamed upstream answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_header_bytes: None,
            max_response_bytes: None,
        }
    }
}

fn default_max_body_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}
