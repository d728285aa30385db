//! Commands: from a decoded request to a reply.
//!
//! [`execute`] is the one entry point. It looks the command up in the table
//! ([`command_table`]), checks arity and authentication, queues inside MULTI, then dispatches
//! on the table's [`Handler`]: connection, server, cluster, function and transaction commands
//! are handled by the files of those names; every data command is parsed into a keyspace
//! [`Op`](crate::node::Op) and run by the [`Node`](crate::node::Node). Statistics are
//! kept here, around the dispatch. This layer never touches sockets, and reaches the layers below
//! only through the node's surface.

mod cluster;
mod connection;
mod error;
mod functions;
mod introspection;
mod server;
mod shared;
mod transactions;

pub use error::CommandError;
pub use functions::{check_allowed, default_permissions};
pub use shared::{LogLevelSetter, REDIS_COMPAT_VERSION, Session, Shared, random_hex_id};

use std::time::Instant;

use bytes::Bytes;

use crate::command_table::{self, CommandSpec, Flags, Handler};
use crate::node::{self, ReadMode, Ticket};
use crate::reply::Reply;

fn unknown_command(argv: &[Bytes]) -> CommandError {
    let args: String = argv[1..]
        .iter()
        .take(32)
        .map(|a| format!("'{}' ", String::from_utf8_lossy(&a[..a.len().min(128)])))
        .collect();
    CommandError::UnknownCommand {
        name: String::from_utf8_lossy(&argv[0][..argv[0].len().min(128)]).into_owned(),
        args,
    }
}

/// A decoded request, its command looked up once for everything that follows.
#[derive(Debug)]
pub struct Request {
    argv: Vec<Bytes>,
    /// The command's position in the table; `None` for an unknown command.
    index: Option<usize>,
}

impl Request {
    /// Looks up the command of `argv`, which is non-empty.
    pub fn new(argv: Vec<Bytes>) -> Request {
        let index = command_table::lookup_index(&argv[0]);
        Request { argv, index }
    }

    /// Whether the request keeps none of its arguments once its reply is made, outside MULTI:
    /// a data read (parsed into a read and dropped), or a function call (its words are copied
    /// into the guest's memory, or encoded for the log). Anything else may store them (the
    /// keyspace, a MULTI queue, the session, a module's bytes), so its arguments must not
    /// share a buffer the connection reuses.
    pub fn keeps_no_arguments(&self, session: &Session) -> bool {
        session.multi.is_none()
            && self.index.is_some_and(|i| {
                let spec = &command_table::COMMANDS[i];
                match spec.handler {
                    Handler::Data => !spec.is_write(),
                    Handler::Functions(command) => functions::is_call(command),
                    _ => false,
                }
            })
    }

    /// The words of the request, to copy them.
    pub fn argv_mut(&mut self) -> &mut [Bytes] {
        &mut self.argv
    }
}

/// Runs one request and returns its reply.
pub async fn execute(shared: &Shared, session: &mut Session, request: Request) -> Reply {
    let Request { argv, index } = request;
    let Some(index) = index else {
        session.multi_failed |= session.multi.is_some();
        session.stats.record_rejected();
        return rejected(shared, None, unknown_command(&argv));
    };
    let spec = &command_table::COMMANDS[index];
    let started = session.lap.take().unwrap_or_else(Instant::now);
    session.client.touch(spec.name, started);
    if let Err(e) = check(spec, session, &argv) {
        session.multi_failed |= session.multi.is_some();
        session.stats.record_rejected();
        return rejected(shared, Some(index), e);
    }
    if let Some(queue) = &mut session.multi
        && !spec.handler.runs_inside_multi()
    {
        queue.push(argv);
        return Reply::Status("QUEUED".to_owned());
    }
    let reply = run(shared, session, spec, argv).await;
    account(shared, session, index, started, &reply);
    reply
}

/// Counts a command that ran: its latency, and its error if it failed. Its end is the start
/// of the connection's next command, until the connection reads again.
fn account(shared: &Shared, session: &mut Session, index: usize, started: Instant, reply: &Reply) {
    let ended = Instant::now();
    session.lap = Some(ended);
    session.stats.record(
        index,
        u64::try_from(ended.duration_since(started).as_nanos()).unwrap_or(u64::MAX),
        reply.is_error(),
    );
    if let Reply::Error(line) = reply {
        shared.stats.record_error(line);
    }
}

/// Whether `argv` is a write this session may pipeline ([`execute_deferred`]): a keyspace
/// write, or a call that goes through the log (`FCALL` or `WASM.CALL` of a module loaded with
/// WRITE), outside MULTI. A connection queues such writes to the log back to back, without
/// waiting for each reply, so the writes of one pipeline share log entries and fsyncs.
pub fn deferrable(shared: &Shared, session: &Session, request: &Request) -> bool {
    if session.multi.is_some() || !session.authenticated {
        return false;
    }
    let Some(index) = request.index else {
        return false;
    };
    let spec = &command_table::COMMANDS[index];
    match (spec.is_write(), spec.handler) {
        (true, Handler::Data) => true,
        (_, Handler::Functions(command)) => functions::defers(shared, command, &request.argv[1..]),
        _ => false,
    }
}

/// The result of [`execute_deferred`].
#[derive(Debug)]
pub enum Step {
    /// Answered at once (refused, or an error).
    Now(Reply),
    /// Queued to the log; [`finish`] gives the reply.
    Later(Deferred),
}

/// A write queued to the log whose reply is still to come.
#[derive(Debug)]
pub struct Deferred {
    ticket: Ticket,
    index: usize,
    started: Instant,
}

/// Runs a command [`deferrable`] said may be pipelined: the same checks as [`execute`], then
/// the write is queued to the log without waiting. Every command before it must have been
/// answered or queued, and none after it may run before [`finish`] unless it is queued too.
pub fn execute_deferred(shared: &Shared, session: &mut Session, request: Request) -> Step {
    let Request { argv, index } = request;
    let Some(index) = index else {
        return Step::Now(rejected(shared, None, unknown_command(&argv)));
    };
    let spec = &command_table::COMMANDS[index];
    let started = session.lap.take().unwrap_or_else(Instant::now);
    session.client.touch(spec.name, started);
    if let Err(e) = check(spec, session, &argv) {
        session.stats.record_rejected();
        return Step::Now(rejected(shared, Some(index), e));
    }
    let submitted = match spec.handler {
        Handler::Functions(command) => functions::submit(shared, command, &argv[1..]),
        _ => submit_op(shared, spec, &argv),
    };
    let reply = match submitted {
        Ok(ticket) => {
            return Step::Later(Deferred {
                ticket,
                index,
                started,
            });
        }
        Err(reply) => reply,
    };
    account(shared, session, index, started, &reply);
    Step::Now(reply)
}

/// Parses the data write `argv` and queues it for the log.
fn submit_op(shared: &Shared, spec: &CommandSpec, argv: &[Bytes]) -> Result<Ticket, Reply> {
    command_keys_in_one_slot(spec, argv).map_err(Reply::error)?;
    let ctx = shared.node.parse_ctx();
    match node::parse(spec.name, &argv[1..], &ctx) {
        Some(Ok(op)) => shared.node.submit(op, &ctx).map_err(Reply::error),
        Some(Err(e)) => Err(Reply::error(e)),
        None => Err(Reply::error(unknown_command(argv))),
    }
}

/// Waits for a deferred write's reply and counts it.
pub async fn finish(shared: &Shared, session: &mut Session, deferred: Deferred) -> Reply {
    let reply = deferred.ticket.wait().await;
    account(shared, session, deferred.index, deferred.started, &reply);
    reply
}

/// The checks before a command runs: arity (subcommands included), authentication, and
/// commands that cannot be queued.
fn check(
    spec: &'static CommandSpec,
    session: &Session,
    argv: &[Bytes],
) -> Result<(), CommandError> {
    if !spec.arity_ok(argv.len()) {
        return Err(CommandError::WrongArity(spec.name.to_owned()));
    }
    if !session.authenticated && !spec.flags.contains(Flags::NO_AUTH) {
        return Err(CommandError::NoAuth);
    }
    if !spec.subcommands.is_empty() && argv.len() > 1 {
        let sub = spec
            .subcommand(&argv[1])
            .ok_or_else(|| CommandError::UnknownSubcommand {
                sub: String::from_utf8_lossy(&argv[1]).into_owned(),
                container: spec.name.to_ascii_uppercase(),
            })?;
        if !sub.arity_ok(argv.len()) {
            return Err(CommandError::WrongArity(sub.name.to_owned()));
        }
    }
    if session.multi.is_some() && spec.flags.contains(Flags::NO_MULTI) {
        return Err(CommandError::NotInMulti);
    }
    Ok(())
}

/// Counts and returns a refusal that happened before the command ran.
fn rejected(shared: &Shared, index: Option<usize>, error: CommandError) -> Reply {
    if let Some(index) = index {
        shared.stats.commands[index]
            .rejected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let reply = Reply::error(error);
    if let Reply::Error(line) = &reply {
        shared.stats.record_error(line);
    }
    reply
}

/// Dispatches a checked command to its handler.
async fn run(
    shared: &Shared,
    session: &mut Session,
    spec: &'static CommandSpec,
    argv: Vec<Bytes>,
) -> Reply {
    let result = match spec.handler {
        Handler::Data => return data(shared, session, spec, &argv).await,
        Handler::Connection(command) => connection::execute(shared, session, command, &argv),
        Handler::Server(command) => server::execute(shared, command, &argv),
        Handler::Cluster(command) => cluster::execute(shared, session, command, &argv).await,
        Handler::Functions(command) => functions::execute(shared, session, command, &argv).await,
        Handler::Transaction(command) => {
            return transactions::execute(shared, session, command, argv).await;
        }
    };
    result.unwrap_or_else(Reply::error)
}

/// How this session's reads may be served: linearizable reads confirm leadership in a round
/// that started after the request's bytes arrived.
fn read_mode(shared: &Shared, session: &Session) -> ReadMode {
    if session.readonly {
        ReadMode::Local
    } else {
        ReadMode::Linearizable(session.arrived.unwrap_or_else(|| shared.node.read_epoch()))
    }
}

/// [`same_slot`] for the keys of the data command `argv`; a command that names at most one
/// key passes without its keys being collected.
fn command_keys_in_one_slot(spec: &CommandSpec, argv: &[Bytes]) -> Result<(), CommandError> {
    if spec.at_most_one_key() {
        return Ok(());
    }
    same_slot(spec.keys(argv))
}

/// `CROSSSLOT` unless every key hashes to one slot (Redis Cluster's rule: the cluster is one
/// shard today, but clients and scripts written against it stay portable).
fn same_slot<'a>(keys: impl IntoIterator<Item = &'a Bytes>) -> Result<(), CommandError> {
    let mut keys = keys.into_iter();
    let (Some(first), Some(second)) = (keys.next(), keys.next()) else {
        // One key or none: nothing to compare, no hash to compute.
        return Ok(());
    };
    let slot = crate::slot::key_slot(first);
    if std::iter::once(second)
        .chain(keys)
        .any(|k| crate::slot::key_slot(k) != slot)
    {
        return Err(CommandError::CrossSlot);
    }
    Ok(())
}

/// Parses and runs a data command through the node.
async fn data(
    shared: &Shared,
    session: &Session,
    spec: &'static CommandSpec,
    argv: &[Bytes],
) -> Reply {
    // Before parsing, as Redis routes before it validates arguments.
    if let Err(e) = command_keys_in_one_slot(spec, argv) {
        return Reply::error(e);
    }
    let ctx = shared.node.parse_ctx();
    match node::parse(spec.name, &argv[1..], &ctx) {
        Some(Ok(op)) => {
            shared
                .node
                .execute(op, &ctx, read_mode(shared, session))
                .await
        }
        Some(Err(e)) => Reply::error(e),
        None => Reply::error(unknown_command(argv)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::ParseCtx;

    /// A valid invocation of every data command (name excluded).
    const EXAMPLES: &[(&str, &[&str])] = &[
        ("append", &["k", "v"]),
        ("dbsize", &[]),
        ("decr", &["k"]),
        ("decrby", &["k", "2"]),
        ("del", &["k", "l"]),
        ("exists", &["k"]),
        ("expire", &["k", "10"]),
        ("expireat", &["k", "10"]),
        ("expiretime", &["k"]),
        ("flushall", &[]),
        ("flushdb", &["ASYNC"]),
        ("get", &["k"]),
        ("getdel", &["k"]),
        ("getex", &["k", "PX", "10"]),
        ("getrange", &["k", "0", "-1"]),
        ("getset", &["k", "v"]),
        ("hdel", &["h", "f"]),
        ("hexists", &["h", "f"]),
        ("hget", &["h", "f"]),
        ("hgetall", &["h"]),
        ("hincrby", &["h", "f", "1"]),
        ("hincrbyfloat", &["h", "f", "1.5"]),
        ("hkeys", &["h"]),
        ("hlen", &["h"]),
        ("hmget", &["h", "f", "g"]),
        ("hmset", &["h", "f", "v"]),
        ("hscan", &["h", "0", "COUNT", "5"]),
        ("hset", &["h", "f", "v"]),
        ("hsetnx", &["h", "f", "v"]),
        ("hstrlen", &["h", "f"]),
        ("hvals", &["h"]),
        ("incr", &["k"]),
        ("incrby", &["k", "3"]),
        ("incrbyfloat", &["k", "0.5"]),
        ("keys", &["*"]),
        ("lindex", &["l", "0"]),
        ("llen", &["l"]),
        ("lpop", &["l", "2"]),
        ("lpush", &["l", "a", "b"]),
        ("lrange", &["l", "0", "-1"]),
        ("lrem", &["l", "0", "a"]),
        ("lset", &["l", "0", "a"]),
        ("ltrim", &["l", "0", "1"]),
        ("mget", &["a", "b"]),
        ("mset", &["a", "1", "b", "2"]),
        ("msetnx", &["a", "1"]),
        ("persist", &["k"]),
        ("pexpire", &["k", "100", "NX"]),
        ("pexpireat", &["k", "100"]),
        ("pexpiretime", &["k"]),
        ("psetex", &["k", "100", "v"]),
        ("pttl", &["k"]),
        ("randomkey", &[]),
        ("rename", &["a", "b"]),
        ("renamenx", &["a", "b"]),
        ("rpop", &["l"]),
        ("rpush", &["l", "a"]),
        ("sadd", &["s", "m"]),
        ("scan", &["0", "MATCH", "*", "TYPE", "string"]),
        ("scard", &["s"]),
        ("set", &["k", "v", "EX", "10", "GET"]),
        ("setex", &["k", "10", "v"]),
        ("setnx", &["k", "v"]),
        ("setrange", &["k", "2", "v"]),
        ("sismember", &["s", "m"]),
        ("smembers", &["s"]),
        ("spop", &["s", "2"]),
        ("srandmember", &["s", "-2"]),
        ("srem", &["s", "m"]),
        ("strlen", &["k"]),
        ("substr", &["k", "0", "1"]),
        ("ttl", &["k"]),
        ("type", &["k"]),
        ("unlink", &["k"]),
    ];

    fn words(args: &[&str]) -> Vec<Bytes> {
        args.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    /// Every command the table hands to the keyspace parses (with a valid example), and its
    /// operation writes exactly when the table's `write` flag says so, or a write could skip
    /// the log. A data command without an example fails the test instead of being skipped.
    #[test]
    fn data_commands_parse_and_their_write_flags_match_the_operations() {
        let ctx = ParseCtx { now_ms: 1, seed: 0 };
        let mut checked = 0;
        for spec in command_table::COMMANDS
            .iter()
            .filter(|s| s.handler == Handler::Data)
        {
            let (_, args) = EXAMPLES
                .iter()
                .find(|(name, _)| *name == spec.name)
                .unwrap_or_else(|| panic!("no example for the data command {}", spec.name));
            assert!(
                spec.arity_ok(args.len() + 1),
                "{}: example arity",
                spec.name
            );
            let op = match node::parse(spec.name, &words(args), &ctx) {
                Some(Ok(op)) => op,
                other => panic!("{} {args:?} did not parse: {other:?}", spec.name),
            };
            assert_eq!(op.is_write(), spec.is_write(), "{}", spec.name);
            checked += 1;
        }
        assert_eq!(checked, EXAMPLES.len(), "an example names no data command");
    }

    /// The keyspace parses nothing the table hands elsewhere: dispatch by handler and the
    /// keyspace's own parsers agree.
    #[test]
    fn only_data_commands_reach_the_keyspace() {
        let ctx = ParseCtx { now_ms: 0, seed: 0 };
        let args: Vec<Bytes> = (0..8).map(|_| Bytes::from_static(b"1")).collect();
        for spec in command_table::COMMANDS
            .iter()
            .filter(|s| s.handler != Handler::Data)
        {
            assert!(
                node::parse(spec.name, &args, &ctx).is_none(),
                "{} is parsed by the keyspace but dispatched elsewhere",
                spec.name
            );
        }
    }

    /// Only a data read or a function call outside MULTI may keep its arguments in the
    /// connection's read buffer: everything that may store an argument gets copies.
    #[test]
    fn only_data_reads_and_calls_outside_multi_keep_no_arguments() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let client = crate::clients::Clients::default()
            .register(addr, addr, 1)
            .unwrap();
        let mut session = Session::new(client, true);
        let request = |w: &[&str]| Request::new(words(w));
        assert!(request(&["GET", "k"]).keeps_no_arguments(&session));
        assert!(request(&["mget", "a", "b"]).keeps_no_arguments(&session));
        for call in [
            &["FCALL", "f", "0"][..],
            &["fcall_ro", "f", "1", "k"],
            &["WASM.CALL", "m", "KEYS", "k"],
            &["WASM.CALL_RO", "m.f"],
        ] {
            assert!(request(call).keeps_no_arguments(&session), "{call:?}");
        }
        for stores in [
            &["SET", "k", "v"][..],
            &["WATCH", "k"],
            &["CLIENT", "SETNAME", "n"],
            &["WASM.LOAD", "m", "(module)"],
            &["NOSUCH", "k"],
        ] {
            assert!(!request(stores).keeps_no_arguments(&session), "{stores:?}");
        }
        session.multi = Some(Vec::new());
        assert!(!request(&["GET", "k"]).keeps_no_arguments(&session));
    }

    #[test]
    fn unknown_command_errors_quote_their_arguments() {
        let argv: Vec<Bytes> = ["FOO", "a", "b"].iter().map(|s| Bytes::from(*s)).collect();
        assert_eq!(
            Reply::error(unknown_command(&argv)),
            Reply::Error("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ".into())
        );
    }
}
