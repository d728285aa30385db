//! The server side of the cluster bus: authenticated connections from peers, each answering
//! one Raft RPC at a time (`network/` holds the wire format and the client side).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tracing::{debug, warn};

use super::auth::{AuthError, Session, TAG};
use super::durable::Durable;
use super::lease::Lease;
use super::network::{
    Answer, Bus, HANDSHAKE_TIMEOUT, MAX_CONNECTIONS, MAX_FRAME, Request, Response, Rpc, codec,
};
use super::{Raft, Response as MachineResponse, decode, encode};
use crate::net::Listener;
use crate::peers::NodeId;

/// Serves Raft RPCs for `group` from `listener` until `shutdown` fires. A connection must pass
/// the handshake under `bus.auth` within `HANDSHAKE_TIMEOUT` (2 s) before its first RPC; beyond
/// [`MAX_CONNECTIONS`] new connections are closed at once.
pub async fn serve<L: Listener, R: MachineResponse>(
    mut listener: L,
    raft: Raft<R>,
    durable: Durable,
    lease: Arc<Lease>,
    bus: Bus,
    group: u64,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer, _)) => {
                    if connections.len() >= MAX_CONNECTIONS {
                        debug!(%peer, "cluster bus full; closing a new connection");
                        continue;
                    }
                    let raft = raft.clone();
                    let durable = durable.clone();
                    let lease = lease.clone();
                    let bus = bus.clone();
                    connections.spawn(async move {
                        let mut conn = Framed::new(stream, codec());
                        let handshake = bus.auth.accept(&mut conn, group);
                        let proved =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
                                .await
                                .unwrap_or_else(|_| {
                                    Err(AuthError::Io(std::io::Error::new(
                                        std::io::ErrorKind::TimedOut,
                                        "handshake timed out",
                                    )))
                                });
                        match proved {
                            Ok((node, session)) => {
                                conn.codec_mut().set_max_frame_length(MAX_FRAME + TAG);
                                debug!(%peer, node, "raft peer connected");
                                let node_ctx = Serving { raft, durable, lease, bus: &bus, peer: node, group };
                                serve_connection(conn, session, node_ctx).await;
                                debug!(%peer, node, "raft peer disconnected");
                            }
                            Err(e) => warn!(%peer, cause = %e, "cluster bus: connection refused"),
                        }
                    });
                }
                Err(e) => {
                    warn!(cause = %e, "raft accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.wait_for(|stop| *stop).map(drop) => break,
        }
    }
    connections.abort_all();
}

/// Whether a log ending at `last` holds more than a cluster's beginning: the initial
/// membership (index 0) and a first leader's empty entry (index 1).
fn history(last: Option<&openraft::LogId<NodeId>>) -> bool {
    last.is_some_and(|l| l.index > 1)
}

/// Whether this node's own log holds more than a cluster's beginning.
fn own_history<R: MachineResponse>(raft: &Raft<R>) -> bool {
    raft.metrics()
        .borrow()
        .last_log_index
        .is_some_and(|index| index > 1)
}

/// What one authenticated connection answers with.
struct Serving<'a, R: MachineResponse> {
    raft: Raft<R>,
    durable: Durable,
    lease: Arc<Lease>,
    bus: &'a Bus,
    peer: NodeId,
    group: u64,
}

async fn serve_connection<S, R: MachineResponse>(
    mut conn: Framed<S, LengthDelimitedCodec>,
    mut session: Session,
    node: Serving<'_, R>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Serving {
        raft,
        durable,
        lease,
        bus,
        peer,
        group,
    } = node;
    while let Some(Ok(frame)) = conn.next().await {
        let frame = match session.open(frame) {
            Ok(frame) => frame,
            Err(e) => {
                warn!(cause = %e, "cluster bus: closing the connection");
                return;
            }
        };
        let request: Request<R> = match decode(&frame) {
            Ok(r) => r,
            Err(e) => {
                warn!(cause = %e, "undecodable raft request; closing the connection");
                return;
            }
        };
        let clocks = &bus.clocks;
        let cluster = bus.cluster.load(Ordering::Relaxed);
        let response = if request.group != group {
            Response::UnknownGroup(request.group)
        } else if cluster != 0 && request.cluster != 0 && request.cluster != cluster {
            debug!(
                peer,
                ours = cluster,
                theirs = request.cluster,
                "cluster bus: refusing a node of another cluster"
            );
            Response::OtherCluster(cluster)
        } else if clocks.check_request(peer, request.sent_ms).is_err() {
            Response::ClockAhead
        } else {
            match request.rpc {
                Rpc::Append(r) => {
                    let answer = raft.append_entries(r).await;
                    // The entries are queued for the disk, maybe not on it yet: the leader
                    // counts this node for them once it answers, so the answer waits.
                    if let Err(e) = durable.queued().await {
                        warn!(cause = %e, "raft log not durable; closing the connection");
                        return;
                    }
                    Response::Append(answer)
                }
                Rpc::Vote(_) if !clocks.grants_votes() => Response::NoVoteYet,
                // A leader that may be answering reads under its lease keeps its vote too
                // (`lease.rs`).
                Rpc::Vote(_) if lease.holds(&raft.metrics().borrow()) => Response::Leading,
                // A node whose log holds nothing beyond a cluster's beginning (an empty disk:
                // it may have voted before it lost it) votes only for a candidate whose log
                // holds nothing more either: in a new cluster's first elections.
                Rpc::Vote(ref r) if history(r.last_log_id.as_ref()) && !own_history(&raft) => {
                    Response::NoStateNoVote
                }
                Rpc::Vote(r) => Response::Vote(raft.vote(r).await),
                Rpc::Snapshot(r) => Response::Snapshot(raft.install_snapshot(r).await),
                Rpc::Ping => Response::Pong,
            }
        };
        let answer = Answer {
            sent_ms: clocks.now_ms(),
            response,
        };
        if conn.send(session.seal(encode(&answer))).await.is_err() {
            return;
        }
    }
}
