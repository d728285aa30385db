//! The command table (a leaf: the command layer and the WASM `call` host function both read it): every command's arity, flags, key positions, family and summary, written
//! once. Dispatch checks arity against it, the write path is chosen by its `write` flag,
//! `COMMAND` answers from it (redis-py's cluster client routes by these key positions), and
//! `COMMAND GETKEYS` extracts keys with it.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use foldhash::fast::FixedState;

use crate::reply::Reply;

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
    fn doc_name(self) -> &'static str {
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

/// One command (or subcommand) as `COMMAND` describes it.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lowercase name; subcommands are written `container|sub`.
    pub name: &'static str,
    /// Redis arity: `n` exactly n words, `-n` at least n words (the name counts).
    pub arity: i32,
    /// Redis command flags (`write`, `readonly`, `fast`, `denyoom`, ...).
    pub flags: &'static [&'static str],
    /// Position of the first key (0: no keys).
    pub first_key: i32,
    /// Position of the last key (negative counts from the end).
    pub last_key: i32,
    /// Distance between keys.
    pub step: i32,
    /// Family.
    pub group: Group,
    /// One-line description for `COMMAND DOCS`.
    pub summary: &'static str,
    /// First Redis version with this command.
    pub since: &'static str,
    /// Subcommands of a container command (CONFIG, CLIENT, COMMAND).
    pub subcommands: &'static [CommandSpec],
    /// Where the keys are when they are not at fixed positions (`movablekeys`).
    pub movable: Option<MovableKeys>,
}

/// Key positions that depend on the arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovableKeys {
    /// `FCALL name numkeys key ... arg ...`: the count is at this position, keys follow it.
    Numkeys(usize),
    /// `WASM.CALL name KEYS key ... ARGS arg ...`: keys between the two keywords.
    KeysKeyword,
}

impl MovableKeys {
    fn keys(self, argv: &[Bytes]) -> Vec<&Bytes> {
        match self {
            MovableKeys::Numkeys(at) => {
                let count = argv
                    .get(at)
                    .and_then(|n| crate::args::parse_i64(n))
                    .filter(|&n| n >= 0)
                    .unwrap_or(0) as usize;
                argv.iter().skip(at + 1).take(count).collect()
            }
            MovableKeys::KeysKeyword => {
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
}

impl CommandSpec {
    /// Whether the command modifies data (and therefore takes the write path).
    pub fn is_write(&self) -> bool {
        self.has_flag("write")
    }

    /// Whether the command carries `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
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

    /// The keys of `argv` (name included) by first/last/step, or `None` if the words do not
    /// reach the key positions.
    pub fn keys<'a>(&self, argv: &'a [Bytes]) -> Vec<&'a Bytes> {
        if let Some(movable) = self.movable {
            return movable.keys(argv);
        }
        if self.first_key <= 0 || argv.len() <= self.first_key as usize {
            return Vec::new();
        }
        let last = if self.last_key < 0 {
            argv.len() as i32 + self.last_key
        } else {
            self.last_key.min(argv.len() as i32 - 1)
        };
        (self.first_key..=last)
            .step_by(self.step.max(1) as usize)
            .filter_map(|i| argv.get(i as usize))
            .collect()
    }

    /// ACL categories, derived from flags and family.
    pub fn acl_categories(&self) -> Vec<&'static str> {
        let mut cats = Vec::new();
        if self.has_flag("write") {
            cats.push("@write");
        }
        if self.has_flag("readonly") {
            cats.push("@read");
        }
        cats.push(self.group.acl_category());
        cats.push(if self.has_flag("fast") {
            "@fast"
        } else {
            "@slow"
        });
        if self.has_flag("admin") {
            cats.push("@dangerous");
        }
        cats
    }

    /// The key specification (Redis 7 format) implied by first/last/step.
    fn key_specs(&self) -> Reply {
        if let Some(movable) = self.movable {
            return movable_key_spec(movable, self.is_write());
        }
        if self.first_key <= 0 {
            return Reply::Array(Vec::new());
        }
        let access: &[&str] = if self.is_write() {
            &["RW", "update"]
        } else {
            &["RO", "access"]
        };
        let status = |s: &str| Reply::Status(s.to_owned());
        let spec = Reply::Map(vec![
            (
                Reply::bulk("flags"),
                Reply::Set(access.iter().map(|f| status(f)).collect()),
            ),
            (
                Reply::bulk("begin_search"),
                Reply::Map(vec![
                    (Reply::bulk("type"), Reply::bulk("index")),
                    (
                        Reply::bulk("spec"),
                        Reply::Map(vec![(
                            Reply::bulk("index"),
                            Reply::Int(self.first_key as i64),
                        )]),
                    ),
                ]),
            ),
            (
                Reply::bulk("find_keys"),
                Reply::Map(vec![
                    (Reply::bulk("type"), Reply::bulk("range")),
                    (
                        Reply::bulk("spec"),
                        Reply::Map(vec![
                            (
                                Reply::bulk("lastkey"),
                                Reply::Int(if self.last_key < 0 {
                                    self.last_key as i64
                                } else {
                                    (self.last_key - self.first_key) as i64
                                }),
                            ),
                            (Reply::bulk("keystep"), Reply::Int(self.step as i64)),
                            (Reply::bulk("limit"), Reply::Int(0)),
                        ]),
                    ),
                ]),
            ),
        ]);
        Reply::Array(vec![spec])
    }

    /// This command's `COMMAND INFO` entry: all ten fields, as redis-py's parser requires
    /// once an entry has more than seven.
    pub fn info(&self) -> Reply {
        let status = |s: &str| Reply::Status(s.to_owned());
        Reply::Array(vec![
            Reply::bulk(self.name),
            Reply::Int(self.arity as i64),
            Reply::Set(self.flags.iter().map(|f| status(f)).collect()),
            Reply::Int(self.first_key as i64),
            Reply::Int(self.last_key as i64),
            Reply::Int(self.step as i64),
            Reply::Set(self.acl_categories().into_iter().map(status).collect()),
            Reply::Array(Vec::new()),
            self.key_specs(),
            Reply::Array(self.subcommands.iter().map(CommandSpec::info).collect()),
        ])
    }

    /// This command's `COMMAND DOCS` entry.
    pub fn docs(&self) -> Reply {
        let mut fields = vec![
            (Reply::bulk("summary"), Reply::bulk(self.summary)),
            (Reply::bulk("since"), Reply::bulk(self.since)),
            (Reply::bulk("group"), Reply::bulk(self.group.doc_name())),
        ];
        if !self.subcommands.is_empty() {
            fields.push((
                Reply::bulk("subcommands"),
                Reply::Map(
                    self.subcommands
                        .iter()
                        .map(|s| (Reply::bulk(s.name), s.docs()))
                        .collect(),
                ),
            ));
        }
        Reply::Map(fields)
    }
}

/// The Redis 7 key specification of a movable-keys command.
fn movable_key_spec(movable: MovableKeys, write: bool) -> Reply {
    let status = |s: &str| Reply::Status(s.to_owned());
    let flags: &[&str] = if write {
        &["RW", "access", "update"]
    } else {
        &["RO", "access"]
    };
    let (begin, find) = match movable {
        MovableKeys::Numkeys(at) => (
            Reply::Map(vec![
                (Reply::bulk("type"), Reply::bulk("index")),
                (
                    Reply::bulk("spec"),
                    Reply::Map(vec![(Reply::bulk("index"), Reply::Int(at as i64))]),
                ),
            ]),
            Reply::Map(vec![
                (Reply::bulk("type"), Reply::bulk("keynum")),
                (
                    Reply::bulk("spec"),
                    Reply::Map(vec![
                        (Reply::bulk("keynumidx"), Reply::Int(0)),
                        (Reply::bulk("firstkey"), Reply::Int(1)),
                        (Reply::bulk("keystep"), Reply::Int(1)),
                    ]),
                ),
            ]),
        ),
        MovableKeys::KeysKeyword => (
            Reply::Map(vec![
                (Reply::bulk("type"), Reply::bulk("keyword")),
                (
                    Reply::bulk("spec"),
                    Reply::Map(vec![
                        (Reply::bulk("keyword"), Reply::bulk("KEYS")),
                        (Reply::bulk("startfrom"), Reply::Int(2)),
                    ]),
                ),
            ]),
            Reply::Map(vec![
                (Reply::bulk("type"), Reply::bulk("unknown")),
                (Reply::bulk("spec"), Reply::Map(Vec::new())),
            ]),
        ),
    };
    Reply::Array(vec![Reply::Map(vec![
        (
            Reply::bulk("flags"),
            Reply::Set(flags.iter().map(|f| status(f)).collect()),
        ),
        (Reply::bulk("begin_search"), begin),
        (Reply::bulk("find_keys"), find),
    ])])
}

const fn movable(spec: CommandSpec, keys: MovableKeys) -> CommandSpec {
    CommandSpec {
        movable: Some(keys),
        ..spec
    }
}

const fn cmd(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    group: Group,
    summary: &'static str,
    since: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        group,
        summary,
        since,
        subcommands: &[],
        movable: None,
    }
}

const fn container(
    name: &'static str,
    group: Group,
    summary: &'static str,
    subcommands: &'static [CommandSpec],
) -> CommandSpec {
    CommandSpec {
        name,
        arity: -2,
        flags: &[],
        first_key: 0,
        last_key: 0,
        step: 0,
        group,
        summary,
        since: "2.0.0",
        subcommands,
        movable: None,
    }
}

const NO_KEYS: (i32, i32, i32) = (0, 0, 0);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);
const ALL_KEYS: (i32, i32, i32) = (1, -1, 1);

use Group::*;

const R: &[&str] = &["readonly"];
const RF: &[&str] = &["readonly", "fast"];
const W: &[&str] = &["write"];
const WF: &[&str] = &["write", "fast"];
const WM: &[&str] = &["write", "denyoom"];
const WMF: &[&str] = &["write", "denyoom", "fast"];
const CONN: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];
const TX: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];

#[rustfmt::skip]
const CLIENT_SUBCOMMANDS: &[CommandSpec] = &[
    cmd("client|getname", 2, &["noscript", "loading", "stale"], NO_KEYS, Connection, "Returns the name of the connection.", "2.6.9"),
    cmd("client|id", 2, &["noscript", "loading", "stale"], NO_KEYS, Connection, "Returns the unique client ID of the connection.", "5.0.0"),
    cmd("client|info", 2, &["noscript", "loading", "stale"], NO_KEYS, Connection, "Returns information about the connection.", "6.2.0"),
    cmd("client|list", -2, &["admin", "noscript", "loading", "stale"], NO_KEYS, Connection, "Lists open connections.", "2.4.0"),
    cmd("client|setinfo", 4, &["noscript", "loading", "stale"], NO_KEYS, Connection, "Sets information specific to the client or connection.", "7.2.0"),
    cmd("client|setname", 3, &["noscript", "loading", "stale"], NO_KEYS, Connection, "Sets the connection name.", "2.6.9"),
];

#[rustfmt::skip]
const CLUSTER_SUBCOMMANDS: &[CommandSpec] = &[
    cmd("cluster|addnode", 4, &["admin", "stale", "no_async_loading"], NO_KEYS, Cluster, "Adds a node to the Raft group (learner, then voter): id host:port[@cport].", "0.1.0"),
    cmd("cluster|countkeysinslot", 3, &["stale"], NO_KEYS, Cluster, "Returns the number of keys in a hash slot.", "3.0.0"),
    cmd("cluster|getkeysinslot", 4, &["stale"], NO_KEYS, Cluster, "Returns the key names in a hash slot.", "3.0.0"),
    cmd("cluster|info", 2, &["stale"], NO_KEYS, Cluster, "Returns information about the state of a node.", "3.0.0"),
    cmd("cluster|keyslot", 3, &["stale"], NO_KEYS, Cluster, "Returns the hash slot for a key.", "3.0.0"),
    cmd("cluster|myid", 2, &["stale"], NO_KEYS, Cluster, "Returns the ID of a node.", "3.0.0"),
    cmd("cluster|nodes", 2, &["stale"], NO_KEYS, Cluster, "Returns the cluster configuration for a node.", "3.0.0"),
    cmd("cluster|removenode", 3, &["admin", "stale", "no_async_loading"], NO_KEYS, Cluster, "Removes a node from the Raft group: id.", "0.1.0"),
    cmd("cluster|shards", 2, &["stale"], NO_KEYS, Cluster, "Returns the mapping of cluster slots to shards.", "7.0.0"),
    cmd("cluster|slots", 2, &["stale"], NO_KEYS, Cluster, "Returns the mapping of cluster slots to nodes.", "3.0.0"),
];

#[rustfmt::skip]
const CONFIG_SUBCOMMANDS: &[CommandSpec] = &[
    cmd("config|get", -3, &["admin", "noscript", "loading", "stale"], NO_KEYS, Server, "Returns the effective values of configuration parameters.", "2.0.0"),
    cmd("config|resetstat", 2, &["admin", "noscript", "loading", "stale"], NO_KEYS, Server, "Resets the server's statistics.", "2.0.0"),
    cmd("config|set", -4, &["admin", "noscript", "loading", "stale"], NO_KEYS, Server, "Sets configuration parameters in-flight.", "2.0.0"),
];

#[rustfmt::skip]
const COMMAND_SUBCOMMANDS: &[CommandSpec] = &[
    cmd("command|count", 2, &["loading", "stale"], NO_KEYS, Server, "Returns a count of commands.", "2.8.13"),
    cmd("command|docs", -2, &["loading", "stale"], NO_KEYS, Server, "Returns documentary information about one, multiple or all commands.", "7.0.0"),
    cmd("command|getkeys", -4, &["loading", "stale"], NO_KEYS, Server, "Extracts the key names from an arbitrary command.", "2.8.13"),
    cmd("command|info", -2, &["loading", "stale"], NO_KEYS, Server, "Returns information about one, multiple or all commands.", "2.8.13"),
    cmd("command|list", -2, &["loading", "stale"], NO_KEYS, Server, "Returns a list of command names.", "7.0.0"),
];

/// Every command, sorted by name.
#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    cmd("append", 3, WMF, ONE_KEY, String, "Appends a string to the value of a key. Creates the key if it doesn't exist.", "2.0.0"),
    cmd("asking", 1, &["fast"], NO_KEYS, Cluster, "Signals that a cluster client is following an -ASK redirect.", "3.0.0"),
    cmd("auth", -2, CONN, NO_KEYS, Connection, "Authenticates the connection.", "1.0.0"),
    container("client", Connection, "A container for client connection commands.", CLIENT_SUBCOMMANDS),
    container("cluster", Cluster, "A container for Redis Cluster commands.", CLUSTER_SUBCOMMANDS),
    CommandSpec {
        arity: -1,
        flags: &["loading", "stale"],
        ..container("command", Server, "Returns detailed information about all commands.", COMMAND_SUBCOMMANDS)
    },
    container("config", Server, "A container for server configuration commands.", CONFIG_SUBCOMMANDS),
    cmd("dbsize", 1, RF, NO_KEYS, Server, "Returns the number of keys in the database.", "1.0.0"),
    cmd("decr", 2, WMF, ONE_KEY, String, "Decrements the integer value of a key by one.", "1.0.0"),
    cmd("decrby", 3, WMF, ONE_KEY, String, "Decrements a number from the integer value of a key.", "1.0.0"),
    cmd("del", -2, W, ALL_KEYS, Generic, "Deletes one or more keys.", "1.0.0"),
    cmd("discard", 1, TX, NO_KEYS, Transactions, "Discards a transaction.", "2.0.0"),
    cmd("echo", 2, &["fast"], NO_KEYS, Connection, "Returns the given string.", "1.0.0"),
    cmd("exec", 1, &["noscript", "loading", "stale", "skip_slowlog"], NO_KEYS, Transactions, "Executes all commands in a transaction.", "1.2.0"),
    cmd("exists", -2, RF, ALL_KEYS, Generic, "Determines whether one or more keys exist.", "1.0.0"),
    cmd("expire", -3, WF, ONE_KEY, Generic, "Sets the expiration time of a key in seconds.", "1.0.0"),
    cmd("expireat", -3, WF, ONE_KEY, Generic, "Sets the expiration time of a key to a Unix timestamp.", "1.2.0"),
    cmd("expiretime", 2, RF, ONE_KEY, Generic, "Returns the expiration time of a key as a Unix timestamp.", "7.0.0"),
    movable(cmd("fcall", -3, &["noscript", "stale", "may_replicate", "no_mandatory_keys", "movablekeys"], NO_KEYS, Scripting, "Invokes a WebAssembly function (Redis 7 syntax: name numkeys key ... arg ...).", "7.0.0"), MovableKeys::Numkeys(2)),
    movable(cmd("fcall_ro", -3, &["readonly", "noscript", "stale", "no_mandatory_keys", "movablekeys"], NO_KEYS, Scripting, "Invokes a WebAssembly function that may not write.", "7.0.0"), MovableKeys::Numkeys(2)),
    cmd("flushall", -1, W, NO_KEYS, Server, "Removes all keys from all databases.", "1.0.0"),
    cmd("flushdb", -1, W, NO_KEYS, Server, "Remove all keys from the current database.", "1.0.0"),
    cmd("get", 2, RF, ONE_KEY, String, "Returns the string value of a key.", "1.0.0"),
    cmd("getdel", 2, WF, ONE_KEY, String, "Returns the string value of a key after deleting the key.", "6.2.0"),
    cmd("getex", -2, WF, ONE_KEY, String, "Returns the string value of a key after setting its expiration time.", "6.2.0"),
    cmd("getrange", 4, R, ONE_KEY, String, "Returns a substring of the string stored at a key.", "2.4.0"),
    cmd("getset", 3, WMF, ONE_KEY, String, "Returns the previous string value of a key after setting it to a new value.", "1.0.0"),
    cmd("hdel", -3, WF, ONE_KEY, Hash, "Deletes one or more fields and their values from a hash.", "2.0.0"),
    cmd("hello", -1, CONN, NO_KEYS, Connection, "Handshakes with the Redis server.", "6.0.0"),
    cmd("hexists", 3, RF, ONE_KEY, Hash, "Determines whether a field exists in a hash.", "2.0.0"),
    cmd("hget", 3, RF, ONE_KEY, Hash, "Returns the value of a field in a hash.", "2.0.0"),
    cmd("hgetall", 2, R, ONE_KEY, Hash, "Returns all fields and values in a hash.", "2.0.0"),
    cmd("hincrby", 4, WMF, ONE_KEY, Hash, "Increments the integer value of a field in a hash by a number.", "2.0.0"),
    cmd("hincrbyfloat", 4, WMF, ONE_KEY, Hash, "Increments the floating point value of a field by a number.", "2.6.0"),
    cmd("hkeys", 2, R, ONE_KEY, Hash, "Returns all fields in a hash.", "2.0.0"),
    cmd("hlen", 2, RF, ONE_KEY, Hash, "Returns the number of fields in a hash.", "2.0.0"),
    cmd("hmget", -3, RF, ONE_KEY, Hash, "Returns the values of all fields in a hash.", "2.0.0"),
    cmd("hmset", -4, WMF, ONE_KEY, Hash, "Sets the values of multiple fields.", "2.0.0"),
    cmd("hscan", -3, R, ONE_KEY, Hash, "Iterates over fields and values of a hash.", "2.8.0"),
    cmd("hset", -4, WMF, ONE_KEY, Hash, "Creates or modifies the value of a field in a hash.", "2.0.0"),
    cmd("hsetnx", 4, WMF, ONE_KEY, Hash, "Sets the value of a field in a hash only when the field doesn't exist.", "2.0.0"),
    cmd("hstrlen", 3, RF, ONE_KEY, Hash, "Returns the length of the value of a field.", "3.2.0"),
    cmd("hvals", 2, R, ONE_KEY, Hash, "Returns all values in a hash.", "2.0.0"),
    cmd("incr", 2, WMF, ONE_KEY, String, "Increments the integer value of a key by one.", "1.0.0"),
    cmd("incrby", 3, WMF, ONE_KEY, String, "Increments the integer value of a key by a number.", "1.0.0"),
    cmd("incrbyfloat", 3, WMF, ONE_KEY, String, "Increment the floating point value of a key by a number.", "2.6.0"),
    cmd("info", -1, &["loading", "stale"], NO_KEYS, Server, "Returns information and statistics about the server.", "1.0.0"),
    cmd("keys", 2, R, NO_KEYS, Generic, "Returns all key names that match a pattern.", "1.0.0"),
    cmd("lindex", 3, R, ONE_KEY, List, "Returns an element from a list by its index.", "1.0.0"),
    cmd("llen", 2, RF, ONE_KEY, List, "Returns the length of a list.", "1.0.0"),
    cmd("lpop", -2, WF, ONE_KEY, List, "Returns the first elements in a list after removing it.", "1.0.0"),
    cmd("lpush", -3, WMF, ONE_KEY, List, "Prepends one or more elements to a list.", "1.0.0"),
    cmd("lrange", 4, R, ONE_KEY, List, "Returns a range of elements from a list.", "1.0.0"),
    cmd("lrem", 4, W, ONE_KEY, List, "Removes elements from a list.", "1.0.0"),
    cmd("lset", 4, WM, ONE_KEY, List, "Sets the value of an element in a list by its index.", "1.0.0"),
    cmd("ltrim", 4, W, ONE_KEY, List, "Removes elements from both ends a list.", "1.0.0"),
    cmd("mget", -2, RF, ALL_KEYS, String, "Atomically returns the string values of one or more keys.", "1.0.0"),
    cmd("mset", -3, WM, (1, -1, 2), String, "Atomically creates or modifies the string values of one or more keys.", "1.0.1"),
    cmd("msetnx", -3, WM, (1, -1, 2), String, "Atomically modifies the string values of keys only when all keys don't exist.", "1.0.1"),
    cmd("multi", 1, TX, NO_KEYS, Transactions, "Starts a transaction.", "1.2.0"),
    cmd("persist", 2, WF, ONE_KEY, Generic, "Removes the expiration time of a key.", "2.2.0"),
    cmd("pexpire", -3, WF, ONE_KEY, Generic, "Sets the expiration time of a key in milliseconds.", "2.6.0"),
    cmd("pexpireat", -3, WF, ONE_KEY, Generic, "Sets the expiration time of a key to a Unix milliseconds timestamp.", "2.6.0"),
    cmd("pexpiretime", 2, RF, ONE_KEY, Generic, "Returns the expiration time of a key as a Unix milliseconds timestamp.", "7.0.0"),
    cmd("ping", -1, &["fast"], NO_KEYS, Connection, "Returns the server's liveliness response.", "1.0.0"),
    cmd("psetex", 4, WM, ONE_KEY, String, "Sets both string value and expiration time in milliseconds of a key.", "2.6.0"),
    cmd("pttl", 2, RF, ONE_KEY, Generic, "Returns the expiration time in milliseconds of a key.", "2.6.0"),
    cmd("quit", -1, CONN, NO_KEYS, Connection, "Closes the connection.", "1.0.0"),
    cmd("randomkey", 1, R, NO_KEYS, Generic, "Returns a random key name from the database.", "1.0.0"),
    cmd("readonly", 1, &["fast", "loading", "stale"], NO_KEYS, Cluster, "Enables read-only queries (stale reads) for a connection to a replica.", "3.0.0"),
    cmd("readwrite", 1, &["fast", "loading", "stale"], NO_KEYS, Cluster, "Disables read-only queries for a connection to a replica.", "3.0.0"),
    cmd("rename", 3, W, (1, 2, 1), Generic, "Renames a key and overwrites the destination.", "1.0.0"),
    cmd("renamenx", 3, WF, (1, 2, 1), Generic, "Renames a key only when the target key name doesn't exist.", "1.0.0"),
    cmd("reset", 1, CONN, NO_KEYS, Connection, "Resets the connection.", "6.2.0"),
    cmd("rpop", -2, WF, ONE_KEY, List, "Returns and removes the last elements of a list.", "1.0.0"),
    cmd("rpush", -3, WMF, ONE_KEY, List, "Appends one or more elements to a list.", "1.0.0"),
    cmd("sadd", -3, WMF, ONE_KEY, Set, "Adds one or more members to a set.", "1.0.0"),
    cmd("scan", -2, R, NO_KEYS, Generic, "Iterates over the key names in the database.", "2.8.0"),
    cmd("scard", 2, RF, ONE_KEY, Set, "Returns the number of members in a set.", "1.0.0"),
    cmd("select", 2, &["loading", "stale", "fast"], NO_KEYS, Connection, "Changes the selected database.", "1.0.0"),
    cmd("set", -3, WM, ONE_KEY, String, "Sets the string value of a key, ignoring its type.", "1.0.0"),
    cmd("setex", 4, WM, ONE_KEY, String, "Sets the string value and expiration time of a key.", "2.0.0"),
    cmd("setnx", 3, WMF, ONE_KEY, String, "Set the string value of a key only when the key doesn't exist.", "1.0.0"),
    cmd("setrange", 4, WM, ONE_KEY, String, "Overwrites a part of a string value with another by an offset.", "2.2.0"),
    cmd("shutdown", -1, &["admin", "noscript", "loading", "stale", "no_multi", "allow_busy"], NO_KEYS, Server, "Synchronously saves the database(s) to disk and shuts down the Redis server.", "1.0.0"),
    cmd("sismember", 3, RF, ONE_KEY, Set, "Determines whether a member belongs to a set.", "1.0.0"),
    cmd("smembers", 2, R, ONE_KEY, Set, "Returns all members of a set.", "1.0.0"),
    cmd("spop", -2, WF, ONE_KEY, Set, "Returns one or more random members from a set after removing them.", "1.0.0"),
    cmd("srandmember", -2, R, ONE_KEY, Set, "Get one or multiple random members from a set.", "1.0.0"),
    cmd("srem", -3, WF, ONE_KEY, Set, "Removes one or more members from a set.", "1.0.0"),
    cmd("strlen", 2, RF, ONE_KEY, String, "Returns the length of a string value.", "2.2.0"),
    cmd("substr", 4, R, ONE_KEY, String, "Returns a substring from a string value.", "1.0.0"),
    cmd("time", 1, &["loading", "stale", "fast"], NO_KEYS, Server, "Returns the server time.", "2.6.0"),
    cmd("ttl", 2, RF, ONE_KEY, Generic, "Returns the expiration time in seconds of a key.", "1.0.0"),
    cmd("type", 2, RF, ONE_KEY, Generic, "Determines the type of value stored at a key.", "1.0.0"),
    cmd("unlink", -2, WF, ALL_KEYS, Generic, "Asynchronously deletes one or more keys.", "4.0.0"),
    cmd("unwatch", 1, TX, NO_KEYS, Transactions, "Forgets about watched keys of a transaction.", "2.2.0"),
    movable(cmd("wasm.call", -2, &["noscript", "stale", "may_replicate", "no_mandatory_keys", "movablekeys"], NO_KEYS, Scripting, "Calls a function of a WebAssembly module: name[.export] [KEYS key ...] [ARGS arg ...].", "0.1.0"), MovableKeys::KeysKeyword),
    movable(cmd("wasm.call_ro", -2, &["readonly", "noscript", "stale", "no_mandatory_keys", "movablekeys"], NO_KEYS, Scripting, "Calls a function of a WebAssembly module; every write is refused.", "0.1.0"), MovableKeys::KeysKeyword),
    cmd("wasm.info", 2, &["noscript", "loading", "stale"], NO_KEYS, Scripting, "Returns a module's metadata and call statistics.", "0.1.0"),
    cmd("wasm.list", -1, &["noscript", "loading", "stale"], NO_KEYS, Scripting, "Lists loaded WebAssembly modules [WITHSTATS].", "0.1.0"),
    cmd("wasm.load", -3, &["write", "denyoom", "noscript"], NO_KEYS, Scripting, "Loads a WebAssembly module: name bytes [REPLACE] [PERMISSIONS perm ...].", "0.1.0"),
    cmd("wasm.stats", 1, &["noscript", "loading", "stale"], NO_KEYS, Scripting, "Returns totals over all WebAssembly calls.", "0.1.0"),
    cmd("wasm.unload", 2, &["write", "noscript"], NO_KEYS, Scripting, "Unloads a WebAssembly module.", "0.1.0"),
    cmd("watch", -2, TX, ALL_KEYS, Transactions, "Monitors changes to keys to determine the execution of a transaction.", "2.2.0"),
];

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

/// The subcommand spec of a container for `sub` (any case).
pub fn subcommand(container: &'static CommandSpec, sub: &[u8]) -> Option<&'static CommandSpec> {
    let sub = sub.to_ascii_lowercase();
    container.subcommands.iter().find(|s| {
        s.name
            .split_once('|')
            .is_some_and(|(_, n)| n.as_bytes() == sub.as_slice())
    })
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
        assert_eq!(subcommand(config, b"GET").unwrap().name, "config|get");
    }

    #[test]
    fn keys_follow_first_last_step() {
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
    }

    #[test]
    fn every_command_info_has_ten_fields() {
        for spec in COMMANDS {
            let Reply::Array(fields) = spec.info() else {
                panic!()
            };
            assert_eq!(fields.len(), 10, "{}", spec.name);
        }
    }
}
