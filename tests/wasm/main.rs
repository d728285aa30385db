//! Integration tests of WebAssembly functions against the real server: loading, calling,
//! permissions, atomicity, limits and hostile modules. The modules are hand-written WAT in
//! `modules/`, which also shows that the ABI needs no SDK.

#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::Value;

use support::{Server, cmd, err};

fn module(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/wasm/modules")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(
    c: &mut redis::Connection,
    name: &str,
    file: &str,
    extra: &[&str],
) -> redis::RedisResult<Value> {
    let mut command = redis::cmd("WASM.LOAD");
    command.arg(name).arg(module(file));
    for word in extra {
        command.arg(*word);
    }
    command.query(c)
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

/// The named field of a RESP2 flat map reply.
fn field(reply: &Value, name: &str) -> Value {
    let Value::Array(items) = reply else {
        panic!("not an array: {reply:?}")
    };
    items
        .chunks(2)
        .find(|pair| pair[0] == bulk(name))
        .map(|pair| pair[1].clone())
        .unwrap_or_else(|| panic!("no field {name} in {reply:?}"))
}

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
fn hostile_modules_get_their_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferrite.toml");
    std::fs::write(&config, "[wasm]\nmax_module_size = 65536\n").unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let mut c = server.client();
    load(
        &mut c,
        "probe",
        "probe.wat",
        &["PERMISSIONS", "READ", "WRITE"],
    )
    .unwrap();

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
        load(&mut c, "bad", "forbidden_import.wat", &[]).map_err(|e| support::error_line(&e)),
        Err("ERR wasm: invalid module: forbidden import 'env.abort'".to_owned())
    );
    assert_eq!(
        load(&mut c, "bad", "no_alloc.wat", &[]).map_err(|e| support::error_line(&e)),
        Err("ERR wasm: invalid module: missing export 'alloc'".to_owned())
    );
    let huge = vec![b' '; 70_000];
    let too_big: redis::RedisResult<Value> =
        redis::cmd("WASM.LOAD").arg("huge").arg(huge).query(&mut c);
    assert_eq!(
        too_big.map_err(|e| support::error_line(&e)),
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

#[test]
fn replace_swaps_atomically_while_calls_run() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "m", "probe.wat", &[]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, url) = (stop.clone(), server.url());
            std::thread::spawn(move || {
                let mut k = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let v: i64 = redis::cmd("WASM.CALL").arg("m").query(&mut k).unwrap();
                    seen.insert(v);
                }
                seen
            })
        })
        .collect();
    for i in 0..20 {
        let file = if i % 2 == 0 { "other.wat" } else { "probe.wat" };
        assert_eq!(load(&mut c, "m", file, &["REPLACE"]).unwrap(), Value::Okay);
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        let seen = caller.join().unwrap();
        assert!(seen.iter().all(|v| *v == 8 || *v == 2), "{seen:?}");
    }
    assert_eq!(cmd(&mut c, &["WASM.CALL", "m"]).unwrap(), Value::Int(8));
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
    let cli = support::which("redis-cli")
        .expect("redis-cli must be installed (the test command installs it)");
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

#[test]
fn a_long_read_only_call_does_not_stall_other_clients_forever() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "probe", "probe.wat", &[]).unwrap();
    cmd(&mut c, &["CONFIG", "SET", "wasm-max-fuel", "100000000000"]).unwrap();
    cmd(&mut c, &["CONFIG", "SET", "wasm-max-duration-ms", "500"]).unwrap();
    let url = server.url();
    let spinner = std::thread::spawn(move || {
        let mut s = redis::Client::open(url).unwrap().get_connection().unwrap();
        cmd(&mut s, &["WASM.CALL_RO", "probe.spin"]).map_err(|e| support::error_line(&e))
    });
    // The call holds the keyspace; other clients are answered once it is cut off.
    let mut other = server.client();
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        cmd(&mut other, &["SET", "after", "1"]).unwrap(),
        Value::Okay
    );
    assert_eq!(spinner.join().unwrap(), Err("ERR wasm: timeout".to_owned()));
}

#[test]
fn modules_in_module_dir_load_at_start_with_their_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let modules = dir.path().join("modules");
    std::fs::create_dir(&modules).unwrap();
    std::fs::write(modules.join("probe.wat"), module("probe.wat")).unwrap();
    std::fs::write(
        modules.join("probe.toml"),
        "permissions = [\"READ\", \"WRITE\"]\n",
    )
    .unwrap();
    std::fs::write(modules.join("plain.wat"), module("other.wat")).unwrap();
    std::fs::write(modules.join("notes.txt"), "ignored").unwrap();
    let config = dir.path().join("ferrite.toml");
    std::fs::write(
        &config,
        format!("[wasm]\nmodule_dir = {:?}\n", modules.display().to_string()),
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let mut c = server.client();
    let Value::Array(listed) = cmd(&mut c, &["WASM.LIST"]).unwrap() else {
        panic!()
    };
    assert_eq!(listed.len(), 2);
    assert_eq!(field(&listed[0], "name"), bulk("plain"));
    assert_eq!(
        field(&listed[1], "permissions"),
        Value::Array(vec![bulk("READ"), bulk("WRITE")])
    );
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.set"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(cmd(&mut c, &["WASM.CALL", "plain"]).unwrap(), Value::Int(2));

    // A module that does not load stops start-up, naming the file. (Its data dir is the
    // temporary one: the node opens its Raft log before it preloads.)
    std::fs::write(modules.join("broken.wat"), "(module").unwrap();
    let data = dir.path().join("broken-data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["--port", "0", "--config", config.to_str().unwrap()])
        .args(["--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.wat"), "{stderr}");
}

/// The named field of WASM.STATS.
fn stat(c: &mut redis::Connection, name: &str) -> Value {
    field(&cmd(c, &["WASM.STATS"]).unwrap(), name)
}

#[test]
fn compiled_code_is_cached_on_disk_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    {
        let server = Server::start(&["--data-dir", data]);
        let mut c = server.client();
        load(&mut c, "probe", "probe.wat", &[]).unwrap();
        // Compiled once to validate it before it enters the log; applying the entry then finds
        // the code in the cache.
        assert_eq!(stat(&mut c, "compile_cache_misses"), Value::Int(1));
        assert_eq!(stat(&mut c, "compile_cache_hits"), Value::Int(1));
    }
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("data/wasm-cache"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1);
    // The module is durable: a restart brings it back from the Raft log, from cached code.
    let server = Server::start(&["--data-dir", data]);
    let mut c = server.client();
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe"]).unwrap(),
        Value::Int(8),
        "the module survived the restart"
    );
    assert_eq!(
        stat(&mut c, "compile_cache_hits"),
        Value::Int(1),
        "a restart does not recompile"
    );
    assert_eq!(stat(&mut c, "compile_cache_misses"), Value::Int(0));
    // A damaged cache file is recompiled, not trusted.
    for entry in std::fs::read_dir(dir.path().join("data/wasm-cache")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    load(&mut c, "again", "probe.wat", &[]).unwrap();
    assert_eq!(stat(&mut c, "compile_cache_misses"), Value::Int(1));
    assert_eq!(cmd(&mut c, &["WASM.CALL", "again"]).unwrap(), Value::Int(8));
}
