//! The node configuration file (TOML): parsing, validation and the typed
//! [`Config`] the rest of the binary uses.
//!
//! Loading is two steps. [`parse`] reads the file into [`RawConfig`]: every
//! struct denies unknown fields and a bad type or a typo is reported with its
//! field path (`listen.admn: unknown field ...`). [`validate`] then consumes the
//! raw config, checks every field (addresses, URLs, files, cross-field rules)
//! and collects *every* problem before failing, so an operator fixes a config
//! in one round. `docs/configuration.md` documents every field.
//!
//! # Layout
//! * `raw`: the file as written; also what `sluice init` serializes.
//! * `check`: per-field checks that record problems and return typed values.
//! * `tls`: checks of the PEM files named in `[tls]`.
//! * `telemetry`: `[tracing]`, the OpenTelemetry export settings.
//! * `connections`: a listener's connection limits (`[proxy]`, `[admin]`).

mod check;
mod connections;
mod raw;
mod telemetry;
#[cfg(test)]
mod tests;
mod tls;
mod usage;

pub use usage::UsageSettings;

/// Default `[admin] audit_retention_days`: a year.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u64 = 365;

pub use raw::{
    LogFormat, RawAdmin, RawAdvertise, RawCluster, RawConfig, RawLimits, RawListen, RawLog,
    RawMember, RawRaft, RawSecrets, RawTls, RawTracing, RawUsage, DEFAULT_LOG_LEVEL,
    DEFAULT_MAX_BODY_BYTES,
};
pub use telemetry::{OtlpSettings, TracingSettings, DEFAULT_SERVICE_NAME};

pub use tls::certificate_expiries;

use check::{is_cluster_id, Problems};
use sluice_core::DataKey;
use sluice_raft::tls::TlsFiles;
use sluice_raft::{Bootstrap, Member, NodeOptions, RaftTiming};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default `[proxy] drain_timeout_ms`: in-flight requests get 10 s on shutdown.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

/// What a node does between SIGTERM and exit (`[proxy] shutdown_delay_ms`
/// and `drain_timeout_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// After SIGTERM the node answers `/readyz` with 503 but keeps accepting
    /// for this long, so load balancers that health-check it stop sending
    /// before its listeners close.
    pub delay: Duration,
    /// Then it stops accepting; in-flight requests may finish for this long.
    pub drain: Duration,
}

/// The file name `sluice init` gives each node's configuration.
pub const CONFIG_FILE_NAME: &str = "sluice.toml";

/// A validated node configuration. Paths are absolute or relative to the
/// working directory (never to the config file any more).
#[derive(Debug, Clone)]
pub struct Config {
    pub cluster_id: String,
    pub node_id: u64,
    /// Where Raft keeps its sled database.
    pub data_dir: PathBuf,
    pub listen: Listen,
    /// How other nodes (`raft_addr`) and clients (`admin_url`, `proxy_url`)
    /// reach this node: `[advertise]`, each field defaulting from `[listen]`.
    pub advertise: Member,
    pub tls: TlsFiles,
    /// The file the data key was read from (for messages only).
    pub data_key_file: PathBuf,
    /// The cluster's data key; its `Debug` shows only a fingerprint.
    pub data_key: DataKey,
    /// SHA-256 of each accepted bootstrap admin token (`[admin] token_sha256`).
    pub admin_token_hashes: Vec<[u8; 32]>,
    /// The admin listener's connection limits (`[admin]`).
    pub admin_connections: sluice_proxy::ConnectionLimits,
    /// `[admin] audit_retention_days`: audit entries older than this are
    /// compacted away while this node leads.
    pub audit_retention_days: u64,
    /// `[cluster]`: `initial_members` or `join`.
    pub bootstrap: Bootstrap,
    pub raft: RaftTiming,
    pub log: LogSettings,
    pub limits: Limits,
    /// The data plane's settings (`[proxy]` and `[limits]`).
    pub proxy: sluice_proxy::ProxyConfig,
    /// TLS on the proxy listener, if configured.
    pub proxy_tls: Option<sluice_proxy::TlsFiles>,
    /// TLS on the admin listener: `None` only with `[admin] plain_http =
    /// true`.
    pub admin_tls: Option<sluice_proxy::TlsFiles>,
    /// Delay and drain on SIGTERM.
    pub shutdown: Shutdown,
    /// `[quotas]`: the lease rounds.
    pub quotas: sluice_quota::QuotaConfig,
    /// `[usage]`: flushes of usage roll-ups and their retention.
    pub usage: UsageSettings,
    /// `[tracing]`: OpenTelemetry export.
    pub tracing: TracingSettings,
}

/// `[listen]`: the sockets this node binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// TCP, the data plane.
    pub proxy: SocketAddr,
    /// TCP, the admin API.
    pub admin: SocketAddr,
    /// UDP, QUIC between cluster members.
    pub raft: SocketAddr,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// A `tracing_subscriber::EnvFilter` directive (already checked to parse).
    pub level: String,
    pub format: LogFormat,
}

/// `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: u64,
}

impl Config {
    /// The options `sluice_raft::ClusterNode::start` takes.
    pub fn node_options(&self) -> NodeOptions {
        NodeOptions {
            cluster_id: self.cluster_id.clone(),
            node_id: self.node_id,
            data_dir: self.data_dir.clone(),
            listen_raft: self.listen.raft,
            advertise: self.advertise.clone(),
            tls: self.tls.clone(),
            bootstrap: self.bootstrap.clone(),
            timing: self.raft.clone(),
        }
    }
}

/// One problem with a configuration, naming the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `cluster.initial_members[1].raft`;
    /// empty when the problem is with the file as a whole.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "invalid configuration {} ({n} problem{}):",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for error in &self.errors {
            write!(f, "\n  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads, parses and validates the configuration file at `path`. Relative
/// paths inside it are resolved against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let fail = |errors| ConfigErrors {
        file: path.to_path_buf(),
        errors,
    };
    let whole_file = |message: String| {
        fail(vec![ConfigError {
            field: String::new(),
            message,
        }])
    };
    let text = std::fs::read_to_string(path)
        .map_err(|err| whole_file(format!("cannot read the file: {err}")))?;
    let raw = parse(&text).map_err(|err| fail(vec![err]))?;
    let absolute = std::path::absolute(path)
        .map_err(|err| whole_file(format!("cannot make the path absolute: {err}")))?;
    let config_dir = absolute.parent().unwrap_or(Path::new("/"));
    validate(raw, config_dir).map_err(fail)
}

/// Parses TOML text into the raw configuration. A syntax error, a wrong type
/// or an unknown field is reported with its field path and line.
pub fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let mut message = inner.message().trim_end().to_string();
        if let Some(span) = inner.span() {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            message.push_str(&format!(" (line {line}, column {column})"));
        }
        ConfigError {
            field: if path == "." { String::new() } else { path },
            message,
        }
    })
}

/// Checks every field of `raw` and builds the typed [`Config`], or returns
/// every problem found. Relative paths are resolved against `config_dir`.
pub fn validate(raw: RawConfig, config_dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut p = Problems::default();

    if !is_cluster_id(&raw.cluster_id) {
        p.push(
            "cluster_id",
            format!(
                "`{}` must be 1-64 characters of a-z, 0-9 and -",
                raw.cluster_id
            ),
        );
    }
    if raw.node_id == 0 {
        p.push("node_id", "must be >= 1");
    }
    let data_dir = p.path("data_dir", &raw.data_dir, config_dir);

    let listen_proxy = p.socket_addr("listen.proxy", &raw.listen.proxy);
    let listen_admin = p.socket_addr("listen.admin", &raw.listen.admin);
    let listen_raft = p.socket_addr("listen.raft", &raw.listen.raft);
    if let (Some(proxy), Some(admin)) = (listen_proxy, listen_admin) {
        if proxy == admin {
            p.push(
                "listen.admin",
                format!("{admin} is also listen.proxy; the two TCP listeners need different ports"),
            );
        }
    }

    let tls = tls_files(&mut p, &raw.tls, config_dir);
    let data_key = data_key(&mut p, &raw.secrets, config_dir);
    let admin_token_hashes = token_hashes(&mut p, &raw.admin);
    let admin_connections = connections::connection_limits(
        &mut p,
        "admin",
        "admin.max_header_bytes",
        connections::RawConnectionLimits {
            first_request_timeout_ms: raw.admin.first_request_timeout_ms,
            header_read_timeout_ms: raw.admin.header_read_timeout_ms,
            idle_timeout_ms: raw.admin.idle_timeout_ms,
            max_header_bytes: raw.admin.max_header_bytes,
            max_headers: raw.admin.max_headers,
            max_connections: raw.admin.max_connections,
        },
        connections::admin_defaults(),
    );
    let audit_retention_days = match raw.admin.audit_retention_days {
        None => DEFAULT_AUDIT_RETENTION_DAYS,
        Some(days) if (1..=3_650).contains(&days) => days,
        Some(_) => {
            p.push("admin.audit_retention_days", "must be between 1 and 3650");
            DEFAULT_AUDIT_RETENTION_DAYS
        }
    };
    let (mut proxy_config, proxy_tls, shutdown) =
        proxy_settings(&mut p, &raw.proxy, &raw.limits, config_dir);
    let admin_tls = admin_tls(&mut p, &raw.admin, config_dir);
    let advertise = advertise(
        &mut p,
        &raw.advertise,
        listen_raft,
        (listen_admin, admin_tls.is_some()),
        listen_proxy,
    );
    let bootstrap = bootstrap(&mut p, raw.cluster, raw.node_id, advertise.as_ref());
    let timing = raft_timing(&mut p, &raw.raft);

    if let Err(err) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
        p.push(
            "log.level",
            format!("`{}` is not a valid filter directive: {err}", raw.log.level),
        );
    }
    if raw.limits.max_body_bytes == 0 {
        p.push("limits.max_body_bytes", "must be > 0");
    }
    let quotas = quota_settings(&mut p, &raw.quotas, &mut proxy_config);
    let usage = usage::settings(&mut p, &raw.usage);
    let tracing = telemetry::tracing_settings(&mut p, &raw.tracing);

    match (
        data_dir,
        listen_proxy,
        listen_admin,
        listen_raft,
        advertise,
        tls,
        data_key,
        bootstrap,
    ) {
        (
            Some(data_dir),
            Some(proxy),
            Some(admin),
            Some(raft),
            Some(advertise),
            Some(tls),
            Some((data_key_file, data_key)),
            Some(bootstrap),
        ) if p.0.is_empty() => Ok(Config {
            cluster_id: raw.cluster_id,
            node_id: raw.node_id,
            data_dir,
            listen: Listen { proxy, admin, raft },
            advertise,
            tls,
            data_key_file,
            data_key,
            admin_token_hashes,
            admin_connections,
            audit_retention_days,
            bootstrap,
            raft: timing,
            log: LogSettings {
                level: raw.log.level,
                format: raw.log.format,
            },
            limits: Limits {
                max_body_bytes: raw.limits.max_body_bytes,
            },
            proxy: proxy_config,
            proxy_tls,
            admin_tls,
            shutdown,
            quotas,
            usage,
            tracing,
        }),
        _ => {
            if p.0.is_empty() {
                // Every `None` above comes with a recorded problem; this is a
                // guard against a check that forgets to record one.
                p.push("", "configuration is incomplete");
            }
            Err(p.0)
        }
    }
}

/// `[quotas]`, over `QuotaConfig`'s defaults.
fn quota_settings(
    p: &mut Problems,
    raw: &raw::RawQuotas,
    proxy: &mut sluice_proxy::ProxyConfig,
) -> sluice_quota::QuotaConfig {
    let mut c = sluice_quota::QuotaConfig::default();
    let mut set = |field: &str, value: Option<u64>, min: u64, max: u64, out: &mut u64| {
        if let Some(v) = value {
            if v < min || v > max {
                p.push(field, format!("must be between {min} and {max}"));
            } else {
                *out = v;
            }
        }
    };
    set("quotas.tick_ms", raw.tick_ms, 10, 10_000, &mut c.tick_ms);
    set(
        "quotas.lease_ttl_ms",
        raw.lease_ttl_ms,
        100,
        sluice_core::quota::MAX_LEASE_TTL_MS,
        &mut c.lease_ttl_ms,
    );
    set(
        "quotas.max_wait_ms",
        raw.max_wait_ms,
        0,
        60_000,
        &mut c.max_wait_ms,
    );
    set(
        "quotas.standing_ms",
        raw.standing_ms,
        0,
        60_000,
        &mut c.standing_ms,
    );
    set(
        "quotas.completion_estimate_tokens",
        raw.completion_estimate_tokens,
        1,
        10_000_000,
        &mut proxy.completion_estimate_tokens,
    );
    if c.lease_ttl_ms < 2 * c.tick_ms {
        p.push(
            "quotas.lease_ttl_ms",
            format!(
                "must be at least twice quotas.tick_ms ({} ms), or leases expire before the next round",
                c.tick_ms
            ),
        );
    }
    c
}

/// `[proxy]` and the proxy's `[limits]`, over `ProxyConfig`'s defaults.
fn proxy_settings(
    p: &mut Problems,
    raw: &raw::RawProxy,
    limits: &raw::RawLimits,
    config_dir: &Path,
) -> (
    sluice_proxy::ProxyConfig,
    Option<sluice_proxy::TlsFiles>,
    Shutdown,
) {
    let mut c = sluice_proxy::ProxyConfig {
        max_body_bytes: usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX),
        ..Default::default()
    };
    let mut ms = |field: &str, value: Option<u64>, min: u64, max: u64, out: &mut Duration| {
        if let Some(v) = value {
            if v < min || v > max {
                p.push(field, format!("must be between {min} and {max}"));
            } else {
                *out = Duration::from_millis(v);
            }
        }
    };
    ms(
        "proxy.backoff_base_ms",
        raw.backoff_base_ms,
        0,
        60_000,
        &mut c.backoff_base,
    );
    ms(
        "proxy.backoff_max_ms",
        raw.backoff_max_ms,
        0,
        600_000,
        &mut c.backoff_max,
    );
    ms(
        "proxy.breaker_cooldown_ms",
        raw.breaker_cooldown_ms,
        1,
        3_600_000,
        &mut c.breaker_cooldown,
    );
    ms(
        "proxy.body_read_timeout_ms",
        raw.body_read_timeout_ms,
        1,
        3_600_000,
        &mut c.body_read_timeout,
    );
    let mut shutdown = Shutdown {
        delay: Duration::ZERO,
        drain: DEFAULT_DRAIN,
    };
    ms(
        "proxy.drain_timeout_ms",
        raw.drain_timeout_ms,
        0,
        3_600_000,
        &mut shutdown.drain,
    );
    ms(
        "proxy.shutdown_delay_ms",
        raw.shutdown_delay_ms,
        0,
        600_000,
        &mut shutdown.delay,
    );
    match raw.threads {
        Some(t) if !(1..=256).contains(&t) => p.push("proxy.threads", "must be between 1 and 256"),
        Some(t) => c.threads = t as usize,
        None => {}
    }
    match raw.retries {
        Some(r) if r > 10 => p.push("proxy.retries", "must be between 0 and 10"),
        Some(r) => c.retries = r,
        None => {}
    }
    match raw.breaker_failures {
        Some(0) => p.push("proxy.breaker_failures", "must be >= 1"),
        Some(n) => c.breaker_failures = n,
        None => {}
    }
    match raw.anthropic_default_max_tokens {
        Some(0) => p.push("proxy.anthropic_default_max_tokens", "must be >= 1"),
        Some(n) => c.anthropic_default_max_tokens = n,
        None => {}
    }
    let connections = connections::connection_limits(
        p,
        "proxy",
        "limits.max_header_bytes",
        connections::RawConnectionLimits {
            first_request_timeout_ms: raw.first_request_timeout_ms,
            header_read_timeout_ms: raw.header_read_timeout_ms,
            idle_timeout_ms: raw.idle_timeout_ms,
            max_header_bytes: limits.max_header_bytes,
            max_headers: raw.max_headers,
            max_connections: raw.max_connections,
        },
        c.connections(),
    );
    c.first_request_timeout = connections.first_request_timeout;
    c.header_read_timeout = connections.header_read_timeout;
    c.idle_timeout = connections.idle_timeout;
    c.max_header_bytes = connections.max_header_bytes;
    c.max_headers = connections.max_headers;
    c.max_connections = connections.max_connections;
    match limits.max_response_bytes {
        Some(0) => p.push("limits.max_response_bytes", "must be > 0"),
        Some(n) => c.max_response_bytes = usize::try_from(n).unwrap_or(usize::MAX),
        None => {}
    }
    for (provider, file) in &raw.upstream_ca {
        let field = format!("proxy.upstream_ca.{provider}");
        let Some(path) = p.path(&field, file, config_dir) else {
            continue;
        };
        match std::fs::read(&path) {
            Ok(pem) => {
                match sluice_providers::UpstreamClient::new(sluice_providers::ClientOptions {
                    extra_ca_pem: Some(pem.clone()),
                    ..Default::default()
                }) {
                    Ok(_) => {
                        c.upstream_ca.insert(provider.clone(), pem);
                    }
                    Err(e) => p.push(&field, format!("{}: {e}", path.display())),
                }
            }
            Err(e) => p.push(&field, format!("cannot read {}: {e}", path.display())),
        }
    }
    c.jwt_issuers = jwt_issuers(p, &raw.jwt_issuers);
    if raw.accept_virtual_keys == Some(false) {
        if raw.jwt_issuers.is_empty() {
            p.push(
                "proxy.accept_virtual_keys",
                "false needs [[proxy.jwt_issuers]]: with neither, no client could authenticate",
            );
        }
        c.accept_virtual_keys = false;
    }
    let tls = listener_tls(p, "proxy", &raw.tls_cert, &raw.tls_key, config_dir);
    (c, tls, shutdown)
}

/// Default `clock_skew_s` of a JWT issuer, and the most it may be.
const DEFAULT_JWT_CLOCK_SKEW_S: u64 = 60;
const MAX_JWT_CLOCK_SKEW_S: u64 = 300;

/// `[[proxy.jwt_issuers]]`, checked: names unique identifiers, `iss`
/// values unique, the JWKS URL https (or http on loopback: a key set
/// fetched in clear from another host could be anyone's), key templates
/// key ids, and some way to a template.
fn jwt_issuers(p: &mut Problems, raw: &[raw::RawJwtIssuer]) -> Vec<sluice_proxy::JwtIssuer> {
    let mut issuers: Vec<sluice_proxy::JwtIssuer> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let earlier = &raw[..i];
        let at = |field: &str| format!("proxy.jwt_issuers[{i}].{field}");
        let problems_before = p.0.len();
        if sluice_core::name::check_ident("name", &r.name).is_err() {
            p.push(
                at("name"),
                "must be 1-64 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit",
            );
        }
        if earlier.iter().any(|other| other.name == r.name) {
            p.push(at("name"), format!("`{}` is named twice", r.name));
        }
        if r.issuer.is_empty() {
            p.push(at("issuer"), "must be the `iss` its tokens carry");
        }
        if earlier.iter().any(|other| other.issuer == r.issuer) {
            p.push(at("issuer"), format!("`{}` is listed twice", r.issuer));
        }
        if r.audience.is_empty() {
            p.push(
                at("audience"),
                "must be the `aud` its tokens carry for this gateway",
            );
        }
        let jwks_url = match p.base_url(&at("jwks_url"), &r.jwks_url) {
            Some(url) => {
                let loopback = reqwest::Url::parse(&url).ok().is_some_and(|u| {
                    let host = u.host_str().unwrap_or_default();
                    let bare = host.trim_start_matches('[').trim_end_matches(']');
                    host == "localhost"
                        || bare
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                });
                if url.starts_with("http://") && !loopback {
                    p.push(
                        at("jwks_url"),
                        format!("`{url}`: must be https (plain http only on loopback)"),
                    );
                }
                url.parse::<http::Uri>().ok()
            }
            None => None,
        };
        let key_id = |p: &mut Problems, field: String, id: &str| {
            if !sluice_core::key::is_key_id(id) {
                p.push(
                    field,
                    format!("`{id}` is not a key id (`key_` and 16 hex digits)"),
                );
            }
        };
        for (value, id) in &r.templates {
            key_id(p, at(&format!("templates.{value}")), id);
        }
        if let Some(id) = &r.default_template {
            key_id(p, at("default_template"), id);
        }
        match (&r.template_claim, r.templates.is_empty()) {
            (Some(_), true) => p.push(
                at("templates"),
                "a template claim needs templates to select",
            ),
            (None, false) => p.push(
                at("template_claim"),
                "templates need the claim that selects them",
            ),
            _ => {}
        }
        if r.template_claim.is_none() && r.default_template.is_none() {
            p.push(
                at("default_template"),
                "set it, or `template_claim` and `templates`: a token must map to a key template",
            );
        }
        let skew = r.clock_skew_s.unwrap_or(DEFAULT_JWT_CLOCK_SKEW_S);
        if skew > MAX_JWT_CLOCK_SKEW_S {
            p.push(
                at("clock_skew_s"),
                format!("must be at most {MAX_JWT_CLOCK_SKEW_S}"),
            );
        }
        let subject_claim = r.subject_claim.clone().unwrap_or_else(|| "sub".into());
        if subject_claim.is_empty() {
            p.push(at("subject_claim"), "must name a claim");
        }
        let (Some(jwks_url), true) = (jwks_url, p.0.len() == problems_before) else {
            continue;
        };
        issuers.push(sluice_proxy::JwtIssuer {
            name: r.name.clone(),
            issuer: r.issuer.clone(),
            jwks_url,
            audience: r.audience.clone(),
            subject_claim,
            template_claim: r.template_claim.clone(),
            templates: r.templates.clone(),
            default_template: r.default_template.clone(),
            clock_skew: Duration::from_secs(skew),
        });
    }
    issuers
}

/// A listener's `tls_cert` and `tls_key` in `[section]`: both or neither,
/// and a usable acceptor from them.
fn listener_tls(
    p: &mut Problems,
    section: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    config_dir: &Path,
) -> Option<sluice_proxy::TlsFiles> {
    let (cert_field, key_field) = (format!("{section}.tls_cert"), format!("{section}.tls_key"));
    match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let cert = p.path(&cert_field, cert, config_dir);
            let key = p.path(&key_field, key, config_dir);
            let files = sluice_proxy::TlsFiles {
                cert: cert?,
                key: key?,
            };
            match files.acceptor() {
                Ok(_) => Some(files),
                Err(e) => {
                    p.push(&cert_field, e);
                    None
                }
            }
        }
        (Some(_), None) => {
            p.push(&key_field, format!("is required with {cert_field}"));
            None
        }
        (None, Some(_)) => {
            p.push(&cert_field, format!("is required with {key_field}"));
            None
        }
    }
}

/// `[admin]`'s TLS: HTTPS unless `plain_http = true` says otherwise, never
/// both, never neither.
fn admin_tls(
    p: &mut Problems,
    raw: &RawAdmin,
    config_dir: &Path,
) -> Option<sluice_proxy::TlsFiles> {
    let given = raw.tls_cert.is_some() || raw.tls_key.is_some();
    match (given, raw.plain_http.unwrap_or(false)) {
        (true, true) => p.push(
            "admin.plain_http",
            "is true, and admin.tls_cert is set too: serve the admin API over HTTPS \
             (remove plain_http) or plain HTTP (remove tls_cert and tls_key)",
        ),
        (false, false) => p.push(
            "admin.tls_cert",
            "is required: the admin API is served over HTTPS (`sluice init` writes each \
             node's admin.pem and admin-key.pem from the cluster CA); give admin.tls_cert \
             and admin.tls_key, or set admin.plain_http = true to serve plain HTTP",
        ),
        _ => {}
    }
    listener_tls(p, "admin", &raw.tls_cert, &raw.tls_key, config_dir)
}

/// `[advertise]`, each field defaulting from the matching listener unless
/// that listens on an unspecified address (the URLs `https://` when the
/// listener serves TLS).
fn advertise(
    p: &mut Problems,
    raw: &RawAdvertise,
    raft: Option<SocketAddr>,
    (admin, admin_tls): (Option<SocketAddr>, bool),
    proxy: Option<SocketAddr>,
) -> Option<Member> {
    let raft_addr = match &raw.raft {
        Some(value) => p.dial_addr("advertise.raft", value),
        None => from_listen(p, "advertise.raft", "listen.raft", raft, None),
    };
    let admin_url = match &raw.admin_url {
        Some(value) => p.base_url("advertise.admin_url", value),
        None => from_listen(
            p,
            "advertise.admin_url",
            "listen.admin",
            admin,
            Some(scheme(admin_tls)),
        ),
    };
    let proxy_url = match &raw.proxy_url {
        Some(value) => p.base_url("advertise.proxy_url", value),
        // `http` even with `[proxy] tls_cert`: the URL clients were given
        // before the proxy's TLS existed; set it to change it.
        None => from_listen(
            p,
            "advertise.proxy_url",
            "listen.proxy",
            proxy,
            Some("http"),
        ),
    };
    Some(Member {
        raft_addr: raft_addr?,
        admin_url: admin_url?,
        proxy_url: proxy_url?,
    })
}

fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// The default for an `[advertise]` field: the listener's address (a URL
/// of `scheme`, when given), unless it is unspecified (`0.0.0.0`, `::`),
/// which nobody can dial.
fn from_listen(
    p: &mut Problems,
    field: &str,
    listen_field: &str,
    addr: Option<SocketAddr>,
    scheme: Option<&str>,
) -> Option<String> {
    let addr = addr?;
    if addr.ip().is_unspecified() {
        p.push(
            field,
            format!(
                "must be set because {listen_field} ({addr}) is an unspecified address that peers and clients cannot dial"
            ),
        );
        return None;
    }
    Some(match scheme {
        Some(scheme) => format!("{scheme}://{addr}"),
        None => addr.to_string(),
    })
}

fn tls_files(p: &mut Problems, raw: &RawTls, config_dir: &Path) -> Option<TlsFiles> {
    let ca = p.readable_file("tls.ca_cert", &raw.ca_cert, config_dir);
    let cert = p.readable_file("tls.node_cert", &raw.node_cert, config_dir);
    let key = p.readable_file("tls.node_key", &raw.node_key, config_dir);
    let ((ca_cert, ca_bytes), (node_cert, cert_bytes), (node_key, key_bytes)) = (ca?, cert?, key?);
    tls::check(
        p,
        tls::TlsPems {
            ca_cert: (&ca_cert, &ca_bytes),
            node_cert: (&node_cert, &cert_bytes),
            node_key: (&node_key, &key_bytes),
        },
    );
    Some(TlsFiles {
        ca_cert,
        node_cert,
        node_key,
    })
}

fn data_key(p: &mut Problems, raw: &RawSecrets, config_dir: &Path) -> Option<(PathBuf, DataKey)> {
    const FIELD: &str = "secrets.data_key_file";
    let (path, bytes) = p.readable_file(FIELD, &raw.data_key_file, config_dir)?;
    // The message never includes the file's content: it is a secret.
    let parsed = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| DataKey::from_hex(text).ok());
    match parsed {
        Some(key) => Some((path, key)),
        None => {
            p.push(
                FIELD,
                format!(
                    "{} must hold the data key as 64 hex digits (32 bytes)",
                    path.display()
                ),
            );
            None
        }
    }
}

fn token_hashes(p: &mut Problems, raw: &RawAdmin) -> Vec<[u8; 32]> {
    if raw.token_sha256.is_empty() {
        p.push(
            "admin.token_sha256",
            "at least one admin token hash is required (sluice init writes one)",
        );
    }
    let mut hashes = Vec::with_capacity(raw.token_sha256.len());
    for (i, text) in raw.token_sha256.iter().enumerate() {
        let hash = hex::decode(text.trim())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
        match hash {
            Some(hash) => hashes.push(hash),
            None => p.push(
                format!("admin.token_sha256[{i}]"),
                "must be 64 hex digits (the SHA-256 of an admin token)",
            ),
        }
    }
    hashes
}

fn bootstrap(
    p: &mut Problems,
    raw: RawCluster,
    node_id: u64,
    advertise: Option<&Member>,
) -> Option<Bootstrap> {
    match (raw.initial_members, raw.join) {
        (Some(_), Some(_)) => {
            p.push(
                "cluster",
                "set either initial_members (to form a new cluster) or join (to join a running one), not both",
            );
            None
        }
        (None, None) => {
            p.push(
                "cluster",
                "set initial_members (to form a new cluster) or join (to join a running one)",
            );
            None
        }
        (Some(members), None) => {
            initial_members(p, &members, node_id, advertise).map(Bootstrap::InitialMembers)
        }
        (None, Some(join)) => join_addrs(p, &join, advertise).map(Bootstrap::Join),
    }
}

fn initial_members(
    p: &mut Problems,
    raw: &[RawMember],
    node_id: u64,
    advertise: Option<&Member>,
) -> Option<BTreeMap<u64, Member>> {
    const FIELD: &str = "cluster.initial_members";
    if raw.is_empty() {
        p.push(FIELD, "must list at least this node");
        return None;
    }
    let problems_before = p.0.len();
    let mut members = BTreeMap::new();
    let mut raft_owner: BTreeMap<String, u64> = BTreeMap::new();
    for (i, entry) in raw.iter().enumerate() {
        let at = format!("{FIELD}[{i}]");
        if entry.id == 0 {
            p.push(format!("{at}.id"), "must be >= 1");
        } else if members.contains_key(&entry.id) {
            p.push(
                format!("{at}.id"),
                format!("node id {} is listed twice", entry.id),
            );
        }
        let raft_addr = p.dial_addr(&format!("{at}.raft"), &entry.raft);
        let admin_url = p.base_url(&format!("{at}.admin_url"), &entry.admin_url);
        let proxy_url = p.base_url(&format!("{at}.proxy_url"), &entry.proxy_url);
        if let Some(raft_addr) = &raft_addr {
            if let Some(other) = raft_owner.insert(raft_addr.clone(), entry.id) {
                p.push(
                    format!("{at}.raft"),
                    format!("`{raft_addr}` is also node {other}'s raft address"),
                );
            }
        }
        if let (Some(raft_addr), Some(admin_url), Some(proxy_url)) =
            (raft_addr, admin_url, proxy_url)
        {
            members.entry(entry.id).or_insert(Member {
                raft_addr,
                admin_url,
                proxy_url,
            });
        }
    }
    match raw.iter().position(|m| m.id == node_id) {
        None => p.push(
            FIELD,
            format!(
                "this node (node_id = {node_id}) is not listed; a node outside the initial membership uses cluster.join"
            ),
        ),
        Some(i) => {
            if let (Some(own), Some(advertised)) = (members.get(&node_id), advertise) {
                let at = format!("{FIELD}[{i}]");
                for (field, listed, ours, source) in [
                    ("raft", &own.raft_addr, &advertised.raft_addr, "advertise.raft or listen.raft"),
                    ("admin_url", &own.admin_url, &advertised.admin_url, "advertise.admin_url or listen.admin"),
                    ("proxy_url", &own.proxy_url, &advertised.proxy_url, "advertise.proxy_url or listen.proxy"),
                ] {
                    if listed != ours {
                        p.push(
                            format!("{at}.{field}"),
                            format!("`{listed}` differs from this node's own address `{ours}` (from {source})"),
                        );
                    }
                }
            }
        }
    }
    (p.0.len() == problems_before).then_some(members)
}

fn join_addrs(p: &mut Problems, raw: &[String], advertise: Option<&Member>) -> Option<Vec<String>> {
    const FIELD: &str = "cluster.join";
    if raw.is_empty() {
        p.push(
            FIELD,
            "must list the raft address of at least one running member",
        );
        return None;
    }
    let problems_before = p.0.len();
    let mut addrs = Vec::with_capacity(raw.len());
    for (i, value) in raw.iter().enumerate() {
        let field = format!("{FIELD}[{i}]");
        if let Some(addr) = p.dial_addr(&field, value) {
            if advertise.is_some_and(|own| own.raft_addr == addr) {
                p.push(
                    field,
                    format!("`{addr}` is this node's own raft address; list running members"),
                );
            } else {
                addrs.push(addr);
            }
        }
    }
    (p.0.len() == problems_before).then_some(addrs)
}

fn raft_timing(p: &mut Problems, raw: &RawRaft) -> RaftTiming {
    let d = RaftTiming::default();
    let t = RaftTiming {
        heartbeat_interval_ms: raw.heartbeat_interval_ms.unwrap_or(d.heartbeat_interval_ms),
        election_timeout_min_ms: raw
            .election_timeout_min_ms
            .unwrap_or(d.election_timeout_min_ms),
        election_timeout_max_ms: raw
            .election_timeout_max_ms
            .unwrap_or(d.election_timeout_max_ms),
        rpc_timeout_ms: raw.rpc_timeout_ms.unwrap_or(d.rpc_timeout_ms),
        snapshot_every_logs: raw.snapshot_every_logs.unwrap_or(d.snapshot_every_logs),
        logs_to_keep: raw.logs_to_keep.unwrap_or(d.logs_to_keep),
    };
    if t.heartbeat_interval_ms == 0 {
        p.push("raft.heartbeat_interval_ms", "must be > 0");
    } else if t.heartbeat_interval_ms >= t.election_timeout_min_ms {
        p.push(
            "raft.heartbeat_interval_ms",
            format!(
                "{} must be less than raft.election_timeout_min_ms ({}), or followers start elections between heartbeats",
                t.heartbeat_interval_ms, t.election_timeout_min_ms
            ),
        );
    } else if t.leader_lease_ms() < t.heartbeat_interval_ms {
        p.push(
            "raft.election_timeout_min_ms",
            format!(
                "{} must be at least twice raft.heartbeat_interval_ms ({}): the leader lease \
                 (election_timeout_min_ms - heartbeat_interval_ms) must cover a heartbeat",
                t.election_timeout_min_ms, t.heartbeat_interval_ms
            ),
        );
    }
    if t.election_timeout_min_ms >= t.election_timeout_max_ms {
        p.push(
            "raft.election_timeout_min_ms",
            format!(
                "{} must be less than raft.election_timeout_max_ms ({})",
                t.election_timeout_min_ms, t.election_timeout_max_ms
            ),
        );
    }
    if t.rpc_timeout_ms == 0 {
        p.push("raft.rpc_timeout_ms", "must be > 0");
    }
    if t.snapshot_every_logs == 0 {
        p.push("raft.snapshot_every_logs", "must be > 0");
    }
    t
}
