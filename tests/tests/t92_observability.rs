//! Observability of real nodes: `/metrics` after real traffic (parsed by a
//! Prometheus text-format parser, every family there, and every metric the
//! runbook's alert rules name among them), a real Prometheus
//! scraping a node, and the spans of a request exported over OTLP/HTTP to a
//! receiver the test runs, with the request id the client sent and nothing
//! of its prompt or key.
//!
//! The Prometheus test needs `prometheus` on `PATH` (Debian's package;
//! `.ci/run` installs it): without it the test is reported `ignored` with
//! a note, except under CI, where it fails (see `sluice_e2e::needs`).

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use sluice_e2e::dataplane::{DataPlane, GPT, OPENAI_PROVIDER};
use sluice_e2e::needs::{find_program, Missing, Suite};
use sluice_e2e::process::Process;
use sluice_e2e::{json, Cluster, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A route with prices of whole micro-dollars per token (2 in, 8 out), so
/// its cost is exactly `2 * prompt + 8 * completion` micro-USD.
const PRICED: &str = "priced";
/// A route whose only deployment answers 500.
const BROKEN: &str = "broken";

fn main() -> std::process::ExitCode {
    Suite::new()
        .test(
            "metrics_after_real_traffic_carry_every_family",
            metrics_after_real_traffic_carry_every_family,
        )
        .needing(
            "a_real_prometheus_scrapes_a_node",
            prometheus_binary(),
            a_real_prometheus_scrapes_a_node,
        )
        .test(
            "spans_of_a_request_reach_an_otlp_receiver_without_its_prompt_or_key",
            spans_of_a_request_reach_an_otlp_receiver_without_its_prompt_or_key,
        )
        .run()
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Every sample of a scrape, by metric name, as (labels, value).
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// Parses Prometheus text with `prometheus-parse`; histograms and summaries
/// are listed under their name with their `_count` as value.
fn parse(text: &str) -> Samples {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape =
        prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text");
    let mut samples = Samples::new();
    for sample in scrape.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => 0.0,
        };
        let labels: BTreeMap<String, String> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        samples
            .entry(sample.metric)
            .or_default()
            .push((labels, value));
    }
    samples
}

/// The sum of `name`'s samples whose labels include every one of `labels`.
fn sum(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .get(name)
        .into_iter()
        .flatten()
        .filter(|(have, _)| {
            labels
                .iter()
                .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

fn admin_metrics(plane: &DataPlane, id: u64) -> String {
    let url = format!("{}/metrics", plane.cluster.admin_url(id));
    let reply = plane
        .cluster
        .http_client(Duration::from_secs(5))
        .get(&url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(reply.status(), 200, "GET {url}");
    reply.text().expect("metrics body")
}

fn metrics_after_real_traffic_carry_every_family() {
    let plane = DataPlane::start(
        Cluster::builder()
            .nodes(3)
            .fast_elections()
            .snapshot_every(5)
            .config_extra("[proxy]\nbackoff_base_ms = 10\nbackoff_max_ms = 50\n")
            .budget(Duration::from_secs(120)),
    );
    plane.write(
        "/admin/v1/routes",
        &json!({"name": PRICED, "deployments": [{"provider": OPENAI_PROVIDER, "model": "mock-gpt", "weight": 1}],
                "pricing": {"prompt_usd_per_mtok": 2.0, "completion_usd_per_mtok": 8.0}}),
    );
    plane.create_provider("failing", "openai", json!({"x-mock-status": "500"}));
    plane.create_route(BROKEN, &[("failing", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &[PRICED, BROKEN]);

    let proxy = plane.proxy(1);
    let whole = proxy.post("/v1/chat/completions", &chat(PRICED, "count to three"));
    assert_eq!(whole.status, 200, "{}", whole.text);
    let mut request = chat(PRICED, "and now stream it");
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let transcript = proxy.stream("/v1/chat/completions", &request).read_to_end();
    assert!(transcript.ends_with_done(), "{}", transcript.dump());
    let failed = proxy.post("/v1/chat/completions", &chat(BROKEN, "fail"));
    assert!(failed.status >= 500, "{} {}", failed.status, failed.text);
    let unknown = proxy.post("/v1/chat/completions", &chat("no-such-model", "x"));
    assert_eq!(unknown.status, 404);

    // Every node has taken a snapshot (every 5 entries), every node knows
    // the one leader, and the leader has heard every follower answer a
    // heartbeat. Scraped again until then (a leader may change meanwhile).
    let ids = plane.cluster.ids();
    let mut scrapes = BTreeMap::new();
    let mut leader = 0;
    plane.cluster.wait_until(
        Duration::from_secs(20),
        "every node to report a snapshot age and one leader, and the leader its peers' round trips",
        || {
            for &id in &ids {
                scrapes.insert(id, parse(&admin_metrics(&plane, id)));
            }
            let leaders: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|id| sum(&scrapes[id], "sluice_raft_is_leader", &[]) == 1.0)
                .collect();
            let [one] = leaders[..] else {
                return false;
            };
            leader = one;
            let agreed = scrapes
                .values()
                .all(|s| sum(s, "sluice_raft_leader_id", &[]) == leader as f64);
            let snapshots = scrapes
                .values()
                .all(|s| s.contains_key("sluice_raft_snapshot_age_seconds"));
            let round_trips = ids.iter().filter(|id| **id != leader).all(|peer| {
                let peer = peer.to_string();
                sum(
                    &scrapes[&leader],
                    "sluice_raft_peer_rtt_seconds",
                    &[("peer", &peer), ("rpc", "heartbeat")],
                ) > 0.0
            });
            agreed && snapshots && round_trips
        },
    );
    let node1 = &scrapes[&1];
    for family in [
        "sluice_proxy_requests_total",
        "sluice_proxy_errors_total",
        "sluice_proxy_request_duration_seconds",
        "sluice_proxy_overhead_seconds",
        "sluice_proxy_time_to_first_byte_seconds",
        "sluice_proxy_time_to_first_token_seconds",
        "sluice_proxy_upstream_attempts_total",
        "sluice_proxy_upstream_errors_total",
        "sluice_proxy_tokens_total",
        "sluice_proxy_cost_micro_usd_total",
        "sluice_proxy_requests_in_flight",
        "sluice_proxy_stream_ends_total",
        "sluice_proxy_breaker_state",
        "sluice_quota_decisions_total",
        "sluice_raft_term",
        "sluice_raft_leader_id",
        "sluice_raft_is_leader",
        "sluice_raft_last_log_index",
        "sluice_raft_commit_index",
        "sluice_raft_applied_index",
        "sluice_raft_log_entries",
        "sluice_raft_store_size_bytes",
        "sluice_raft_snapshot_index",
        "sluice_raft_snapshot_age_seconds",
    ] {
        assert!(
            node1.contains_key(family),
            "node 1's /metrics lacks {family}"
        );
    }

    // The runbook's alert rules (docs/operations.md, section 9) name only
    // families the nodes export.
    let runbook_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md");
    let runbook = std::fs::read_to_string(&runbook_path).expect("reading the runbook");
    let alerts = runbook
        .split("\n## 9.")
        .nth(1)
        .expect("the runbook's section 9, alerts");
    let mut named = BTreeSet::new();
    for word in alerts.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("sluice_") {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word);
            assert!(
                scrapes.values().any(|s| s.contains_key(family)),
                "the runbook's alerts use {word}, which no node exports"
            );
            named.insert(family);
        }
    }
    assert!(named.len() >= 10, "alerts found naming {named:?}");

    // Requests by route, deployment and status; errors by class.
    let ok = [
        ("route", PRICED),
        ("deployment", "mock-openai/mock-gpt"),
        ("status", "200"),
    ];
    assert_eq!(sum(node1, "sluice_proxy_requests_total", &ok), 2.0);
    let latency = [("route", PRICED), ("deployment", "mock-openai/mock-gpt")];
    assert_eq!(
        sum(node1, "sluice_proxy_request_duration_seconds", &latency),
        2.0
    );
    assert!(
        sum(
            node1,
            "sluice_proxy_errors_total",
            &[("route", BROKEN), ("class", "server_error")]
        ) >= 1.0
    );
    assert_eq!(
        sum(
            node1,
            "sluice_proxy_errors_total",
            &[("route", ""), ("class", "client_error")]
        ),
        1.0
    );
    assert!(
        sum(
            node1,
            "sluice_proxy_upstream_errors_total",
            &[("provider", "failing"), ("class", "http_5xx")]
        ) >= 1.0
    );
    assert_eq!(
        sum(
            node1,
            "sluice_proxy_time_to_first_token_seconds",
            &[("route", PRICED)]
        ),
        1.0
    );
    assert_eq!(sum(node1, "sluice_proxy_overhead_seconds", &[]), 4.0);
    // Tokens in and out, and their cost at the route's prices.
    let prompt = sum(
        node1,
        "sluice_proxy_tokens_total",
        &[("route", PRICED), ("kind", "prompt")],
    );
    let completion = sum(
        node1,
        "sluice_proxy_tokens_total",
        &[("route", PRICED), ("kind", "completion")],
    );
    assert!(
        prompt > 0.0 && completion > 0.0,
        "tokens {prompt} in, {completion} out"
    );
    assert_eq!(
        sum(
            node1,
            "sluice_proxy_cost_micro_usd_total",
            &[("route", PRICED)]
        ),
        2.0 * prompt + 8.0 * completion
    );
    // Raft: indexes in order, a store and a snapshot on every node.
    for (id, s) in &scrapes {
        assert!(sum(s, "sluice_raft_term", &[]) >= 1.0);
        let applied = sum(s, "sluice_raft_applied_index", &[]);
        let last = sum(s, "sluice_raft_last_log_index", &[]);
        assert!(
            applied >= 5.0 && applied <= last,
            "node {id}: applied {applied}, last {last}"
        );
        assert!(sum(s, "sluice_raft_store_size_bytes", &[]) > 0.0);
        assert!(sum(s, "sluice_raft_snapshot_index", &[]) >= 5.0);
    }
    // No label anywhere carries a key.
    for (name, series) in node1 {
        for (labels, _) in series {
            for value in labels.values() {
                assert!(!value.contains(&plane.key), "{name} has a key in a label");
            }
        }
    }
}

/// `prometheus` on `PATH`, or what is missing.
fn prometheus_binary() -> Result<PathBuf, Missing> {
    find_program("prometheus").ok_or_else(|| Missing {
        what: "`prometheus` on PATH".to_owned(),
        how: "apt-get install prometheus".to_owned(),
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn a_real_prometheus_scrapes_a_node(prometheus: PathBuf) {
    let cluster = Cluster::builder()
        .nodes(1)
        .fast_elections()
        .budget(Duration::from_secs(90))
        .start();
    let target = cluster
        .admin_url(1)
        .trim_start_matches("https://")
        .to_string();
    let dir = cluster.root().join("prometheus");
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sluice\n    scheme: https\n    tls_config:\n      ca_file: '{}'\n    static_configs:\n      - targets: ['{target}']\n",
            cluster.ca_cert().display()
        ),
    )
    .expect("writing prometheus.yml");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut command = std::process::Command::new(prometheus);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={listen}"));
    let mut server = Process::spawn("prometheus", command, &dir.join("prometheus.log"));
    let api = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client");
    let get = |path: &str| -> Option<Value> {
        api.get(format!("http://{listen}{path}"))
            .send()
            .ok()?
            .json()
            .ok()
    };
    let mut last = Value::Null;
    let up = cluster
        .deadline()
        .within(Duration::from_secs(60))
        .poll("", || {
            last = get("/api/v1/targets").unwrap_or(Value::Null);
            last["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| {
                    t["scrapeUrl"].as_str().is_some_and(|u| u.contains(&target))
                        && t["health"] == "up"
                })
        });
    if up.is_err() {
        panic!(
            "prometheus never saw {target} up; last targets {last}\n{}",
            server.log_tail(40)
        );
    }
    let sampled = cluster
        .deadline()
        .within(Duration::from_secs(30))
        .poll("", || {
            last = get("/api/v1/query?query=sluice_raft_term").unwrap_or(Value::Null);
            last["data"]["result"].as_array().is_some_and(|r| {
                r.iter().any(|s| {
                    s["value"][1]
                        .as_str()
                        .is_some_and(|v| v.parse::<f64>().is_ok_and(|v| v >= 1.0))
                })
            })
        });
    if sampled.is_err() {
        panic!(
            "no sample of sluice_raft_term; last answer {last}\n{}",
            server.log_tail(40)
        );
    }
    server.kill9();
}

/// What the test's OTLP receiver got: every span, flattened.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    trace_id: Vec<u8>,
    name: String,
    attributes: BTreeMap<String, String>,
    /// Every string anywhere in the span and its resource: attributes,
    /// events and their attributes.
    strings: Vec<String>,
}

fn text_of(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let pairs = |kvs: &[KeyValue]| -> Vec<(String, String)> {
        kvs.iter()
            .map(|kv| (kv.key.clone(), text_of(&kv.value)))
            .collect()
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| pairs(&r.attributes))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let attributes: BTreeMap<String, String> =
                    pairs(&span.attributes).into_iter().collect();
                let mut strings: Vec<String> = resource
                    .iter()
                    .cloned()
                    .chain(attributes.clone())
                    .flat_map(|(k, v)| [k, v])
                    .collect();
                for event in &span.events {
                    strings.push(event.name.clone());
                    strings.extend(
                        pairs(&event.attributes)
                            .into_iter()
                            .flat_map(|(k, v)| [k, v]),
                    );
                }
                strings.push(span.name.clone());
                spans.push(ReceivedSpan {
                    trace_id: span.trace_id.clone(),
                    name: span.name,
                    attributes,
                    strings,
                });
            }
        }
    }
    spans
}

/// An OTLP/HTTP receiver on 127.0.0.1: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`. Runs until the runtime is dropped.
fn start_receiver(runtime: &tokio::runtime::Runtime) -> (u16, Arc<Mutex<Vec<ReceivedSpan>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = Arc::clone(&store);
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(request) => {
                        store
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend(flatten(request));
                        (
                            axum::http::StatusCode::OK,
                            [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                    }
                    Err(e) => (
                        axum::http::StatusCode::BAD_REQUEST,
                        [(axum::http::header::CONTENT_TYPE, "text/plain")],
                        format!("not an ExportTraceServiceRequest: {e}").into_bytes(),
                    ),
                }
            }
        }),
    );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("binding the OTLP receiver");
    let port = listener.local_addr().expect("receiver address").port();
    runtime.spawn(async move { axum::serve(listener, app).await });
    (port, received)
}

fn spans_of_a_request_reach_an_otlp_receiver_without_its_prompt_or_key() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (port, received) = start_receiver(&runtime);
    let plane = DataPlane::start(
        Cluster::builder()
            .nodes(1)
            .fast_elections()
            .config_extra(format!(
                "[tracing]\notlp_endpoint = \"http://127.0.0.1:{port}\"\nservice_name = \"sluice-t97\"\n\n[log]\nformat = \"json\"\nlevel = \"info,sluice_proxy=debug\"\n"
            ))
            .budget(Duration::from_secs(90)),
    );
    let request_id = format!("t97-{:x}", std::process::id());
    let prompt = "the-words-of-a-prompt-that-must-stay-private";
    let reply = plane.proxy(1).post_with(
        "/v1/chat/completions",
        &chat(GPT, prompt),
        &[("x-request-id", &request_id)],
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-request-id"), Some(request_id.as_str()));
    // Errors carry an id too: the client's, or a new one.
    let refused = plane
        .proxy(1)
        .with_key(None)
        .post("/v1/chat/completions", &chat(GPT, "x"));
    assert_eq!(refused.status, 401);
    assert!(refused
        .header("x-request-id")
        .is_some_and(|id| id.starts_with("req_")));

    let mut spans = Vec::new();
    plane.cluster.wait_until(
        Duration::from_secs(30),
        "the request's span and its upstream attempt at the OTLP receiver",
        || {
            spans = received.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let Some(request) = spans.iter().find(|s| {
                s.name == "request"
                    && s.attributes.get("request_id") == Some(&request_id)
                    && s.attributes.contains_key("status")
            }) else {
                return false;
            };
            spans
                .iter()
                .any(|s| s.name == "upstream_attempt" && s.trace_id == request.trace_id)
        },
    );
    let request = spans
        .iter()
        .find(|s| s.name == "request" && s.attributes.get("request_id") == Some(&request_id))
        .expect("found above");
    assert_eq!(
        request.attributes.get("route").map(String::as_str),
        Some(GPT)
    );
    assert_eq!(
        request.attributes.get("status").map(String::as_str),
        Some("200")
    );
    assert_eq!(
        request.attributes.get("deployment").map(String::as_str),
        Some("mock-openai/mock-gpt")
    );
    assert!(
        request.strings.iter().any(|s| s == "sluice-t97"),
        "service name: {request:?}"
    );
    for span in &spans {
        for text in &span.strings {
            assert!(
                !text.contains(prompt),
                "span {} holds the prompt: {text}",
                span.name
            );
            assert!(
                !text.contains(&plane.key),
                "span {} holds the key",
                span.name
            );
        }
    }

    // The node's log: one JSON object per line, and neither the prompt nor
    // the key anywhere, request spans in the log context included.
    let log = plane.cluster.log(1);
    let lines: Vec<Value> = log
        .lines()
        .filter(|line| !line.starts_with("=====") && !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
        })
        .collect();
    assert!(lines.iter().any(|l| l["level"] == "INFO"), "{log}");
    assert!(!log.contains(prompt), "the node logged the prompt");
    assert!(!log.contains(&plane.key), "the node logged the key");
}
