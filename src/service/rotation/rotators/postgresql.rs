//! The `postgresql` rotator. The secret holds AWS's JSON shape (`engine`, `host`, `port`,
//! `username`, `password`, `dbname`; other fields are kept). Two strategies, as AWS offers:
//!
//! - single user: the role changes its own password, logging in with the current credentials
//!   (or the previous ones, if a crash left the database a step ahead of the labels);
//! - alternating users: an administrator (another secret) sets the password of the role that
//!   is *not* current, creating `<user>_clone` as a member of `<user>` the first time, so the
//!   credentials clients hold keep working throughout.
//!
//! Passwords travel to PostgreSQL only as SCRAM-SHA-256 verifiers (`ALTER ROLE ... PASSWORD
//! 'SCRAM-SHA-256$...'`), so the new password is never in a statement or a server log, and
//! logins use SCRAM, which does not reveal the password either.

use super::{BoxFuture, RotationError, Rotator, StepContext};
use crate::crypto::SecretBytes;
use crate::service::secrets::Value;
use crate::store::{PasswordPolicy, PostgresStrategy};
use serde_json::{Map, Value as Json};
use std::time::Duration;
use zeroize::Zeroizing;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CLONE_SUFFIX: &str = "_clone";

pub struct Postgresql {
    pub strategy: PostgresStrategy,
    pub admin_secret_id: Option<String>,
    pub password: PasswordPolicy,
}

/// Credentials parsed from a secret value; `rest` keeps the fields we do not use.
struct Credentials {
    host: String,
    port: u16,
    username: String,
    password: Zeroizing<String>,
    dbname: String,
    rest: Map<String, Json>,
}

fn failed(message: impl Into<String>) -> RotationError {
    RotationError::Failed(message.into())
}

impl Credentials {
    fn parse(value: &Value, which: &str) -> Result<Self, RotationError> {
        let Value::String(bytes) = value else {
            return Err(failed(format!(
                "the {which} value is binary, not PostgreSQL JSON"
            )));
        };
        let json: Zeroizing<Vec<u8>> = Zeroizing::new(bytes.expose().to_vec());
        let mut fields: Map<String, Json> = serde_json::from_slice(&json)
            .map_err(|_| failed(format!("the {which} value is not a JSON object")))?;
        let mut text = |key: &str| -> Result<String, RotationError> {
            match fields.remove(key) {
                Some(Json::String(s)) if !s.is_empty() => Ok(s),
                _ => Err(failed(format!("the {which} value has no \"{key}\" string"))),
            }
        };
        let host = text("host")?;
        let username = text("username")?;
        let password = Zeroizing::new(text("password")?);
        let dbname = match fields.remove("dbname") {
            Some(Json::String(s)) if !s.is_empty() => s,
            None => "postgres".to_owned(),
            _ => {
                return Err(failed(format!(
                    "the {which} value's \"dbname\" is not a string"
                )));
            }
        };
        let port = match fields.remove("port") {
            None => 5432,
            Some(Json::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
            Some(Json::String(s)) => s.parse().unwrap_or(0),
            Some(_) => 0,
        };
        if port == 0 {
            return Err(failed(format!(
                "the {which} value's \"port\" is not a port number"
            )));
        }
        if let Some(engine) = fields.get("engine")
            && engine.as_str() != Some("postgres")
        {
            return Err(failed(format!(
                "the {which} value's engine is not \"postgres\""
            )));
        }
        Ok(Self {
            host,
            port,
            username,
            password,
            dbname,
            rest: fields,
        })
    }

    fn with(&self, username: &str, password: Zeroizing<String>) -> Self {
        Self {
            host: self.host.clone(),
            port: self.port,
            username: username.to_owned(),
            password,
            dbname: self.dbname.clone(),
            rest: self.rest.clone(),
        }
    }

    fn to_value(&self) -> Value {
        let mut fields = self.rest.clone();
        fields.insert("engine".into(), "postgres".into());
        fields.insert("host".into(), self.host.clone().into());
        fields.insert("port".into(), self.port.into());
        fields.insert("username".into(), self.username.clone().into());
        fields.insert("password".into(), self.password.as_str().into());
        fields.insert("dbname".into(), self.dbname.clone().into());
        let text = Zeroizing::new(Json::Object(fields).to_string());
        Value::String(SecretBytes::new(text.as_bytes().to_vec()))
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, RotationError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.username)
            .password(self.password.as_bytes())
            .dbname(&self.dbname)
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("keyward-rotation");
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
            failed(format!(
                "cannot log in to {}:{} as {}: {}",
                self.host,
                self.port,
                self.username,
                describe(&e)
            ))
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

/// The driver's error with its cause: the server's message ("password authentication failed
/// for user ...") or the I/O error. Neither ever contains a password.
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// `name` as a quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SCRAM-SHA-256 verifier: base64, digits and `$:` only, so it is safe in a literal.
fn verifier(password: &str) -> Result<String, RotationError> {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    if verifier
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"$:+/=-".contains(&b))
    {
        Ok(verifier)
    } else {
        Err(failed("unexpected characters in the SCRAM verifier"))
    }
}

async fn execute(
    client: &tokio_postgres::Client,
    sql: &str,
    what: &str,
) -> Result<(), RotationError> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| failed(format!("{what}: {}", describe(&e))))
}

/// The other user of an alternating pair.
fn alternate(username: &str) -> String {
    match username.strip_suffix(CLONE_SUFFIX) {
        Some(base) => base.to_owned(),
        None => format!("{username}{CLONE_SUFFIX}"),
    }
}

impl Postgresql {
    async fn admin(&self, ctx: &StepContext<'_>) -> Result<Credentials, RotationError> {
        let id = self
            .admin_secret_id
            .as_deref()
            .ok_or_else(|| failed("alternating-users needs admin_secret_id"))?;
        let admin = ctx
            .secrets
            .get_secret_value(crate::service::secrets::GetValue::by_stage(
                id,
                "AWSCURRENT",
            ))
            .await?;
        Credentials::parse(&admin.value, "administrator secret's")
    }

    async fn set_single_user(
        &self,
        ctx: &StepContext<'_>,
        pending: &Credentials,
    ) -> Result<(), RotationError> {
        let mut last_error = failed("no credentials to log in with");
        for (value, which) in [(&ctx.current, "current"), (&ctx.previous, "previous")] {
            let Some(value) = value else { continue };
            let login = Credentials::parse(value, which)?;
            if login.username != pending.username {
                return Err(failed(
                    "single-user rotation cannot change the username; use alternating-users",
                ));
            }
            match login.connect().await {
                Ok(client) => {
                    let sql = format!(
                        "ALTER ROLE {} PASSWORD '{}'",
                        ident(&pending.username),
                        verifier(&pending.password)?
                    );
                    return execute(&client, &sql, "changing the password").await;
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn set_alternating(
        &self,
        ctx: &StepContext<'_>,
        pending: &Credentials,
    ) -> Result<(), RotationError> {
        let admin = self.admin(ctx).await?.connect().await?;
        let current = Credentials::parse(ctx.current()?, "current")?;
        let exists = admin
            .query_opt(
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&pending.username],
            )
            .await
            .map_err(|e| {
                failed(format!(
                    "looking up role {}: {}",
                    pending.username,
                    describe(&e)
                ))
            })?
            .is_some();
        let password = verifier(&pending.password)?;
        let sql = if exists {
            format!(
                "ALTER ROLE {} PASSWORD '{password}'",
                ident(&pending.username)
            )
        } else {
            // Membership gives the clone the privileges of the user it alternates with.
            format!(
                "CREATE ROLE {} WITH LOGIN PASSWORD '{password}' IN ROLE {}",
                ident(&pending.username),
                ident(&current.username)
            )
        };
        execute(&admin, &sql, "setting the pending user's password").await
    }
}

impl Rotator for Postgresql {
    fn create_value<'a>(
        &'a self,
        ctx: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<Option<Value>, RotationError>> {
        Box::pin(async move {
            let current = Credentials::parse(ctx.current()?, "current")?;
            let generated = ctx
                .secrets
                .get_random_password(self.password.clone())
                .await?;
            let password = Zeroizing::new(
                String::from_utf8(generated.expose().to_vec())
                    .map_err(|_| failed("generated password is not text"))?,
            );
            let username = match self.strategy {
                PostgresStrategy::SingleUser => current.username.clone(),
                PostgresStrategy::AlternatingUsers => alternate(&current.username),
            };
            Ok(Some(current.with(&username, password).to_value()))
        })
    }

    fn set_secret<'a>(
        &'a self,
        ctx: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<(), RotationError>> {
        Box::pin(async move {
            let pending = Credentials::parse(ctx.pending()?, "pending")?;
            // Already in effect (a repeated step): nothing to do.
            if pending.connect().await.is_ok() {
                return Ok(());
            }
            match self.strategy {
                PostgresStrategy::SingleUser => self.set_single_user(ctx, &pending).await,
                PostgresStrategy::AlternatingUsers => self.set_alternating(ctx, &pending).await,
            }
        })
    }

    fn test_secret<'a>(
        &'a self,
        ctx: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<(), RotationError>> {
        Box::pin(async move {
            let pending = Credentials::parse(ctx.pending()?, "pending")?;
            let client = pending.connect().await?;
            client.simple_query("SELECT 1").await.map_err(|e| {
                failed(format!(
                    "test query as {}: {}",
                    pending.username,
                    describe(&e)
                ))
            })?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        Value::String(SecretBytes::new(text.as_bytes().to_vec()))
    }

    #[test]
    fn credentials_keep_unknown_fields_and_default_port_and_database() {
        let c = Credentials::parse(
            &value(
                r#"{"engine":"postgres","host":"db","username":"app","password":"p","note":"x"}"#,
            ),
            "current",
        )
        .unwrap();
        assert_eq!((c.port, c.dbname.as_str()), (5432, "postgres"));
        let again = c.with("app_clone", Zeroizing::new("q".into())).to_value();
        let Value::String(bytes) = again else {
            panic!()
        };
        let json: Json = serde_json::from_slice(bytes.expose()).unwrap();
        assert_eq!(json["note"], "x");
        assert_eq!(json["username"], "app_clone");
        assert_eq!(json["password"], "q");
        assert!(Credentials::parse(&value(r#"{"host":"db","username":"a"}"#), "current").is_err());
        assert!(
            Credentials::parse(
                &value(r#"{"engine":"mysql","host":"d","username":"a","password":"p"}"#),
                "current"
            )
            .is_err()
        );
    }

    #[test]
    fn alternating_users_swap_and_identifiers_are_quoted() {
        assert_eq!(alternate("app"), "app_clone");
        assert_eq!(alternate("app_clone"), "app");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        let v = verifier("x'; DROP ROLE app; --").unwrap();
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains('\''));
    }
}
