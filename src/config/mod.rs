//! Configuration: defaults, the TOML file, command-line overrides, validation, and (in
//! `params.rs`) the `CONFIG GET`/`CONFIG SET` view of the live settings.
//!
//! Precedence is flag > file > default. TOML keys and flags share names (`data_dir` /
//! `--data-dir`); `CONFIG GET` uses the names Redis users know (`proto-max-bulk-len`, `dir`).
//! Values are typed where they are read: the peer list is parsed once into [`Peers`], the
//! default module permissions are an enum. This module does no I/O besides reading the file it
//! is given.

mod cluster;
mod params;
mod wasm;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

pub use cluster::{
    ClusterConfig, DEFAULT_BATCH_WAIT_US, DEFAULT_ELECTION_TIMEOUT_MAX_MS,
    DEFAULT_ELECTION_TIMEOUT_MIN_MS, DEFAULT_HEARTBEAT_MS, DEFAULT_MAX_ENTRY_BYTES,
    DEFAULT_SNAPSHOT_KEEP_LOGS, DEFAULT_SNAPSHOT_LOGS, DEFAULT_SNAPSHOT_TIMEOUT_MS,
    DEFAULT_WRITE_TIMEOUT_MS, MIN_SECRET_LEN,
};
pub use params::ConfigSetError;
pub use wasm::{
    DEFAULT_MAX_DURATION_MS, DEFAULT_MAX_FUEL, DEFAULT_MAX_INSTANCES, DEFAULT_MAX_MEMORY_BYTES,
    DEFAULT_MAX_MODULE_SIZE, DEFAULT_MAX_STACK_BYTES, DefaultPermissions, MIN_STACK_BYTES,
    WasmConfig, WasmLimits, WasmPool, WasmSecurity,
};

pub use crate::peers::Peers;
use crate::peers::{NodeId, default_cluster_port};

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
/// Most threads `server.threads` may ask for.
pub const MAX_THREADS: usize = 256;

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
    /// Threads that run commands: one runs every client's commands, the others take only
    /// long read-only function calls off it. 0 means one per core.
    pub threads: usize,
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
            threads: 0,
        }
    }
}

/// Values given on the command line; each one given overrides the file. The binary's flags
/// are these (clap derives them), so a flag and its TOML key cannot drift apart.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Client port; 0 picks a free one [default: 6379].
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Password clients must give with AUTH or HELLO [default: none].
    #[arg(long, value_name = "PASS")]
    pub requirepass: Option<String>,
    /// Directory for durable state [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Threads that run commands; the ones after the first take only long read-only function
    /// calls [default: one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// This node's Raft id [default: 1].
    #[arg(long, value_name = "N")]
    pub node_id: Option<NodeId>,
    /// Initial cluster members, e.g. "1@127.0.0.1:7001,2@127.0.0.1:7002,3@127.0.0.1:7003"
    /// (client addresses in Redis's host:port form, a cluster port after an @); the lowest id
    /// initializes the cluster. Without it the node is a one-member cluster.
    #[arg(long, value_name = "LIST")]
    pub peers: Option<Peers>,
    /// Start without initializing a cluster and wait for CLUSTER ADDNODE on the leader.
    #[arg(long)]
    pub join: bool,
    /// The IP or host clients are given for this node (MOVED, CLUSTER SLOTS).
    #[arg(long, value_name = "IP")]
    pub announce_ip: Option<String>,
    /// Raft port [default: client port + 10000].
    #[arg(long = "cluster-port", value_name = "N")]
    pub cluster_port: Option<u16>,
    /// The secret every cluster member holds (at least 16 bytes); required with --peers or
    /// --join. Without it the node opens no cluster port.
    #[arg(
        long = "cluster-secret",
        value_name = "SECRET",
        env = "FERRITE_CLUSTER_SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,
}

/// Why a configuration could not be used. Each variant names the offending key.
#[derive(Debug, Error)]
#[non_exhaustive]
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
    #[error("invalid config file {path}: {}", source.to_string().trim_end())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error, which names the key and line.
        source: Box<toml::de::Error>,
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

impl ServerConfig {
    /// Threads that run commands (`threads`, 0 resolved to one per core).
    pub fn command_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

impl Config {
    /// Reads `path` (if any), applies `overrides`, and validates the result.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::from_toml(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
            }
            None => Config::default(),
        };
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without validating ranges.
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// The port the cluster (Raft) listener binds: `cluster.port`, else the client port +
    /// 10000, else (client port 0) a free one. [`Config::validate`] has checked that the sum
    /// fits.
    pub fn cluster_port(&self) -> u16 {
        match (self.cluster.port, self.server.port) {
            (0, 0) => 0,
            (0, client) => default_cluster_port(client).unwrap_or(0),
            (port, _) => port,
        }
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
        if let Some(v) = o.threads {
            s.threads = v;
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
        if let Some(v) = o.cluster_secret {
            c.secret = v;
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
        if s.threads > MAX_THREADS {
            return Err(invalid(
                "server.threads",
                format!("must be at most {MAX_THREADS} (0: one per core)"),
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
        self.cluster.validate()?;
        self.cluster.validate_port(s.port)
    }
}

fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

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
        for (text, key) in [
            ("[server]\nprot = 1\n", "prot"),
            ("[server]\nport = \"x\"\n", "port"),
            ("[servr]\n", "servr"),
            ("[cluster]\npeers = \"1-a:1\"\n", "peers"),
            (
                "[wasm]\ndefault_permissions = \"all\"\n",
                "default_permissions",
            ),
        ] {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        let mut c = Config::default();
        c.server.log_level = "loud".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("server.log_level"), "{err}");
        let mut c = Config::default();
        c.server.threads = MAX_THREADS + 1;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("server.threads"), "{err}");
    }

    #[test]
    fn threads_default_to_one_per_core() {
        let c = Config::default();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(c.server.command_threads(), cores);
        let c = Config::from_toml("[server]\nthreads = 3\n").unwrap();
        assert_eq!(c.server.command_threads(), 3);
    }

    #[test]
    fn peers_are_typed_and_must_list_this_node() {
        let c = Config::from_toml(
            "[cluster]\nnode_id = 2\npeers = \"1@a:7001,2@b:7002\"\nsecret = \"0123456789abcdef\"\n",
        )
        .unwrap();
        assert_eq!(c.cluster.peers.get(2).unwrap().client_addr(), "b:7002");
        c.validate().unwrap();
        let c = Config::from_toml(
            "[cluster]\nnode_id = 3\npeers = \"1@a:7001\"\nsecret = \"0123456789abcdef\"\n",
        )
        .unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("cluster.peers"), "{err}");
    }

    #[test]
    fn a_cluster_needs_a_secret_and_a_single_node_needs_no_cluster_port() {
        let mut c = Config::default();
        assert!(!c.cluster.has_bus());
        c.server.port = 60001;
        c.validate()
            .expect("a single node on any port, with no cluster port");
        c.cluster.peers = "1@a:7001,2@b:7002".parse().unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("cluster.secret"), "{err}");
        c.cluster.peers = crate::peers::Peers::none();
        c.cluster.join = true;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("cluster.secret"), "{err}");
        c.cluster.secret = "short".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
        c.cluster.secret = "0123456789abcdef".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("cluster.port"),
            "60001 + 10000 does not fit: {err}"
        );
        c.cluster.port = 7100;
        c.validate().unwrap();
        assert!(c.cluster.has_bus());
    }

    #[test]
    fn the_clock_bound_stays_below_half_the_leader_lease() {
        let mut c = Config::default();
        c.validate().unwrap();
        c.cluster.max_clock_offset_ms = 500;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("cluster.max_clock_offset_ms"), "{err}");
        c.cluster.election_timeout_max_ms = 1001;
        c.validate().unwrap();
        c.cluster.max_clock_offset_ms = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_lease_allows_for_a_drift_between_one_and_ninety_percent() {
        let mut c = Config::default();
        assert_eq!(c.cluster.max_clock_drift_percent, 10);
        for bad in [0, 91] {
            c.cluster.max_clock_drift_percent = bad;
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("cluster.max_clock_drift_percent"), "{err}");
        }
        c.cluster.max_clock_drift_percent = 90;
        c.validate().unwrap();
    }

    #[test]
    fn the_cluster_port_defaults_to_ten_thousand_above_the_client_port() {
        let mut c = Config::default();
        assert_eq!(c.cluster_port(), 16379);
        c.server.port = 0;
        assert_eq!(c.cluster_port(), 0, "a free port, like the client port");
        c.cluster.port = 7100;
        assert_eq!(c.cluster_port(), 7100);
        c.cluster.port = 0;
        c.server.port = 60000;
        c.cluster.secret = "0123456789abcdef".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("cluster.port"), "{err}");
    }
}
