//! `SmallBytes`: a byte string kept inside its owner when short, shared when long.
//!
//! The keyspace's hash index holds its keys this way, and string values too: a lookup then
//! compares the key, and a read copies the value, from memory the probe has just brought into
//! the cache instead of from a separate allocation (one cache miss each on a keyspace larger
//! than the cache), and a short string costs no allocation of its own. It takes as much room
//! as a `Bytes` (a unit test checks), and serializes exactly as a `Bytes` does, so snapshots
//! do not depend on which form a string is in.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;

use crate::reply::Reply;

/// Strings up to this long are held inline.
pub const INLINE_BYTES: usize = 23;

/// A byte string, inline up to 23 bytes, otherwise a shared `Bytes`.
#[derive(Clone)]
pub enum SmallBytes {
    /// The bytes themselves.
    Inline {
        /// How many of `bytes` are used.
        len: u8,
        /// The string, then zeros.
        bytes: [u8; INLINE_BYTES],
    },
    /// A longer string.
    Shared(Bytes),
}

impl SmallBytes {
    /// The empty string.
    pub const EMPTY: SmallBytes = SmallBytes::Inline {
        len: 0,
        bytes: [0; INLINE_BYTES],
    };

    /// A copy of `data` if it is short; otherwise `data` itself, shared.
    pub fn new(data: Bytes) -> SmallBytes {
        SmallBytes::short(&data).unwrap_or(SmallBytes::Shared(data))
    }

    /// `data`, copied into its owner or shared with `data`'s allocation.
    pub fn from_ref(data: &Bytes) -> SmallBytes {
        SmallBytes::short(data).unwrap_or_else(|| SmallBytes::Shared(data.clone()))
    }

    /// A copy of `data`.
    pub fn copy_from_slice(data: &[u8]) -> SmallBytes {
        SmallBytes::short(data).unwrap_or_else(|| SmallBytes::Shared(Bytes::copy_from_slice(data)))
    }

    fn short(data: &[u8]) -> Option<SmallBytes> {
        let len = data.len();
        (len <= INLINE_BYTES).then(|| {
            let mut bytes = [0; INLINE_BYTES];
            bytes[..len].copy_from_slice(data);
            SmallBytes::Inline {
                len: len as u8,
                bytes,
            }
        })
    }

    /// The string.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            SmallBytes::Inline { len, bytes } => &bytes[..*len as usize],
            SmallBytes::Shared(data) => data,
        }
    }

    /// A bulk reply of the string: copied if short (see [`Reply::stored`]).
    pub fn reply(&self) -> Reply {
        match self {
            SmallBytes::Inline { .. } => Reply::Bulk(Bytes::copy_from_slice(self.as_slice())),
            SmallBytes::Shared(data) => Reply::stored(data),
        }
    }

    /// The string as `Bytes`: a copy if inline, a shared reference otherwise.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            SmallBytes::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            SmallBytes::Shared(data) => data.clone(),
        }
    }

    /// The string as `Bytes`, without a copy if it is shared.
    pub fn into_bytes(self) -> Bytes {
        match self {
            SmallBytes::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            SmallBytes::Shared(data) => data,
        }
    }
}

impl Default for SmallBytes {
    fn default() -> Self {
        SmallBytes::EMPTY
    }
}

impl Deref for SmallBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// Hash maps look a key up as `[u8]`: equality and hashing are the slice's.
impl Borrow<[u8]> for SmallBytes {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Hash for SmallBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq for SmallBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SmallBytes {}

impl std::fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As `Bytes` prints, whichever the form.
        std::fmt::Debug::fmt(&self.to_bytes(), f)
    }
}

impl serde::Serialize for SmallBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.as_slice())
    }
}

impl<'de> serde::Deserialize<'de> for SmallBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Bytes::deserialize(deserializer).map(SmallBytes::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_hold_the_string_and_encode_as_bytes_do() {
        assert_eq!(size_of::<SmallBytes>(), size_of::<Bytes>());
        let config = bincode::config::standard();
        for len in [0, 1, INLINE_BYTES - 1, INLINE_BYTES, INLINE_BYTES + 1, 300] {
            let data = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>());
            let small = SmallBytes::new(data.clone());
            assert_eq!(
                matches!(small, SmallBytes::Inline { .. }),
                len <= INLINE_BYTES
            );
            assert_eq!(small.as_slice(), &data[..]);
            assert_eq!(small.to_bytes(), data);
            assert_eq!(SmallBytes::from_ref(&data), small);
            assert_eq!(SmallBytes::copy_from_slice(&data), small);
            let encoded = bincode::serde::encode_to_vec(&small, config).unwrap();
            assert_eq!(
                encoded,
                bincode::serde::encode_to_vec(&data, config).unwrap()
            );
            let (back, _): (SmallBytes, usize) =
                bincode::serde::decode_from_slice(&encoded, config).unwrap();
            assert_eq!(back, small);
            assert_eq!(format!("{small:?}"), format!("{data:?}"));
            assert_eq!(small.clone().into_bytes(), data);
        }
    }
}
