//! The `ferrite` binary: parse flags, load the configuration, install logging, bind, serve
//! until SIGINT/SIGTERM or SHUTDOWN.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing::info;
use tracing_subscriber::{EnvFilter, reload};

use ferrite::commands::Shared;

/// mimalloc instead of the system allocator: glibc's per-thread arenas grow and trim with
/// mprotect under this workload, and musl's allocator (static builds) is slow under threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use ferrite::config::{Config, Overrides};

/// Ferrite: a Redis-compatible key-value server with WebAssembly user-defined functions.
///
/// With no arguments it serves on 127.0.0.1:6379 with defaults. Flags override the
/// configuration file, which overrides the defaults.
#[derive(Debug, Parser)]
#[command(name = "ferrite", version, about, long_about = None)]
struct Cli {
    /// TOML configuration file (sections [server], ...).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Client port; 0 picks a free one [default: 6379].
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// Password clients must give with AUTH or HELLO [default: none].
    #[arg(long, value_name = "PASS")]
    requirepass: Option<String>,
    /// Directory for durable state [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// This node's Raft id [default: 1].
    #[arg(long, value_name = "N")]
    node_id: Option<u64>,
    /// Initial cluster members, e.g. "1@127.0.0.1:7001,2@127.0.0.1:7002,3@127.0.0.1:7003"
    /// (client addresses, Redis-style host:port[@cport]); the lowest id initializes the
    /// cluster. Without it the node is a one-member cluster.
    #[arg(long, value_name = "LIST")]
    peers: Option<String>,
    /// Start without initializing a cluster and wait for CLUSTER ADDNODE on the leader.
    #[arg(long)]
    join: bool,
    /// The IP or host clients are given for this node (MOVED, CLUSTER SLOTS).
    #[arg(long, value_name = "IP")]
    announce_ip: Option<String>,
    /// Raft port [default: client port + 10000].
    #[arg(long, value_name = "N")]
    cluster_port: Option<u16>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let overrides = Overrides {
        bind: cli.bind,
        port: cli.port,
        requirepass: cli.requirepass,
        data_dir: cli.data_dir,
        log_level: cli.log_level,
        node_id: cli.node_id,
        peers: cli.peers,
        join: cli.join,
        announce_ip: cli.announce_ip,
        cluster_port: cli.cluster_port,
    };
    let config = Config::load(cli.config.as_deref(), overrides)?;

    let (filter, reload_handle) = reload::Layer::new(EnvFilter::new(&config.server.log_level));
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
        )
        .init();
    let set_level: ferrite::commands::LogLevelSetter = Box::new(move |level: &str| {
        reload_handle
            .modify(|f| *f = EnvFilter::new(level))
            .map_err(|e| e.to_string())
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let address = format!("{}:{}", config.server.bind, config.server.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| format!("binding {address}"))?;
        let local = listener.local_addr()?;
        let cluster_port = match config.cluster.port {
            0 if config.server.port == 0 => 0,
            0 => config.server.port.checked_add(10000).context(
                "the client port leaves no room for the default cluster port (+10000); set --cluster-port",
            )?,
            port => port,
        };
        let cluster_address = format!("{}:{}", config.server.bind, cluster_port);
        let cluster_listener = tokio::net::TcpListener::bind(&cluster_address)
            .await
            .with_context(|| format!("binding the cluster port {cluster_address}"))?;
        let cluster_local = cluster_listener.local_addr()?;
        let single = config.cluster.peers.is_empty() && !config.cluster.join;
        let shared = Arc::new(
            Shared::start(
                config,
                local.port(),
                cluster_local.port(),
                cli.config,
                set_level,
                Arc::new(ferrite::net::TcpDialer),
            )
            .await?,
        );
        let raft_server = tokio::spawn(ferrite::replication::serve(
            cluster_listener,
            shared.node.raft().clone(),
            ferrite::replication::DEFAULT_GROUP,
            shared.shutdown.subscribe(),
        ));
        if single {
            // A one-member cluster elects itself at once; wait so the first command finds a
            // leader and the preload below can run.
            shared.node.wait_for_leader(Duration::from_secs(10)).await;
            shared.node.refresh_own_address().await;
        }
        let preloaded = ferrite::commands::preload_modules(&shared)
            .await
            .map_err(|e| anyhow::anyhow!("preloading WASM modules: {e}"))?;
        if preloaded > 0 {
            info!(modules = preloaded, "WASM modules preloaded");
        }
        info!(node_id = shared.node.id(), cluster_addr = %cluster_local, "raft listening");
        info!(version = env!("CARGO_PKG_VERSION"), addr = %local, "Ferrite ready to accept connections");
        let signals = {
            let shared = shared.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                info!("signal received, shutting down");
                shared.trigger_shutdown();
            })
        };
        ferrite::server::run(listener, shared.clone()).await;
        shared.node.shutdown().await;
        raft_server.abort();
        signals.abort();
        anyhow::Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
