//! Who has read which secret, kept in the store so "a principal that never read it before"
//! survives restarts. Pairs seen lately are remembered in memory, so a hot reader costs a
//! hash lookup, not a store read. Entries are not flushed at once: after a crash, a read in the
//! last moments before it may raise its first-read alarm a second time.

use super::ReaderHistory;
use crate::store::Store;
use std::collections::HashSet;
use std::sync::Mutex;

const PREFIX: &[u8] = b"alarm/read/";
/// Remembered pairs; beyond this the memory is cleared and refilled from the store.
const REMEMBERED: usize = 100_000;

pub struct StoreHistory {
    store: Store,
    seen: Mutex<HashSet<(String, String)>>,
}

impl StoreHistory {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            seen: Mutex::new(HashSet::new()),
        }
    }
}

impl ReaderHistory for StoreHistory {
    fn first_read(&self, secret: &str, principal: &str) -> bool {
        let pair = (secret.to_owned(), principal.to_owned());
        if let Ok(seen) = self.seen.lock()
            && seen.contains(&pair)
        {
            return false;
        }
        // NUL cannot occur in an ARN or a principal name, so the key is unambiguous.
        let key = [PREFIX, secret.as_bytes(), b"\0", principal.as_bytes()].concat();
        let first = match self.store.insert_once(&key) {
            Ok(first) => first,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record a secret's reader for the alarms");
                false
            }
        };
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
            seen.insert(pair);
        }
        first
    }
}
