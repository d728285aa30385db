//! The `[wasm]` section: module size, default permissions, per-call limits, the instance
//! allocator and which permissions may be granted.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// Default largest module: 8 MB.
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 8 * 1024 * 1024;
/// Default memory limit of a call: 64 MB.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// Default fuel of a call.
pub const DEFAULT_MAX_FUEL: u64 = 1_000_000;
/// Default wall-clock limit of a read-only call.
pub const DEFAULT_MAX_DURATION_MS: u64 = 5_000;
/// Default native stack of a call: 1 MiB.
pub const DEFAULT_MAX_STACK_BYTES: u64 = 1024 * 1024;
/// The least native stack a call may have: room for the guest depth budget (32,768 units of
/// 16 bytes, `wasm/depth.rs`) twice over, so that every host traps at the counted depth, never
/// at its native limit first.
pub const MIN_STACK_BYTES: u64 = 1024 * 1024;
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
    pub default_permissions: DefaultPermissions,
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
            default_permissions: DefaultPermissions::ReadOnly,
            limits: WasmLimits::default(),
            pool: WasmPool::default(),
            security: WasmSecurity::default(),
        }
    }
}

/// What a module loaded without `PERMISSIONS` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPermissions {
    /// READ only.
    #[default]
    ReadOnly,
    /// READ and WRITE.
    ReadWrite,
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
    /// Native stack limit of a call, in bytes: a backstop (how deep guest code may call is
    /// counted and the same on every node).
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
    /// Instances that can exist at once (pooling allocator slots).
    pub max_instances: u32,
    /// No longer used (instances are made for each call, on its thread): accepted so that
    /// older configuration files still start, with a warning.
    pub min_instances: Option<u32>,
    /// No longer used, like `min_instances`.
    pub idle_timeout_secs: Option<u64>,
}

impl Default for WasmPool {
    fn default() -> Self {
        WasmPool {
            max_instances: DEFAULT_MAX_INSTANCES,
            min_instances: None,
            idle_timeout_secs: None,
        }
    }
}

impl WasmPool {
    /// The settings given that no longer have an effect, by name.
    pub fn retired_settings(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.min_instances.is_some() {
            names.push("wasm.pool.min_instances");
        }
        if self.idle_timeout_secs.is_some() {
            names.push("wasm.pool.idle_timeout_secs");
        }
        names
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

impl WasmConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
        if !(MIN_STACK_BYTES..=64 * 1024 * 1024).contains(&l.max_stack_bytes) {
            return Err(invalid(
                "wasm.limits.max_stack_bytes",
                format!("must be between {MIN_STACK_BYTES} and 67108864"),
            ));
        }
        // One slot is kept for applies, so local calls need a second.
        if !(2..=10_000).contains(&self.pool.max_instances) {
            return Err(invalid(
                "wasm.pool.max_instances",
                "must be between 2 and 10000".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn retired_pool_settings_still_load_and_are_named() {
        let old = "[wasm.pool]\nmin_instances = 2\nidle_timeout_secs = 60\nmax_instances = 8\n";
        let c = Config::from_toml(old).unwrap();
        c.validate().unwrap();
        assert_eq!(c.wasm.pool.max_instances, 8);
        assert_eq!(
            c.wasm.pool.retired_settings(),
            ["wasm.pool.min_instances", "wasm.pool.idle_timeout_secs"]
        );
        assert!(Config::default().wasm.pool.retired_settings().is_empty());
    }
}
