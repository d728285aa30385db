//! Write Ferrite functions in Rust.
//!
//! A function takes a [`Ctx`] (the call's keys and arguments, and access to the data) and
//! returns a [`Reply`] or an [`Error`]; [`export!`] turns it into an entry point of the guest
//! ABI (`docs/abi.md`; its names, tags and encodings come from the `ferrite-abi` crate, which
//! the server uses too). The SDK provides the `alloc` export, a bump allocator sized for
//! per-call instances, typed access to keys and arguments, `get`/`set`/`del`/`call`/`log`, and
//! turns panics into error replies carrying the panic message.
//!
//! ```no_run
//! use ferrite_sdk::{Ctx, Error, Reply, export};
//!
//! /// INCRBY with a floor of zero: `WASM.CALL m.bounded KEYS counter ARGS -5`.
//! fn bounded(ctx: &mut Ctx) -> Result<Reply, Error> {
//!     let key = ctx.key(0)?.to_vec();
//!     let delta = ctx.arg_i64(0)?;
//!     let current: i64 = ctx.get_str(&key)?.map_or(Ok(0), |s| s.parse().map_err(|_| Error::new("not a number")))?;
//!     let next = (current + delta).max(0);
//!     ctx.set(&key, next.to_string());
//!     Ok(Reply::Int(next))
//! }
//!
//! export!(bounded);
//! ```
//!
//! Build with `cargo build --release --target wasm32-unknown-unknown` (crate type `cdylib`),
//! then `redis-cli -x WASM.LOAD m PERMISSIONS READ WRITE < target/.../m.wasm`.

mod alloc;
mod host;
mod reply;

pub use reply::Reply;

use std::fmt;

/// The level of a [`Ctx::log`] message (the ABI's levels: error, warn, info, debug, trace).
pub use ferrite_abi::LogLevel as Level;

/// A function's error: becomes an error reply (`ERR message`, or the line as given if it
/// already starts with an uppercase code such as `WRONGTYPE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }

    /// The reply line.
    pub fn line(&self) -> String {
        let first = self.0.split(' ').next().unwrap_or("");
        if !first.is_empty() && first.bytes().all(|b| b.is_ascii_uppercase()) {
            self.0.clone()
        } else {
            format!("ERR {}", self.0)
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::new(message)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error(message)
    }
}

/// A call: its keys and arguments, and the data it may touch.
#[derive(Debug, Default)]
pub struct Ctx {
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Ctx {
    /// The keys given after `KEYS` (or after numkeys in FCALL).
    pub fn keys(&self) -> &[Vec<u8>] {
        &self.keys
    }

    /// The arguments given after `ARGS`.
    pub fn args(&self) -> &[Vec<u8>] {
        &self.args
    }

    /// Key `i`, or an error naming it.
    pub fn key(&self, i: usize) -> Result<&[u8], Error> {
        self.keys
            .get(i)
            .map(Vec::as_slice)
            .ok_or_else(|| Error::new(format!("missing key {i}")))
    }

    /// Argument `i`, or an error naming it.
    pub fn arg(&self, i: usize) -> Result<&[u8], Error> {
        self.args
            .get(i)
            .map(Vec::as_slice)
            .ok_or_else(|| Error::new(format!("missing argument {i}")))
    }

    /// Argument `i` as UTF-8.
    pub fn arg_str(&self, i: usize) -> Result<&str, Error> {
        std::str::from_utf8(self.arg(i)?)
            .map_err(|_| Error::new(format!("argument {i} is not UTF-8")))
    }

    /// Argument `i` as an integer.
    pub fn arg_i64(&self, i: usize) -> Result<i64, Error> {
        self.arg_str(i)?
            .parse()
            .map_err(|_| Error::new(format!("argument {i} is not an integer")))
    }

    /// Argument `i` as a float.
    pub fn arg_f64(&self, i: usize) -> Result<f64, Error> {
        self.arg_str(i)?
            .parse()
            .map_err(|_| Error::new(format!("argument {i} is not a number")))
    }

    /// The string value of `key`, if it exists.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        host::get_key(key.as_ref())
    }

    /// The value of `key` as UTF-8, if it exists.
    pub fn get_str(&self, key: impl AsRef<[u8]>) -> Result<Option<String>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| Error::new("value is not UTF-8")),
        }
    }

    /// Sets `key` to a string value (needs the WRITE permission and `WASM.CALL`).
    pub fn set(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        host::set_key(key.as_ref(), value.as_ref());
    }

    /// Deletes `key`; whether it existed.
    pub fn del(&mut self, key: impl AsRef<[u8]>) -> bool {
        host::del_key(key.as_ref())
    }

    /// Runs a data command, e.g. `ctx.call(&["HINCRBY", "h", "f", "1"])`. Command errors come
    /// back as [`Reply::Error`].
    pub fn call<A: AsRef<[u8]>>(&mut self, argv: &[A]) -> Reply {
        host::call(argv)
    }

    /// Writes to the server's log, tagged with the module's name.
    pub fn log(&self, level: Level, message: &str) {
        host::log(level as i32, message);
    }
}

/// Runs `function` as an entry point: decodes the input, installs the panic hook, replies.
/// Called by the code [`export!`] generates.
#[doc(hidden)]
pub fn __entry(ptr: i32, len: i32, function: fn(&mut Ctx) -> Result<Reply, Error>) -> i64 {
    host::install_panic_hook();
    let input = host::take_input(ptr, len);
    let mut ctx = match decode_input(&input) {
        Some(ctx) => ctx,
        None => {
            host::reply(&Reply::Error("ERR malformed call input".to_owned()));
            return 0;
        }
    };
    let reply = match function(&mut ctx) {
        Ok(reply) => reply,
        Err(e) => Reply::Error(e.line()),
    };
    host::reply(&reply);
    0
}

fn decode_input(input: &[u8]) -> Option<Ctx> {
    let decoded = ferrite_abi::decode_input(input).ok()?;
    let owned = |list: Vec<&[u8]>| list.into_iter().map(<[u8]>::to_vec).collect();
    Some(Ctx {
        keys: owned(decoded.keys),
        args: owned(decoded.args),
    })
}

/// Exports functions as entry points: `export!(main)` exports `fn main(&mut Ctx) ->
/// Result<Reply, Error>` as the default entry; `export!(main, other)` exports several, each
/// callable as `WASM.CALL module.other`.
#[macro_export]
macro_rules! export {
    ($($function:ident),+ $(,)?) => {
        $(
            const _: () = {
                #[unsafe(export_name = stringify!($function))]
                extern "C" fn entry(ptr: i32, len: i32) -> i64 {
                    $crate::__entry(ptr, len, $function)
                }
            };
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_decodes() {
        let mut input = 1u32.to_le_bytes().to_vec();
        input.extend(1u32.to_le_bytes());
        input.extend(b"k");
        input.extend(0u32.to_le_bytes());
        let ctx = decode_input(&input).unwrap();
        assert_eq!(ctx.keys(), &[b"k".to_vec()]);
        assert!(ctx.args().is_empty());
        assert!(decode_input(&[1, 0, 0]).is_none());
    }

    #[test]
    fn errors_get_a_code() {
        assert_eq!(Error::new("bad input").line(), "ERR bad input");
        assert_eq!(Error::new("WRONGTYPE no").line(), "WRONGTYPE no");
    }
}
