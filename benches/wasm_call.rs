//! The per-call cost of a WebAssembly call inside the server, without the network: a read-only
//! call of `examples/bench_udf`'s `keylen` (GET a key, return its length) through the same
//! path `FCALL_RO` takes once it reaches the state machine (`Runtime::call_shared`), from one
//! thread and from two. It shows what the call path itself costs (taking a pristine instance,
//! writing the input, running the guest, reading the reply, handing the instance back), which
//! client benchmarks hide under socket and scheduling costs.
//!
//! `cargo bench --bench wasm_call` (`FERRITE_BENCH_CALLS` sets the calls per thread; a path to a
//! module as first argument replaces the example guest, and `FERRITE_BENCH_ENTRY` names its
//! entry point, `keylen` by default: one that takes one key and reads it; `FERRITE_BENCH_KEY`
//! names the key, `key` by default; `FERRITE_BENCH_VALUE_FILE` a file whose bytes the key
//! holds instead of a short string, `FERRITE_BENCH_ARG` one argument to pass).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrite::keyspace::{Entry, Keyspace, ParseCtx, SmallBytes, Value};
use ferrite::wasm::{CallLimits, CallMode, EngineSettings, Permissions, Runtime};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let calls: u32 = std::env::var("FERRITE_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let module = match std::env::args().nth(1).filter(|a| !a.starts_with('-')) {
        Some(path) => std::fs::read(path).expect("the module file"),
        None => ferrite_testkit::bench::bench_udf(),
    };
    let runtime = Arc::new(Runtime::new(EngineSettings::default(), None).unwrap());
    let module = Arc::new(
        runtime
            .compile("b", module.into(), Permissions::READ, 0)
            .unwrap(),
    );
    let key = Bytes::from(std::env::var("FERRITE_BENCH_KEY").unwrap_or_else(|_| "key".to_owned()));
    let mut keyspace = Keyspace::new();
    keyspace.restore_entry(
        key.clone(),
        Some(Entry {
            value: Value::String(SmallBytes::new(
                match std::env::var("FERRITE_BENCH_VALUE_FILE") {
                    Ok(path) => Bytes::from(std::fs::read(path).expect("the value file")),
                    Err(_) => Bytes::from_static(b"a value of some length"),
                },
            )),
            expire_at: None,
            version: 1,
        }),
    );
    let keyspace = Arc::new(RwLock::new(keyspace));
    let limits = CallLimits {
        max_memory_bytes: 64 << 20,
        max_fuel: 100_000_000,
        max_duration: Duration::from_secs(5),
        time_slice: false,
    };
    let entry = std::env::var("FERRITE_BENCH_ENTRY").unwrap_or_else(|_| "keylen".to_owned());
    let args: Vec<Bytes> = std::env::var("FERRITE_BENCH_ARG")
        .map(|a| vec![Bytes::from(a)])
        .unwrap_or_default();
    let run = |calls: u32| {
        let keys = [key.clone()];
        let started = Instant::now();
        for _ in 0..calls {
            let outcome = runtime.call_shared(
                &module,
                &entry,
                &keys,
                &args,
                keyspace.clone(),
                ParseCtx { now_ms: 1, seed: 1 },
                CallMode { read_only: true },
                limits,
            );
            assert!(outcome.is_ok(), "{outcome:?}");
        }
        started.elapsed()
    };
    run(calls / 10);
    // A module whose calls grow memory is recompiled with explicit bounds checks in the
    // background (`GROWING_CALLS` in `src/wasm/mod.rs`): measure what calls settle on.
    let settle = Instant::now();
    while module.memory_checks() != "explicit" && settle.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    run(calls / 10);
    println!("memory checks: {}", module.memory_checks());
    for threads in [1u32, 2] {
        let took = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| run(calls))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .max()
                .unwrap()
        });
        let total = f64::from(calls * threads);
        println!(
            "{threads} thread(s): {:.2} µs per call, {:.0} calls/s",
            took.as_secs_f64() * 1e6 / f64::from(calls),
            total / took.as_secs_f64()
        );
    }
    println!(
        "calls on kept instances: {} of {}",
        runtime.calls_on_kept_instances(),
        calls / 5 + calls * 3
    );
}
