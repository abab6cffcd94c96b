//! Who has read which secret, kept in the store so "a principal that never read it before"
//! survives restarts. Pairs seen lately are remembered in memory, so a hot reader costs a
//! hash lookup, not a store read. Entries are not flushed at once: after a crash, a read in the
//! last moments before it may raise its first-read alarm a second time.

use super::ReaderHistory;
use super::rules::FirstRead;
use crate::store::{Store, keyspace};
use std::collections::HashSet;
use std::sync::Mutex;

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
    fn first_read<'a>(&'a self, secret: &'a str, principal: &'a str) -> FirstRead<'a> {
        Box::pin(async move {
            let pair = (secret.to_owned(), principal.to_owned());
            if let Ok(seen) = self.seen.lock()
                && seen.contains(&pair)
            {
                return false;
            }
            let key = keyspace::alarm_reader(secret, principal);
            let first = match self.store.insert_once(&key).await {
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
        })
    }
}
