//! The server side of the peer protocol: accepts QUIC connections from other
//! nodes (mutual TLS already checked by the handshake) and serves one request
//! per stream.

use crate::node::Inner;
use crate::rpc::{read_frame, write_frame, Request, Response};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts connections until `stop` is cancelled. Every task it spawns is
/// tracked by `tasks`, so shutdown can wait for them.
pub async fn serve(
    endpoint: quinn::Endpoint,
    inner: Arc<Inner>,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    loop {
        let incoming = tokio::select! {
            _ = stop.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let inner = inner.clone();
        let stop = stop.clone();
        let streams = tasks.clone();
        tasks.spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(%remote, error = %e, "refused peer connection");
                    return;
                }
            };
            loop {
                let (send, recv) = tokio::select! {
                    _ = stop.cancelled() => break,
                    stream = conn.accept_bi() => match stream {
                        Ok(stream) => stream,
                        Err(_) => break,
                    },
                };
                let inner = inner.clone();
                streams.spawn(async move {
                    if let Err(e) = serve_stream(send, recv, &inner).await {
                        tracing::debug!(%remote, error = %e, "peer stream failed");
                    }
                });
            }
        });
    }
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    inner: &Arc<Inner>,
) -> Result<(), crate::rpc::FrameError> {
    let response = match read_frame::<Request>(&mut recv).await {
        Ok(request) => handle(request, inner).await,
        Err(e) => Response::Refused(format!("cannot read request: {e}")),
    };
    write_frame(&mut send, &response).await?;
    let _ = send.finish();
    // Wait for the peer to read the answer before the stream is dropped.
    let _ = send.stopped().await;
    Ok(())
}

async fn handle(request: Request, inner: &Arc<Inner>) -> Response {
    match request {
        Request::AppendEntries(rpc) => {
            inner.heard_append_entries(&rpc.vote);
            inner.heard_leader_commit(rpc.leader_commit.map(|c| c.index));
            Response::AppendEntries(inner.raft.append_entries(rpc).await)
        }
        Request::Vote(rpc) => {
            let answer = inner.raft.vote(rpc).await;
            if answer.as_ref().is_ok_and(|a| a.vote_granted) {
                // As in Raft: granting a vote restarts the election timer.
                inner.elections.reset_timer(std::time::Instant::now());
            }
            Response::Vote(answer)
        }
        Request::PreVote(request) => Response::PreVote {
            granted: inner.answer_pre_vote(&request),
        },
        Request::InstallSnapshot(rpc) => {
            Response::InstallSnapshot(inner.raft.install_snapshot(rpc).await)
        }
        Request::Leader(request) => Response::Leader(inner.handle_leader_request(request).await),
        Request::HoldElections { for_ms } => {
            inner.hold_elections(for_ms);
            Response::Ack
        }
        Request::Campaign => {
            inner.campaign();
            Response::Ack
        }
        Request::Ping => Response::Ack,
    }
}
