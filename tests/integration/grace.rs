//! Regenerate racing requests that still carry the old id, with the grace
//! window off (the old id dies at once) and on (it reads, never writes).

use std::sync::Arc;

use rocket::http::{Method, Status};
use rocket::local::asynchronous::Client;
use rocket::serde::json::{json, Value};
use rocket_tessera::SessionId;

use crate::common::{issued, request, spawn_request, untracked, TestDb};
use crate::probe::{probe, Gates};

/// A signed-in session holding `{"name": "Ann"}`: the app, its gates and
/// the session id.
async fn signed_in(db: &TestDb, grace: u64) -> (Arc<Client>, Arc<Gates>, String) {
    let overrides = json!({ "cleanup_interval": 0, "regenerate_grace": grace });
    let p = probe(db, overrides, 1);
    let gates = p.gates.clone();
    let client = Arc::new(untracked(p.rocket).await);
    let answer = request(&client, Method::Post, "/login/ann", None, "").await;
    let id = issued(&answer).unwrap();
    let answer = request(&client, Method::Put, "/key/name", Some(&id), "\"Ann\"").await;
    assert_eq!(answer.status, Status::Ok);
    (client, gates, id)
}

/// Regenerates through `old` while a slow write through it waits at gate
/// `g`; returns the slow request and the new id.
async fn regenerate_during_slow_write(
    client: &Arc<Client>,
    gates: &Gates,
    old: &str,
) -> (tokio::task::JoinHandle<crate::common::Answer>, String) {
    let slow = spawn_request(client, Method::Put, "/slow/g/cart", Some(old), "1");
    gates.reached("g").await;
    let answer = request(client, Method::Post, "/regenerate", Some(old), "").await;
    assert_eq!(answer.status, Status::Ok);
    let new = issued(&answer).expect("regenerate issues the new id");
    assert_ne!(new, old);
    (slow, new)
}

fn hash(id: &str) -> Vec<u8> {
    SessionId::parse(id).unwrap().hash().to_vec()
}

#[rocket::async_test]
async fn without_grace_the_old_id_dies_at_once() {
    let db = TestDb::new().await;
    let (client, gates, old) = signed_in(&db, 0).await;
    let (slow, new) = regenerate_during_slow_write(&client, &gates, &old).await;

    // A request arriving with the old id finds no session.
    let late = request(&client, Method::Get, "/me", Some(&old), "").await;
    assert_eq!(late.status, Status::Ok);
    assert_eq!(
        late.json(),
        json!({ "data": {}, "user": null, "read_only": false })
    );
    assert!(late.set_cookies.is_empty(), "{late:?}");

    // The request that was in flight with it cannot write.
    gates.release("g");
    slow.await.unwrap().assert_conflict();

    assert_eq!(db.count().await, 1);
    assert!(db.row_of(&old).await.is_none());
    let row = db.row_of(&new).await.unwrap();
    let data: Value = row.get("data");
    assert_eq!(data, json!({ "name": "Ann" }));
    assert_eq!(
        row.get::<_, Option<String>>("user_id").as_deref(),
        Some("ann")
    );
    assert_eq!(row.get::<_, Option<Vec<u8>>>("previous_id_hash"), None);
}

#[rocket::async_test]
async fn with_grace_the_old_id_reads_but_never_writes() {
    let db = TestDb::new().await;
    let (client, gates, old) = signed_in(&db, 30).await;
    let (slow, new) = regenerate_during_slow_write(&client, &gates, &old).await;

    let row = db.row_of(&new).await.unwrap();
    assert_eq!(
        row.get::<_, Option<Vec<u8>>>("previous_id_hash"),
        Some(hash(&old))
    );
    let left: f64 = db
        .scalar(
            "SELECT extract(epoch FROM previous_valid_until - now())::float8 \
             FROM {table} WHERE previous_id_hash IS NOT NULL",
        )
        .await;
    assert!((25.0..=30.5).contains(&left), "{left}");

    // A request arriving with the old id reads the session, and its
    // response does not reveal (or set) any id.
    let late = request(&client, Method::Get, "/me", Some(&old), "").await;
    assert_eq!(late.status, Status::Ok);
    assert_eq!(
        late.json(),
        json!({ "data": { "name": "Ann" }, "user": "ann", "read_only": true })
    );
    assert!(late.set_cookies.is_empty(), "{late:?}");
    assert!(!late.body.contains(&new));

    // Writes through it get the 409, destroy included.
    request(&client, Method::Put, "/key/x", Some(&old), "1")
        .await
        .assert_conflict();
    request(&client, Method::Post, "/logout", Some(&old), "")
        .await
        .assert_conflict();
    // The per-user calls refuse too (the route answers the error).
    let all = request(&client, Method::Post, "/me/logout-all", Some(&old), "").await;
    assert_eq!(all.status, Status::Conflict);
    assert!(all.set_cookies.is_empty(), "{all:?}");

    // So does the request that was in flight with it.
    gates.release("g");
    slow.await.unwrap().assert_conflict();

    // The new id holds the session, untouched by all of the above.
    let current = request(&client, Method::Get, "/me", Some(&new), "").await;
    assert_eq!(
        current.json(),
        json!({ "data": { "name": "Ann" }, "user": "ann", "read_only": false })
    );
    assert_eq!(db.count().await, 1);
    assert_eq!(db.user_of(&new).await.as_deref(), Some("ann"));

    // Once the window closes, the old id finds nothing.
    db.exec("UPDATE {table} SET previous_valid_until = now() - interval '1 second'")
        .await;
    let closed = request(&client, Method::Get, "/me", Some(&old), "").await;
    assert_eq!(
        closed.json(),
        json!({ "data": {}, "user": null, "read_only": false })
    );
}

#[rocket::async_test]
async fn with_grace_only_the_latest_old_id_reads() {
    let db = TestDb::new().await;
    let (client, _gates, first) = signed_in(&db, 30).await;
    let answer = request(&client, Method::Post, "/regenerate", Some(&first), "").await;
    let second = issued(&answer).unwrap();
    let answer = request(&client, Method::Post, "/regenerate", Some(&second), "").await;
    let third = issued(&answer).unwrap();

    let by_first = request(&client, Method::Get, "/me", Some(&first), "").await;
    assert_eq!(by_first.json()["data"], json!({}));
    let by_second = request(&client, Method::Get, "/me", Some(&second), "").await;
    assert_eq!(by_second.json()["read_only"], json!(true));
    assert_eq!(by_second.json()["data"], json!({ "name": "Ann" }));

    // Destroying the session through the new id ends the old one too.
    let logout = request(&client, Method::Post, "/logout", Some(&third), "").await;
    assert_eq!(logout.status, Status::Ok);
    let by_second = request(&client, Method::Get, "/me", Some(&second), "").await;
    assert_eq!(by_second.json()["data"], json!({}));
    assert_eq!(db.count().await, 0);
}

#[rocket::async_test]
async fn a_grace_read_does_not_touch_the_session() {
    let db = TestDb::new().await;
    let (client, _gates, old) = signed_in(&db, 30).await;
    let answer = request(&client, Method::Post, "/regenerate", Some(&old), "").await;
    let new = issued(&answer).unwrap();
    db.exec("UPDATE {table} SET last_seen_at = now() - interval '10 minutes'")
        .await;

    let late = request(&client, Method::Get, "/me", Some(&old), "").await;
    assert!(late.set_cookies.is_empty(), "{late:?}");
    let idle: f64 = db
        .scalar("SELECT extract(epoch FROM now() - last_seen_at)::float8 FROM {table}")
        .await;
    assert!(
        idle > 500.0,
        "a read through the old id touched the session"
    );

    // A read through the new id does touch it, and re-issues the new id.
    let current = request(&client, Method::Get, "/me", Some(&new), "").await;
    assert_eq!(issued(&current).as_deref(), Some(new.as_str()));
}
