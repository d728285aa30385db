//! The `ferrite` binary: parse flags, load the configuration, install logging, bind, serve
//! until SIGINT/SIGTERM or SHUTDOWN.

use std::path::PathBuf;
use std::sync::Arc;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let overrides = Overrides {
        bind: cli.bind,
        port: cli.port,
        requirepass: cli.requirepass,
        data_dir: cli.data_dir,
        log_level: cli.log_level,
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
        let shared = Arc::new(Shared::new(config, local.port(), cli.config, set_level)?);
        let preloaded = ferrite::commands::preload_modules(&shared)
            .await
            .map_err(|e| anyhow::anyhow!("preloading WASM modules: {e}"))?;
        if preloaded > 0 {
            info!(modules = preloaded, "WASM modules preloaded");
        }
        info!(version = env!("CARGO_PKG_VERSION"), addr = %local, "Ferrite ready to accept connections");
        let signals = {
            let shared = shared.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                info!("signal received, shutting down");
                shared.trigger_shutdown();
            })
        };
        ferrite::server::run(listener, shared).await;
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
