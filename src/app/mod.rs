//! The composition root: the one place that builds a node from a [`Config`] and the parts
//! around it, starts it, serves it, and shuts it down in order. The binary, the tests and the
//! turmoil simulation all start nodes here; nothing else wires the layers together.
//!
//! What differs between a server and a simulation is passed in, never chosen inside: the two
//! listeners (clients, Raft peers), an [`Environment`] (how peers are dialled, the disk the
//! Raft log lives on, the wall clock, where compiled modules are cached) and the process's
//! hooks (log level, configuration file).

mod preload;

/// The hook a binary gives to change the log level at run time.
pub use crate::commands::LogLevelSetter;
pub use preload::{PreloadError, preload_modules};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tracing::info;

use crate::blocking::Helpers;
use crate::clock::{Clock, WallClock, system_clock};
use crate::commands::Shared;
use crate::config::Config;
use crate::net::{Dialer, Listener, TcpDialer};
use crate::node::{Node, NodeOptions, StartError};
use crate::peers::{Member, NodeId};
use crate::replication::{
    self, Bus, BusAuth, DEFAULT_GROUP, Disk, Entropy, PeerClocks, WalDisk, os_entropy,
};
use crate::state_machine::StateMachine;
use crate::wasm::EngineSettings;

/// Why a node could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AppError {
    /// A listener could not bind its address.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The node would not start (data directory, Raft storage, WASM engine, bootstrap).
    #[error(transparent)]
    Start(#[from] StartError),
    /// A module in `wasm.module_dir` would not load.
    #[error("preloading WASM modules: {0}")]
    Preload(#[from] PreloadError),
    /// The helper threads (`server.threads`) would not start.
    #[error("starting the helper threads: {0}")]
    Threads(std::io::Error),
}

/// The listeners a node serves: clients, and Raft peers when it has a cluster bus.
#[derive(Debug)]
pub struct Listeners<C, P> {
    /// Client connections (RESP).
    pub clients: C,
    /// The cluster bus (Raft RPCs); `None` for a node without a cluster secret.
    pub peers: Option<P>,
}

/// Binds the client port and, when the node has a cluster secret, the cluster port the
/// configuration names (defaulting to the client port + 10000, or a free port when the client
/// port is 0).
pub async fn bind(
    config: &Config,
) -> Result<Listeners<tokio::net::TcpListener, tokio::net::TcpListener>, AppError> {
    let tcp = |port: u16| {
        let addr = format!("{}:{port}", config.server.bind);
        async move {
            tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|source| AppError::Bind { addr, source })
        }
    };
    Ok(Listeners {
        clients: tcp(config.server.port).await?,
        peers: match config.cluster.has_bus() {
            true => Some(tcp(config.cluster_port()).await?),
            false => None,
        },
    })
}

/// How a node touches the world outside its process.
pub struct Environment<D, K> {
    /// How it reaches its peers.
    pub dialer: Arc<D>,
    /// Where its Raft log, vote and snapshots are kept.
    pub disk: Arc<K>,
    /// The wall clock operations are stamped with (ms since the epoch).
    pub clock: WallClock,
    /// Where compiled modules are cached, if anywhere.
    pub compile_cache: Option<PathBuf>,
    /// The nonces of cluster bus handshakes.
    pub entropy: Entropy,
}

impl<D, K> std::fmt::Debug for Environment<D, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("compile_cache", &self.compile_cache)
            .finish_non_exhaustive()
    }
}

impl Environment<TcpDialer, WalDisk> {
    /// A server's environment: TCP, the system clock, and under `data_dir` the Raft log
    /// (`raft/wal/`), the latest snapshot (`raft/raft.snapshot`) and the compile cache
    /// (`wasm-cache/`). A log an older version kept in `raft/raft.redb` is moved into
    /// `raft/wal/` first.
    pub fn on_disk(data_dir: &Path) -> Result<Self, StartError> {
        let raft = data_dir.join("raft");
        std::fs::create_dir_all(&raft)?;
        let disk = replication::open_log(&raft)
            .map_err(|e| StartError::Replication(replication::ReplicationError::Disk(e)))?;
        Ok(Environment {
            dialer: Arc::new(TcpDialer),
            disk: Arc::new(disk),
            clock: system_clock(),
            compile_cache: Some(data_dir.join("wasm-cache")),
            entropy: os_entropy,
        })
    }
}

/// What the process around the node provides.
pub struct Process {
    /// Applies a new log level (`CONFIG SET loglevel`).
    pub set_log_level: LogLevelSetter,
    /// The configuration file, if any (INFO).
    pub config_file: Option<PathBuf>,
}

impl Process {
    /// A process whose log level cannot change (tests, the simulation).
    pub fn fixed() -> Process {
        Process {
            set_log_level: Box::new(|_| Ok(())),
            config_file: None,
        }
    }
}

/// The tracing filter for a log level: at `info` and below openraft's own chatter is cut to
/// warnings (a node logs its lifecycle, not another library's internals); `debug` adds
/// openraft's info lines and `trace` everything. `RUST_LOG`, when set, overrides this at start.
pub fn log_filter(level: &str) -> String {
    match level {
        "debug" => "debug,openraft=info".to_owned(),
        "trace" => "trace".to_owned(),
        other => format!("{other},openraft=warn"),
    }
}

/// A started node with its shared state and Raft server.
pub struct App {
    shared: Arc<Shared>,
    raft_server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// Builds a node from `config`, recovers its state from `env.disk`, serves Raft RPCs on
    /// `peers` (none without a cluster secret), initializes the cluster if this node should (alone without peers, or with every
    /// peer when it has the lowest id), waits for a leader when it is alone, and preloads
    /// `wasm.module_dir`. `client_port` is the port clients reach it on (the one its client
    /// listener bound).
    pub async fn start<P: Listener, D: Dialer, K: Disk>(
        config: Config,
        client_port: u16,
        peers: Option<P>,
        env: Environment<D, K>,
        process: Process,
    ) -> Result<App, AppError> {
        let cluster_addr = match &peers {
            Some(peers) => Some(peers.local_addr().map_err(|source| AppError::Bind {
                addr: "the cluster listener".to_owned(),
                source,
            })?),
            None => None,
        };
        let cluster_port = cluster_addr.map_or(0, |a| a.port());
        let clock = Arc::new(Clock::new(env.clock));
        // The command threads after the async worker (`blocking.rs`); none on a
        // current-thread runtime (the simulation), where everything runs on its one thread.
        let multi = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        let helpers = Helpers::start(
            if multi {
                config.server.command_threads() - 1
            } else {
                0
            },
            config.wasm.limits.max_stack_bytes as usize + crate::blocking::HOST_STACK_BYTES,
        )
        .map_err(AppError::Threads)?;
        let options = node_options(
            &config,
            client_port,
            cluster_port,
            clock.clone(),
            Arc::new(helpers),
        );
        let clocks = Arc::new(PeerClocks::new(
            clock,
            config.cluster.max_clock_offset_ms,
            Duration::from_millis(config.cluster.election_timeout_max_ms),
        ));
        let auth = match config.cluster.has_bus() {
            true => BusAuth::new(
                config.cluster.secret.as_bytes(),
                config.cluster.node_id,
                env.entropy,
            ),
            false => BusAuth::none(config.cluster.node_id),
        };
        let state = Arc::new(
            StateMachine::new(engine_settings(&config), env.compile_cache)
                .map_err(StartError::from)?,
        );
        let bus = Bus {
            auth,
            clocks,
            cluster: state.cluster_id_handle(),
            dials: Arc::default(),
        };
        #[cfg(feature = "fault-injection")]
        state.sabotage_clock(options.clock.clone());
        let node = Node::start(options, state, env.disk, env.dialer, bus.clone()).await?;
        let single = config.cluster.peers.is_empty() && !config.cluster.join;
        let check_every = config.cluster.state_check_interval_ms;
        if let Some(members) = initial_members(&config, node.me()) {
            node.bootstrap(members).await?;
        }
        let shared = Arc::new(Shared::new(
            config,
            node,
            client_port,
            process.config_file,
            process.set_log_level,
        ));
        let raft_server = match (peers, cluster_addr) {
            (Some(peers), Some(cluster_addr)) => {
                info!(node_id = shared.node.id(), cluster_addr = %cluster_addr, "raft listening");
                Some(tokio::spawn(replication::serve(
                    peers,
                    shared.node.raft().clone(),
                    shared.node.durable().clone(),
                    shared.node.lease().clone(),
                    bus,
                    DEFAULT_GROUP,
                    shared.shutdown.subscribe(),
                )))
            }
            _ => {
                info!(
                    node_id = shared.node.id(),
                    "no cluster port (a single node; a cluster secret opens one)"
                );
                None
            }
        };
        {
            let shared = shared.clone();
            tokio::spawn(async move { shared.node.name_the_cluster().await });
        }
        if check_every > 0 {
            let (shared, shutdown) = (shared.clone(), shared.shutdown.subscribe());
            tokio::spawn(async move {
                shared
                    .node
                    .run_state_checks(Duration::from_millis(check_every), shutdown)
                    .await
            });
        }
        if single {
            // A one-member cluster elects itself at once; wait so the first command finds a
            // leader with its log applied, and the preload below can run.
            shared.node.wait_for_leader(Duration::from_secs(10)).await;
            shared.node.refresh_own_address().await;
        }
        let preloaded = preload_modules(&shared).await?;
        if preloaded > 0 {
            info!(modules = preloaded, "WASM modules preloaded");
        }
        Ok(App {
            shared,
            raft_server,
        })
    }

    /// The state connections share (the node among it).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves clients from `clients` until shutdown is triggered (SHUTDOWN, or
    /// [`Shared::trigger_shutdown`]), then drains connections, stops Raft and waits for the
    /// log to reach the disk.
    pub async fn serve<C: Listener>(self, clients: C) {
        match clients.local_addr() {
            Ok(addr) => info!(
                version = env!("CARGO_PKG_VERSION"),
                addr = %addr,
                "Ferrite ready to accept connections"
            ),
            Err(e) => tracing::warn!(cause = %e, "client listener has no address"),
        }
        crate::server::run(clients, self.shared.clone()).await;
        self.shared.node.shutdown().await;
        if let Some(server) = self.raft_server {
            server.abort();
        }
        info!("node stopped");
    }
}

/// The members to initialize the group with, if this node should: itself alone without
/// peers, every peer when it has the lowest id, none when it joins or another peer starts the
/// group. A node that already belongs to a group ignores the initialization.
fn initial_members(config: &Config, me: &Member) -> Option<BTreeMap<NodeId, Member>> {
    let c = &config.cluster;
    if c.join {
        return None;
    }
    if c.peers.is_empty() {
        return Some(BTreeMap::from([(c.node_id, me.clone())]));
    }
    (c.peers.first_id() == Some(c.node_id)).then(|| c.peers.members().clone())
}

/// The node's options from the configuration, for a node listening for clients on `port` and
/// for Raft peers on `cluster_port`. The address it announces for itself is `announce_ip`,
/// else its own entry in `peers`, else the bind address (127.0.0.1 when binding every
/// interface).
fn node_options(
    config: &Config,
    port: u16,
    cluster_port: u16,
    clock: Arc<Clock>,
    helpers: Arc<Helpers>,
) -> NodeOptions {
    let c = &config.cluster;
    let host = if !c.announce_ip.is_empty() {
        c.announce_ip.clone()
    } else if let Some(own) = c.peers.get(c.node_id) {
        own.host.clone()
    } else if config.server.bind == "0.0.0.0" || config.server.bind == "::" {
        "127.0.0.1".to_owned()
    } else {
        config.server.bind.clone()
    };
    NodeOptions {
        id: c.node_id,
        me: Member {
            host,
            port,
            cport: cluster_port,
        },
        raft: replication::Settings {
            heartbeat: Duration::from_millis(c.heartbeat_ms),
            election_min: Duration::from_millis(c.election_timeout_min_ms),
            election_max: Duration::from_millis(c.election_timeout_max_ms),
            snapshot_logs: c.snapshot_logs,
            keep_logs: c.snapshot_keep_logs,
            snapshot_timeout: Duration::from_millis(c.snapshot_timeout_ms),
            lease_reads: c.lease_reads,
            clock_drift_percent: c.max_clock_drift_percent,
        },
        write_timeout: Duration::from_millis(c.write_timeout_ms),
        clock,
        max_entry_bytes: c.max_entry_bytes as usize,
        batch_wait: Duration::from_micros(c.batch_wait_us),
        helpers,
    }
}

/// The WebAssembly engine's settings from `[wasm]`.
fn engine_settings(config: &Config) -> EngineSettings {
    let w = &config.wasm;
    for name in w.pool.retired_settings() {
        tracing::warn!(
            setting = name,
            "this setting no longer has an effect: instances are made for each call"
        );
    }
    EngineSettings {
        max_stack_bytes: w.limits.max_stack_bytes as usize,
        max_instances: w.pool.max_instances,
        max_module_size: w.max_module_size as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_helpers() -> Arc<Helpers> {
        Arc::new(Helpers::start(0, 0).unwrap())
    }

    fn me() -> Member {
        Member {
            host: "h".into(),
            port: 1,
            cport: 2,
        }
    }

    #[test]
    fn the_lowest_peer_initializes_and_a_joiner_never_does() {
        let mut config = Config::default();
        assert_eq!(
            initial_members(&config, &me()).map(|m| m.len()),
            Some(1),
            "alone: a group of one"
        );
        config.cluster.peers = "1@a:7001,2@b:7002".parse().unwrap();
        assert_eq!(initial_members(&config, &me()).map(|m| m.len()), Some(2));
        config.cluster.node_id = 2;
        assert_eq!(initial_members(&config, &me()), None);
        config.cluster.peers = crate::peers::Peers::none();
        config.cluster.join = true;
        assert_eq!(initial_members(&config, &me()), None);
    }

    #[test]
    fn a_node_announces_its_peer_entry_or_a_reachable_bind_address() {
        let mut config = Config::default();
        config.server.bind = "0.0.0.0".into();
        assert_eq!(
            node_options(&config, 7, 8, Arc::default(), no_helpers())
                .me
                .host,
            "127.0.0.1"
        );
        config.cluster.peers = "1@10.0.0.5:7001".parse().unwrap();
        let options = node_options(&config, 7, 8, Arc::default(), no_helpers());
        assert_eq!(
            (options.me.host.as_str(), options.me.port, options.me.cport),
            ("10.0.0.5", 7, 8)
        );
        config.cluster.announce_ip = "example".into();
        assert_eq!(
            node_options(&config, 7, 8, Arc::default(), no_helpers())
                .me
                .host,
            "example"
        );
    }

    #[test]
    fn openraft_is_quiet_unless_asked() {
        assert_eq!(log_filter("info"), "info,openraft=warn");
        assert_eq!(log_filter("warn"), "warn,openraft=warn");
        assert_eq!(log_filter("debug"), "debug,openraft=info");
        assert_eq!(log_filter("trace"), "trace");
    }
}
