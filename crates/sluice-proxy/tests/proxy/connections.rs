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
