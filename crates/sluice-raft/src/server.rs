//! The server side of the peer protocol: accepts QUIC connections from other
//! nodes (mutual TLS already checked by the handshake) and serves one request
//! per stream, each only from a peer allowed to make it.
//!
//! # Authorisation
//! The handshake proves a certificate was signed by the cluster CA, which
//! every node ever issued was, removed ones included. So each request is
//! also checked against the current membership: the certificate must name
//! (`node-<id>.sluice`) a node that is a voter or learner now, or the
//! leader this node follows (which leads on while a change that removes it
//! commits). One request
//! is let in from outside: a node asking to be added as a learner under the
//! id its own certificate names (the documented join). A node that is not
//! a member itself yet (joining) cannot check its senders, and takes
//! replication from any certified node until it is one.

use crate::node::Inner;
use crate::rpc::{read_frame, write_frame, LeaderRequest, Request, Response};
use crate::tls::node_server_name;
use crate::types::NodeId;
use rustls_pki_types::{CertificateDer, ServerName};
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
            let certificate = peer_certificate(&conn);
            loop {
                let (send, recv) = tokio::select! {
                    _ = stop.cancelled() => break,
                    stream = conn.accept_bi() => match stream {
                        Ok(stream) => stream,
                        Err(_) => break,
                    },
                };
                let (inner, certificate) = (inner.clone(), certificate.clone());
                streams.spawn(async move {
                    if let Err(e) = serve_stream(send, recv, &inner, certificate.as_deref()).await {
                        tracing::debug!(%remote, error = %e, "peer stream failed");
                    }
                });
            }
        });
    }
}

/// The leaf certificate the peer presented (the handshake required one).
fn peer_certificate(conn: &quinn::Connection) -> Option<Arc<CertificateDer<'static>>> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.first().cloned().map(Arc::new)
}

/// Whether `certificate` names node `id`.
fn names(certificate: &CertificateDer<'_>, id: NodeId) -> bool {
    let Ok(leaf) = webpki::EndEntityCert::try_from(certificate) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(node_server_name(id)) else {
        return false;
    };
    leaf.verify_is_valid_for_subject_name(&name).is_ok()
}

/// Why `request` from the holder of `certificate` is refused, if it is.
pub(crate) fn refusal(
    request: &Request,
    certificate: Option<&CertificateDer<'_>>,
    members: &[NodeId],
    self_is_member: bool,
) -> Option<String> {
    let Some(certificate) = certificate else {
        return Some("no client certificate".into());
    };
    if members.iter().any(|id| names(certificate, *id)) {
        return None;
    }
    match request {
        // The join: a node may ask to be added under its own name only.
        Request::Leader(LeaderRequest::AddLearner { id, .. }) if names(certificate, *id) => None,
        // Replication to a node that has no membership to check against.
        Request::AppendEntries(_) | Request::InstallSnapshot(_) | Request::Ping
            if !self_is_member =>
        {
            None
        }
        _ => Some("the certificate names no current member of the cluster".into()),
    }
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    inner: &Arc<Inner>,
    certificate: Option<&CertificateDer<'static>>,
) -> Result<(), crate::rpc::FrameError> {
    let response = match read_frame::<Request>(&mut recv).await {
        Ok(request) => {
            let (members, self_is_member) = inner.member_ids();
            match refusal(&request, certificate, &members, self_is_member) {
                Some(why) => {
                    tracing::warn!(error = %why, "refused a peer request");
                    Response::Refused(why)
                }
                None => handle(request, inner).await,
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Member;
    use rcgen::{CertificateParams, KeyPair};

    /// A certificate naming `node-<id>.sluice` and `cluster.sluice`, as
    /// `sluice init` issues them (self-signed: only the names matter here).
    fn certificate(id: NodeId) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec![node_server_name(id), "cluster.sluice".into()]).unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn add_learner(id: NodeId) -> Request {
        Request::Leader(LeaderRequest::AddLearner {
            id,
            member: Member {
                raft_addr: "127.0.0.1:1".into(),
                admin_url: "http://127.0.0.1:2".into(),
                proxy_url: "http://127.0.0.1:3".into(),
            },
        })
    }

    #[test]
    fn only_current_members_are_served_and_a_stranger_may_only_add_itself() {
        let (two, nine) = (certificate(2), certificate(9));
        let members = [1, 2, 3];
        assert_eq!(refusal(&Request::Ping, Some(&two), &members, true), None);
        assert_eq!(
            refusal(&Request::Campaign, Some(&two), &members, true),
            None
        );
        // Node 9 (never a member, or removed) is refused everything…
        for request in [Request::Ping, Request::Campaign, add_learner(2)] {
            assert!(refusal(&request, Some(&nine), &members, true).is_some());
        }
        // …but asking to be added under its own name.
        assert_eq!(refusal(&add_learner(9), Some(&nine), &members, true), None);
        // Removed from the membership, node 2 is refused too.
        assert!(refusal(&Request::Ping, Some(&two), &[1, 3], true).is_some());
        // A joining node, with no membership yet, takes replication.
        assert_eq!(refusal(&Request::Ping, Some(&nine), &[], false), None);
        assert!(refusal(&Request::Campaign, Some(&nine), &[], false).is_some());
        assert!(refusal(&Request::Ping, None, &members, true).is_some());
    }
}
