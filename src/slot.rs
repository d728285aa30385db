//! Redis Cluster hash slots: CRC16 (XMODEM) of the key, or of its `{hash tag}`, modulo 16384.

/// Number of hash slots.
pub const SLOTS: u16 = 16384;

/// The slot of `key`: the text between the first `{` and the next `}` is hashed when it is
/// non-empty, so `{user1}:a` and `{user1}:b` share a slot.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn slots_match_redis_vectors() {
        for (key, slot) in [
            ("123456789", 12739),
            ("foo", 12182),
            ("somekey", 11058),
            ("foo{hash_tag}", 2515),
            ("{hash_tag}bar", 2515),
            ("8xjx7vWrfPq54mKfFD3Y1CcjjofpnAcQ", 5458),
            ("{}foo", key_slot(b"{}foo")),
        ] {
            assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
        }
        assert_ne!(
            key_slot(b"{}foo"),
            key_slot(b"foo"),
            "an empty tag hashes the whole key"
        );
    }
}
