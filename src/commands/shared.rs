//! What connections share ([`Shared`]: the node, the live configuration, clients, statistics,
//! the shutdown signal) and what each one keeps ([`Session`]).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::clients::{ClientInfo, Clients};
use crate::command_table;
use crate::config::Config;
use crate::node::Node;
use crate::node::{ReadEpoch, WatchToken};
use crate::stats::{LocalStats, Stats};

/// The Redis version Ferrite reports to clients (HELLO, INFO), i.e. the command set it follows.
pub const REDIS_COMPAT_VERSION: &str = "7.2.4";

/// Changes the log level at run time (`CONFIG SET loglevel`); installed by the binary.
pub type LogLevelSetter =
    Box<dyn Fn(&str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send + Sync>;

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
    /// Shared state around a started node.
    pub fn new(
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
            stats: Stats::new(command_table::COMMANDS.len()),
            started: Instant::now(),
            shutdown,
            log_level,
            run_id: random_hex_id(),
            port,
            config_file,
        }
    }

    /// Asks every part of the server to stop.
    pub fn trigger_shutdown(&self) {
        self.shutdown.send_replace(true);
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
    /// When the requests being run arrived (set by the connection after each read from the
    /// socket; `None`: now). Reads of a pipeline share a leadership confirmation.
    pub arrived: Option<ReadEpoch>,
    /// When the last command run since then was counted: the next one's start, so a
    /// pipelined command reads the clock once, not twice (`None`: read it).
    pub lap: Option<Instant>,
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
            arrived: None,
            lap: None,
            stats: LocalStats::default(),
        }
    }
}
