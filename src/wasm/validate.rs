//! Load-time checks against the guest ABI (`docs/abi.md`): only `ferrite` imports that exist,
//! `memory` and `alloc` exported with their types, at least one entry point.

use wasmtime::{ExternType, Module, ValType};

use super::WasmError;

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
