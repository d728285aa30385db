//! WebAssembly function commands: WASM.LOAD, WASM.UNLOAD, WASM.CALL, WASM.CALL_RO, WASM.LIST,
//! WASM.INFO, WASM.STATS, and the Redis 7 style FCALL / FCALL_RO.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::{CommandError, Session, Shared};
use crate::args::{is, parse_i64, text};
use crate::command_table::Functions;
use crate::config::{DefaultPermissions, WasmConfig, WasmSecurity};
use crate::node::{CallLimits, CallMode, LoadedModule, Permissions, Queued, Ticket, WasmError};
use crate::reply::Reply;

pub(super) async fn execute(
    shared: &Shared,
    session: &Session,
    command: Functions,
    argv: &[Bytes],
) -> Result<Reply, CommandError> {
    let args = &argv[1..];
    match command {
        Functions::Load => load(shared, args).await,
        Functions::Unload => Ok(shared.node.wasm_unload(text(&args[0])).await),
        Functions::Call | Functions::CallRo | Functions::Fcall | Functions::FcallRo => {
            let form = CallForm::of(command).expect("a call command");
            run(shared, session, (form.parse)(args)?, form.read_only).await
        }
        Functions::List => list(shared, args),
        Functions::Info => match shared.node.modules().get(&text(&args[0])) {
            Some(module) => Ok(Reply::Map(describe(&module, true))),
            None => Err(WasmError::NoSuchModule(text(&args[0])).into()),
        },
        Functions::Stats => Ok(stats(shared)),
    }
}

/// A parsed call, borrowing the request's words.
struct Call<'a> {
    module: Cow<'a, str>,
    entry: Cow<'a, str>,
    keys: &'a [Bytes],
    args: &'a [Bytes],
}

/// Reads a call command's words.
type ParseCall = for<'a> fn(&'a [Bytes]) -> Result<Call<'a>, CommandError>;

/// How a call command reads its words, and whether it only reads.
struct CallForm {
    parse: ParseCall,
    read_only: bool,
}

impl CallForm {
    /// The form of `command`, when it calls a function.
    fn of(command: Functions) -> Option<CallForm> {
        let (parse, read_only): (ParseCall, bool) = match command {
            Functions::Call => (parse_wasm_call, false),
            Functions::CallRo => (parse_wasm_call, true),
            Functions::Fcall => (parse_fcall, false),
            Functions::FcallRo => (parse_fcall, true),
            _ => return None,
        };
        Some(CallForm { parse, read_only })
    }
}

/// `name[.export]`: the entry defaults to `main`. Borrows the word when it is UTF-8.
fn target(word: &[u8]) -> (Cow<'_, str>, Cow<'_, str>) {
    fn split(word: &str) -> (&str, &str) {
        word.split_once('.')
            .unwrap_or((word, ferrite_abi::export::DEFAULT_ENTRY))
    }
    match String::from_utf8_lossy(word) {
        Cow::Borrowed(word) => {
            let (module, entry) = split(word);
            (Cow::Borrowed(module), Cow::Borrowed(entry))
        }
        Cow::Owned(word) => {
            let (module, entry) = split(&word);
            (Cow::Owned(module.to_owned()), Cow::Owned(entry.to_owned()))
        }
    }
}

/// `WASM.CALL name[.export] [KEYS key ...] [ARGS arg ...]`. Keys run until the word `ARGS`.
fn parse_wasm_call(args: &[Bytes]) -> Result<Call<'_>, CommandError> {
    let (module, entry) = target(&args[0]);
    let mut rest = &args[1..];
    let mut keys: &[Bytes] = &[];
    if rest.first().is_some_and(|w| is(w, "KEYS")) {
        rest = &rest[1..];
        let count = rest
            .iter()
            .position(|w| is(w, "ARGS"))
            .unwrap_or(rest.len());
        (keys, rest) = rest.split_at(count);
    }
    let call_args = match rest.split_first() {
        Some((first, _)) if !is(first, "ARGS") => return Err(CommandError::Syntax),
        Some((_, tail)) => tail,
        None => &[],
    };
    Ok(Call {
        module,
        entry,
        keys,
        args: call_args,
    })
}

/// `FCALL name[.export] numkeys key ... arg ...`, with Redis's error texts.
fn parse_fcall(args: &[Bytes]) -> Result<Call<'_>, CommandError> {
    let (module, entry) = target(&args[0]);
    let numkeys = parse_i64(&args[1]).ok_or(CommandError::NotInteger)?;
    if numkeys < 0 {
        return Err(CommandError::NegativeKeyCount);
    }
    let rest = &args[2..];
    if numkeys as usize > rest.len() {
        return Err(CommandError::TooManyKeys);
    }
    let (keys, call_args) = rest.split_at(numkeys as usize);
    Ok(Call {
        module,
        entry,
        keys,
        args: call_args,
    })
}

/// Whether `command` calls a function (and keeps none of its words once answered).
pub(super) fn is_call(command: Functions) -> bool {
    CallForm::of(command).is_some()
}

/// Whether the call command `command` with `args` goes through the log, so that a connection
/// may queue it without waiting ([`submit`]): `WASM.CALL` or `FCALL` of a module loaded with
/// WRITE.
pub(super) fn defers(shared: &Shared, command: Functions, args: &[Bytes]) -> bool {
    matches!(command, Functions::Call | Functions::Fcall)
        && args
            .first()
            .is_some_and(|word| shared.node.is_write_call(&target(word).0))
}

/// Queues a call that [`defers`] accepted for the log, without waiting for its reply.
pub(super) fn submit(shared: &Shared, command: Functions, args: &[Bytes]) -> Result<Ticket, Reply> {
    let form = CallForm::of(command).expect("defers accepted a call command");
    let call = (form.parse)(args).map_err(Reply::error)?;
    super::same_slot(call.keys).map_err(Reply::error)?;
    shared.node.submit_call(
        &call.module,
        &call.entry,
        call.keys,
        call.args,
        call_limits(shared),
    )
}

/// The limits calls start with: this node's configuration now.
pub(super) fn call_limits(shared: &Shared) -> CallLimits {
    let config = shared.config.read();
    let l = &config.wasm.limits;
    CallLimits {
        max_memory_bytes: l.max_memory_bytes,
        max_fuel: l.max_fuel,
        max_duration: Duration::from_millis(l.max_duration_ms),
        time_slice: false,
    }
}

/// A call command queued in MULTI, parsed at EXEC: `None` for any other function command
/// (those run after the transaction, like other non-data commands).
pub(super) fn queued_call(
    command: Functions,
    args: &[Bytes],
) -> Option<Result<Queued, CommandError>> {
    let form = CallForm::of(command)?;
    Some((form.parse)(args).map(|c| Queued::Call {
        module: c.module.into_owned(),
        entry: c.entry.into_owned(),
        keys: c.keys.to_vec(),
        args: c.args.to_vec(),
        read_only: form.read_only,
    }))
}

/// Runs a call. A call that only reads (`*_RO`, or a module without WRITE) is a read like
/// GET: linearizable on the leader, against local state on a follower after `READONLY`,
/// redirected otherwise (as Redis Cluster redirects `FCALL_RO` on a replica). Write calls go
/// through the log.
async fn run(
    shared: &Shared,
    session: &Session,
    call: Call<'_>,
    read_only: bool,
) -> Result<Reply, CommandError> {
    super::same_slot(call.keys)?;
    let reads = super::read_mode(shared, session);
    let limits = call_limits(shared);
    Ok(shared
        .node
        .wasm_call(
            &call.module,
            &call.entry,
            call.keys,
            call.args,
            CallMode { read_only },
            limits,
            reads,
        )
        .await)
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
        return Err(CommandError::ModuleName);
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
            let mut granted = Permissions::empty();
            for perm in rest.by_ref() {
                granted |= Permissions::parse(&text(perm))
                    .ok_or_else(|| CommandError::UnknownPermission(text(perm)))?;
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
    check_allowed(permissions, security)?;
    Ok(shared
        .node
        .wasm_load(name, bytes, permissions, replace)
        .await)
}

/// The permissions of a module loaded without PERMISSIONS.
pub fn default_permissions(config: &WasmConfig) -> Permissions {
    match config.default_permissions {
        DefaultPermissions::ReadOnly => Permissions::READ,
        DefaultPermissions::ReadWrite => Permissions::READ | Permissions::WRITE,
    }
}

/// Refuses a permission that `[wasm.security]` does not allow to grant.
pub fn check_allowed(permissions: Permissions, security: WasmSecurity) -> Result<(), WasmError> {
    if permissions.contains(Permissions::NETWORK) && !security.allow_network {
        return Err(WasmError::PermissionNotAllowed("NETWORK"));
    }
    if permissions.contains(Permissions::FILESYSTEM) && !security.allow_filesystem {
        return Err(WasmError::PermissionNotAllowed("FILESYSTEM"));
    }
    Ok(())
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
        field("memory_checks", Reply::bulk(module.memory_checks())),
        field("instances", Reply::bulk(module.instances())),
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
            "pool_instances_in_use",
            Reply::Int(shared.node.wasm_slots_in_use() as i64),
        ),
        field(
            "pool_calls_on_kept_instances",
            Reply::Int(shared.node.wasm_calls_on_kept_instances() as i64),
        ),
        field(
            "helper_threads",
            Reply::Int(shared.node.helpers().count() as i64),
        ),
        field(
            "helper_calls",
            Reply::Int(shared.node.helpers().ran() as i64),
        ),
        field(
            "apply_calls_past_slice",
            Reply::Int(shared.node.wasm_calls_past_slice() as i64),
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
