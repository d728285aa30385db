//! The example functions in `examples/` (Rust with the SDK, and hand-written WAT), built for
//! wasm32-unknown-unknown and run in the real server: each gives the result it documents.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;

use redis::Value;

use ferrite_testkit::{Server, cmd, err, which};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Builds the examples workspace once per test run (cargo does nothing if they are fresh).
fn example(name: &str) -> Vec<u8> {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--release", "--quiet"])
            .current_dir(examples_dir())
            .status()
            .expect("run cargo for the examples");
        assert!(
            status.success(),
            "building the examples failed (is the wasm32-unknown-unknown target installed? .ci/test installs it)"
        );
    });
    let path = examples_dir()
        .join("target/wasm32-unknown-unknown/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(c: &mut redis::Connection, name: &str, bytes: Vec<u8>, write: bool) {
    let mut command = redis::cmd("WASM.LOAD");
    command.arg(name).arg(bytes);
    if write {
        command.arg("PERMISSIONS").arg("READ").arg("WRITE");
    }
    let reply: Value = command.query(c).unwrap();
    assert_eq!(reply, Value::Okay);
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

#[test]
fn user_filter_doubles_the_value() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "user_filter", example("user_filter"), false);
    assert_eq!(
        cmd(
            &mut c,
            &[
                "WASM.CALL",
                "user_filter",
                "ARGS",
                r#"{"user":"ada","value":21}"#
            ]
        )
        .unwrap(),
        bulk(r#"{"user":"ada","value":42}"#)
    );
    assert_eq!(
        cmd(&mut c, &["FCALL", "user_filter", "0", r#"{"value":1.25}"#]).unwrap(),
        bulk(r#"{"value":2.5}"#)
    );
    assert!(
        err(&mut c, &["WASM.CALL", "user_filter", "ARGS", "{not json"])
            .starts_with("ERR invalid JSON")
    );
    assert_eq!(
        err(&mut c, &["WASM.CALL", "user_filter", "ARGS", r#"{"v":1}"#]),
        r#"ERR the document has no "value""#
    );
}

#[test]
fn json_sum_adds_a_field_over_active_items() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "json_sum", example("json_sum"), false);
    let doc = r#"{"items":[{"active":true,"price":2.5},{"active":false,"price":100},{"active":true,"price":4},{"active":true}]}"#;
    cmd(&mut c, &["SET", "doc", doc]).unwrap();
    assert_eq!(
        cmd(
            &mut c,
            &["WASM.CALL_RO", "json_sum", "KEYS", "doc", "ARGS", "price"]
        )
        .unwrap(),
        bulk("6.5")
    );
    assert_eq!(
        cmd(&mut c, &["FCALL_RO", "json_sum", "1", "missing", "price"]).unwrap(),
        Value::Nil
    );
}

#[test]
fn counter_is_an_atomic_read_modify_write() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "counter", example("counter"), true);
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "counter", "KEYS", "hits"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        cmd(
            &mut c,
            &["WASM.CALL", "counter", "KEYS", "hits", "ARGS", "41"]
        )
        .unwrap(),
        Value::Int(42)
    );
    assert_eq!(
        cmd(
            &mut c,
            &["FCALL", "counter", "1", "hits", "-100", "0", "50"]
        )
        .unwrap(),
        Value::Int(0)
    );
    // Concurrent callers never lose an update.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = server.url();
            std::thread::spawn(move || {
                let mut k = redis::Client::open(url).unwrap().get_connection().unwrap();
                for _ in 0..50 {
                    let _: i64 = redis::cmd("WASM.CALL")
                        .arg("counter")
                        .arg("KEYS")
                        .arg("hits")
                        .query(&mut k)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(cmd(&mut c, &["GET", "hits"]).unwrap(), bulk("200"));
    cmd(&mut c, &["SET", "text", "abc"]).unwrap();
    assert_eq!(
        err(&mut c, &["WASM.CALL", "counter", "KEYS", "text"]),
        "ERR value is not an integer or out of range"
    );
}

#[test]
fn rate_limiter_is_a_token_bucket_driven_by_the_given_time() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "rate_limiter", example("rate_limiter"), true);
    let call = |c: &mut redis::Connection, now: &str| {
        cmd(
            c,
            &[
                "WASM.CALL",
                "rate_limiter",
                "KEYS",
                "bucket:ada",
                "ARGS",
                "3",
                "1",
                now,
            ],
        )
        .unwrap()
    };
    let answer =
        |allowed: i64, left: i64| Value::Array(vec![Value::Int(allowed), Value::Int(left)]);
    assert_eq!(call(&mut c, "1000"), answer(1, 2));
    assert_eq!(call(&mut c, "1000"), answer(1, 1));
    assert_eq!(call(&mut c, "1000"), answer(1, 0));
    assert_eq!(
        call(&mut c, "1500"),
        answer(0, 0),
        "half a token is not enough"
    );
    assert_eq!(
        call(&mut c, "2000"),
        answer(1, 0),
        "one second refills one token"
    );
    assert_eq!(
        call(&mut c, "60000"),
        answer(1, 2),
        "refills stop at the capacity"
    );
}

#[test]
fn string_transform_and_panics_become_error_replies() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "st", example("string_transform"), false);
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "st", "ARGS", "Hello, world"]).unwrap(),
        Value::Array(vec![bulk("DLROW ,OLLEH"), Value::Int(10)])
    );
    let panic = err(&mut c, &["WASM.CALL", "st.explode"]);
    assert!(
        panic.starts_with(
            "ERR wasm: panic: this function always panics at string_transform/src/lib.rs:"
        ),
        "{panic}"
    );
    assert_eq!(err(&mut c, &["WASM.CALL", "st"]), "ERR missing argument 0");
}

#[test]
fn a_hand_written_wat_module_needs_no_sdk() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let wat = std::fs::read(examples_dir().join("wat/echo.wat")).unwrap();
    load(&mut c, "echo", wat, false);
    assert_eq!(
        cmd(
            &mut c,
            &["WASM.CALL", "echo", "KEYS", "{k}1", "{k}2", "ARGS", "hello"]
        )
        .unwrap(),
        bulk("hello")
    );
    assert_eq!(cmd(&mut c, &["WASM.CALL", "echo"]).unwrap(), Value::Nil);
}

/// The benchmark workloads, in the three guests `benches/vs_lua.rs` compares: with the SDK,
/// without it (`plain_udf`), and in C (`examples/c/bench_udf.c`, built by clang, which
/// `.ci/test` installs). Each must give the same answers, errors included.
#[test]
fn benchmark_functions_compute_the_right_answers_in_every_guest() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "b", example("bench_udf"), false);
    load(&mut c, "n", example("plain_udf"), false);
    load(&mut c, "c", ferrite_testkit::bench::c_udf(), false);
    cmd(&mut c, &["SET", "k", "twelve bytes"]).unwrap();
    let doc = r#"{"items":[{"active":true,"price":1.5},{"active":false,"price":9},{"active":true,"price":2}]}"#;
    cmd(&mut c, &["SET", "doc", doc]).unwrap();
    // Nested values to skip, a missing price, a null one, escapes, an exponent.
    let nested = r#" { "meta" : {"a":[1,{"b":"x\"y"}],"c":null} , "items" : [ {"tags":["p","q"],"active":true,"price":2.5e1}, {"active":true}, {"active":true,"price":null}, {"price":7,"active":false}, {"active":true,"price":0.25} ] } "#;
    cmd(&mut c, &["SET", "nested", nested]).unwrap();
    cmd(
        &mut c,
        &["SET", "broken", r#"{"items":[{"active":true,"price":1}"#],
    )
    .unwrap();
    for guest in ["b", "n", "c"] {
        let f = |name: &str| format!("{guest}.{name}");
        assert_eq!(
            cmd(&mut c, &["WASM.CALL", &f("primes"), "ARGS", "3000"]).unwrap(),
            Value::Int(430),
            "{guest}"
        );
        assert_eq!(
            cmd(&mut c, &["WASM.CALL", &f("primes"), "ARGS", "100"]).unwrap(),
            Value::Int(25),
            "{guest}"
        );
        assert_eq!(
            cmd(&mut c, &["FCALL_RO", &f("keylen"), "1", "k"]).unwrap(),
            Value::Int(12),
            "{guest}"
        );
        assert_eq!(
            cmd(&mut c, &["FCALL_RO", &f("keylen"), "1", "missing"]).unwrap(),
            Value::Int(0),
            "{guest}"
        );
        assert_eq!(
            cmd(&mut c, &["FCALL_RO", &f("json"), "1", "doc"]).unwrap(),
            bulk("3.5"),
            "{guest}"
        );
        assert_eq!(
            cmd(&mut c, &["FCALL_RO", &f("json"), "1", "nested"]).unwrap(),
            bulk("25.25"),
            "{guest}"
        );
        let e = err(&mut c, &["FCALL_RO", &f("json"), "1", "broken"]);
        assert!(e.starts_with("ERR "), "{guest}: {e}");
        let e = err(&mut c, &["FCALL_RO", &f("json"), "1", "missing"]);
        assert!(e.starts_with("ERR "), "{guest}: {e}");
        assert_eq!(
            cmd(&mut c, &["FCALL_RO", &f("string"), "0", "ab1"]).unwrap(),
            Value::Array(vec![bulk("1BA"), Value::Int(2)]),
            "{guest}"
        );
        let text = "The quick brown fox, 0123456789! ".repeat(128);
        let expected: String = text.chars().rev().collect::<String>().to_uppercase();
        let letters = text.chars().filter(char::is_ascii_alphabetic).count() as i64;
        assert_eq!(
            cmd(&mut c, &["FCALL_RO", &f("string"), "0", &text]).unwrap(),
            Value::Array(vec![bulk(&expected), Value::Int(letters)]),
            "{guest}"
        );
    }
    // Many calls in a row, the workloads interleaved: every guest's instances are kept between
    // calls (the one without the SDK too: its allocator grows memory in every call, into the
    // room given at load, `src/wasm/headroom.rs`), and every answer stays right.
    let kept = |c: &mut redis::Connection| -> i64 {
        let stats: std::collections::HashMap<String, Value> =
            redis::cmd("WASM.STATS").query(c).unwrap();
        match stats["pool_calls_on_kept_instances"] {
            Value::Int(n) => n,
            ref other => panic!("pool_calls_on_kept_instances: {other:?}"),
        }
    };
    for guest in ["b", "n", "c"] {
        let f = |name: &str| format!("{guest}.{name}");
        let before = kept(&mut c);
        for round in 0..100 {
            let reply = cmd(&mut c, &["FCALL_RO", &f("json"), "1", "nested"]).unwrap();
            assert_eq!(reply, bulk("25.25"), "{guest}, round {round}");
            let reply = cmd(&mut c, &["FCALL_RO", &f("string"), "0", "ab1"]).unwrap();
            let upper = Value::Array(vec![bulk("1BA"), Value::Int(2)]);
            assert_eq!(reply, upper, "{guest}, round {round}");
            let reply = cmd(&mut c, &["FCALL_RO", &f("keylen"), "1", "k"]).unwrap();
            assert_eq!(reply, Value::Int(12), "{guest}, round {round}");
        }
        let reused = kept(&mut c) - before;
        assert!(
            reused >= 290,
            "{guest}: {reused} of 300 calls on kept instances"
        );
    }
}

#[test]
fn redis_cli_loads_with_options_before_the_file() {
    let server = Server::start(&[]);
    let cli =
        which("redis-cli").expect("redis-cli must be installed (the test command installs it)");
    let module = examples_dir().join("target/wasm32-unknown-unknown/release/counter.wasm");
    example("counter");
    let out = Command::new(&cli)
        .args([
            "-p",
            &server.port.to_string(),
            "-x",
            "WASM.LOAD",
            "counter",
            "PERMISSIONS",
            "READ",
            "WRITE",
        ])
        .stdin(std::fs::File::open(&module).unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    let out = Command::new(&cli)
        .args([
            "-p",
            &server.port.to_string(),
            "WASM.CALL",
            "counter",
            "KEYS",
            "n",
            "ARGS",
            "7",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
}
