//! Durable storage for the Raft log, vote, committed position and latest snapshot.
//!
//! [`Disk`] is a dumb byte store with one promise: when [`Disk::write`] resolves, every
//! operation in the batch is durable, and batches are applied in order. The log store above
//! decides what the bytes mean. [`RedbDisk`] keeps them in a redb file in the data directory;
//! the simulation in `simulation/` plugs in a disk that loses unsynced writes on a crash.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// One change to the stored state. Keys are log indexes; values are encoded by the log store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOp {
    /// Store the entry at this index (replacing any entry there).
    Append {
        /// The entry's log index.
        index: u64,
        /// The encoded entry.
        entry: Vec<u8>,
    },
    /// Remove every entry at or after this index (a conflicting suffix).
    TruncateFrom(u64),
    /// Remove every entry at or before `index` and remember `log_id` as the last purged.
    PurgeUpTo {
        /// Highest index removed.
        index: u64,
        /// The encoded id of that entry.
        log_id: Vec<u8>,
    },
    /// The encoded vote.
    Vote(Vec<u8>),
    /// The encoded committed log id.
    Committed(Vec<u8>),
    /// The encoded latest snapshot (metadata and state).
    Snapshot(Vec<u8>),
}

/// Everything read back at start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The encoded vote, if one was saved.
    pub vote: Option<Vec<u8>>,
    /// The encoded committed log id, if saved.
    pub committed: Option<Vec<u8>>,
    /// The encoded last purged log id, if any.
    pub purged: Option<Vec<u8>>,
    /// The encoded entries, in index order.
    pub entries: Vec<Vec<u8>>,
    /// The encoded latest snapshot, if any.
    pub snapshot: Option<Vec<u8>>,
}

/// A store that makes batches of [`DiskOp`]s durable.
pub trait Disk: Send + Sync + 'static {
    /// Reads back the stored state.
    fn recover(&self) -> io::Result<Recovered>;
    /// Applies `ops` in order and makes them durable before resolving.
    fn write(self: &Arc<Self>, ops: Vec<DiskOp>) -> impl Future<Output = io::Result<()>> + Send;
}

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";
const SNAPSHOT: &str = "snapshot";

/// The Raft state in one redb file. A committed redb write transaction is durable (fsynced), so
/// one transaction per batch is one fsync per batch: the group commit.
#[derive(Debug)]
pub struct RedbDisk {
    db: redb::Database,
}

fn io_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl RedbDisk {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> io::Result<RedbDisk> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let db = redb::Database::create(path).map_err(io_error)?;
        // Create the tables so a fresh store reads back as empty.
        let txn = db.begin_write().map_err(io_error)?;
        txn.open_table(LOG).map_err(io_error)?;
        txn.open_table(META).map_err(io_error)?;
        txn.commit().map_err(io_error)?;
        Ok(RedbDisk { db })
    }

    fn write_now(&self, ops: Vec<DiskOp>) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut log = txn.open_table(LOG)?;
            let mut meta = txn.open_table(META)?;
            for op in ops {
                match op {
                    DiskOp::Append { index, entry } => {
                        log.insert(index, entry.as_slice())?;
                    }
                    DiskOp::TruncateFrom(index) => {
                        log.retain_in(index.., |_, _| false)?;
                    }
                    DiskOp::PurgeUpTo { index, log_id } => {
                        log.retain_in(..=index, |_, _| false)?;
                        meta.insert(PURGED, log_id.as_slice())?;
                    }
                    DiskOp::Vote(v) => {
                        meta.insert(VOTE, v.as_slice())?;
                    }
                    DiskOp::Committed(c) => {
                        meta.insert(COMMITTED, c.as_slice())?;
                    }
                    DiskOp::Snapshot(s) => {
                        meta.insert(SNAPSHOT, s.as_slice())?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl Disk for RedbDisk {
    fn recover(&self) -> io::Result<Recovered> {
        let txn = self.db.begin_read().map_err(io_error)?;
        let log = txn.open_table(LOG).map_err(io_error)?;
        let meta = txn.open_table(META).map_err(io_error)?;
        let get = |key: &str| -> io::Result<Option<Vec<u8>>> {
            Ok(meta.get(key).map_err(io_error)?.map(|v| v.value().to_vec()))
        };
        let mut entries = Vec::new();
        for item in log.iter().map_err(io_error)? {
            let (_, value) = item.map_err(io_error)?;
            entries.push(value.value().to_vec());
        }
        Ok(Recovered {
            vote: get(VOTE)?,
            committed: get(COMMITTED)?,
            purged: get(PURGED)?,
            entries,
            snapshot: get(SNAPSHOT)?,
        })
    }

    fn write(self: &Arc<Self>, ops: Vec<DiskOp>) -> impl Future<Output = io::Result<()>> + Send {
        let disk = self.clone();
        async move {
            // The commit blocks on fsync: keep it off the async workers.
            tokio::task::spawn_blocking(move || disk.write_now(ops).map_err(io_error))
                .await
                .map_err(io_error)?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_survive_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let disk = Arc::new(RedbDisk::open(&path).unwrap());
            assert_eq!(disk.recover().unwrap(), Recovered::default());
            let append = |index: u64| DiskOp::Append {
                index,
                entry: vec![index as u8],
            };
            disk.write((1..=10).map(append).collect()).await.unwrap();
            disk.write(vec![
                DiskOp::TruncateFrom(8),
                append(8),
                DiskOp::PurgeUpTo {
                    index: 3,
                    log_id: b"p".to_vec(),
                },
                DiskOp::Vote(b"v".to_vec()),
                DiskOp::Committed(b"c".to_vec()),
                DiskOp::Snapshot(b"s".to_vec()),
            ])
            .await
            .unwrap();
        }
        let disk = RedbDisk::open(&path).unwrap();
        let got = disk.recover().unwrap();
        assert_eq!(
            got.entries,
            (4..=8).map(|i| vec![i as u8]).collect::<Vec<_>>()
        );
        assert_eq!(got.vote.as_deref(), Some(&b"v"[..]));
        assert_eq!(got.committed.as_deref(), Some(&b"c"[..]));
        assert_eq!(got.purged.as_deref(), Some(&b"p"[..]));
        assert_eq!(got.snapshot.as_deref(), Some(&b"s"[..]));
    }
}
