//! An HTTP/1.1 load generator: the same request, sent either at a fixed rate
//! (open loop) or back to back by a fixed number of clients (closed loop),
//! with every latency in an HDR histogram in microseconds.
//!
//! * **Fixed rate** ([`run_fixed_rate`]): slot `i` of the run is *scheduled*
//!   at `start + i / rate` ([`Schedule`]) and its latency is measured from
//!   that instant, not from when it was sent. A pacer thread releases each
//!   slot when it is due; a pool of worker tasks, each with its own
//!   keep-alive connections, takes the next released slot as soon as it is
//!   free. When the target falls behind, slots wait for a worker and the
//!   wait is part of their latency (no coordinated omission). Slots still
//!   unsent at the cut-off (`drain` after the end) are abandoned: counted as
//!   errors and recorded with the latency they had reached.
//!
//!   The pacer is a thread of its own because tokio's timer has a
//!   granularity of one millisecond: slots woken by it would leave up to
//!   1 ms late, and every latency would carry that. A thread's sleep wakes
//!   within tens of microseconds.
//! * **Closed loop** ([`run_closed_loop`]): `concurrency` workers each send
//!   a request, wait for the whole answer, and send the next; latency is
//!   measured from the send. This finds the target's throughput.
//!
//! Requests go round-robin over the workload's endpoints (request `i` to
//! endpoint `i mod n`); each worker keeps one connection per endpoint, so
//! every endpoint sees the same number of connections as the workers. An
//! answer counts as a success only if it is a `200` whose body was read to
//! the end; any other status, a transport error or a time-out is an error,
//! and its latency is recorded all the same. A broken connection is dropped
//! and the next request through that worker opens a new one.
//!
//! Nothing here knows about Sluice: `benches/load.rs` points it at the mock
//! provider, nginx and Sluice nodes.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Largest latency the histograms hold (larger ones are recorded as this).
pub const MAX_LATENCY: Duration = Duration::from_secs(120);
/// How long opening a connection may take (part of a request's time-out too).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where requests go: an HTTP/1.1 listener and the credential it wants.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The whole `Authorization` header value (`Bearer sk-…`), if any.
    pub authorization: Option<String>,
}

/// The request every slot sends, and to whom.
#[derive(Debug, Clone)]
pub struct Workload {
    pub endpoints: Vec<Endpoint>,
    /// `/v1/chat/completions`.
    pub path: String,
    /// A JSON body, sent as `POST` with `content-type: application/json`.
    pub body: Bytes,
    /// Time-out of one request, connecting included.
    pub request_timeout: Duration,
}

/// When the slots of a fixed-rate run are due: slot `i` at `i / rate`
/// seconds after the start. Each offset is computed from `i` alone, so there
/// is no drift however many slots there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    rate: u64,
}

impl Schedule {
    /// `rate` slots per second (at least 1).
    pub fn new(rate: u64) -> Schedule {
        Schedule { rate: rate.max(1) }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Offset of slot `slot` from the start of the run.
    pub fn offset(&self, slot: u64) -> Duration {
        let nanos = u128::from(slot) * 1_000_000_000 / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many slots are due in the first `span` of the run.
    pub fn slots_in(&self, span: Duration) -> u64 {
        let slots = span.as_nanos() * u128::from(self.rate) / 1_000_000_000;
        u64::try_from(slots).unwrap_or(u64::MAX)
    }
}

/// An open-loop run: `rate` requests per second for `warmup + duration`.
#[derive(Debug, Clone, Copy)]
pub struct FixedRate {
    pub rate: u64,
    /// Slots due in the warm-up are sent but not recorded.
    pub warmup: Duration,
    /// The measured part.
    pub duration: Duration,
    /// Grace after the last slot's due time; slots not sent by then are
    /// abandoned.
    pub drain: Duration,
    /// Worker tasks (each with one keep-alive connection per endpoint).
    pub workers: usize,
}

/// A closed-loop run: `concurrency` workers sending back to back.
#[derive(Debug, Clone, Copy)]
pub struct ClosedLoop {
    pub concurrency: usize,
    /// Requests sent in the warm-up are not recorded.
    pub warmup: Duration,
    /// The measured part.
    pub duration: Duration,
}

/// What the measured part of a run recorded.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Latency of every measured request (errors and abandoned slots
    /// included), in microseconds.
    pub latencies: Histogram<u64>,
    /// Answers that were a `200`.
    pub ok: u64,
    /// Other statuses, transport errors and time-outs (abandoned slots not
    /// included).
    pub failed: u64,
    /// Fixed rate only: slots never sent because the run's cut-off came.
    pub abandoned: u64,
    /// From the start of the measured part to the last measured answer.
    pub elapsed: Duration,
}

/// An [`Outcome`] in figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// Requests answered (successes and failures, abandoned slots not).
    pub answered: u64,
    /// Failures plus abandoned slots.
    pub errors: u64,
    pub abandoned: u64,
    /// Answers per second over the measured part.
    pub rate: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Report {
    /// The figures as a JSON object (`achieved_rps`, `answered`, `errors`,
    /// `abandoned`, `p50_us` … `max_us`) that a bench adds its own to.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "achieved_rps": self.rate,
            "answered": self.answered,
            "errors": self.errors,
            "abandoned": self.abandoned,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "p999_us": self.p999_us,
            "max_us": self.max_us,
        })
    }
}

impl Outcome {
    fn empty() -> Outcome {
        Outcome {
            latencies: new_histogram(),
            ok: 0,
            failed: 0,
            abandoned: 0,
            elapsed: Duration::ZERO,
        }
    }

    fn merge(&mut self, other: &Outcome) {
        self.latencies
            .add(&other.latencies)
            .expect("histograms of one generator have the same bounds");
        self.ok += other.ok;
        self.failed += other.failed;
        self.abandoned += other.abandoned;
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    fn record(&mut self, latency: Duration, ok: bool) {
        self.latencies.saturating_record(micros(latency));
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
    }

    pub fn report(&self) -> Report {
        let answered = self.ok + self.failed;
        let secs = self.elapsed.as_secs_f64();
        let at = |q: f64| self.latencies.value_at_quantile(q);
        Report {
            answered,
            errors: self.failed + self.abandoned,
            abandoned: self.abandoned,
            rate: if secs > 0.0 {
                answered as f64 / secs
            } else {
                0.0
            },
            p50_us: at(0.5),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: self.latencies.max(),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, micros(MAX_LATENCY), 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The runtime a bench drives the generator on: `threads` workers (one per
/// core of the machine the bench runs on).
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("starting the generator's runtime")
}

/// Sends one request to each endpoint and returns the answers' statuses
/// (or why there was none), in the endpoints' order.
pub async fn probe(workload: &Workload) -> Vec<Result<StatusCode, String>> {
    let mut client = Client::new(Arc::new(workload.clone()));
    let mut statuses = Vec::new();
    for endpoint in 0..workload.endpoints.len() {
        statuses.push(client.send(endpoint).await);
    }
    statuses
}

/// Runs `plan` against `workload` (see the module doc).
pub async fn run_fixed_rate(workload: &Workload, plan: FixedRate) -> Outcome {
    let schedule = Schedule::new(plan.rate);
    let workers = plan.workers.max(1);
    let shared = Arc::new(Slots {
        schedule,
        released: Semaphore::new(0),
        next: AtomicU64::new(0),
        total: schedule.slots_in(plan.warmup + plan.duration),
        warmup: schedule.slots_in(plan.warmup),
        // Workers need a moment to be spawned: start a little later.
        start: Instant::now() + Duration::from_millis(20),
        measure_from: plan.warmup,
        cutoff: plan.warmup + plan.duration + plan.drain,
    });
    let pacer = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || pace(&shared, workers))
    };
    let workload = Arc::new(workload.clone());
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let client = Client::new(workload.clone());
        tasks.spawn(fixed_rate_worker(shared.clone(), client));
    }
    let outcome = collect(tasks).await;
    pacer.await.expect("the pacer panicked");
    outcome
}

/// Releases every slot of `slots` when it is due, then one stop permit per
/// worker (a worker whose permit finds no slot left stops).
fn pace(slots: &Slots, workers: usize) {
    let start = slots.start.into_std();
    let mut released = 0;
    while released < slots.total {
        let next_due = start + slots.schedule.offset(released);
        let now = std::time::Instant::now();
        if now < next_due {
            std::thread::sleep(next_due - now);
            continue;
        }
        // Every slot due by now (a late wake-up releases several at once).
        let due = (slots.schedule.slots_in(now - start) + 1).clamp(released + 1, slots.total);
        slots.released.add_permits(permits(due - released));
        released = due;
    }
    slots.released.add_permits(workers);
}

fn permits(slots: u64) -> usize {
    usize::try_from(slots).expect("a run's slots fit in usize")
}

/// Runs `plan` against `workload` (see the module doc).
pub async fn run_closed_loop(workload: &Workload, plan: ClosedLoop) -> Outcome {
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let workload = Arc::new(workload.clone());
    let mut workers = JoinSet::new();
    for worker in 0..plan.concurrency.max(1) {
        let client = Client::new(workload.clone());
        workers.spawn(closed_loop_worker(client, worker, measure_from, end));
    }
    collect(workers).await
}

async fn collect(mut workers: JoinSet<Outcome>) -> Outcome {
    let mut total = Outcome::empty();
    while let Some(done) = workers.join_next().await {
        total.merge(&done.expect("a load worker panicked"));
    }
    total
}

/// The slots of one fixed-rate run, shared by its workers.
#[derive(Debug)]
struct Slots {
    schedule: Schedule,
    /// One permit per slot that is due (and, at the end, per worker).
    released: Semaphore,
    /// The next slot nobody has taken.
    next: AtomicU64,
    total: u64,
    /// Slots below this are the warm-up.
    warmup: u64,
    start: Instant,
    /// Offset of the measured part's start.
    measure_from: Duration,
    /// Offset after which slots are abandoned rather than sent.
    cutoff: Duration,
}

async fn fixed_rate_worker(slots: Arc<Slots>, mut client: Client) -> Outcome {
    let mut outcome = Outcome::empty();
    let measure_from = slots.start + slots.measure_from;
    let cutoff = slots.start + slots.cutoff;
    loop {
        slots
            .released
            .acquire()
            .await
            .expect("the semaphore is never closed")
            .forget();
        let slot = slots.next.fetch_add(1, Ordering::Relaxed);
        if slot >= slots.total {
            break;
        }
        let due = slots.start + slots.schedule.offset(slot);
        let measured = slot >= slots.warmup;
        let now = Instant::now();
        if now >= cutoff {
            if measured {
                outcome
                    .latencies
                    .saturating_record(micros(now.saturating_duration_since(due)));
                outcome.abandoned += 1;
            }
            continue;
        }
        let ok = client.send(slot_endpoint(slot, client.endpoints())).await == Ok(StatusCode::OK);
        let done = Instant::now();
        if measured {
            outcome.record(done.saturating_duration_since(due), ok);
            outcome.elapsed = outcome
                .elapsed
                .max(done.saturating_duration_since(measure_from));
        }
    }
    outcome
}

async fn closed_loop_worker(
    mut client: Client,
    worker: usize,
    measure_from: Instant,
    end: Instant,
) -> Outcome {
    let mut outcome = Outcome::empty();
    let mut sent = worker as u64;
    loop {
        let sent_at = Instant::now();
        if sent_at >= end {
            break;
        }
        let endpoint = slot_endpoint(sent, client.endpoints());
        sent += 1;
        let ok = client.send(endpoint).await == Ok(StatusCode::OK);
        let done = Instant::now();
        if sent_at >= measure_from {
            outcome.record(done - sent_at, ok);
            outcome.elapsed = outcome
                .elapsed
                .max(done.saturating_duration_since(measure_from));
        }
    }
    outcome
}

/// Round robin: request `slot` goes to endpoint `slot mod endpoints`.
fn slot_endpoint(slot: u64, endpoints: usize) -> usize {
    (slot % endpoints.max(1) as u64) as usize
}

/// One worker's connections, one per endpoint, opened when first needed.
struct Client {
    workload: Arc<Workload>,
    connections: Vec<Option<Connection>>,
}

/// A keep-alive HTTP/1.1 connection. Its driver task is aborted with it.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Client {
    fn new(workload: Arc<Workload>) -> Client {
        let connections = workload.endpoints.iter().map(|_| None).collect();
        Client {
            workload,
            connections,
        }
    }

    fn endpoints(&self) -> usize {
        self.connections.len()
    }

    /// Sends the workload's request to endpoint `index` and reads the whole
    /// answer; the status, or why there is none. A connection that failed
    /// or timed out is dropped.
    async fn send(&mut self, index: usize) -> Result<StatusCode, String> {
        let timeout = self.workload.request_timeout;
        match tokio::time::timeout(timeout, self.exchange(index)).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => {
                self.connections[index] = None;
                Err(e)
            }
            Err(_) => {
                self.connections[index] = None;
                Err(format!("no answer within {timeout:?}"))
            }
        }
    }

    async fn exchange(&mut self, index: usize) -> Result<StatusCode, String> {
        let endpoint = &self.workload.endpoints[index];
        let slot = &mut self.connections[index];
        // A kept-alive connection the server has closed since (it answered
        // with `connection: close`, or timed it out) is replaced, not an
        // error: only a fresh connection's failure counts.
        let reusable = match slot.as_mut() {
            Some(connection) => connection.sender.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            let mut fresh = connect(endpoint.addr).await?;
            fresh
                .sender
                .ready()
                .await
                .map_err(|e| format!("connection to {} closed: {e}", endpoint.addr))?;
            *slot = Some(fresh);
        }
        let connection = slot.as_mut().expect("connection ready above");
        let mut request = Request::post(self.workload.path.as_str())
            .header(HOST, endpoint.addr.to_string())
            .header(CONTENT_TYPE, "application/json");
        if let Some(authorization) = &endpoint.authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        let request = request
            .body(Full::new(self.workload.body.clone()))
            .map_err(|e| format!("building the request: {e}"))?;
        let response = connection
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("request to {}: {e}", endpoint.addr))?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer from {}: {e}", endpoint.addr))?;
        Ok(status)
    }
}

async fn connect(addr: SocketAddr) -> Result<Connection, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr}: no answer within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("setting TCP_NODELAY on {addr}: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake with {addr}: {e}"))?;
    let driver = tokio::spawn(async move {
        // Ends when the sender is dropped or the peer closes; either way
        // the next request through this worker reconnects.
        let _ = connection.await;
    });
    Ok(Connection { sender, driver })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::Response;
    use std::convert::Infallible;
    use tokio::net::TcpListener;

    #[test]
    fn slots_fall_at_i_over_rate() {
        let s = Schedule::new(1000);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(1));
        assert_eq!(s.offset(1000), Duration::from_secs(1));
        let thirds = Schedule::new(3);
        assert_eq!(thirds.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(thirds.offset(2), Duration::from_nanos(666_666_666));
    }

    #[test]
    fn schedule_does_not_drift_over_many_slots() {
        // 1/3 s is not a whole number of nanoseconds: adding it up slot by
        // slot would lose 1 ns per slot; computing from the index does not.
        let s = Schedule::new(3);
        let million_secs = 1_000_000;
        assert_eq!(
            s.offset(3 * million_secs),
            Duration::from_secs(million_secs)
        );
        let s = Schedule::new(7_000);
        let mut previous = Duration::ZERO;
        for slot in 1..100_000 {
            let offset = s.offset(slot);
            assert!(offset > previous, "slot {slot} is not after the one before");
            let exact = slot as f64 / 7_000.0;
            assert!((offset.as_secs_f64() - exact).abs() < 1e-9, "slot {slot}");
            previous = offset;
        }
    }

    #[test]
    fn slots_in_a_span() {
        assert_eq!(
            Schedule::new(5_000).slots_in(Duration::from_secs(2)),
            10_000
        );
        assert_eq!(
            Schedule::new(1_000).slots_in(Duration::from_micros(2_500)),
            2
        );
        assert_eq!(Schedule::new(0).rate(), 1);
    }

    #[test]
    fn report_reads_percentiles_in_microseconds() {
        let mut outcome = Outcome::empty();
        for us in 1..=1000 {
            outcome.record(Duration::from_micros(us), us % 100 != 0);
        }
        outcome.abandoned = 5;
        outcome.elapsed = Duration::from_secs(2);
        let r = outcome.report();
        assert_eq!(r.answered, 1000);
        assert_eq!(r.errors, 10 + 5);
        assert_eq!(r.rate, 500.0);
        // Three significant digits: values are exact below 2048 µs.
        assert_eq!(r.p50_us, 500);
        assert_eq!(r.p99_us, 990);
        assert_eq!(r.p999_us, 999);
        assert_eq!(r.max_us, 1000);
    }

    #[test]
    fn latencies_beyond_the_bounds_are_clamped() {
        let mut outcome = Outcome::empty();
        outcome.record(Duration::ZERO, true);
        outcome.record(MAX_LATENCY * 10, true);
        let r = outcome.report();
        assert_eq!(r.answered, 2);
        assert!(r.max_us >= micros(MAX_LATENCY) && r.max_us < micros(MAX_LATENCY) * 2);
    }

    /// A server answering 500 to every `fail_every`-th request, 200 to the
    /// others (closing each connection after one answer when `keep_alive`
    /// is false); returns its address and its request counter.
    async fn serve_with(
        fail_every: u64,
        keep_alive: bool,
    ) -> (SocketAddr, Arc<AtomicU64>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let counter = count.clone();
        let server = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let _ = request.into_body().collect().await;
                        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                        let status = if n % fail_every == 0 {
                            StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            StatusCode::OK
                        };
                        let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
                connections.spawn(async move {
                    let _ = http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, count, server)
    }

    async fn serve(fail_every: u64) -> (SocketAddr, Arc<AtomicU64>, JoinHandle<()>) {
        serve_with(fail_every, true).await
    }

    fn workload(addrs: &[SocketAddr]) -> Workload {
        Workload {
            endpoints: addrs
                .iter()
                .map(|addr| Endpoint {
                    addr: *addr,
                    authorization: Some("Bearer test".into()),
                })
                .collect(),
            path: "/v1/chat/completions".into(),
            body: Bytes::from_static(b"{}"),
            request_timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fixed_rate_counts_requests_and_errors() {
        let (addr, served, server) = serve(4).await;
        let plan = FixedRate {
            rate: 400,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(500),
            drain: Duration::from_secs(1),
            workers: 8,
        };
        let outcome = run_fixed_rate(&workload(&[addr]), plan).await;
        let r = outcome.report();
        assert_eq!(r.answered, 200);
        assert_eq!(served.load(Ordering::SeqCst), 200);
        assert_eq!(r.errors, 50, "every 4th answer is a 500");
        assert_eq!(r.abandoned, 0);
        assert_eq!(outcome.latencies.len(), 200);
        assert!(r.rate > 300.0 && r.rate < 500.0, "rate {}", r.rate);
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn warmup_slots_are_sent_but_not_recorded() {
        let (addr, served, server) = serve(u64::MAX).await;
        let plan = FixedRate {
            rate: 200,
            warmup: Duration::from_millis(250),
            duration: Duration::from_millis(250),
            drain: Duration::from_secs(1),
            workers: 4,
        };
        let r = run_fixed_rate(&workload(&[addr]), plan).await.report();
        assert_eq!(served.load(Ordering::SeqCst), 100);
        assert_eq!(r.answered, 50);
        assert_eq!(r.errors, 0);
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_go_round_robin_and_transport_errors_count() {
        let (up, served, server) = serve(u64::MAX).await;
        // A port nobody listens on: every request to it is refused.
        let down = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let plan = FixedRate {
            rate: 200,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(500),
            drain: Duration::from_secs(1),
            workers: 4,
        };
        let r = run_fixed_rate(&workload(&[up, down]), plan).await.report();
        assert_eq!(r.answered, 100);
        assert_eq!(served.load(Ordering::SeqCst), 50);
        assert_eq!(r.errors, 50);
        let statuses = probe(&workload(&[up, down])).await;
        assert_eq!(statuses[0], Ok(StatusCode::OK));
        assert!(statuses[1].is_err());
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_closed_by_the_server_are_reopened_without_errors() {
        let (addr, served, server) = serve_with(u64::MAX, false).await;
        let plan = ClosedLoop {
            concurrency: 2,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(300),
        };
        let r = run_closed_loop(&workload(&[addr]), plan).await.report();
        assert!(r.answered > 2, "only {} answers", r.answered);
        assert_eq!(r.answered, served.load(Ordering::SeqCst));
        assert_eq!(r.errors, 0);
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_counts_every_answer() {
        let (addr, served, server) = serve(10).await;
        let plan = ClosedLoop {
            concurrency: 4,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(500),
        };
        let outcome = run_closed_loop(&workload(&[addr]), plan).await;
        let r = outcome.report();
        let total = served.load(Ordering::SeqCst);
        assert!(total > 10, "only {total} requests in 0.5 s");
        assert_eq!(r.answered, total);
        assert_eq!(r.errors, total / 10);
        assert!(r.rate > 0.0);
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slots_past_the_cutoff_are_abandoned() {
        // The server holds every answer longer than the run's whole budget:
        // each worker sends once, times out, and the remaining slots are
        // abandoned.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let plan = FixedRate {
            rate: 100,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(300),
            drain: Duration::from_millis(100),
            workers: 2,
        };
        let mut load = workload(&[addr]);
        load.request_timeout = Duration::from_millis(600);
        let outcome = run_fixed_rate(&load, plan).await;
        let r = outcome.report();
        assert_eq!(r.answered, 2, "one timed-out request per worker");
        assert_eq!(r.abandoned, 28);
        assert_eq!(r.errors, 30);
        assert_eq!(outcome.latencies.len(), 30, "abandoned slots are recorded");
        assert!(r.max_us >= 500_000, "the time-outs waited 600 ms");
        server.abort();
    }
}
