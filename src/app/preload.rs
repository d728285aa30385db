//! Modules loaded at start from `wasm.module_dir`: every `name.wasm` (or `name.wat`), with the
//! permissions of an optional `name.toml` beside it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use thiserror::Error;

use crate::commands::{Shared, check_allowed, default_permissions};
use crate::node::{Permissions, WasmError};
use crate::reply::Reply;

/// Why a module in `module_dir` could not be loaded. Each names the file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PreloadError {
    /// The directory or a file in it could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A manifest is not valid TOML for its layout.
    #[error("{path}: {source}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The parser's error.
        source: Box<toml::de::Error>,
    },
    /// A manifest names a permission that does not exist.
    #[error("{path}: unknown permission '{name}'")]
    UnknownPermission {
        /// The manifest.
        path: PathBuf,
        /// The name as written.
        name: String,
    },
    /// A manifest grants what `[wasm.security]` does not allow.
    #[error("{path}: {source}")]
    NotAllowed {
        /// The manifest.
        path: PathBuf,
        /// Which permission.
        source: WasmError,
    },
    /// The load was refused (invalid module, no leader...): the reply's error line.
    #[error("{path}: {line}")]
    Load {
        /// The module file.
        path: PathBuf,
        /// The error line.
        line: String,
    },
}

/// The optional `name.toml` beside a preloaded `name.wasm`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModuleManifest {
    /// Permission names, e.g. `["READ", "WRITE"]`.
    permissions: Vec<String>,
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> PreloadError + '_ {
    move |source| PreloadError::Read {
        path: path.to_owned(),
        source,
    }
}

/// The permissions a module file gets: its manifest's, else the configured default.
fn permissions_of(
    module: &Path,
    default: Permissions,
) -> Result<(PathBuf, Permissions), PreloadError> {
    let manifest = module.with_extension("toml");
    if !manifest.exists() {
        return Ok((manifest, default));
    }
    let text = std::fs::read_to_string(&manifest).map_err(read_error(&manifest))?;
    let parsed: ModuleManifest = toml::from_str(&text).map_err(|e| PreloadError::Manifest {
        path: manifest.clone(),
        source: Box::new(e),
    })?;
    let mut granted = Permissions::empty();
    for name in &parsed.permissions {
        granted |= Permissions::parse(name).ok_or_else(|| PreloadError::UnknownPermission {
            path: manifest.clone(),
            name: name.clone(),
        })?;
    }
    Ok((manifest, granted))
}

/// Loads every module of the configured `module_dir`; how many files it found. A module that
/// fails to load stops start-up with an error naming the file.
///
/// Loads are replicated, so only the leader preloads (every member is expected to have the
/// same `module_dir`); a module already loaded with the same bytes and permissions is skipped,
/// and one loaded otherwise is replaced.
pub async fn preload_modules(shared: &Shared) -> Result<usize, PreloadError> {
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
        .map_err(read_error(&dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm" || x == "wat"))
        .collect();
    files.sort();
    for path in &files {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (manifest, permissions) = permissions_of(path, default)?;
        check_allowed(permissions, security).map_err(|source| PreloadError::NotAllowed {
            path: manifest,
            source,
        })?;
        let bytes = std::fs::read(path).map_err(read_error(path))?;
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
        if let Reply::Error(line) = reply {
            return Err(PreloadError::Load {
                path: path.clone(),
                line,
            });
        }
        tracing::info!(module = %name, %permissions, "preloaded");
    }
    Ok(files.len())
}
