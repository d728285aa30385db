//! `ScanMap`: a hash map whose iteration order is a pure function of its history, and whose
//! elements never move, so integer SCAN cursors are stable.
//!
//! Entries live in a slot vector; a hash index maps each key to its slot. A removed entry leaves
//! a hole that the next insertion reuses (last freed, first reused). Because elements never
//! move, an element present for a whole SCAN is returned exactly once, which is the guarantee
//! Redis gives. Because iteration walks the slot vector, never the hash index, the process's
//! random hash seed cannot leak into replies: two replicas that applied the same operations
//! iterate in the same order (the Raft issue relies on this for HGETALL, SPOP and snapshots).

use std::collections::HashMap;

use foldhash::fast::RandomState;

use bytes::Bytes;

use super::small::SmallBytes;

/// One position of a map's layout: an entry or a hole.
pub type Slot<V> = Option<(Bytes, V)>;

/// A map from binary keys to `V` with deterministic order and stable positions.
///
/// Point operations go straight to the hash index, which holds the value and its slot, so a
/// lookup costs one probe. The slot vector holds only keys: it defines the iteration order and
/// the SCAN cursor positions.
#[derive(Debug, Clone)]
pub struct ScanMap<V> {
    /// Randomly seeded per map (foldhash), so colliding keys cannot be precomputed; never
    /// iterated. Short keys are held inside the table ([`SmallBytes`]), so the comparison
    /// that ends a lookup reads no other allocation.
    index: HashMap<SmallBytes, (u32, V), RandomState>,
    slots: Vec<Option<Bytes>>,
    free: Vec<u32>,
}

impl<V> Default for ScanMap<V> {
    fn default() -> Self {
        ScanMap {
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

/// Serialized as its layout (slots in order, holes included, and the free list), so a map
/// rebuilt from a snapshot iterates and hands out SCAN cursors exactly as the original did.
impl<V: serde::Serialize> serde::Serialize for ScanMap<V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Slots<'a, V>(&'a ScanMap<V>);
        impl<V: serde::Serialize> serde::Serialize for Slots<'_, V> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                // Each entry is put at its slot from one pass over the index (sequential
                // memory) rather than looked up slot by slot (a hash probe and a cache miss
                // per key, measured at half the time of a state digest); where each lands
                // depends only on its slot, never on the index's order.
                let mut laid_out: Vec<Option<(&SmallBytes, &V)>> = vec![None; self.0.slots.len()];
                for (key, (slot, value)) in &self.0.index {
                    if let Some(place) = laid_out.get_mut(*slot as usize) {
                        *place = Some((key, value));
                    }
                }
                serializer.collect_seq(laid_out)
            }
        }
        serde::Serialize::serialize(&(Slots(self), &self.free), serializer)
    }
}

impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for ScanMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (slots, free): (Vec<Slot<V>>, Vec<u32>) =
            serde::Deserialize::deserialize(deserializer)?;
        Ok(ScanMap::from_layout(slots, free))
    }
}

impl<V: PartialEq> PartialEq for ScanMap<V> {
    /// Equal when the same keys sit in the same slots with equal values and the same holes:
    /// the layout is part of the state because it decides iteration order.
    fn eq(&self, other: &Self) -> bool {
        self.slots == other.slots && self.free == other.free && self.index == other.index
    }
}

impl<V> ScanMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The value for `key`.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.index.get(key).map(|(_, v)| v)
    }

    /// The value for `key`, mutably.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        self.index.get_mut(key).map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.index.contains_key(key)
    }

    /// Inserts or replaces; returns the previous value. A replaced entry keeps its slot.
    pub fn insert(&mut self, key: Bytes, value: V) -> Option<V> {
        if let Some((_, current)) = self.index.get_mut(key.as_ref()) {
            return Some(std::mem::replace(current, value));
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(key.clone());
                slot
            }
            None => {
                self.slots.push(Some(key.clone()));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(SmallBytes::from_ref(&key), (slot, value));
        None
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        let (slot, value) = self.index.remove(key)?;
        self.slots[slot as usize] = None;
        self.free.push(slot);
        self.shrink_tail();
        Some(value)
    }

    /// Drops trailing holes so a map that empties does not keep its peak size forever.
    fn shrink_tail(&mut self) {
        if self.slots.last().is_some_and(Option::is_none) {
            while self.slots.last().is_some_and(Option::is_none) {
                self.slots.pop();
            }
            let len = self.slots.len() as u32;
            self.free.retain(|&s| s < len);
        }
    }

    /// The value for `key`, inserting `make()` first if absent.
    pub fn get_or_insert_with(&mut self, key: &Bytes, make: impl FnOnce() -> V) -> &mut V {
        if !self.index.contains_key(key.as_ref()) {
            self.insert(key.clone(), make());
        }
        self.get_mut(key).expect("just inserted")
    }

    /// The entry stored under the key in `slot`.
    fn at<'a>(&'a self, slot: &'a Option<Bytes>) -> Option<(&'a Bytes, &'a V)> {
        let key = slot.as_ref()?;
        self.index.get(key.as_ref()).map(|(_, v)| (key, v))
    }

    /// Entries in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &V)> {
        self.slots.iter().filter_map(|s| self.at(s))
    }

    /// Keys in slot order.
    pub fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.slots.iter().flatten()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.free.clear();
    }

    /// One SCAN step: visits slots from `cursor` until `count` entries were passed to `visit`
    /// or the end is reached. Returns the next cursor, 0 when the scan is complete.
    pub fn scan(&self, cursor: u64, count: usize, mut visit: impl FnMut(&Bytes, &V)) -> u64 {
        let mut position = cursor as usize;
        let mut seen = 0;
        while position < self.slots.len() && seen < count.max(1) {
            if let Some((k, v)) = self.at(&self.slots[position]) {
                visit(k, v);
                seen += 1;
            }
            position += 1;
        }
        if position >= self.slots.len() {
            0
        } else {
            position as u64
        }
    }

    /// The first entry at or after slot `start` (wrapping around): the building block for
    /// RANDOMKEY, SRANDMEMBER and SPOP, which pick `start` from a seeded generator.
    pub fn entry_at_or_after(&self, start: usize) -> Option<(&Bytes, &V)> {
        if self.is_empty() {
            return None;
        }
        let n = self.slots.len();
        (0..n).find_map(|i| self.at(&self.slots[(start + i) % n]))
    }

    /// Number of slots, occupied or not: the range for random positions.
    pub fn capacity_slots(&self) -> usize {
        self.slots.len()
    }

    /// The layout, for snapshots: every slot in order (holes as `None`) and the free list.
    pub fn layout(&self) -> (Vec<Slot<V>>, Vec<u32>)
    where
        V: Clone,
    {
        let slots = self
            .slots
            .iter()
            .map(|s| self.at(s).map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        (slots, self.free.clone())
    }

    /// Rebuilds a map from a layout produced by [`ScanMap::layout`].
    pub fn from_layout(slots: Vec<Slot<V>>, free: Vec<u32>) -> Self {
        let mut keys = Vec::with_capacity(slots.len());
        let mut index = HashMap::default();
        for (i, slot) in slots.into_iter().enumerate() {
            keys.push(slot.as_ref().map(|(k, _)| k.clone()));
            if let Some((k, v)) = slot {
                index.insert(SmallBytes::from_ref(&k), (i as u32, v));
            }
        }
        ScanMap {
            index,
            slots: keys,
            free,
        }
    }
}

impl<V> FromIterator<(Bytes, V)> for ScanMap<V> {
    fn from_iter<I: IntoIterator<Item = (Bytes, V)>>(iter: I) -> Self {
        let mut map = ScanMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::super::small::INLINE_BYTES as INLINE;
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn order_follows_history_and_holes_are_reused() {
        let mut m = ScanMap::new();
        m.insert(b("a"), 1);
        m.insert(b("b"), 2);
        m.insert(b("c"), 3);
        m.remove(b"b".as_slice());
        m.insert(b("d"), 4);
        let keys: Vec<_> = m.keys().cloned().collect();
        assert_eq!(keys, [b("a"), b("d"), b("c")]);
        assert_eq!(m.insert(b("a"), 10), Some(1));
        assert_eq!(m.get(b"a"), Some(&10));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn scan_returns_every_stable_element_once_despite_churn() {
        let mut m = ScanMap::new();
        for i in 0..100 {
            m.insert(b(&format!("k{i}")), i);
        }
        let mut seen = Vec::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = m.scan(cursor, 7, |k, _| seen.push(k.clone()));
            // Churn between steps: delete and add elements that are not part of the stable set.
            round += 1;
            m.remove(format!("k{}", 90 + round % 10).as_bytes());
            m.insert(b(&format!("new{round}")), 0);
            if cursor == 0 {
                break;
            }
        }
        for i in 0..90 {
            let key = b(&format!("k{i}"));
            assert_eq!(seen.iter().filter(|k| **k == key).count(), 1, "{key:?}");
        }
    }

    /// Keys on both sides of the inline limit are found, replaced and removed alike, and a
    /// map serializes exactly as its layout with `Bytes` keys does (the snapshot format does
    /// not depend on where the index keeps a key).
    #[test]
    fn short_and_long_keys_behave_alike() {
        let lengths = [1, INLINE - 1, INLINE, INLINE + 1, 100];
        let key = |len: usize, tag: u8| Bytes::from(vec![tag; len]);
        let mut m = ScanMap::new();
        for (i, &len) in lengths.iter().enumerate() {
            assert_eq!(m.insert(key(len, b'a'), i), None);
            assert_eq!(m.insert(key(len, b'b'), 10 + i), None);
        }
        for (i, &len) in lengths.iter().enumerate() {
            assert_eq!(m.get(&key(len, b'a')), Some(&i), "len {len}");
            assert!(m.contains_key(&key(len, b'b')));
            assert_eq!(m.insert(key(len, b'a'), 20 + i), Some(i));
            // A key that differs only in its last byte is another key.
            let mut other = vec![b'a'; len];
            if let Some(last) = other.last_mut() {
                *last = b'c';
                assert!(!m.contains_key(&other), "len {len}");
            }
        }
        assert_eq!(m.remove(&key(INLINE, b'b')), Some(10 + 2));
        assert_eq!(m.remove(&key(INLINE + 1, b'a')), Some(20 + 3));
        assert_eq!(m.get(&key(INLINE, b'a')), Some(&(20 + 2)));
        m.insert(Bytes::new(), 99);
        assert_eq!(m.get(b""), Some(&99));
        assert_eq!(m.len(), 2 * lengths.len() - 1);
        let config = bincode::config::standard();
        assert_eq!(
            bincode::serde::encode_to_vec(&m, config).unwrap(),
            bincode::serde::encode_to_vec(m.layout(), config).unwrap()
        );
    }

    #[test]
    fn serde_round_trip_keeps_the_layout() {
        let mut m = ScanMap::new();
        for i in 0..20u8 {
            m.insert(Bytes::from(vec![i]), u64::from(i));
        }
        for i in (0..20u8).step_by(3) {
            m.remove(&[i][..]);
        }
        let bytes = bincode::serde::encode_to_vec(&m, bincode::config::standard()).unwrap();
        let (copy, _): (ScanMap<u64>, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(copy, m);
        assert_eq!(
            copy.iter().collect::<Vec<_>>(),
            m.iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn layout_round_trips() {
        let mut m = ScanMap::new();
        for i in 0..10 {
            m.insert(b(&i.to_string()), i);
        }
        m.remove(b"3".as_slice());
        m.remove(b"5".as_slice());
        let (slots, free) = m.layout();
        let copy = ScanMap::from_layout(slots, free);
        assert_eq!(copy, m);
        assert_eq!(copy.get(b"7"), Some(&7));
        assert_eq!(
            copy.keys().collect::<Vec<_>>(),
            m.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn emptied_maps_release_their_slots() {
        let mut m = ScanMap::new();
        for i in 0..50 {
            m.insert(b(&i.to_string()), ());
        }
        for i in 0..50 {
            m.remove(i.to_string().as_bytes());
        }
        assert_eq!(m.capacity_slots(), 0);
        assert!(m.is_empty());
    }
}
