//! What a module cannot do to the server: hostile modules, fuel that is the same on every run,
//! REPLACE under load, a read-only call cut off by its time limit.

use super::*;

/// A server started with `args` and `probe.wat` loaded as `probe` with READ and WRITE.
fn probe_server(args: &[&str]) -> (Server, redis::Connection) {
    let server = Server::start(args);
    let mut c = server.client();
    load(
        &mut c,
        "probe",
        "probe.wat",
        &["PERMISSIONS", "READ", "WRITE"],
    )
    .unwrap();
    (server, c)
}

#[test]
fn hostile_modules_get_their_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferrite.toml");
    std::fs::write(&config, "[wasm]\nmax_module_size = 65536\n").unwrap();
    let (server, mut c) = probe_server(&["--config", config.to_str().unwrap()]);

    // A bystander keeps getting answers while the hostile calls run.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let bystander = {
        let (stop, served, url) = (stop.clone(), served.clone(), server.url());
        std::thread::spawn(move || {
            let mut b = redis::Client::open(url).unwrap().get_connection().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let pong: String = redis::cmd("PING").query(&mut b).unwrap();
                assert_eq!(pong, "PONG");
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    assert_eq!(
        err(&mut c, &["WASM.CALL", "probe.spin"]),
        "ERR wasm: out of fuel"
    );
    assert_eq!(
        err(&mut c, &["WASM.CALL", "probe.memory_bomb"]),
        "ERR wasm: memory limit exceeded"
    );
    assert_eq!(
        err(&mut c, &["WASM.CALL", "probe.recurse"]),
        "ERR wasm: stack overflow"
    );
    assert_eq!(
        err(&mut c, &["WASM.CALL", "probe.flood"]),
        "ERR wasm: out of fuel"
    );
    let invalid = err(
        &mut c,
        &["WASM.LOAD", "bad", "\u{0}asm\u{1}\u{0}\u{0}\u{0}garbage"],
    );
    assert!(
        invalid.starts_with("ERR wasm: invalid module:"),
        "{invalid}"
    );
    let invalid = err(&mut c, &["WASM.LOAD", "bad", "not wasm at all ((("]);
    assert!(
        invalid.starts_with("ERR wasm: invalid module:"),
        "{invalid}"
    );
    assert_eq!(
        load(&mut c, "bad", "forbidden_import.wat", &[]).map_err(|e| error_line(&e)),
        Err("ERR wasm: invalid module: forbidden import 'env.abort'".to_owned())
    );
    assert_eq!(
        load(&mut c, "bad", "no_alloc.wat", &[]).map_err(|e| error_line(&e)),
        Err("ERR wasm: invalid module: missing export 'alloc'".to_owned())
    );
    let huge = vec![b' '; 70_000];
    let too_big: redis::RedisResult<Value> =
        redis::cmd("WASM.LOAD").arg("huge").arg(huge).query(&mut c);
    assert_eq!(
        too_big.map_err(|e| error_line(&e)),
        Err("ERR wasm: module is 70000 bytes, larger than the 65536 byte limit".to_owned())
    );
    // A read-only call is also cut off by time, not just fuel.
    cmd(&mut c, &["CONFIG", "SET", "wasm-max-fuel", "100000000000"]).unwrap();
    cmd(&mut c, &["CONFIG", "SET", "wasm-max-duration-ms", "300"]).unwrap();
    assert_eq!(
        err(&mut c, &["WASM.CALL_RO", "probe.spin"]),
        "ERR wasm: timeout"
    );

    stop.store(true, Ordering::Relaxed);
    bystander.join().unwrap();
    assert!(served.load(Ordering::Relaxed) > 0);
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe"]).unwrap(),
        Value::Int(8),
        "the module still works"
    );
    let Value::Array(stats) = cmd(&mut c, &["WASM.STATS"]).unwrap() else {
        panic!()
    };
    let errors = stats.chunks(2).find(|p| p[0] == bulk("errors")).unwrap()[1].clone();
    assert_eq!(errors, Value::Int(5));
}

#[test]
fn the_same_call_uses_the_same_fuel_every_time_and_on_a_fresh_server() {
    let fuel_of_calls = || {
        let server = Server::start(&[]);
        let mut c = server.client();
        load(&mut c, "rw", "probe.wat", &["PERMISSIONS", "READ", "WRITE"]).unwrap();
        let mut per_call = Vec::new();
        let mut previous = 0;
        for _ in 0..3 {
            cmd(&mut c, &["SET", "{t}a", "5"]).unwrap();
            assert_eq!(
                cmd(&mut c, &["WASM.CALL", "rw.incr", "KEYS", "{t}a"]).unwrap(),
                Value::Int(6)
            );
            let Value::Int(total) =
                field(&cmd(&mut c, &["WASM.INFO", "rw"]).unwrap(), "fuel_total")
            else {
                panic!()
            };
            per_call.push(total - previous);
            previous = total;
        }
        per_call
    };
    let first = fuel_of_calls();
    assert!(first[0] > 0);
    assert!(first.iter().all(|&f| f == first[0]), "{first:?}");
    assert_eq!(fuel_of_calls(), first);
}

/// Calls keep running while the module is replaced under them: every call is answered by one
/// whole version (8 from `probe.wat`, 2 from `other.wat`), never an error or a mix. The test
/// only counts when calls overlapped the replaces: the callers are calling before the first
/// REPLACE, and the replaces go on until every caller has been answered by both versions.
#[test]
fn replace_swaps_atomically_while_calls_run() {
    const CALLERS: usize = 2;
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "m", "probe.wat", &[]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let seen: Vec<Arc<std::sync::Mutex<std::collections::BTreeSet<i64>>>> =
        (0..CALLERS).map(|_| Arc::default()).collect();
    let callers: Vec<_> = seen
        .iter()
        .map(|seen| {
            let (stop, calls, seen, mut k) =
                (stop.clone(), calls.clone(), seen.clone(), server.client());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let v: i64 = redis::cmd("WASM.CALL").arg("m").query(&mut k).unwrap();
                    seen.lock().unwrap().insert(v);
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || calls.load(Ordering::Relaxed)
            >= CALLERS as u64),
        "the callers never called"
    );
    let everyone_saw_both = || {
        seen.iter()
            .all(|s| *s.lock().unwrap() == std::collections::BTreeSet::from([2, 8]))
    };
    let mut replaces = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !everyone_saw_both() && std::time::Instant::now() < deadline {
        let file = if replaces % 2 == 0 {
            "other.wat"
        } else {
            "probe.wat"
        };
        assert_eq!(load(&mut c, "m", file, &["REPLACE"]).unwrap(), Value::Okay);
        replaces += 1;
        // Give the callers a few calls on this version.
        let before = calls.load(Ordering::Relaxed);
        wait_until(Duration::from_secs(5), || {
            calls.load(Ordering::Relaxed) >= before + 4
        });
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller
            .join()
            .expect("a call failed while the module was replaced");
    }
    for (i, seen) in seen.iter().enumerate() {
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            std::collections::BTreeSet::from([2, 8]),
            "caller {i} saw {seen:?} over {replaces} replaces"
        );
    }
    let last = if replaces % 2 == 1 { 2 } else { 8 };
    assert_eq!(cmd(&mut c, &["WASM.CALL", "m"]).unwrap(), Value::Int(last));
}

/// A read-only call that spins holds no lock while its guest runs, and runs off the async
/// workers: other clients' writes and reads are answered while it is still running. The
/// requests are sent only once the call is running (its guest has logged "spinning" and its
/// caller has no answer yet), and the call is checked to be still running after the answers,
/// so the test cannot pass by ordering alone.
#[test]
fn a_long_read_only_call_does_not_hold_up_other_clients() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "probe", "probe.wat", &[]).unwrap();
    cmd(&mut c, &["CONFIG", "SET", "wasm-max-fuel", "1000000000000"]).unwrap();
    cmd(&mut c, &["CONFIG", "SET", "wasm-max-duration-ms", "5000"]).unwrap();
    let mut s = server.client();
    let spinner = std::thread::spawn(move || {
        cmd(&mut s, &["WASM.CALL_RO", "probe.spin"]).map_err(|e| error_line(&e))
    });
    let running = wait_until(Duration::from_secs(10), || {
        server
            .log()
            .iter()
            .any(|l| l.contains("spinning") && l.contains("module=probe"))
    });
    assert!(running, "the spinning call never started");
    assert!(
        !spinner.is_finished(),
        "the call ended before the write could be sent; raise wasm-max-duration-ms"
    );
    let mut other = server.client();
    assert_eq!(
        cmd(&mut other, &["SET", "after", "1"]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        cmd(&mut other, &["GET", "after"]).unwrap(),
        Value::BulkString(b"1".to_vec())
    );
    assert!(
        !spinner.is_finished(),
        "the write and the read were answered only once the call had ended"
    );
    assert_eq!(spinner.join().unwrap(), Err("ERR wasm: timeout".to_owned()));
}

/// With `--threads 2`, a read-only call of a module whose calls have been long runs on the
/// helper thread (`src/blocking.rs`), with the same outcome as on the async worker; with
/// `--threads 1` there is no helper and every call runs on the worker.
#[test]
fn long_read_only_calls_go_to_a_helper_thread_when_there_is_one() {
    for threads in [1, 2] {
        let server = Server::start(&["--threads", &threads.to_string()]);
        let mut c = server.client();
        load(&mut c, "probe", "probe.wat", &[]).unwrap();
        cmd(&mut c, &["CONFIG", "SET", "wasm-max-fuel", "1000000000000"]).unwrap();
        cmd(&mut c, &["CONFIG", "SET", "wasm-max-duration-ms", "50"]).unwrap();
        let int = |c: &mut redis::Connection, name| match stat(c, name) {
            Value::Int(n) => n,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(int(&mut c, "helper_threads"), threads - 1);
        // The first call makes the module's calls look long; the next ones are handed over.
        for _ in 0..4 {
            let spun = cmd(&mut c, &["WASM.CALL_RO", "probe.spin"]).map_err(|e| error_line(&e));
            assert_eq!(spun, Err("ERR wasm: timeout".to_owned()));
        }
        let cmd_ok = cmd(&mut c, &["FCALL_RO", "probe.nkeys", "0"]);
        assert!(cmd_ok.is_ok(), "{cmd_ok:?}");
        let helped = int(&mut c, "helper_calls");
        if threads == 1 {
            assert_eq!(helped, 0);
        } else {
            assert!(
                helped >= 3,
                "{helped} of the 3 long calls ran on the helper"
            );
        }
    }
}

/// A write call runs on every replica at apply, where only fuel ends it: however high
/// `wasm-max-fuel` is set, a write call starts with at most the cluster's ceiling, so an
/// endless loop ends (out of fuel) instead of holding up the log for good.
#[test]
fn an_endless_write_call_ends_by_the_fuel_ceiling() {
    let (_server, mut c) = probe_server(&[]);
    cmd(
        &mut c,
        &["CONFIG", "SET", "wasm-max-fuel", "1000000000000000"],
    )
    .unwrap();
    assert_eq!(
        err(&mut c, &["WASM.CALL", "probe.spin"]),
        "ERR wasm: out of fuel"
    );
    assert_eq!(cmd(&mut c, &["SET", "k", "v"]).unwrap(), Value::Okay);
}

/// A write call saves what it overwrites so that it can be undone; the copy of a large value
/// costs fuel by its size, so deleting a huge hash is not the price of deleting a string.
#[test]
fn saving_a_large_value_for_undo_costs_fuel_by_its_size() {
    let (_server, mut c) = probe_server(&[]);
    // 100,000 fields: 1.6 million fuel to save, more than the 1,000,000 a call gets.
    let mut pipe = redis::pipe();
    for chunk in 0..100 {
        let mut hset = redis::cmd("HSET");
        hset.arg("{t}a");
        for i in 0..1000 {
            hset.arg(format!("f{chunk}-{i}")).arg("v");
        }
        pipe.add_command(hset).ignore();
    }
    pipe.query::<()>(&mut c).unwrap();
    assert_eq!(
        err(&mut c, &["WASM.CALL", "probe.del"]),
        "ERR wasm: out of fuel"
    );
    assert_eq!(cmd(&mut c, &["HLEN", "{t}a"]).unwrap(), Value::Int(100_000));
    // A string of the same key is cheap to delete.
    cmd(&mut c, &["DEL", "{t}a"]).unwrap();
    cmd(&mut c, &["SET", "{t}a", "v"]).unwrap();
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.del"]).unwrap(),
        Value::Int(1)
    );
}

/// A module whose `main` runs `command` through `call` `times` times.
fn call_loop(command: &[&str], times: u32) -> String {
    let mut encoded = (command.len() as u32).to_le_bytes().to_vec();
    for word in command {
        encoded.extend_from_slice(&(word.len() as u32).to_le_bytes());
        encoded.extend_from_slice(word.as_bytes());
    }
    let data: String = encoded.iter().map(|b| format!("\\{b:02x}")).collect();
    format!(
        r#"(module
  (import "ferrite" "call" (func $call (param i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{data}")
  (global $heap (mut i32) (i32.const 1024))
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "main") (param i32 i32) (result i64)
    (local $i i32)
    (loop $again
      (drop (call $call (i32.const 0) (i32.const {len})))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const {times}))))
    (i64.const 0)))"#,
        len = encoded.len()
    )
}

/// A command that walks a whole value costs fuel by the value's size every time it runs, not
/// only when the value is first saved for undo: 2,000 LREMs of a 10,000-element list are 20
/// million comparisons, which 5 million fuel does not pay for.
#[test]
fn a_command_that_walks_a_whole_value_costs_fuel_by_its_size_each_time() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let module = call_loop(&["LREM", "{t}l", "0", "x"], 2000);
    let words = ["WASM.LOAD", "lrem", &module, "PERMISSIONS", "READ", "WRITE"];
    assert_eq!(cmd(&mut c, &words).unwrap(), Value::Okay);
    let mut rpush = redis::cmd("RPUSH");
    rpush.arg("{t}l");
    for i in 0..10_000 {
        rpush.arg(format!("e{i}"));
    }
    rpush.query::<()>(&mut c).unwrap();
    cmd(&mut c, &["CONFIG", "SET", "wasm-max-fuel", "5000000"]).unwrap();
    assert_eq!(
        err(&mut c, &["WASM.CALL", "lrem", "KEYS", "{t}l"]),
        "ERR wasm: out of fuel"
    );
    assert_eq!(cmd(&mut c, &["LLEN", "{t}l"]).unwrap(), Value::Int(10_000));
    // A short list costs little: the same 2,000 LREMs of 10 elements fit.
    cmd(&mut c, &["DEL", "{t}l"]).unwrap();
    cmd(
        &mut c,
        &[
            "RPUSH", "{t}l", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
        ],
    )
    .unwrap();
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "lrem", "KEYS", "{t}l"]).unwrap(),
        Value::Int(0)
    );
}

/// The zeros SETRANGE writes up to its offset cost fuel like bytes moved: a call cannot make
/// a 100 MB string for the price of one command.
#[test]
fn setrange_far_out_costs_fuel_by_the_bytes_it_adds() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let far = call_loop(&["SETRANGE", "{t}s", "100000000", "x"], 1);
    let near = call_loop(&["SETRANGE", "{t}s", "1000", "x"], 1);
    for (name, module) in [("far", &far), ("near", &near)] {
        let words = ["WASM.LOAD", name, module, "PERMISSIONS", "READ", "WRITE"];
        assert_eq!(cmd(&mut c, &words).unwrap(), Value::Okay);
    }
    assert_eq!(
        err(&mut c, &["WASM.CALL", "far", "KEYS", "{t}s"]),
        "ERR wasm: out of fuel"
    );
    assert_eq!(cmd(&mut c, &["EXISTS", "{t}s"]).unwrap(), Value::Int(0));
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "near", "KEYS", "{t}s"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(cmd(&mut c, &["STRLEN", "{t}s"]).unwrap(), Value::Int(1001));
}

/// A write call first runs at apply in a time slice on the async worker; one that needs
/// longer (this one spins for tens of milliseconds after its INCRBY) is undone and run again
/// off the worker: it completes, and its write counts once.
#[test]
fn a_write_call_longer_than_its_time_slice_at_apply_counts_once() {
    let (_server, mut c) = probe_server(&[]);
    let write = ["PERMISSIONS", "READ", "WRITE"];
    load(&mut c, "slow", "slow_incr.wat", &write).unwrap();
    cmd(&mut c, &["CONFIG", "SET", "wasm-max-fuel", "1000000000"]).unwrap();
    for expected in 1..=3 {
        let reply = cmd(&mut c, &["FCALL", "slow.incr_slowly", "1", "{t}a"]);
        assert_eq!(reply, Ok(Value::Int(expected)));
    }
    assert_eq!(
        cmd(&mut c, &["GET", "{t}a"]),
        Ok(Value::BulkString(b"3".to_vec()))
    );
    // Each ran past its slice (else this tested nothing); a short write call does not.
    assert_eq!(stat(&mut c, "apply_calls_past_slice"), Value::Int(3));
    assert_eq!(
        cmd(&mut c, &["FCALL", "probe.incr", "1", "{t}a"]),
        Ok(Value::Int(4))
    );
    assert_eq!(stat(&mut c, "apply_calls_past_slice"), Value::Int(3));
}
