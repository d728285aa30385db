//! `counter`: an atomic read-modify-write counter with a floor and a ceiling.
//!
//! `WASM.CALL counter KEYS hits ARGS 5 [min max]` adds 5 to `hits`, clamped to [min, max]
//! (default: unbounded), and returns the new value. The read and the write happen in one
//! call, so concurrent callers never lose an update.

use ferrite_sdk::{Ctx, Error, Reply, export};

fn main(ctx: &mut Ctx) -> Result<Reply, Error> {
    let key = ctx.key(0)?.to_vec();
    let delta = if ctx.args().is_empty() {
        1
    } else {
        ctx.arg_i64(0)?
    };
    let (min, max) = if ctx.args().len() >= 3 {
        (ctx.arg_i64(1)?, ctx.arg_i64(2)?)
    } else {
        (i64::MIN, i64::MAX)
    };
    let current = match ctx.get_str(&key)? {
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| Error::new("value is not an integer or out of range"))?,
        None => 0,
    };
    let next = current
        .checked_add(delta)
        .ok_or("increment or decrement would overflow")?
        .clamp(min, max);
    ctx.set(&key, next.to_string());
    Ok(Reply::Int(next))
}

export!(main);
