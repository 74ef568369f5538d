//! Sessions of one user: the user id column, listing, ending one, all, and
//! all but the current one, from a route and through `SessionAdmin`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rocket::http::{Method, Status};
use rocket::local::asynchronous::Client;
use rocket::serde::json::{json, Value};
use rocket_tessera::{
    ChangeSet, Config, Error, Expiry, Loaded, PostgresStore, SessionAdmin, SessionHandle,
    SessionId, SessionStore, Sessions,
};

use crate::common::{issued, removed, request, spawn_request, untracked, TestDb};
use crate::probe::{probe, Gates};

async fn app(db: &TestDb) -> (Arc<Client>, Arc<Gates>) {
    let p = probe(db, json!({ "cleanup_interval": 0 }), 1);
    let gates = p.gates.clone();
    (Arc::new(untracked(p.rocket).await), gates)
}

/// Signs `user` in on a new device; returns the session id.
async fn sign_in(client: &Client, user: &str) -> String {
    let answer = request(client, Method::Post, &format!("/login/{user}"), None, "").await;
    assert_eq!(answer.status, Status::Ok, "{answer:?}");
    issued(&answer).expect("signing in stores the session")
}

fn handle(id: &str) -> String {
    SessionHandle::of(&SessionId::parse(id).unwrap()).to_string()
}

async fn rows_of(db: &TestDb, user: &str) -> i64 {
    db.scalar(&format!(
        "SELECT count(*) FROM {{table}} WHERE user_id = '{user}'"
    ))
    .await
}

async fn revoked_seconds_ago(db: &TestDb, user: &str) -> Option<f64> {
    let sql = format!(
        "SELECT extract(epoch FROM now() - valid_after)::float8 \
         FROM {}.sessions_revocations WHERE user_id = $1",
        db.schema
    );
    let row = db.client.query_opt(&sql, &[&user]).await.unwrap();
    row.map(|r| r.get(0))
}

#[rocket::async_test]
async fn the_user_is_a_column_not_a_key_and_survives_writes_and_regenerate() {
    let db = TestDb::new().await;
    let (client, _) = app(&db).await;

    // A user alone is enough to store a session.
    let id = sign_in(&client, "ann").await;
    assert_eq!(db.user_of(&id).await.as_deref(), Some("ann"));
    assert_eq!(db.data_of(&id).await, Some(json!({})));

    // A write that does not touch the user keeps it.
    let answer = request(&client, Method::Put, "/key/theme", Some(&id), "\"dark\"").await;
    assert_eq!(
        answer.json(),
        json!({ "data": { "theme": "dark" }, "user": "ann", "read_only": false })
    );
    assert_eq!(db.user_of(&id).await.as_deref(), Some("ann"));

    // So does a new id.
    let answer = request(&client, Method::Post, "/regenerate", Some(&id), "").await;
    let new = issued(&answer).unwrap();
    assert_eq!(db.user_of(&new).await.as_deref(), Some("ann"));
    assert_eq!(db.data_of(&new).await, Some(json!({ "theme": "dark" })));

    // Clearing it empties the column and keeps the data.
    let answer = request(&client, Method::Delete, "/me/user", Some(&new), "").await;
    assert_eq!(answer.json()["user"], Value::Null);
    assert_eq!(db.user_of(&new).await, None);
    assert_eq!(db.data_of(&new).await, Some(json!({ "theme": "dark" })));
}

#[rocket::async_test]
async fn an_invalid_user_id_is_refused_and_nothing_is_stored() {
    let db = TestDb::new().await;
    let (client, _) = app(&db).await;
    let long = "x".repeat(513);
    for user in ["a%00b", long.as_str()] {
        let answer = request(&client, Method::Post, &format!("/login/{user}"), None, "").await;
        assert_eq!(answer.status, Status::UnprocessableEntity, "{answer:?}");
        assert!(answer.body.contains("user id must be"), "{answer:?}");
        assert!(answer.set_cookies.is_empty(), "{answer:?}");
    }
    assert_eq!(db.count().await, 0);
}

#[rocket::async_test]
async fn a_user_lists_their_live_sessions_with_the_current_one_marked() {
    let db = TestDb::new().await;
    let (client, _) = app(&db).await;
    let ann: Vec<String> = [
        sign_in(&client, "ann").await,
        sign_in(&client, "ann").await,
        sign_in(&client, "ann").await,
    ]
    .into();
    let bob = sign_in(&client, "bob").await;
    // An expired session of ann's is not listed.
    let stale = sign_in(&client, "ann").await;
    db.exec(&format!(
        "UPDATE {{table}} SET idle_expires_at = now() - interval '1 second' \
         WHERE id_hash = '\\x{}'",
        crate::common::hex(&SessionId::parse(&stale).unwrap().hash())
    ))
    .await;

    let answer = request(&client, Method::Get, "/me/sessions", Some(&ann[1]), "").await;
    assert_eq!(answer.status, Status::Ok, "{answer:?}");
    assert!(answer.set_cookies.is_empty(), "{answer:?}");
    let listed = answer.json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");

    let mut handles: Vec<&str> = listed
        .iter()
        .map(|s| s["handle"].as_str().unwrap())
        .collect();
    handles.sort();
    let mut expected: Vec<String> = ann.iter().map(|id| handle(id)).collect();
    expected.sort();
    assert_eq!(handles, expected);
    assert!(!handles.contains(&handle(&bob).as_str()));

    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for session in listed {
        let current = session["handle"] == json!(handle(&ann[1]));
        assert_eq!(session["current"], json!(current), "{session}");
        let created = session["created"].as_i64().unwrap();
        let last_seen = session["last_seen"].as_i64().unwrap();
        let expires = session["expires"].as_i64().unwrap();
        assert!((now - 60..=now + 60).contains(&created), "{session}");
        assert!(last_seen >= created, "{session}");
        assert!((now + 1700..=now + 1900).contains(&expires), "{session}");
    }

    // A handle is no cookie.
    let answer = request(&client, Method::Get, "/me", Some(&handle(&ann[0])), "").await;
    assert_eq!(answer.json()["user"], Value::Null);

    // A visitor with no user gets the route's 401.
    let answer = request(&client, Method::Get, "/me/sessions", None, "").await;
    assert_eq!(answer.status, Status::Unauthorized);
}

#[rocket::async_test]
async fn a_user_ends_one_session_by_its_handle() {
    let db = TestDb::new().await;
    let (client, _) = app(&db).await;
    let (one, two) = (sign_in(&client, "ann").await, sign_in(&client, "ann").await);
    let bob = sign_in(&client, "bob").await;

    let uri = format!("/me/sessions/{}", handle(&two));
    let answer = request(&client, Method::Delete, &uri, Some(&one), "").await;
    assert_eq!(answer.status, Status::Ok);
    assert_eq!(answer.json(), json!({ "ended": true }));
    assert!(answer.set_cookies.is_empty(), "{answer:?}");
    assert!(db.row_of(&two).await.is_none());
    assert!(db.row_of(&one).await.is_some());

    // Again: nothing left to end. Someone else's session: not ended.
    let answer = request(&client, Method::Delete, &uri, Some(&one), "").await;
    assert_eq!(answer.json(), json!({ "ended": false }));
    let uri = format!("/me/sessions/{}", handle(&bob));
    let answer = request(&client, Method::Delete, &uri, Some(&one), "").await;
    assert_eq!(answer.json(), json!({ "ended": false }));
    assert!(db.row_of(&bob).await.is_some());

    // Not a handle: the parameter does not parse, Rocket answers 422.
    let answer = request(&client, Method::Delete, "/me/sessions/nope", Some(&one), "").await;
    assert_eq!(answer.status, Status::UnprocessableEntity);

    // Its own handle ends the current session like `destroy()`.
    let uri = format!("/me/sessions/{}", handle(&one));
    let answer = request(&client, Method::Delete, &uri, Some(&one), "").await;
    assert_eq!(answer.json(), json!({ "ended": true }));
    assert!(removed(&answer), "{answer:?}");
    assert!(db.row_of(&one).await.is_none());
    assert_eq!(db.count().await, 1);
}

#[rocket::async_test]
async fn a_user_ends_every_other_session_and_keeps_this_one() {
    let db = TestDb::new().await;
    let (client, _) = app(&db).await;
    let ann = [
        sign_in(&client, "ann").await,
        sign_in(&client, "ann").await,
        sign_in(&client, "ann").await,
    ];
    let bob = sign_in(&client, "bob").await;

    let answer = request(
        &client,
        Method::Post,
        "/me/logout-others",
        Some(&ann[0]),
        "",
    )
    .await;
    assert_eq!(answer.status, Status::Ok);
    assert_eq!(answer.json(), json!({ "ended": 2 }));
    assert!(answer.set_cookies.is_empty(), "{answer:?}");

    assert_eq!(rows_of(&db, "ann").await, 1);
    assert!(db.row_of(&ann[0]).await.is_some());
    assert!(db.row_of(&bob).await.is_some());
    let ago = revoked_seconds_ago(&db, "ann")
        .await
        .expect("the instant is recorded");
    assert!((0.0..60.0).contains(&ago), "{ago}");
    assert_eq!(revoked_seconds_ago(&db, "bob").await, None);

    // The ended sessions read as new; the kept one still works.
    let answer = request(&client, Method::Get, "/me", Some(&ann[1]), "").await;
    assert_eq!(answer.json()["user"], Value::Null);
    let answer = request(&client, Method::Get, "/me", Some(&ann[0]), "").await;
    assert_eq!(answer.json()["user"], json!("ann"));
}

#[rocket::async_test]
async fn a_user_logs_out_everywhere() {
    let db = TestDb::new().await;
    let (client, gates) = app(&db).await;
    let ann = [sign_in(&client, "ann").await, sign_in(&client, "ann").await];
    let bob = sign_in(&client, "bob").await;

    // A request of the other device is in flight meanwhile.
    let slow = spawn_request(&client, Method::Put, "/slow/g/k", Some(&ann[1]), "1");
    gates.reached("g").await;

    let answer = request(&client, Method::Post, "/me/logout-all", Some(&ann[0]), "").await;
    assert_eq!(answer.status, Status::Ok);
    assert_eq!(answer.json(), json!({ "ended": 2 }));
    assert!(removed(&answer), "{answer:?}");
    assert_eq!(rows_of(&db, "ann").await, 0);
    assert!(db.row_of(&bob).await.is_some());
    assert!(revoked_seconds_ago(&db, "ann").await.is_some());

    gates.release("g");
    slow.await.unwrap().assert_conflict();
    assert_eq!(rows_of(&db, "ann").await, 0);
}

#[rocket::async_test]
async fn the_admin_handle_lists_and_ends_any_users_sessions() {
    let db = TestDb::new().await;
    let (client, _) = app(&db).await;
    let ann = [sign_in(&client, "ann").await, sign_in(&client, "ann").await];
    let bob = sign_in(&client, "bob").await;
    let admin = client.rocket().state::<SessionAdmin>().unwrap().clone();

    let listed = admin.list("ann").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|s| !s.is_current()));
    assert!(listed[0].last_seen() >= listed[1].last_seen());
    assert!(listed[0].expires() > SystemTime::now() + Duration::from_secs(1700));
    assert!(admin.list("nobody").await.unwrap().is_empty());
    assert!(matches!(admin.list("").await, Err(Error::InvalidUser)));

    let one = SessionHandle::of(&SessionId::parse(&ann[0]).unwrap());
    assert!(!admin.destroy("bob", &one).await.unwrap());
    assert!(admin.destroy("ann", &one).await.unwrap());
    assert!(db.row_of(&ann[0]).await.is_none());

    assert_eq!(admin.destroy_all("ann").await.unwrap(), 1);
    assert_eq!(admin.destroy_all("ann").await.unwrap(), 0);
    assert_eq!(rows_of(&db, "ann").await, 0);
    assert!(db.row_of(&bob).await.is_some());
    assert!(revoked_seconds_ago(&db, "ann").await.is_some());
}

#[rocket::async_test]
async fn the_demo_lists_and_signs_out_devices() {
    let db = TestDb::new().await;
    let client = untracked(crate::demo_app(&db, json!({ "cleanup_interval": 0 }))).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let answer = request(
            &client,
            Method::Post,
            "/api/login",
            None,
            r#"{"user":"ann"}"#,
        )
        .await;
        assert_eq!(answer.status, Status::Ok, "{answer:?}");
        ids.push(issued(&answer).unwrap());
    }
    assert_eq!(db.user_of(&ids[0]).await.as_deref(), Some("ann"));

    let answer = request(&client, Method::Get, "/api/sessions", Some(&ids[0]), "").await;
    let listed = answer.json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    let uri = format!("/api/sessions/{}", handle(&ids[1]));
    let answer = request(&client, Method::Delete, &uri, Some(&ids[0]), "").await;
    assert_eq!(answer.json(), json!({ "ended": true }));

    let answer = request(
        &client,
        Method::Post,
        "/api/logout-everywhere",
        Some(&ids[0]),
        "",
    )
    .await;
    assert_eq!(answer.json(), json!({ "ended": 1 }));
    assert!(removed(&answer), "{answer:?}");
    assert_eq!(db.count().await, 0);

    let answer = request(&client, Method::Get, "/api/sessions", None, "").await;
    assert_eq!(answer.status, Status::Unauthorized);
    assert_eq!(
        answer.json(),
        json!({ "error": "the session belongs to no user" })
    );
}

#[rocket::async_test]
async fn a_stored_session_behind_its_users_generation_is_void() {
    let db = TestDb::new().await;
    let (client, _) = app(&db).await;
    let ann = sign_in(&client, "ann").await;
    let bob = sign_in(&client, "bob").await;
    // As a "log out everywhere" whose DELETE missed a row stored by a
    // request in flight would leave things.
    db.exec("INSERT INTO {schema}.sessions_revocations (user_id, valid_after, generation) VALUES ('ann', now(), 1)")
        .await;
    let answer = request(&client, Method::Get, "/me", Some(&ann), "").await;
    assert_eq!(answer.json()["user"], Value::Null);
    let answer = request(&client, Method::Get, "/me", Some(&bob), "").await;
    assert_eq!(answer.json()["user"], json!("bob"));

    // A session stored from now on is made under the new generation.
    let ann = sign_in(&client, "ann").await;
    let answer = request(&client, Method::Get, "/me", Some(&ann), "").await;
    assert_eq!(answer.json()["user"], json!("ann"));
}

#[rocket::async_test]
async fn the_store_counts_each_log_out_everywhere() {
    let db = TestDb::new().await;
    let config = Config::from_figment(&db.figment(json!({}))).unwrap();
    let store = PostgresStore::new(&config).unwrap();
    store.prepare(&config).await.unwrap();
    assert_eq!(store.user_generation("ann").await.unwrap(), 0);

    store.destroy_user("ann", None, None).await.unwrap();
    assert_eq!(store.user_generation("ann").await.unwrap(), 1);
    let age: f64 = db
        .scalar("SELECT extract(epoch FROM now() - valid_after)::float8 FROM {schema}.sessions_revocations")
        .await;
    assert!(age < 60.0, "the instant is recorded too, for the sweep");

    store.destroy_user("ann", None, None).await.unwrap();
    assert_eq!(store.user_generation("ann").await.unwrap(), 2);
    assert_eq!(store.user_generation("bob").await.unwrap(), 0);
}

/// A store with only the four required methods, as a custom store written
/// before the per-user methods existed would be.
struct Minimal;

#[rocket::async_trait]
impl SessionStore for Minimal {
    async fn load(&self, candidates: &[SessionId]) -> Result<Option<Loaded>, Error> {
        let expiry = Expiry {
            max_age: 60,
            unix: 0,
        };
        let loaded = Loaded::new(0, Default::default(), expiry).with_user(Some("ann".into()));
        Ok((!candidates.is_empty()).then_some(loaded))
    }

    async fn create(&self, _: &SessionId, _: &ChangeSet) -> Result<Expiry, Error> {
        Ok(Expiry {
            max_age: 60,
            unix: 0,
        })
    }

    async fn update(&self, _: &SessionId, _: &ChangeSet) -> Result<Expiry, Error> {
        Err(Error::Gone)
    }

    async fn destroy(&self, _: &SessionId) -> Result<(), Error> {
        Ok(())
    }
}

#[rocket::async_test]
async fn a_store_without_the_optional_methods_reports_them_unsupported() {
    let figment = crate::common::figment_with(json!({ "cleanup_interval": 1 }));
    let rocket = rocket::custom(figment).attach(Sessions::with_store(Minimal));
    let p = crate::probe::mount(rocket, 1);
    let client = untracked(p.rocket).await;

    let admin = client.rocket().state::<SessionAdmin>().unwrap();
    assert!(matches!(admin.list("ann").await, Err(Error::Unsupported)));
    assert!(matches!(
        admin.destroy_all("ann").await,
        Err(Error::Unsupported)
    ));
    assert!(matches!(admin.sweep().await, Err(Error::Unsupported)));

    // The session API hands the error to the route (which answers 501).
    // The cleanup task, started at liftoff, met the same error and ended;
    // shutdown still completes.
    let answer = request(&client, Method::Post, "/login/ann", None, "").await;
    let id = issued(&answer).unwrap();
    let answer = request(&client, Method::Get, "/me", Some(&id), "").await;
    assert_eq!(answer.json()["user"], json!("ann"));
    let answer = request(&client, Method::Get, "/me/sessions", Some(&id), "").await;
    assert_eq!(answer.status, Status::NotImplemented);
    client.terminate().await;
}
