//! A table from the hashes of names to node ids, for the nodes rules add.
//!
//! An open-addressing table (linear probing, a power of two of slots, at
//! most 7/8 full) of `(hash, id)` pairs. It exists for one thing a general
//! map does not offer: [`HashedIds::prefetch`], which asks the CPU for the
//! slot a hash starts at, so a round's hundreds of thousands of new names
//! can be inserted with their slots' memory already on its way instead of
//! one cache miss after another.

use crate::graph::NodeId;

/// An empty slot's id.
const EMPTY: NodeId = NodeId::MAX;

#[derive(Clone, Copy, Debug)]
struct Slot {
    hash: u64,
    id: NodeId,
}

const VACANT: Slot = Slot { hash: 0, id: EMPTY };

#[derive(Clone, Debug, Default)]
pub(super) struct HashedIds {
    slots: Vec<Slot>,
    len: usize,
}

impl HashedIds {
    /// The slot holding `hash`, or the empty one where a search for it
    /// ends (the table has slots, and at least one empty).
    fn probe(&self, hash: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        while self.slots[at].id != EMPTY && self.slots[at].hash != hash {
            at = (at + 1) & mask;
        }
        at
    }

    /// The id stored under `hash`.
    pub(super) fn get(&self, hash: u64) -> Option<NodeId> {
        if self.slots.is_empty() {
            return None;
        }
        let id = self.slots[self.probe(hash)].id;
        (id != EMPTY).then_some(id)
    }

    /// Stores `id` under `hash` when no id is; otherwise leaves the table
    /// as it is and gives the place of the id stored there.
    pub(super) fn insert_new(&mut self, hash: u64, id: NodeId) -> Option<&mut NodeId> {
        debug_assert_ne!(id, EMPTY);
        self.reserve(1);
        let at = self.probe(hash);
        if self.slots[at].id != EMPTY {
            return Some(&mut self.slots[at].id);
        }
        self.slots[at] = Slot { hash, id };
        self.len += 1;
        None
    }

    /// Makes room for `more` ids, so that many inserts do not move the
    /// table (nor [`HashedIds::prefetch`] ask for a slot that moves).
    pub(super) fn reserve(&mut self, more: usize) {
        let need = self.len + more;
        if need * 8 <= self.slots.len() * 7 {
            return;
        }
        let size = (need * 8).div_ceil(7).next_power_of_two().max(16);
        let old = std::mem::replace(&mut self.slots, vec![VACANT; size]);
        // Each stored hash once: its search ends at an empty slot.
        for slot in old.into_iter().filter(|s| s.id != EMPTY) {
            let at = self.probe(slot.hash);
            self.slots[at] = slot;
        }
    }

    /// Asks the CPU to fetch the slot where a search for `hash` starts (a
    /// hint: see [`crate::hint::prefetch`]).
    pub(super) fn prefetch(&self, hash: u64) {
        if !self.slots.is_empty() {
            let at = hash as usize & (self.slots.len() - 1);
            crate::hint::prefetch(self.slots.as_ptr().wrapping_add(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HashedIds;

    #[test]
    fn ids_are_found_by_hash_through_growth_and_clashing_slots() {
        let mut t = HashedIds::default();
        assert_eq!(t.get(5), None);
        // Hashes that start at the same few slots, and spread ones.
        let hashes: Vec<u64> =
            (0..1000u64).map(|i| if i % 2 == 0 { i << 40 } else { i * 0x9e37_79b9 }).collect();
        for (id, &h) in hashes.iter().enumerate() {
            assert!(t.insert_new(h, id as u32).is_none(), "{h} is new");
        }
        for (id, &h) in hashes.iter().enumerate() {
            assert_eq!(t.get(h), Some(id as u32), "hash {h}");
        }
        assert_eq!(t.get(3 << 40), None);
        assert_eq!(t.get(1), None);
    }

    #[test]
    fn inserting_a_stored_hash_gives_its_place() {
        let mut t = HashedIds::default();
        assert!(t.insert_new(42, 1).is_none());
        let place = t.insert_new(42, 2).expect("42 is stored");
        assert_eq!(*place, 1, "the stored id is kept");
        *place = 3;
        assert_eq!(t.get(42), Some(3));
        // Zero is a hash like any other.
        assert!(t.insert_new(0, 4).is_none());
        assert_eq!(t.get(0), Some(4));
    }
}
