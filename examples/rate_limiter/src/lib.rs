//! `rate_limiter`: a token bucket. The caller passes the time, so the function is
//! deterministic (every replica computes the same answer).
//!
//! `WASM.CALL rate_limiter KEYS bucket:ada ARGS <capacity> <refill_per_sec> <now_ms> [cost]`
//! → `[allowed (1|0), tokens left]`. The bucket is stored as `tokens:last_ms`, tokens in
//! thousandths so refills are exact integers.

use ferrite_sdk::{Ctx, Error, Reply, export};

fn main(ctx: &mut Ctx) -> Result<Reply, Error> {
    let key = ctx.key(0)?.to_vec();
    let capacity = ctx.arg_i64(0)?;
    let refill_per_sec = ctx.arg_i64(1)?;
    let now_ms = ctx.arg_i64(2)?;
    let cost = if ctx.args().len() > 3 {
        ctx.arg_i64(3)?
    } else {
        1
    };
    if capacity <= 0 || refill_per_sec < 0 || cost <= 0 {
        return Err("capacity and cost must be positive, refill not negative".into());
    }
    let full = capacity * 1000;
    let (mut milli_tokens, last_ms) = match ctx.get_str(&key)? {
        Some(state) => {
            let (t, l) = state.split_once(':').ok_or("corrupt bucket state")?;
            (
                t.parse::<i64>().map_err(|_| "corrupt bucket state")?,
                l.parse::<i64>().map_err(|_| "corrupt bucket state")?,
            )
        }
        None => (full, now_ms),
    };
    let elapsed = (now_ms - last_ms).max(0);
    milli_tokens = (milli_tokens + elapsed.saturating_mul(refill_per_sec)).min(full);
    let allowed = milli_tokens >= cost * 1000;
    if allowed {
        milli_tokens -= cost * 1000;
    }
    ctx.set(&key, format!("{milli_tokens}:{}", now_ms.max(last_ms)));
    Ok(Reply::Array(vec![
        Reply::Int(allowed as i64),
        Reply::Int(milli_tokens / 1000),
    ]))
}

export!(main);
