//! Loading modules and calling them: keys, arguments, replies, permissions, atomic writes,
//! slots, and the clients that find a function's keys.

use super::*;

#[test]
fn modules_load_list_describe_and_unload() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(
        load(&mut c, "probe", "probe.wat", &[]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        err(&mut c, &["WASM.LOAD", "probe", "(module)"]),
        "ERR wasm: module 'probe' already exists (use REPLACE)"
    );
    let info = cmd(&mut c, &["WASM.INFO", "probe"]).unwrap();
    assert_eq!(field(&info, "name"), bulk("probe"));
    let Value::BulkString(sha) = field(&info, "sha256") else {
        panic!()
    };
    assert_eq!(sha.len(), 64);
    assert_eq!(
        field(&info, "size"),
        Value::Int(module("probe.wat").len() as i64)
    );
    let Value::Array(exports) = field(&info, "exports") else {
        panic!()
    };
    assert!(exports.contains(&bulk("main")) && exports.contains(&bulk("incr")));
    assert!(
        !exports.contains(&bulk("alloc")),
        "alloc is not an entry point"
    );
    assert_eq!(
        field(&info, "permissions"),
        Value::Array(vec![bulk("READ")])
    );
    for name in [
        "loaded_at",
        "call_count",
        "error_count",
        "fuel_total",
        "avg_duration_us",
        "p99_duration_us",
        "last_error",
    ] {
        field(&info, name);
    }
    let Value::Array(listed) = cmd(&mut c, &["WASM.LIST"]).unwrap() else {
        panic!()
    };
    assert_eq!(listed.len(), 1);
    let Value::Array(with_stats) = cmd(&mut c, &["WASM.LIST", "WITHSTATS"]).unwrap() else {
        panic!()
    };
    assert_eq!(field(&with_stats[0], "call_count"), Value::Int(0));
    let text: String = redis::cmd("INFO").arg("wasm").query(&mut c).unwrap();
    assert!(text.contains("wasm_modules:1"), "{text}");
    assert_eq!(cmd(&mut c, &["WASM.UNLOAD", "probe"]).unwrap(), Value::Okay);
    assert_eq!(
        err(&mut c, &["WASM.CALL", "probe"]),
        "ERR wasm: no such module 'probe'"
    );
    assert_eq!(
        err(&mut c, &["WASM.UNLOAD", "probe"]),
        "ERR wasm: no such module 'probe'"
    );
    assert_eq!(cmd(&mut c, &["WASM.LIST"]).unwrap(), Value::Array(vec![]));
}

#[test]
fn calls_pass_keys_and_args_and_return_replies() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(
        &mut c,
        "probe",
        "probe.wat",
        &["PERMISSIONS", "READ", "WRITE"],
    )
    .unwrap();
    // Input: u32 nkeys, (u32 len, "k"), u32 nargs, (u32 len, "xyz") = 4 + 5 + 4 + 7 bytes.
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe", "KEYS", "k", "ARGS", "xyz"]).unwrap(),
        Value::Int(20)
    );
    assert_eq!(
        cmd(&mut c, &["FCALL", "probe", "1", "k", "xyz"]).unwrap(),
        Value::Int(20)
    );
    assert_eq!(
        cmd(
            &mut c,
            &["FCALL_RO", "probe.nkeys", "2", "{t}a", "{t}b", "x"]
        )
        .unwrap(),
        Value::Int(2)
    );
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.nkeys", "ARGS", "KEYS"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(cmd(&mut c, &["WASM.CALL", "probe"]).unwrap(), Value::Int(8));
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.status"]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.log"]).unwrap(),
        Value::Int(7)
    );
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.get"]).unwrap(),
        Value::Int(-1)
    );
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.set"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(cmd(&mut c, &["GET", "{t}a"]).unwrap(), bulk("new"));
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.get"]).unwrap(),
        Value::Int(3)
    );
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.get_via_call"]).unwrap(),
        bulk("new")
    );
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.del"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.del"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.incr"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        cmd(&mut c, &["FCALL", "probe.incr", "1", "{t}a"]).unwrap(),
        Value::Int(2)
    );
    assert_eq!(
        err(&mut c, &["WASM.CALL", "probe.bad_reply"]),
        "ERR wasm: malformed reply: unknown reply tag 9"
    );
    assert_eq!(
        err(&mut c, &["WASM.CALL", "probe.nope"]),
        "ERR wasm: module 'probe' has no entry point 'nope'"
    );
    assert_eq!(
        err(&mut c, &["WASM.CALL", "probe", "BOGUS"]),
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut c, &["FCALL", "probe", "3", "k"]),
        "ERR Number of keys can't be greater than number of args"
    );
    assert_eq!(
        err(&mut c, &["FCALL", "probe", "-1"]),
        "ERR Number of keys can't be negative"
    );
    assert_eq!(
        err(&mut c, &["FCALL", "probe", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut c, &["FCALL", "probe"]),
        "ERR wrong number of arguments for 'fcall' command"
    );
    // A data error met by get_key ends the call with the command's own error.
    cmd(&mut c, &["DEL", "{t}a"]).unwrap();
    cmd(&mut c, &["RPUSH", "{t}a", "x"]).unwrap();
    assert_eq!(
        err(&mut c, &["WASM.CALL", "probe.get"]),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
}

#[test]
fn writes_need_the_write_permission_and_a_write_call() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "ro", "probe.wat", &[]).unwrap();
    load(&mut c, "rw", "probe.wat", &["PERMISSIONS", "read", "write"]).unwrap();
    load(&mut c, "wo", "probe.wat", &["PERMISSIONS", "WRITE"]).unwrap();
    assert_eq!(
        err(&mut c, &["WASM.CALL", "ro.set"]),
        "ERR wasm: permission denied: write"
    );
    assert_eq!(
        err(&mut c, &["WASM.CALL", "ro.incr"]),
        "ERR wasm: permission denied: write"
    );
    assert_eq!(
        err(&mut c, &["WASM.CALL_RO", "rw.set"]),
        "ERR wasm: write in a read-only call"
    );
    assert_eq!(
        err(&mut c, &["FCALL_RO", "rw.del", "0"]),
        "ERR wasm: write in a read-only call"
    );
    assert_eq!(
        err(&mut c, &["WASM.CALL", "wo.get"]),
        "ERR wasm: permission denied: read"
    );
    assert_eq!(cmd(&mut c, &["EXISTS", "{t}a"]).unwrap(), Value::Int(0));
    assert_eq!(
        err(
            &mut c,
            &["WASM.LOAD", "net", "(module)", "PERMISSIONS", "NETWORK"]
        ),
        "ERR wasm: permission NETWORK is not allowed by [wasm.security]"
    );
    assert_eq!(
        err(
            &mut c,
            &["WASM.LOAD", "fs", "(module)", "PERMISSIONS", "FILESYSTEM"]
        ),
        "ERR wasm: permission FILESYSTEM is not allowed by [wasm.security]"
    );
    assert_eq!(
        err(
            &mut c,
            &["WASM.LOAD", "x", "(module)", "PERMISSIONS", "ROOT"]
        ),
        "ERR wasm: unknown permission 'ROOT'"
    );
    assert_eq!(
        err(&mut c, &["WASM.CALL", "rw.flushall"]),
        "ERR wasm: command not allowed from a function: flushall"
    );
}

#[test]
fn a_failed_call_leaves_no_partial_writes() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "rw", "probe.wat", &["PERMISSIONS", "READ", "WRITE"]).unwrap();
    // Absent before: still absent after the trap.
    assert_eq!(
        err(&mut c, &["WASM.CALL", "rw.set_then_trap", "KEYS", "{t}a"]),
        "ERR wasm: trap: wasm `unreachable` instruction executed"
    );
    assert_eq!(cmd(&mut c, &["EXISTS", "{t}a"]).unwrap(), Value::Int(0));
    // Present before, with a TTL: value and TTL restored.
    cmd(&mut c, &["SET", "{t}a", "old", "EX", "1000"]).unwrap();
    assert!(err(&mut c, &["WASM.CALL", "rw.set_then_trap"]).starts_with("ERR wasm: trap"));
    assert_eq!(cmd(&mut c, &["GET", "{t}a"]).unwrap(), bulk("old"));
    assert!(matches!(cmd(&mut c, &["TTL", "{t}a"]).unwrap(), Value::Int(t) if t > 990));
    // Running out of fuel after a write also discards it.
    cmd(&mut c, &["SET", "{t}a", "old"]).unwrap();
    assert_eq!(
        err(&mut c, &["WASM.CALL", "rw.flood"]),
        "ERR wasm: out of fuel"
    );
    assert_eq!(cmd(&mut c, &["GET", "{t}a"]).unwrap(), bulk("old"));
    let info = cmd(&mut c, &["WASM.INFO", "rw"]).unwrap();
    assert_eq!(field(&info, "error_count"), Value::Int(3));
    assert_eq!(field(&info, "last_error"), bulk("ERR wasm: out of fuel"));
}

#[test]
fn keys_outside_the_call_slot_are_refused() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "rw", "probe.wat", &["PERMISSIONS", "READ", "WRITE"]).unwrap();
    assert_eq!(
        err(&mut c, &["WASM.CALL", "rw.other_slot", "KEYS", "{t}a"]),
        "ERR wasm: key 'other' is not in this call's slot"
    );
    assert_eq!(
        err(&mut c, &["WASM.CALL", "rw.set", "KEYS", "elsewhere"]),
        "ERR wasm: key '{t}a' is not in this call's slot"
    );
    // With no declared keys the first key touched fixes the slot.
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "rw.other_slot"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(cmd(&mut c, &["EXISTS", "other"]).unwrap(), Value::Int(1));
}

#[test]
fn cluster_clients_can_find_function_keys() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(
        cmd(
            &mut c,
            &["COMMAND", "GETKEYS", "FCALL", "f", "2", "a", "b", "arg"]
        )
        .unwrap(),
        Value::Array(vec![bulk("a"), bulk("b")])
    );
    assert_eq!(
        cmd(
            &mut c,
            &[
                "COMMAND",
                "GETKEYS",
                "WASM.CALL",
                "f",
                "KEYS",
                "a",
                "b",
                "ARGS",
                "x"
            ]
        )
        .unwrap(),
        Value::Array(vec![bulk("a"), bulk("b")])
    );
    let Value::Array(info) = cmd(&mut c, &["COMMAND", "INFO", "fcall", "wasm.call"]).unwrap()
    else {
        panic!()
    };
    for entry in info {
        let Value::Array(fields) = entry else {
            panic!()
        };
        assert_eq!(fields.len(), 10);
        let Value::Array(flags) = &fields[2] else {
            panic!()
        };
        assert!(
            flags.contains(&Value::SimpleString("movablekeys".into())),
            "{flags:?}"
        );
    }
}

#[test]
fn redis_cli_loads_a_module_file_with_x() {
    let server = Server::start(&[]);
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wasm/modules/probe.wat");
    let cli =
        which("redis-cli").expect("redis-cli must be installed (the test command installs it)");
    let out = std::process::Command::new(&cli)
        .args(["-p", &server.port.to_string(), "-x", "WASM.LOAD", "probe"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    let out = std::process::Command::new(&cli)
        .args([
            "-p",
            &server.port.to_string(),
            "FCALL",
            "probe",
            "1",
            "k",
            "xyz",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "20");
}

/// Calls `main` of the probe module `name` 10,000 times, pipelined by the hundred, as
/// read-only and as write calls in turn by both command families, and checks every call
/// found nothing an earlier one left (its answer is a bit mask of what it found; `describe`
/// names the module's file and state for the failure message).
fn call_10000_times(
    c: &mut redis::Connection,
    name: &str,
    describe: impl Fn(&mut redis::Connection) -> String,
) {
    let main = format!("{name}.main");
    let calls: [Vec<&str>; 4] = [
        vec!["WASM.CALL_RO", name],
        vec!["WASM.CALL", name],
        vec!["FCALL_RO", &main, "0"],
        vec!["FCALL", &main, "0"],
    ];
    for batch in 0..100 {
        let mut pipe = redis::pipe();
        for i in 0..100 {
            let call = &calls[(batch + i) % calls.len()];
            pipe.cmd(call[0]).arg(&call[1..]);
        }
        let answers: Vec<i64> = pipe.query(c).unwrap();
        for (i, found) in answers.into_iter().enumerate() {
            assert_eq!(
                found,
                0,
                "call {} ({:?}) found what an earlier call left (bit mask in {})",
                batch * 100 + i,
                calls[(batch + i) % calls.len()],
                describe(c)
            );
        }
    }
}

#[test]
fn every_call_starts_from_a_pristine_instance() {
    // 10,000 calls of a module that reports what an earlier call left behind in its globals,
    // data, stack, heap and grown memory (`modules/pristine.wat`; a unit test in
    // `src/wasm/pool.rs` shows that it notices each), as read-only and as write calls in turn,
    // by both command families, on pooled slots that are reset in place between calls. Its
    // calls grow memory, so the module moves from guard pages to explicit bounds checks
    // early on (`GROWING_CALLS` in `src/wasm/mod.rs`): both kinds of code are checked, and a
    // read past the memory's end traps alike on both, though with explicit checks the slot
    // stays accessible beyond it.
    let server = Server::start(&[]);
    let mut c = server.client();
    load(
        &mut c,
        "pristine",
        "pristine.wat",
        &["PERMISSIONS", "READ", "WRITE"],
    )
    .unwrap();
    let checks = |c: &mut redis::Connection| -> String {
        let info: std::collections::HashMap<String, Value> =
            redis::cmd("WASM.INFO").arg("pristine").query(c).unwrap();
        match &info["memory_checks"] {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("memory_checks: {other:?}"),
        }
    };
    assert_eq!(checks(&mut c), "guard-pages");
    // Inside the room a growing module gets (`src/wasm/headroom.rs`) a read past the size the
    // guest sees answers zero, on a new instance as on any other.
    let inside = ["FCALL_RO", "pristine.inside", "0"];
    assert_eq!(cmd(&mut c, &inside).unwrap(), Value::Int(0));
    let beyond = ["FCALL_RO", "pristine.beyond", "0"];
    let trap_on_guard_pages = err(&mut c, &beyond);
    assert!(
        trap_on_guard_pages.contains("out of bounds"),
        "{trap_on_guard_pages}"
    );
    call_10000_times(&mut c, "pristine", |c| {
        format!("pristine.wat, memory checks {}", checks(c))
    });
    assert_eq!(checks(&mut c), "explicit");
    for _ in 0..10 {
        // A call that grows the slot's memory, then a read just past the new instance's end.
        assert_eq!(
            cmd(&mut c, &["FCALL_RO", "pristine.main", "0"]).unwrap(),
            Value::Int(0)
        );
        assert_eq!(err(&mut c, &beyond), trap_on_guard_pages);
        assert_eq!(cmd(&mut c, &inside).unwrap(), Value::Int(0));
    }
}

#[test]
fn calls_on_kept_instances_start_from_a_pristine_instance() {
    // A module whose instances are kept between calls and reset (`src/wasm/reuse.rs`), called
    // 10,000 times as read-only and as write calls in turn: every call must find nothing an
    // earlier one left in its globals, data segments, stack, heap, the top of its memory or the
    // page it grew into (within the room `src/wasm/headroom.rs` gives, so it is still kept)
    // (`modules/pristine_kept.wat`; a unit test in `src/wasm/reuse.rs` shows that it notices
    // when the memory is not reset), and nearly every call must have run on a kept instance.
    let server = Server::start(&[]);
    let mut c = server.client();
    let file = "pristine_kept.wat";
    load(&mut c, "kept", file, &["PERMISSIONS", "READ", "WRITE"]).unwrap();
    let kept = |c: &mut redis::Connection| match stat(c, "pool_calls_on_kept_instances") {
        Value::Int(n) => n,
        other => panic!("pool_calls_on_kept_instances: {other:?}"),
    };
    let before = kept(&mut c);
    call_10000_times(&mut c, "kept", |_| file.to_owned());
    let reused = kept(&mut c) - before;
    assert!(
        reused >= 9_000,
        "{reused} of 10,000 calls ran on kept instances"
    );
}

#[test]
fn pipelined_write_calls_share_log_entries_and_answer_in_order() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "rw", "probe.wat", &["PERMISSIONS", "READ", "WRITE"]).unwrap();
    let entries = |c: &mut redis::Connection| -> i64 {
        let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("raft_log_entries_written:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let before = entries(&mut c);
    // Write calls by both command families, each followed by reads that must see it, and
    // refusals in between that must not disturb the order.
    let mut pipe = redis::pipe();
    for _ in 0..100 {
        pipe.cmd("FCALL").arg("rw.incr").arg(1).arg("{t}a");
        pipe.cmd("WASM.CALL").arg("rw.incr").arg("KEYS").arg("{t}a");
        pipe.cmd("FCALL").arg("rw.nothing").arg(1).arg("{t}a");
        pipe.cmd("FCALL")
            .arg("rw.incr")
            .arg(2)
            .arg("{t}a")
            .arg("other");
        pipe.cmd("FCALL_RO")
            .arg("rw.get_via_call")
            .arg(1)
            .arg("{t}a");
        pipe.cmd("GET").arg("{t}a");
    }
    let replies: Vec<Value> = pipe.ignore_errors().query(&mut c).unwrap();
    for (round, r) in replies.chunks(6).enumerate() {
        let n = 2 * round as i64;
        assert_eq!(r[0], Value::Int(n + 1), "round {round}");
        assert_eq!(r[1], Value::Int(n + 2), "round {round}");
        assert!(
            matches!(&r[2], Value::ServerError(e) if e.to_string().contains("nothing")),
            "round {round}: {:?}",
            r[2]
        );
        assert!(
            matches!(&r[3], Value::ServerError(e) if e.code() == "CROSSSLOT"),
            "round {round}: {:?}",
            r[3]
        );
        assert_eq!(r[4], bulk(&(n + 2).to_string()), "round {round}");
        assert_eq!(r[5], bulk(&(n + 2).to_string()), "round {round}");
    }
    // The 200 write calls were queued without waiting for each other's replies: between the
    // reads that split them, each round's two share entries (one per call if each waited).
    let written = entries(&mut c) - before;
    assert!(
        written < 200,
        "{written} log entries for 200 pipelined write calls"
    );
}

#[test]
fn wasm_info_says_whether_a_modules_instances_are_kept() {
    // A module whose state is its memory and numeric globals is kept between calls; one with
    // a start function is made for each call (`src/wasm/reuse.rs`).
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "kept", "pristine_kept.wat", &[]).unwrap();
    let with_start = r#"(module (memory (export "memory") 1) (func $s) (start $s)
        (func (export "alloc") (param i32) (result i32) (i32.const 0))
        (func (export "main") (param i32 i32) (result i64) (i64.const 1)))"#;
    cmd(&mut c, &["WASM.LOAD", "fresh", with_start]).unwrap();
    let instances = |c: &mut redis::Connection, name: &str| -> String {
        let info: std::collections::HashMap<String, Value> =
            redis::cmd("WASM.INFO").arg(name).query(c).unwrap();
        match &info["instances"] {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("instances: {other:?}"),
        }
    };
    assert_eq!(instances(&mut c, "kept"), "kept");
    assert_eq!(instances(&mut c, "fresh"), "per-call");
    assert_eq!(
        cmd(&mut c, &["FCALL_RO", "fresh.main", "0"]).unwrap(),
        Value::Int(1)
    );
}
