//! The command table: the one place a command's identity is written. Every command's name,
//! arity, flags, key positions, family, who handles it and its documentation live in
//! [`COMMANDS`] (`commands.rs`), and everything else is derived from it: dispatch
//! ([`CommandSpec::handler`]), arity and MULTI checks, whether a command takes the write path
//! ([`Flags::WRITE`]), which commands a function may run through `call`
//! ([`CommandSpec::callable_from_functions`]), which run at once inside MULTI
//! ([`Handler::runs_inside_multi`]), and `COMMAND`'s answer.
//!
//! A leaf: plain data, imported by the command layer and by the WASM host functions; it
//! imports only `args` (to find movable keys).

mod commands;

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use foldhash::fast::FixedState;

pub use commands::COMMANDS;

bitflags::bitflags! {
    /// Redis's command flags. Declared in the order Redis prints them in `COMMAND INFO`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Flags: u32 {
        /// Modifies data: takes the write path (the Raft log).
        const WRITE = 1 << 0;
        /// Only reads data.
        const READONLY = 1 << 1;
        /// May grow memory.
        const DENYOOM = 1 << 2;
        /// Administrative: needs ADMIN when run from a function.
        const ADMIN = 1 << 3;
        /// Not allowed from scripts and functions.
        const NOSCRIPT = 1 << 4;
        /// Allowed while loading.
        const LOADING = 1 << 5;
        /// Allowed on a stale replica.
        const STALE = 1 << 6;
        /// Not logged by SLOWLOG.
        const SKIP_SLOWLOG = 1 << 7;
        /// Constant or logarithmic time.
        const FAST = 1 << 8;
        /// Allowed before AUTH.
        const NO_AUTH = 1 << 9;
        /// May cause replication (function and script calls).
        const MAY_REPLICATE = 1 << 10;
        /// Keys may be absent.
        const NO_MANDATORY_KEYS = 1 << 11;
        /// Refused during asynchronous loading.
        const NO_ASYNC_LOADING = 1 << 12;
        /// Refused inside MULTI.
        const NO_MULTI = 1 << 13;
        /// Keys are not at fixed positions (set from [`Keys`], never written in the table).
        const MOVABLEKEYS = 1 << 14;
        /// Allowed while a script is busy.
        const ALLOW_BUSY = 1 << 15;
    }
}

impl Flags {
    /// The flag names as `COMMAND INFO` prints them.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        self.iter_names().map(|(name, _)| redis_name(name))
    }
}

/// bitflags names the flags as written above (`WRITE`, `SKIP_SLOWLOG`); Redis prints them in
/// lowercase, and `movablekeys` without its underscore.
fn redis_name(name: &'static str) -> &'static str {
    match name {
        "WRITE" => "write",
        "READONLY" => "readonly",
        "DENYOOM" => "denyoom",
        "ADMIN" => "admin",
        "NOSCRIPT" => "noscript",
        "LOADING" => "loading",
        "STALE" => "stale",
        "SKIP_SLOWLOG" => "skip_slowlog",
        "FAST" => "fast",
        "NO_AUTH" => "no_auth",
        "MAY_REPLICATE" => "may_replicate",
        "NO_MANDATORY_KEYS" => "no_mandatory_keys",
        "NO_ASYNC_LOADING" => "no_async_loading",
        "NO_MULTI" => "no_multi",
        "MOVABLEKEYS" => "movablekeys",
        "ALLOW_BUSY" => "allow_busy",
        other => other,
    }
}

/// A command family: its `COMMAND DOCS` group and its ACL category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// PING, AUTH, CLIENT...
    Connection,
    /// INFO, CONFIG, COMMAND...
    Server,
    /// Strings.
    String,
    /// Generic key commands.
    Generic,
    /// Hashes.
    Hash,
    /// Lists.
    List,
    /// Sets.
    Set,
    /// MULTI/EXEC/WATCH.
    Transactions,
    /// WASM.* and FCALL.
    Scripting,
    /// CLUSTER, READONLY, READWRITE.
    Cluster,
}

impl Group {
    /// The group `COMMAND DOCS` names.
    pub fn doc_name(self) -> &'static str {
        match self {
            Group::Connection => "connection",
            Group::Server => "server",
            Group::String => "string",
            Group::Generic => "generic",
            Group::Hash => "hash",
            Group::List => "list",
            Group::Set => "set",
            Group::Transactions => "transactions",
            Group::Scripting => "scripting",
            Group::Cluster => "cluster",
        }
    }

    fn acl_category(self) -> &'static str {
        match self {
            Group::Connection => "@connection",
            Group::Server => "@admin",
            Group::String => "@string",
            Group::Generic => "@keyspace",
            Group::Hash => "@hash",
            Group::List => "@list",
            Group::Set => "@set",
            Group::Transactions => "@transaction",
            Group::Scripting => "@scripting",
            Group::Cluster => "@connection",
        }
    }
}

/// Who runs a command. The command layer dispatches on this with one exhaustive `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// A data command: the keyspace parses it into an operation, which the node runs (reads
    /// against local state, writes through the log). Functions may run these through `call`.
    Data,
    /// A connection command.
    Connection(Connection),
    /// A server command.
    Server(Server),
    /// A cluster command.
    Cluster(Cluster),
    /// A WebAssembly function command.
    Functions(Functions),
    /// A transaction command.
    Transaction(Transaction),
}

/// Connection commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Connection {
    Ping,
    Echo,
    Hello,
    Auth,
    Select,
    Quit,
    Reset,
    Client,
}

/// Server commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Server {
    Info,
    Config,
    Command,
    Time,
    Shutdown,
}

/// Cluster commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Cluster {
    Cluster,
    ReadOnly,
    ReadWrite,
    Asking,
}

/// WebAssembly function commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Functions {
    Load,
    Unload,
    Call,
    CallRo,
    List,
    Info,
    Stats,
    Fcall,
    FcallRo,
}

/// Transaction commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Transaction {
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
}

impl Handler {
    /// Whether a command with this handler runs at once inside MULTI instead of being queued
    /// (Redis's rule: EXEC, DISCARD, MULTI, WATCH, QUIT and RESET).
    pub fn runs_inside_multi(self) -> bool {
        matches!(
            self,
            Handler::Transaction(
                Transaction::Exec | Transaction::Discard | Transaction::Multi | Transaction::Watch
            ) | Handler::Connection(Connection::Quit | Connection::Reset)
        )
    }
}

/// Where a command's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// No keys.
    None,
    /// From `first` to `last` (negative: from the end) every `step` words.
    Range {
        /// Position of the first key.
        first: i32,
        /// Position of the last key.
        last: i32,
        /// Distance between keys.
        step: i32,
    },
    /// `FCALL name numkeys key ... arg ...`: the count is at this position, keys follow it.
    Numkeys(usize),
    /// `WASM.CALL name KEYS key ... ARGS arg ...`: keys between the two keywords.
    KeysKeyword,
}

impl Keys {
    /// Whether the keys' positions depend on the arguments (`movablekeys`).
    pub fn movable(self) -> bool {
        matches!(self, Keys::Numkeys(_) | Keys::KeysKeyword)
    }

    /// `(first, last, step)` as `COMMAND INFO` gives them (zeros for movable keys).
    pub fn positions(self) -> (i32, i32, i32) {
        match self {
            Keys::Range { first, last, step } => (first, last, step),
            _ => (0, 0, 0),
        }
    }
}

/// One command (or subcommand) as `COMMAND` describes it.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lowercase name; subcommands are written `container|sub`.
    pub name: &'static str,
    /// Redis arity: `n` exactly n words, `-n` at least n words (the name counts).
    pub arity: i32,
    /// Redis command flags.
    pub flags: Flags,
    /// Where the keys are.
    pub keys: Keys,
    /// Family, for `COMMAND DOCS` and ACL categories.
    pub group: Group,
    /// Who runs it.
    pub handler: Handler,
    /// One-line description for `COMMAND DOCS`.
    pub summary: &'static str,
    /// First Redis version with this command.
    pub since: &'static str,
    /// Subcommands of a container command (CONFIG, CLIENT, COMMAND, CLUSTER).
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    /// Whether the command modifies data (and therefore takes the write path).
    pub fn is_write(&self) -> bool {
        self.flags.contains(Flags::WRITE)
    }

    /// The flags `COMMAND INFO` shows: the table's, plus `movablekeys` where keys move.
    pub fn shown_flags(&self) -> Flags {
        if self.keys.movable() {
            self.flags | Flags::MOVABLEKEYS
        } else {
            self.flags
        }
    }

    /// Whether a WebAssembly function may run this command through `call`: data commands
    /// that name their keys. Keyless ones (KEYS, SCAN, FLUSHALL) would reach beyond the
    /// call's slot; every other family is refused.
    pub fn callable_from_functions(&self) -> bool {
        self.handler == Handler::Data
            && !self.flags.contains(Flags::NOSCRIPT)
            && matches!(self.keys, Keys::Range { .. })
    }

    /// Whether `argc` words (name included) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i32;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }

    /// Whether the command names at most one key whatever its arguments: then its keys
    /// cannot span slots, and the check is skipped without collecting them.
    pub fn at_most_one_key(&self) -> bool {
        match self.keys {
            Keys::None => true,
            Keys::Range { first, last, .. } => first == last && first > 0,
            Keys::Numkeys(_) | Keys::KeysKeyword => false,
        }
    }

    /// The keys of `argv` (name included); none if the words do not reach the key positions.
    pub fn keys<'a>(&self, argv: &'a [Bytes]) -> Vec<&'a Bytes> {
        match self.keys {
            Keys::None => Vec::new(),
            Keys::Range { first, last, step } => {
                if first <= 0 || argv.len() <= first as usize {
                    return Vec::new();
                }
                let last = if last < 0 {
                    argv.len() as i32 + last
                } else {
                    last.min(argv.len() as i32 - 1)
                };
                (first..=last)
                    .step_by(step.max(1) as usize)
                    .filter_map(|i| argv.get(i as usize))
                    .collect()
            }
            Keys::Numkeys(at) => {
                let count = argv
                    .get(at)
                    .and_then(|n| crate::args::parse_i64(n))
                    .filter(|&n| n >= 0)
                    .unwrap_or(0) as usize;
                argv.iter().skip(at + 1).take(count).collect()
            }
            Keys::KeysKeyword => {
                let Some(start) = argv.iter().position(|a| crate::args::is(a, "KEYS")) else {
                    return Vec::new();
                };
                argv[start + 1..]
                    .iter()
                    .take_while(|a| !crate::args::is(a, "ARGS"))
                    .collect()
            }
        }
    }

    /// ACL categories, derived from flags and family.
    pub fn acl_categories(&self) -> Vec<&'static str> {
        let mut cats = Vec::new();
        if self.flags.contains(Flags::WRITE) {
            cats.push("@write");
        }
        if self.flags.contains(Flags::READONLY) {
            cats.push("@read");
        }
        cats.push(self.group.acl_category());
        cats.push(if self.flags.contains(Flags::FAST) {
            "@fast"
        } else {
            "@slow"
        });
        if self.flags.contains(Flags::ADMIN) {
            cats.push("@dangerous");
        }
        cats
    }

    /// The subcommand spec of this container for `sub` (any case).
    pub fn subcommand(&'static self, sub: &[u8]) -> Option<&'static CommandSpec> {
        let sub = sub.to_ascii_lowercase();
        self.subcommands.iter().find(|s| {
            s.name
                .split_once('|')
                .is_some_and(|(_, n)| n.as_bytes() == sub.as_slice())
        })
    }
}

/// The spec of `name` (any case), if it exists.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    lookup_index(name).map(|i| &COMMANDS[i])
}

/// The position of `name` (any case) in [`COMMANDS`], which also indexes the per-command
/// statistics. A hash lookup on a stack-lowercased copy: this runs for every request.
pub fn lookup_index(name: &[u8]) -> Option<usize> {
    static INDEX: OnceLock<HashMap<&'static [u8], usize, FixedState>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        COMMANDS
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_bytes(), i))
            .collect()
    });
    let mut buffer = [0u8; 24];
    let lowered = buffer.get_mut(..name.len())?;
    lowered.copy_from_slice(name);
    lowered.make_ascii_lowercase();
    index.get(&*lowered).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in COMMANDS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn lookups_ignore_case() {
        assert_eq!(lookup(b"GET").unwrap().name, "get");
        assert_eq!(lookup(b"hIncrByFloat").unwrap().name, "hincrbyfloat");
        assert!(lookup(b"nosuch").is_none());
        let config = lookup(b"config").unwrap();
        assert_eq!(config.subcommand(b"GET").unwrap().name, "config|get");
    }

    #[test]
    fn keys_follow_their_positions() {
        let argv = |words: &[&str]| {
            words
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect::<Vec<_>>()
        };
        let mset = argv(&["mset", "a", "1", "b", "2"]);
        assert_eq!(
            lookup(b"mset").unwrap().keys(&mset),
            vec![&mset[1], &mset[3]]
        );
        let del = argv(&["del", "x", "y", "z"]);
        assert_eq!(lookup(b"del").unwrap().keys(&del).len(), 3);
        let rename = argv(&["rename", "a", "b"]);
        assert_eq!(lookup(b"rename").unwrap().keys(&rename).len(), 2);
        assert!(lookup(b"ping").unwrap().keys(&argv(&["ping"])).is_empty());
        let fcall = argv(&["fcall", "f", "2", "a", "b", "x"]);
        assert_eq!(
            lookup(b"fcall").unwrap().keys(&fcall),
            vec![&fcall[3], &fcall[4]]
        );
        let call = argv(&["wasm.call", "f", "KEYS", "a", "ARGS", "x"]);
        assert_eq!(lookup(b"wasm.call").unwrap().keys(&call), vec![&call[3]]);
    }

    #[test]
    fn flags_print_in_redis_order_with_movablekeys_derived() {
        let names: Vec<_> = lookup(b"set").unwrap().shown_flags().names().collect();
        assert_eq!(names, ["write", "denyoom"]);
        let names: Vec<_> = lookup(b"fcall").unwrap().shown_flags().names().collect();
        assert_eq!(
            names,
            [
                "noscript",
                "stale",
                "may_replicate",
                "no_mandatory_keys",
                "movablekeys"
            ]
        );
        for spec in COMMANDS {
            assert!(
                !spec.flags.contains(Flags::MOVABLEKEYS),
                "{}: movablekeys comes from the key positions",
                spec.name
            );
        }
    }

    #[test]
    fn only_keyed_data_commands_are_callable_from_functions() {
        let callable = |name: &str| lookup(name.as_bytes()).unwrap().callable_from_functions();
        for name in [
            "get", "set", "hincrby", "lpush", "sadd", "del", "rename", "mset",
        ] {
            assert!(callable(name), "{name}");
        }
        for name in [
            "flushall",
            "keys",
            "scan",
            "dbsize",
            "randomkey",
            "watch",
            "multi",
            "ping",
            "info",
            "cluster",
            "wasm.call",
            "fcall",
            "config",
        ] {
            assert!(!callable(name), "{name}");
        }
    }

    #[test]
    fn multi_queues_everything_but_redis_exceptions() {
        let immediate: Vec<_> = COMMANDS
            .iter()
            .filter(|c| c.handler.runs_inside_multi())
            .map(|c| c.name)
            .collect();
        assert_eq!(
            immediate,
            ["discard", "exec", "multi", "quit", "reset", "watch"]
        );
    }
}
