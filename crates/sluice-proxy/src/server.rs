//! The proxy's listener: HTTP/1.1 and HTTP/2 (cleartext, or rustls with
//! ALPN), head size and slow-client limits, and graceful shutdown (stop
//! accepting, let in-flight requests and streams finish up to a deadline).
//! The same accept loop serves the admin API ([`serve_with`]).
//!
//! The listener is served by `[proxy] threads` worker threads, each running
//! its own single-threaded event loop that accepts from the shared socket and
//! owns its upstream connection pool, the way nginx runs one event loop per
//! worker: a request, its upstream connection and its answer stay on one
//! thread, so no request pays for waking another thread (on a loaded 2-core
//! machine that cross-thread wake-up was most of the p99 latency). New
//! connections are spread evenly over the workers ([`balance`]): a worker
//! that accepts one while holding more than another hands it over.

mod balance;
mod connections;

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use crate::metrics::ListenerGauges;
use crate::Proxy;
use balance::{Balance, Handoff, Held, Seat};
pub use connections::ConnectionLimits;
use connections::{Activity, Admission, Admitted, Closed};

/// PEM files for TLS on the listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// A TLS acceptor offering HTTP/2 and HTTP/1.1 by ALPN.
    pub fn acceptor(&self) -> Result<TlsAcceptor, String> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read {}: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no certificate", self.cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("cannot read {}: {e}", self.key.display()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", self.cert.display()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Serves `proxy` on `listener` with `proxy.config().threads` worker
/// threads until `stop` is cancelled, then waits up to `drain` for
/// in-flight requests and streams.
pub async fn serve(
    listener: TcpListener,
    proxy: Proxy,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let threads = proxy.config().threads.max(1);
    // One cap for the listener, shared by its workers.
    let listening = Listening::new(
        "proxy",
        proxy.config().connections(),
        proxy.metrics().listener("proxy"),
    )
    .with_tls(tls);
    let listener = listener.into_std()?;
    let mut workers = Vec::with_capacity(threads);
    let seats = Balance::seats(threads, |i| proxy.metrics().worker_connections(i));
    for (i, seat) in seats.into_iter().enumerate() {
        let listener = listener.try_clone()?;
        let proxy = proxy.worker().map_err(std::io::Error::other)?;
        let (listening, stop) = (listening.clone(), stop.clone());
        let (done, finished) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("sluice-proxy-{i}"))
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener = TcpListener::from_std(listener)?;
                            let handler = move |request, _peer| {
                                let proxy = proxy.clone();
                                async move { proxy.handle(request).await }
                            };
                            let seat = Some(seat);
                            serve_seated(listener, handler, listening, seat, stop, drain).await
                        })
                    });
                let _ = done.send(served);
            })?;
        workers.push(finished);
    }
    drop(listener);
    let mut result = Ok(());
    for finished in workers {
        let served = finished
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("a proxy worker thread panicked")));
        if result.is_ok() {
            result = served;
        }
    }
    result
}

/// Hands `stream` to the worker `held` counts it against; gives it back
/// (uncounted) when that worker has stopped or the socket cannot move.
fn hand_over(
    balance: &Balance,
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    held: Held,
) -> Option<Taken> {
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "connection lost while handing it over");
            return None;
        }
    };
    let handoff = Handoff {
        stream,
        peer,
        admitted,
        held,
    };
    let Handoff {
        stream,
        peer,
        admitted,
        ..
    } = balance.hand_off(handoff).err()?;
    let stream = TcpStream::from_std(stream).ok()?;
    Some(Taken {
        stream,
        peer,
        admitted,
        held: None,
    })
}

/// How a listener serves its connections: its name (the metrics' label),
/// TLS, and its connection limits and cap (shared by all its workers).
#[derive(Clone)]
pub struct Listening {
    name: &'static str,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    admission: Admission,
}

impl Listening {
    /// Plain HTTP, `limits`, counting into `gauges`.
    pub fn new(name: &'static str, limits: ConnectionLimits, gauges: ListenerGauges) -> Self {
        Self {
            name,
            tls: None,
            limits,
            admission: Admission::new(limits.max_connections, gauges),
        }
    }

    /// TLS by `acceptor`, if any.
    pub fn with_tls(mut self, acceptor: Option<TlsAcceptor>) -> Self {
        self.tls = acceptor;
        self
    }
}

/// Serves `handler` on `listener` (on the calling runtime) as `listening`
/// says (the handler is given each request with its connection's peer
/// address), until `stop` is cancelled, then waits up to `drain` for in-flight
/// requests. The admin API runs one; each proxy worker runs one with its
/// [`Seat`] in the listener's [`Balance`].
pub async fn serve_with<H, Fut, B>(
    listener: TcpListener,
    handler: H,
    listening: Listening,
    stop: CancellationToken,
    drain: Duration,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_seated(listener, handler, listening, None, stop, drain).await
}

/// What a worker's accept loop waits for.
enum Next {
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    Handed(Option<Handoff>),
    Stop,
}

/// The next connection another worker hands over (never, without a seat).
async fn handed(
    inbox: Option<&mut tokio::sync::mpsc::UnboundedReceiver<Handoff>>,
) -> Option<Handoff> {
    match inbox {
        Some(inbox) => inbox.recv().await,
        None => std::future::pending().await,
    }
}

/// A connection this worker serves: accepted here and kept, or handed over.
struct Taken {
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    held: Option<Held>,
}

/// [`serve_with`], balanced over the listener's workers when `seat` is
/// given.
async fn serve_seated<H, Fut, B>(
    listener: TcpListener,
    handler: H,
    listening: Listening,
    seat: Option<Seat>,
    stop: CancellationToken,
    drain: Duration,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (place, mut inbox) = match seat {
        Some(Seat {
            balance,
            index,
            inbox,
        }) => (Some((balance, index)), Some(inbox)),
        None => (None, None),
    };
    let Listening {
        name,
        tls,
        limits,
        admission,
    } = listening;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(20)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    loop {
        let next = tokio::select! {
            accepted = listener.accept() => Next::Accepted(accepted),
            handoff = handed(inbox.as_mut()) => Next::Handed(handoff),
            _ = stop.cancelled() => Next::Stop,
        };
        let taken = match next {
            Next::Stop => break,
            Next::Handed(None) => {
                // No worker can hand over any more (never while this one
                // holds its seat): stop waiting for it.
                inbox = None;
                continue;
            }
            Next::Handed(Some(Handoff {
                stream,
                peer,
                admitted,
                held,
            })) => match TcpStream::from_std(stream) {
                Ok(stream) => Taken {
                    stream,
                    peer,
                    admitted,
                    held: Some(held),
                },
                Err(e) => {
                    tracing::debug!(listener = name, %peer, error = %e, "handed-over connection lost");
                    continue;
                }
            },
            Next::Accepted(Err(e)) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Next::Accepted(Ok((stream, peer))) => {
                // Full: closed at once (dropping the stream), counted.
                let Some(admitted) = admission.admit() else {
                    tracing::debug!(listener = name, %peer, "connection refused: listener full");
                    continue;
                };
                match &place {
                    None => Taken {
                        stream,
                        peer,
                        admitted,
                        held: None,
                    },
                    Some((balance, me)) => {
                        let held = balance.claim(*me);
                        if held.worker() == *me {
                            Taken {
                                stream,
                                peer,
                                admitted,
                                held: Some(held),
                            }
                        } else {
                            match hand_over(balance, stream, peer, admitted, held) {
                                None => continue,
                                // Its worker has stopped: served here.
                                Some(taken) => taken,
                            }
                        }
                    }
                }
            }
        };
        let Taken {
            stream,
            peer,
            admitted,
            held,
        } = taken;
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let service = {
            let (handler, activity) = (handler.clone(), Arc::clone(&activity));
            service_fn(move |request| {
                let busy = activity.begin();
                // Boxed: hyper keeps room for the service's future for the
                // connection's whole life (a streamed answer included), and
                // the admin API's futures are kilobytes (the proxy boxes
                // its model calls itself).
                let answer = Box::pin(handler(request, peer));
                async move {
                    let response = answer.await;
                    // In flight until the answer's body is done or dropped.
                    Ok::<_, Infallible>(response.map(|body| {
                        body.map_frame(move |frame| {
                            let _busy = &busy;
                            frame
                        })
                    }))
                }
            })
        };
        let (tls, builder, watcher) = (tls.clone(), Arc::clone(&builder), graceful.watcher());
        let connection = async move {
            let io = match tls {
                None => Either::Left(stream),
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => Either::Right(stream),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
            };
            let connection = builder
                .serve_connection(TokioIo::new(io), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        };
        tokio::spawn(async move {
            let (_admitted, _held) = (admitted, held);
            tokio::select! {
                () = connection => {}
                closed = activity.watchdog(&limits) => match closed {
                    Closed::NoFirstRequest => tracing::debug!(
                        listener = name, %peer, "closed: no request by the first-request deadline"
                    ),
                    Closed::Idle => tracing::debug!(listener = name, %peer, "closed: idle"),
                },
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(listener = name, deadline = ?drain, "requests still in flight at the drain deadline");
    }
    Ok(())
}
