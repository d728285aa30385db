//! Integration tests of WebAssembly functions against the real server: loading, calling,
//! permissions, atomicity, limits and hostile modules. The modules are hand-written WAT in
//! `modules/`, which also shows that the ABI needs no SDK.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::Value;

use ferrite_testkit::{Server, cmd, err, error_line, wait_until, which};

pub(crate) fn module(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/wasm/modules")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn load(
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

pub(crate) fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

/// The named field of a RESP2 flat map reply.
pub(crate) fn field(reply: &Value, name: &str) -> Value {
    let Value::Array(items) = reply else {
        panic!("not an array: {reply:?}")
    };
    items
        .chunks(2)
        .find(|pair| pair[0] == bulk(name))
        .map(|pair| pair[1].clone())
        .unwrap_or_else(|| panic!("no field {name} in {reply:?}"))
}

/// The named field of WASM.STATS.
pub(crate) fn stat(c: &mut redis::Connection, name: &str) -> Value {
    field(&cmd(c, &["WASM.STATS"]).unwrap(), name)
}

mod calls;
mod limits;
mod loading;
mod transactions;
