//! Connections that never send a request: on a TLS listener the handshake
//! itself is under the first-request deadline.

use std::time::{Duration, Instant};

use sluice_proxy::ProxyConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::*;

/// How long after connecting the server closed `stream` (EOF or reset).
async fn closed_after(mut stream: TcpStream, opened: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return opened.elapsed(),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_at_the_first_request_deadline() {
    within(async {
        let (_dir, _cert, files) = self_signed();
        let world = World::default();
        let deadline = Duration::from_millis(300);
        let config = ProxyConfig {
            first_request_timeout: deadline,
            ..config()
        };
        let Listening { addr, stop, .. } =
            listen(&world, config, Some(files.acceptor().unwrap())).await;
        let silent = TcpStream::connect(addr).await.unwrap();
        let opened = Instant::now();
        let mut partial = TcpStream::connect(addr).await.unwrap();
        // The first bytes of a ClientHello record, and no more.
        partial.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        let (silent, partial) =
            tokio::join!(closed_after(silent, opened), closed_after(partial, opened));
        for (what, after) in [("silent", silent), ("partial handshake", partial)] {
            assert!(
                after >= deadline - Duration::from_millis(50)
                    && after < deadline + Duration::from_secs(2),
                "{what}: closed after {after:?}, deadline {deadline:?}"
            );
        }
        stop.cancel();
    })
    .await;
}

/// The open connections of worker thread `worker`, as the proxy publishes
/// them.
fn worker_connections(listening: &Listening, worker: usize) -> Option<i64> {
    let text = listening.proxy.metrics().encode();
    let series = format!("sluice_proxy_worker_connections{{worker=\"{worker}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse().ok())
}

/// Waits until workers 0 and 1 hold `want` connections (before the
/// first-request deadline closes them).
async fn wait_for_workers(listening: &Listening, want: [i64; 2], deadline: Instant) {
    loop {
        let counts = [0, 1].map(|w| worker_connections(listening, w));
        if counts == want.map(Some) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "workers hold {counts:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn connections_are_spread_evenly_over_the_worker_threads() {
    within(async {
        let world = World::default();
        let config = ProxyConfig {
            threads: 2,
            ..config()
        };
        let listening = listen(&world, config, None).await;
        // Opened one after another: the kernel would hand most of them to
        // whichever worker is waiting in accept.
        let mut open = Vec::new();
        for _ in 0..10 {
            open.push(TcpStream::connect(listening.addr).await.unwrap());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        wait_for_workers(&listening, [5, 5], deadline).await;
        // Closed, they are counted out.
        drop(open);
        wait_for_workers(&listening, [0, 0], deadline).await;
        listening.stop.cancel();
    })
    .await;
}
