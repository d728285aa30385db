//! Load-time checks against the guest ABI (`docs/abi.md`): only `ferrite` imports that exist,
//! `memory` and `alloc` exported with their types, at least one entry point.

use wasmtime::{ExternType, Module, ModuleExport, ValType};

use super::{WasmError, depth};

/// Where a module's ABI exports are, found once at load so that a call looks none of them up
/// by name.
#[derive(Clone)]
pub(super) struct ExportIndex {
    pub(super) memory: ModuleExport,
    pub(super) alloc: ModuleExport,
    /// The depth counter (`depth.rs`).
    pub(super) depth: Option<ModuleExport>,
    /// The entry points, in the order of [`LoadedModule::exports`](super::LoadedModule).
    pub(super) entries: Vec<ModuleExport>,
}

impl ExportIndex {
    /// The index of `module`, whose entry points [`validate`] returned as `entries`.
    pub(super) fn new(module: &Module, entries: &[String]) -> Result<ExportIndex, WasmError> {
        let find = |name: &str| {
            module
                .get_export_index(name)
                .ok_or_else(|| WasmError::InvalidModule(format!("missing export '{name}'")))
        };
        Ok(ExportIndex {
            memory: find(ferrite_abi::export::MEMORY)?,
            alloc: find(ferrite_abi::export::ALLOC)?,
            depth: module.get_export_index(depth::DEPTH_EXPORT),
            entries: entries.iter().map(|e| find(e)).collect::<Result<_, _>>()?,
        })
    }
}

/// Checks the ABI's exports and imports; returns the entry points.
pub(super) fn validate(module: &Module) -> Result<Vec<String>, WasmError> {
    let invalid = |m: String| Err(WasmError::InvalidModule(m));
    for import in module.imports() {
        let allowed = import.module() == ferrite_abi::IMPORT_MODULE
            && ferrite_abi::import::ALL.contains(&import.name());
        if !allowed {
            return invalid(format!(
                "forbidden import '{}.{}'",
                import.module(),
                import.name()
            ));
        }
    }
    let mut has_memory = false;
    let mut has_alloc = false;
    let mut entries = Vec::new();
    for export in module.exports() {
        match (export.name(), export.ty()) {
            (ferrite_abi::export::MEMORY, ExternType::Memory(_)) => has_memory = true,
            (ferrite_abi::export::ALLOC, ExternType::Func(f)) => {
                if f.params()
                    .map(|p| p.matches(&ValType::I32))
                    .collect::<Vec<_>>()
                    != [true]
                    || f.results()
                        .map(|r| r.matches(&ValType::I32))
                        .collect::<Vec<_>>()
                        != [true]
                {
                    return invalid("export 'alloc' must have type (i32) -> i32".to_owned());
                }
                has_alloc = true;
            }
            (name, ExternType::Func(f)) => {
                let params: Vec<bool> = f.params().map(|p| p.matches(&ValType::I32)).collect();
                let results: Vec<bool> = f.results().map(|r| r.matches(&ValType::I64)).collect();
                if params == [true, true] && results == [true] {
                    entries.push(name.to_owned());
                }
            }
            _ => {}
        }
    }
    if !has_memory {
        return invalid("missing export 'memory'".to_owned());
    }
    if !has_alloc {
        return invalid("missing export 'alloc'".to_owned());
    }
    if entries.is_empty() {
        return invalid("no entry point of type (i32, i32) -> i64".to_owned());
    }
    entries.sort();
    Ok(entries)
}
