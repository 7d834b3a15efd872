//! Memory per open stream: what a node costs at rest, and what each
//! streaming completion it relays costs while it is open, side by side with
//! nginx in front of the same upstream.
//!
//! One Sluice node (a cluster of one, with a provider on the mock, route
//! `mock-gpt` and a key whose `rpm` and `tpm` never refuse at this load, so
//! every stream goes through admission, token estimation and settlement)
//! and nginx (`proxy_buffering off`, as it is set up in front of
//! server-sent events) in front of the same mock. For each count in
//! `SLUICE_BENCH_STREAMS` (default `1000,10000`), against each proxy in
//! turn: the proxy's resident memory at rest (after a few requests, once it
//! has settled), then that many streaming chat completions opened at
//! `SLUICE_BENCH_OPEN_RATE` (default 2 000) a second, each a chunk every
//! 500 ms for about `SLUICE_BENCH_STREAM_SECS` (default 12) seconds, so all
//! are open together for a while; the peak of its memory (read every
//! 100 ms) while they are; and its memory after they all ended and it
//! settled. Per stream is `(peak - rest) / streams`. Every stream must end
//! with `[DONE]` and as many chunks as the mock sent: a lost or cut stream
//! is counted and printed.
//!
//! First, connections that send nothing: `SLUICE_BENCH_HELD` (default 3 000)
//! on the proxy listener and 900 on the admin listener (its cap is 1 000),
//! each sending one byte of a request head and then nothing. Sluice's memory
//! at rest, with them held, and after; how long the node took to close them
//! (its first-request deadline, 10 s by default) and how many it closed.
//!
//! nginx's memory is its master's and workers' together. The mock and the
//! generator are not counted. Needs nginx (installed with apt-get when
//! missing and root; otherwise its column is skipped with the reason) and,
//! for 10 000 streams, an open-file limit of about 25 000 (raised here when
//! this is root). Prints a markdown table and writes JSON to
//! `<target dir>/bench-memory.json` (`SLUICE_BENCH_JSON` to choose).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sluice_benches::cluster::{self, KeyQuota, CHAT_PATH};
use sluice_benches::host::{load_average, rss_kib, tree_rss_kib};
use sluice_benches::load::{runtime, Endpoint};
use sluice_benches::mock::start_mock;
use sluice_benches::nginx::{Buffering, Nginx};
use sluice_benches::{env_count, env_list, write_results};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Threads of the generator's runtime: one per core of the bench machine.
const GENERATOR_THREADS: usize = 2;
/// The mock's pause between two stream events.
const CHUNK_MS: u64 = 500;
/// How often the proxy's memory is read while streams are open.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// The open-file limit this bench asks for (itself and the processes it
/// starts): two descriptors per stream in a proxy, one in the mock and in
/// the generator.
const OPEN_FILES: u64 = 65_536;

struct Settings {
    streams: Vec<u64>,
    held: u64,
    open_rate: u64,
    stream_secs: u64,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            streams: env_list("SLUICE_BENCH_STREAMS", &[1_000, 10_000]),
            held: env_count("SLUICE_BENCH_HELD", 3_000) as u64,
            open_rate: env_count("SLUICE_BENCH_OPEN_RATE", 2_000) as u64,
            stream_secs: env_count("SLUICE_BENCH_STREAM_SECS", 12) as u64,
        }
    }

    /// The request body: a user message of as many words as the stream
    /// should have chunks (the mock answers one word a chunk).
    fn body(&self) -> Bytes {
        let words = (self.stream_secs * 1000 / CHUNK_MS).max(2) as usize;
        let content = vec!["word"; words].join(" ");
        Bytes::from(
            json!({
                "model": "mock-gpt",
                "stream": true,
                "messages": [{"role": "user", "content": content}],
            })
            .to_string(),
        )
    }
}

/// A proxy under measurement: where to send streams and whose memory to
/// read.
struct Target {
    name: &'static str,
    endpoint: Endpoint,
    rss: Box<dyn Fn() -> u64>,
}

/// One run's figures, in KiB.
#[derive(Debug, Default)]
struct Measured {
    rest: u64,
    peak: u64,
    after: u64,
    completed: u64,
    failed: u64,
    first_failure: Option<String>,
    open_at_peak: u64,
}

fn main() {
    let mut settings = Settings::from_env();
    // A proxy holds two descriptors a stream (client, upstream), and some
    // of its own (Raft, listeners, the data dir).
    let files = raise_open_files();
    let fit = files.saturating_sub(1_000) / 2;
    for streams in &mut settings.streams {
        if *streams > fit {
            eprintln!(
                "{streams} streams need about {} open files in the proxy; the limit here is {files}: running {fit}",
                *streams * 2 + 1_000
            );
            *streams = fit;
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (_mock, mock_addr) = start_mock(dir.path());
    let rt = runtime(GENERATOR_THREADS);
    // Every answer of the mock paced, whoever relays it (Sluice does not
    // pass a client's `x-mock-*` headers on).
    rt.block_on(pace_mock(mock_addr));
    let most = settings.streams.iter().copied().max().unwrap_or(0);
    let extra = format!("[proxy]\nmax_connections = {}\n", most + 1_000);
    let started = cluster::start_for(
        1,
        mock_addr,
        KeyQuota::NeverRefusing,
        Duration::from_secs(900),
        &extra,
    );
    let node_pid = started.cluster.pid(1).expect("node 1 runs");
    let mut targets = vec![Target {
        name: "Sluice",
        endpoint: started.endpoints[0].clone(),
        rss: Box::new(move || rss_kib(node_pid)),
    }];
    let nginx = Nginx::start_with(dir.path(), &[mock_addr], "auto", Buffering::Off);
    match &nginx {
        Ok(nginx) => {
            let pid = nginx.process.pid();
            targets.push(Target {
                name: "nginx",
                endpoint: Endpoint {
                    addr: nginx.addr,
                    authorization: None,
                },
                rss: Box::new(move || tree_rss_kib(pid)),
            });
        }
        Err(why) => eprintln!("nginx skipped: {why}"),
    }
    println!(
        "memory: streams {:?}, opened at {}/s, a chunk every {CHUNK_MS} ms for ~{} s; load average {}",
        settings.streams,
        settings.open_rate,
        settings.stream_secs,
        load_average()
    );
    // Held connections first, on a node that has served nothing else: what
    // they cost shows, and whether it comes back.
    let node_rss = move || rss_kib(node_pid);
    let admin_addr = started.cluster.plan(1).admin;
    println!();
    println!("| Sluice listener | connections held | at rest | held | after | per connection | closed by the node | last closed after |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut held_rows = Vec::new();
    // Each connection sends the first byte of what the listener expects
    // and then nothing: a request line on the proxy's plain HTTP, a TLS
    // handshake record on the admin API's HTTPS.
    for (listener, addr, count, first) in [
        ("proxy", started.endpoints[0].addr, settings.held, b"P"),
        ("admin", admin_addr, 900.min(settings.held), &[0x16u8]),
    ] {
        let h = rt.block_on(hold_connections(&node_rss, addr, count, first));
        let per = h.held.saturating_sub(h.rest) as f64 / count.max(1) as f64;
        println!(
            "| {listener} | {count} | {} | {} | {} | {per:.1} KiB | {} | {:.1} s |",
            mib(h.rest),
            mib(h.held),
            mib(h.after),
            h.closed,
            h.last_closed.as_secs_f64()
        );
        held_rows.push(json!({
            "listener": listener,
            "connections": count,
            "rest_kib": h.rest,
            "held_kib": h.held,
            "after_kib": h.after,
            "closed": h.closed,
            "last_closed_s": h.last_closed.as_secs_f64(),
        }));
    }
    let body = settings.body();
    let mut rows = Vec::new();
    println!();
    println!("| proxy | streams | at rest | peak | after | per stream | completed | failed |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for &streams in &settings.streams {
        for target in &targets {
            let m = rt.block_on(measure(target, streams, settings.open_rate, &body));
            let per_stream = m.peak.saturating_sub(m.rest) as f64 / streams as f64;
            println!(
                "| {} | {streams} | {} | {} | {} | {per_stream:.1} KiB | {} | {} |",
                target.name,
                mib(m.rest),
                mib(m.peak),
                mib(m.after),
                m.completed,
                m.failed
            );
            if let Some(why) = &m.first_failure {
                eprintln!("{}: first failed stream: {why}", target.name);
            }
            rows.push(json!({
                "proxy": target.name,
                "streams": streams,
                "rest_kib": m.rest,
                "peak_kib": m.peak,
                "after_kib": m.after,
                "per_stream_kib": per_stream,
                "open_at_peak": m.open_at_peak,
                "completed": m.completed,
                "failed": m.failed,
            }));
        }
    }
    let doc: Value = json!({
        "bench": "memory",
        "held": held_rows,
        "load_average": load_average(),
        "chunk_ms": CHUNK_MS,
        "stream_secs": settings.stream_secs,
        "open_rate": settings.open_rate,
        "nginx": nginx.as_ref().map(|n| n.version.clone()).unwrap_or_default(),
        "rows": rows,
    });
    write_results("bench-memory.json", &doc);
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Raises this process's open-file limit (soft and hard, where it may) so
/// that it, and every process it starts, can hold the streams; returns the
/// limit it got.
fn raise_open_files() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1_024;
    };
    let wanted = OPEN_FILES.max(soft);
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted.max(hard)).is_ok() {
        return wanted;
    }
    // Not allowed above the hard limit (not root, or a container without
    // CAP_SYS_RESOURCE): as far as it goes.
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(_) => soft,
    }
}

/// Rest, peak and after of `target` for `streams` streams.
async fn measure(target: &Target, streams: u64, open_rate: u64, body: &Bytes) -> Measured {
    // A few streams first (connections, pools and caches warmed), then
    // rest until the memory stops changing.
    for _ in 0..4 {
        let _ = stream(&target.endpoint, body.clone()).await;
    }
    let mut m = Measured {
        rest: settle(&*target.rss).await,
        ..Measured::default()
    };
    let open = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for i in 0..streams {
        let due = start + Duration::from_secs_f64(i as f64 / open_rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let (endpoint, body, open) = (target.endpoint.clone(), body.clone(), open.clone());
        tasks.spawn(async move {
            open.fetch_add(1, Ordering::Relaxed);
            let result = stream(&endpoint, body).await;
            open.fetch_sub(1, Ordering::Relaxed);
            result
        });
    }
    // Sample until every stream ended.
    let sampler = {
        let (done, open) = (done.clone(), open.clone());
        let rss = &*target.rss;
        async move {
            let (mut peak, mut open_at_peak) = (0, 0);
            while !done.load(Ordering::Relaxed) {
                let now = rss();
                if now > peak {
                    (peak, open_at_peak) = (now, open.load(Ordering::Relaxed));
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            (peak, open_at_peak)
        }
    };
    let collect = async {
        while let Some(joined) = tasks.join_next().await {
            match joined.expect("a stream task panicked") {
                Ok(()) => m.completed += 1,
                Err(why) => {
                    m.failed += 1;
                    m.first_failure.get_or_insert(why);
                }
            }
        }
        done.store(true, Ordering::Relaxed);
    };
    let (_, (peak, open_at_peak)) = tokio::join!(collect, sampler);
    m.peak = peak.max(m.rest);
    m.open_at_peak = open_at_peak;
    m.after = settle(&*target.rss).await;
    m
}

/// Connections held without a request, as the node saw them.
struct Held {
    rest: u64,
    held: u64,
    after: u64,
    /// Connections the node closed (the rest were still open after 30 s).
    closed: u64,
    /// When the last of them was closed, from its opening.
    last_closed: Duration,
}

/// Opens `count` connections to `addr`, each sending the first byte of a
/// request head and nothing more, and waits until the node closes them
/// (at most 30 s).
async fn hold_connections(
    rss: &dyn Fn() -> u64,
    addr: SocketAddr,
    count: u64,
    first: &'static [u8; 1],
) -> Held {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = settle(rss).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        tasks.spawn(async move {
            let opened = Instant::now();
            let mut stream = TcpStream::connect(addr).await.ok()?;
            stream.write_all(first).await.ok()?;
            let mut byte = [0u8; 1];
            match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut byte)).await {
                // EOF or reset: the node closed it.
                Ok(Ok(0) | Err(_)) => Some(opened.elapsed()),
                _ => None,
            }
        });
    }
    // Every connection open (the first-request deadline is seconds away).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = rss();
    let (mut closed, mut last_closed) = (0, Duration::ZERO);
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Some(after)) = joined {
            closed += 1;
            last_closed = last_closed.max(after);
        }
    }
    Held {
        rest,
        held,
        after: settle(rss).await,
        closed,
        last_closed,
    }
}

/// Waits until `rss` has not moved by more than 1% over a second (at most
/// 15 s) and returns it.
async fn settle(rss: &dyn Fn() -> u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = rss();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = rss();
        if now.abs_diff(last) * 100 <= last || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// Sets the mock's pause between stream events to [`CHUNK_MS`] for every
/// request (`PUT /_mock/behavior`).
async fn pace_mock(mock: SocketAddr) {
    let connection = TcpStream::connect(mock)
        .await
        .expect("connecting to the mock");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(connection))
        .await
        .expect("HTTP/1 to the mock");
    tokio::spawn(conn);
    let request = Request::builder()
        .method(Method::PUT)
        .uri("/_mock/behavior")
        .header("host", host(mock))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            json!({ "chunk_ms": CHUNK_MS }).to_string(),
        )))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .expect("PUT /_mock/behavior");
    assert!(
        response.status().is_success(),
        "PUT /_mock/behavior answered {}",
        response.status()
    );
}

/// One streaming completion on a connection of its own, read to its end:
/// `Ok` when it answered 200 and ended with `data: [DONE]`.
async fn stream(endpoint: &Endpoint, body: Bytes) -> Result<(), String> {
    let connection = TcpStream::connect(endpoint.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = connection.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(connection))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(CHAT_PATH)
        .header("host", host(endpoint.addr))
        .header("content-type", "application/json");
    if let Some(auth) = &endpoint.authorization {
        request = request.header("authorization", auth);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    let mut body = response.into_body();
    let mut tail = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            tail.extend_from_slice(data);
            let keep = tail.len().saturating_sub(64);
            tail.drain(..keep);
        }
    }
    let text = String::from_utf8_lossy(&tail);
    if status != StatusCode::OK {
        return Err(format!("{status}: {text}"));
    }
    if !text.trim_end().ends_with("data: [DONE]") {
        return Err(format!("cut short: …{text}"));
    }
    Ok(())
}

fn host(addr: SocketAddr) -> String {
    addr.to_string()
}
