//! The four benchmark workloads compared with Redis Lua (`benches/vs_lua.rs`):
//! `json` (sum a field over the active items of a JSON document at a key), `string`
//! (uppercase, reverse and count the letters of an argument), `primes` (count primes up to N
//! by trial division), `keylen` (GET a key and return its length).

use ferrite_sdk::{Ctx, Error, Reply, export};
use serde::Deserialize;

/// Only the fields the sum needs; serde skips the rest without building them.
#[derive(Deserialize)]
struct Doc {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    active: bool,
    price: Option<f64>,
}

fn json(ctx: &mut Ctx) -> Result<Reply, Error> {
    let raw = ctx.get(ctx.key(0)?).ok_or("no such key")?;
    let doc: Doc =
        serde_json::from_slice(&raw).map_err(|e| Error::new(format!("invalid JSON: {e}")))?;
    let sum: f64 = doc
        .items
        .iter()
        .filter(|i| i.active)
        .filter_map(|i| i.price)
        .sum();
    Ok(Reply::from(format!("{sum}")))
}

fn string(ctx: &mut Ctx) -> Result<Reply, Error> {
    let text = ctx.arg(0)?;
    let transformed: Vec<u8> = text.iter().rev().map(u8::to_ascii_uppercase).collect();
    let letters = text.iter().filter(|b| b.is_ascii_alphabetic()).count();
    Ok(Reply::Array(vec![
        Reply::Bulk(transformed),
        Reply::Int(letters as i64),
    ]))
}

fn primes(ctx: &mut Ctx) -> Result<Reply, Error> {
    let n = ctx.arg_i64(0)?;
    let mut count = 0;
    for candidate in 2..=n {
        let mut divisor = 2;
        let mut prime = true;
        while divisor * divisor <= candidate {
            if candidate % divisor == 0 {
                prime = false;
                break;
            }
            divisor += 1;
        }
        count += prime as i64;
    }
    Ok(Reply::Int(count))
}

fn keylen(ctx: &mut Ctx) -> Result<Reply, Error> {
    Ok(Reply::Int(
        ctx.get(ctx.key(0)?).map_or(0, |v| v.len() as i64),
    ))
}

export!(json, string, primes, keylen);
