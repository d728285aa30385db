//! Compiled code on disk: a module compiled once is kept under the data directory, keyed by
//! its SHA-256 and the engine's compatibility hash, so a restart or a replica loading the same
//! bytes skips Cranelift.

use std::sync::atomic::Ordering;

use wasmtime::{Engine, Module};

use super::{Runtime, WasmError, first_line};

impl Runtime {
    /// Compiles `bytes`, or loads the code this engine compiled for the same bytes before.
    pub(super) fn compile_cached(&self, bytes: &[u8], sha256: &str) -> Result<Module, WasmError> {
        let compile = || {
            Module::new(&self.engine, bytes).map_err(|e| WasmError::InvalidModule(first_line(&e)))
        };
        let Some(dir) = &self.cache_dir else {
            return compile();
        };
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut hasher);
        let path = dir.join(format!(
            "{sha256}-{:016x}.cwasm",
            std::hash::Hasher::finish(&hasher)
        ));
        if path.exists()
            && let Ok(module) = deserialize_cached(&self.engine, &path)
        {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(module);
        }
        let module = compile()?;
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
        // Best effort: a cache that cannot be written only costs a recompile next time.
        if let Ok(code) = module.serialize() {
            let temporary = path.with_extension(format!("tmp{}", std::process::id()));
            let written = std::fs::create_dir_all(dir)
                .and_then(|_| std::fs::write(&temporary, code))
                .and_then(|_| std::fs::rename(&temporary, &path));
            if let Err(e) = written {
                tracing::warn!(cause = %e, path = %path.display(), "cannot write the WASM compile cache");
            }
        }
        Ok(module)
    }
}

/// Loads compiled code from the compile cache.
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, path: &std::path::Path) -> wasmtime::Result<Module> {
    // SAFETY: the file is in our own data directory and was written by `compile_cached` from
    // `Module::serialize` of this engine: its name carries the module's SHA-256 and this
    // engine's compatibility hash (wasmtime version and every code-affecting setting), and
    // wasmtime re-checks the header's version and configuration before using it. Whoever can
    // write the data directory can already replace the server's state.
    // The file is read into memory rather than mapped: a mapped file truncated or rewritten
    // in place would change code under a live module.
    let bytes = std::fs::read(path)?;
    unsafe { Module::deserialize(engine, bytes) }
}
