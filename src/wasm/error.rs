//! Why a module load or a call failed: the error lines clients see.

use thiserror::Error;

use super::abi::AbiError;
use crate::keyspace::KeyspaceError;
use crate::reply::RedisError;

/// Why a load or a call failed. `Display` is the message; [`RedisError`] adds the prefix
/// (`ERR`, or the data error's own, such as `WRONGTYPE`).
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum WasmError {
    /// The call ran out of fuel.
    #[error("wasm: out of fuel")]
    OutOfFuel,
    /// Memory growth beyond the limit.
    #[error("wasm: memory limit exceeded")]
    MemoryLimit,
    /// A read-only call ran past its time limit.
    #[error("wasm: timeout")]
    Timeout,
    /// The WebAssembly stack overflowed.
    #[error("wasm: stack overflow")]
    StackOverflow,
    /// Any other trap.
    #[error("wasm: trap: {0}")]
    Trap(String),
    /// The guest panicked and reported the message (SDK modules do).
    #[error("wasm: panic: {0}")]
    Panic(String),
    /// A host function refused for lack of a permission.
    #[error("wasm: permission denied: {0}")]
    PermissionDenied(&'static str),
    /// A write in `WASM.CALL_RO` / `FCALL_RO`.
    #[error("wasm: write in a read-only call")]
    WriteInReadOnly,
    /// A key outside the call's slot.
    #[error("wasm: key '{0}' is not in this call's slot")]
    CrossSlot(String),
    /// `call` with a command functions may not run.
    #[error("wasm: command not allowed from a function: {0}")]
    CommandNotAllowed(String),
    /// `call` with a malformed argument buffer.
    #[error("wasm: malformed call: {0}")]
    BadCall(#[source] AbiError),
    /// `call` with an empty argument vector.
    #[error("wasm: malformed call: empty command")]
    EmptyCall,
    /// `reply` with a malformed reply buffer.
    #[error("wasm: malformed reply: {0}")]
    BadReply(#[source] AbiError),
    /// A data error that ends the call (e.g. `get_key` on a hash): the command's own error.
    #[error(transparent)]
    Data(#[from] KeyspaceError),
    /// The module does not compile or does not follow the ABI.
    #[error("wasm: invalid module: {0}")]
    InvalidModule(String),
    /// The module is larger than allowed.
    #[error("wasm: module is {size} bytes, larger than the {limit} byte limit")]
    ModuleTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No module by that name.
    #[error("wasm: no such module '{0}'")]
    NoSuchModule(String),
    /// A write call whose module was replaced between proposal and apply.
    #[error("wasm: no such module '{0} (replaced while the call was in flight)'")]
    ReplacedInFlight(String),
    /// The module has no such entry point.
    #[error("wasm: module '{module}' has no entry point '{entry}'")]
    NoSuchEntry {
        /// The module.
        module: String,
        /// The entry asked for.
        entry: String,
    },
    /// WASM.LOAD of an existing name without REPLACE.
    #[error("wasm: module '{0}' already exists (use REPLACE)")]
    AlreadyLoaded(String),
    /// A permission the security configuration does not allow.
    #[error("wasm: permission {0} is not allowed by [wasm.security]")]
    PermissionNotAllowed(&'static str),
    /// Ferrite's own code panicked during the call (a bug). The call's writes were undone and
    /// the keyspace is what it was before the call.
    #[error("wasm: internal error, the call was undone: {0}")]
    HostPanic(String),
    /// A first attempt reached the end of its time slice; the node runs it again off the
    /// async workers.
    #[error("wasm: the call's time slice ended")]
    SliceEnded,
    /// A read-only call's reads were overtaken by a write; the state machine runs it again.
    #[error("wasm: a write changed what the read-only call had read")]
    Overtaken,
    /// The engine could not start an instance (pool exhausted and similar).
    #[error("wasm: cannot instantiate: {0}")]
    Instantiate(String),
}

impl RedisError for WasmError {
    fn prefix(&self) -> &'static str {
        match self {
            WasmError::Data(e) => e.prefix(),
            _ => "ERR",
        }
    }
}

impl WasmError {
    /// A short name for WASM.STATS's errors-by-kind.
    pub fn kind(&self) -> &'static str {
        match self {
            WasmError::OutOfFuel => "out_of_fuel",
            WasmError::MemoryLimit => "memory",
            WasmError::Timeout => "timeout",
            WasmError::StackOverflow => "stack_overflow",
            WasmError::Trap(_) | WasmError::Panic(_) => "trap",
            WasmError::HostPanic(_) => "internal",
            WasmError::PermissionDenied(_)
            | WasmError::WriteInReadOnly
            | WasmError::PermissionNotAllowed(_) => "permission",
            WasmError::CrossSlot(_) => "cross_slot",
            WasmError::CommandNotAllowed(_)
            | WasmError::BadCall(_)
            | WasmError::EmptyCall
            | WasmError::BadReply(_) => "host_call",
            WasmError::Data(_) => "command",
            _ => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;

    #[test]
    fn lines_carry_the_prefix_once() {
        assert_eq!(
            Reply::error(WasmError::OutOfFuel),
            Reply::Error("ERR wasm: out of fuel".into())
        );
        assert_eq!(
            Reply::error(WasmError::Data(KeyspaceError::WrongType)),
            Reply::Error(
                "WRONGTYPE Operation against a key holding the wrong kind of value".into()
            )
        );
        assert_eq!(
            Reply::error(WasmError::ReplacedInFlight("m".into())),
            Reply::Error(
                "ERR wasm: no such module 'm (replaced while the call was in flight)'".into()
            )
        );
    }
}
