//! From a data command's name and arguments to an [`Op`]: each family parses its own
//! commands.

use bytes::Bytes;

use super::{KsResult, Op, ParseCtx, hashes, keys, lists, sets, strings};

/// Parses the data command `name` (lowercase) with `args` (name excluded). The caller has
/// checked the arity; `None` means `name` is not a data command.
pub fn parse(name: &str, args: &[Bytes], ctx: &ParseCtx) -> Option<KsResult<Op>> {
    strings::parse(name, args, ctx)
        .or_else(|| keys::parse(name, args, ctx))
        .or_else(|| hashes::parse(name, args, ctx))
        .or_else(|| lists::parse(name, args, ctx))
        .or_else(|| sets::parse(name, args, ctx))
}
