//! Concurrent requests on one session: merged writes, the last writer of a
//! key wins, and a session ended meanwhile is never brought back.

use std::sync::Arc;

use rocket::http::{Method, Status};
use rocket::serde::json::{json, Value};

use crate::common::{issued, removed, request, spawn_request, untracked, TestDb};
use crate::probe::probe;

const ROUND: usize = 100;

/// A session with `{"seed": 0}` and its id.
async fn seeded(client: &rocket::local::asynchronous::Client) -> String {
    let answer = request(client, Method::Put, "/key/seed", None, "0").await;
    assert_eq!(answer.status, Status::Ok);
    issued(&answer).expect("a new session gets a cookie")
}

#[rocket::async_test]
async fn a_hundred_concurrent_requests_setting_distinct_keys_keep_all_of_them() {
    let db = TestDb::new().await;
    let p = probe(&db, json!({ "cleanup_interval": 0 }), ROUND);
    let client = Arc::new(untracked(p.rocket).await);
    let id = seeded(&client).await;

    // Every request loads the session before any of them writes: the
    // barrier in the route holds them until all 100 have their copy.
    let tasks: Vec<_> = (0..ROUND)
        .map(|i| {
            let uri = format!("/gathered/k{i}");
            spawn_request(&client, Method::Put, &uri, Some(&id), &i.to_string())
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, Status::Ok, "{answer:?}");
        assert_eq!(issued(&answer).as_deref(), Some(id.as_str()), "{answer:?}");
        // Each saw the seed and its own key only: the copies were stale.
        let seen = answer.json()["data"].clone();
        assert_eq!(seen, json!({ "seed": 0, format!("k{i}"): i }), "{answer:?}");
    }

    let stored = db.data_of(&id).await.unwrap();
    let stored = stored.as_object().unwrap();
    assert_eq!(stored.len(), ROUND + 1, "{stored:?}");
    for i in 0..ROUND {
        assert_eq!(stored[&format!("k{i}")], json!(i));
    }
    let row = db.row_of(&id).await.unwrap();
    assert_eq!(row.get::<_, i64>("version"), 1 + ROUND as i64);
    assert_eq!(db.count().await, 1);
}

#[rocket::async_test]
async fn for_one_key_the_last_writer_wins() {
    let db = TestDb::new().await;
    let p = probe(&db, json!({ "cleanup_interval": 0 }), 1);
    let gates = p.gates.clone();
    let client = Arc::new(untracked(p.rocket).await);
    let id = seeded(&client).await;

    let first = spawn_request(&client, Method::Put, "/slow/a/k", Some(&id), "\"a\"");
    gates.reached("a").await;
    let second = spawn_request(&client, Method::Put, "/slow/b/k", Some(&id), "\"b\"");
    gates.reached("b").await;

    gates.release("b");
    assert_eq!(second.await.unwrap().status, Status::Ok);
    gates.release("a");
    assert_eq!(first.await.unwrap().status, Status::Ok);
    assert_eq!(db.data_of(&id).await, Some(json!({ "seed": 0, "k": "a" })));
}

#[rocket::async_test]
async fn a_destroy_racing_a_slow_write_keeps_the_session_destroyed() {
    let db = TestDb::new().await;
    let p = probe(&db, json!({ "cleanup_interval": 0 }), 1);
    let gates = p.gates.clone();
    let client = Arc::new(untracked(p.rocket).await);
    let id = seeded(&client).await;

    // The slow request has loaded the session and changed it in memory.
    let slow = spawn_request(&client, Method::Put, "/slow/g/cart", Some(&id), "[1, 2]");
    gates.reached("g").await;

    let logout = request(&client, Method::Post, "/logout", Some(&id), "").await;
    assert_eq!(logout.status, Status::Ok);
    assert!(removed(&logout), "{logout:?}");
    assert_eq!(db.count().await, 0);

    gates.release("g");
    let answer = slow.await.unwrap();
    answer.assert_conflict();
    assert_eq!(
        db.count().await,
        0,
        "the slow request brought the session back"
    );

    // The old cookie finds nothing.
    let after = request(&client, Method::Get, "/me", Some(&id), "").await;
    assert_eq!(after.json()["data"], json!({}));
    assert!(after.set_cookies.is_empty(), "{after:?}");
}

#[rocket::async_test]
async fn save_reports_a_destroyed_session_as_gone() {
    let db = TestDb::new().await;
    let p = probe(&db, json!({ "cleanup_interval": 0 }), 1);
    let gates = p.gates.clone();
    let client = Arc::new(untracked(p.rocket).await);
    let id = seeded(&client).await;

    let slow = spawn_request(&client, Method::Put, "/slow-save/g/cart", Some(&id), "1");
    gates.reached("g").await;
    request(&client, Method::Post, "/logout", Some(&id), "").await;
    gates.release("g");

    // The handler matched `Error::Gone` and answered itself; no cookie.
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, Status::Ok, "{answer:?}");
    assert_eq!(answer.json(), json!({ "save": "gone" }));
    assert!(answer.set_cookies.is_empty(), "{answer:?}");
    assert_eq!(db.count().await, 0);
}

#[rocket::async_test]
async fn writes_after_a_gone_save_are_refused_with_the_409() {
    let db = TestDb::new().await;
    let p = probe(&db, json!({ "cleanup_interval": 0 }), 1);
    let gates = p.gates.clone();
    let counts = p.counts.clone();
    let client = Arc::new(untracked(p.rocket).await);
    let id = seeded(&client).await;

    let uri = "/slow-save/g/cart?again=true";
    let slow = spawn_request(&client, Method::Put, uri, Some(&id), "1");
    gates.reached("g").await;
    request(&client, Method::Post, "/logout", Some(&id), "").await;
    let updates_before = counts.get()[2];
    gates.release("g");

    slow.await.unwrap().assert_conflict();
    // One update tried (by save); the write after it never reached the
    // store.
    assert_eq!(counts.get()[2], updates_before + 1);
    assert_eq!(db.count().await, 0);
}

#[rocket::async_test]
async fn a_session_that_expires_during_a_request_is_not_brought_back() {
    let db = TestDb::new().await;
    let p = probe(&db, json!({ "cleanup_interval": 0 }), 1);
    let gates = p.gates.clone();
    let client = Arc::new(untracked(p.rocket).await);
    let id = seeded(&client).await;

    let slow = spawn_request(&client, Method::Put, "/slow/g/cart", Some(&id), "1");
    gates.reached("g").await;
    db.exec("UPDATE {table} SET idle_expires_at = now() - interval '1 second'")
        .await;
    gates.release("g");

    slow.await.unwrap().assert_conflict();
    let data: Value = db.data_of(&id).await.unwrap();
    assert_eq!(data, json!({ "seed": 0 }), "the expired row was written");
}
