//! A bounded map whose entries expire: the verified-token caches and the
//! failure counters use it. At the cap the oldest insertion is evicted, so
//! memory stays bounded whatever clients send.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

struct Entry<V> {
    value: V,
    expires_at_ms: i64,
    seq: u64,
}

/// A map with a size cap (oldest insertion evicted first) and per-entry
/// expiry (checked against the caller's "now", never the wall clock).
pub struct BoundedCache<K, V> {
    map: HashMap<K, Entry<V>>,
    order: VecDeque<(K, u64)>,
    cap: usize,
    seq: u64,
}

impl<K: Hash + Eq + Clone, V> BoundedCache<K, V> {
    pub fn new(cap: usize) -> Self {
        BoundedCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
            seq: 0,
        }
    }

    /// The live value for `key`; an expired entry is removed and `None`
    /// returned.
    pub fn get<Q>(&mut self, key: &Q, now_ms: i64) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let expired = match self.map.get(key) {
            None => return None,
            Some(e) => e.expires_at_ms <= now_ms,
        };
        if expired {
            self.map.remove(key);
            return None;
        }
        self.map.get(key).map(|e| &e.value)
    }

    /// Like [`BoundedCache::get`], mutably.
    pub fn get_mut<Q>(&mut self, key: &Q, now_ms: i64) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key, now_ms)?;
        self.map.get_mut(key).map(|e| &mut e.value)
    }

    pub fn insert(&mut self, key: K, value: V, expires_at_ms: i64) {
        if !self.map.contains_key(&key) {
            while self.map.len() >= self.cap {
                if !self.evict_oldest() {
                    break;
                }
            }
        }
        self.seq += 1;
        let seq = self.seq;
        self.order.push_back((key.clone(), seq));
        self.map.insert(
            key,
            Entry {
                value,
                expires_at_ms,
                seq,
            },
        );
        if self.order.len() > self.cap.saturating_mul(2) + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    pub fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.seq == seq) {
                self.map.remove(&key);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_against_the_given_clock() {
        let mut c = BoundedCache::new(4);
        c.insert("a".to_string(), 1, 1000);
        assert_eq!(c.get("a", 999), Some(&1));
        assert_eq!(c.get("a", 1000), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn the_cap_evicts_the_oldest_insertion() {
        let mut c = BoundedCache::new(3);
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            c.insert(k.to_string(), i, i64::MAX);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("a", 0), None);
        assert_eq!(c.get("d", 0), Some(&3));
        // Re-inserting an existing key does not evict anything.
        c.insert("b".to_string(), 9, i64::MAX);
        assert_eq!(c.len(), 3);
        c.insert("e".to_string(), 5, i64::MAX);
        // "c" is now the oldest live insertion.
        assert_eq!(c.get("c", 0), None);
        assert_eq!(c.get("b", 0), Some(&9));
        for i in 0..1000 {
            c.insert(format!("k{i}"), i, i64::MAX);
        }
        assert_eq!(c.len(), 3);
        assert!(c.order.len() <= 3 * 2 + 16);
    }
}
