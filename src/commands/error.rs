//! Errors of the command layer, with Redis 7's texts. `Display` is the message without its
//! prefix; [`RedisError::prefix`] gives the code (`ERR`, `NOAUTH`, `CROSSSLOT`, ... or the
//! prefix of the node's or the function engine's error it carries).

use thiserror::Error;

use crate::config::ConfigSetError;
use crate::node::{NodeError, WasmError};
use crate::reply::RedisError;

/// Why a command was refused or failed before (or instead of) reaching the node.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No such command.
    #[error("unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand {
        /// The name as sent.
        name: String,
        /// The first arguments, quoted.
        args: String,
    },
    /// No such subcommand.
    #[error("unknown subcommand '{sub}'. Try {container} HELP.")]
    UnknownSubcommand {
        /// The subcommand as sent.
        sub: String,
        /// The container, uppercase.
        container: String,
    },
    /// Arity mismatch.
    #[error("wrong number of arguments for '{0}' command")]
    WrongArity(String),
    /// A password is required.
    #[error("Authentication required.")]
    NoAuth,
    /// HELLO before authenticating, without AUTH.
    #[error(
        "HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
    )]
    HelloNoAuth,
    /// Wrong password.
    #[error("invalid username-password pair or user is disabled.")]
    WrongPass,
    /// AUTH without a configured password.
    #[error(
        "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
    )]
    NoPasswordSet,
    /// HELLO with an unknown protocol version.
    #[error("unsupported protocol version")]
    NoProto,
    /// HELLO with a protocol version that is not a number.
    #[error("Protocol version is not an integer or out of range")]
    ProtocolNotInteger,
    /// HELLO with an unknown option.
    #[error("Syntax error in HELLO option '{0}'")]
    HelloOption(String),
    /// Bad syntax.
    #[error("syntax error")]
    Syntax,
    /// A number was expected.
    #[error("value is not an integer or out of range")]
    NotInteger,
    /// SELECT of another database than 0.
    #[error("DB index is out of range")]
    DbIndexOutOfRange,
    /// A client name with spaces or special characters.
    #[error("Client names cannot contain spaces, newlines or special characters.")]
    BadClientName,
    /// CLIENT SETINFO with spaces or special characters.
    #[error("{0} cannot contain spaces, newlines or special characters.")]
    BadClientInfo(String),
    /// CLIENT SETINFO with an unknown attribute.
    #[error("Unrecognized option '{0}'")]
    UnknownClientOption(String),
    /// A command that MULTI may not queue.
    #[error("Command not allowed inside a transaction")]
    NotInMulti,
    /// MULTI inside MULTI.
    #[error("MULTI calls can not be nested")]
    NestedMulti,
    /// WATCH inside MULTI.
    #[error("WATCH inside MULTI is not allowed")]
    WatchInMulti,
    /// EXEC without MULTI.
    #[error("EXEC without MULTI")]
    ExecWithoutMulti,
    /// DISCARD without MULTI.
    #[error("DISCARD without MULTI")]
    DiscardWithoutMulti,
    /// EXEC after a refused queued command.
    #[error("Transaction discarded because of previous errors.")]
    ExecAbort,
    /// Keys of one request in different slots.
    #[error("Keys in request don't hash to the same slot")]
    CrossSlot,
    /// SHUTDOWN ABORT.
    #[error("No shutdown in progress.")]
    NoShutdownInProgress,
    /// CONFIG SET refused a parameter.
    #[error("{}", config_set_message(.name, .source))]
    ConfigSet {
        /// The parameter as sent.
        name: String,
        /// Why.
        source: ConfigSetError,
    },
    /// The log level could not be changed.
    #[error("{0}")]
    LogLevel(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// COMMAND GETKEYS of an unknown command.
    #[error("Invalid command specified")]
    InvalidCommandSpecified,
    /// COMMAND GETKEYS with the wrong number of arguments for its command.
    #[error("Invalid number of arguments specified for command")]
    InvalidArgumentCount,
    /// COMMAND GETKEYS of a command without keys.
    #[error("The command has no key arguments")]
    NoKeyArguments,
    /// A slot outside 0..16383.
    #[error("Invalid or out of range slot")]
    InvalidSlot,
    /// A negative key count.
    #[error("Invalid number of keys")]
    InvalidKeyCount,
    /// CLUSTER ADDNODE with a bad address.
    #[error("Invalid node address '{0}': expected host:port[@cport]")]
    InvalidNodeAddress(String),
    /// A node id that is not a positive integer.
    #[error("Invalid node id: a positive integer")]
    InvalidNodeId,
    /// FCALL with a negative numkeys.
    #[error("Number of keys can't be negative")]
    NegativeKeyCount,
    /// FCALL with more keys than arguments.
    #[error("Number of keys can't be greater than number of args")]
    TooManyKeys,
    /// WASM.LOAD with a name other than letters, digits, `_` and `-`.
    #[error("wasm: module names use letters, digits, '_' and '-'")]
    ModuleName,
    /// WASM.LOAD with an unknown permission.
    #[error("wasm: unknown permission '{0}'")]
    UnknownPermission(String),
    /// The node refused or could not confirm the command.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The function engine refused.
    #[error(transparent)]
    Wasm(#[from] WasmError),
}

fn config_set_message(name: &str, source: &ConfigSetError) -> String {
    match source {
        ConfigSetError::Unknown => format!("{source} - '{name}'"),
        other => format!("CONFIG SET failed (possibly related to argument '{name}') - {other}"),
    }
}

impl RedisError for CommandError {
    fn prefix(&self) -> &'static str {
        match self {
            CommandError::NoAuth | CommandError::HelloNoAuth => "NOAUTH",
            CommandError::WrongPass => "WRONGPASS",
            CommandError::NoProto => "NOPROTO",
            CommandError::ExecAbort => "EXECABORT",
            CommandError::CrossSlot => "CROSSSLOT",
            CommandError::Node(e) => e.prefix(),
            CommandError::Wasm(e) => e.prefix(),
            _ => "ERR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;

    #[test]
    fn lines_take_the_prefix_of_what_they_carry() {
        let line = |e: CommandError| match Reply::error(e) {
            Reply::Error(line) => line,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            line(CommandError::CrossSlot),
            "CROSSSLOT Keys in request don't hash to the same slot"
        );
        assert_eq!(
            line(
                NodeError::Moved {
                    slot: 7,
                    addr: "h:1".into()
                }
                .into()
            ),
            "MOVED 7 h:1"
        );
        assert_eq!(line(WasmError::OutOfFuel.into()), "ERR wasm: out of fuel");
        assert_eq!(
            line(CommandError::ConfigSet {
                name: "nope".into(),
                source: ConfigSetError::Unknown
            }),
            "ERR Unknown option or number of arguments for CONFIG SET - 'nope'"
        );
        assert_eq!(
            line(CommandError::ConfigSet {
                name: "port".into(),
                source: ConfigSetError::Immutable
            }),
            "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config"
        );
    }
}
