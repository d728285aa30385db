//! Durable storage for the Raft log, vote, committed position and latest snapshot.
//!
//! [`Disk`] is a dumb byte store with two promises: when [`Disk::write`] resolves, every
//! operation in the batch is durable, and batches are applied in order; when
//! [`Disk::save_snapshot`] resolves, the snapshot is durable. Snapshots are stored apart from
//! the batches and not ordered with them, so writing a large one never holds up the log. The
//! log store and the state machine adapter above decide what the bytes mean. [`RedbDisk`]
//! keeps the log in a redb file and the snapshot in a file beside it; the simulation in
//! `simulation/` plugs in a disk that loses unsynced writes on a crash.

use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use sha2::{Digest, Sha256};

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
    /// Forget the snapshot an older version kept inside the log's store, once it has been
    /// moved to where snapshots are kept now.
    DropOldSnapshot,
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
    /// A snapshot stored inside the log's store by an older version (encoded in that
    /// version's format), to be moved to [`Disk::save_snapshot`]'s store.
    pub old_snapshot: Option<Vec<u8>>,
}

/// A store that makes batches of [`DiskOp`]s, and snapshots, durable.
pub trait Disk: Send + Sync + 'static {
    /// Reads back the stored log state.
    fn recover(&self) -> io::Result<Recovered>;
    /// Applies `ops` in order and makes them durable before resolving.
    fn write(self: &Arc<Self>, ops: Vec<DiskOp>) -> impl Future<Output = io::Result<()>> + Send;
    /// Reads back the latest snapshot saved, if any; an error if it is damaged.
    fn load_snapshot(self: &Arc<Self>) -> impl Future<Output = io::Result<Option<Vec<u8>>>> + Send;
    /// Replaces the stored snapshot with `snapshot`, durably before resolving; a crash before
    /// then leaves the previous one. Not ordered with [`Disk::write`]: the caller saves a
    /// snapshot before it writes anything that needs it (purging the log up to it).
    fn save_snapshot(
        self: &Arc<Self>,
        snapshot: Arc<Vec<u8>>,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

/// Opens the log kept under `raft` (a node's `raft/` directory): the append-only log in
/// `wal/`, with the snapshot at `raft.snapshot`. A log an older version kept in `raft.redb` is
/// moved into `wal/` first (the old store is deleted once the move is durable).
pub fn open_log(raft: &Path) -> io::Result<super::WalDisk> {
    use super::WalDisk;
    let wal = raft.join("wal");
    let snapshot = raft.join("raft.snapshot");
    let redb = raft.join("raft.redb");
    if !wal.is_dir() && redb.exists() {
        let (ops, old_snapshot) = RedbDisk::open(&redb)?.export()?;
        let disk = WalDisk::create_from(&wal, snapshot, &ops, old_snapshot)?;
        std::fs::remove_file(&redb)?;
        tracing::info!(
            operations = ops.len(),
            "moved the raft log from raft.redb to wal/"
        );
        return Ok(disk);
    }
    if redb.exists() {
        // The move completed, but a crash kept it from deleting the old store.
        std::fs::remove_file(&redb)?;
    }
    WalDisk::open(&wal, snapshot)
}

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";
/// Where versions before snapshot files kept the snapshot.
const OLD_SNAPSHOT: &str = "snapshot";

/// The Raft log in one redb file, as versions before the append-only log kept it: read once to
/// move an existing data directory to [`super::WalDisk`], and kept as a second implementation
/// of [`Disk`] for tests. A committed redb write transaction is durable (fsynced), so one
/// transaction per batch is one fsync per batch. The snapshot is a `SnapshotFile` beside it
/// (`raft.snapshot` for `raft.redb`).
#[derive(Debug)]
pub struct RedbDisk {
    db: redb::Database,
    snapshot: SnapshotFile,
}

/// The latest snapshot in a file of its own: its bytes and their SHA-256, written to a
/// temporary file, synced, renamed over the old one and the directory synced, so it is always
/// either the old snapshot or the new one, and damage is detected.
#[derive(Debug)]
pub(super) struct SnapshotFile {
    path: PathBuf,
}

impl SnapshotFile {
    /// The snapshot kept at `path`.
    pub(super) fn at(path: PathBuf) -> SnapshotFile {
        SnapshotFile { path }
    }

    /// Replaces the stored snapshot, durably.
    pub(super) fn save(&self, snapshot: &[u8]) -> io::Result<()> {
        let partial = self.path.with_extension("snapshot.partial");
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(snapshot)?;
        file.write_all(&Sha256::digest(snapshot))?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&partial, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// The stored snapshot, if any; an error if it is damaged.
    pub(super) fn load(&self) -> io::Result<Option<Vec<u8>>> {
        let mut bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let damaged = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the snapshot {} is damaged (its checksum does not match)",
                    self.path.display()
                ),
            )
        };
        let body = bytes.len().checked_sub(32).ok_or_else(damaged)?;
        if Sha256::digest(&bytes[..body])[..] != bytes[body..] {
            return Err(damaged());
        }
        bytes.truncate(body);
        Ok(Some(bytes))
    }
}

fn io_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Runs file work that blocks (writes, syncs) on tokio's blocking threads, off the async
/// workers.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(io_error)?
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
        Ok(RedbDisk {
            db,
            snapshot: SnapshotFile::at(path.with_extension("snapshot")),
        })
    }

    /// Stores a snapshot where versions before snapshot files kept it.
    #[cfg(test)]
    pub(super) fn put_old_snapshot(&self, snapshot: &[u8]) {
        let txn = self.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(OLD_SNAPSHOT, snapshot)
            .unwrap();
        txn.commit().unwrap();
    }

    /// Everything stored, as the operations that would store it again (entries with their
    /// indexes), and the snapshot an older version kept in the store: what moving the log to
    /// another store takes.
    pub fn export(&self) -> io::Result<(Vec<DiskOp>, Option<Vec<u8>>)> {
        let txn = self.db.begin_read().map_err(io_error)?;
        let log = txn.open_table(LOG).map_err(io_error)?;
        let meta = txn.open_table(META).map_err(io_error)?;
        let get = |key: &str| -> io::Result<Option<Vec<u8>>> {
            Ok(meta.get(key).map_err(io_error)?.map(|v| v.value().to_vec()))
        };
        let mut ops = Vec::new();
        ops.extend(get(VOTE)?.map(DiskOp::Vote));
        ops.extend(get(COMMITTED)?.map(DiskOp::Committed));
        let mut entries = Vec::new();
        for item in log.iter().map_err(io_error)? {
            let (index, value) = item.map_err(io_error)?;
            entries.push(DiskOp::Append {
                index: index.value(),
                entry: value.value().to_vec(),
            });
        }
        if let Some(log_id) = get(PURGED)? {
            // The purged index is inside the encoded id; the entry before the first kept one
            // is as good for deciding what may be dropped.
            let index = match entries.first() {
                Some(DiskOp::Append { index, .. }) => index.saturating_sub(1),
                _ => 0,
            };
            ops.push(DiskOp::PurgeUpTo { index, log_id });
        }
        ops.extend(entries);
        Ok((ops, get(OLD_SNAPSHOT)?))
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
                    DiskOp::DropOldSnapshot => {
                        meta.remove(OLD_SNAPSHOT)?;
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
            old_snapshot: get(OLD_SNAPSHOT)?,
        })
    }

    fn write(self: &Arc<Self>, ops: Vec<DiskOp>) -> impl Future<Output = io::Result<()>> + Send {
        let disk = self.clone();
        async move {
            // The commit blocks on fsync: keep it off the async workers.
            blocking(move || disk.write_now(ops).map_err(io_error)).await
        }
    }

    fn load_snapshot(self: &Arc<Self>) -> impl Future<Output = io::Result<Option<Vec<u8>>>> + Send {
        let disk = self.clone();
        async move { blocking(move || disk.snapshot.load()).await }
    }

    fn save_snapshot(
        self: &Arc<Self>,
        snapshot: Arc<Vec<u8>>,
    ) -> impl Future<Output = io::Result<()>> + Send {
        let disk = self.clone();
        async move { blocking(move || disk.snapshot.save(&snapshot)).await }
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
    }

    #[tokio::test]
    async fn a_snapshot_file_is_replaced_whole_and_damage_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(RedbDisk::open(&dir.path().join("raft.redb")).unwrap());
        assert_eq!(disk.load_snapshot().await.unwrap(), None);
        for content in [vec![1u8; 100_000], b"second".to_vec()] {
            disk.save_snapshot(Arc::new(content.clone())).await.unwrap();
            assert_eq!(disk.load_snapshot().await.unwrap(), Some(content));
        }
        let file = dir.path().join("raft.snapshot");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[2] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        let err = disk.load_snapshot().await.unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        std::fs::write(&file, b"short").unwrap();
        assert!(disk.load_snapshot().await.is_err());
    }
}
