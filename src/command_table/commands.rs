//! The table itself: one line per command, sorted by name. Written by hand from Redis 7's
//! command documentation (arity, flags, key positions, summary, first version) plus Ferrite's
//! own commands.

use super::{
    Cluster, CommandSpec, Connection, Flags, Functions, Group, Handler, Keys, Server, Transaction,
};

/// A command that another layer than the keyspace handles.
#[allow(clippy::too_many_arguments)]
const fn cmd(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: Keys,
    group: Group,
    handler: Handler,
    summary: &'static str,
    since: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        keys,
        group,
        handler,
        summary,
        since,
        subcommands: &[],
    }
}

/// A data command: parsed by the keyspace, run by the node.
const fn data(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: Keys,
    group: Group,
    summary: &'static str,
    since: &'static str,
) -> CommandSpec {
    cmd(
        name,
        arity,
        flags,
        keys,
        group,
        Handler::Data,
        summary,
        since,
    )
}

/// A container of subcommands (CLIENT, CLUSTER, COMMAND, CONFIG); its handler runs them all.
const fn container(
    name: &'static str,
    group: Group,
    handler: Handler,
    summary: &'static str,
    subcommands: &'static [CommandSpec],
) -> CommandSpec {
    CommandSpec {
        name,
        arity: -2,
        flags: Flags::empty(),
        keys: Keys::None,
        group,
        handler,
        summary,
        since: "2.0.0",
        subcommands,
    }
}

const fn range(first: i32, last: i32, step: i32) -> Keys {
    Keys::Range { first, last, step }
}

const NO_KEYS: Keys = Keys::None;
const ONE_KEY: Keys = range(1, 1, 1);
const ALL_KEYS: Keys = range(1, -1, 1);

const R: Flags = Flags::READONLY;
const RF: Flags = Flags::READONLY.union(Flags::FAST);
const W: Flags = Flags::WRITE;
const WF: Flags = Flags::WRITE.union(Flags::FAST);
const WM: Flags = Flags::WRITE.union(Flags::DENYOOM);
const WMF: Flags = WM.union(Flags::FAST);
const CONN: Flags = TX.union(Flags::NO_AUTH);
const TX: Flags = INFO.union(Flags::FAST).union(Flags::ALLOW_BUSY);
const INFO: Flags = Flags::NOSCRIPT.union(LOADING_STALE);
const ADMIN_INFO: Flags = INFO.union(Flags::ADMIN);
const LOADING_STALE: Flags = Flags::LOADING.union(Flags::STALE);
const LOADING_STALE_FAST: Flags = LOADING_STALE.union(Flags::FAST);
const MEMBERSHIP: Flags = Flags::ADMIN
    .union(Flags::STALE)
    .union(Flags::NO_ASYNC_LOADING);
const CALL: Flags = Flags::NOSCRIPT
    .union(Flags::STALE)
    .union(Flags::MAY_REPLICATE)
    .union(Flags::NO_MANDATORY_KEYS);
const CALL_RO: Flags = Flags::READONLY
    .union(Flags::NOSCRIPT)
    .union(Flags::STALE)
    .union(Flags::NO_MANDATORY_KEYS);

#[rustfmt::skip]
const CLIENT_SUBCOMMANDS: &[CommandSpec] = &[
    cmd("client|getname", 2, INFO, NO_KEYS, Group::Connection, Handler::Connection(Connection::Client), "Returns the name of the connection.", "2.6.9"),
    cmd("client|id", 2, INFO, NO_KEYS, Group::Connection, Handler::Connection(Connection::Client), "Returns the unique client ID of the connection.", "5.0.0"),
    cmd("client|info", 2, INFO, NO_KEYS, Group::Connection, Handler::Connection(Connection::Client), "Returns information about the connection.", "6.2.0"),
    cmd("client|list", -2, ADMIN_INFO, NO_KEYS, Group::Connection, Handler::Connection(Connection::Client), "Lists open connections.", "2.4.0"),
    cmd("client|setinfo", 4, INFO, NO_KEYS, Group::Connection, Handler::Connection(Connection::Client), "Sets information specific to the client or connection.", "7.2.0"),
    cmd("client|setname", 3, INFO, NO_KEYS, Group::Connection, Handler::Connection(Connection::Client), "Sets the connection name.", "2.6.9"),
];

#[rustfmt::skip]
const CLUSTER_SUBCOMMANDS: &[CommandSpec] = &[
    cmd("cluster|addnode", 4, MEMBERSHIP, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::Cluster), "Adds a node to the Raft group (learner, then voter): id host:port[@cport].", "0.1.0"),
    cmd("cluster|countkeysinslot", 3, Flags::STALE, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::Cluster), "Returns the number of keys in a hash slot.", "3.0.0"),
    cmd("cluster|getkeysinslot", 4, Flags::STALE, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::Cluster), "Returns the key names in a hash slot.", "3.0.0"),
    cmd("cluster|info", 2, Flags::STALE, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::Cluster), "Returns information about the state of a node.", "3.0.0"),
    cmd("cluster|keyslot", 3, Flags::STALE, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::Cluster), "Returns the hash slot for a key.", "3.0.0"),
    cmd("cluster|myid", 2, Flags::STALE, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::Cluster), "Returns the ID of a node.", "3.0.0"),
    cmd("cluster|nodes", 2, Flags::STALE, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::Cluster), "Returns the cluster configuration for a node.", "3.0.0"),
    cmd("cluster|removenode", 3, MEMBERSHIP, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::Cluster), "Removes a node from the Raft group: id.", "0.1.0"),
    cmd("cluster|shards", 2, Flags::STALE, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::Cluster), "Returns the mapping of cluster slots to shards.", "7.0.0"),
    cmd("cluster|slots", 2, Flags::STALE, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::Cluster), "Returns the mapping of cluster slots to nodes.", "3.0.0"),
];

#[rustfmt::skip]
const CONFIG_SUBCOMMANDS: &[CommandSpec] = &[
    cmd("config|get", -3, ADMIN_INFO, NO_KEYS, Group::Server, Handler::Server(Server::Config), "Returns the effective values of configuration parameters.", "2.0.0"),
    cmd("config|resetstat", 2, ADMIN_INFO, NO_KEYS, Group::Server, Handler::Server(Server::Config), "Resets the server's statistics.", "2.0.0"),
    cmd("config|set", -4, ADMIN_INFO, NO_KEYS, Group::Server, Handler::Server(Server::Config), "Sets configuration parameters in-flight.", "2.0.0"),
];

#[rustfmt::skip]
const COMMAND_SUBCOMMANDS: &[CommandSpec] = &[
    cmd("command|count", 2, LOADING_STALE, NO_KEYS, Group::Server, Handler::Server(Server::Command), "Returns a count of commands.", "2.8.13"),
    cmd("command|docs", -2, LOADING_STALE, NO_KEYS, Group::Server, Handler::Server(Server::Command), "Returns documentary information about one, multiple or all commands.", "7.0.0"),
    cmd("command|getkeys", -4, LOADING_STALE, NO_KEYS, Group::Server, Handler::Server(Server::Command), "Extracts the key names from an arbitrary command.", "2.8.13"),
    cmd("command|info", -2, LOADING_STALE, NO_KEYS, Group::Server, Handler::Server(Server::Command), "Returns information about one, multiple or all commands.", "2.8.13"),
    cmd("command|list", -2, LOADING_STALE, NO_KEYS, Group::Server, Handler::Server(Server::Command), "Returns a list of command names.", "7.0.0"),
];

/// Every command, sorted by name.
#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    data("append", 3, WMF, ONE_KEY, Group::String, "Appends a string to the value of a key. Creates the key if it doesn't exist.", "2.0.0"),
    cmd("asking", 1, Flags::FAST, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::Asking), "Signals that a cluster client is following an -ASK redirect.", "3.0.0"),
    cmd("auth", -2, CONN, NO_KEYS, Group::Connection, Handler::Connection(Connection::Auth), "Authenticates the connection.", "1.0.0"),
    container("client", Group::Connection, Handler::Connection(Connection::Client), "A container for client connection commands.", CLIENT_SUBCOMMANDS),
    container("cluster", Group::Cluster, Handler::Cluster(Cluster::Cluster), "A container for Redis Cluster commands.", CLUSTER_SUBCOMMANDS),
    CommandSpec {
        arity: -1,
        flags: LOADING_STALE,
        ..container("command", Group::Server, Handler::Server(Server::Command), "Returns detailed information about all commands.", COMMAND_SUBCOMMANDS)
    },
    container("config", Group::Server, Handler::Server(Server::Config), "A container for server configuration commands.", CONFIG_SUBCOMMANDS),
    data("dbsize", 1, RF, NO_KEYS, Group::Server, "Returns the number of keys in the database.", "1.0.0"),
    data("decr", 2, WMF, ONE_KEY, Group::String, "Decrements the integer value of a key by one.", "1.0.0"),
    data("decrby", 3, WMF, ONE_KEY, Group::String, "Decrements a number from the integer value of a key.", "1.0.0"),
    data("del", -2, W, ALL_KEYS, Group::Generic, "Deletes one or more keys.", "1.0.0"),
    cmd("discard", 1, TX, NO_KEYS, Group::Transactions, Handler::Transaction(Transaction::Discard), "Discards a transaction.", "2.0.0"),
    cmd("echo", 2, Flags::FAST, NO_KEYS, Group::Connection, Handler::Connection(Connection::Echo), "Returns the given string.", "1.0.0"),
    cmd("exec", 1, INFO.union(Flags::SKIP_SLOWLOG), NO_KEYS, Group::Transactions, Handler::Transaction(Transaction::Exec), "Executes all commands in a transaction.", "1.2.0"),
    data("exists", -2, RF, ALL_KEYS, Group::Generic, "Determines whether one or more keys exist.", "1.0.0"),
    data("expire", -3, WF, ONE_KEY, Group::Generic, "Sets the expiration time of a key in seconds.", "1.0.0"),
    data("expireat", -3, WF, ONE_KEY, Group::Generic, "Sets the expiration time of a key to a Unix timestamp.", "1.2.0"),
    data("expiretime", 2, RF, ONE_KEY, Group::Generic, "Returns the expiration time of a key as a Unix timestamp.", "7.0.0"),
    cmd("fcall", -3, CALL, Keys::Numkeys(2), Group::Scripting, Handler::Functions(Functions::Fcall), "Invokes a WebAssembly function (Redis 7 syntax: name numkeys key ... arg ...).", "7.0.0"),
    cmd("fcall_ro", -3, CALL_RO, Keys::Numkeys(2), Group::Scripting, Handler::Functions(Functions::FcallRo), "Invokes a WebAssembly function that may not write.", "7.0.0"),
    data("flushall", -1, W, NO_KEYS, Group::Server, "Removes all keys from all databases.", "1.0.0"),
    data("flushdb", -1, W, NO_KEYS, Group::Server, "Remove all keys from the current database.", "1.0.0"),
    data("get", 2, RF, ONE_KEY, Group::String, "Returns the string value of a key.", "1.0.0"),
    data("getdel", 2, WF, ONE_KEY, Group::String, "Returns the string value of a key after deleting the key.", "6.2.0"),
    data("getex", -2, WF, ONE_KEY, Group::String, "Returns the string value of a key after setting its expiration time.", "6.2.0"),
    data("getrange", 4, R, ONE_KEY, Group::String, "Returns a substring of the string stored at a key.", "2.4.0"),
    data("getset", 3, WMF, ONE_KEY, Group::String, "Returns the previous string value of a key after setting it to a new value.", "1.0.0"),
    data("hdel", -3, WF, ONE_KEY, Group::Hash, "Deletes one or more fields and their values from a hash.", "2.0.0"),
    cmd("hello", -1, CONN, NO_KEYS, Group::Connection, Handler::Connection(Connection::Hello), "Handshakes with the Redis server.", "6.0.0"),
    data("hexists", 3, RF, ONE_KEY, Group::Hash, "Determines whether a field exists in a hash.", "2.0.0"),
    data("hget", 3, RF, ONE_KEY, Group::Hash, "Returns the value of a field in a hash.", "2.0.0"),
    data("hgetall", 2, R, ONE_KEY, Group::Hash, "Returns all fields and values in a hash.", "2.0.0"),
    data("hincrby", 4, WMF, ONE_KEY, Group::Hash, "Increments the integer value of a field in a hash by a number.", "2.0.0"),
    data("hincrbyfloat", 4, WMF, ONE_KEY, Group::Hash, "Increments the floating point value of a field by a number.", "2.6.0"),
    data("hkeys", 2, R, ONE_KEY, Group::Hash, "Returns all fields in a hash.", "2.0.0"),
    data("hlen", 2, RF, ONE_KEY, Group::Hash, "Returns the number of fields in a hash.", "2.0.0"),
    data("hmget", -3, RF, ONE_KEY, Group::Hash, "Returns the values of all fields in a hash.", "2.0.0"),
    data("hmset", -4, WMF, ONE_KEY, Group::Hash, "Sets the values of multiple fields.", "2.0.0"),
    data("hscan", -3, R, ONE_KEY, Group::Hash, "Iterates over fields and values of a hash.", "2.8.0"),
    data("hset", -4, WMF, ONE_KEY, Group::Hash, "Creates or modifies the value of a field in a hash.", "2.0.0"),
    data("hsetnx", 4, WMF, ONE_KEY, Group::Hash, "Sets the value of a field in a hash only when the field doesn't exist.", "2.0.0"),
    data("hstrlen", 3, RF, ONE_KEY, Group::Hash, "Returns the length of the value of a field.", "3.2.0"),
    data("hvals", 2, R, ONE_KEY, Group::Hash, "Returns all values in a hash.", "2.0.0"),
    data("incr", 2, WMF, ONE_KEY, Group::String, "Increments the integer value of a key by one.", "1.0.0"),
    data("incrby", 3, WMF, ONE_KEY, Group::String, "Increments the integer value of a key by a number.", "1.0.0"),
    data("incrbyfloat", 3, WMF, ONE_KEY, Group::String, "Increment the floating point value of a key by a number.", "2.6.0"),
    cmd("info", -1, LOADING_STALE, NO_KEYS, Group::Server, Handler::Server(Server::Info), "Returns information and statistics about the server.", "1.0.0"),
    data("keys", 2, R, NO_KEYS, Group::Generic, "Returns all key names that match a pattern.", "1.0.0"),
    data("lindex", 3, R, ONE_KEY, Group::List, "Returns an element from a list by its index.", "1.0.0"),
    data("llen", 2, RF, ONE_KEY, Group::List, "Returns the length of a list.", "1.0.0"),
    data("lpop", -2, WF, ONE_KEY, Group::List, "Returns the first elements in a list after removing it.", "1.0.0"),
    data("lpush", -3, WMF, ONE_KEY, Group::List, "Prepends one or more elements to a list.", "1.0.0"),
    data("lrange", 4, R, ONE_KEY, Group::List, "Returns a range of elements from a list.", "1.0.0"),
    data("lrem", 4, W, ONE_KEY, Group::List, "Removes elements from a list.", "1.0.0"),
    data("lset", 4, WM, ONE_KEY, Group::List, "Sets the value of an element in a list by its index.", "1.0.0"),
    data("ltrim", 4, W, ONE_KEY, Group::List, "Removes elements from both ends a list.", "1.0.0"),
    data("mget", -2, RF, ALL_KEYS, Group::String, "Atomically returns the string values of one or more keys.", "1.0.0"),
    data("mset", -3, WM, range(1, -1, 2), Group::String, "Atomically creates or modifies the string values of one or more keys.", "1.0.1"),
    data("msetnx", -3, WM, range(1, -1, 2), Group::String, "Atomically modifies the string values of keys only when all keys don't exist.", "1.0.1"),
    cmd("multi", 1, TX, NO_KEYS, Group::Transactions, Handler::Transaction(Transaction::Multi), "Starts a transaction.", "1.2.0"),
    data("persist", 2, WF, ONE_KEY, Group::Generic, "Removes the expiration time of a key.", "2.2.0"),
    data("pexpire", -3, WF, ONE_KEY, Group::Generic, "Sets the expiration time of a key in milliseconds.", "2.6.0"),
    data("pexpireat", -3, WF, ONE_KEY, Group::Generic, "Sets the expiration time of a key to a Unix milliseconds timestamp.", "2.6.0"),
    data("pexpiretime", 2, RF, ONE_KEY, Group::Generic, "Returns the expiration time of a key as a Unix milliseconds timestamp.", "7.0.0"),
    cmd("ping", -1, Flags::FAST, NO_KEYS, Group::Connection, Handler::Connection(Connection::Ping), "Returns the server's liveliness response.", "1.0.0"),
    data("psetex", 4, WM, ONE_KEY, Group::String, "Sets both string value and expiration time in milliseconds of a key.", "2.6.0"),
    data("pttl", 2, RF, ONE_KEY, Group::Generic, "Returns the expiration time in milliseconds of a key.", "2.6.0"),
    cmd("quit", -1, CONN, NO_KEYS, Group::Connection, Handler::Connection(Connection::Quit), "Closes the connection.", "1.0.0"),
    data("randomkey", 1, R, NO_KEYS, Group::Generic, "Returns a random key name from the database.", "1.0.0"),
    cmd("readonly", 1, LOADING_STALE_FAST, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::ReadOnly), "Enables read-only queries (stale reads) for a connection to a replica.", "3.0.0"),
    cmd("readwrite", 1, LOADING_STALE_FAST, NO_KEYS, Group::Cluster, Handler::Cluster(Cluster::ReadWrite), "Disables read-only queries for a connection to a replica.", "3.0.0"),
    data("rename", 3, W, range(1, 2, 1), Group::Generic, "Renames a key and overwrites the destination.", "1.0.0"),
    data("renamenx", 3, WF, range(1, 2, 1), Group::Generic, "Renames a key only when the target key name doesn't exist.", "1.0.0"),
    cmd("reset", 1, CONN, NO_KEYS, Group::Connection, Handler::Connection(Connection::Reset), "Resets the connection.", "6.2.0"),
    data("rpop", -2, WF, ONE_KEY, Group::List, "Returns and removes the last elements of a list.", "1.0.0"),
    data("rpush", -3, WMF, ONE_KEY, Group::List, "Appends one or more elements to a list.", "1.0.0"),
    data("sadd", -3, WMF, ONE_KEY, Group::Set, "Adds one or more members to a set.", "1.0.0"),
    data("scan", -2, R, NO_KEYS, Group::Generic, "Iterates over the key names in the database.", "2.8.0"),
    data("scard", 2, RF, ONE_KEY, Group::Set, "Returns the number of members in a set.", "1.0.0"),
    cmd("select", 2, LOADING_STALE_FAST, NO_KEYS, Group::Connection, Handler::Connection(Connection::Select), "Changes the selected database.", "1.0.0"),
    data("set", -3, WM, ONE_KEY, Group::String, "Sets the string value of a key, ignoring its type.", "1.0.0"),
    data("setex", 4, WM, ONE_KEY, Group::String, "Sets the string value and expiration time of a key.", "2.0.0"),
    data("setnx", 3, WMF, ONE_KEY, Group::String, "Set the string value of a key only when the key doesn't exist.", "1.0.0"),
    data("setrange", 4, WM, ONE_KEY, Group::String, "Overwrites a part of a string value with another by an offset.", "2.2.0"),
    cmd("shutdown", -1, ADMIN_INFO.union(Flags::NO_MULTI).union(Flags::ALLOW_BUSY), NO_KEYS, Group::Server, Handler::Server(Server::Shutdown), "Synchronously saves the database(s) to disk and shuts down the Redis server.", "1.0.0"),
    data("sismember", 3, RF, ONE_KEY, Group::Set, "Determines whether a member belongs to a set.", "1.0.0"),
    data("smembers", 2, R, ONE_KEY, Group::Set, "Returns all members of a set.", "1.0.0"),
    data("spop", -2, WF, ONE_KEY, Group::Set, "Returns one or more random members from a set after removing them.", "1.0.0"),
    data("srandmember", -2, R, ONE_KEY, Group::Set, "Get one or multiple random members from a set.", "1.0.0"),
    data("srem", -3, WF, ONE_KEY, Group::Set, "Removes one or more members from a set.", "1.0.0"),
    data("strlen", 2, RF, ONE_KEY, Group::String, "Returns the length of a string value.", "2.2.0"),
    data("substr", 4, R, ONE_KEY, Group::String, "Returns a substring from a string value.", "1.0.0"),
    cmd("time", 1, LOADING_STALE_FAST, NO_KEYS, Group::Server, Handler::Server(Server::Time), "Returns the server time.", "2.6.0"),
    data("ttl", 2, RF, ONE_KEY, Group::Generic, "Returns the expiration time in seconds of a key.", "1.0.0"),
    data("type", 2, RF, ONE_KEY, Group::Generic, "Determines the type of value stored at a key.", "1.0.0"),
    data("unlink", -2, WF, ALL_KEYS, Group::Generic, "Asynchronously deletes one or more keys.", "4.0.0"),
    cmd("unwatch", 1, TX, NO_KEYS, Group::Transactions, Handler::Transaction(Transaction::Unwatch), "Forgets about watched keys of a transaction.", "2.2.0"),
    cmd("wasm.call", -2, CALL, Keys::KeysKeyword, Group::Scripting, Handler::Functions(Functions::Call), "Calls a function of a WebAssembly module: name[.export] [KEYS key ...] [ARGS arg ...].", "0.1.0"),
    cmd("wasm.call_ro", -2, CALL_RO, Keys::KeysKeyword, Group::Scripting, Handler::Functions(Functions::CallRo), "Calls a function of a WebAssembly module; every write is refused.", "0.1.0"),
    cmd("wasm.info", 2, INFO, NO_KEYS, Group::Scripting, Handler::Functions(Functions::Info), "Returns a module's metadata and call statistics.", "0.1.0"),
    cmd("wasm.list", -1, INFO, NO_KEYS, Group::Scripting, Handler::Functions(Functions::List), "Lists loaded WebAssembly modules [WITHSTATS].", "0.1.0"),
    cmd("wasm.load", -3, WM.union(Flags::NOSCRIPT), NO_KEYS, Group::Scripting, Handler::Functions(Functions::Load), "Loads a WebAssembly module: name bytes [REPLACE] [PERMISSIONS perm ...].", "0.1.0"),
    cmd("wasm.stats", 1, INFO, NO_KEYS, Group::Scripting, Handler::Functions(Functions::Stats), "Returns totals over all WebAssembly calls.", "0.1.0"),
    cmd("wasm.unload", 2, W.union(Flags::NOSCRIPT), NO_KEYS, Group::Scripting, Handler::Functions(Functions::Unload), "Unloads a WebAssembly module.", "0.1.0"),
    cmd("watch", -2, TX, ALL_KEYS, Group::Transactions, Handler::Transaction(Transaction::Watch), "Monitors changes to keys to determine the execution of a transaction.", "2.2.0"),
];
