//! The PostgreSQL rotator against a real PostgreSQL (a throwaway cluster per test on
//! 127.0.0.1): both strategies change the password in the database, the old one stops working
//! (single user) or keeps working until the next rotation (alternating users), and a database
//! that is down fails set_secret without touching AWSCURRENT until the scheduler's retry
//! completes the rotation.

mod common;

use common::postgres::Postgres;
use common::rotation::{self, postgresql, rotate, wait_failed, wait_rotated};
use common::secrets::{self, Sm, expect, stages, token};
use common::*;
use tonic::Code;

fn credentials(pg: &Postgres, user: &str, password: &str) -> String {
    credentials_in(pg, "postgres", user, password)
}

fn credentials_in(pg: &Postgres, dbname: &str, user: &str, password: &str) -> String {
    serde_json::json!({
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": pg.port,
        "username": user,
        "password": password,
        "dbname": dbname,
    })
    .to_string()
}

/// (username, password) of the version holding `stage`.
async fn login_of(sm: &mut Sm, secret: &str, stage: &str) -> (String, String) {
    let value: serde_json::Value =
        serde_json::from_str(&secrets::value(sm, secret, stage).await).unwrap();
    (
        value["username"].as_str().unwrap().to_owned(),
        value["password"].as_str().unwrap().to_owned(),
    )
}

/// User `app` (password "first-password") in a fresh cluster, a server, and the secret
/// `db/app` holding its credentials.
struct App {
    pg: Postgres,
    _dir: tempfile::TempDir,
    _server: Server,
    sm: Sm,
    /// The secret's first version.
    first: String,
}

async fn app_with_secret() -> App {
    let pg = Postgres::start();
    pg.create_user("app", "first-password");
    let dir = tempfile::tempdir().unwrap();
    let server = rotation::server(dir.path(), "");
    let mut sm = secrets::client(&server).await;
    let first = secrets::create(
        &mut sm,
        "db/app",
        Some(&credentials(&pg, "app", "first-password")),
    )
    .await
    .version_id
    .unwrap();
    App {
        pg,
        _dir: dir,
        _server: server,
        sm,
        first,
    }
}

#[tokio::test]
async fn single_user_rotation_changes_the_password_in_the_database() {
    let App {
        pg,
        _dir,
        _server,
        mut sm,
        first,
    } = app_with_secret().await;

    let t = token("single");
    rotate(
        &mut sm,
        "db/app",
        &t,
        Some(postgresql("single-user", "")),
        None,
    )
    .await
    .unwrap();
    wait_rotated(&mut sm, "db/app", &t).await;

    let (user, password) = login_of(&mut sm, "db/app", "AWSCURRENT").await;
    assert_eq!(user, "app");
    assert_ne!(password, "first-password");
    assert!(
        pg.can_login("app", &password),
        "the new password is refused"
    );
    assert!(
        !pg.can_login("app", "first-password"),
        "the old password still works"
    );
    assert_eq!(
        stages(&mut sm, "db/app").await,
        expect(&[(&first, &["AWSPREVIOUS"]), (&t, &["AWSCURRENT"])])
    );
    // The stored verifier is SCRAM: the password itself never reached the database.
    let stored = pg.superuser_sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'");
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");
}

#[tokio::test]
async fn alternating_users_keep_the_current_credentials_working_throughout() {
    let pg = Postgres::start();
    pg.create_user("app", "app-password-0");
    // create_user gives "app" a database of its own, where it may create tables.
    pg.psql_db(
        "app",
        "app",
        "app-password-0",
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = rotation::server(dir.path(), "");
    let mut sm = secrets::client(&server).await;
    secrets::create(
        &mut sm,
        "db/admin",
        Some(&credentials(&pg, &pg.superuser, &pg.superuser_password)),
    )
    .await;
    secrets::create(
        &mut sm,
        "db/app",
        Some(&credentials_in(&pg, "app", "app", "app-password-0")),
    )
    .await;

    let mut held = login_of(&mut sm, "db/app", "AWSCURRENT").await;
    for (round, expected_user) in [(1, "app_clone"), (2, "app")] {
        let t = token(&format!("alt{round}"));
        let rotator = (round == 1).then(|| postgresql("alternating-users", "db/admin"));
        rotate(&mut sm, "db/app", &t, rotator, None).await.unwrap();
        // An application holding AWSCURRENT keeps logging in while the rotation runs.
        loop {
            assert!(
                pg.can_login(&held.0, &held.1),
                "round {round}: {} was locked out",
                held.0
            );
            let d = rotation::describe(&mut sm, "db/app").await;
            if d.rotation_status.is_none() {
                break;
            }
        }
        wait_rotated(&mut sm, "db/app", &t).await;
        let (user, password) = login_of(&mut sm, "db/app", "AWSCURRENT").await;
        assert_eq!(user, expected_user);
        assert!(pg.can_login(&user, &password));
        // The clone reaches the original user's tables through its membership.
        assert_eq!(
            pg.psql_db("app", &user, &password, "SELECT count(*) FROM orders")
                .unwrap(),
            "1"
        );
        // The credentials clients held before (now AWSPREVIOUS) still work.
        assert!(pg.can_login(&held.0, &held.1));
        assert_eq!(login_of(&mut sm, "db/app", "AWSPREVIOUS").await, held);
        held = (user, password);
    }
    // Two rotations on, the very first password of "app" has been replaced.
    assert!(!pg.can_login("app", "app-password-0"));
}

#[tokio::test]
async fn a_database_outage_fails_set_secret_and_the_retry_completes_the_rotation() {
    let App {
        pg,
        _dir,
        _server,
        mut sm,
        first,
    } = app_with_secret().await;

    pg.stop();
    let t = token("outage");
    rotate(
        &mut sm,
        "db/app",
        &t,
        Some(postgresql("single-user", "")),
        None,
    )
    .await
    .unwrap();
    let status = wait_failed(&mut sm, "db/app", "set_secret").await;
    // The cause is named (connection refused), the password is not.
    assert!(
        status.last_error.contains("cannot log in to 127.0.0.1"),
        "{status:?}"
    );
    assert!(status.last_error.contains("refused"), "{status:?}");
    assert!(!status.last_error.contains("first-password"), "{status:?}");

    // AWSCURRENT is unchanged and readable; AWSPENDING stays on the pending version.
    assert_eq!(
        login_of(&mut sm, "db/app", "AWSCURRENT").await,
        ("app".to_owned(), "first-password".to_owned())
    );
    assert_eq!(
        stages(&mut sm, "db/app").await,
        expect(&[(&first, &["AWSCURRENT"]), (&t, &["AWSPENDING"])])
    );
    let err = rotate(&mut sm, "db/app", &token("impatient"), None, None)
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");

    pg.start_again();
    wait_rotated(&mut sm, "db/app", &t).await;
    let (_, password) = login_of(&mut sm, "db/app", "AWSCURRENT").await;
    assert!(pg.can_login("app", &password));
    assert!(!pg.can_login("app", "first-password"));
}

async fn client_as(server: &Server, principal: &str) -> Sm {
    secrets::client_with_token(server, &format!("token-{principal}")).await
}

/// Security finding 2: RotateSecret reads the administrator's secret on its caller's behalf,
/// so the caller must be allowed to read it. A principal with rights on app/* only cannot make
/// the server log in as ops/pg-admin, whether it names that secret or the secret already has
/// a rotator that does.
#[tokio::test]
async fn a_rotation_cannot_use_an_admin_secret_its_caller_cannot_read() {
    let pg = Postgres::start();
    pg.create_user("victim", "victim-password");
    let dir = tempfile::tempdir().unwrap();
    let all =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let app = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:*","Resource":"arn:keyward:secretsmanager:*:*:secret:app/*"}]}"#;
    let server = rotation::server(
        dir.path(),
        &format!(
            "[auth]\n{}{}",
            common::auth::principal_with_policy("ops", all),
            common::auth::principal_with_policy("app", app)
        ),
    );
    let mut ops = client_as(&server, "ops").await;
    let mut app_client = client_as(&server, "app").await;
    let admin_arn = secrets::create(
        &mut ops,
        "ops/pg-admin",
        Some(&credentials(&pg, &pg.superuser, &pg.superuser_password)),
    )
    .await
    .arn;
    secrets::create(
        &mut app_client,
        "app/x",
        Some(&credentials_in(&pg, "victim", "victim", "victim-password")),
    )
    .await;
    let clone_exists =
        || pg.superuser_sql("SELECT count(*) FROM pg_roles WHERE rolname = 'victim_clone'") == "1";

    let refused = rotate(
        &mut app_client,
        "app/x",
        &token("deputy"),
        Some(postgresql("alternating-users", "ops/pg-admin")),
        None,
    )
    .await
    .unwrap_err();
    assert_error(&refused, Code::PermissionDenied, "AccessDeniedException");
    // Nothing was configured or started, so no rotation will ever log in with it.
    let described = rotation::describe(&mut app_client, "app/x").await;
    assert!(described.rotator.is_none(), "{:?}", described.rotator);
    assert!(described.rotation_status.is_none());
    assert_eq!(described.version_ids_to_stages.len(), 1);
    assert!(pg.can_login("victim", "victim-password"));
    assert!(!clone_exists());
    // The refused read is in the audit trail, under the caller and the admin secret.
    let reads = audit_records(&server.data_dir, "secretsmanager:GetSecretValue");
    let denied: Vec<_> = reads
        .iter()
        .filter(|r| r["resource"] == admin_arn.as_str() && r["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{reads:?}");
    assert_eq!(denied[0]["principal"], "keyward:principal/app");
    assert!(
        denied[0]["reason"]
            .as_str()
            .unwrap()
            .contains("on behalf of secretsmanager:RotateSecret")
    );

    // An operator who may read the admin secret attaches the rotator (without rotating)...
    ops.rotate_secret(keyward::api::pb::RotateSecretRequest {
        secret_id: "app/x".into(),
        rotator: Some(postgresql("alternating-users", "ops/pg-admin")),
        rotate_immediately: Some(false),
        ..Default::default()
    })
    .await
    .unwrap();
    // ...and the app still cannot start a rotation that would use it.
    let refused = rotate(&mut app_client, "app/x", &token("deputy2"), None, None)
        .await
        .unwrap_err();
    assert_error(&refused, Code::PermissionDenied, "AccessDeniedException");
    assert!(
        rotation::describe(&mut app_client, "app/x")
            .await
            .rotation_status
            .is_none()
    );
    assert!(!clone_exists());

    // The operator can; the read on its behalf is audited as a success, and it works.
    let t = token("by-ops");
    rotate(&mut ops, "app/x", &t, None, None).await.unwrap();
    wait_rotated(&mut ops, "app/x", &t).await;
    assert!(clone_exists());
    let allowed = audit_records(&server.data_dir, "secretsmanager:GetSecretValue")
        .into_iter()
        .filter(|r| {
            r["resource"] == admin_arn.as_str()
                && r["outcome"] == "success"
                && r["principal"] == "keyward:principal/ops"
        })
        .count();
    assert_eq!(allowed, 2, "one per RotateSecret that uses it");
}
