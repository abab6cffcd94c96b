//! What every backend must do, as one check that runs against any [`Backend`]: the sled
//! backend's unit tests run it, and a second backend's tests run it unchanged.

use super::{Backend, Expect, Op, StoreError};

fn put(key: &[u8], value: &[u8], expect: Expect) -> Op {
    Op::Put {
        key: key.to_vec(),
        value: value.to_vec(),
        expect,
    }
}

fn delete(key: &[u8], expect: Expect) -> Op {
    Op::Delete {
        key: key.to_vec(),
        expect,
    }
}

async fn version(store: &impl Backend, key: &[u8]) -> Option<u64> {
    store.get(key).await.unwrap().map(|found| found.version)
}

async fn keys(
    found: impl Future<Output = super::Result<Vec<(Vec<u8>, super::Versioned)>>>,
) -> Vec<Vec<u8>> {
    found.await.unwrap().into_iter().map(|(k, _)| k).collect()
}

fn all(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.to_vec()).collect()
}

/// Runs every check on an empty store.
pub async fn check(store: &impl Backend) {
    versions_count_puts_from_creation(store).await;
    commits_apply_in_order_all_or_nothing(store).await;
    scans_stay_within_their_prefix(store).await;
    insert_once_puts_only_once(store).await;
}

async fn versions_count_puts_from_creation(store: &impl Backend) {
    assert_eq!(store.get(b"v/a").await.unwrap(), None);
    store
        .commit(vec![put(b"v/a", b"1", Expect::Absent)])
        .await
        .unwrap();
    let found = store.get(b"v/a").await.unwrap().unwrap();
    assert_eq!((found.value.as_slice(), found.version), (&b"1"[..], 1));
    store
        .commit(vec![put(b"v/a", b"2", Expect::Any)])
        .await
        .unwrap();
    store
        .commit(vec![put(b"v/a", b"3", Expect::Version(2))])
        .await
        .unwrap();
    assert_eq!(version(store, b"v/a").await, Some(3));
    store
        .commit(vec![delete(b"v/a", Expect::Version(3))])
        .await
        .unwrap();
    assert_eq!(store.get(b"v/a").await.unwrap(), None);
    store
        .commit(vec![put(b"v/a", b"again", Expect::Absent)])
        .await
        .unwrap();
    assert_eq!(
        version(store, b"v/a").await,
        Some(1),
        "re-created: counted anew"
    );
    // A delete of an absent key with no expectation is not an error.
    store
        .commit(vec![delete(b"v/none", Expect::Any)])
        .await
        .unwrap();
}

async fn commits_apply_in_order_all_or_nothing(store: &impl Backend) {
    // A failed expectation anywhere writes nothing and names its key.
    store
        .commit(vec![put(b"c/a", b"1", Expect::Absent)])
        .await
        .unwrap();
    let refused = [
        vec![
            put(b"c/b", b"2", Expect::Absent),
            put(b"c/a", b"x", Expect::Version(7)),
        ],
        vec![
            put(b"c/b", b"2", Expect::Absent),
            put(b"c/a", b"x", Expect::Absent),
        ],
        vec![
            put(b"c/b", b"2", Expect::Absent),
            delete(b"c/a", Expect::Version(2)),
        ],
        vec![
            put(b"c/b", b"2", Expect::Absent),
            delete(b"c/z", Expect::Version(1)),
        ],
    ];
    for ops in refused {
        match store.commit(ops).await {
            Err(StoreError::Conflict(key)) => assert!(key == "c/a" || key == "c/z", "{key}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(store.get(b"c/b").await.unwrap(), None, "nothing applied");
        assert_eq!(version(store, b"c/a").await, Some(1));
    }

    // Later operations see the earlier ones of the same commit.
    store
        .commit(vec![
            put(b"c/b", b"first", Expect::Absent),
            put(b"c/b", b"second", Expect::Version(1)),
            put(b"c/a", b"gone soon", Expect::Version(1)),
            delete(b"c/a", Expect::Version(2)),
        ])
        .await
        .unwrap();
    let b = store.get(b"c/b").await.unwrap().unwrap();
    assert_eq!(b.value, b"second");
    assert!(
        b.version >= 1,
        "put twice in one commit: at least one version up"
    );
    assert_eq!(store.get(b"c/a").await.unwrap(), None);

    // A key written first with no expectation, then guarded on what that write leaves.
    store
        .commit(vec![put(b"c/d", b"1", Expect::Any)])
        .await
        .unwrap();
    store
        .commit(vec![
            put(b"c/d", b"2", Expect::Any),
            put(b"c/d", b"3", Expect::Version(2)),
        ])
        .await
        .unwrap();
    assert_eq!(store.get(b"c/d").await.unwrap().unwrap().value, b"3");
    match store
        .commit(vec![
            put(b"c/d", b"x", Expect::Any),
            put(b"c/d", b"y", Expect::Version(1)),
        ])
        .await
    {
        Err(StoreError::Conflict(key)) => assert_eq!(key, "c/d"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get(b"c/d").await.unwrap().unwrap().value, b"3");
}

async fn scans_stay_within_their_prefix(store: &impl Backend) {
    // Neighbours on both sides of the prefix, and a key of high bytes at its end.
    let around: [&[u8]; 7] = [b"s.", b"s/", b"s/a", b"s/b", b"s/c", b"s/\xff\xff", b"s0"];
    let ops = around.iter().map(|k| put(k, b"", Expect::Any)).collect();
    store.commit(ops).await.unwrap();
    let inside = all(&[b"s/", b"s/a", b"s/b", b"s/c", b"s/\xff\xff"]);
    let mut reversed = inside.clone();
    reversed.reverse();

    assert_eq!(keys(store.scan(b"s/", None, usize::MAX)).await, inside);
    assert_eq!(keys(store.scan(b"s/", None, 2)).await, inside[..2]);
    assert_eq!(keys(store.scan(b"s/", Some(b"s/a"), 2)).await, inside[2..4]);
    // A start key that is not stored: strictly after it all the same.
    assert_eq!(keys(store.scan(b"s/", Some(b"s/bb"), 9)).await, inside[3..]);
    assert!(
        keys(store.scan(b"s/", Some(b"s/\xff\xff"), 9))
            .await
            .is_empty()
    );
    assert_eq!(
        keys(store.scan(b"s/", None, 0)).await,
        Vec::<Vec<u8>>::new()
    );

    assert_eq!(
        keys(store.scan_rev(b"s/", None, usize::MAX)).await,
        reversed
    );
    assert_eq!(keys(store.scan_rev(b"s/", None, 2)).await, reversed[..2]);
    assert_eq!(
        keys(store.scan_rev(b"s/", Some(b"s/c"), 2)).await,
        reversed[2..4]
    );
    assert_eq!(
        keys(store.scan_rev(b"s/", Some(b"s/bb"), 9)).await,
        reversed[2..]
    );
    assert!(keys(store.scan_rev(b"s/", Some(b"s/"), 9)).await.is_empty());

    assert!(keys(store.scan(b"none/", None, 9)).await.is_empty());
    assert!(keys(store.scan_rev(b"none/", None, 9)).await.is_empty());
}

async fn insert_once_puts_only_once(store: &impl Backend) {
    assert!(store.insert_once(b"i/a").await.unwrap());
    assert!(!store.insert_once(b"i/a").await.unwrap());
    let found = store.get(b"i/a").await.unwrap().unwrap();
    assert_eq!((found.value.as_slice(), found.version), (&b""[..], 1));
}
