//! `user_filter`: JSON in, the same JSON with `value` doubled out.
//!
//! `WASM.CALL user_filter ARGS '{"user":"ada","value":21}'` → `{"user":"ada","value":42}`.

use ferrite_sdk::{Ctx, Error, Reply, export};
use serde_json::Value;

fn main(ctx: &mut Ctx) -> Result<Reply, Error> {
    let mut doc: Value = serde_json::from_slice(ctx.arg(0)?)
        .map_err(|e| Error::new(format!("invalid JSON: {e}")))?;
    let value = doc.get("value").ok_or("the document has no \"value\"")?;
    let doubled = match (value.as_i64(), value.as_f64()) {
        (Some(i), _) => Value::from(i.checked_mul(2).ok_or("value overflows when doubled")?),
        (None, Some(f)) => Value::from(f * 2.0),
        _ => return Err("\"value\" is not a number".into()),
    };
    doc["value"] = doubled;
    Ok(Reply::from(doc.to_string()))
}

export!(main);
