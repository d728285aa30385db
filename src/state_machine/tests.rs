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

/// A load of `source` as module `name`, as the log carries it.
fn load(name: &str, source: &'static str, permissions: Permissions) -> LogCommand {
    LogCommand::Load {
        name: name.into(),
        bytes: Bytes::from_static(source.as_bytes()),
        permissions,
        replace: false,
        now_ms: 10,
    }
}

fn machine() -> Arc<StateMachine> {
    let machine =
        Arc::new(StateMachine::new(crate::wasm::EngineSettings::default(), None).unwrap());
    let setup = vec![
        op(&["set", "a", "1"]),
        load("m", TWO_READS, Permissions::READ),
    ];
    let replies = machine.apply(1, &replication::encode(&setup)).unwrap();
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
            std::thread::spawn(move || other.apply(2, &payload).unwrap())
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
fn replicas_with_different_settings_apply_to_the_same_state() {
    let roomy = crate::wasm::EngineSettings::default();
    let tight = crate::wasm::EngineSettings {
        max_module_size: 64,
        max_instances: 2,
        max_stack_bytes: 2 << 20,
    };
    let a = StateMachine::new(roomy, None).unwrap();
    let b = StateMachine::new(tight, None).unwrap();
    let loads = replication::encode(&vec![load(
        "m",
        GROWER,
        Permissions::READ | Permissions::WRITE,
    )]);
    let mut replies = (Vec::new(), Vec::new());
    replies.0.push(a.apply(1, &loads).unwrap());
    replies.1.push(b.apply(1, &loads).unwrap());
    // A read-only call on `a` only warms its pool; the replicas then apply the same entries.
    let module = a.modules().get("m").unwrap();
    let _ = read_call_of(&a, &module, "incr", b"g");
    for (i, entry) in ["grow", "incr", "grow", "incr"].into_iter().enumerate() {
        let payload = write_call("m", GROWER, entry, i as u64 + 2);
        replies.0.push(a.apply(i as u64 + 2, &payload).unwrap());
        replies.1.push(b.apply(i as u64 + 2, &payload).unwrap());
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

/// A write call of `entry` in `module` (loaded from `source`) on key `g`, as entry `index`.
fn write_call(module: &str, source: &str, entry: &str, index: u64) -> Vec<u8> {
    write_call_on(b"g", module, source, entry, index)
}

/// [`write_call`] declaring `key`.
fn write_call_on(
    key: &'static [u8],
    module: &str,
    source: &str,
    entry: &str,
    index: u64,
) -> Vec<u8> {
    replication::encode(&vec![LogCommand::Call {
        module: module.into(),
        sha256: crate::wasm::hex_sha256(source.as_bytes()),
        entry: entry.into(),
        keys: vec![Bytes::from_static(key)],
        args: vec![],
        now_ms: 10 + index,
        seed: index,
        max_fuel: 1_000_000,
        max_memory_bytes: 4 << 20,
    }])
}

#[test]
fn an_apply_finds_an_instance_slot_whatever_local_calls_hold() {
    // Two slots: two read-only calls in flight would hold both.
    let settings = crate::wasm::EngineSettings {
        max_instances: 2,
        ..crate::wasm::EngineSettings::default()
    };
    let machine = Arc::new(StateMachine::new(settings, None).unwrap());
    let loads = vec![
        load("m", TWO_READS, Permissions::READ),
        load("w", GROWER, Permissions::READ | Permissions::WRITE),
    ];
    assert_eq!(
        machine.apply(1, &replication::encode(&loads)).unwrap(),
        vec![Reply::ok(), Reply::ok()]
    );
    let applied = Arc::new(std::sync::Mutex::new(Vec::new()));
    // While the first read-only call runs (one slot), a second one is started from another
    // thread; the write call is applied while both would be running.
    let (outer_machine, outer_applied) = (machine.clone(), applied.clone());
    crate::wasm::ON_LOG.with(|h| {
        *h.borrow_mut() = Some(Box::new(move || {
            let (second_machine, second_applied) = (outer_machine.clone(), outer_applied.clone());
            let second = std::thread::spawn(move || {
                let (inner_machine, inner_applied) = (second_machine.clone(), second_applied);
                crate::wasm::ON_LOG.with(|h| {
                    *h.borrow_mut() = Some(Box::new(move || {
                        let reply = inner_machine
                            .apply(2, &write_call("w", GROWER, "incr", 2))
                            .unwrap();
                        inner_applied.lock().unwrap().push(reply);
                    }));
                });
                read_call(&second_machine)
            })
            .join()
            .unwrap();
            // The second call found no slot, so its hook never ran: apply now, with the
            // first call still holding its slot.
            if outer_applied.lock().unwrap().is_empty() {
                let reply = outer_machine
                    .apply(2, &write_call("w", GROWER, "incr", 2))
                    .unwrap();
                outer_applied.lock().unwrap().push(reply);
            }
            let Reply::Error(line) = second else {
                panic!("the second read-only call took the slot kept for applies: {second:?}");
            };
            assert!(line.contains("instance slots are in use"), "{line}");
        }));
    });
    assert_eq!(read_call(&machine), Reply::Int(-101), "the first call ran");
    assert_eq!(
        *applied.lock().unwrap(),
        vec![vec![Reply::Int(0)]],
        "the apply ran in the slot kept for it"
    );
    // Every instance is torn down as its call ends: the next apply finds the slot free again.
    assert_eq!(machine.functions().slots_in_use(), 0);
    assert_eq!(
        machine
            .apply(3, &write_call("w", GROWER, "incr", 3))
            .unwrap(),
        vec![Reply::Int(0)]
    );
    assert_eq!(
        machine
            .keyspace()
            .get_string(b"g", 20)
            .unwrap()
            .map(|v| v.to_vec()),
        Some(b"2".to_vec())
    );
}

/// A module whose start function logs, then calls a function (an epoch check).
const STARTS: &str = r#"(module
  (import "ferrite" "log" (func $log (param i32 i32 i32)))
  (import "ferrite" "set_key" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "g")
  (func $then)
  (func $start
    (call $log (i32.const 1) (i32.const 0) (i32.const 1))
    (call $then))
  (start $start)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "incr") (param i32 i32) (result i64)
    (drop (call $set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1)))
    (i64.const 0)))"#;

/// A write call runs for up to a second of fuel inside the apply task. Its first attempt runs
/// on the async worker for at most a time slice; past it the call is undone and run again off
/// the worker, and meanwhile the worker's other tasks (clients, Raft heartbeats) go on. One
/// worker: only it could run them.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_write_call_at_apply_past_its_slice_leaves_the_async_worker_to_other_tasks() {
    let machine = machine();
    let payload = write_call_on(b"a", "m", TWO_READS, "run", 2);
    let runtime = machine.functions().clone();
    let applier = tokio::spawn(async move {
        let (answered, answer) = std::sync::mpsc::channel();
        let other_task_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ran = other_task_ran.clone();
        // Halfway through the first attempt the guest stalls past its slice; halfway through
        // the second, another task must run before the guest goes on.
        crate::wasm::ON_LOG.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                std::thread::sleep(crate::wasm::APPLY_TIME_SLICE * 3);
                crate::wasm::ON_LOG.with(|h| {
                    *h.borrow_mut() = Some(Box::new(move || {
                        tokio::spawn(async move { answered.send(()) });
                        let got = answer.recv_timeout(std::time::Duration::from_secs(10));
                        ran.store(got.is_ok(), std::sync::atomic::Ordering::Relaxed);
                    }));
                });
            }));
        });
        let replies = machine.apply(2, &payload).unwrap();
        (
            replies,
            other_task_ran.load(std::sync::atomic::Ordering::Relaxed),
        )
    });
    let (replies, other_task_ran) = applier.await.unwrap();
    assert_eq!(replies, vec![Reply::Int(101)]);
    assert_eq!(
        runtime.calls_past_slice(),
        1,
        "the first attempt ended with its slice"
    );
    assert!(
        other_task_ran,
        "no other task ran on the runtime while the call was applied"
    );
}

#[test]
fn a_start_function_at_apply_is_bounded_by_fuel_not_by_the_clock() {
    let settings = crate::wasm::EngineSettings {
        ..crate::wasm::EngineSettings::default()
    };
    let machine = Arc::new(StateMachine::new(settings, None).unwrap());
    let loads = vec![load("s", STARTS, Permissions::READ | Permissions::WRITE)];
    assert_eq!(
        machine.apply(1, &replication::encode(&loads)).unwrap(),
        vec![Reply::ok()]
    );
    // This host stalls for two seconds of epoch ticks while the start function runs (a
    // descheduled process, a paused container): another replica would not have.
    let runtime = machine.functions().clone();
    crate::wasm::ON_LOG.with(|h| {
        *h.borrow_mut() = Some(Box::new(move || {
            for _ in 0..200 {
                for engine in runtime.engines() {
                    engine.increment_epoch();
                }
            }
        }));
    });
    assert_eq!(
        machine
            .apply(2, &write_call("s", STARTS, "incr", 2))
            .unwrap(),
        vec![Reply::Int(0)]
    );
    assert_eq!(machine.keyspace().len(), 1);
}

#[test]
fn a_replica_whose_state_differs_at_a_check_stops_serving() {
    let settings = crate::wasm::EngineSettings::default();
    let (leader, same, other) = (
        StateMachine::new(settings, None).unwrap(),
        StateMachine::new(settings, None).unwrap(),
        StateMachine::new(settings, None).unwrap(),
    );
    let replicas = [&leader, &same, &other];
    let apply_all = |index: u64, commands: Vec<LogCommand>| {
        let payload = replication::encode(&commands);
        for replica in replicas {
            replica.apply(index, &payload).unwrap();
        }
    };
    let check = |leader: &StateMachine| LogCommand::Check {
        previous: leader.checkpoint(),
    };
    apply_all(1, vec![op(&["set", "a", "1"])]);
    apply_all(2, vec![check(&leader)]);
    // All agree at index 2; then `other` applies a write the log does not hold (what a
    // nondeterministic apply would do).
    other
        .apply(3, &replication::encode(&vec![op(&["set", "b", "x"])]))
        .unwrap();
    apply_all(4, vec![check(&leader)]);
    let (at, leaders_digest) = leader.checkpoint().unwrap();
    assert_eq!(at, 4);
    assert!(
        replicas.iter().all(|r| r.divergence().is_none()),
        "the states agreed at the check compared (index 2)"
    );
    apply_all(5, vec![op(&["set", "a", "2"]), check(&leader)]);
    assert_eq!(leader.divergence(), None);
    assert_eq!(same.divergence(), None);
    let Some(super::Divergence::Digest {
        index,
        ours,
        theirs,
    }) = other.divergence()
    else {
        panic!("the replica that differs did not find out");
    };
    assert_eq!(index, 4);
    assert_eq!(theirs, super::snapshot::hex(&leaders_digest));
    assert_ne!(ours, theirs);
    // A member with no record at the compared index (restarted, or restored from a snapshot
    // past it) compares nothing.
    let fresh = StateMachine::new(settings, None).unwrap();
    fresh.restore(&leader.snapshot()).unwrap();
    fresh
        .apply(6, &replication::encode(&vec![check(&leader)]))
        .unwrap();
    assert_eq!(fresh.divergence(), None);
}

/// Recurses 1,000 frames deep then counts (`shallow`); counts then recurses 40,000 frames
/// deep (`deep`: more than a 1 MiB native stack holds, less than 8 MiB); or gets `g` with an
/// `alloc` that gets `g` again, host frames between guest frames (`reenter`).
const RECURSER: &str = r#"(module
  (import "ferrite" "call" (func $call (param i32 i32) (result i64)))
  (import "ferrite" "get_key" (func $get (param i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "g")
  (data (i32.const 32) "\03\00\00\00\06\00\00\00INCRBY\01\00\00\00g\01\00\00\001")
  (global $heap (mut i32) (i32.const 1024))
  (global $reenter (mut i32) (i32.const 0))
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (if (global.get $reenter) (then (drop (call $get (i32.const 0) (i32.const 1)))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func $down (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 0))
      (else (i32.add (call $down (i32.sub (local.get $n) (i32.const 1))) (i32.const 1)))))
  (func (export "shallow") (param i32 i32) (result i64)
    (drop (call $down (i32.const 1000)))
    (drop (call $call (i32.const 32) (i32.const 24)))
    (i64.const 0))
  (func (export "deep") (param i32 i32) (result i64)
    (drop (call $call (i32.const 32) (i32.const 24)))
    (i64.extend_i32_s (call $down (i32.const 40000))))
  (func (export "reenter") (param i32 i32) (result i64)
    (drop (call $call (i32.const 32) (i32.const 24)))
    (global.set $reenter (i32.const 1))
    (drop (call $get (i32.const 0) (i32.const 1)))
    (i64.const 0)))"#;

#[test]
fn replicas_with_different_native_stacks_trap_at_the_same_depth() {
    // The larger stack needs a thread with room for it.
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(|| {
            let small = crate::wasm::EngineSettings {
                max_stack_bytes: 1 << 20,
                ..Default::default()
            };
            let large = crate::wasm::EngineSettings {
                max_stack_bytes: 8 << 20,
                ..small
            };
            let machines = [small, large].map(|s| StateMachine::new(s, None).unwrap());
            let rw = Permissions::READ | Permissions::WRITE;
            let loads = replication::encode(&vec![load("r", RECURSER, rw)]);
            let replies: Vec<Vec<Vec<Reply>>> = machines
                .iter()
                .map(|m| {
                    let mut replies = vec![m.apply(1, &loads).unwrap()];
                    for (i, entry) in ["shallow", "deep", "reenter"].into_iter().enumerate() {
                        let index = i as u64 + 2;
                        replies.push(
                            m.apply(index, &write_call("r", RECURSER, entry, index))
                                .unwrap(),
                        );
                    }
                    replies
                })
                .collect();
            assert_eq!(replies[0], replies[1]);
            let overflow = vec![Reply::error(crate::wasm::WasmError::StackOverflow)];
            assert_eq!(replies[0][1], vec![Reply::Int(0)], "1,000 frames fit");
            assert_eq!(replies[0][2], overflow, "40,000 frames pass the budget");
            assert_eq!(
                replies[0][3], overflow,
                "an alloc that re-enters the host ends too"
            );
            assert_eq!(machines[0].snapshot(), machines[1].snapshot());
            let keyspace = machines[0].keyspace.read().unwrap();
            let value = (keyspace.get_string(b"g", 0).unwrap()).map(|v| v.to_bytes());
            assert_eq!(
                value,
                Some(Bytes::from_static(b"1")),
                "overflowed calls undone"
            );
        })
        .unwrap()
        .join()
        .unwrap();
}
