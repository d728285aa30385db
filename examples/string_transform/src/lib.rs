//! `string_transform`: uppercases and reverses its argument and counts its letters.
//!
//! `WASM.CALL string_transform ARGS "Hello, world"` → `["DLROW ,OLLEH", 10]`.

use ferrite_sdk::{Ctx, Error, Reply, export};

fn main(ctx: &mut Ctx) -> Result<Reply, Error> {
    let text = ctx.arg(0)?;
    let transformed: Vec<u8> = text.iter().rev().map(u8::to_ascii_uppercase).collect();
    let letters = text.iter().filter(|b| b.is_ascii_alphabetic()).count();
    Ok(Reply::Array(vec![
        Reply::Bulk(transformed),
        Reply::Int(letters as i64),
    ]))
}

/// Panics on purpose, to show that a panic becomes an error reply with its message.
fn explode(_ctx: &mut Ctx) -> Result<Reply, Error> {
    panic!("this function always panics");
}

export!(main, explode);
