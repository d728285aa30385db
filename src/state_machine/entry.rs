//! The log-entry format: what one replicated write is. A Raft entry's payload is a
//! `Vec<LogCommand>` (a batch: writes queued together share an entry), encoded with the
//! replication layer's codec.
//!
//! Everything a command's execution depends on is in it (the leader's time, seeds, fuel and
//! memory limits, the module's hash), so every member computes the same result. The variant
//! order and field order are the on-disk format: append, never reorder.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::keyspace::{Op, WatchToken};
use crate::wasm::Permissions;

/// A replicated write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LogCommand {
    /// A keyspace write created at `now_ms` on the leader.
    Op {
        /// The leader's time.
        now_ms: u64,
        /// The operation.
        op: Op,
    },
    /// `WASM.LOAD`: the module's bytes.
    Load {
        /// Module name.
        name: String,
        /// The module (binary or WAT text).
        bytes: Bytes,
        /// Granted permissions.
        permissions: Permissions,
        /// Swap out a module of the same name.
        replace: bool,
        /// The leader's time (the module's `loaded_at`).
        now_ms: u64,
    },
    /// `WASM.UNLOAD`.
    Unload {
        /// Module name.
        name: String,
    },
    /// A write call, executed by every member at apply time.
    Call {
        /// Module name.
        module: String,
        /// SHA-256 of the module the leader resolved the name to.
        sha256: String,
        /// Exported function.
        entry: String,
        /// Declared keys.
        keys: Vec<Bytes>,
        /// Arguments.
        args: Vec<Bytes>,
        /// The leader's time.
        now_ms: u64,
        /// Seed for random commands issued through `call`.
        seed: u64,
        /// Fuel the call starts with (the leader's configuration at proposal time).
        max_fuel: u64,
        /// Memory cap.
        max_memory_bytes: u64,
    },
    /// Names the cluster: proposed by the first leader that finds the state unnamed; the first
    /// one applied wins and later ones change nothing.
    ClusterId(u64),
    /// A state check: every member records a digest of its state where this command applies,
    /// and compares the digest the proposing leader recorded at an earlier check (its log
    /// index and digest) with its own record there. A member that differs stops serving.
    Check {
        /// The proposer's record at its latest check, if it has one.
        previous: Option<(u64, [u8; 32])>,
    },
    /// MULTI ... EXEC holding function calls: the watched keys are checked, then the steps
    /// run in order holding the keyspace, so no other client sees a state between two of
    /// them. Each step's error is its own reply (as in Redis); a call's own writes are undone
    /// when it fails.
    Transaction {
        /// The leader's time.
        now_ms: u64,
        /// Seed of the first step; each next step's is one more.
        seed: u64,
        /// Versions of the watched keys when they were watched.
        watches: Vec<WatchToken>,
        /// The queued commands.
        steps: Vec<Step>,
    },
}

impl LogCommand {
    /// Whether applying it may take long (guest code, a compile, a digest of the whole
    /// state), so it should run off the async workers.
    pub fn runs_long(&self) -> bool {
        match self {
            LogCommand::Load { .. } | LogCommand::Call { .. } | LogCommand::Check { .. } => true,
            LogCommand::Transaction { steps, .. } => {
                steps.iter().any(|s| matches!(s, Step::Call(_)))
            }
            LogCommand::Op { .. } | LogCommand::Unload { .. } | LogCommand::ClusterId(_) => false,
        }
    }
}

/// A command queued in a transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Step {
    /// A keyspace command.
    Op(Op),
    /// A function call.
    Call(CallStep),
}

/// A function call queued in a transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallStep {
    /// Module name.
    pub module: String,
    /// SHA-256 of the module the leader resolved the name to (empty: none was loaded).
    pub sha256: String,
    /// Exported function.
    pub entry: String,
    /// Declared keys.
    pub keys: Vec<Bytes>,
    /// Arguments.
    pub args: Vec<Bytes>,
    /// `FCALL_RO` / `WASM.CALL_RO`: every write is refused.
    pub read_only: bool,
    /// Fuel the call starts with.
    pub max_fuel: u64,
    /// Memory cap.
    pub max_memory_bytes: u64,
}
