//! `json_sum`: sums a numeric field over the active items of a JSON document stored at a key.
//!
//! The document looks like `{"items":[{"active":true,"price":2.5}, ...]}`.
//! `WASM.CALL json_sum KEYS doc ARGS price` → the sum as a bulk string.

use ferrite_sdk::{Ctx, Error, Reply, export};
use serde_json::Value;

fn main(ctx: &mut Ctx) -> Result<Reply, Error> {
    let key = ctx.key(0)?.to_vec();
    let field = ctx.arg_str(0)?.to_owned();
    let Some(raw) = ctx.get(&key) else {
        return Ok(Reply::Nil);
    };
    let doc: Value =
        serde_json::from_slice(&raw).map_err(|e| Error::new(format!("invalid JSON: {e}")))?;
    let items = doc
        .get("items")
        .and_then(Value::as_array)
        .ok_or("the document has no \"items\" array")?;
    let sum: f64 = items
        .iter()
        .filter(|item| item.get("active").and_then(Value::as_bool) == Some(true))
        .filter_map(|item| item.get(&field).and_then(Value::as_f64))
        .sum();
    Ok(Reply::from(format!("{sum}")))
}

export!(main);
