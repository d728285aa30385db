//! Read-only calls against a keyspace that writes keep changing.

use std::sync::Arc;

use bytes::Bytes;

use super::{LogCommand, READ_ATTEMPTS, StateMachine};
use crate::keyspace::ParseCtx;
use crate::replication::{self, Machine};
use crate::reply::Reply;
use crate::wasm::{CallLimits, CallMode, Permissions};

/// Reads `a`, logs (where a test may write in between), reads `a` again; replies with the two
/// lengths as `first * 100 + second`, or -1 for a missing key.
const TWO_READS: &str = r#"(module
  (import "ferrite" "get_key" (func $get (param i32 i32) (result i64)))
  (import "ferrite" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "a")
  (global $heap (mut i32) (i32.const 1024))
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func $len (param $packed i64) (result i64)
    (if (result i64) (i64.lt_s (local.get $packed) (i64.const 0))
      (then (i64.const -1))
      (else (i64.and (local.get $packed) (i64.const 0xffffffff)))))
  (func (export "run") (param i32 i32) (result i64)
    (local $first i64)
    (local.set $first (call $len (call $get (i32.const 0) (i32.const 1))))
    (call $log (i32.const 1) (i32.const 0) (i32.const 1))
    (i64.add (i64.mul (local.get $first) (i64.const 100))
             (call $len (call $get (i32.const 0) (i32.const 1))))))"#;

fn op(words: &[&str]) -> LogCommand {
    let args: Vec<Bytes> = words[1..]
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    let ctx = ParseCtx {
        now_ms: 10,
        seed: 0,
    };
    LogCommand::Op {
        now_ms: 10,
        op: crate::keyspace::parse(words[0], &args, &ctx)
            .unwrap()
            .unwrap(),
    }
}

fn machine() -> Arc<StateMachine> {
    let machine =
        Arc::new(StateMachine::new(crate::wasm::EngineSettings::default(), None).unwrap());
    let setup = vec![
        op(&["set", "a", "1"]),
        LogCommand::Load {
            name: "m".into(),
            bytes: Bytes::from_static(TWO_READS.as_bytes()),
            permissions: Permissions::READ,
            replace: false,
            now_ms: 10,
        },
    ];
    let replies = machine.apply(1, &replication::encode(&setup));
    assert_eq!(replies, vec![Reply::ok(), Reply::ok()]);
    machine
}

fn read_call(machine: &StateMachine) -> Reply {
    let module = machine.modules().get("m").unwrap();
    read_call_of(machine, &module, "run", b"a")
}

/// Arms the hook at the guest's `log` to write `a` (from another thread, as a client would),
/// once per value, in order (each run of the call meets it once).
fn write_between_reads(machine: &Arc<StateMachine>, values: Vec<&'static str>) {
    let Some((value, rest)) = values.split_first().map(|(v, r)| (*v, r.to_vec())) else {
        return;
    };
    let writer = machine.clone();
    crate::wasm::ON_LOG.with(|h| {
        *h.borrow_mut() = Some(Box::new(move || {
            let payload = replication::encode(&vec![op(&["set", "a", value])]);
            let other = writer.clone();
            std::thread::spawn(move || other.apply(2, &payload))
                .join()
                .unwrap();
            write_between_reads(&writer, rest);
        }));
    });
}

#[test]
fn a_read_only_call_holds_no_lock_and_sees_one_state() {
    let machine = machine();
    // Undisturbed: both reads see "1".
    assert_eq!(read_call(&machine), Reply::Int(101));
    // A write lands between the two reads of the first run: that run is overtaken (had it
    // held the lock, the write from another thread would have deadlocked here), the next run
    // sees the new value twice.
    write_between_reads(&machine, vec!["22"]);
    assert_eq!(read_call(&machine), Reply::Int(202));
    assert_eq!(
        machine
            .modules()
            .get("m")
            .unwrap()
            .stats
            .calls
            .load(std::sync::atomic::Ordering::Relaxed),
        2,
        "an overtaken run is not counted"
    );
}

#[test]
fn a_read_only_call_overtaken_every_time_finally_runs_holding_the_keyspace() {
    let machine = machine();
    let values = ["22", "333", "4444", "55555", "666666"];
    write_between_reads(&machine, values[..READ_ATTEMPTS].to_vec());
    // Each lock-free run is overtaken; the last run holds the keyspace, so no write can land
    // in it (the hook is disarmed by then) and it sees the latest value twice.
    let last = values[READ_ATTEMPTS - 1].len() as i64;
    assert_eq!(read_call(&machine), Reply::Int(last * 100 + last));
}

/// Grows its memory by `40` pages (2.5 MiB) and stores what `memory.grow` answered, then
/// increments a counter through `call`.
const GROWER: &str = r#"(module
  (import "ferrite" "set_key" (func $set (param i32 i32 i32 i32) (result i32)))
  (import "ferrite" "call" (func $call (param i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "g")
  (data (i32.const 32) "\03\00\00\00\06\00\00\00INCRBY\01\00\00\00g\01\00\00\001")
  (global $heap (mut i32) (i32.const 1024))
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "grow") (param i32 i32) (result i64)
    (i64.extend_i32_s (memory.grow (i32.const 40))))
  (func (export "incr") (param i32 i32) (result i64)
    (drop (call $call (i32.const 32) (i32.const 24)))
    (i64.const 0)))"#;

#[test]
fn replicas_with_different_settings_and_warm_pools_apply_to_the_same_state() {
    let roomy = crate::wasm::EngineSettings::default();
    let tight = crate::wasm::EngineSettings {
        max_module_size: 64,
        max_instances: 2,
        min_instances: 0,
        max_stack_bytes: 64 * 1024,
        ..roomy
    };
    let a = StateMachine::new(roomy, None).unwrap();
    let b = StateMachine::new(tight, None).unwrap();
    let load = vec![LogCommand::Load {
        name: "m".into(),
        bytes: Bytes::from_static(GROWER.as_bytes()),
        permissions: Permissions::READ | Permissions::WRITE,
        replace: false,
        now_ms: 10,
    }];
    let sha256 = crate::wasm::hex_sha256(GROWER.as_bytes());
    let call = |entry: &str, index: u64| {
        replication::encode(&vec![LogCommand::Call {
            module: "m".into(),
            sha256: sha256.clone(),
            entry: entry.into(),
            keys: vec![Bytes::from_static(b"g")],
            args: vec![],
            now_ms: 10 + index,
            seed: index,
            max_fuel: 1_000_000,
            max_memory_bytes: 4 << 20,
        }])
    };
    let mut replies = (Vec::new(), Vec::new());
    replies.0.push(a.apply(1, &replication::encode(&load)));
    replies.1.push(b.apply(1, &replication::encode(&load)));
    // A read-only call on `a` only warms its pool; the replicas then apply the same entries.
    let module = a.modules().get("m").unwrap();
    let _ = read_call_of(&a, &module, "incr", b"g");
    for (i, entry) in ["grow", "incr", "grow", "incr"].into_iter().enumerate() {
        let payload = call(entry, i as u64 + 2);
        replies.0.push(a.apply(i as u64 + 2, &payload));
        replies.1.push(b.apply(i as u64 + 2, &payload));
    }
    assert_eq!(replies.0, replies.1);
    assert_eq!(replies.0[0], vec![Reply::ok()], "both loaded the module");
    assert_eq!(
        replies.0[1],
        vec![Reply::Int(1)],
        "the memory grew from one page"
    );
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.snapshot(), b.snapshot(), "snapshot bytes");
}

fn read_call_of(
    machine: &StateMachine,
    module: &crate::wasm::ModuleRef,
    entry: &str,
    key: &'static [u8],
) -> Reply {
    machine
        .call_read(
            module,
            entry,
            &[Bytes::from_static(key)],
            &[],
            ParseCtx {
                now_ms: 11,
                seed: 0,
            },
            CallMode { read_only: true },
            CallLimits {
                max_memory_bytes: 1 << 20,
                max_fuel: 1_000_000,
                max_duration: std::time::Duration::from_secs(5),
                time_slice: false,
            },
        )
        .expect("a call without a time slice always answers")
}
