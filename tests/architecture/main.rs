//! The layering ARCHITECTURE.md describes, checked against the imports the code actually has:
//! no layer imports one above it, commands reach the lower layers only through `node`, leaves
//! import only leaves, no files of one folder import each other in a loop, and no source file
//! grows past 600 lines. The checker is shown to fail on a tree that breaks each rule.

mod check;

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_layer_imports_a_higher_one_and_no_folder_has_an_import_loop() {
    let found = check::violations(root());
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

#[test]
fn every_top_level_module_has_a_place_in_the_layer_table() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .and_then(|r| r.strip_suffix(';'))
        {
            assert!(
                check::LEAVES.contains(&name) || check::ALLOWED.iter().any(|(m, _)| *m == name),
                "src/{name} is in no layer: add it to tests/architecture/check.rs and ARCHITECTURE.md"
            );
        }
    }
}

#[test]
fn no_source_file_is_longer_than_six_hundred_lines() {
    let long = check::long_files(
        root(),
        &["src", "tests", "benches", "simulation", "sdk", "examples"],
    );
    assert!(long.is_empty(), "{}", long.join("\n"));
}

/// Writes a small crate whose files break the rules on purpose.
fn write_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn the_checker_catches_an_import_from_a_lower_layer_to_a_higher_one() {
    let tree = write_tree(&[
        ("src/lib.rs", "pub mod keyspace;\npub mod node;\n"),
        ("src/keyspace/mod.rs", "use crate::node::Node;\n"),
        ("src/node/mod.rs", "use crate::keyspace::Keyspace;\n"),
    ]);
    let found = check::violations(tree.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("keyspace") && found[0].contains("imports node"),
        "{found:?}"
    );
}

#[test]
fn the_checker_catches_commands_reaching_past_the_node() {
    let tree = write_tree(&[
        (
            "src/commands/mod.rs",
            "use crate::node::Node;\nuse crate::wasm::Permissions;\n",
        ),
        (
            "src/commands/data.rs",
            "fn f() { crate::replication::encode(&1); }\n",
        ),
    ]);
    let found = check::violations(tree.path());
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found.iter().any(|f| f.contains("imports wasm")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|f| f.contains("imports replication")),
        "{found:?}"
    );
}

#[test]
fn the_checker_catches_a_leaf_importing_a_layer_and_leaves_in_a_loop() {
    let tree = write_tree(&[
        (
            "src/config/mod.rs",
            "use crate::replication::Settings;\nuse crate::peers::Peers;\n",
        ),
        ("src/peers.rs", "use crate::config::Config;\n"),
    ]);
    let found = check::violations(tree.path());
    assert!(
        found.iter().any(|f| f.contains("imports replication")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.contains("leaves import each other in a loop")),
        "{found:?}"
    );
}

#[test]
fn the_checker_catches_sibling_files_importing_each_other() {
    let tree = write_tree(&[
        (
            "src/keyspace/mod.rs",
            "mod op;\nmod strings;\npub use op::Op;\n",
        ),
        (
            "src/keyspace/op.rs",
            "use super::strings::SetOp;\npub enum Op {}\n",
        ),
        (
            "src/keyspace/strings.rs",
            "use super::{Keyspace, op::Op};\npub struct SetOp;\n",
        ),
    ]);
    let found = check::violations(tree.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("loop"), "{found:?}");
}

#[test]
fn the_checker_ignores_tests_and_comments_and_accepts_a_clean_tree() {
    let tree = write_tree(&[
        ("src/lib.rs", "pub mod keyspace;\npub mod node;\n"),
        (
            "src/keyspace/mod.rs",
            "//! Unlike crate::node, this never awaits.\n#[cfg(test)]\nmod proptests;\npub struct Keyspace;\n\n#[cfg(test)]\nmod tests {\n    use crate::node::Node;\n}\n",
        ),
        ("src/keyspace/proptests.rs", "use crate::node::Node;\n"),
        ("src/node/mod.rs", "use crate::keyspace::Keyspace;\n"),
    ]);
    let found = check::violations(tree.path());
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn the_checker_measures_file_length() {
    let long = "fn f() {}\n".repeat(check::MAX_LINES + 1);
    let tree = write_tree(&[("src/big.rs", &long), ("src/small.rs", "fn g() {}\n")]);
    let found = check::long_files(tree.path(), &["src"]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("big.rs"), "{found:?}");
}
