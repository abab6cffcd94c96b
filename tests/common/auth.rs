//! `[auth]` entries for test servers, and clients acting as their principals. Principal P
//! authenticates with the bearer token "token-P".
#![allow(dead_code)]

use super::Server;
use super::secrets::Sm;
use keyward::api::pb::{
    key_management_service_client::KeyManagementServiceClient,
    secrets_manager_service_client::SecretsManagerServiceClient,
};
use keyward::cli::client::{Conn, Connect, connect};
use keyward::crypto::{hex, sha256};

pub type Kms = KeyManagementServiceClient<Conn>;

/// An identity policy allowing everything.
pub const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// The `[[auth.tokens]]` entry of `principal`.
pub fn token_entry(principal: &str) -> String {
    format!(
        "[[auth.tokens]]\nprincipal = \"{principal}\"\nsha256 = \"{}\"\n",
        hex::encode(&sha256(format!("token-{principal}").as_bytes()))
    )
}

/// An `[[auth.policies]]` entry; `principals` is the TOML list's inside, e.g. `"\"app\""`.
pub fn policy(name: &str, principals: &str, document: &str) -> String {
    format!(
        "[[auth.policies]]\nname = \"{name}\"\nprincipals = [{principals}]\ndocument = '''{document}'''\n"
    )
}

/// A token and a policy of its own for `principal`.
pub fn principal_with_policy(principal: &str, document: &str) -> String {
    token_entry(principal) + &policy(principal, &format!("\"{principal}\""), document)
}

/// Secrets Manager and KMS clients presenting `principal`'s token.
pub async fn clients(server: &Server, principal: &str) -> (Sm, Kms) {
    let mut to = Connect::plain(&server.endpoint);
    to.token = Some(format!("token-{principal}"));
    let conn = connect(&to).await.expect("connect");
    (
        SecretsManagerServiceClient::new(conn.clone()),
        KeyManagementServiceClient::new(conn),
    )
}
