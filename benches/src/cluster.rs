//! The Sluice targets of the `load` and `scale_out` benches: a cluster of
//! real processes in front of the mock provider, with or without a quota on
//! the bench's key, and what the bench reads from its nodes around each run.
//!
//! * [`builder`] plans a cluster whose first nodes form it and whose others
//!   join as learners ([`Started::add_learner`]), as an operator adds a node
//!   for a peak.
//! * [`start`] writes a provider on the mock, the route `mock-gpt` and a
//!   virtual key; with [`KeyQuota::NeverRefusing`] the key gets `rpm` and
//!   `tpm` far above any load this machine can offer, so every request goes
//!   through admission, token estimation and settlement and none is refused.
//! * [`Nodes`] reads each node's Raft log index at the edges of a run's
//!   measured window ([`LogGrowth`]: entries appended per second, the lease
//!   rounds' cost) and the proxies' quota counters before and after the run
//!   ([`QuotaCounts`]: every decision, and every 429 answered).

use crate::load::{Endpoint, Workload};
use serde_json::{json, Value};
use sluice_e2e::dataplane::Reply;
use sluice_e2e::{Admin, Cluster, ClusterBuilder, ProxyClient};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The request every load bench sends: a small non-streaming chat
/// completion on the route [`start`] writes.
pub const CHAT_BODY: &str =
    r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hello"}]}"#;
pub const CHAT_PATH: &str = "/v1/chat/completions";

/// [`CHAT_BODY`] to `endpoints` (round robin), 5 s per request.
pub fn chat_workload(endpoints: Vec<Endpoint>) -> Workload {
    Workload {
        endpoints,
        path: CHAT_PATH.into(),
        body: CHAT_BODY.into(),
        request_timeout: Duration::from_secs(5),
    }
}

/// `[quotas] tick_ms` of every node: Sluice's default, written out so the
/// bound on lease entries below follows the nodes' real setting.
pub const QUOTA_TICK_MS: u64 = 100;
/// `rpm` and `tpm` of [`KeyQuota::NeverRefusing`]: a bucket of 10⁹ refilled
/// at 16.7 million per second, against at most 100 000 requests/s here
/// of about 1 030 estimated tokens each (the prompt plus the default
/// completion estimate of 1 024), settled at their usage.
pub const NEVER_REFUSING: u64 = 1_000_000_000;

/// The quota on the bench's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyQuota {
    /// No policy: the proxy skips admission.
    None,
    /// `rpm` and `tpm` of [`NEVER_REFUSING`].
    NeverRefusing,
}

/// Most Raft entries a cluster of `nodes` spends on leases per second: each
/// node proposes at most one `GrantLeases` and one `ReturnLeases` per tick.
pub fn lease_entries_bound(nodes: usize) -> f64 {
    2.0 * nodes as f64 * 1000.0 / QUOTA_TICK_MS as f64
}

/// A started bench cluster.
pub struct Started {
    pub cluster: Cluster,
    /// Every node's proxy listener, with the key.
    pub endpoints: Vec<Endpoint>,
    /// The bench key's id (for `PATCH /admin/v1/keys/{id}`).
    pub key_id: String,
    key: String,
}

/// What every bench cluster starts from: `nodes` planned, the first
/// `voters` of them forming it (the others join as learners when started,
/// [`Started::add_learner`]), the benches' budget and quota tick.
pub fn builder(nodes: u64, voters: u64) -> ClusterBuilder {
    Cluster::builder()
        .nodes(nodes)
        .initial(voters)
        .budget(Duration::from_secs(900))
        .config_extra(format!("[quotas]\ntick_ms = {QUOTA_TICK_MS}\n"))
}

/// A cluster of `nodes` voters with a provider on the mock, route
/// `mock-gpt` and a virtual key with `quota`.
pub fn start(nodes: u64, mock: SocketAddr, quota: KeyQuota) -> Started {
    start_with(builder(nodes, nodes), mock, quota)
}

/// [`start`], for a cluster whose every wait ends within `budget`, with
/// `extra` TOML merged into every node's config.
pub fn start_for(
    nodes: u64,
    mock: SocketAddr,
    quota: KeyQuota,
    budget: Duration,
    extra: &str,
) -> Started {
    start_with(
        builder(nodes, nodes).budget(budget).config_extra(extra),
        mock,
        quota,
    )
}

/// Starts `builder`'s initial members and writes a provider on the mock,
/// route `mock-gpt` and a virtual key with `quota`; the endpoints are the
/// started nodes' proxies.
pub fn start_with(builder: ClusterBuilder, mock: SocketAddr, quota: KeyQuota) -> Started {
    let cluster = builder.start();
    let leader = cluster.leader();
    let write = |path: &str, body: Value| -> Value {
        let admin = cluster.admin(leader);
        cluster.wait_for(
            Duration::from_secs(20),
            format!("POST {path}"),
            || match admin.post(path, &body) {
                (201, created) => Some(created),
                (0 | 500..=599, _) => None,
                other => cluster.fail(format!("POST {path}: {other:?}")),
            },
        )
    };
    let base_url = format!("http://{mock}/v1");
    write(
        "/admin/v1/providers",
        json!({"name": "mock", "kind": "openai", "base_url": base_url}),
    );
    write(
        "/admin/v1/routes",
        json!({
            "name": "mock-gpt",
            "deployments": [{"provider": "mock", "model": "mock-gpt", "weight": 1}],
        }),
    );
    let mut key = json!({"name": "bench-load", "allowed_routes": ["mock-gpt"]});
    if quota == KeyQuota::NeverRefusing {
        key["rpm"] = json!(NEVER_REFUSING);
        key["tpm"] = json!(NEVER_REFUSING);
    }
    let created = write("/admin/v1/keys", key);
    let field = |name: &str| {
        created[name]
            .as_str()
            .unwrap_or_else(|| cluster.fail(format!("key creation answered {created}")))
            .to_string()
    };
    let (key, key_id) = (field("key"), field("id"));
    let endpoints = cluster
        .running_ids()
        .into_iter()
        .map(|id| endpoint(&cluster, id, &key))
        .collect();
    Started {
        cluster,
        endpoints,
        key_id,
        key,
    }
}

fn endpoint(cluster: &Cluster, id: u64, key: &str) -> Endpoint {
    Endpoint {
        addr: cluster.plan(id).proxy,
        authorization: Some(format!("Bearer {key}")),
    }
}

impl Started {
    /// Starts planned node `id` (not an initial member: it joins as a
    /// learner), waits until the leader lists it as a learner and its proxy
    /// answers the bench's request with 200, and adds it to the endpoints.
    pub fn add_learner(&mut self, id: u64) {
        self.cluster.start_node(id);
        let leader = self.cluster.leader();
        self.cluster.wait_until(
            Duration::from_secs(60),
            format!("node {id} to be a learner"),
            || {
                self.cluster.status(leader).is_some_and(|status| {
                    Cluster::role_in(&status, id)
                        .is_some_and(|role| role.eq_ignore_ascii_case("learner"))
                })
            },
        );
        self.wait_serving(id, |reply| reply.status == 200);
        self.endpoints.push(endpoint(&self.cluster, id, &self.key));
    }

    /// Waits (at most 20 s) until node `id`'s proxy answers the bench's
    /// request to the bench's key with a reply that is `ok`.
    fn wait_serving(&self, id: u64, ok: impl Fn(&Reply) -> bool) {
        let proxy = ProxyClient::new(self.cluster.proxy_url(id), Some(&self.key));
        let request =
            json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hello"}]});
        self.cluster.wait_for(
            Duration::from_secs(20),
            format!("node {id}'s proxy to serve the bench's request"),
            || ok(&proxy.post("/v1/chat/completions", &request)).then_some(()),
        );
    }

    /// Puts [`KeyQuota::NeverRefusing`] on the bench key, or removes the
    /// key's quota, and waits until every node's proxy answers accordingly
    /// (with or without `x-ratelimit-limit-requests`): the same cluster, the
    /// same processes and connections, only the policy differs.
    pub fn set_quota(&self, quota: KeyQuota) {
        let limit = match quota {
            KeyQuota::None => Value::Null,
            KeyQuota::NeverRefusing => json!(NEVER_REFUSING),
        };
        let path = format!("/admin/v1/keys/{}", self.key_id);
        let body = json!({"rpm": limit, "tpm": limit});
        let admin = self.cluster.admin(self.cluster.leader());
        self.cluster.wait_for(
            Duration::from_secs(20),
            format!("PATCH {path}"),
            || match admin.patch(&path, &body) {
                (200, _) => Some(()),
                (0 | 500..=599, _) => None,
                other => self.cluster.fail(format!("PATCH {path}: {other:?}")),
            },
        );
        let want_headers = quota == KeyQuota::NeverRefusing;
        for id in self.cluster.running_ids() {
            self.wait_serving(id, |reply| {
                let has = reply.header("x-ratelimit-limit-requests").is_some();
                reply.status == 200 && has == want_headers
            });
        }
    }
}

/// The nodes of a started cluster, as the bench reads them.
pub struct Nodes {
    nodes: Vec<Node>,
}

struct Node {
    id: u64,
    admin: Admin,
    /// `/metrics` is served on the proxy's listener.
    proxy: ProxyClient,
}

/// How much one node's Raft log grew over a measured window.
#[derive(Debug, Clone, Copy)]
pub struct NodeGrowth {
    pub id: u64,
    /// `last_log_index` after minus before.
    pub entries: u64,
    /// Between the two reads.
    pub secs: f64,
}

/// How much the cluster's Raft log grew over a measured window, per node
/// (a node that did not answer either read is left out).
#[derive(Debug, Clone, Default)]
pub struct LogGrowth {
    pub nodes: Vec<NodeGrowth>,
}

impl LogGrowth {
    /// Entries per second: the fastest-growing node's (the leader's log is
    /// never behind a follower's).
    pub fn per_second(&self) -> Option<f64> {
        self.nodes
            .iter()
            .filter(|n| n.secs > 0.0)
            .map(|n| n.entries as f64 / n.secs)
            .max_by(f64::total_cmp)
    }
}

/// The proxies' quota counters over a run (warm-up included), summed over
/// the nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaCounts {
    /// `sluice_quota_decisions_total` by outcome (`admitted`,
    /// `rate_limited`, ...).
    pub decisions: BTreeMap<String, u64>,
    /// Answers with status 429, whatever their cause.
    pub status_429: u64,
}

impl QuotaCounts {
    pub fn admitted(&self) -> u64 {
        self.decisions.get("admitted").copied().unwrap_or(0)
    }

    /// Every decision that was not an admission.
    pub fn refused(&self) -> u64 {
        self.decisions
            .iter()
            .filter(|(outcome, _)| *outcome != "admitted")
            .map(|(_, n)| n)
            .sum()
    }

    fn since(&self, before: &QuotaCounts) -> QuotaCounts {
        QuotaCounts {
            decisions: self
                .decisions
                .iter()
                .map(|(outcome, n)| {
                    let was = before.decisions.get(outcome).copied().unwrap_or(0);
                    (outcome.clone(), n.saturating_sub(was))
                })
                .collect(),
            status_429: self.status_429.saturating_sub(before.status_429),
        }
    }
}

/// What [`Nodes::around`] read.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub log: LogGrowth,
    pub quota: QuotaCounts,
}

impl Nodes {
    /// The cluster's running nodes.
    pub fn of(cluster: &Cluster) -> Nodes {
        Nodes {
            nodes: cluster
                .running_ids()
                .into_iter()
                .map(|id| Node {
                    id,
                    admin: cluster.admin(id),
                    proxy: ProxyClient::new(cluster.proxy_url(id), None),
                })
                .collect(),
        }
    }

    pub fn count(&self) -> usize {
        self.nodes.len()
    }

    /// Runs `run` (which measures from `warmup` after it starts, for
    /// `duration`) and reads, beside it, each node's log index at the start
    /// and the end of that measured window. The generator starts its own
    /// clock a few milliseconds after this one, so the two windows agree to
    /// within that, against seconds of measurement.
    pub fn around<R>(
        &self,
        warmup: Duration,
        duration: Duration,
        run: impl FnOnce() -> R,
    ) -> (R, Observed) {
        let counts_before = self.quota_counts();
        let started = Instant::now();
        let (result, log) = std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                // A fixed measurement window, not a synchronisation: the
                // reads happen at its edges whatever the run is doing.
                wait_until(started + warmup);
                let before = self.log_indices();
                wait_until(started + warmup + duration);
                let after = self.log_indices();
                growth(&before, &after)
            });
            let result = run();
            (result, reader.join().expect("the log reader panicked"))
        });
        let quota = self.quota_counts().since(&counts_before);
        (result, Observed { log, quota })
    }

    /// Each node's `last_log_index` and when it was read (`None`: no
    /// answer).
    fn log_indices(&self) -> Vec<(u64, Option<(u64, Instant)>)> {
        self.nodes
            .iter()
            .map(|node| {
                let at = Instant::now();
                let index = node
                    .admin
                    .cluster_status()
                    .and_then(|status| status["last_log_index"].as_u64());
                (node.id, index.map(|index| (index, at)))
            })
            .collect()
    }

    fn quota_counts(&self) -> QuotaCounts {
        let mut total = QuotaCounts::default();
        for node in &self.nodes {
            let reply = node.proxy.get("/metrics");
            if reply.status == 200 {
                add_counts(&mut total, &reply.text);
            } else {
                eprintln!(
                    "node {}: GET /metrics answered {}: {}",
                    node.id, reply.status, reply.text
                );
            }
        }
        total
    }
}

fn wait_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

fn growth(
    before: &[(u64, Option<(u64, Instant)>)],
    after: &[(u64, Option<(u64, Instant)>)],
) -> LogGrowth {
    let nodes = before
        .iter()
        .zip(after)
        .filter_map(|((id, before), (_, after))| {
            let ((from, t0), (to, t1)) = ((*before)?, (*after)?);
            Some(NodeGrowth {
                id: *id,
                entries: to.saturating_sub(from),
                secs: t1.duration_since(t0).as_secs_f64(),
            })
        })
        .collect();
    LogGrowth { nodes }
}

/// Adds one node's quota decisions and 429 answers, read from its
/// Prometheus text, to `total`.
fn add_counts(total: &mut QuotaCounts, metrics: &str) {
    for line in metrics.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let value = value as u64;
        if let Some(labels) = series.strip_prefix("sluice_quota_decisions_total{") {
            if let Some(outcome) = label(labels, "outcome") {
                *total.decisions.entry(outcome.to_string()).or_default() += value;
            }
        } else if let Some(labels) = series.strip_prefix("sluice_proxy_requests_total{") {
            if label(labels, "status") == Some("429") {
                total.status_429 += value;
            }
        }
    }
}

/// The value of `name` in `a="x",b="y"}`.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels
        .trim_end_matches('}')
        .split(',')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix("=\""))
        .and_then(|value| value.strip_suffix('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_counters_are_read_from_prometheus_text() {
        let text = r#"# HELP sluice_quota_decisions_total Quota decisions
sluice_quota_decisions_total{outcome="admitted"} 120
sluice_quota_decisions_total{outcome="rate_limited"} 3
sluice_proxy_requests_total{endpoint="chat_completions",route="mock-gpt",status="200"} 120
sluice_proxy_requests_total{endpoint="chat_completions",route="mock-gpt",status="429"} 3
"#;
        let mut counts = QuotaCounts::default();
        add_counts(&mut counts, text);
        add_counts(&mut counts, text);
        assert_eq!(counts.admitted(), 240);
        assert_eq!(counts.refused(), 6);
        assert_eq!(counts.status_429, 6);
        let mut later = counts.clone();
        add_counts(&mut later, text);
        assert_eq!(later.since(&counts).admitted(), 120);
    }

    #[test]
    fn lease_entries_are_bounded_by_two_commands_per_node_per_tick() {
        assert_eq!(lease_entries_bound(3), 60.0);
        let growth = LogGrowth {
            nodes: vec![
                NodeGrowth {
                    id: 1,
                    entries: 300,
                    secs: 10.0,
                },
                NodeGrowth {
                    id: 2,
                    entries: 298,
                    secs: 10.0,
                },
            ],
        };
        assert_eq!(growth.per_second(), Some(30.0));
    }
}
