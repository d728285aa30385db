//! WebAssembly function commands: WASM.LOAD, WASM.UNLOAD, WASM.CALL, WASM.CALL_RO, WASM.LIST,
//! WASM.INFO, WASM.STATS, and the Redis 7 style FCALL / FCALL_RO.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::{CommandError, Session, Shared};
use crate::args::{is, parse_i64, text};
use crate::node::ReadMode;
use crate::reply::Reply;
use crate::spec::CommandSpec;
use crate::wasm::{CallLimits, CallMode, LoadedModule, Permissions, WasmError};

pub(super) async fn execute(
    shared: &Shared,
    session: &Session,
    spec: &'static CommandSpec,
    argv: &[Bytes],
) -> Reply {
    let args = &argv[1..];
    let result = match spec.name {
        "wasm.load" => load(shared, args).await,
        "wasm.unload" => return shared.node.wasm_unload(text(&args[0])).await,
        "wasm.call" | "wasm.call_ro" => match parse_wasm_call(args) {
            Ok(call) => return run(shared, session, call, spec.name == "wasm.call_ro").await,
            Err(e) => Err(e),
        },
        "fcall" | "fcall_ro" => match parse_fcall(args) {
            Ok(call) => return run(shared, session, call, spec.name == "fcall_ro").await,
            Err(e) => Err(e),
        },
        "wasm.list" => list(shared, args),
        "wasm.info" => match shared.node.modules().get(&text(&args[0])) {
            Some(module) => Ok(Reply::Map(describe(&module, true))),
            None => Err(WasmError::NoSuchModule(text(&args[0])).into()),
        },
        _ => Ok(stats(shared)),
    };
    result.unwrap_or_else(Reply::error)
}

impl From<WasmError> for CommandError {
    fn from(e: WasmError) -> Self {
        // WasmError displays as a whole line; keep it whole.
        CommandError::Line(e.to_string())
    }
}

/// A parsed call.
struct Call {
    module: String,
    entry: String,
    keys: Vec<Bytes>,
    args: Vec<Bytes>,
}

/// `name[.export]`: the entry defaults to `main`.
fn target(word: &[u8]) -> (String, String) {
    let word = text(word);
    match word.split_once('.') {
        Some((module, entry)) => (module.to_owned(), entry.to_owned()),
        None => (word, "main".to_owned()),
    }
}

/// `WASM.CALL name[.export] [KEYS key ...] [ARGS arg ...]`. Keys run until the word `ARGS`.
fn parse_wasm_call(args: &[Bytes]) -> Result<Call, CommandError> {
    let (module, entry) = target(&args[0]);
    let mut rest = &args[1..];
    let mut keys = Vec::new();
    let mut call_args = Vec::new();
    if rest.first().is_some_and(|w| is(w, "KEYS")) {
        rest = &rest[1..];
        while let Some((first, tail)) = rest.split_first() {
            if is(first, "ARGS") {
                break;
            }
            keys.push(first.clone());
            rest = tail;
        }
    }
    if let Some((first, tail)) = rest.split_first() {
        if !is(first, "ARGS") {
            return Err(CommandError::Syntax);
        }
        call_args = tail.to_vec();
    }
    Ok(Call {
        module,
        entry,
        keys,
        args: call_args,
    })
}

/// `FCALL name[.export] numkeys key ... arg ...`, with Redis's error texts.
fn parse_fcall(args: &[Bytes]) -> Result<Call, CommandError> {
    let (module, entry) = target(&args[0]);
    let numkeys = parse_i64(&args[1]).ok_or_else(|| {
        CommandError::Message("value is not an integer or out of range".to_owned())
    })?;
    if numkeys < 0 {
        return Err(CommandError::Message(
            "Number of keys can't be negative".to_owned(),
        ));
    }
    let rest = &args[2..];
    if numkeys as usize > rest.len() {
        return Err(CommandError::Message(
            "Number of keys can't be greater than number of args".to_owned(),
        ));
    }
    let (keys, call_args) = rest.split_at(numkeys as usize);
    Ok(Call {
        module,
        entry,
        keys: keys.to_vec(),
        args: call_args.to_vec(),
    })
}

/// Runs a call. `*_RO` calls read this node's state wherever it is (stale reads, like
/// Redis's `FCALL_RO` on a replica); other calls follow the session's read mode, and write
/// calls go through the log.
async fn run(shared: &Shared, session: &Session, call: Call, read_only: bool) -> Reply {
    if let Err(e) = super::same_slot(&call.keys) {
        return Reply::error(e);
    }
    let reads = if read_only {
        ReadMode::Local
    } else {
        super::read_mode(session)
    };
    let limits = {
        let config = shared.config.read();
        let l = &config.wasm.limits;
        CallLimits {
            max_memory_bytes: l.max_memory_bytes,
            max_fuel: l.max_fuel,
            max_duration: Duration::from_millis(l.max_duration_ms),
        }
    };
    shared
        .node
        .wasm_call(
            &call.module,
            &call.entry,
            &call.keys,
            &call.args,
            CallMode { read_only },
            limits,
            reads,
        )
        .await
}

/// `WASM.LOAD name bytes [REPLACE] [PERMISSIONS perm ...]`, or with the options before the
/// bytes (`WASM.LOAD name [REPLACE] [PERMISSIONS perm ...] bytes`), which is what
/// `redis-cli -x WASM.LOAD name PERMISSIONS READ WRITE < f.wasm` sends.
async fn load(shared: &Shared, args: &[Bytes]) -> Result<Reply, CommandError> {
    let name = text(&args[0]);
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(CommandError::Message(
            "wasm: module names use letters, digits, '_' and '-'".to_owned(),
        ));
    }
    let options_first = args.len() >= 3 && (is(&args[1], "REPLACE") || is(&args[1], "PERMISSIONS"));
    let (bytes, options) = if options_first {
        (args[args.len() - 1].clone(), &args[1..args.len() - 1])
    } else {
        (args[1].clone(), &args[2..])
    };
    let mut replace = false;
    let mut permissions = None;
    let mut rest = options.iter();
    while let Some(word) = rest.next() {
        if is(word, "REPLACE") {
            replace = true;
        } else if is(word, "PERMISSIONS") {
            let mut granted = Permissions::default();
            for perm in rest.by_ref() {
                let p = Permissions::parse(&text(perm)).ok_or_else(|| {
                    CommandError::Message(format!("wasm: unknown permission '{}'", text(perm)))
                })?;
                granted = granted.with(p);
            }
            permissions = Some(granted);
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let (permissions, security) = {
        let config = shared.config.read();
        (
            permissions.unwrap_or_else(|| default_permissions(&config.wasm)),
            config.wasm.security,
        )
    };
    if permissions.contains(Permissions::NETWORK) && !security.allow_network {
        return Err(WasmError::PermissionNotAllowed("NETWORK").into());
    }
    if permissions.contains(Permissions::FILESYSTEM) && !security.allow_filesystem {
        return Err(WasmError::PermissionNotAllowed("FILESYSTEM").into());
    }
    Ok(shared
        .node
        .wasm_load(name, bytes, permissions, replace)
        .await)
}

/// The permissions of a module loaded without PERMISSIONS.
pub(super) fn default_permissions(config: &crate::config::WasmConfig) -> Permissions {
    match config.default_permissions.as_str() {
        "readwrite" => Permissions::READ.with(Permissions::WRITE),
        _ => Permissions::READ,
    }
}

/// A module's fields for WASM.LIST and WASM.INFO.
fn describe(module: &LoadedModule, with_stats: bool) -> Vec<(Reply, Reply)> {
    let field = |k: &str, v: Reply| (Reply::bulk(k), v);
    let mut fields = vec![
        field("name", Reply::bulk(&module.name)),
        field("sha256", Reply::bulk(&module.sha256)),
        field("size", Reply::Int(module.size as i64)),
        field(
            "exports",
            Reply::Array(module.exports.iter().map(Reply::bulk).collect()),
        ),
        field(
            "permissions",
            Reply::Array(
                module
                    .permissions
                    .names()
                    .into_iter()
                    .map(Reply::bulk)
                    .collect(),
            ),
        ),
        field("loaded_at", Reply::Int(module.loaded_at_ms as i64)),
        field(
            "compile_time_us",
            Reply::Int(module.compile_time.as_micros() as i64),
        ),
    ];
    if with_stats {
        let s = &module.stats;
        let load = |c: &std::sync::atomic::AtomicU64| Reply::Int(c.load(Ordering::Relaxed) as i64);
        fields.extend([
            field("call_count", load(&s.calls)),
            field("error_count", load(&s.errors)),
            field("fuel_total", load(&s.fuel_total)),
            field("avg_duration_us", Reply::Int(s.avg_us() as i64)),
            field("p99_duration_us", Reply::Int(s.p99_us() as i64)),
            field(
                "last_error",
                Reply::opt_bulk(s.last_error.lock().clone().map(Bytes::from)),
            ),
        ]);
    }
    fields
}

fn list(shared: &Shared, args: &[Bytes]) -> Result<Reply, CommandError> {
    let with_stats = match args {
        [] => false,
        [w] if is(w, "WITHSTATS") => true,
        _ => return Err(CommandError::Syntax),
    };
    Ok(Reply::Array(
        shared
            .node
            .modules()
            .list()
            .iter()
            .map(|m| Reply::Map(describe(m, with_stats)))
            .collect(),
    ))
}

fn stats(shared: &Shared) -> Reply {
    let registry = shared.node.modules();
    let t = &registry.totals;
    let load = |c: &std::sync::atomic::AtomicU64| Reply::Int(c.load(Ordering::Relaxed) as i64);
    let field = |k: &str, v: Reply| (Reply::bulk(k), v);
    let by_kind = t
        .errors_by_kind
        .lock()
        .iter()
        .map(|(k, v)| (Reply::bulk(k), Reply::Int(*v as i64)))
        .collect();
    let config = shared.config.read();
    Reply::Map(vec![
        field("modules", Reply::Int(registry.len() as i64)),
        field("loads", load(&t.loads)),
        field("calls", load(&t.calls)),
        field("errors", load(&t.errors)),
        field("errors_by_kind", Reply::Map(by_kind)),
        field("fuel_total", load(&t.fuel)),
        field(
            "pool_max_instances",
            Reply::Int(config.wasm.pool.max_instances as i64),
        ),
        field(
            "pool_min_instances",
            Reply::Int(config.wasm.pool.min_instances as i64),
        ),
        field(
            "pool_ready_instances",
            Reply::Int(registry.list().iter().map(|m| m.pool.ready() as i64).sum()),
        ),
        field(
            "compile_cache_hits",
            Reply::Int(shared.node.wasm_cache_counts().0 as i64),
        ),
        field(
            "compile_cache_misses",
            Reply::Int(shared.node.wasm_cache_counts().1 as i64),
        ),
    ])
}

/// The optional `name.toml` beside a preloaded `name.wasm`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModuleManifest {
    /// Permission names, e.g. `["READ", "WRITE"]`.
    permissions: Vec<String>,
}

/// Loads every `name.wasm` (or `name.wat`) in the configured `module_dir` at start, with the
/// permissions of an optional `name.toml`. A module that fails to load stops start-up with an
/// error naming the file.
///
/// Loads are replicated, so only the leader preloads (every member is expected to have the
/// same `module_dir`); a module already loaded with the same bytes is skipped, and one loaded
/// with other bytes is replaced.
pub async fn preload_modules(shared: &Shared) -> Result<usize, String> {
    let (dir, default, security) = {
        let config = shared.config.read();
        let w = &config.wasm;
        (w.module_dir.clone(), default_permissions(w), w.security)
    };
    if dir.as_os_str().is_empty() {
        return Ok(0);
    }
    if !shared.node.is_leader() {
        tracing::info!("not the leader: module_dir is preloaded by the leader");
        return Ok(0);
    }
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read wasm.module_dir {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm" || x == "wat"))
        .collect();
    files.sort();
    for path in &files {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let manifest = path.with_extension("toml");
        let permissions = if manifest.exists() {
            let text = std::fs::read_to_string(&manifest)
                .map_err(|e| format!("{}: {e}", manifest.display()))?;
            let parsed: ModuleManifest =
                toml::from_str(&text).map_err(|e| format!("{}: {e}", manifest.display()))?;
            let mut granted = Permissions::default();
            for name in &parsed.permissions {
                granted = granted.with(Permissions::parse(name).ok_or_else(|| {
                    format!("{}: unknown permission '{name}'", manifest.display())
                })?);
            }
            granted
        } else {
            default
        };
        if (permissions.contains(Permissions::NETWORK) && !security.allow_network)
            || (permissions.contains(Permissions::FILESYSTEM) && !security.allow_filesystem)
        {
            return Err(format!(
                "{}: a permission not allowed by [wasm.security]",
                manifest.display()
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let loaded = shared.node.modules().get(&name);
        if loaded.as_ref().is_some_and(|m| {
            m.sha256 == crate::wasm::hex_sha256(&bytes) && m.permissions == permissions
        }) {
            continue;
        }
        let reply = shared
            .node
            .wasm_load(
                name.clone(),
                Bytes::from(bytes),
                permissions,
                loaded.is_some(),
            )
            .await;
        if let Reply::Error(e) = reply {
            return Err(format!("{}: {e}", path.display()));
        }
        tracing::info!(module = %name, %permissions, "preloaded");
    }
    Ok(files.len())
}
