//! openraft's storage conformance suite, run against the durable store: the append-only log
//! (and the redb store older versions kept), the group-commit log store and the state machine
//! adapter, over a small test machine.

use std::sync::{Arc, Mutex};

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

use super::*;
use crate::peers::NodeId;

/// Records what it applied; its snapshot is that record.
#[derive(Default)]
struct Recorder {
    applied: Mutex<Vec<(u64, Vec<u8>)>>,
}

impl Machine for Recorder {
    type Response = u64;
    type RestoreError = CodecError;

    fn apply(&self, index: u64, payload: &[u8]) -> Result<u64, Unapplied> {
        self.applied.lock().unwrap().push((index, payload.to_vec()));
        Ok(index)
    }

    fn snapshot_into(&self, out: &mut Vec<u8>) {
        encode_into(&*self.applied.lock().unwrap(), out);
    }

    fn restore(&self, bytes: &[u8]) -> Result<(), CodecError> {
        *self.applied.lock().unwrap() = decode(bytes)?;
        Ok(())
    }
}

/// A store that can be opened in a directory.
trait TestDisk: Disk + Sized {
    fn open_in(dir: &std::path::Path) -> std::io::Result<Self>;
}

impl TestDisk for WalDisk {
    fn open_in(dir: &std::path::Path) -> std::io::Result<Self> {
        WalDisk::open(&dir.join("wal"), dir.join("raft.snapshot"))
    }
}

impl TestDisk for RedbDisk {
    fn open_in(dir: &std::path::Path) -> std::io::Result<Self> {
        RedbDisk::open(&dir.join("raft.redb"))
    }
}

struct Builder<K>(std::marker::PhantomData<K>);

type Config = TypeConfig<u64>;

impl<K: TestDisk> StoreBuilder<Config, LogStore<u64>, Applier<Recorder, K>, tempfile::TempDir>
    for Builder<K>
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<u64>, Applier<Recorder, K>), StorageError<NodeId>>
    {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(K::open_in(dir.path()).unwrap());
        let recovered = disk.recover().unwrap();
        let (writer, _, _) = Writer::start(disk.clone());
        let log = LogStore::recover(&recovered, writer.clone()).unwrap();
        let sm = Applier::recover(&recovered, Arc::new(Recorder::default()), &writer, disk)
            .await
            .unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn the_durable_store_passes_openraft_conformance() {
    Suite::test_all(Builder::<WalDisk>(Default::default())).unwrap();
}

#[test]
fn the_old_redb_store_passes_openraft_conformance() {
    Suite::test_all(Builder::<RedbDisk>(Default::default())).unwrap();
}

/// What the suite cannot see: a store reopened from disk holds what was written before.
#[tokio::test]
async fn a_reopened_store_recovers_log_vote_and_snapshot() {
    use openraft::storage::{RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};

    let dir = tempfile::tempdir().unwrap();
    let entry = |index: u64| Entry::<Config> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Payload(Bytes::from(vec![index as u8]))),
    };
    {
        let disk = Arc::new(WalDisk::open_in(dir.path()).unwrap());
        let recovered = disk.recover().unwrap();
        let (writer, stats, _) = Writer::start(disk.clone());
        let mut log = LogStore::recover(&recovered, writer.clone()).unwrap();
        let machine = Arc::new(Recorder::default());
        let mut sm = Applier::recover(&recovered, machine.clone(), &writer, disk)
            .await
            .unwrap();
        log.save_vote(&Vote::new(1, 1)).await.unwrap();
        // Appends queued together share disk writes (group commit).
        let mut pending = tokio::task::JoinSet::new();
        for i in 1..=50 {
            let writer = writer.clone();
            let op = DiskOp::Append {
                index: i,
                entry: encode(&entry(i)),
            };
            pending.spawn(async move { writer.write(op).await });
        }
        while let Some(done) = pending.join_next().await {
            done.unwrap().unwrap();
        }
        let writes = stats.writes.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(stats.entries.load(std::sync::atomic::Ordering::Relaxed), 50);
        assert!(writes < 25, "50 queued appends took {writes} disk writes");
        sm.apply((1..=30).map(entry)).await.unwrap();
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 30))
            .await
            .unwrap();
        assert_eq!(machine.applied.lock().unwrap().len(), 30);
    }
    let disk = Arc::new(WalDisk::open_in(dir.path()).unwrap());
    let recovered = disk.recover().unwrap();
    let (writer, _, _) = Writer::start(disk.clone());
    let mut log = LogStore::recover(&recovered, writer.clone()).unwrap();
    let machine = Arc::new(Recorder::default());
    let mut sm = Applier::recover(&recovered, machine.clone(), &writer, disk)
        .await
        .unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(30));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(50));
    assert_eq!(log.try_get_log_entries(31..=50).await.unwrap().len(), 20);
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(30));
    assert_eq!(
        machine.applied.lock().unwrap().len(),
        30,
        "restored from the snapshot"
    );
}

/// A data directory written before the append-only log (and before snapshots had a file of
/// their own): its redb store is moved into the log with entries, vote and committed position,
/// the snapshot inside it is moved out at start, and the state comes back from it.
#[tokio::test]
async fn a_redb_store_of_an_older_version_is_moved_into_the_log() {
    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    use openraft::{
        CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, SnapshotMeta, Vote,
    };

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.redb");
    let applied: Vec<(u64, Vec<u8>)> = (1..=30).map(|i| (i, vec![i as u8])).collect();
    let log_id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
    let old = state::OldSnapshot {
        meta: SnapshotMeta {
            last_log_id: Some(log_id(30)),
            ..Default::default()
        },
        data: encode(&applied),
    };
    {
        let redb = Arc::new(RedbDisk::open(&path).unwrap());
        redb.put_old_snapshot(&encode(&old));
        let mut ops = vec![
            DiskOp::Vote(encode(&Vote::<NodeId>::new(1, 1))),
            DiskOp::PurgeUpTo {
                index: 30,
                log_id: encode(&log_id(30)),
            },
        ];
        ops.extend((31..=40).map(|index| DiskOp::Append {
            index,
            entry: encode(&Entry::<Config> {
                log_id: log_id(index),
                payload: EntryPayload::Blank,
            }),
        }));
        redb.write(ops).await.unwrap();
    }
    for round in 0..2 {
        let disk = Arc::new(open_log(dir.path()).unwrap());
        assert!(!path.exists(), "the redb store is gone once moved");
        let recovered = disk.recover().unwrap();
        let (writer, _, task) = Writer::start(disk.clone());
        let mut log = LogStore::recover(&recovered, writer.clone()).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
        assert_eq!(log.try_get_log_entries(31..=40).await.unwrap().len(), 10);
        let machine = Arc::new(Recorder::default());
        let mut sm = Applier::recover(&recovered, machine.clone(), &writer, disk.clone())
            .await
            .unwrap();
        let (last, _) = sm.applied_state().await.unwrap();
        assert_eq!(last.map(|l| l.index), Some(30));
        assert_eq!(*machine.applied.lock().unwrap(), applied);
        assert!(disk.load_snapshot().await.unwrap().is_some());
        if round == 1 {
            assert_eq!(recovered.old_snapshot, None, "the old copy is gone");
        }
        drop((sm, log, writer, disk));
        task.await.unwrap();
    }
}
