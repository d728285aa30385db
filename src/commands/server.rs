//! Server commands: INFO, CONFIG GET/SET/RESETSTAT, TIME, SHUTDOWN, and COMMAND (in
//! `introspection.rs`). DBSIZE, FLUSHDB and FLUSHALL are keyspace operations.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::info;

use super::{CommandError, REDIS_COMPAT_VERSION, Shared};
use crate::args::{is, text};
use crate::command_table::{COMMANDS, Server};
use crate::reply::Reply;

pub(super) fn execute(
    shared: &Shared,
    command: Server,
    argv: &[Bytes],
) -> Result<Reply, CommandError> {
    let args = &argv[1..];
    match command {
        Server::Info => Ok(Reply::Verbatim(info(shared, args))),
        Server::Config => config(shared, args),
        Server::Command => super::introspection::command(args),
        Server::Time => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Ok(Reply::Array(vec![
                Reply::bulk_display(now.as_secs()),
                Reply::bulk_display(now.subsec_micros()),
            ]))
        }
        Server::Shutdown => shutdown(shared, args),
    }
}

fn shutdown(shared: &Shared, args: &[Bytes]) -> Result<Reply, CommandError> {
    for arg in args {
        if !["NOSAVE", "SAVE", "NOW", "FORCE", "ABORT"]
            .iter()
            .any(|w| is(arg, w))
        {
            return Err(CommandError::Syntax);
        }
    }
    if args.iter().any(|a| is(a, "ABORT")) {
        return Err(CommandError::NoShutdownInProgress);
    }
    info!("SHUTDOWN requested by a client");
    shared.trigger_shutdown();
    // The connection closes without a reply, as in Redis; this error is only seen if the
    // shutdown could not close it first.
    Ok(Reply::ok())
}

fn config(shared: &Shared, args: &[Bytes]) -> Result<Reply, CommandError> {
    let sub = args[0].to_ascii_lowercase();
    match sub.as_slice() {
        b"get" => {
            let config = shared.config.read();
            let mut pairs: Vec<(Reply, Reply)> = Vec::new();
            for pattern in &args[1..] {
                for (name, value) in config.get_matching(pattern) {
                    if !pairs.iter().any(|(n, _)| *n == Reply::bulk(name)) {
                        pairs.push((Reply::bulk(name), Reply::bulk(value)));
                    }
                }
            }
            Ok(Reply::Map(pairs))
        }
        b"set" => {
            let pairs = &args[1..];
            if !pairs.len().is_multiple_of(2) {
                return Err(CommandError::WrongArity("config|set".to_owned()));
            }
            let mut config = shared.config.write();
            let mut next = config.clone();
            for pair in pairs.chunks_exact(2) {
                let (name, value) = (text(&pair[0]), text(&pair[1]));
                next.set(&name, &value)
                    .map_err(|source| CommandError::ConfigSet {
                        name: name.clone(),
                        source,
                    })?;
            }
            if next.server.log_level != config.server.log_level {
                (shared.log_level)(&next.server.log_level).map_err(CommandError::LogLevel)?;
            }
            *config = next;
            Ok(Reply::ok())
        }
        b"resetstat" => {
            shared.stats.reset();
            Ok(Reply::ok())
        }
        _ => Err(CommandError::UnknownSubcommand {
            sub: text(&args[0]),
            container: "CONFIG".to_owned(),
        }),
    }
}

/// Sections INFO prints with no argument or `default`.
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "errorstats",
    "cluster",
    "keyspace",
    "wasm",
];

fn info(shared: &Shared, args: &[Bytes]) -> String {
    let wanted: Vec<String> = args.iter().map(|a| text(a).to_ascii_lowercase()).collect();
    let everything = wanted.iter().any(|w| w == "all" || w == "everything");
    let default = wanted.is_empty() || wanted.iter().any(|w| w == "default");
    let mut out = String::new();
    for section in DEFAULT_SECTIONS.iter().chain(&["commandstats"]) {
        let selected = everything
            || (default && DEFAULT_SECTIONS.contains(section))
            || wanted.iter().any(|w| w == section);
        if !selected {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let mut title = section.to_owned().to_owned();
        title[..1].make_ascii_uppercase();
        let _ = write!(out, "# {title}\r\n");
        section_body(shared, section, &mut out);
    }
    out
}

fn section_body(shared: &Shared, section: &str, out: &mut String) {
    let mut line = |k: &str, v: &dyn std::fmt::Display| {
        let _ = write!(out, "{k}:{v}\r\n");
    };
    let stats = &shared.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    match section {
        "server" => {
            let uptime = shared.started.elapsed().as_secs();
            line("redis_version", &REDIS_COMPAT_VERSION);
            line("ferrite_version", &env!("CARGO_PKG_VERSION"));
            line("redis_mode", &"standalone");
            line(
                "os",
                &format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            );
            line("arch_bits", &64);
            line("multiplexing_api", &"tokio");
            line("process_id", &std::process::id());
            line("run_id", &shared.run_id);
            line("tcp_port", &shared.port);
            line("uptime_in_seconds", &uptime);
            line("uptime_in_days", &(uptime / 86_400));
            line(
                "executable",
                &std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
            line(
                "config_file",
                &shared
                    .config_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
        }
        "clients" => {
            line("connected_clients", &shared.clients.len());
            line("maxclients", &shared.config.read().server.maxclients);
            line("blocked_clients", &0);
        }
        "memory" => {
            let rss = resident_bytes();
            line("used_memory", &rss);
            line("used_memory_human", &human_bytes(rss));
            line("used_memory_rss", &rss);
            line("maxmemory", &0);
            line("maxmemory_policy", &"noeviction");
        }
        "persistence" => {
            let (writes, entries) = shared.node.disk_stats();
            line("loading", &0);
            line("rdb_bgsave_in_progress", &0);
            line("aof_enabled", &0);
            line("raft_log_fsyncs", &writes);
            line("raft_log_entries_written", &entries);
            line(
                "raft_writes_proposed_alone",
                &shared.node.writes_proposed_alone(),
            );
        }
        "stats" => {
            line(
                "total_connections_received",
                &load(&stats.total_connections),
            );
            line("total_commands_processed", &load(&stats.total_commands));
            line("total_net_input_bytes", &load(&stats.net_input_bytes));
            line("total_net_output_bytes", &load(&stats.net_output_bytes));
            line("rejected_connections", &load(&stats.rejected_connections));
            line("expired_keys", &shared.node.keyspace_stats().expired);
            line("evicted_keys", &0);
            line("total_error_replies", &load(&stats.total_errors));
        }
        "replication" => {
            let topology = shared.node.topology();
            let leads = topology.leader == Some(topology.me);
            line("role", &if leads { "master" } else { "slave" });
            if let Some(leader) = topology
                .members
                .iter()
                .find(|m| Some(m.id) == topology.leader)
                && !leads
            {
                line("master_host", &leader.member.host);
                line("master_port", &leader.member.port);
                line("master_link_status", &"up");
            }
            line(
                "connected_slaves",
                &if leads { topology.members.len() - 1 } else { 0 },
            );
            line("master_replid", &shared.run_id);
            line("master_repl_offset", &topology.applied);
        }
        "cpu" => {
            let (user, system) = cpu_seconds();
            line("used_cpu_sys", &format!("{system:.6}"));
            line("used_cpu_user", &format!("{user:.6}"));
        }
        "errorstats" => {
            for (prefix, count) in stats.errors.lock().iter() {
                line(&format!("errorstat_{prefix}"), &format!("count={count}"));
            }
        }
        "cluster" => {
            let topology = shared.node.topology();
            line("cluster_enabled", &1);
            line("raft_node_id", &topology.me);
            line("cluster_id", &format!("{:016x}", shared.node.cluster_id()));
            line(
                "raft_leader_id",
                &topology.leader.map_or("-".to_owned(), |l| l.to_string()),
            );
            line("raft_term", &topology.term);
            line("raft_applied_index", &topology.applied);
            line("raft_members", &topology.members.len());
            line("cluster_clock_bound_ms", &topology.clock_bound_ms);
            line("cluster_clock_refusals", &topology.clock_refusals);
            line("cluster_bus_dials", &topology.bus_dials);
            line("cluster_read_rounds", &topology.read_rounds);
            line("cluster_state_check_index", &topology.state_check_index);
            line(
                "cluster_state_diverged",
                &topology.diverged.as_deref().unwrap_or("no"),
            );
        }
        "wasm" => {
            let registry = shared.node.modules();
            let t = &registry.totals;
            line("wasm_modules", &registry.len());
            line("wasm_loads", &load(&t.loads));
            line("wasm_calls", &load(&t.calls));
            line("wasm_errors", &load(&t.errors));
            line("wasm_fuel_total", &load(&t.fuel));
        }
        "keyspace" => {
            let ks = shared.node.keyspace_stats();
            if ks.keys > 0 {
                line(
                    "db0",
                    &format!("keys={},expires={},avg_ttl=0", ks.keys, ks.expires),
                );
            }
        }
        "commandstats" => {
            for (spec, c) in COMMANDS.iter().zip(&stats.commands) {
                let calls = load(&c.calls);
                let (rejected, failed) = (load(&c.rejected), load(&c.failed));
                if calls + rejected == 0 {
                    continue;
                }
                let nsec = load(&c.nsec);
                line(
                    &format!("cmdstat_{}", spec.name),
                    &format!(
                        "calls={calls},usec={},usec_per_call={:.2},rejected_calls={rejected},failed_calls={failed}",
                        nsec / 1000,
                        if calls > 0 {
                            nsec as f64 / 1000.0 / calls as f64
                        } else {
                            0.0
                        }
                    ),
                );
            }
        }
        _ => {}
    }
}

/// Resident set size in bytes, from /proc (0 where unavailable).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// User and system CPU seconds of this process, from /proc (0 where unavailable).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (ticks(11), ticks(12))
}

fn human_bytes(bytes: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", units[unit])
}
