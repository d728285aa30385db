//! The server: accepts connections on a [`Listener`], gives each its own task, runs the active
//! expiry cycle, and shuts everything down when asked (SIGINT/SIGTERM via the binary, or
//! SHUTDOWN).
//!
//! The listener is a trait so the same server runs over tokio TCP here and over simulated
//! sockets in `simulation/`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tracing::{Instrument, debug_span, info, warn};

use crate::commands::{Session, Shared};
use crate::connection::{Connection, limits};
pub use crate::net::Listener;

/// How long shutdown waits for connections to finish their current batch.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves clients from `listener` until `shared.shutdown` fires (or at once, when it fired
/// before this started), then drains connections.
pub async fn run<L: Listener>(mut listener: L, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut connections = JoinSet::new();
    let expiry_period =
        Duration::from_millis(shared.config.read().server.active_expire_interval_ms);
    let expiry = {
        let shared = shared.clone();
        let shutdown = shared.shutdown.subscribe();
        tokio::spawn(async move { shared.node.run_expiry(expiry_period, shutdown).await })
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer, local)) => accept(&shared, &mut connections, stream, peer, local),
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.wait_for(|stop| *stop).map(drop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    info!(connections = connections.len(), "shutting down");
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("connections did not close in time; aborting them");
        connections.abort_all();
    }
    let _ = expiry.await;
    info!("server stopped");
}

fn accept<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    shared: &Arc<Shared>,
    connections: &mut JoinSet<()>,
    mut stream: S,
    peer: SocketAddr,
    local: SocketAddr,
) {
    shared
        .stats
        .total_connections
        .fetch_add(1, Ordering::Relaxed);
    let (max, password) = {
        let config = shared.config.read();
        (
            config.server.maxclients,
            !config.server.requirepass.is_empty(),
        )
    };
    let Some(client) = shared.clients.register(peer, local, max) else {
        shared
            .stats
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        connections.spawn(async move {
            let _ = stream
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
        });
        return;
    };
    let span = debug_span!("client", id = client.id, %peer);
    let shared = shared.clone();
    connections.spawn(
        async move {
            tracing::debug!("connected");
            let id = client.id;
            let session = Session::new(client, !password);
            Connection::new(stream, limits(&shared), !password)
                .serve(shared.clone(), session)
                .await;
            shared.clients.unregister(id);
            tracing::debug!("disconnected");
        }
        .instrument(span),
    );
}
