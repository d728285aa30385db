//! Test support: a disk whose writes wait behind a gate the test opens and shuts.

use std::sync::Arc;

use super::tests::{Options, single_node_on};
use super::*;
use crate::replication::WalDisk;

/// A disk whose writes wait while its gate is shut: entries cannot become durable, so they
/// cannot commit. With `hold_snapshots`, saving a snapshot never finishes (a very large one
/// on a slow disk).
pub(super) struct GatedDisk {
    inner: Arc<WalDisk>,
    open: tokio::sync::watch::Receiver<bool>,
    hold_snapshots: bool,
    pub(super) snapshot_saves: std::sync::atomic::AtomicUsize,
}

impl GatedDisk {
    pub(super) fn new(
        dir: &std::path::Path,
        open: tokio::sync::watch::Receiver<bool>,
        hold_snapshots: bool,
    ) -> Arc<GatedDisk> {
        Arc::new(GatedDisk {
            inner: Arc::new(WalDisk::open(&dir.join("wal"), dir.join("raft.snapshot")).unwrap()),
            open,
            hold_snapshots,
            snapshot_saves: Default::default(),
        })
    }
}

impl replication::Disk for GatedDisk {
    fn recover(&self) -> std::io::Result<replication::Recovered> {
        self.inner.recover()
    }

    fn write(
        self: &Arc<Self>,
        ops: Vec<replication::DiskOp>,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        let (inner, mut open) = (self.inner.clone(), self.open.clone());
        async move {
            while !*open.borrow_and_update() {
                let _ = open.changed().await;
            }
            inner.write(ops).await
        }
    }

    fn load_snapshot(
        self: &Arc<Self>,
    ) -> impl std::future::Future<Output = std::io::Result<Option<Vec<u8>>>> + Send {
        self.inner.load_snapshot()
    }

    fn save_snapshot(
        self: &Arc<Self>,
        snapshot: Arc<Vec<u8>>,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        self.snapshot_saves
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (inner, hold) = (self.inner.clone(), self.hold_snapshots);
        async move {
            if hold {
                std::future::pending::<()>().await;
            }
            inner.save_snapshot(snapshot).await
        }
    }
}

/// A leading one-member node on a disk whose writes wait while the returned gate is shut
/// (it is shut on return).
pub(super) async fn gated_node(
    dir: &std::path::Path,
    options: Options,
) -> (Node, tokio::sync::watch::Sender<bool>) {
    let (gate, open) = tokio::sync::watch::channel(true);
    let disk = GatedDisk::new(dir, open, false);
    let node = single_node_on(dir, disk, options).await;
    gate.send_replace(false);
    (node, gate)
}
