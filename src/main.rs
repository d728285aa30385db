//! The `ferrite` binary: flags, logging, and the composition root ([`ferrite::app`]); it
//! serves until SIGINT, SIGTERM or SHUTDOWN.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tracing::info;
use tracing_subscriber::{EnvFilter, reload};

use ferrite::app::{self, App, Environment, LogLevelSetter, Process};

use ferrite::config::{Config, Overrides};

/// mimalloc instead of the system allocator: glibc's per-thread arenas grow and trim with
/// mprotect under this workload, and musl's allocator (static builds) is slow under threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ferrite: a Redis-compatible key-value server with WebAssembly user-defined functions.
///
/// With no arguments it serves on 127.0.0.1:6379 with defaults. Flags override the
/// configuration file, which overrides the defaults.
#[derive(Debug, Parser)]
#[command(name = "ferrite", version, about, long_about = None)]
struct Cli {
    /// TOML configuration file (sections [server], [wasm], [cluster]).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref(), cli.overrides)?;
    let set_log_level = install_tracing(&config.server.log_level);
    // One async worker runs every client's commands, Raft and the log's disk writes: on a
    // second worker, short requests cost more in cross-thread wake-ups than they gain. The
    // other `server.threads` are helper threads that take long read-only function calls
    // (`ferrite::blocking::Helpers`, started by the app). WebAssembly calls run on the worker
    // and on the runtime's blocking threads too: each has room for a call's stack limit and
    // the host frames below it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_stack_size(
            config.wasm.limits.max_stack_bytes as usize + ferrite::blocking::HOST_STACK_BYTES,
        )
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listeners = app::bind(&config).await?;
        let client_port = listeners.clients.local_addr()?.port();
        let env = Environment::on_disk(&config.server.data_dir)?;
        let process = Process {
            set_log_level,
            config_file: cli.config,
        };
        // The handlers are in place before the node starts: a signal that arrives as soon as
        // the node is ready takes the orderly path, not the default action that kills it.
        let signal = shutdown_signal().context("installing the signal handlers")?;
        let app = App::start(config, client_port, listeners.peers, env, process).await?;
        let signals = {
            let shared = app.shared().clone();
            tokio::spawn(async move {
                signal.await;
                info!("signal received, shutting down");
                shared.trigger_shutdown();
            })
        };
        app.serve(listeners.clients).await;
        signals.abort();
        anyhow::Ok(())
    })
}

/// Installs the log subscriber at `level` (or `RUST_LOG`, when set) and returns the hook that
/// changes the level at run time.
fn install_tracing(level: &str) -> LogLevelSetter {
    let initial = std::env::var("RUST_LOG").unwrap_or_else(|_| app::log_filter(level));
    let (filter, reload_handle) = reload::Layer::new(EnvFilter::new(initial));
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
        )
        .init();
    Box::new(move |level: &str| {
        reload_handle
            .modify(|f| *f = EnvFilter::new(app::log_filter(level)))
            .map_err(|e| e.into())
    })
}

/// Installs handlers for SIGINT and SIGTERM at once (so neither kills the process from now
/// on) and returns a future that resolves when either arrives.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
