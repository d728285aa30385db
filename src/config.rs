//! Configuration: defaults, the TOML file, command-line overrides, validation, and the
//! `CONFIG GET`/`CONFIG SET` view of the live settings.
//!
//! Precedence is flag > file > default. TOML keys and flags share names (`data_dir` /
//! `--data-dir`); `CONFIG GET` uses the names Redis users know (`proto-max-bulk-len`, `dir`).
//! This module does no I/O besides reading the file it is given.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// Default client address.
pub const DEFAULT_BIND: &str = "127.0.0.1";
/// Default client port, Redis's.
pub const DEFAULT_PORT: u16 = 6379;
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default log level.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Redis's `maxclients` default.
pub const DEFAULT_MAXCLIENTS: u64 = 10_000;
/// Redis's `proto-max-bulk-len` default: 512 MB.
pub const DEFAULT_PROTO_MAX_BULK_LEN: u64 = 512 * 1024 * 1024;
/// Largest multibulk count accepted; Redis refuses counts above `INT_MAX`.
pub const DEFAULT_MAX_MULTIBULK_LEN: u64 = i32::MAX as u64;
/// Redis's `PROTO_INLINE_MAX_SIZE`: 64 KB for an inline command or a multibulk header line.
pub const DEFAULT_MAX_INLINE_LEN: u64 = 64 * 1024;
/// Redis's `client-query-buffer-limit` default: 1 GB.
pub const DEFAULT_CLIENT_QUERY_BUFFER_LIMIT: u64 = 1024 * 1024 * 1024;
/// How often the active expiry cycle looks for expired keys, in milliseconds (Redis: hz 10).
pub const DEFAULT_ACTIVE_EXPIRE_INTERVAL_MS: u64 = 100;

/// The whole configuration, one section per subsystem.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    /// `[server]`: listener, limits, authentication.
    pub server: ServerConfig,
    /// `[wasm]`: WebAssembly functions.
    pub wasm: WasmConfig,
    /// `[cluster]`: Raft membership, timing and durability.
    pub cluster: ClusterConfig,
}

/// Default Raft heartbeat period.
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// Default lower bound of the election timeout.
pub const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 500;
/// Default upper bound of the election timeout.
pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 1000;
/// Default log entries between snapshots.
pub const DEFAULT_SNAPSHOT_LOGS: u64 = 10_000;
/// Default log entries kept behind a snapshot.
pub const DEFAULT_SNAPSHOT_KEEP_LOGS: u64 = 1_000;
/// Default time a write waits to commit before answering UNCERTAIN.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 5_000;

/// The `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's Raft id (`--node-id`).
    pub node_id: u64,
    /// Initial members, `id@host:port[@cport],...` (`--peers`); empty: a one-member cluster.
    pub peers: String,
    /// Start without bootstrapping and wait to be added with CLUSTER ADDNODE (`--join`).
    pub join: bool,
    /// The IP or host this node gives clients for itself (`--announce-ip`); default: the bind
    /// address, or 127.0.0.1 when binding every interface.
    pub announce_ip: String,
    /// Raft port; 0 means the client port + 10000 (or a free port when the client port is 0).
    pub port: u16,
    /// Leader heartbeat period.
    pub heartbeat_ms: u64,
    /// Election timeout lower bound.
    pub election_timeout_min_ms: u64,
    /// Election timeout upper bound.
    pub election_timeout_max_ms: u64,
    /// Log entries between snapshots (log compaction).
    pub snapshot_logs: u64,
    /// Log entries kept behind a snapshot.
    pub snapshot_keep_logs: u64,
    /// How long a write waits to commit before answering UNCERTAIN.
    pub write_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: 1,
            peers: String::new(),
            join: false,
            announce_ip: String::new(),
            port: 0,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            election_timeout_min_ms: DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            snapshot_logs: DEFAULT_SNAPSHOT_LOGS,
            snapshot_keep_logs: DEFAULT_SNAPSHOT_KEEP_LOGS,
            write_timeout_ms: DEFAULT_WRITE_TIMEOUT_MS,
        }
    }
}

impl ClusterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("cluster.node_id", "must be at least 1".into()));
        }
        if !self.peers.is_empty() {
            let peers = crate::replication::parse_peers(&self.peers)
                .map_err(|e| invalid("cluster.peers", e))?;
            if !peers.contains_key(&self.node_id) {
                return Err(invalid(
                    "cluster.peers",
                    format!("does not list this node's id {}", self.node_id),
                ));
            }
        }
        if self.heartbeat_ms == 0 {
            return Err(invalid("cluster.heartbeat_ms", "must be at least 1".into()));
        }
        if self.election_timeout_min_ms <= self.heartbeat_ms {
            return Err(invalid(
                "cluster.election_timeout_min_ms",
                "must be greater than heartbeat_ms".into(),
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(invalid(
                "cluster.election_timeout_max_ms",
                "must be greater than election_timeout_min_ms".into(),
            ));
        }
        if self.snapshot_logs == 0 {
            return Err(invalid(
                "cluster.snapshot_logs",
                "must be at least 1".into(),
            ));
        }
        if self.write_timeout_ms == 0 {
            return Err(invalid(
                "cluster.write_timeout_ms",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Default largest module: 8 MB.
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 8 * 1024 * 1024;
/// Default memory limit of a call: 64 MB.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// Default fuel of a call.
pub const DEFAULT_MAX_FUEL: u64 = 1_000_000;
/// Default wall-clock limit of a read-only call.
pub const DEFAULT_MAX_DURATION_MS: u64 = 5_000;
/// Default WebAssembly stack: 512 KiB (wasmtime's default).
pub const DEFAULT_MAX_STACK_BYTES: u64 = 512 * 1024;
/// Default number of pristine instances kept ready per module in use.
pub const DEFAULT_MIN_INSTANCES: u32 = 2;
/// Default idle time after which a module's ready instances are dropped.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Default number of instances the pooling allocator can hold at once.
pub const DEFAULT_MAX_INSTANCES: u32 = 64;

/// The `[wasm]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WasmConfig {
    /// Directory of modules loaded at start (`name.wasm`, optional `name.toml`); empty: none.
    pub module_dir: PathBuf,
    /// Largest module accepted, in bytes.
    pub max_module_size: u64,
    /// Permissions of a module loaded without PERMISSIONS: `readonly` (READ) or `readwrite`.
    pub default_permissions: String,
    /// `[wasm.limits]`.
    pub limits: WasmLimits,
    /// `[wasm.pool]`.
    pub pool: WasmPool,
    /// `[wasm.security]`.
    pub security: WasmSecurity,
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            module_dir: PathBuf::new(),
            max_module_size: DEFAULT_MAX_MODULE_SIZE,
            default_permissions: "readonly".to_owned(),
            limits: WasmLimits::default(),
            pool: WasmPool::default(),
            security: WasmSecurity::default(),
        }
    }
}

/// `[wasm.limits]`: per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WasmLimits {
    /// Most linear memory of a call, in bytes.
    pub max_memory_bytes: u64,
    /// Fuel a call starts with.
    pub max_fuel: u64,
    /// Wall-clock limit of read-only calls, in ms (write calls are bounded by fuel alone).
    pub max_duration_ms: u64,
    /// WebAssembly stack limit, in bytes.
    pub max_stack_bytes: u64,
}

impl Default for WasmLimits {
    fn default() -> Self {
        WasmLimits {
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            max_fuel: DEFAULT_MAX_FUEL,
            max_duration_ms: DEFAULT_MAX_DURATION_MS,
            max_stack_bytes: DEFAULT_MAX_STACK_BYTES,
        }
    }
}

/// `[wasm.pool]`: the instance allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WasmPool {
    /// Pristine instances kept ready per module in use.
    pub min_instances: u32,
    /// Instances that can exist at once (pooling allocator slots).
    pub max_instances: u32,
    /// Ready instances of a module not called for this long are dropped.
    pub idle_timeout_secs: u64,
}

impl Default for WasmPool {
    fn default() -> Self {
        WasmPool {
            min_instances: DEFAULT_MIN_INSTANCES,
            max_instances: DEFAULT_MAX_INSTANCES,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
        }
    }
}

/// `[wasm.security]`: which permissions modules may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WasmSecurity {
    /// Whether NETWORK may be granted (it grants nothing yet: no WASI imports in ABI v1).
    pub allow_network: bool,
    /// Whether FILESYSTEM may be granted (likewise).
    pub allow_filesystem: bool,
}

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: String,
    /// Client port; 0 picks a free one (the chosen address is logged).
    pub port: u16,
    /// Password clients must give with AUTH or HELLO; empty means none.
    pub requirepass: String,
    /// Where durable state lives: the Raft log and snapshots, the WASM compile cache.
    pub data_dir: PathBuf,
    /// One of error, warn, info, debug, trace.
    pub log_level: String,
    /// Most clients connected at once.
    pub maxclients: u64,
    /// Longest bulk string a client may send.
    pub proto_max_bulk_len: u64,
    /// Most elements in one multibulk request.
    pub max_multibulk_len: u64,
    /// Longest inline command or multibulk header line.
    pub max_inline_len: u64,
    /// Most unparsed bytes buffered for one client before it is disconnected.
    pub client_query_buffer_limit: u64,
    /// Period of the active expiry cycle in milliseconds.
    pub active_expire_interval_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: DEFAULT_BIND.to_owned(),
            port: DEFAULT_PORT,
            requirepass: String::new(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            maxclients: DEFAULT_MAXCLIENTS,
            proto_max_bulk_len: DEFAULT_PROTO_MAX_BULK_LEN,
            max_multibulk_len: DEFAULT_MAX_MULTIBULK_LEN,
            max_inline_len: DEFAULT_MAX_INLINE_LEN,
            client_query_buffer_limit: DEFAULT_CLIENT_QUERY_BUFFER_LIMIT,
            active_expire_interval_ms: DEFAULT_ACTIVE_EXPIRE_INTERVAL_MS,
        }
    }
}

/// Values given on the command line; each `Some` overrides the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--bind`.
    pub bind: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--requirepass`.
    pub requirepass: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--node-id`.
    pub node_id: Option<u64>,
    /// `--peers`.
    pub peers: Option<String>,
    /// `--join`.
    pub join: bool,
    /// `--announce-ip`.
    pub announce_ip: Option<String>,
    /// `--cluster-port`.
    pub cluster_port: Option<u16>,
}

/// Why a configuration could not be used. Each variant names the offending key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for our layout (unknown key, wrong type).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A key holds a value outside its allowed range.
    #[error("invalid value for '{key}': {reason}")]
    Invalid {
        /// The key, as written in the file (`server.port`).
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The log levels `log_level` accepts.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

impl Config {
    /// Reads `path` (if any), applies `overrides`, and validates the result.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::from_toml(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
            None => Config::default(),
        };
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without validating ranges.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    fn apply(&mut self, o: Overrides) {
        let s = &mut self.server;
        if let Some(v) = o.bind {
            s.bind = v;
        }
        if let Some(v) = o.port {
            s.port = v;
        }
        if let Some(v) = o.requirepass {
            s.requirepass = v;
        }
        if let Some(v) = o.data_dir {
            s.data_dir = v;
        }
        if let Some(v) = o.log_level {
            s.log_level = v;
        }
        let c = &mut self.cluster;
        if let Some(v) = o.node_id {
            c.node_id = v;
        }
        if let Some(v) = o.peers {
            c.peers = v;
        }
        c.join |= o.join;
        if let Some(v) = o.announce_ip {
            c.announce_ip = v;
        }
        if let Some(v) = o.cluster_port {
            c.port = v;
        }
    }

    /// Checks every value's range; the error names the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.bind.parse::<IpAddr>().is_err() {
            return Err(invalid(
                "server.bind",
                format!("'{}' is not an IP address", s.bind),
            ));
        }
        if !LOG_LEVELS.contains(&s.log_level.as_str()) {
            return Err(invalid(
                "server.log_level",
                format!("'{}' is not one of {}", s.log_level, LOG_LEVELS.join(", ")),
            ));
        }
        if s.maxclients == 0 {
            return Err(invalid("server.maxclients", "must be at least 1".into()));
        }
        if s.proto_max_bulk_len < 1024 {
            return Err(invalid(
                "server.proto_max_bulk_len",
                "must be at least 1024".into(),
            ));
        }
        if s.max_multibulk_len == 0 || s.max_multibulk_len > DEFAULT_MAX_MULTIBULK_LEN {
            return Err(invalid(
                "server.max_multibulk_len",
                format!("must be between 1 and {DEFAULT_MAX_MULTIBULK_LEN}"),
            ));
        }
        if s.max_inline_len < 1024 {
            return Err(invalid(
                "server.max_inline_len",
                "must be at least 1024".into(),
            ));
        }
        if s.client_query_buffer_limit < 1024 * 1024 {
            return Err(invalid(
                "server.client_query_buffer_limit",
                "must be at least 1048576".into(),
            ));
        }
        if s.active_expire_interval_ms == 0 {
            return Err(invalid(
                "server.active_expire_interval_ms",
                "must be at least 1".into(),
            ));
        }
        self.wasm.validate()?;
        self.cluster.validate()
    }
}

impl WasmConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !["readonly", "readwrite"].contains(&self.default_permissions.as_str()) {
            return Err(invalid(
                "wasm.default_permissions",
                format!(
                    "'{}' is not readonly or readwrite",
                    self.default_permissions
                ),
            ));
        }
        if self.max_module_size == 0 || self.max_module_size > 1024 * 1024 * 1024 {
            return Err(invalid(
                "wasm.max_module_size",
                "must be between 1 and 1073741824".into(),
            ));
        }
        let l = &self.limits;
        if !(65_536..=4 * 1024 * 1024 * 1024).contains(&l.max_memory_bytes) {
            return Err(invalid(
                "wasm.limits.max_memory_bytes",
                "must be between 65536 and 4294967296".into(),
            ));
        }
        if l.max_fuel == 0 {
            return Err(invalid("wasm.limits.max_fuel", "must be at least 1".into()));
        }
        if l.max_duration_ms == 0 {
            return Err(invalid(
                "wasm.limits.max_duration_ms",
                "must be at least 1".into(),
            ));
        }
        if !(16 * 1024..=64 * 1024 * 1024).contains(&l.max_stack_bytes) {
            return Err(invalid(
                "wasm.limits.max_stack_bytes",
                "must be between 16384 and 67108864".into(),
            ));
        }
        if self.pool.min_instances > self.pool.max_instances / 2 {
            return Err(invalid(
                "wasm.pool.min_instances",
                "must be at most half of wasm.pool.max_instances".into(),
            ));
        }
        if !(1..=10_000).contains(&self.pool.max_instances) {
            return Err(invalid(
                "wasm.pool.max_instances",
                "must be between 1 and 10000".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The `(name, value)` pairs of every parameter whose Redis name matches `pattern`
    /// (a glob, case-insensitive), as `CONFIG GET` answers.
    pub fn get_matching(&self, pattern: &[u8]) -> Vec<(&'static str, String)> {
        let lowered = pattern.to_ascii_lowercase();
        PARAMETERS
            .iter()
            .filter(|p| crate::glob::matches(&lowered, p.name.as_bytes()))
            .map(|p| (p.name, (p.get)(self)))
            .collect()
    }

    /// Changes one parameter at run time, as `CONFIG SET` does. The change is validated as a
    /// whole; on error nothing changes.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigSetError> {
        let lowered = name.to_ascii_lowercase();
        let param = PARAMETERS
            .iter()
            .find(|p| p.name == lowered)
            .ok_or(ConfigSetError::Unknown)?;
        let set = param.set.ok_or(ConfigSetError::Immutable)?;
        let mut next = self.clone();
        set(&mut next, value).map_err(ConfigSetError::BadValue)?;
        next.validate()
            .map_err(|e| ConfigSetError::BadValue(e.to_string()))?;
        *self = next;
        Ok(())
    }
}

/// Why `CONFIG SET` refused a parameter.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigSetError {
    /// No such parameter.
    #[error("Unknown option or number of arguments for CONFIG SET")]
    Unknown,
    /// The parameter exists but cannot change while running.
    #[error("can't set immutable config")]
    Immutable,
    /// The value is not acceptable.
    #[error("{0}")]
    BadValue(String),
}

fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

/// Applies a `CONFIG SET` value to a configuration.
type Setter = fn(&mut Config, &str) -> Result<(), String>;

/// One parameter as `CONFIG` sees it.
struct Parameter {
    name: &'static str,
    get: fn(&Config) -> String,
    set: Option<Setter>,
}

fn parse_u64(value: &str) -> Result<u64, String> {
    parse_memory(value)
        .ok_or_else(|| format!("argument couldn't be parsed into an integer ('{value}')"))
}

/// Parses an integer with an optional Redis memory unit (`kb`, `mb`, `gb`, `k`, `m`, `g`).
fn parse_memory(value: &str) -> Option<u64> {
    let lower = value.to_ascii_lowercase();
    let units: [(&str, u64); 6] = [
        ("kb", 1024),
        ("mb", 1024 * 1024),
        ("gb", 1024 * 1024 * 1024),
        ("k", 1000),
        ("m", 1000 * 1000),
        ("g", 1000 * 1000 * 1000),
    ];
    for (suffix, factor) in units {
        if let Some(number) = lower.strip_suffix(suffix) {
            return number.parse::<u64>().ok()?.checked_mul(factor);
        }
    }
    lower.parse().ok()
}

/// Every parameter `CONFIG GET` knows, sorted by name. `save`, `appendonly` and `databases`
/// report what this server does (no RDB/AOF, one database) because tools such as
/// redis-benchmark ask for them.
const PARAMETERS: &[Parameter] = &[
    Parameter {
        name: "active-expire-interval-ms",
        get: |c| c.server.active_expire_interval_ms.to_string(),
        set: None,
    },
    Parameter {
        name: "appendonly",
        get: |_| "no".to_owned(),
        set: None,
    },
    Parameter {
        name: "bind",
        get: |c| c.server.bind.clone(),
        set: None,
    },
    Parameter {
        name: "client-query-buffer-limit",
        get: |c| c.server.client_query_buffer_limit.to_string(),
        set: Some(|c, v| {
            c.server.client_query_buffer_limit = parse_u64(v)?;
            Ok(())
        }),
    },
    Parameter {
        name: "databases",
        get: |_| "1".to_owned(),
        set: None,
    },
    Parameter {
        name: "dir",
        get: |c| c.server.data_dir.display().to_string(),
        set: None,
    },
    Parameter {
        name: "loglevel",
        get: |c| c.server.log_level.clone(),
        set: Some(|c, v| {
            c.server.log_level = v.to_ascii_lowercase();
            Ok(())
        }),
    },
    Parameter {
        name: "max-inline-len",
        get: |c| c.server.max_inline_len.to_string(),
        set: Some(|c, v| {
            c.server.max_inline_len = parse_u64(v)?;
            Ok(())
        }),
    },
    Parameter {
        name: "max-multibulk-len",
        get: |c| c.server.max_multibulk_len.to_string(),
        set: Some(|c, v| {
            c.server.max_multibulk_len = parse_u64(v)?;
            Ok(())
        }),
    },
    Parameter {
        name: "maxclients",
        get: |c| c.server.maxclients.to_string(),
        set: Some(|c, v| {
            c.server.maxclients = parse_u64(v)?;
            Ok(())
        }),
    },
    Parameter {
        name: "port",
        get: |c| c.server.port.to_string(),
        set: None,
    },
    Parameter {
        name: "proto-max-bulk-len",
        get: |c| c.server.proto_max_bulk_len.to_string(),
        set: Some(|c, v| {
            c.server.proto_max_bulk_len = parse_u64(v)?;
            Ok(())
        }),
    },
    Parameter {
        name: "requirepass",
        get: |c| c.server.requirepass.clone(),
        set: Some(|c, v| {
            c.server.requirepass = v.to_owned();
            Ok(())
        }),
    },
    Parameter {
        name: "save",
        get: |_| String::new(),
        set: None,
    },
    Parameter {
        name: "wasm-max-duration-ms",
        get: |c| c.wasm.limits.max_duration_ms.to_string(),
        set: Some(|c, v| {
            c.wasm.limits.max_duration_ms = parse_u64(v)?;
            Ok(())
        }),
    },
    Parameter {
        name: "wasm-max-fuel",
        get: |c| c.wasm.limits.max_fuel.to_string(),
        set: Some(|c, v| {
            c.wasm.limits.max_fuel = parse_u64(v)?;
            Ok(())
        }),
    },
    Parameter {
        name: "wasm-max-memory-bytes",
        get: |c| c.wasm.limits.max_memory_bytes.to_string(),
        set: Some(|c, v| {
            c.wasm.limits.max_memory_bytes = parse_u64(v)?;
            Ok(())
        }),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_redis() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.server.port, 6379);
        assert_eq!(c.server.bind, "127.0.0.1");
        assert_eq!(c.server.proto_max_bulk_len, 512 * 1024 * 1024);
        assert_eq!(c.server.maxclients, 10_000);
    }

    #[test]
    fn file_values_apply_and_flags_override_them() {
        let c = Config::from_toml("[server]\nport = 7000\nrequirepass = \"pw\"\n").unwrap();
        assert_eq!(c.server.port, 7000);
        assert_eq!(c.server.requirepass, "pw");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, "[server]\nport = 7000\nbind = \"0.0.0.0\"\n").unwrap();
        let c = Config::load(
            Some(&path),
            Overrides {
                port: Some(7100),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.server.port, 7100, "flag beats file");
        assert_eq!(c.server.bind, "0.0.0.0", "file beats default");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = Config::from_toml("[server]\nprot = 1\n").unwrap_err();
        assert!(err.contains("prot"), "{err}");
        let err = Config::from_toml("[server]\nport = \"x\"\n").unwrap_err();
        assert!(err.contains("port"), "{err}");
        let err = Config::from_toml("[servr]\n").unwrap_err();
        assert!(err.contains("servr"), "{err}");
        let mut c = Config::default();
        c.server.log_level = "loud".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("server.log_level"), "{err}");
    }

    #[test]
    fn config_get_matches_globs() {
        let c = Config::default();
        let got = c.get_matching(b"save");
        assert_eq!(got, vec![("save", String::new())]);
        let names: Vec<_> = c
            .get_matching(b"*max*")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "max-inline-len",
                "max-multibulk-len",
                "maxclients",
                "proto-max-bulk-len",
                "wasm-max-duration-ms",
                "wasm-max-fuel",
                "wasm-max-memory-bytes"
            ]
        );
        assert_eq!(c.get_matching(b"PORT"), vec![("port", "6379".to_owned())]);
    }

    #[test]
    fn config_set_validates_and_refuses_immutables() {
        let mut c = Config::default();
        c.set("maxclients", "5").unwrap();
        assert_eq!(c.server.maxclients, 5);
        c.set("proto-max-bulk-len", "1mb").unwrap();
        assert_eq!(c.server.proto_max_bulk_len, 1024 * 1024);
        assert_eq!(c.set("port", "1"), Err(ConfigSetError::Immutable));
        assert_eq!(c.set("nope", "1"), Err(ConfigSetError::Unknown));
        assert!(c.set("maxclients", "0").is_err());
        assert_eq!(c.server.maxclients, 5, "a refused set changes nothing");
        assert!(c.set("loglevel", "chatty").is_err());
    }
}
