use std::path::Path;

use super::*;

fn append(index: u64) -> DiskOp {
    DiskOp::Append {
        index,
        entry: vec![index as u8; 1 + index as usize % 7],
    }
}

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Vec<u8>> {
    range
        .map(|i| match append(i) {
            DiskOp::Append { entry, .. } => entry,
            _ => unreachable!(),
        })
        .collect()
}

fn open(dir: &Path) -> io::Result<WalDisk> {
    WalDisk::open_with(&dir.join("wal"), dir.join("raft.snapshot"), 4096)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn batches_survive_reopening_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let disk = open(dir.path()).unwrap();
        assert_eq!(disk.recover().unwrap(), Recovered::default());
        disk.write_now(&(1..=10).map(append).collect::<Vec<_>>())
            .unwrap();
        disk.write_now(&[
            DiskOp::TruncateFrom(8),
            append(8),
            DiskOp::PurgeUpTo {
                index: 3,
                log_id: b"p".to_vec(),
            },
            DiskOp::Vote(b"v".to_vec()),
            DiskOp::Committed(b"c".to_vec()),
        ])
        .unwrap();
    }
    let got = open(dir.path()).unwrap().recover().unwrap();
    assert_eq!(got.entries, entries(4..=8));
    assert_eq!(got.vote.as_deref(), Some(&b"v"[..]));
    assert_eq!(got.committed.as_deref(), Some(&b"c"[..]));
    assert_eq!(got.purged.as_deref(), Some(&b"p"[..]));
}

#[test]
fn segments_roll_restate_the_metadata_and_purged_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let disk = open(dir.path()).unwrap();
        disk.write_now(&[DiskOp::Vote(b"vote".to_vec())]).unwrap();
        for i in 1..=600 {
            disk.write_now(&[append(i), DiskOp::Committed(i.to_le_bytes().to_vec())])
                .unwrap();
        }
        assert!(segments(dir.path()).len() > 5, "{:?}", segments(dir.path()));
        disk.write_now(&[DiskOp::PurgeUpTo {
            index: 550,
            log_id: b"p550".to_vec(),
        }])
        .unwrap();
    }
    let left = segments(dir.path());
    assert!(left.len() <= 3, "purged segments remain: {left:?}");
    let got = open(dir.path()).unwrap().recover().unwrap();
    assert_eq!(got.entries, entries(551..=600));
    assert_eq!(got.vote.as_deref(), Some(&b"vote"[..]), "restated");
    assert_eq!(got.committed, Some(600u64.to_le_bytes().to_vec()));
    assert_eq!(got.purged.as_deref(), Some(&b"p550"[..]));
}

/// A batch whose sync never finished may have reached the disk in part: it is cut, the rest
/// of the log is kept, and writing goes on after it.
#[test]
fn a_torn_last_batch_is_cut_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let end = {
        let disk = open(dir.path()).unwrap();
        for i in 1..=5 {
            disk.write_now(&[append(i)]).unwrap();
        }
        disk.active.lock().as_ref().unwrap().offset
    };
    let path = segments(dir.path()).pop().unwrap();
    // Half a frame: a header promising 200 bytes and 40 of them.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut torn = Vec::new();
    torn.extend_from_slice(&200u32.to_le_bytes());
    torn.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    torn.extend_from_slice(&6u64.to_le_bytes());
    torn.extend_from_slice(&[7; 40]);
    file.write_all_at(&torn, end).unwrap();
    drop(file);
    {
        let disk = open(dir.path()).unwrap();
        assert_eq!(disk.recover().unwrap().entries, entries(1..=5));
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes[end as usize..].iter().all(|&b| b == 0),
            "the torn bytes are zeroed"
        );
        disk.write_now(&[append(6)]).unwrap();
    }
    assert_eq!(
        open(dir.path()).unwrap().recover().unwrap().entries,
        entries(1..=6)
    );
}

/// Damage that is not a torn tail refuses the start rather than losing acknowledged entries.
#[test]
fn damage_before_the_end_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let second = {
        let disk = open(dir.path()).unwrap();
        disk.write_now(&[append(1)]).unwrap();
        let second = disk.active.lock().as_ref().unwrap().offset;
        for i in 2..=5 {
            disk.write_now(&[append(i)]).unwrap();
        }
        second
    };
    let path = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[second as usize + FRAME_HEADER] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let err = open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");

    // A segment lost between others is a gap in the frame numbers.
    let dir = tempfile::tempdir().unwrap();
    {
        let disk = open(dir.path()).unwrap();
        for i in 1..=300 {
            disk.write_now(&[append(i)]).unwrap();
        }
    }
    let files = segments(dir.path());
    assert!(files.len() >= 3);
    std::fs::remove_file(&files[1]).unwrap();
    let err = open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("follows frame"), "{err}");
}

#[test]
fn a_partial_segment_from_a_crash_while_rolling_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let disk = open(dir.path()).unwrap();
        disk.write_now(&[append(1)]).unwrap();
    }
    let partial = dir
        .path()
        .join("wal")
        .join(format!("{:020}.wal.partial", 2));
    std::fs::write(&partial, b"half a header").unwrap();
    let disk = open(dir.path()).unwrap();
    assert_eq!(disk.recover().unwrap().entries, entries(1..=1));
    assert!(!partial.exists());
}

#[test]
fn an_import_is_whole_and_keeps_an_old_snapshot_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let snapshot = dir.path().join("raft.snapshot");
    let mut ops = vec![
        DiskOp::Vote(b"v".to_vec()),
        DiskOp::PurgeUpTo {
            index: 9,
            log_id: b"p".to_vec(),
        },
    ];
    ops.extend((10..=20).map(append));
    {
        let disk =
            WalDisk::create_from(&wal, snapshot.clone(), &ops, Some(b"old".to_vec())).unwrap();
        let got = disk.recover().unwrap();
        assert_eq!(got.entries, entries(10..=20));
        assert_eq!(got.old_snapshot.as_deref(), Some(&b"old"[..]));
        assert!(!dir.path().join("wal.importing").exists());
        disk.write_now(&[DiskOp::DropOldSnapshot]).unwrap();
    }
    let got = WalDisk::open(&wal, snapshot).unwrap().recover().unwrap();
    assert_eq!(got.old_snapshot, None);
    assert_eq!(got.vote.as_deref(), Some(&b"v"[..]));
    assert_eq!(got.entries, entries(10..=20));
}
