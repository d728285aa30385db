//! The state machine as the replication layer sees it: entries decoded and applied, the whole
//! state serialized for a snapshot, and restored from one.
//!
//! A snapshot holds the keyspace (its layout included: iteration order is part of the state),
//! every module's bytes and permissions, and the applied clock. Equal states serialize to equal
//! bytes, which is how replicas are compared ([`StateMachine::fingerprint`]).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::{Divergence, LogCommand, StateMachine};
use crate::keyspace::Keyspace;
use crate::replication::{self, CodecError, Machine, Unapplied};
use crate::reply::Reply;
use crate::wasm::{Permissions, WasmError};

/// A module as snapshots carry it.
#[derive(Debug, Serialize, Deserialize)]
struct ModuleRecord {
    name: String,
    bytes: Bytes,
    permissions: Permissions,
    loaded_at_ms: u64,
}

/// The state as a snapshot holds it. Serialized from borrowed parts, read back owned.
#[derive(Serialize)]
struct SnapshotOut<'a> {
    keyspace: &'a Keyspace,
    modules: Vec<ModuleRecord>,
    applied_ms: u64,
    cluster_id: u64,
}

#[derive(Deserialize)]
struct SnapshotIn {
    keyspace: Keyspace,
    modules: Vec<ModuleRecord>,
    applied_ms: u64,
    cluster_id: u64,
}

/// Why a snapshot could not be restored. Nothing changes when it fails.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The bytes are not a snapshot of this version.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A module in it does not compile here.
    #[error("module {name}: {source}")]
    Module {
        /// The module's name.
        name: String,
        /// Why it was refused.
        source: WasmError,
    },
}

impl StateMachine {
    /// A SHA-256 of the whole replicated state (keyspace, modules, applied clock): members that
    /// applied the same entries report the same value.
    pub fn fingerprint(&self) -> String {
        hex(&self.digest())
    }

    /// The SHA-256 of what a snapshot of the state now would hold, computed as it is
    /// serialized (the bytes are never held).
    pub(super) fn digest(&self) -> [u8; 32] {
        // The encoder writes field by field; the buffer hands the hasher large blocks.
        let mut sink = std::io::BufWriter::with_capacity(1 << 16, Sha256::new());
        self.write_state(&mut sink);
        match sink.into_inner() {
            Ok(hasher) => hasher.finalize().into(),
            Err(_) => unreachable!("a hasher never fails to take bytes"),
        }
    }

    /// Serializes the whole state into `sink`.
    fn write_state<W: std::io::Write>(&self, sink: &mut W) {
        let modules = self
            .modules
            .list()
            .iter()
            .map(|m| ModuleRecord {
                name: m.name.clone(),
                bytes: m.source.clone(),
                permissions: m.permissions,
                loaded_at_ms: m.loaded_at_ms,
            })
            .collect();
        let keyspace = self.keyspace();
        replication::encode_into(
            &SnapshotOut {
                keyspace: &keyspace,
                modules,
                applied_ms: self.applied_ms.load(Ordering::Relaxed),
                cluster_id: self.cluster_id(),
            },
            sink,
        );
    }
}

/// Lowercase hex of a digest.
pub(super) fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Machine for StateMachine {
    /// The replies of the entry's commands, in order.
    type Response = Vec<Reply>;
    type RestoreError = RestoreError;

    /// An entry that cannot be decoded (written by a newer version, or damaged) stops this
    /// member: it is not skipped, which would leave this state behind every other's.
    fn apply(&self, index: u64, payload: &[u8]) -> Result<Vec<Reply>, Unapplied> {
        match replication::decode::<Vec<LogCommand>>(payload) {
            Ok(commands) => {
                let long = commands.iter().any(LogCommand::runs_long);
                // A write call may run for up to a second of fuel, a compile or a state digest
                // for longer. Write calls run first in a time slice on the async worker (most
                // take microseconds; handing the worker's other tasks to another thread cost
                // more than the call), and one that needs longer runs again off it
                // (`StateMachine::apply_call`). Anything else that runs long has the applying
                // worker hand its other tasks (clients, heartbeats) to another thread first.
                // On a current-thread runtime (the simulation) a time slice would let the
                // wall clock decide how often a call runs, so everything runs as it comes.
                let sliced = long
                    && multi_threaded()
                    && commands
                        .iter()
                        .all(|c| !c.runs_long() || matches!(c, LogCommand::Call { .. }));
                let run = || {
                    commands
                        .into_iter()
                        .map(|c| match c {
                            call @ LogCommand::Call { .. } if sliced => {
                                self.apply_call(index, call, true)
                            }
                            c => self.apply_command(index, c),
                        })
                        .collect()
                };
                Ok(if long && !sliced {
                    crate::blocking::off_the_workers(run)
                } else {
                    run()
                })
            }
            Err(e) => {
                let found = Divergence::Unreadable {
                    index,
                    cause: e.to_string(),
                };
                let unapplied = Unapplied(found.to_string());
                self.halt(found);
                Err(unapplied)
            }
        }
    }

    fn snapshot_into(&self, out: &mut Vec<u8>) {
        self.write_state(out);
    }

    fn restore(&self, bytes: &[u8]) -> Result<(), RestoreError> {
        let state: SnapshotIn = replication::decode(bytes)?;
        let mut compiled = Vec::new();
        for record in state.modules {
            let module = self
                .functions
                .compile(
                    &record.name,
                    record.bytes,
                    record.permissions,
                    record.loaded_at_ms,
                )
                .map_err(|source| RestoreError::Module {
                    name: record.name.clone(),
                    source,
                })?;
            compiled.push(module);
        }
        *self.keyspace_mut() = state.keyspace;
        self.modules.clear();
        for module in compiled {
            let name = module.name.clone();
            self.modules
                .insert(module, true)
                .map_err(|source| RestoreError::Module { name, source })?;
        }
        self.applied_ms.store(state.applied_ms, Ordering::Relaxed);
        self.cluster_id.store(state.cluster_id, Ordering::Relaxed);
        Ok(())
    }
}

/// Whether this runs on a multi-threaded tokio runtime (a server's; the simulation's is not).
fn multi_threaded() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::ParseCtx;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn snapshots_restore_the_same_state() {
        let settings = crate::wasm::EngineSettings::default();
        let a = StateMachine::new(settings, None).unwrap();
        for (i, key) in ["x", "y", "z"].iter().enumerate() {
            let ctx = ParseCtx {
                now_ms: 10,
                seed: i as u64,
            };
            let op = crate::keyspace::parse("sadd", &args(&[key, "m1", "m2"]), &ctx)
                .unwrap()
                .unwrap();
            let replies = a
                .apply(
                    1,
                    &replication::encode(&vec![LogCommand::Op { now_ms: 10, op }]),
                )
                .unwrap();
            assert_eq!(replies, vec![Reply::Int(2)]);
        }
        let b = StateMachine::new(settings, None).unwrap();
        b.restore(&a.snapshot()).unwrap();
        assert_eq!(*a.keyspace(), *b.keyspace());
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn a_panic_in_host_code_undoes_the_call_and_keeps_the_keyspace() {
        let machine = StateMachine::new(crate::wasm::EngineSettings::default(), None).unwrap();
        let ctx = ParseCtx {
            now_ms: 10,
            seed: 0,
        };
        let set = crate::keyspace::parse("set", &args(&["kept", "1"]), &ctx)
            .unwrap()
            .unwrap();
        let module = r#"(module
            (import "ferrite" "set_key" (func $set (param i32 i32 i32 i32) (result i32)))
            (import "ferrite" "log" (func $log (param i32 i32 i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "new")
            (func (export "alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "run") (param i32 i32) (result i64)
              (drop (call $set (i32.const 0) (i32.const 3) (i32.const 0) (i32.const 3)))
              (call $log (i32.const 1) (i32.const 0) (i32.const 3))
              (i64.const 0)))"#;
        let commands = vec![
            LogCommand::Op {
                now_ms: 10,
                op: set,
            },
            LogCommand::Load {
                name: "m".into(),
                bytes: Bytes::from_static(module.as_bytes()),
                permissions: crate::wasm::Permissions::READ | crate::wasm::Permissions::WRITE,
                replace: false,
                now_ms: 10,
            },
        ];
        let replies = machine.apply(1, &replication::encode(&commands)).unwrap();
        assert_eq!(replies, vec![Reply::ok(), Reply::ok()]);
        let sha256 = machine.modules().get("m").unwrap().sha256.clone();
        let call = vec![LogCommand::Call {
            module: "m".into(),
            sha256,
            entry: "run".into(),
            keys: vec![Bytes::from_static(b"new")],
            args: vec![],
            now_ms: 11,
            seed: 0,
            max_fuel: 1_000_000,
            max_memory_bytes: 1 << 20,
        }];
        crate::wasm::PANIC_IN_LOG.with(|p| p.set(true));
        let replies = machine.apply(2, &replication::encode(&call)).unwrap();
        crate::wasm::PANIC_IN_LOG.with(|p| p.set(false));
        let [Reply::Error(line)] = &replies[..] else {
            panic!("{replies:?}");
        };
        assert!(line.contains("internal error"), "{line}");
        assert_eq!(machine.keyspace().len(), 1, "the keyspace survived");
        let ks = machine.keyspace();
        assert_eq!(
            ks.get_string(b"kept", 11).unwrap().map(|v| &v[..]),
            Some(&b"1"[..])
        );
        assert_eq!(
            ks.get_string(b"new", 11).unwrap(),
            None,
            "the call's write was undone"
        );
        drop(ks);
        // The next call, with the bug switched off, runs normally.
        let replies = machine.apply(3, &replication::encode(&call)).unwrap();
        assert_eq!(replies, vec![Reply::Int(0)]);
        assert_eq!(machine.keyspace().len(), 2);
    }

    #[test]
    fn an_undecodable_entry_changes_nothing_and_stops_the_replica() {
        let machine = StateMachine::new(crate::wasm::EngineSettings::default(), None).unwrap();
        let before = machine.fingerprint();
        assert!(machine.apply(7, b"\xff\xff\xff").is_err());
        assert_eq!(machine.fingerprint(), before);
        assert!(matches!(
            machine.divergence(),
            Some(Divergence::Unreadable { index: 7, .. })
        ));
        assert!(matches!(
            machine.restore(b"\xff"),
            Err(RestoreError::Codec(_))
        ));
    }
}
