//! `CONFIG GET` and `CONFIG SET`: the live settings under the names Redis users know.
//!
//! Each parameter is one line of [`PARAMETERS`], made by a macro from the field it reads, so a
//! name, its getter and its setter cannot disagree. A change is validated as a whole (the same
//! [`Config::validate`] as at start-up) and nothing changes when it fails.

use thiserror::Error;

use super::{Config, ConfigError};

/// Why `CONFIG SET` refused a parameter. `Display` is the reason alone; the command layer puts
/// it in Redis's sentence.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigSetError {
    /// No such parameter.
    #[error("Unknown option or number of arguments for CONFIG SET")]
    Unknown,
    /// The parameter exists but cannot change while running.
    #[error("can't set immutable config")]
    Immutable,
    /// A number was expected.
    #[error("argument couldn't be parsed into an integer ('{0}')")]
    NotInteger(String),
    /// The value is out of range for its key.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
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
        set(&mut next, value)?;
        next.validate()?;
        *self = next;
        Ok(())
    }
}

/// Applies a `CONFIG SET` value to a configuration.
type Setter = fn(&mut Config, &str) -> Result<(), ConfigSetError>;

/// One parameter as `CONFIG` sees it.
struct Parameter {
    name: &'static str,
    get: fn(&Config) -> String,
    set: Option<Setter>,
}

/// A number that `CONFIG SET` may change (Redis's memory units accepted).
macro_rules! number {
    ($name:literal, $($field:ident).+) => {
        Parameter {
            name: $name,
            get: |c| c.$($field).+.to_string(),
            set: Some(|c, v| {
                c.$($field).+ = parse_u64(v)?;
                Ok(())
            }),
        }
    };
}

/// A value `CONFIG GET` shows and `CONFIG SET` refuses.
macro_rules! read_only {
    ($name:literal, |$c:ident| $get:expr) => {
        Parameter {
            name: $name,
            get: |$c| $get,
            set: None,
        }
    };
}

fn parse_u64(value: &str) -> Result<u64, ConfigSetError> {
    parse_memory(value).ok_or_else(|| ConfigSetError::NotInteger(value.to_owned()))
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
#[rustfmt::skip]
const PARAMETERS: &[Parameter] = &[
    read_only!("active-expire-interval-ms", |c| c.server.active_expire_interval_ms.to_string()),
    read_only!("appendonly", |_c| "no".to_owned()),
    read_only!("bind", |c| c.server.bind.clone()),
    number!("client-query-buffer-limit", server.client_query_buffer_limit),
    read_only!("databases", |_c| "1".to_owned()),
    read_only!("dir", |c| c.server.data_dir.display().to_string()),
    Parameter {
        name: "loglevel",
        get: |c| c.server.log_level.clone(),
        set: Some(|c, v| {
            c.server.log_level = v.to_ascii_lowercase();
            Ok(())
        }),
    },
    number!("max-inline-len", server.max_inline_len),
    number!("max-multibulk-len", server.max_multibulk_len),
    number!("maxclients", server.maxclients),
    read_only!("port", |c| c.server.port.to_string()),
    number!("proto-max-bulk-len", server.proto_max_bulk_len),
    Parameter {
        name: "requirepass",
        get: |c| c.server.requirepass.clone(),
        set: Some(|c, v| {
            c.server.requirepass = v.to_owned();
            Ok(())
        }),
    },
    read_only!("save", |_c| String::new()),
    read_only!("threads", |c| c.server.command_threads().to_string()),
    number!("wasm-max-duration-ms", wasm.limits.max_duration_ms),
    number!("wasm-max-fuel", wasm.limits.max_fuel),
    number!("wasm-max-memory-bytes", wasm.limits.max_memory_bytes),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_sorted_and_unique() {
        for pair in PARAMETERS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
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
        c.set("wasm-max-fuel", "2k").unwrap();
        assert_eq!(c.wasm.limits.max_fuel, 2000);
        assert!(matches!(c.set("port", "1"), Err(ConfigSetError::Immutable)));
        assert!(matches!(c.set("nope", "1"), Err(ConfigSetError::Unknown)));
        assert!(matches!(
            c.set("maxclients", "many"),
            Err(ConfigSetError::NotInteger(v)) if v == "many"
        ));
        assert!(matches!(
            c.set("maxclients", "0"),
            Err(ConfigSetError::Invalid(_))
        ));
        assert_eq!(c.server.maxclients, 5, "a refused set changes nothing");
        assert!(c.set("loglevel", "chatty").is_err());
    }
}
