//! Commands: from a decoded request to a reply.
//!
//! [`execute`] is the one entry point. It looks the command up in the table ([`spec`]), checks
//! arity and authentication, queues inside MULTI, then dispatches: connection, server and
//! transaction commands are handled by the files of those names; every data command is parsed
//! into a keyspace [`Op`](crate::keyspace::Op) and run by the [`Node`]. Statistics are kept
//! here, around the dispatch. This layer never touches sockets.

mod cluster;
mod connection;
mod server;
mod transactions;
mod wasm;

pub use wasm::preload_modules;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::RwLock;
use thiserror::Error;

use crate::clients::{ClientInfo, Clients};
use crate::config::Config;
use crate::keyspace::{self, WatchToken};
use crate::net::Dialer;
use crate::node::{Node, NodeOptions, ReadMode, StartError};
use crate::replication::{self, Member};
use crate::reply::{RedisError, Reply};
use crate::spec::{self, CommandSpec};
use crate::stats::{LocalStats, Stats};
use crate::wasm::EngineSettings;

/// The Redis version Ferrite reports to clients (HELLO, INFO), i.e. the command set it follows.
pub const REDIS_COMPAT_VERSION: &str = "7.2.4";

/// Changes the log level at run time (`CONFIG SET loglevel`); installed by the binary.
pub type LogLevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// State shared by every connection.
pub struct Shared {
    /// The engine.
    pub node: Node,
    /// The live configuration (CONFIG GET/SET).
    pub config: RwLock<Config>,
    /// Connected clients.
    pub clients: Clients,
    /// INFO counters.
    pub stats: Stats,
    /// Start time, for uptime.
    pub started: Instant,
    /// Fires when the server should stop (SHUTDOWN, signals).
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// Applies a new log level.
    pub log_level: LogLevelSetter,
    /// 40-hex id of this process, for INFO's run_id.
    pub run_id: String,
    /// The port actually listened on.
    pub port: u16,
    /// The configuration file, if any, for INFO.
    pub config_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Starts the node for a server listening for clients on `port` and for Raft peers on
    /// `cluster_port`, recovering its state from the data directory, and bootstraps the
    /// cluster if this node should ([`Shared::bootstrap`]).
    pub async fn start<D: Dialer>(
        config: Config,
        port: u16,
        cluster_port: u16,
        config_file: Option<std::path::PathBuf>,
        log_level: LogLevelSetter,
        dialer: Arc<D>,
    ) -> Result<Shared, StartError> {
        let options = node_options(&config, port, cluster_port);
        let node = Node::start(options, dialer).await?;
        let shared = Shared::with_node(config, node, port, config_file, log_level);
        shared
            .bootstrap()
            .await
            .map_err(|e| StartError::Replication(replication::ReplicationError::Raft(e)))?;
        Ok(shared)
    }

    /// Shared state around a started node.
    pub fn with_node(
        config: Config,
        node: Node,
        port: u16,
        config_file: Option<std::path::PathBuf>,
        log_level: LogLevelSetter,
    ) -> Shared {
        let (shutdown, _) = tokio::sync::watch::channel(false);
        Shared {
            node,
            config: RwLock::new(config),
            clients: Clients::default(),
            stats: Stats::new(spec::COMMANDS.len()),
            started: Instant::now(),
            shutdown,
            log_level,
            run_id: random_hex_id(),
            port,
            config_file,
        }
    }

    /// Unless the node joins an existing cluster (`join`), initializes its Raft group the
    /// first time: alone without peers, or with every peer when it has the lowest id among
    /// them. A node that already belongs to a group ignores this.
    pub async fn bootstrap(&self) -> Result<(), String> {
        let (join, id, peers) = {
            let config = self.config.read();
            let c = &config.cluster;
            let peers = (!c.peers.is_empty())
                .then(|| replication::parse_peers(&c.peers))
                .transpose()?;
            (c.join, c.node_id, peers)
        };
        if join {
            return Ok(());
        }
        let members = match peers {
            Some(peers) if peers.keys().next() == Some(&id) => peers,
            Some(_) => return Ok(()),
            None => std::collections::BTreeMap::from([(id, self.node.me().clone())]),
        };
        self.node.bootstrap(members).await
    }

    /// Asks every part of the server to stop.
    pub fn trigger_shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

/// The node's start-up options from the configuration, for a server listening for clients on
/// `port` and for Raft peers on `cluster_port`. The address the node announces for itself is
/// `announce_ip`, else its own entry in `peers`, else the bind address (127.0.0.1 when binding
/// every interface).
pub fn node_options(config: &Config, port: u16, cluster_port: u16) -> NodeOptions {
    let c = &config.cluster;
    let own = replication::parse_peers(&c.peers)
        .ok()
        .and_then(|p| p.get(&c.node_id).cloned());
    let host = if !c.announce_ip.is_empty() {
        c.announce_ip.clone()
    } else if let Some(own) = own {
        own.host
    } else if config.server.bind == "0.0.0.0" || config.server.bind == "::" {
        "127.0.0.1".to_owned()
    } else {
        config.server.bind.clone()
    };
    let w = &config.wasm;
    NodeOptions {
        id: c.node_id,
        me: Member {
            host,
            port,
            cport: cluster_port,
        },
        data_dir: config.server.data_dir.clone(),
        engine: EngineSettings {
            max_memory_bytes: w.limits.max_memory_bytes,
            max_stack_bytes: w.limits.max_stack_bytes as usize,
            max_instances: w.pool.max_instances,
            max_module_size: w.max_module_size as usize,
            min_instances: w.pool.min_instances,
            idle_timeout: std::time::Duration::from_secs(w.pool.idle_timeout_secs),
        },
        raft: replication::Settings {
            heartbeat: std::time::Duration::from_millis(c.heartbeat_ms),
            election_min: std::time::Duration::from_millis(c.election_timeout_min_ms),
            election_max: std::time::Duration::from_millis(c.election_timeout_max_ms),
            snapshot_logs: c.snapshot_logs,
            keep_logs: c.snapshot_keep_logs,
        },
        write_timeout: std::time::Duration::from_millis(c.write_timeout_ms),
        wall_clock: crate::node::system_time_ms,
    }
}

/// A random 40-hex-digit id (Redis run ids and, later, cluster node ids have this shape).
pub fn random_hex_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    (0..3)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i);
            format!("{:016x}", h.finish())
        })
        .collect::<String>()[..40]
        .to_owned()
}

/// One connection's state.
#[derive(Debug)]
pub struct Session {
    /// This client's entry in the registry.
    pub client: Arc<ClientInfo>,
    /// Whether AUTH succeeded (or no password is required).
    pub authenticated: bool,
    /// Whether replies are RESP3.
    pub resp3: bool,
    /// Commands queued since MULTI.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// A queued command was refused, so EXEC must abort.
    pub multi_failed: bool,
    /// Keys watched, with their versions.
    pub watches: Vec<WatchToken>,
    /// Close the connection after this reply (QUIT).
    pub close: bool,
    /// `READONLY`: reads may be served from this node's state even when it does not lead.
    pub readonly: bool,
    /// Statistics not yet merged into the shared ones (merged after each batch).
    pub stats: LocalStats,
}

impl Session {
    /// A fresh session; `authenticated` is false when a password is required.
    pub fn new(client: Arc<ClientInfo>, authenticated: bool) -> Session {
        Session {
            client,
            authenticated,
            resp3: false,
            multi: None,
            multi_failed: false,
            watches: Vec::new(),
            close: false,
            readonly: false,
            stats: LocalStats::default(),
        }
    }
}

/// Errors of the command layer itself (the keyspace has its own). Texts are Redis 7's.
#[derive(Debug, Error, PartialEq)]
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
    /// Bad syntax.
    #[error("syntax error")]
    Syntax,
    /// A whole error line, prefix included.
    #[error("{0}")]
    Line(String),
    /// A free-form ERR message.
    #[error("{0}")]
    Message(String),
    /// EXEC after a refused queued command.
    #[error("Transaction discarded because of previous errors.")]
    ExecAbort,
}

impl RedisError for CommandError {
    fn line(&self) -> String {
        match self {
            CommandError::Line(line) => line.clone(),
            other => format!("{} {other}", other.prefix()),
        }
    }

    fn prefix(&self) -> &'static str {
        match self {
            CommandError::NoAuth | CommandError::HelloNoAuth => "NOAUTH",
            CommandError::WrongPass => "WRONGPASS",
            CommandError::NoProto => "NOPROTO",
            CommandError::ExecAbort => "EXECABORT",
            _ => "ERR",
        }
    }
}

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

/// Runs one request and returns its reply. `argv` is non-empty.
pub async fn execute(shared: &Shared, session: &mut Session, argv: Vec<Bytes>) -> Reply {
    let Some(index) = spec::lookup_index(&argv[0]) else {
        session.multi_failed |= session.multi.is_some();
        session.stats.record_rejected();
        return rejected(shared, None, unknown_command(&argv));
    };
    let spec = &spec::COMMANDS[index];
    let started = Instant::now();
    session.client.touch(spec.name, started);
    if let Err(e) = check(spec, session, &argv) {
        session.multi_failed |= session.multi.is_some();
        session.stats.record_rejected();
        return rejected(shared, Some(index), e);
    }
    if let Some(queue) = &mut session.multi
        && !matches!(
            spec.name,
            "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
        )
    {
        queue.push(argv);
        return Reply::Status("QUEUED".to_owned());
    }
    let reply = run(shared, session, spec, argv).await;
    account(shared, session, index, started, &reply);
    reply
}

/// Counts a command that ran: its latency, and its error if it failed.
fn account(shared: &Shared, session: &mut Session, index: usize, started: Instant, reply: &Reply) {
    session.stats.record(
        index,
        started.elapsed().as_micros() as u64,
        reply.is_error(),
    );
    if let Reply::Error(line) = reply {
        shared.stats.record_error(line);
    }
}

/// Whether `argv` is a data write this session may pipeline ([`execute_deferred`]): a keyspace
/// write outside MULTI. A connection queues such writes to the log back to back, without
/// waiting for each reply, so the writes of one pipeline share log entries and fsyncs.
pub fn deferrable(session: &Session, argv: &[Bytes]) -> bool {
    session.multi.is_none()
        && session.authenticated
        && spec::lookup(&argv[0]).is_some_and(|s| s.is_write() && is_data_command(s.name))
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
    ticket: crate::node::Ticket,
    index: usize,
    started: Instant,
}

/// Runs a command [`deferrable`] said may be pipelined: the same checks as [`execute`], then
/// the write is queued to the log without waiting. Every command before it must have been
/// answered or queued, and none after it may run before [`finish`] unless it is queued too.
pub fn execute_deferred(shared: &Shared, session: &mut Session, argv: Vec<Bytes>) -> Step {
    let Some(index) = spec::lookup_index(&argv[0]) else {
        return Step::Now(rejected(shared, None, unknown_command(&argv)));
    };
    let spec = &spec::COMMANDS[index];
    let started = Instant::now();
    session.client.touch(spec.name, started);
    if let Err(e) = check(spec, session, &argv) {
        session.stats.record_rejected();
        return Step::Now(rejected(shared, Some(index), e));
    }
    let reply = match same_slot(spec.keys(&argv)) {
        Err(e) => Reply::error(e),
        Ok(()) => {
            let ctx = shared.node.parse_ctx();
            match keyspace::parse(spec.name, &argv[1..], &ctx) {
                Some(Ok(op)) => match shared.node.submit(op, &ctx) {
                    Ok(ticket) => {
                        return Step::Later(Deferred {
                            ticket,
                            index,
                            started,
                        });
                    }
                    Err(reply) => reply,
                },
                Some(Err(e)) => Reply::error(e),
                None => Reply::error(unknown_command(&argv)),
            }
        }
    };
    account(shared, session, index, started, &reply);
    Step::Now(reply)
}

/// Waits for a deferred write's reply and counts it.
pub async fn finish(shared: &Shared, session: &mut Session, deferred: Deferred) -> Reply {
    let reply = deferred.ticket.wait().await;
    account(shared, session, deferred.index, deferred.started, &reply);
    reply
}

/// Whether the keyspace parses and runs `name` (as opposed to the families dispatched by name
/// in [`run`]).
fn is_data_command(name: &str) -> bool {
    !matches!(
        name,
        "ping"
            | "echo"
            | "hello"
            | "auth"
            | "select"
            | "quit"
            | "reset"
            | "client"
            | "info"
            | "config"
            | "command"
            | "time"
            | "shutdown"
            | "cluster"
            | "readonly"
            | "readwrite"
            | "asking"
            | "wasm.load"
            | "wasm.unload"
            | "wasm.call"
            | "wasm.call_ro"
            | "wasm.list"
            | "wasm.info"
            | "wasm.stats"
            | "fcall"
            | "fcall_ro"
            | "multi"
            | "exec"
            | "discard"
            | "watch"
            | "unwatch"
    )
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
    if !session.authenticated && !spec.has_flag("no_auth") {
        return Err(CommandError::NoAuth);
    }
    if !spec.subcommands.is_empty() && argv.len() > 1 {
        let sub =
            spec::subcommand(spec, &argv[1]).ok_or_else(|| CommandError::UnknownSubcommand {
                sub: String::from_utf8_lossy(&argv[1]).into_owned(),
                container: spec.name.to_ascii_uppercase(),
            })?;
        if !sub.arity_ok(argv.len()) {
            return Err(CommandError::WrongArity(sub.name.to_owned()));
        }
    }
    if session.multi.is_some() && spec.has_flag("no_multi") {
        return Err(CommandError::Message(
            "Command not allowed inside a transaction".to_owned(),
        ));
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

/// Dispatches a checked command to its family.
async fn run(
    shared: &Shared,
    session: &mut Session,
    spec: &'static CommandSpec,
    argv: Vec<Bytes>,
) -> Reply {
    let result = match spec.name {
        "ping" | "echo" | "hello" | "auth" | "select" | "quit" | "reset" | "client" => {
            connection::execute(shared, session, spec, &argv)
        }
        "info" | "config" | "command" | "time" | "shutdown" => server::execute(shared, spec, &argv),
        "cluster" | "readonly" | "readwrite" | "asking" => {
            return cluster::execute(shared, session, spec, &argv).await;
        }
        "wasm.load" | "wasm.unload" | "wasm.call" | "wasm.call_ro" | "wasm.list" | "wasm.info"
        | "wasm.stats" | "fcall" | "fcall_ro" => {
            return wasm::execute(shared, session, spec, &argv).await;
        }
        "multi" | "exec" | "discard" | "watch" | "unwatch" => {
            return transactions::execute(shared, session, spec, argv).await;
        }
        _ => return data(shared, session, spec, &argv).await,
    };
    result.unwrap_or_else(Reply::error)
}

/// How this session's reads may be served.
fn read_mode(session: &Session) -> ReadMode {
    if session.readonly {
        ReadMode::Local
    } else {
        ReadMode::Linearizable
    }
}

/// `CROSSSLOT` unless every key hashes to one slot (Redis Cluster's rule: the cluster is one
/// shard today, but clients and scripts written against it stay portable).
fn same_slot<'a>(keys: impl IntoIterator<Item = &'a Bytes>) -> Result<(), CommandError> {
    let mut keys = keys.into_iter();
    if let Some(first) = keys.next() {
        let slot = crate::slot::key_slot(first);
        if keys.any(|k| crate::slot::key_slot(k) != slot) {
            return Err(CommandError::Line(
                "CROSSSLOT Keys in request don't hash to the same slot".to_owned(),
            ));
        }
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
    if let Err(e) = same_slot(spec.keys(argv)) {
        return Reply::error(e);
    }
    let ctx = shared.node.parse_ctx();
    match keyspace::parse(spec.name, &argv[1..], &ctx) {
        Some(Ok(op)) => shared.node.execute(op, &ctx, read_mode(session)).await,
        Some(Err(e)) => Reply::error(e),
        None => Reply::error(unknown_command(argv)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::ParseCtx;

    /// The table's `write` flag and the operation's own `is_write` must agree, or a write
    /// could skip the write path.
    #[test]
    fn table_write_flags_match_operations() {
        let ctx = ParseCtx { now_ms: 0, seed: 0 };
        for spec in spec::COMMANDS {
            let argc = spec.arity.unsigned_abs() as usize;
            // Plausible arguments: numbers parse as counts, indexes and TTLs.
            let args: Vec<Bytes> = (1..argc.max(2)).map(|_| Bytes::from_static(b"1")).collect();
            let args = if spec.name == "scan" {
                vec![Bytes::from_static(b"0")]
            } else {
                args
            };
            if let Some(Ok(op)) = keyspace::parse(spec.name, &args, &ctx) {
                assert_eq!(op.is_write(), spec.is_write(), "{}", spec.name);
            }
        }
    }

    /// `is_data_command` must name exactly the commands the keyspace parses, or a pipelined
    /// write could take the wrong path.
    #[test]
    fn data_commands_are_the_ones_the_keyspace_parses() {
        let ctx = ParseCtx { now_ms: 0, seed: 0 };
        let args: Vec<Bytes> = (0..8).map(|_| Bytes::from_static(b"1")).collect();
        for spec in spec::COMMANDS {
            assert_eq!(
                is_data_command(spec.name),
                keyspace::parse(spec.name, &args, &ctx).is_some(),
                "{}",
                spec.name
            );
        }
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
