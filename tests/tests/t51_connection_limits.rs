//! Connections can't be held for free: on both listeners a connection that
//! sends nothing, one byte, or a request head a byte at a time is closed by
//! the first-request deadline, a keep-alive connection left idle is closed
//! too, a normal request is answered meanwhile, heads over the size and
//! field limits get 431, and a full listener closes new connections at once
//! and counts them. Those run over plain HTTP (raw heads on the socket); the
//! admin API's HTTPS, its default, is held the same way during its TLS
//! handshake.

use sluice_e2e::Cluster;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const FIRST_REQUEST_MS: u64 = 1_000;
const IDLE_MS: u64 = 2_000;
/// Scheduling and polling slack on a loaded machine.
const MARGIN: Duration = Duration::from_millis(1_500);
const PROXY_MAX_CONNECTIONS: usize = 6;

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("listener address")
}

/// How a held connection behaves.
#[derive(Debug, Clone, Copy)]
enum Hold {
    Silent,
    OneByte,
    /// A request head that never ends, one byte every 100 ms.
    Slowloris,
    /// One full request, then nothing.
    IdleKeepAlive,
}

/// Holds a connection to `to` as `how`; returns how long after connecting
/// the server closed it (EOF or reset), or `None` if still open after 10 s.
fn hold(to: SocketAddr, how: Hold) -> JoinHandle<(Hold, Option<Duration>)> {
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(to).expect("connect");
        let opened = Instant::now();
        let give_up = opened + Duration::from_secs(10);
        // Reads time out every 100 ms, which paces the slowloris bytes.
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let mut trickle = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .copied()
            .chain(std::iter::repeat(b'a'));
        match how {
            Hold::Silent => {}
            Hold::OneByte => stream.write_all(b"G").expect("write"),
            Hold::Slowloris => {}
            Hold::IdleKeepAlive => stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("write"),
        }
        let mut buf = [0u8; 4096];
        let mut answered_at = None;
        while Instant::now() < give_up {
            if let Hold::Slowloris = how {
                let byte = [trickle.next().unwrap_or(b'a')];
                if stream.write_all(&byte).is_err() {
                    return (how, Some(opened.elapsed()));
                }
            }
            match stream.read(&mut buf) {
                Ok(0) => {
                    let closed = answered_at.map_or(opened.elapsed(), |at: Instant| at.elapsed());
                    return (how, Some(closed));
                }
                Ok(_) => {
                    // The answer to the keep-alive request: idle from here.
                    answered_at.get_or_insert_with(Instant::now);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return (how, Some(opened.elapsed())),
            }
        }
        (how, None)
    })
}

/// The status of the answer to `head` (a whole request head), sent raw.
fn raw_status(to: SocketAddr, head: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(to).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(head.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn get(url: &str) -> u16 {
    // A fresh client: no pooled connection outlives the request's check.
    reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
        .get(url)
        .send()
        .map_or(0, |r| r.status().as_u16())
}

/// The value of the metric line starting with `series` on node 1.
fn metric(cluster: &Cluster, series: &str) -> Option<f64> {
    let text = cluster
        .http_client(Duration::from_secs(5))
        .get(format!("{}/metrics", cluster.admin_url(1)))
        .send()
        .ok()?
        .text()
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn held_connections_are_closed_by_their_deadlines_on_both_listeners() {
    let limits = format!(
        "first_request_timeout_ms = {FIRST_REQUEST_MS}\n\
         header_read_timeout_ms = {IDLE_MS}\n\
         idle_timeout_ms = {IDLE_MS}\n"
    );
    let cluster = Cluster::builder()
        .nodes(1)
        .budget(Duration::from_secs(40))
        .admin_plain_http()
        .config_extra(format!(
            "[proxy]\n{limits}max_connections = {PROXY_MAX_CONNECTIONS}\n[admin]\n{limits}"
        ))
        .start();
    let listeners = [
        ("proxy", addr(&cluster.proxy_url(1))),
        ("admin", addr(&cluster.admin_url(1))),
    ];

    let holds: Vec<_> = listeners
        .iter()
        .flat_map(|&(name, to)| {
            [
                Hold::Silent,
                Hold::OneByte,
                Hold::Slowloris,
                Hold::IdleKeepAlive,
            ]
            .map(|how| (name, hold(to, how)))
        })
        .collect();
    // Meanwhile, both listeners answer.
    for (name, to) in listeners {
        let url = format!("http://{to}/healthz");
        assert_eq!(get(&url), 200, "{name} /healthz while connections are held");
    }
    for (name, held) in holds {
        let (how, closed) = held.join().expect("holding thread");
        let deadline = Duration::from_millis(match how {
            Hold::IdleKeepAlive => IDLE_MS,
            _ => FIRST_REQUEST_MS,
        });
        let closed = closed
            .unwrap_or_else(|| panic!("{name}: a {how:?} connection was still open after 10 s"));
        eprintln!("{name}: {how:?} closed after {closed:?} (deadline {deadline:?})");
        assert!(
            closed <= deadline + MARGIN,
            "{name}: a {how:?} connection was closed after {closed:?}, deadline {deadline:?}"
        );
        assert!(
            closed + Duration::from_millis(200) >= deadline,
            "{name}: a {how:?} connection was closed early, after {closed:?}"
        );
    }
    for (name, to) in listeners {
        let url = format!("http://{to}/healthz");
        assert_eq!(get(&url), 200, "{name} /healthz after the held connections");
    }

    // Head limits: the admin listener's 16 KiB, the proxy's 100 fields.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    assert_eq!(
        raw_status(listeners[1].1, &big),
        Some(431),
        "admin, 20 KiB head"
    );
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    assert_eq!(
        raw_status(listeners[0].1, &many),
        Some(431),
        "proxy, 150 fields"
    );
    let fine = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for (name, to) in listeners {
        assert_eq!(raw_status(to, fine), Some(200), "{name}, a small head");
    }

    // A full proxy listener closes new connections at once, and counts them.
    let open = "sluice_listener_connections_open{listener=\"proxy\"}";
    cluster.wait_until(Duration::from_secs(10), "no proxy connection open", || {
        metric(&cluster, open) == Some(0.0)
    });
    let proxy = listeners[0].1;
    let full: Vec<TcpStream> = (0..PROXY_MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(proxy).expect("connect"))
        .collect();
    cluster.wait_until(Duration::from_secs(5), "the proxy listener full", || {
        metric(&cluster, open) == Some(PROXY_MAX_CONNECTIONS as f64)
    });
    let refused = hold(proxy, Hold::Silent).join().expect("holding thread").1;
    assert!(
        refused.is_some_and(|after| after < Duration::from_millis(FIRST_REQUEST_MS / 2)),
        "a connection over the cap was not closed at once: {refused:?}"
    );
    let counted = metric(
        &cluster,
        "sluice_listener_connections_refused_total{listener=\"proxy\"}",
    );
    assert!(
        counted.is_some_and(|n| n >= 1.0),
        "refused connections counted: {counted:?}"
    );
    // The admin listener has its own cap: it still answers.
    assert_eq!(get(&format!("http://{}/healthz", listeners[1].1)), 200);
    drop(full);
    cluster.wait_until(Duration::from_secs(10), "the proxy answers again", || {
        get(&format!("http://{proxy}/healthz")) == 200
    });
}

/// The admin API over HTTPS (its default): a connection that sends
/// nothing, the first byte of a TLS record, or a ClientHello a byte at a
/// time is closed by the first-request deadline, which covers the
/// handshake; an HTTPS request is answered meanwhile.
#[test]
fn the_tls_handshake_is_held_to_the_first_request_deadline() {
    let cluster = Cluster::builder()
        .nodes(1)
        .budget(Duration::from_secs(40))
        .config_extra(format!(
            "[admin]\nfirst_request_timeout_ms = {FIRST_REQUEST_MS}\n"
        ))
        .start();
    let admin = addr(&cluster.admin_url(1));
    // The record header of a handshake, then a ClientHello's first bytes:
    // a TLS client that never finishes saying hello.
    let hello: &'static [u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
    let holds: Vec<_> = [Hold::Silent, Hold::OneByte, Hold::Slowloris]
        .map(|how| hold_tls(admin, how, hello))
        .into_iter()
        .collect();
    let http = cluster.http_client(Duration::from_secs(5));
    let url = format!("{}/healthz", cluster.admin_url(1));
    let answered = http.get(&url).send().map(|r| r.status().as_u16());
    assert_eq!(
        answered.ok(),
        Some(200),
        "HTTPS /healthz while handshakes are held"
    );
    for held in holds {
        let (how, closed) = held.join().expect("holding thread");
        let closed = closed
            .unwrap_or_else(|| panic!("admin TLS: a {how:?} connection was still open after 10 s"));
        eprintln!("admin TLS: {how:?} closed after {closed:?}");
        let deadline = Duration::from_millis(FIRST_REQUEST_MS);
        assert!(
            closed <= deadline + MARGIN && closed + Duration::from_millis(200) >= deadline,
            "admin TLS: a {how:?} connection closed after {closed:?}, deadline {deadline:?}"
        );
    }
}

/// [`hold`] for a TLS listener: `OneByte` sends the first byte of
/// `hello`, `Slowloris` all of it a byte every 100 ms.
fn hold_tls(
    to: SocketAddr,
    how: Hold,
    hello: &'static [u8],
) -> JoinHandle<(Hold, Option<Duration>)> {
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(to).expect("connect");
        let opened = Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let mut bytes = hello.iter().copied();
        if let Hold::OneByte = how {
            stream.write_all(&hello[..1]).expect("write");
            bytes = hello[hello.len()..].iter().copied();
        }
        let mut buf = [0u8; 1024];
        while opened.elapsed() < Duration::from_secs(10) {
            if let (Hold::Slowloris, Some(byte)) = (how, bytes.next()) {
                if stream.write_all(&[byte]).is_err() {
                    return (how, Some(opened.elapsed()));
                }
            }
            match stream.read(&mut buf) {
                Ok(0) => return (how, Some(opened.elapsed())),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return (how, Some(opened.elapsed())),
            }
        }
        (how, None)
    })
}
