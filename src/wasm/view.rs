//! What a call reads through. A write call owns the keyspace for its duration (moved in under
//! the state machine's exclusive lock). A read-only call owns nothing and holds no lock while
//! guest code runs: each host read takes the shared lock for just that read, and the call
//! checks on every read that nothing it read before has changed since (per-key versions, as
//! WATCH keeps them). If something did, the call is overtaken ([`WasmError::Overtaken`]) and the
//! state machine runs it again; what a call that completes saw is one consistent state, the
//! one at its last read. Writes therefore never wait for a read-only call's guest code.

use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::WasmError;
use crate::keyspace::{Keyspace, WatchToken};

/// A read-only call's view of the shared keyspace.
pub struct SharedView {
    lock: Arc<RwLock<Keyspace>>,
    /// The keyspace's write sequence number at the last read, if any read happened.
    seq: Option<u64>,
    /// Versions of the keys read so far.
    read: Vec<WatchToken>,
    /// Whether a read reached beyond named keys (then any write overtakes the call).
    whole: bool,
}

impl SharedView {
    /// A view of the keyspace behind `lock`.
    pub fn new(lock: Arc<RwLock<Keyspace>>) -> SharedView {
        SharedView {
            lock,
            seq: None,
            read: Vec::new(),
            whole: false,
        }
    }

    /// Runs `read` on the keyspace under the shared lock, after checking that everything read
    /// before is unchanged; records the versions of `keys` (or, with `whole`, that the read
    /// depends on more than named keys).
    pub fn read<R>(
        &mut self,
        keys: &[&Bytes],
        whole: bool,
        now_ms: u64,
        read: impl FnOnce(&Keyspace) -> R,
    ) -> Result<R, WasmError> {
        // A poisoned lock means a write panicked half-way: read nothing from it. The state
        // machine's own path to the keyspace stops the process.
        let Ok(ks) = self.lock.read() else {
            return Err(WasmError::Overtaken);
        };
        if let Some(seq) = self.seq
            && ks.write_seq() != seq
            && (self.whole || self.read.iter().any(|t| ks.watch_broken(t, now_ms)))
        {
            return Err(WasmError::Overtaken);
        }
        self.seq = Some(ks.write_seq());
        self.whole |= whole;
        for key in keys {
            self.read.push(ks.watch(key, now_ms));
        }
        Ok(read(&ks))
    }
}

/// The keyspace as a call reaches it.
pub enum Access {
    /// Moved in for a write call; moved back out afterwards.
    Owned(Keyspace),
    /// Shared with writers, for a read-only call.
    Shared(SharedView),
}

impl Access {
    /// Runs `read` on the keyspace (see [`SharedView::read`]).
    pub fn read<R>(
        &mut self,
        keys: &[&Bytes],
        whole: bool,
        now_ms: u64,
        read: impl FnOnce(&Keyspace) -> R,
    ) -> Result<R, WasmError> {
        match self {
            Access::Owned(ks) => Ok(read(ks)),
            Access::Shared(view) => view.read(keys, whole, now_ms, read),
        }
    }

    /// The owned keyspace, for writes; `None` in a read-only call.
    pub fn owned(&mut self) -> Option<&mut Keyspace> {
        match self {
            Access::Owned(ks) => Some(ks),
            Access::Shared(_) => None,
        }
    }

    /// Gives back the owned keyspace (an empty one for a shared view).
    pub fn into_owned(self) -> Keyspace {
        match self {
            Access::Owned(ks) => ks,
            Access::Shared(_) => Keyspace::default(),
        }
    }
}
