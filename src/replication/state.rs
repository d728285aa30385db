//! [`Applier`]: openraft's state machine, adapting a [`Machine`]: it tracks the applied
//! position and the membership, hands normal entries to the machine, and builds, stores and
//! installs snapshots.
//!
//! The machine itself lives in memory. On restart it is rebuilt from the latest snapshot on
//! disk, and openraft re-applies the committed entries after it.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::disk::{DiskOp, Recovered};
use super::log::Writer;
use super::{Machine, ReplicationError, Response, TypeConfig, decode, encode};
use crate::peers::{Member, NodeId};

/// A snapshot as stored on disk and sent to followers: its metadata and the machine's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

/// openraft's state machine (v2 storage API) over a [`Machine`].
pub struct Applier<M: Machine> {
    machine: Arc<M>,
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
    /// The latest snapshot, shared with builders running in the background.
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    writer: Writer<M::Response>,
    /// Distinguishes snapshots built at the same log position.
    built: Arc<AtomicU64>,
}

impl<M: Machine> std::fmt::Debug for Applier<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

impl<M: Machine> Applier<M> {
    /// The state machine as of the latest snapshot on disk (or empty), applying to `machine`.
    pub fn recover(
        recovered: &Recovered,
        machine: Arc<M>,
        writer: Writer<M::Response>,
    ) -> Result<Applier<M>, ReplicationError> {
        let mut sm = Applier {
            machine,
            applied: None,
            membership: StoredMembership::default(),
            current: Arc::new(Mutex::new(None)),
            writer,
            built: Arc::new(AtomicU64::new(0)),
        };
        if let Some(bytes) = &recovered.snapshot {
            let snapshot: StoredSnapshot = decode(bytes)?;
            sm.machine
                .restore(&snapshot.data)
                .map_err(|e| ReplicationError::Restore(Box::new(e)))?;
            sm.applied = snapshot.meta.last_log_id;
            sm.membership = snapshot.meta.last_membership.clone();
            *sm.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
        }
        Ok(sm)
    }
}

/// Builds one snapshot from state captured when it was created.
pub struct SnapshotBuilder<R: Response> {
    snapshot: StoredSnapshot,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    writer: Writer<R>,
}

impl<R: Response> RaftSnapshotBuilder<TypeConfig<R>> for SnapshotBuilder<R> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig<R>>, StorageError<NodeId>> {
        let snapshot = self.snapshot.clone();
        // Durable before it is announced: the log up to it may be purged next.
        self.writer
            .write(DiskOp::Snapshot(encode(&snapshot)))
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(
                    Some(snapshot.meta.signature()),
                    &e,
                ))
            })?;
        let meta = snapshot.meta.clone();
        let data = snapshot.data.clone();
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
        tracing::info!(last_log = ?meta.last_log_id, bytes = data.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<M: Machine> RaftStateMachine<TypeConfig<M::Response>> for Applier<M> {
    type SnapshotBuilder = SnapshotBuilder<M::Response>;

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
        let mut responses = Vec::new();
        for entry in entries {
            self.applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => M::Response::default(),
                EntryPayload::Normal(payload) => self.machine.apply(entry.log_id.index, &payload.0),
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
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The state is captured here, in step with apply: the builder runs in the background
        // while later entries are applied.
        let last = self.applied;
        let id = format!(
            "{}-{}-{}",
            last.map_or(0, |l| l.leader_id.term),
            last.map_or(0, |l| l.index),
            self.built.fetch_add(1, Ordering::Relaxed)
        );
        SnapshotBuilder {
            snapshot: StoredSnapshot {
                meta: SnapshotMeta {
                    last_log_id: last,
                    last_membership: self.membership.clone(),
                    snapshot_id: id,
                },
                data: crate::blocking::off_the_workers(|| self.machine.snapshot()),
            },
            current: self.current.clone(),
            writer: self.writer.clone(),
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
        let snapshot = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        crate::blocking::off_the_workers(|| self.machine.restore(&snapshot.data)).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
        })?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.writer
            .write(DiskOp::Snapshot(encode(&snapshot)))
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e))
            })?;
        tracing::info!(last_log = ?meta.last_log_id, bytes = snapshot.data.len(), "snapshot installed");
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig<M::Response>>>, StorageError<NodeId>> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(current.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
