//! A minimal slab: a `Vec` of slots plus a free list threaded through the vacant slots, so that
//! a connection's key (its mio token) is reused after it closes and lookups are one index.

enum Slot<T> {
    Occupied(T),
    /// Vacant; holds the next vacant key (or `usize::MAX` at the end of the free list).
    Vacant(usize),
}

/// Values addressed by small reusable keys.
pub(super) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: usize,
    len: usize,
}

const END: usize = usize::MAX;

impl<T> Slab<T> {
    pub(super) fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: END,
            len: 0,
        }
    }

    /// The number of occupied slots.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// One past the highest key ever handed out: every live key is below it.
    pub(super) fn bound(&self) -> usize {
        self.slots.len()
    }

    /// The key the next [`insert`](Self::insert) will use.
    pub(super) fn vacant_key(&self) -> usize {
        if self.free == END {
            self.slots.len()
        } else {
            self.free
        }
    }

    pub(super) fn insert(&mut self, value: T) -> usize {
        let key = self.vacant_key();
        if key == self.slots.len() {
            self.slots.push(Slot::Occupied(value));
        } else if let Slot::Vacant(next) =
            std::mem::replace(&mut self.slots[key], Slot::Occupied(value))
        {
            self.free = next;
        }
        self.len += 1;
        key
    }

    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.slots.get_mut(key) {
            Some(Slot::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    pub(super) fn remove(&mut self, key: usize) -> Option<T> {
        let slot = self.slots.get_mut(key)?;
        if let Slot::Vacant(_) = slot {
            return None;
        }
        let Slot::Occupied(value) = std::mem::replace(slot, Slot::Vacant(self.free)) else {
            return None;
        };
        self.free = key;
        self.len -= 1;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn keys_are_reused_after_remove() {
        let mut slab = Slab::new();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!((a, b), (0, 1));
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.vacant_key(), a);
        assert_eq!(slab.insert("c"), a);
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.bound(), 2);
        assert_eq!(slab.get_mut(b), Some(&mut "b"));
        assert_eq!(slab.get_mut(7), None);
    }
}
