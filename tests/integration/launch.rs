//! Launch: configuration errors, the Sentinel, and migrations.

use rocket::error::ErrorKind;
use rocket::figment::providers::{Env, Format, Toml};
use rocket::figment::Figment;
use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket::request::{self, FromRequest, Request};
use rocket::serde::json::json;
use rocket::{get, routes, Ignite, Rocket, Sentinel};
use rocket_tessera::{Config, Session, Sessions};

use crate::common::{figment_with, TestDb};
use crate::{demo, demo_app};

/// Why launch failed: `"fairing"` or `"sentinel"`.
async fn launch_fails(rocket: rocket::Rocket<rocket::Build>) -> &'static str {
    match Client::untracked(rocket).await {
        Ok(_) => panic!("launch must fail"),
        Err(e) => match e.kind() {
            ErrorKind::FailedFairings(f) if f.iter().any(|f| f.name == "Sessions") => "fairing",
            ErrorKind::SentinelAborts(_) => "sentinel",
            other => panic!("launch failed for another reason: {other:?}"),
        },
    }
}

#[rocket::async_test]
async fn bad_configuration_stops_launch() {
    let db = TestDb::new().await;
    for overrides in [
        json!({ "idle_timout": 5 }),
        json!({ "same_site": "sometimes" }),
        json!({ "same_site": "none", "secure": false }),
        json!({ "pool_size": "many" }),
    ] {
        let kind = launch_fails(demo_app(&db, overrides.clone())).await;
        assert_eq!(kind, "fairing", "{overrides}");
    }
    // Without a database_url the default is cookie mode; PostgreSQL mode,
    // asked for by name, still needs one.
    let kind = launch_fails(demo::mount(
        rocket::custom(figment_with(json!({ "mode": "postgres" }))).attach(Sessions::fairing()),
    ))
    .await;
    assert_eq!(kind, "fairing", "no database_url");
}

#[get("/direct")]
fn direct(_session: Session<'_>) {}

/// A guard built on `Session`, with a Sentinel that delegates.
struct User(String);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for User {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        let session = match req.guard::<Session<'_>>().await {
            request::Outcome::Success(session) => session,
            request::Outcome::Error((status, _)) => return request::Outcome::Error((status, ())),
            request::Outcome::Forward(status) => return request::Outcome::Forward(status),
        };
        match session.get::<String>("user") {
            Ok(Some(name)) => request::Outcome::Success(User(name)),
            _ => request::Outcome::Forward(Status::Unauthorized),
        }
    }
}

impl Sentinel for User {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        <Session<'_> as Sentinel>::abort(rocket)
    }
}

/// The same guard without a Sentinel.
struct CarelessUser;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for CarelessUser {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        match req.guard::<Session<'_>>().await {
            request::Outcome::Success(_) => request::Outcome::Success(CarelessUser),
            request::Outcome::Error((status, _)) => request::Outcome::Error((status, ())),
            request::Outcome::Forward(status) => request::Outcome::Forward(status),
        }
    }
}

#[get("/user")]
fn user(user: User) -> String {
    user.0
}

#[get("/careless")]
fn careless(_user: CarelessUser) {}

#[rocket::async_test]
async fn the_guard_without_the_fairing_fails_launch() {
    let figment = figment_with(json!({}));
    let kind = launch_fails(rocket::custom(figment.clone()).mount("/", routes![direct])).await;
    assert_eq!(kind, "sentinel");
    let kind = launch_fails(rocket::custom(figment).mount("/", routes![user])).await;
    assert_eq!(kind, "sentinel", "a delegating Sentinel");
}

#[rocket::async_test]
async fn a_wrapper_guard_without_a_sentinel_gives_500_not_a_panic() {
    let client =
        Client::untracked(rocket::custom(figment_with(json!({}))).mount("/", routes![careless]))
            .await
            .expect("nothing tells Rocket that the fairing is needed");
    let res = client.get("/careless").dispatch().await;
    assert_eq!(res.status(), Status::InternalServerError);
}

#[rocket::async_test]
async fn a_wrapper_guard_works_with_the_fairing() {
    let db = TestDb::new().await;
    let client = Client::tracked(demo_app(&db, json!({})).mount("/t", routes![user]))
        .await
        .unwrap();
    assert_eq!(
        client.get("/t/user").dispatch().await.status(),
        Status::Unauthorized
    );
    client
        .post("/api/login")
        .body(r#"{"user":"ann"}"#)
        .dispatch()
        .await;
    assert_eq!(
        client
            .get("/t/user")
            .dispatch()
            .await
            .into_string()
            .await
            .as_deref(),
        Some("ann")
    );
}

#[test]
fn environment_overrides_single_keys() {
    // Rocket reads `ROCKET_SESSIONS` with `Env::prefixed("ROCKET_").global()`;
    // the same provider under a prefix of this test's own.
    std::env::set_var(
        "TESSERA_ENV_TEST_SESSIONS",
        "{idle_timeout=5,touch_interval=1}",
    );
    let figment = Figment::from(
        Toml::string("[default.sessions]\ndatabase_url = \"postgres://u@h/d\"\nidle_timeout = 900")
            .nested(),
    )
    .merge(Env::prefixed("TESSERA_ENV_TEST_").global());
    let config = Config::from_figment(&figment).unwrap();
    assert_eq!((config.idle_timeout, config.touch_interval), (5, 1));
    assert_eq!(config.database_url.as_deref(), Some("postgres://u@h/d"));
}

#[test]
fn the_repository_configuration_turns_secure_off_for_debug_only() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Rocket.toml");
    let debug =
        Config::from_figment(&Figment::from(Toml::file(path).nested()).select("debug")).unwrap();
    let release =
        Config::from_figment(&Figment::from(Toml::file(path).nested()).select("release")).unwrap();
    assert!(!debug.secure);
    assert!(release.secure);
    assert_eq!(debug.database_url, release.database_url);
}

async fn migration_versions(db: &TestDb) -> Vec<i32> {
    let sql = format!(
        "SELECT version FROM {}_migrations ORDER BY version",
        db.table()
    );
    db.client
        .query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[rocket::async_test]
async fn instances_starting_at_once_migrate_once() {
    let db = TestDb::new().await;
    let mut launches = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let rocket = demo_app(&db, json!({}));
        launches.spawn(async move { Client::untracked(rocket).await.is_ok() });
    }
    while let Some(launched) = launches.join_next().await {
        assert!(launched.unwrap(), "every instance launches");
    }
    let versions = migration_versions(&db).await;
    assert!(!versions.is_empty());
    assert_eq!(
        versions,
        (1..=versions.len() as i32).collect::<Vec<_>>(),
        "each applied once"
    );

    // Launching again applies nothing new.
    let _again = Client::untracked(demo_app(&db, json!({}))).await.unwrap();
    assert_eq!(migration_versions(&db).await, versions);
}

#[rocket::async_test]
async fn the_migration_files_run_as_they_are() {
    let db = TestDb::new().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // As psql would, twice: the files are idempotent.
    for _ in 0..2 {
        for file in &files {
            let sql = std::fs::read_to_string(file).unwrap();
            db.client
                .batch_execute(&format!("SET search_path TO {}; {sql}", db.schema))
                .await
                .unwrap();
        }
    }
    // The fairing accepts that table as it is, without migrating.
    let client = Client::untracked(demo_app(&db, json!({ "migrate": false })))
        .await
        .unwrap();
    let res = client.post("/api/counter").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(db.count().await, 1);
}

#[rocket::async_test]
async fn a_missing_table_without_migrations_stops_launch() {
    let db = TestDb::new().await;
    let kind = launch_fails(demo_app(&db, json!({ "migrate": false }))).await;
    assert_eq!(kind, "fairing");
}

#[rocket::async_test]
async fn a_table_of_the_wrong_shape_stops_launch() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE {table} (id text PRIMARY KEY, data text)")
        .await;
    let kind = launch_fails(demo_app(&db, json!({ "migrate": false }))).await;
    assert_eq!(kind, "fairing");
}

#[rocket::async_test]
async fn a_table_named_like_a_keyword_works() {
    let db = TestDb::new().await;
    let table = format!("{}.user", db.schema);
    let client = Client::untracked(demo_app(&db, json!({ "table": table })))
        .await
        .unwrap();
    let res = client.post("/api/counter").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    let sql = format!("SELECT count(*) FROM {}.\"user\"", db.schema);
    assert_eq!(
        db.client
            .query_one(&sql, &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
}
