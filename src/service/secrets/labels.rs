//! Staging labels (rules Labels 1-6 in `service::secrets`): pure functions over a
//! secret's versions, so every move is computed before one atomic write.

use super::SecretsError;
use super::limits::MAX_LABELS_PER_VERSION;
use crate::store::SecretVersionMeta;

pub const CURRENT: &str = "AWSCURRENT";
pub const PREVIOUS: &str = "AWSPREVIOUS";
pub const PENDING: &str = "AWSPENDING";

pub fn holder(versions: &[SecretVersionMeta], label: &str) -> Option<usize> {
    versions
        .iter()
        .position(|v| v.stages.iter().any(|s| s == label))
}

pub fn index(versions: &[SecretVersionMeta], version_id: &str) -> Option<usize> {
    versions.iter().position(|v| v.version_id == version_id)
}

fn detach(versions: &mut [SecretVersionMeta], label: &str) -> Option<usize> {
    let at = holder(versions, label)?;
    versions[at].stages.retain(|s| s != label);
    Some(at)
}

fn attach(versions: &mut [SecretVersionMeta], at: usize, label: &str) -> Result<(), SecretsError> {
    let stages = &mut versions[at].stages;
    if stages.iter().any(|s| s == label) {
        return Ok(());
    }
    if stages.len() >= MAX_LABELS_PER_VERSION {
        return Err(SecretsError::LimitExceeded(format!(
            "version {} already has {MAX_LABELS_PER_VERSION} staging labels",
            versions[at].version_id
        )));
    }
    stages.push(label.to_owned());
    Ok(())
}

/// Takes `label` off whichever version has it.
pub fn remove_label(versions: &mut [SecretVersionMeta], label: &str) {
    detach(versions, label);
}

/// Rule 1: a label sits on one version; attaching it anywhere removes it from its holder.
/// Rules 3, 4, 6: when AWSCURRENT leaves a version, AWSPREVIOUS goes to that version.
pub fn move_label(
    versions: &mut [SecretVersionMeta],
    label: &str,
    to: usize,
) -> Result<(), SecretsError> {
    let from = holder(versions, label);
    if from == Some(to) {
        return Ok(());
    }
    detach(versions, label);
    attach(versions, to, label)?;
    if label == CURRENT
        && let Some(from) = from
    {
        detach(versions, PREVIOUS);
        attach(versions, from, PREVIOUS)?;
    }
    Ok(())
}

/// Rules 2-4: labels for a newly written version at `new`. Without `requested` it gets
/// AWSCURRENT; with it, exactly those labels; the secret's first version always gets AWSCURRENT.
pub fn place_new_version(
    versions: &mut [SecretVersionMeta],
    new: usize,
    requested: Option<&[String]>,
) -> Result<(), SecretsError> {
    let first = holder(versions, CURRENT).is_none();
    let mut labels: Vec<String> = match requested {
        Some(labels) => labels.to_vec(),
        None => vec![CURRENT.to_owned()],
    };
    if first && !labels.iter().any(|l| l == CURRENT) {
        labels.insert(0, CURRENT.to_owned());
    }
    for label in &labels {
        move_label(versions, label, new)?;
    }
    Ok(())
}

/// Rule 6: UpdateSecretVersionStage.
pub fn update_stage(
    versions: &mut [SecretVersionMeta],
    label: &str,
    move_to: Option<&str>,
    remove_from: Option<&str>,
) -> Result<(), SecretsError> {
    let current_holder = holder(versions, label);
    let remove_from = match remove_from {
        Some(id) => Some(
            index(versions, id)
                .ok_or_else(|| SecretsError::NotFound(format!("version {id} does not exist")))?,
        ),
        None => None,
    };
    if let Some(from) = remove_from
        && current_holder != Some(from)
    {
        return Err(SecretsError::invalid(
            "remove_from_version_id",
            format!("the label {label} is not attached to that version"),
        ));
    }
    match move_to {
        Some(id) => {
            let to = index(versions, id)
                .ok_or_else(|| SecretsError::NotFound(format!("version {id} does not exist")))?;
            if let Some(h) = current_holder
                && h != to
                && remove_from != Some(h)
            {
                return Err(SecretsError::invalid(
                    "remove_from_version_id",
                    format!(
                        "the label {label} is attached to version {}; name it in remove_from_version_id to move the label",
                        versions[h].version_id
                    ),
                ));
            }
            move_label(versions, label, to)
        }
        None => {
            let Some(_) = remove_from else {
                return Err(SecretsError::invalid(
                    "move_to_version_id",
                    "give move_to_version_id, remove_from_version_id or both",
                ));
            };
            if label == CURRENT {
                return Err(SecretsError::invalid(
                    "version_stage",
                    "AWSCURRENT can be moved to another version but not removed",
                ));
            }
            detach(versions, label);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(stages: &[&[&str]]) -> Vec<SecretVersionMeta> {
        stages
            .iter()
            .enumerate()
            .map(|(i, s)| SecretVersionMeta {
                version_id: format!("v{i}"),
                created_at: crate::time::Timestamp::from_secs(i as i64),
                stages: s.iter().map(|s| s.to_string()).collect(),
                last_accessed_day: None,
                kms_key_arn: String::new(),
                has_value: true,
            })
            .collect()
    }

    fn stages(v: &[SecretVersionMeta]) -> Vec<Vec<&str>> {
        v.iter()
            .map(|v| {
                let mut s: Vec<&str> = v.stages.iter().map(String::as_str).collect();
                s.sort();
                s
            })
            .collect()
    }

    #[test]
    fn a_put_without_labels_shifts_current_and_previous() {
        let mut v = versions(&[&["AWSPREVIOUS"], &["AWSCURRENT"], &[]]);
        place_new_version(&mut v, 2, None).unwrap();
        assert_eq!(
            stages(&v),
            [vec![], vec!["AWSPREVIOUS"], vec!["AWSCURRENT"]]
        );
    }

    #[test]
    fn a_pending_put_leaves_current_alone_except_on_the_first_version() {
        let mut v = versions(&[&["AWSCURRENT"], &[]]);
        place_new_version(&mut v, 1, Some(&["AWSPENDING".into()])).unwrap();
        assert_eq!(stages(&v), [vec!["AWSCURRENT"], vec!["AWSPENDING"]]);
        let mut first = versions(&[&[]]);
        place_new_version(&mut first, 0, Some(&["AWSPENDING".into()])).unwrap();
        assert_eq!(stages(&first), [vec!["AWSCURRENT", "AWSPENDING"]]);
    }

    #[test]
    fn moving_current_onto_pending_keeps_pending_and_moves_previous() {
        let mut v = versions(&[&["AWSPREVIOUS"], &["AWSCURRENT"], &["AWSPENDING"]]);
        update_stage(&mut v, CURRENT, Some("v2"), Some("v1")).unwrap();
        assert_eq!(
            stages(&v),
            [
                vec![],
                vec!["AWSPREVIOUS"],
                vec!["AWSCURRENT", "AWSPENDING"]
            ]
        );
    }

    #[test]
    fn moving_a_held_label_needs_its_holder_named() {
        let mut v = versions(&[&["AWSCURRENT", "blue"], &[]]);
        let err = update_stage(&mut v, "blue", Some("v1"), None).unwrap_err();
        assert!(matches!(
            err,
            SecretsError::InvalidParameter {
                field: "remove_from_version_id",
                ..
            }
        ));
        let err = update_stage(&mut v, "blue", Some("v1"), Some("v1")).unwrap_err();
        assert!(matches!(err, SecretsError::InvalidParameter { .. }));
        update_stage(&mut v, "blue", Some("v1"), Some("v0")).unwrap();
        assert_eq!(stages(&v), [vec!["AWSCURRENT"], vec!["blue"]]);
        update_stage(&mut v, "blue", None, Some("v1")).unwrap();
        assert_eq!(stages(&v), [vec!["AWSCURRENT"], vec![]]);
        assert!(update_stage(&mut v, CURRENT, None, Some("v0")).is_err());
    }

    #[test]
    fn a_version_holds_at_most_twenty_labels() {
        let many: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut v = versions(&[&refs, &[]]);
        move_label(&mut v, "l0", 1).unwrap();
        move_label(&mut v, "new", 0).unwrap();
        let err = move_label(&mut v, "another", 0).unwrap_err();
        assert!(matches!(err, SecretsError::LimitExceeded(_)));
    }
}
