//! Compiled code on disk: a module compiled once is kept under the data directory, keyed by
//! its SHA-256 and the engine's compatibility hash, so a restart or a replica loading the same
//! bytes skips Cranelift.
//!
//! A file is a magic, the SHA-256 of the code, and the code. It is written to a temporary
//! file, synced, renamed into place and the directory synced, so a crash leaves the old file,
//! the new one, or none; and a file whose checksum does not match (a torn write, a flipped
//! bit) is recompiled, never run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use super::{WasmError, depth, divide, first_line, headroom, reuse};

/// The compile cache of a runtime (shared by its engines: a file's name carries the engine's
/// compatibility hash) and its hit counts.
#[derive(Debug)]
pub(super) struct CodeCache {
    /// Where files go; `None`: no cache.
    dir: Option<PathBuf>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CodeCache {
    pub(super) fn new(dir: Option<PathBuf>) -> CodeCache {
        CodeCache {
            dir,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Hits and misses since start.
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Compiles `bytes` for `engine`, or loads the code it compiled for the same bytes before.
    pub(super) fn compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<Module, WasmError> {
        // WAT text becomes a binary, divides 64-bit integers in 32 bits where they fit
        // (`divide.rs`, which validates it first), gets room to grow its memory without
        // growing it (`headroom.rs`), then counts its stack depth (`depth.rs`) and is marked if
        // its instances may be kept between calls (`reuse.rs`).
        let compile = || {
            let binary = wat::parse_bytes(bytes).map_err(|e| {
                WasmError::InvalidModule(e.to_string().lines().next().unwrap_or("").to_owned())
            })?;
            let divided = divide::rewrite(&binary).map_err(WasmError::InvalidModule)?;
            let roomy = headroom::rewrite(&divided).map_err(WasmError::InvalidModule)?;
            let counted = depth::instrument(&roomy).map_err(WasmError::InvalidModule)?;
            let counted = reuse::mark(&counted).map_err(WasmError::InvalidModule)?;
            Module::new(engine, &counted).map_err(|e| WasmError::InvalidModule(first_line(&e)))
        };
        let Some(dir) = &self.dir else {
            return compile();
        };
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let path = dir.join(format!(
            "{sha256}-d{}-{:016x}.cwasm",
            depth::VERSION,
            std::hash::Hasher::finish(&hasher)
        ));
        if path.exists() {
            match read_checked(&path) {
                Some(code) => {
                    if let Ok(module) = deserialize_cached(engine, code) {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(module);
                    }
                }
                None => {
                    tracing::warn!(path = %path.display(), "damaged WASM compile cache file; recompiling");
                }
            }
        }
        let module = compile()?;
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Best effort: a cache that cannot be written only costs a recompile next time.
        if let Ok(code) = module.serialize()
            && let Err(e) = write_durably(dir, &path, &code)
        {
            tracing::warn!(cause = %e, path = %path.display(), "cannot write the WASM compile cache");
        }
        Ok(module)
    }
}

/// First bytes of every cache file (format version 1).
const MAGIC: &[u8; 8] = b"FRCWASM1";

/// The code in a cache file, if the file is whole: the magic, then a checksum that matches.
fn read_checked(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < 32 {
        return None;
    }
    let (sum, code) = rest.split_at(32);
    (Sha256::digest(code).as_slice() == sum).then(|| code.to_vec())
}

/// Writes `code` to `path` with its checksum: a synced temporary file renamed into place, then
/// the directory synced.
fn write_durably(dir: &Path, path: &Path, code: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(MAGIC)?;
    file.write_all(&Sha256::digest(code))?;
    file.write_all(code)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Loads compiled code read from the compile cache.
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, code: Vec<u8>) -> wasmtime::Result<Module> {
    // SAFETY: the code comes from a file in our own data directory whose checksum matched, so
    // it is exactly what `compile_cached` wrote from `Module::serialize` of this engine: its
    // name carries the module's SHA-256 and this engine's compatibility hash (wasmtime version
    // and every code-affecting setting), and wasmtime re-checks the header's version and
    // configuration before using it. Whoever can write the data directory can already replace
    // the server's state. The bytes are in memory rather than mapped: a mapped file truncated
    // or rewritten in place would change code under a live module.
    unsafe { Module::deserialize(engine, code) }
}
