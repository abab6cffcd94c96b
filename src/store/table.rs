//! Typed tables: the records of one type stored under one keyspace prefix, each named by an
//! id. A table reads a record with the version that guards its next write, builds the
//! operations that write it, and runs the guarded read-modify-write that services would
//! otherwise write out by hand (and get subtly different each time).

use super::{Expect, Op, Result, Store, StoreError, decode, encode};
use serde::{Serialize, de::DeserializeOwned};
use std::marker::PhantomData;

pub struct Table<T> {
    store: Store,
    prefix: &'static [u8],
    _record: PhantomData<fn() -> T>,
}

// Not derived: a derive would require `T: Clone`, which a table never needs.
impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            prefix: self.prefix,
            _record: PhantomData,
        }
    }
}

/// How an [`Table::update`] ended, when the store did not fail.
#[derive(Debug)]
pub enum Updated<T, R> {
    /// Committed: the record as written and what the change returned.
    Done(T, R),
    /// No record has this id.
    Missing,
    /// Every attempt lost to a concurrent write.
    Contended,
}

impl<T: Serialize + DeserializeOwned> Table<T> {
    /// The table of records under `prefix`, one of the [`super::keyspace`] prefixes.
    pub fn new(store: Store, prefix: &'static [u8]) -> Self {
        Self {
            store,
            prefix,
            _record: PhantomData,
        }
    }

    pub fn prefix(&self) -> &'static [u8] {
        self.prefix
    }

    pub fn key(&self, id: &str) -> Vec<u8> {
        [self.prefix, id.as_bytes()].concat()
    }

    /// The record and its version; a record that does not decode is [`StoreError::Corrupt`].
    pub async fn get(&self, id: &str) -> Result<Option<(T, u64)>> {
        let key = self.key(id);
        match self.store.get(&key).await? {
            Some(found) => Ok(Some((decode(&key, &found.value)?, found.version))),
            None => Ok(None),
        }
    }

    /// Up to `limit` records with their keys and versions, in key order, strictly after the key
    /// `after` when given. Fails on the first record that does not decode.
    pub async fn scan(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, T, u64)>> {
        self.store
            .scan(self.prefix, after, limit)
            .await?
            .into_iter()
            .map(|(key, found)| {
                let record = decode(&key, &found.value)?;
                Ok((key, record, found.version))
            })
            .collect()
    }

    /// Every record, as [`Table::scan`].
    pub async fn scan_all(&self) -> Result<Vec<(Vec<u8>, T, u64)>> {
        self.scan(None, usize::MAX).await
    }

    /// The write of `record` under `id`, for a commit.
    pub fn put(&self, id: &str, record: &T, expect: Expect) -> Op {
        Op::Put {
            key: self.key(id),
            value: encode(record),
            expect,
        }
    }

    pub fn delete(&self, id: &str, expect: Expect) -> Op {
        Op::Delete {
            key: self.key(id),
            expect,
        }
    }

    /// Reads the record, lets `change` modify it and commits it guarded by the version read;
    /// on a concurrent write, starts again from a fresh read, up to `attempts` times. `change`
    /// sees the latest record each attempt and may refuse with its own error, which ends the
    /// update with nothing written.
    pub async fn update<R, E: From<StoreError>>(
        &self,
        id: &str,
        attempts: usize,
        mut change: impl FnMut(&mut T) -> std::result::Result<R, E>,
    ) -> std::result::Result<Updated<T, R>, E> {
        for _ in 0..attempts {
            let Some((mut record, version)) = self.get(id).await? else {
                return Ok(Updated::Missing);
            };
            let out = change(&mut record)?;
            let op = self.put(id, &record, Expect::Version(version));
            match self.store.commit(vec![op]).await {
                Ok(()) => return Ok(Updated::Done(record, out)),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Updated::Contended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Counter {
        n: u32,
    }

    #[derive(Debug)]
    enum Error {
        Store,
        Refused,
    }

    impl From<StoreError> for Error {
        fn from(_: StoreError) -> Self {
            Self::Store
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn update_retries_on_a_concurrent_write_and_keeps_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let table = Table::<Counter>::new(store.clone(), b"t/");
        let missing = table.update("a", 3, |_| Ok::<_, Error>(())).await.unwrap();
        assert!(matches!(missing, Updated::Missing));

        store
            .commit(vec![table.put("a", &Counter { n: 0 }, Expect::Absent)])
            .await
            .unwrap();
        // The first attempt's commit loses to a write made after its read.
        let mut calls = 0;
        let updated = table
            .update("a", 3, |c| {
                calls += 1;
                if calls == 1 {
                    racing_write(&store, table.put("a", &Counter { n: 10 }, Expect::Any));
                }
                c.n += 1;
                Ok::<_, Error>(c.n)
            })
            .await
            .unwrap();
        assert!(matches!(updated, Updated::Done(Counter { n: 11 }, 11)));
        assert_eq!(calls, 2);
        assert_eq!(table.get("a").await.unwrap(), Some((Counter { n: 11 }, 3)));

        let refused = table.update("a", 3, |_| Err::<(), _>(Error::Refused)).await;
        assert!(matches!(refused, Err(Error::Refused)));
        assert_eq!(
            table.get("a").await.unwrap().unwrap().1,
            3,
            "nothing written"
        );

        // Every attempt loses.
        let contended = table
            .update("a", 2, |c| {
                racing_write(&store, table.put("a", &Counter { n: 0 }, Expect::Any));
                c.n += 1;
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
        assert!(matches!(contended, Updated::Contended));
    }

    #[tokio::test]
    async fn records_that_do_not_decode_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let table = Table::<Counter>::new(store.clone(), b"t/");
        store
            .commit(vec![Op::Put {
                key: table.key("bad"),
                value: b"not a record".to_vec(),
                expect: Expect::Any,
            }])
            .await
            .unwrap();
        assert!(matches!(
            table.get("bad").await,
            Err(StoreError::Corrupt { key, .. }) if key == "t/bad"
        ));
        assert!(matches!(
            table.scan_all().await,
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// A write from inside `update`'s synchronous closure, as a concurrent writer would make
    /// it between the update's read and its commit.
    fn racing_write(store: &Store, op: Op) {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(store.commit(vec![op]))
                .unwrap()
        });
    }
}
