//! What a module may do, granted at load: a flags type, replicated with the module and kept
//! in snapshots as one byte.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Per-module permissions, given at load. Serialized as its bits (one byte), the format the
/// log and snapshots have always used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Permissions(u8);

bitflags::bitflags! {
    impl Permissions: u8 {
        /// Read keys (`get_key`, read commands through `call`).
        const READ = 1;
        /// Write keys (`set_key`, `del_key`, write commands), in `WASM.CALL` only.
        const WRITE = 2;
        /// Administrative commands through `call`.
        const ADMIN = 4;
        /// Network access: recorded and shown; grants nothing in ABI v1 (no WASI imports).
        const NETWORK = 8;
        /// File system access: recorded and shown; grants nothing in ABI v1.
        const FILESYSTEM = 16;
    }
}

impl Permissions {
    /// Parses one permission name (any case).
    pub fn parse(name: &str) -> Option<Permissions> {
        Permissions::from_name(&name.to_ascii_uppercase())
    }

    /// The names of the permissions held, in the order above.
    pub fn names(self) -> Vec<&'static str> {
        self.iter_names().map(|(name, _)| name).collect()
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_any_case_and_print_in_order() {
        assert_eq!(Permissions::parse("write"), Some(Permissions::WRITE));
        assert_eq!(
            Permissions::parse("FileSystem"),
            Some(Permissions::FILESYSTEM)
        );
        assert_eq!(Permissions::parse("root"), None);
        let granted = Permissions::WRITE | Permissions::READ;
        assert_eq!(granted.to_string(), "READ,WRITE");
        assert!(granted.contains(Permissions::READ));
        assert!(!granted.contains(Permissions::ADMIN));
    }

    #[test]
    fn permissions_keep_their_one_byte_encoding() {
        let bytes = crate::replication::encode(&(Permissions::READ | Permissions::WRITE));
        assert_eq!(bytes, [3]);
        let back: Permissions = crate::replication::decode(&[5]).unwrap();
        assert_eq!(back, Permissions::READ | Permissions::ADMIN);
    }
}
