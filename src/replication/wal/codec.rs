//! The bytes of the log: frames and the operations inside them (the format is described in
//! the parent module).

use super::super::disk::DiskOp;
use super::Meta;

/// Bytes before a frame's payload: length, checksum, seq.
pub(super) const FRAME_HEADER: usize = 16;

const APPEND: u8 = 1;
const TRUNCATE: u8 = 2;
const PURGE: u8 = 3;
const VOTE: u8 = 4;
const COMMITTED: u8 = 5;
/// A snapshot a redb store of an older version held, brought over by the import.
const OLD_SNAPSHOT: u8 = 6;
const DROP_OLD_SNAPSHOT: u8 = 7;

pub(super) fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

pub(super) fn encode_op(buf: &mut Vec<u8>, op: &DiskOp) {
    match op {
        DiskOp::Append { index, entry } => {
            buf.push(APPEND);
            buf.extend_from_slice(&index.to_le_bytes());
            put_bytes(buf, entry);
        }
        DiskOp::TruncateFrom(index) => {
            buf.push(TRUNCATE);
            buf.extend_from_slice(&index.to_le_bytes());
        }
        DiskOp::PurgeUpTo { index, log_id } => put_purge(buf, *index, log_id),
        DiskOp::Vote(v) => put_tagged(buf, VOTE, v),
        DiskOp::Committed(c) => put_tagged(buf, COMMITTED, c),
        DiskOp::DropOldSnapshot => buf.push(DROP_OLD_SNAPSHOT),
    }
}

fn put_tagged(buf: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    buf.push(tag);
    put_bytes(buf, bytes);
}

fn put_purge(buf: &mut Vec<u8>, index: u64, log_id: &[u8]) {
    buf.push(PURGE);
    buf.extend_from_slice(&index.to_le_bytes());
    put_bytes(buf, log_id);
}

/// The ops restating `meta`, first in every segment.
pub(super) fn encode_meta(buf: &mut Vec<u8>, meta: &Meta) {
    if let Some(v) = &meta.vote {
        put_tagged(buf, VOTE, v);
    }
    if let Some(c) = &meta.committed {
        put_tagged(buf, COMMITTED, c);
    }
    if let Some((index, log_id)) = &meta.purged {
        put_purge(buf, *index, log_id);
    }
    if let Some(s) = &meta.old_snapshot {
        put_tagged(buf, OLD_SNAPSHOT, s);
    }
}

/// Wraps `payload` (already at `buf[FRAME_HEADER..]`) into a frame numbered `seq`, checksummed
/// from the segment's `salt`.
pub(super) fn seal_frame(buf: &mut Vec<u8>, seq: u64, salt: u64) {
    let len = buf.len() - FRAME_HEADER;
    buf.resize(buf.len().next_multiple_of(8), 0);
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&salt.to_le_bytes());
    crc.update(&buf[8..16]);
    crc.update(&buf[FRAME_HEADER..FRAME_HEADER + len]);
    buf[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
}

/// A frame read at some offset: its seq, payload range, and where the next one starts.
pub(super) struct Frame {
    pub(super) seq: u64,
    pub(super) payload: std::ops::Range<usize>,
    pub(super) next: usize,
}

/// The valid frame at `at` in `bytes` (a segment salted with `salt`), if there is one.
pub(super) fn frame_at(bytes: &[u8], at: usize, salt: u64) -> Option<Frame> {
    let header = bytes.get(at..at + FRAME_HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    if seq == 0 {
        return None;
    }
    let start = at + FRAME_HEADER;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(&header[8..16]);
    hasher.update(payload);
    (hasher.finalize() == crc).then(|| Frame {
        seq,
        payload: start..start + len,
        next: (start + len).next_multiple_of(8),
    })
}

/// Reads the ops of one payload.
pub(super) struct Ops<'a> {
    pub(super) bytes: &'a [u8],
}

impl Ops<'_> {
    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.bytes.split_at_checked(8)?;
        self.bytes = rest;
        Some(u64::from_le_bytes(head.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let (head, rest) = self.bytes.split_at_checked(4)?;
        let len = u32::from_le_bytes(head.try_into().ok()?) as usize;
        let (body, rest) = rest.split_at_checked(len)?;
        self.bytes = rest;
        Some(body.to_vec())
    }

    /// The next op; `Err` for bytes that do not parse (a frame whose checksum matched: a bug or
    /// a format from elsewhere, not a torn write).
    pub(super) fn next_op(&mut self) -> Result<Option<Op>, ()> {
        let Some((&tag, rest)) = self.bytes.split_first() else {
            return Ok(None);
        };
        self.bytes = rest;
        let op = match tag {
            APPEND => self.u64().and_then(|index| {
                self.bytes()
                    .map(|entry| Op::Disk(DiskOp::Append { index, entry }))
            }),
            TRUNCATE => self.u64().map(|i| Op::Disk(DiskOp::TruncateFrom(i))),
            PURGE => self.u64().and_then(|index| {
                self.bytes()
                    .map(|log_id| Op::Disk(DiskOp::PurgeUpTo { index, log_id }))
            }),
            VOTE => self.bytes().map(|v| Op::Disk(DiskOp::Vote(v))),
            COMMITTED => self.bytes().map(|c| Op::Disk(DiskOp::Committed(c))),
            OLD_SNAPSHOT => self.bytes().map(Op::OldSnapshot),
            DROP_OLD_SNAPSHOT => Some(Op::Disk(DiskOp::DropOldSnapshot)),
            _ => None,
        };
        op.map(Some).ok_or(())
    }
}

pub(super) enum Op {
    Disk(DiskOp),
    OldSnapshot(Vec<u8>),
}
