//! The replica's side of replication (`service::secrets::replica` apply): which entries a site
//! applies, which it has already seen, which it refuses, and what a promoted replica answers.

use super::*;
use crate::service::secrets::{Applied, Delivered, Incoming, ReplicaState, ReplicaVersion};

const PRIMARY: &str = "site-a";
const LOG: &str = "log-1";

fn primary_arn(name: &str) -> String {
    format!("arn:keyward:secretsmanager:{PRIMARY}:{ACCOUNT}:secret:{name}-AbC123")
}

/// A primary's state of `name`: versions as (id, labels, value shipped with the entry).
fn state(name: &str, versions: &[(&str, &[&str], Option<&str>)]) -> ReplicaState {
    ReplicaState {
        primary_arn: primary_arn(name),
        description: "from the primary".into(),
        kms_key_id: String::new(),
        created_at: at(START - DAY),
        deletion_date: None,
        tags: Vec::new(),
        versions: versions
            .iter()
            .map(|(id, stages, value)| ReplicaVersion {
                version_id: token(id),
                created_at: at(START - DAY),
                stages: stages.iter().map(|s| s.to_string()).collect(),
                has_value: true,
                value: value.map(text),
            })
            .collect(),
        resource_policy: None,
        force_overwrite: false,
    }
}

fn upsert(seq: u64, name: &str, state: ReplicaState) -> Delivered {
    Delivered {
        seq,
        name: name.into(),
        change: Ok(Incoming::Upsert(state)),
    }
}

fn remove(seq: u64, name: &str) -> Delivered {
    Delivered {
        seq,
        name: name.into(),
        change: Ok(Incoming::Remove),
    }
}

impl Fixture {
    /// Applies entries from the primary site, all expected to be answered without a retryable
    /// error; returns each entry's outcome.
    async fn apply(&self, entries: Vec<Delivered>, may_overwrite_local: bool) -> Vec<Applied> {
        let (outcomes, failure) = self
            .secrets
            .apply_replicated(PRIMARY, LOG, entries, may_overwrite_local)
            .await;
        assert!(failure.is_none(), "{failure:?}");
        outcomes
            .into_iter()
            .map(|(_, _, applied)| applied)
            .collect()
    }
}

#[tokio::test]
async fn an_entry_is_applied_once_and_the_replica_is_read_only() {
    let f = services().await;
    let v1 = state("db/x", &[("a", &[CUR], Some("one"))]);
    assert_eq!(
        f.apply(vec![upsert(1, "db/x", v1)], false).await,
        [Applied::Applied]
    );

    let record = f.secrets.describe_secret("db/x").await.unwrap();
    assert_eq!(
        record.arn,
        format!("arn:keyward:secretsmanager:{REGION}:{ACCOUNT}:secret:db/x-AbC123")
    );
    assert_eq!(record.primary_region.as_deref(), Some(PRIMARY));
    assert_eq!(record.description, "from the primary");
    assert_eq!(f.value("db/x", "").await, "one");
    // Sealed again here, under this site's own default key.
    assert!(
        record.versions[0]
            .kms_key_arn
            .contains(&format!(":{REGION}:"))
    );

    let err = f.put("db/x", "", "local", &[]).await.unwrap_err();
    assert!(
        matches!(&err, SecretsError::InvalidRequest(m) if m.starts_with("db/x is a replica of the primary secret in region site-a")),
        "{err:?}"
    );
    let err = f
        .secrets
        .delete_secret(Deletion::forced("db/x"))
        .await
        .err();
    assert!(
        matches!(err, Some(SecretsError::InvalidRequest(_))),
        "{err:?}"
    );

    // A later entry adds a version and moves the labels; a resent earlier one is a duplicate
    // and must not roll the replica back.
    let v2 = state("db/x", &[("a", &[PREV], None), ("b", &[CUR], Some("two"))]);
    let stale = state("db/x", &[("a", &[CUR], Some("one"))]);
    assert_eq!(
        f.apply(vec![upsert(1, "db/x", stale), upsert(2, "db/x", v2)], false)
            .await,
        [Applied::Duplicate, Applied::Applied]
    );
    let (a, b) = (token("a"), token("b"));
    assert_eq!(
        f.stages("db/x").await,
        expect(&[(&a, &[PREV]), (&b, &[CUR])])
    );
    assert_eq!(f.value("db/x", "").await, "two");
    assert_eq!(f.value("db/x", PREV).await, "one");
    let again = state("db/x", &[("b", &[CUR], Some("two"))]);
    assert_eq!(
        f.apply(vec![upsert(2, "db/x", again)], false).await,
        [Applied::Duplicate]
    );
    assert_eq!(f.stages("db/x").await.len(), 2);
}

#[tokio::test]
async fn entries_of_one_batch_see_each_other_and_a_remove_deletes_the_replica() {
    let f = services().await;
    let first = state("db/x", &[("a", &[CUR], Some("one"))]);
    let second = state("db/x", &[("a", &[PREV], None), ("b", &[CUR], Some("two"))]);
    let other = state("db/y", &[("c", &[CUR], Some("why"))]);
    assert_eq!(
        f.apply(
            vec![
                upsert(1, "db/x", first),
                upsert(2, "db/x", second),
                upsert(3, "db/y", other),
                remove(4, "db/y"),
                // A remove for a secret this site never held.
                remove(5, "db/never"),
            ],
            false
        )
        .await,
        vec![Applied::Applied; 5]
    );
    assert_eq!(f.value("db/x", "").await, "two");
    assert_eq!(f.value("db/x", PREV).await, "one");
    let err = f.secrets.describe_secret("db/y").await.err();
    assert!(matches!(err, Some(SecretsError::NotFound(_))), "{err:?}");

    assert_eq!(
        f.apply(vec![remove(6, "db/x")], false).await,
        [Applied::Applied]
    );
    assert!(f.secrets.describe_secret("db/x").await.is_err());
}

#[tokio::test]
async fn entries_that_cannot_apply_are_refused_with_the_reason() {
    let f = services().await;
    let malformed = Delivered {
        seq: 1,
        name: "db/x".into(),
        change: Err("the entry does not decode".into()),
    };
    // A new version whose value the entry did not carry.
    let valueless = state("db/z", &[("a", &[CUR], None)]);
    let outcomes = f
        .apply(
            vec![
                malformed,
                upsert(2, "bad name!", state("bad name!", &[])),
                upsert(3, "db/z", valueless),
            ],
            false,
        )
        .await;
    assert_eq!(
        outcomes[0],
        Applied::Refused("the entry does not decode".into())
    );
    assert_eq!(
        outcomes[1],
        Applied::Refused("name: may contain only ASCII letters, digits and /_+=.@-".into())
    );
    assert_eq!(
        outcomes[2],
        Applied::Refused(format!(
            "the value of version {} was not sent; replicate the secret again",
            token("a")
        ))
    );
    assert!(f.secrets.describe_secret("db/z").await.is_err());
    // Refusals are final: the log moved past them.
    assert_eq!(
        f.apply(
            vec![upsert(
                3,
                "db/z",
                state("db/z", &[("a", &[CUR], Some("v"))])
            )],
            false
        )
        .await,
        [Applied::Duplicate]
    );
}

#[tokio::test]
async fn a_sites_own_secret_is_overwritten_only_when_both_sides_allow_it() {
    let f = services().await;
    f.create("mine", &token("local"), "local value").await;
    let shipped = || state("mine", &[("a", &[CUR], Some("primary value"))]);
    let forced = || ReplicaState {
        force_overwrite: true,
        ..shipped()
    };

    assert_eq!(
        f.apply(vec![upsert(1, "mine", shipped())], true).await,
        [Applied::Refused(
            "a secret with this name already exists in this region".into()
        )]
    );
    assert_eq!(
        f.apply(vec![upsert(2, "mine", forced())], false).await,
        [Applied::Refused(format!(
            "a secret with this name already exists in this region, and this region does not let \
             {PRIMARY} overwrite its own secrets (replication.peers allow_overwrite_local)"
        ))]
    );
    assert_eq!(f.value("mine", "").await, "local value");
    assert_eq!(
        f.secrets
            .describe_secret("mine")
            .await
            .unwrap()
            .primary_region,
        None
    );

    assert_eq!(
        f.apply(vec![upsert(3, "mine", forced())], true).await,
        [Applied::Applied]
    );
    assert_eq!(f.value("mine", "").await, "primary value");
    assert_eq!(f.stages("mine").await, expect(&[(&token("a"), &[CUR])]));
    assert_eq!(
        f.secrets
            .describe_secret("mine")
            .await
            .unwrap()
            .primary_region
            .as_deref(),
        Some(PRIMARY)
    );
}

#[tokio::test]
async fn another_sites_replica_is_refused() {
    let f = services().await;
    let (outcomes, failure) = f
        .secrets
        .apply_replicated(
            "site-c",
            "log-c",
            vec![upsert(
                1,
                "db/x",
                state("db/x", &[("a", &[CUR], Some("c"))]),
            )],
            false,
        )
        .await;
    assert!(failure.is_none(), "{failure:?}");
    assert_eq!(outcomes[0].2, Applied::Applied);

    let forced = ReplicaState {
        force_overwrite: true,
        ..state("db/x", &[("a", &[CUR], Some("a"))])
    };
    assert_eq!(
        f.apply(vec![upsert(1, "db/x", forced), remove(2, "db/x")], true)
            .await,
        [
            Applied::Refused(
                "a replica of the secret with this name from region site-c exists in this region"
                    .into()
            ),
            Applied::Refused(
                "a replica of the secret with this name from region site-c exists in this region"
                    .into()
            )
        ]
    );
    assert_eq!(f.value("db/x", "").await, "c");
}

#[tokio::test]
async fn a_promoted_replica_answers_promoted_and_its_primary_is_told_once() {
    let f = services().await;
    f.apply(
        vec![upsert(
            1,
            "db/x",
            state("db/x", &[("a", &[CUR], Some("one"))]),
        )],
        false,
    )
    .await;
    f.secrets.stop_replication("db/x").await.unwrap();
    let record = f.secrets.describe_secret("db/x").await.unwrap();
    assert_eq!(
        (record.primary_region, record.former_primary.as_deref()),
        (None, Some(PRIMARY))
    );
    // Writable here now.
    f.put("db/x", &token("b"), "local", &[]).await.unwrap();

    // Entries the old primary logged before it heard of the promotion must not undo it.
    let late = state("db/x", &[("a", &[CUR], Some("one"))]);
    assert_eq!(
        f.apply(vec![upsert(2, "db/x", late), remove(3, "db/x")], true)
            .await,
        [Applied::Promoted, Applied::Promoted]
    );
    assert_eq!(f.value("db/x", "").await, "local");

    assert_eq!(
        f.secrets.take_promotions(PRIMARY).await.unwrap(),
        ["db/x".to_owned()]
    );
    assert!(f.secrets.take_promotions(PRIMARY).await.unwrap().is_empty());
    let err = f.secrets.stop_replication("db/x").await.err();
    assert!(
        matches!(&err, Some(SecretsError::InvalidRequest(m)) if m == "db/x is not a replica of a secret in another region"),
        "{err:?}"
    );
}
