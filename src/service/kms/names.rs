//! What a `key_id` field may hold: a key id (UUID), a key ARN, an alias name or an alias ARN.

use crate::service::KmsError;
use uuid::Uuid;

pub const ALIAS_PREFIX: &str = "alias/";
pub const MAX_ALIAS_LEN: usize = 256;
/// AWS's limit on a `KeyId` member: an alias ARN is the longest valid form.
pub const MAX_KEY_ID: usize = 2048;

/// A reference to a key as a client wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyName {
    Id(Uuid),
    /// Full alias name, including the `alias/` prefix.
    Alias(String),
}

/// The partition, region and account that appear in this site's ARNs. ARNs are written with
/// `partition` and read in any of [`crate::policy::PARTITIONS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arns {
    pub partition: String,
    pub region: String,
    pub account_id: String,
}

impl Arns {
    pub fn key(&self, key_id: &str) -> String {
        format!(
            "arn:{}:kms:{}:{}:key/{key_id}",
            self.partition, self.region, self.account_id
        )
    }

    pub fn alias(&self, alias_name: &str) -> String {
        format!(
            "arn:{}:kms:{}:{}:{alias_name}",
            self.partition, self.region, self.account_id
        )
    }

    /// A secret's ARN: `name`, a hyphen and the random `suffix`.
    pub fn secret(&self, name: &str, suffix: &str) -> String {
        format!("{}{name}-{suffix}", self.secret_prefix())
    }

    /// What every secret ARN this site makes starts with.
    fn secret_prefix(&self) -> String {
        format!(
            "arn:{}:secretsmanager:{}:{}:secret:",
            self.partition, self.region, self.account_id
        )
    }

    /// The account's root principal, as key policies name it.
    pub fn account_root(&self) -> String {
        format!("arn:{}:iam::{}:root", self.partition, self.account_id)
    }

    pub fn parse(&self, field: &'static str, input: &str) -> Result<KeyName, KmsError> {
        if input.is_empty() {
            return Err(KmsError::validation(field, "is required"));
        }
        if input.len() > MAX_KEY_ID {
            return Err(KmsError::validation(
                field,
                format!("must be at most {MAX_KEY_ID} characters"),
            ));
        }
        if input.starts_with(ALIAS_PREFIX) {
            return validate_alias(input).map(|()| KeyName::Alias(input.to_owned()));
        }
        if let Some(rest) = input.strip_prefix("arn:") {
            return self.parse_arn(field, input, rest);
        }
        parse_uuid(field, input).map(KeyName::Id)
    }

    fn parse_arn(&self, field: &'static str, input: &str, rest: &str) -> Result<KeyName, KmsError> {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = parts.as_slice() else {
            return Err(KmsError::validation(field, "malformed ARN"));
        };
        if !crate::policy::PARTITIONS.contains(partition) || *service != "kms" {
            return Err(KmsError::validation(field, "not a Keyward KMS ARN"));
        }
        if *region != self.region || *account != self.account_id {
            return Err(KmsError::NotFound(format!(
                "{input} belongs to another region or account"
            )));
        }
        if let Some(id) = resource.strip_prefix("key/") {
            return parse_uuid(field, id).map(KeyName::Id);
        }
        if resource.starts_with(ALIAS_PREFIX) {
            return validate_alias(resource).map(|()| KeyName::Alias((*resource).to_owned()));
        }
        Err(KmsError::validation(
            field,
            "ARN names neither a key nor an alias",
        ))
    }
}

fn parse_uuid(field: &'static str, input: &str) -> Result<Uuid, KmsError> {
    // Only the canonical hyphenated form, so one key has one id string.
    match Uuid::try_parse(input) {
        Ok(id) if id.hyphenated().to_string() == input => Ok(id),
        _ => Err(KmsError::validation(
            field,
            "must be a key id (UUID), a key ARN, an alias name (alias/NAME) or an alias ARN",
        )),
    }
}

/// `alias/NAME`: NAME of letters, digits, `/`, `_` and `-`, 256 characters in all at most,
/// and not in the reserved `alias/aws/` namespace.
pub fn validate_alias(name: &str) -> Result<(), KmsError> {
    let Some(rest) = name.strip_prefix(ALIAS_PREFIX) else {
        return Err(KmsError::InvalidAliasName(format!(
            "alias_name {name:?} must begin with \"alias/\""
        )));
    };
    if rest.is_empty() || name.len() > MAX_ALIAS_LEN {
        return Err(KmsError::InvalidAliasName(format!(
            "alias_name must be \"alias/\" followed by 1 to {} characters",
            MAX_ALIAS_LEN - ALIAS_PREFIX.len()
        )));
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'))
    {
        return Err(KmsError::InvalidAliasName(format!(
            "alias_name {name:?} may contain only letters, digits, '/', '_' and '-'"
        )));
    }
    if rest.starts_with("aws/") {
        return Err(KmsError::InvalidAliasName(
            "alias_name: the alias/aws/ prefix is reserved".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arns() -> Arns {
        Arns {
            partition: "keyward".into(),
            region: "local".into(),
            account_id: "000000000000".into(),
        }
    }

    #[test]
    fn every_accepted_form_resolves() {
        let id = Uuid::new_v4();
        let arns = arns();
        let text = id.to_string();
        assert_eq!(arns.parse("key_id", &text).unwrap(), KeyName::Id(id));
        assert_eq!(
            arns.parse("key_id", &arns.key(&text)).unwrap(),
            KeyName::Id(id)
        );
        assert_eq!(
            arns.parse("key_id", "alias/app/db").unwrap(),
            KeyName::Alias("alias/app/db".into())
        );
        assert_eq!(
            arns.parse("key_id", &arns.alias("alias/app")).unwrap(),
            KeyName::Alias("alias/app".into())
        );
    }

    #[test]
    fn malformed_names_are_refused_with_the_field() {
        let arns = arns();
        for bad in [
            "",
            "not-a-key",
            "arn:aws:kms:local:000000000000:key/x",
            "ABC",
        ] {
            match arns.parse("key_id", bad) {
                Err(KmsError::Validation { field, .. }) => assert_eq!(field, "key_id"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let upper = Uuid::new_v4().to_string().to_uppercase();
        assert!(arns.parse("key_id", &upper).is_err());
        for bad in [
            "alias/",
            "alias/has space",
            "alias/aws/x",
            &format!("alias/{}", "a".repeat(251)),
        ] {
            assert!(
                matches!(validate_alias(bad), Err(KmsError::InvalidAliasName(_))),
                "{bad}"
            );
        }
        assert!(validate_alias(&format!("alias/{}", "a".repeat(250))).is_ok());
    }

    #[test]
    fn arns_of_another_region_are_not_found() {
        let other = format!("arn:keyward:kms:eu:000000000000:key/{}", Uuid::new_v4());
        assert!(matches!(
            arns().parse("key_id", &other),
            Err(KmsError::NotFound(_))
        ));
    }
}
