//! A bounded cache of unwrapped data keys, so reading a secret need not call the root of trust
//! every time. Entries expire after `max_age`; when full, expired entries go first, then the
//! oldest. Keys live in `SecretBytes`, zeroized when the last holder drops them. The key's
//! state is still checked on every hit (a store read, no hardware call): disabling a key stops
//! reads at once, warm cache or not.

use crate::crypto::SecretBytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When an entry was added, and the key.
type Entry = (Instant, Arc<SecretBytes>);

pub struct DataKeyCache {
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
    max_entries: usize,
    max_age: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl DataKeyCache {
    /// `max_entries` 0 turns the cache off.
    pub fn new(max_entries: usize, max_age: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_entries,
            max_age,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_entries > 0 && !self.max_age.is_zero()
    }

    pub fn get(&self, id: &[u8], now: Instant) -> Option<Arc<SecretBytes>> {
        if !self.enabled() {
            return None;
        }
        let mut entries = self.entries.lock().ok()?;
        let found = match entries.get(id) {
            Some((added, key)) if now.duration_since(*added) < self.max_age => {
                Some(Arc::clone(key))
            }
            Some(_) => {
                entries.remove(id);
                None
            }
            None => None,
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn insert(&self, id: Vec<u8>, key: Arc<SecretBytes>, now: Instant) {
        if !self.enabled() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.max_entries && !entries.contains_key(&id) {
            entries.retain(|_, (added, _)| now.duration_since(*added) < self.max_age);
            if entries.len() >= self.max_entries
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (added, _))| *added)
                    .map(|(id, _)| id.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(id, (now, key));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (hits, misses) since start.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Arc<SecretBytes> {
        Arc::new(SecretBytes::new(vec![byte; 32]))
    }

    #[test]
    fn bounded_by_entries_evicting_the_oldest() {
        let cache = DataKeyCache::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        cache.insert(b"a".to_vec(), key(1), t0);
        cache.insert(b"b".to_vec(), key(2), t0 + Duration::from_secs(1));
        cache.insert(b"c".to_vec(), key(3), t0 + Duration::from_secs(2));
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(b"a", t0 + Duration::from_secs(3)).is_none(),
            "oldest evicted"
        );
        assert_eq!(
            cache
                .get(b"c", t0 + Duration::from_secs(3))
                .unwrap()
                .expose(),
            &[3; 32]
        );
        assert_eq!(cache.stats(), (1, 1));
    }

    #[test]
    fn entries_expire() {
        let cache = DataKeyCache::new(10, Duration::from_secs(5));
        let t0 = Instant::now();
        cache.insert(b"a".to_vec(), key(1), t0);
        assert!(cache.get(b"a", t0 + Duration::from_secs(4)).is_some());
        assert!(cache.get(b"a", t0 + Duration::from_secs(5)).is_none());
        assert!(
            cache.is_empty(),
            "an expired entry is dropped, and so zeroized"
        );
    }

    #[test]
    fn evicted_keys_are_dropped_once_no_reader_holds_them() {
        let cache = DataKeyCache::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        let first = key(1);
        cache.insert(b"a".to_vec(), Arc::clone(&first), t0);
        cache.insert(b"b".to_vec(), key(2), t0);
        // The cache let go of it: only this test's handle keeps it alive; when it goes, the
        // SecretBytes inside is zeroized by its own Drop.
        assert_eq!(Arc::strong_count(&first), 1);
    }

    #[test]
    fn zero_entries_turns_it_off() {
        let cache = DataKeyCache::new(0, Duration::from_secs(60));
        cache.insert(b"a".to_vec(), key(1), Instant::now());
        assert!(cache.get(b"a", Instant::now()).is_none());
        assert_eq!(cache.stats(), (0, 0));
    }
}
