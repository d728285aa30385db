//! Modules loaded at start from `wasm.module_dir`, and compiled code kept across restarts.

use super::*;

#[test]
fn modules_in_module_dir_load_at_start_with_their_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let modules = dir.path().join("modules");
    std::fs::create_dir(&modules).unwrap();
    std::fs::write(modules.join("probe.wat"), module("probe.wat")).unwrap();
    std::fs::write(
        modules.join("probe.toml"),
        "permissions = [\"READ\", \"WRITE\"]\n",
    )
    .unwrap();
    std::fs::write(modules.join("plain.wat"), module("other.wat")).unwrap();
    std::fs::write(modules.join("notes.txt"), "ignored").unwrap();
    let config = dir.path().join("ferrite.toml");
    std::fs::write(
        &config,
        format!("[wasm]\nmodule_dir = {:?}\n", modules.display().to_string()),
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let mut c = server.client();
    let Value::Array(listed) = cmd(&mut c, &["WASM.LIST"]).unwrap() else {
        panic!()
    };
    assert_eq!(listed.len(), 2);
    assert_eq!(field(&listed[0], "name"), bulk("plain"));
    assert_eq!(
        field(&listed[1], "permissions"),
        Value::Array(vec![bulk("READ"), bulk("WRITE")])
    );
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe.set"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(cmd(&mut c, &["WASM.CALL", "plain"]).unwrap(), Value::Int(2));

    // A module that does not load stops start-up, naming the file. (Its data dir is the
    // temporary one: the node opens its Raft log before it preloads.)
    std::fs::write(modules.join("broken.wat"), "(module").unwrap();
    let data = dir.path().join("broken-data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["--port", "0", "--config", config.to_str().unwrap()])
        .args(["--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.wat"), "{stderr}");
}

#[test]
fn compiled_code_is_cached_on_disk_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    {
        let server = Server::start(&["--data-dir", data]);
        let mut c = server.client();
        load(&mut c, "probe", "probe.wat", &[]).unwrap();
        // Compiled once to validate it before it enters the log; applying the entry then finds
        // the code in the cache.
        assert_eq!(stat(&mut c, "compile_cache_misses"), Value::Int(1));
        assert_eq!(stat(&mut c, "compile_cache_hits"), Value::Int(1));
    }
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("data/wasm-cache"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1);
    // The module is durable: a restart brings it back from the Raft log, from cached code.
    let server = Server::start(&["--data-dir", data]);
    let mut c = server.client();
    assert_eq!(
        cmd(&mut c, &["WASM.CALL", "probe"]).unwrap(),
        Value::Int(8),
        "the module survived the restart"
    );
    assert_eq!(
        stat(&mut c, "compile_cache_hits"),
        Value::Int(1),
        "a restart does not recompile"
    );
    assert_eq!(stat(&mut c, "compile_cache_misses"), Value::Int(0));
    // A damaged cache file is recompiled, not trusted: one flipped bit in the middle (where
    // wasmtime's own header checks do not look), then a torn write.
    let damage = |how: &dyn Fn(&mut Vec<u8>)| {
        for entry in std::fs::read_dir(dir.path().join("data/wasm-cache")).unwrap() {
            let path = entry.unwrap().path();
            let mut bytes = std::fs::read(&path).unwrap();
            how(&mut bytes);
            std::fs::write(&path, bytes).unwrap();
        }
    };
    damage(&|b| {
        let middle = b.len() / 2;
        b[middle] ^= 0x10;
    });
    load(&mut c, "again", "probe.wat", &[]).unwrap();
    assert_eq!(stat(&mut c, "compile_cache_misses"), Value::Int(1));
    assert_eq!(cmd(&mut c, &["WASM.CALL", "again"]).unwrap(), Value::Int(8));
    damage(&|b| b.truncate(b.len() / 2));
    load(&mut c, "torn", "probe.wat", &[]).unwrap();
    assert_eq!(stat(&mut c, "compile_cache_misses"), Value::Int(2));
    assert_eq!(cmd(&mut c, &["WASM.CALL", "torn"]).unwrap(), Value::Int(8));
}
