//! [`Applier`]: openraft's state machine, adapting a [`Machine`]: it tracks the applied
//! position and the membership, hands normal entries to the machine, and builds, stores and
//! installs snapshots.
//!
//! The machine itself lives in memory. On restart it is rebuilt from the latest snapshot on
//! disk, and openraft re-applies the committed entries after it.

use std::io::{self, Cursor};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::disk::{Disk, DiskOp, Recovered};
use super::durable::Durable;
use super::log::Writer;
use super::{CodecError, Machine, ReplicationError, Response, TypeConfig, decode, encode};
use crate::peers::{Member, NodeId};

type Meta = SnapshotMeta<NodeId, Member>;

/// A snapshot as stored and as sent to followers is one buffer: its encoded metadata, then the
/// machine's bytes. One buffer, so building, saving, sending and installing it copy nothing.
fn begin_snapshot(meta: &Meta) -> Vec<u8> {
    encode(meta)
}

/// A snapshot's metadata and the machine's bytes in it.
fn split_snapshot(snapshot: &[u8]) -> Result<(Meta, &[u8]), CodecError> {
    let (meta, read) =
        bincode::serde::decode_from_slice::<Meta, _>(snapshot, bincode::config::standard())?;
    Ok((meta, &snapshot[read..]))
}

/// How versions before snapshot files stored a snapshot (inside the log's store).
#[derive(Deserialize, Serialize)]
pub(super) struct OldSnapshot {
    pub(super) meta: Meta,
    pub(super) data: Vec<u8>,
}

/// The snapshot on disk: saved one at a time, and never replaced by an older one (a snapshot
/// built in the background may finish after a newer one was installed from the leader, whose
/// log the install then purged).
struct Saved<R: Response, D: Disk> {
    disk: Arc<D>,
    meta: tokio::sync::Mutex<Option<Meta>>,
    /// Not written through (snapshots are saved apart from the log), only held: the writer
    /// task ends, and so tells that the disk is let go, once every holder of the disk is gone.
    _writer: Writer<R>,
}

impl<R: Response, D: Disk> Saved<R, D> {
    /// Saves `snapshot` (described by `meta`) unless the one on disk is as new, and gives the
    /// buffer back.
    async fn save(&self, meta: &Meta, snapshot: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut saved = self.meta.lock().await;
        if saved
            .as_ref()
            .is_some_and(|s| s.last_log_id >= meta.last_log_id)
        {
            return Ok(snapshot);
        }
        let snapshot = Arc::new(snapshot);
        self.disk.save_snapshot(snapshot.clone()).await?;
        *saved = Some(meta.clone());
        Ok(Arc::unwrap_or_clone(snapshot))
    }
}

/// openraft's state machine (v2 storage API) over a [`Machine`], with snapshots on `D`.
pub struct Applier<M: Machine, D: Disk> {
    machine: Arc<M>,
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
    /// The snapshot on disk, shared with builders running in the background. No copy of it is
    /// kept in memory: a leader reads it back to send it.
    saved: Arc<Saved<M::Response, D>>,
    /// Distinguishes snapshots built at the same log position.
    built: Arc<AtomicU64>,
    /// How far the log is on disk: an entry is applied only once it is (`durable.rs`).
    durable: Durable,
}

impl<M: Machine, D: Disk> std::fmt::Debug for Applier<M, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

impl<M: Machine, D: Disk> Applier<M, D> {
    /// The state machine as of the latest snapshot on `disk` (or empty), applying to
    /// `machine`. A snapshot an older version kept in the log's store is moved to its own
    /// place first (through `writer`, which forgets the old copy).
    pub async fn recover(
        recovered: &Recovered,
        machine: Arc<M>,
        writer: &Writer<M::Response>,
        disk: Arc<D>,
    ) -> Result<Applier<M, D>, ReplicationError> {
        let mut snapshot = disk.load_snapshot().await.map_err(ReplicationError::Disk)?;
        if let Some(old) = &recovered.old_snapshot {
            if snapshot.is_none() {
                let old: OldSnapshot = decode(old)?;
                let mut moved = begin_snapshot(&old.meta);
                moved.extend_from_slice(&old.data);
                let moved = Arc::new(moved);
                disk.save_snapshot(moved.clone())
                    .await
                    .map_err(ReplicationError::Disk)?;
                tracing::info!("snapshot moved out of the log's store into its own file");
                snapshot = Some(Arc::unwrap_or_clone(moved));
            }
            writer
                .write(DiskOp::DropOldSnapshot)
                .await
                .map_err(ReplicationError::Disk)?;
        }
        let mut sm = Applier {
            machine,
            durable: writer.durable(),
            applied: None,
            membership: StoredMembership::default(),
            saved: Arc::new(Saved {
                disk,
                meta: tokio::sync::Mutex::new(None),
                _writer: writer.clone(),
            }),
            built: Arc::new(AtomicU64::new(0)),
        };
        if let Some(bytes) = &snapshot {
            let (meta, data) = split_snapshot(bytes).map_err(ReplicationError::Corrupt)?;
            crate::blocking::off_the_workers(|| sm.machine.restore(data))
                .map_err(|e| ReplicationError::Restore(Box::new(e)))?;
            sm.applied = meta.last_log_id;
            sm.membership = meta.last_membership.clone();
            *sm.saved.meta.lock().await = Some(meta);
        }
        Ok(sm)
    }
}

/// Builds one snapshot from state captured when it was created.
pub struct SnapshotBuilder<R: Response, D: Disk> {
    meta: Meta,
    snapshot: Vec<u8>,
    saved: Arc<Saved<R, D>>,
}

impl<R: Response, D: Disk> RaftSnapshotBuilder<TypeConfig<R>> for SnapshotBuilder<R, D> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig<R>>, StorageError<NodeId>> {
        let meta = self.meta.clone();
        // Durable before it is announced: the log up to it may be purged next.
        let snapshot = self
            .saved
            .save(&meta, std::mem::take(&mut self.snapshot))
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e))
            })?;
        tracing::info!(last_log = ?meta.last_log_id, bytes = snapshot.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(snapshot)),
        })
    }
}

impl<M: Machine, D: Disk> RaftStateMachine<TypeConfig<M::Response>> for Applier<M, D> {
    type SnapshotBuilder = SnapshotBuilder<M::Response, D>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>>
    {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<M::Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig<M::Response>>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        if let Some(last) = entries.last() {
            self.durable
                .entry(last.log_id.index)
                .await
                .map_err(|e| StorageError::from(StorageIOError::apply(last.log_id, &e)))?;
        }
        let mut responses = Vec::with_capacity(entries.len());
        for entry in entries {
            let response = match entry.payload {
                EntryPayload::Blank => M::Response::default(),
                EntryPayload::Normal(payload) => self
                    .machine
                    .apply(entry.log_id.index, &payload.0)
                    .map_err(|e| {
                        tracing::error!(index = entry.log_id.index, cause = %e, "cannot apply a committed entry; raft stops");
                        StorageError::from(StorageIOError::apply(entry.log_id, &e))
                    })?,
                EntryPayload::Membership(membership) => {
                    if self.membership.membership() != &membership {
                        tracing::info!(
                            index = entry.log_id.index,
                            voters = ?membership.voter_ids().collect::<Vec<_>>(),
                            learners = ?membership.learner_ids().collect::<Vec<_>>(),
                            "membership changed"
                        );
                    }
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    M::Response::default()
                }
            };
            self.applied = Some(entry.log_id);
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The state is captured here, in step with apply: the builder saves it in the
        // background while later entries are applied.
        let last = self.applied;
        let id = format!(
            "{}-{}-{}",
            last.map_or(0, |l| l.leader_id.term),
            last.map_or(0, |l| l.index),
            self.built.fetch_add(1, Ordering::Relaxed)
        );
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.membership.clone(),
            snapshot_id: id,
        };
        let mut snapshot = begin_snapshot(&meta);
        crate::blocking::off_the_workers(|| self.machine.snapshot_into(&mut snapshot));
        SnapshotBuilder {
            meta,
            snapshot,
            saved: self.saved.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let unreadable = |e: openraft::AnyError| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), e))
        };
        let snapshot = snapshot.into_inner();
        let (inside, data) = split_snapshot(&snapshot).map_err(|e| unreadable((&e).into()))?;
        if inside != *meta {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the snapshot holds {inside:?}, not {meta:?}"),
            );
            return Err(unreadable((&e).into()));
        }
        crate::blocking::off_the_workers(|| self.machine.restore(data))
            .map_err(|e| unreadable((&e).into()))?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let bytes = snapshot.len();
        self.saved.save(meta, snapshot).await.map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e))
        })?;
        tracing::info!(last_log = ?meta.last_log_id, bytes, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig<M::Response>>>, StorageError<NodeId>> {
        let unreadable =
            |e: openraft::AnyError| StorageError::from(StorageIOError::read_snapshot(None, e));
        let Some(snapshot) = self
            .saved
            .disk
            .load_snapshot()
            .await
            .map_err(|e| unreadable((&e).into()))?
        else {
            return Ok(None);
        };
        let (meta, _) = split_snapshot(&snapshot).map_err(|e| unreadable((&e).into()))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(snapshot)),
        }))
    }
}
