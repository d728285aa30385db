//! The Raft log as an append-only file in segments: one write and one `fdatasync` per batch.
//!
//! A batch of [`DiskOp`]s becomes one frame appended at the end of the active segment:
//!
//! ```text
//! frame:   payload length (u32 LE) | CRC-32 of seq and payload (u32 LE) | seq (u64 LE)
//!          | payload | zeros to a multiple of 8 bytes
//! payload: ops, each a tag byte and its fields (indexes u64 LE, byte strings u32 LE length)
//! ```
//!
//! `seq` numbers frames across segments without gaps. A segment (`<number>.wal`, 20 digits) is
//! a 24-byte header (magic, number, and a random salt the checksums start from, so bytes a
//! client wrote inside an entry can never pass for a frame) and frames; it is created at its full size (sparse),
//! so appending changes no file length and a sync writes data blocks only. Each segment's first
//! frame restates the vote, committed position and last purged id, so any prefix of segments
//! can be dropped: a purge deletes every segment whose entries are all purged.
//!
//! Reading back replays every frame in order. A frame that fails its check in the last
//! segment is the torn tail of a batch whose sync never finished (never acknowledged): it is
//! cut, and the bytes after it zeroed. Anything else is damage and refuses the start: a bad
//! frame followed by a valid later one, a bad frame in an older segment, a gap in `seq`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::disk::{Disk, DiskOp, Recovered, SnapshotFile, blocking};

mod codec;
#[cfg(test)]
mod tests;

use codec::{FRAME_HEADER, Op, Ops, encode_meta, encode_op, frame_at, seal_frame};

/// Size a new segment is created with.
pub const SEGMENT_BYTES: u64 = 64 << 20;
const MAGIC: &[u8; 8] = b"FRWAL\x00\x00\x01";
const HEADER: u64 = 24;

fn damaged(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("raft log damaged: {what}"),
    )
}

/// A segment file.
#[derive(Debug)]
struct Segment {
    number: u64,
    /// Highest entry index appended in it (0: none).
    last_index: u64,
}

/// What the log holds besides its entries, restated at the start of every segment.
#[derive(Debug, Default, Clone)]
struct Meta {
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<(u64, Vec<u8>)>,
    old_snapshot: Option<Vec<u8>>,
}

impl Meta {
    /// Records `op` (entries aside).
    fn note(&mut self, op: &DiskOp) {
        match op {
            DiskOp::Vote(v) => self.vote = Some(v.clone()),
            DiskOp::Committed(c) => self.committed = Some(c.clone()),
            DiskOp::PurgeUpTo { index, log_id } => self.purged = Some((*index, log_id.clone())),
            DiskOp::DropOldSnapshot => self.old_snapshot = None,
            DiskOp::Append { .. } | DiskOp::TruncateFrom(_) => {}
        }
    }
}

/// The writing side, behind the lock.
#[derive(Debug)]
struct Active {
    file: File,
    /// Where the next frame goes.
    offset: u64,
    /// Where the active segment's frames after its first one start (nothing is gained by
    /// rolling a segment holding nothing more).
    start: u64,
    /// The seq of the last frame written (0: none yet).
    seq: u64,
    /// The active segment's salt.
    salt: u64,
    segments: Vec<Segment>,
    meta: Meta,
    buf: Vec<u8>,
    /// A write or sync failed: what reached the disk is unknown, so nothing more is written.
    failed: bool,
}

/// The Raft log in append-only segment files under a directory, and the snapshot beside it.
#[derive(Debug)]
pub struct WalDisk {
    dir: PathBuf,
    segment_bytes: u64,
    snapshot: SnapshotFile,
    active: Mutex<Option<Active>>,
    /// What the start read back, handed out once by [`Disk::recover`].
    recovered: Mutex<Option<Recovered>>,
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.wal"))
}

/// The position of the last byte that is not zero. (Whole blocks are compared with `memcmp`:
/// most of a segment is zeros.)
fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64 << 10;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let block = bytes.chunks(BLOCK).rposition(|c| c != &ZEROS[..c.len()])?;
    let start = block * BLOCK;
    let within = bytes[start..(start + BLOCK).min(bytes.len())]
        .iter()
        .rposition(|&b| b != 0)?;
    Some(start + within)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The log rebuilt by replaying frames.
#[derive(Default)]
struct Replay {
    entries: BTreeMap<u64, Vec<u8>>,
    meta: Meta,
}

impl Replay {
    fn apply(&mut self, op: Op, segment: &mut Segment) {
        match op {
            Op::OldSnapshot(s) => self.meta.old_snapshot = Some(s),
            Op::Disk(op) => {
                self.meta.note(&op);
                match op {
                    DiskOp::Append { index, entry } => {
                        segment.last_index = segment.last_index.max(index);
                        self.entries.insert(index, entry);
                    }
                    DiskOp::TruncateFrom(index) => {
                        self.entries.split_off(&index);
                    }
                    DiskOp::PurgeUpTo { index, .. } => {
                        self.entries = self.entries.split_off(&(index + 1));
                    }
                    DiskOp::Vote(_) | DiskOp::Committed(_) | DiskOp::DropOldSnapshot => {}
                }
            }
        }
    }
}

impl WalDisk {
    /// Opens (or creates) the log in `dir`, with the snapshot at `snapshot`, reading it back.
    pub fn open(dir: &Path, snapshot: PathBuf) -> io::Result<WalDisk> {
        WalDisk::open_with(dir, snapshot, SEGMENT_BYTES)
    }

    /// [`WalDisk::open`] with segments of `segment_bytes`.
    pub fn open_with(dir: &Path, snapshot: PathBuf, segment_bytes: u64) -> io::Result<WalDisk> {
        std::fs::create_dir_all(dir)?;
        let disk = WalDisk {
            dir: dir.to_owned(),
            segment_bytes,
            snapshot: SnapshotFile::at(snapshot),
            active: Mutex::new(None),
            recovered: Mutex::new(None),
        };
        let (active, recovered) = disk.read_back()?;
        *disk.active.lock() = Some(active);
        *disk.recovered.lock() = Some(recovered);
        Ok(disk)
    }

    /// Writes `ops` (another store's content, as operations) and `old_snapshot` as a new log
    /// in `dir`, durably, then opens it. The log is made under a temporary name and renamed
    /// once complete, so a crash leaves either no log or the whole of it.
    pub fn create_from(
        dir: &Path,
        snapshot: PathBuf,
        ops: &[DiskOp],
        old_snapshot: Option<Vec<u8>>,
    ) -> io::Result<WalDisk> {
        let partial = dir.with_extension("importing");
        if partial.exists() {
            std::fs::remove_dir_all(&partial)?;
        }
        {
            let disk = WalDisk::open(&partial, snapshot.clone())?;
            disk.write_now(ops)?;
            if old_snapshot.is_some() {
                let mut guard = disk.active.lock();
                let active = guard.as_mut().expect("open");
                active.meta.old_snapshot = old_snapshot;
                // The new segment's first frame restates it.
                disk.roll(active)?;
            }
        }
        std::fs::rename(&partial, dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        WalDisk::open(dir, snapshot)
    }

    /// Reads every segment back: the state to write on, and what to hand to openraft.
    fn read_back(&self) -> io::Result<(Active, Recovered)> {
        let mut numbers = Vec::new();
        for item in std::fs::read_dir(&self.dir)? {
            let name = item?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_suffix(".wal")
                .and_then(|n| n.parse::<u64>().ok())
            {
                numbers.push(n);
            } else if name.ends_with(".wal.partial") {
                // A segment whose creation never completed: nothing in it was acknowledged.
                std::fs::remove_file(self.dir.join(&*name))?;
            }
        }
        numbers.sort_unstable();
        let mut replay = Replay::default();
        let mut segments = Vec::new();
        let mut seq = 0;
        let mut tail = None;
        for (i, &number) in numbers.iter().enumerate() {
            let path = segment_path(&self.dir, number);
            let bytes = std::fs::read(&path)?;
            if bytes.len() < HEADER as usize
                || &bytes[..8] != MAGIC
                || bytes[8..16] != number.to_le_bytes()
            {
                return Err(damaged(format!("{} has no valid header", path.display())));
            }
            let salt = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
            let mut segment = Segment {
                number,
                last_index: 0,
            };
            let mut at = HEADER as usize;
            while let Some(frame) = frame_at(&bytes, at, salt) {
                if seq != 0 && frame.seq != seq + 1 {
                    return Err(damaged(format!(
                        "{}: frame {} follows frame {seq}",
                        path.display(),
                        frame.seq
                    )));
                }
                seq = frame.seq;
                let mut ops = Ops {
                    bytes: &bytes[frame.payload.clone()],
                };
                while let Some(op) = ops.next_op().map_err(|()| {
                    damaged(format!("{}: frame {seq} does not parse", path.display()))
                })? {
                    replay.apply(op, &mut segment);
                }
                at = frame.next;
            }
            let last = i + 1 == numbers.len();
            // Past the last whole frame: zeros, or what a torn batch left (up to `end`).
            let end = last_nonzero(&bytes[at..]).map(|e| at + e + 1);
            let later = (at + 8..end.unwrap_or(at))
                .step_by(8)
                .find(|&o| frame_at(&bytes, o, salt).is_some_and(|f| f.seq > seq));
            if let Some(o) = later {
                return Err(damaged(format!(
                    "{}: an unreadable frame at byte {at} lies before a valid one at byte {o}",
                    path.display()
                )));
            }
            if last {
                tail = Some((path, end, at, salt));
            }
            segments.push(segment);
        }
        let active = match tail {
            Some((path, end, at, salt)) => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)?;
                // Zero whatever a torn batch left after the last whole frame, so it cannot be
                // mistaken for data later.
                if let Some(end) = end {
                    file.write_all_at(&vec![0; end - at], at as u64)?;
                    file.sync_data()?;
                    tracing::warn!(
                        segment = %path.display(),
                        bytes = end - at,
                        "cut a torn write at the end of the raft log"
                    );
                }
                Active {
                    file,
                    offset: at as u64,
                    start: 0,
                    seq,
                    salt,
                    segments,
                    meta: replay.meta.clone(),
                    buf: Vec::new(),
                    failed: false,
                }
            }
            None => {
                let (file, first, salt) = self.create_segment(1, &Meta::default(), 1)?;
                Active {
                    file,
                    offset: first,
                    start: first,
                    seq: 1,
                    salt,
                    segments: vec![Segment {
                        number: 1,
                        last_index: 0,
                    }],
                    meta: Meta::default(),
                    buf: Vec::new(),
                    failed: false,
                }
            }
        };
        let recovered = Recovered {
            vote: replay.meta.vote,
            committed: replay.meta.committed,
            purged: replay.meta.purged.map(|(_, id)| id),
            entries: replay.entries.into_values().collect(),
            old_snapshot: replay.meta.old_snapshot,
        };
        Ok((active, recovered))
    }

    /// Creates segment `number` holding the frame `seq` that restates `meta`, durably and under
    /// its final name only once complete. Returns it, the offset after that frame, and its salt.
    fn create_segment(&self, number: u64, meta: &Meta, seq: u64) -> io::Result<(File, u64, u64)> {
        let mut salt = [0; 8];
        getrandom::fill(&mut salt).map_err(|e| io::Error::other(e.to_string()))?;
        let salt = u64::from_le_bytes(salt);
        let path = segment_path(&self.dir, number);
        let partial = path.with_extension("wal.partial");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)?;
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&number.to_le_bytes());
        buf.extend_from_slice(&salt.to_le_bytes());
        let mut frame = vec![0; FRAME_HEADER];
        encode_meta(&mut frame, meta);
        seal_frame(&mut frame, seq, salt);
        buf.extend_from_slice(&frame);
        file.set_len(self.segment_bytes.max(buf.len() as u64))?;
        file.write_all_at(&buf, 0)?;
        file.sync_all()?;
        std::fs::rename(&partial, &path)?;
        sync_dir(&self.dir)?;
        Ok((file, buf.len() as u64, salt))
    }

    /// Appends `ops` as one frame and syncs it.
    fn write_now(&self, ops: &[DiskOp]) -> io::Result<()> {
        let mut guard = self.active.lock();
        let active = guard
            .as_mut()
            .ok_or_else(|| io::Error::other("the raft log is closed"))?;
        if active.failed {
            return Err(io::Error::other(
                "an earlier raft log write failed; restart to read back what reached the disk",
            ));
        }
        let result = self.append(active, ops);
        if result.is_err() {
            active.failed = true;
        }
        result
    }

    fn append(&self, active: &mut Active, ops: &[DiskOp]) -> io::Result<()> {
        let mut buf = std::mem::take(&mut active.buf);
        buf.clear();
        buf.resize(FRAME_HEADER, 0);
        for op in ops {
            encode_op(&mut buf, op);
        }
        let len = buf.len() as u64;
        if active.offset + len > self.segment_bytes && active.offset > active.start {
            self.roll(active)?;
        }
        active.seq += 1;
        seal_frame(&mut buf, active.seq, active.salt);
        active.file.write_all_at(&buf, active.offset)?;
        active.file.sync_data()?;
        active.offset += buf.len() as u64;
        active.buf = buf;
        let segment = active.segments.last_mut().expect("an active segment");
        let purged_before = active.meta.purged.as_ref().map(|p| p.0);
        for op in ops {
            active.meta.note(op);
            if let DiskOp::Append { index, .. } = op {
                segment.last_index = segment.last_index.max(*index);
            }
        }
        let purged = active.meta.purged.as_ref().map(|p| p.0);
        if purged != purged_before
            && let Some(purged) = purged
        {
            self.drop_purged(active, purged)?;
        }
        Ok(())
    }

    /// Starts a new segment, its first frame restating the log's metadata.
    fn roll(&self, active: &mut Active) -> io::Result<()> {
        let number = active.segments.last().map_or(1, |s| s.number + 1);
        active.seq += 1;
        let (file, offset, salt) = self.create_segment(number, &active.meta, active.seq)?;
        active.file = file;
        active.offset = offset;
        active.start = offset;
        active.salt = salt;
        active.segments.push(Segment {
            number,
            last_index: 0,
        });
        Ok(())
    }

    /// Deletes the oldest segments while every entry in them is purged (never the active one).
    fn drop_purged(&self, active: &mut Active, purged: u64) -> io::Result<()> {
        let n = active
            .segments
            .iter()
            .take(active.segments.len() - 1)
            .take_while(|s| s.last_index <= purged)
            .count();
        for segment in active.segments.drain(..n) {
            std::fs::remove_file(segment_path(&self.dir, segment.number))?;
        }
        Ok(())
    }
}

impl Disk for WalDisk {
    fn recover(&self) -> io::Result<Recovered> {
        self.recovered
            .lock()
            .take()
            .ok_or_else(|| io::Error::other("the raft log was already read back"))
    }

    fn write(
        self: &Arc<Self>,
        ops: Vec<DiskOp>,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send {
        let disk = self.clone();
        async move {
            // Written and synced right here, on the writer task's async worker: nothing else
            // waits for the writer (appends are acknowledged when queued, `durable.rs`), and
            // a hand-off to the blocking pool and back cost more than the worker it spares
            // (measured: 1-node SET at 16 clients 40,000/s here, 34,000/s through the pool).
            // With one async worker (`main.rs`), a sync holds up the node's other tasks, as
            // Redis's own `appendfsync always` holds up its event loop.
            disk.write_now(&ops)
        }
    }

    fn load_snapshot(
        self: &Arc<Self>,
    ) -> impl std::future::Future<Output = io::Result<Option<Vec<u8>>>> + Send {
        let disk = self.clone();
        async move { blocking(move || disk.snapshot.load()).await }
    }

    fn save_snapshot(
        self: &Arc<Self>,
        snapshot: Arc<Vec<u8>>,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send {
        let disk = self.clone();
        async move { blocking(move || disk.snapshot.save(&snapshot)).await }
    }
}
