//! Choosing the mode at launch, the keys cookie mode needs, `not_before`,
//! and the repository's own `Rocket.toml`.

use std::time::Duration;

use rocket::error::ErrorKind;
use rocket::figment::providers::{Format, Toml};
use rocket::figment::Figment;
use rocket::local::asynchronous::Client;
use rocket::serde::json::json;
use rocket::time::format_description::well_known::Rfc3339;
use rocket::time::OffsetDateTime;
use rocket::tokio::time::sleep;
use rocket_tessera::{Config, SessionId, Sessions};

use crate::common::{
    figment_with, key_id_of, random_key, release_figment_with, untracked, Browser, Env, Mode,
    TestDb,
};
use crate::{app, demo};

const NAME: &str = "__Host-session";

async fn launch(figment: Figment) -> Result<Client, rocket::Error> {
    let rocket = rocket::custom(figment).attach(Sessions::fairing());
    Client::untracked(demo::mount(rocket)).await
}

/// Whether launching on `figment` fails because the fairing refused.
async fn refused(figment: Figment) -> bool {
    match launch(figment).await {
        Ok(_) => false,
        // Reading the kind marks Rocket's error as handled.
        Err(e) => matches!(e.kind(), ErrorKind::FailedFairings(f) if f[0].name == "Sessions"),
    }
}

/// The cookie a fresh session gets from the demo launched on `figment`.
async fn first_cookie(client: &Client, name: &str) -> String {
    let mut browser = Browser::new(client, name);
    browser.put("/api/session/a", "1").await;
    let value = browser.cookie.clone().expect("a session cookie");
    assert_eq!(browser.get("/api/session").await.json(), json!({ "a": 1 }));
    value
}

#[rocket::async_test]
async fn without_a_database_debug_uses_cookie_mode_and_an_ephemeral_key() {
    let client = launch(figment_with(json!({}))).await.expect("launches");
    let value = first_cookie(&client, NAME).await;
    assert_eq!(key_id_of(&value).as_deref(), Some("ephemeral"));

    // Another launch draws another key: the old cookie does not open.
    let other = launch(figment_with(json!({}))).await.expect("launches");
    let mut browser = Browser::new(&other, NAME);
    browser.cookie = Some(value);
    assert_eq!(browser.get("/api/session").await.json(), json!({}));
}

#[rocket::async_test]
async fn outside_debug_cookie_mode_needs_keys() {
    assert!(refused(release_figment_with(json!({}))).await);
    let keys = json!([{ "id": "k1", "key": random_key() }]);
    let client = launch(release_figment_with(json!({ "keys": keys })))
        .await
        .expect("launches with a key");
    let value = first_cookie(&client, NAME).await;
    assert_eq!(key_id_of(&value).as_deref(), Some("k1"));
}

#[rocket::async_test]
async fn a_database_url_selects_postgres_mode() {
    let db = TestDb::new().await;
    let client = launch(db.figment(json!({}))).await.expect("launches");
    let value = first_cookie(&client, NAME).await;
    assert!(SessionId::parse(&value).is_some(), "an id, not a seal");
    assert_eq!(db.count().await, 1);
}

#[rocket::async_test]
async fn a_database_that_is_down_stops_launch_in_either_mode() {
    // Nothing listens on port 1 of the loopback address.
    let down =
        json!({ "database_url": "postgres://postgres@127.0.0.1:1/none", "connect_timeout": 1 });
    assert!(refused(figment_with(down.clone())).await);
    let mut cookie = down;
    cookie["mode"] = json!("cookie");
    assert!(refused(figment_with(cookie)).await, "no fallback");
}

#[rocket::async_test]
async fn mode_postgres_needs_a_database() {
    assert!(refused(figment_with(json!({ "mode": "postgres" }))).await);
}

#[rocket::async_test]
async fn bad_keys_stop_launch() {
    for keys in [
        json!([{ "id": "k1", "key": "c2hvcnQ=" }]),
        json!([{ "id": "k1" }]),
        json!([{ "id": "k 1", "key": random_key() }]),
        json!({ "id": "k1", "key": random_key() }),
    ] {
        let sessions = json!({ "mode": "cookie", "keys": keys });
        assert!(refused(figment_with(sessions)).await, "{keys}");
    }
}

#[rocket::async_test]
async fn not_before_signs_everyone_out() {
    let env = Env::new(Mode::Cookie).await;
    let client = untracked(app(&env, json!({}))).await;
    let mut browser = Browser::new(&client, NAME);
    browser.post("/api/login", r#"{"user":"ann"}"#).await;
    let before = browser.cookie.clone().unwrap();

    sleep(Duration::from_millis(1100)).await;
    let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
    let client = untracked(app(&env, json!({ "not_before": now }))).await;
    let mut browser = Browser::new(&client, NAME);
    browser.cookie = Some(before);
    assert_eq!(browser.get("/api/session").await.json(), json!({}));

    browser.post("/api/login", r#"{"user":"bob"}"#).await;
    assert_eq!(
        browser.get("/api/session").await.json(),
        json!({ "user": "bob" })
    );
}

#[rocket::async_test]
async fn not_before_also_ends_sessions_that_moved_to_the_store() {
    let env = Env::cookie_with_store().await;
    let client = untracked(app(&env, json!({}))).await;
    let mut browser = Browser::new(&client, NAME);
    browser.post("/api/login", r#"{"user":"ann"}"#).await;
    let big = format!("\"{}\"", "z".repeat(5000));
    browser.put("/api/session/blob", &big).await;
    let moved = browser.cookie.clone().unwrap();
    assert!(
        SessionId::parse(&moved).is_some(),
        "the session is in the store"
    );

    sleep(Duration::from_millis(1100)).await;
    let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
    let client = untracked(app(&env, json!({ "not_before": now }))).await;
    let mut browser = Browser::new(&client, NAME);
    browser.cookie = Some(moved);
    assert_eq!(browser.get("/api/session").await.json(), json!({}));
}

#[rocket::async_test]
async fn a_not_before_slightly_ahead_keeps_new_sign_ins() {
    let env = Env::new(Mode::Cookie).await;
    let ahead = OffsetDateTime::now_utc() + rocket::time::Duration::seconds(30);
    let client = untracked(app(
        &env,
        json!({ "not_before": ahead.format(&Rfc3339).unwrap() }),
    ))
    .await;
    let mut browser = Browser::new(&client, NAME);
    browser.post("/api/login", r#"{"user":"dave"}"#).await;
    assert_eq!(
        browser.get("/api/session").await.json(),
        json!({ "user": "dave" })
    );
}

/// The repository's `Rocket.toml`, read as Rocket reads it, in `profile`.
fn repository_config(profile: &str) -> Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Rocket.toml");
    let figment = Figment::from(rocket::Config::debug_default())
        .merge(Toml::file(path).nested())
        .select(profile);
    Config::from_figment(&figment).expect("a valid configuration")
}

#[rocket::async_test]
async fn the_repository_rocket_toml_has_cookie_and_pg_profiles() {
    let debug = repository_config("debug");
    assert_eq!((debug.mode, debug.database_url.as_deref()), (None, None));
    assert!(!debug.secure, "plain HTTP on a developer's machine");
    assert_eq!(debug.idle_timeout, 3600, "from [default.sessions]");

    let pg = repository_config("pg");
    assert_eq!(
        pg.database_url.as_deref(),
        Some("postgres://postgres@127.0.0.1:5432/postgres")
    );
    assert_eq!(pg.table, "sessions");
    assert!(!pg.secure, "plain HTTP on a developer's machine");
    assert_eq!(pg.idle_timeout, 3600, "[default.sessions] merges in");

    let release = repository_config("release");
    assert_eq!(release.database_url, None);
    assert!(release.secure);

    // The default profile launches the demo in cookie mode with no
    // database at all.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Rocket.toml");
    let figment = Figment::from(rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    })
    .merge(Toml::file(path).nested())
    .select("debug");
    let client = launch(figment).await.expect("launches without PostgreSQL");
    let value = first_cookie(&client, "session").await;
    assert!(key_id_of(&value).is_some());
}
/// What the docs say about rings in profiles: a profile's `keys`
/// replaces the default profile's list.
#[test]
fn a_profiles_keys_replace_the_defaults() {
    let toml = r#"
        [[default.sessions.keys]]
        id = "a"
        key = "qvfQfnBPKXzlN3ZzPpGTRh3sDdPRmnH0TeBysFjb9Rk="

        [[release.sessions.keys]]
        id = "b"
        key = "Sa8HBMWqnfYGn7b2lHz5ySymB3EUQtFbp8Zp4/fXQ1I="
    "#;
    let figment = Figment::from(rocket::Config::release_default())
        .merge(Toml::string(toml).nested())
        .select("release");
    let config = Config::from_figment(&figment).unwrap();
    let ids: Vec<&str> = config.keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["b"]);
}
