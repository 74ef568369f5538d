//! Cookie mode's size limit: 4096 bytes of name plus value, exactly; a
//! session over it moves to the store when there is one, and otherwise
//! fails to save while the previous cookie stays valid.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rocket::http::Status;
use rocket::serde::json::json;
use rocket::tokio::time::sleep;
use rocket_tessera::SessionId;

use crate::common::{key_id_of, untracked, Browser, Env, Mode};
use crate::{app, counted_app};

const NAME: &str = "__Host-session";

fn padding(len: usize) -> String {
    format!("\"{}\"", "x".repeat(len))
}

#[rocket::async_test]
async fn the_4096_byte_boundary_is_exact() {
    let env = Env::new(Mode::Cookie).await;
    let client = untracked(app(&env, json!({}))).await;

    // Each byte of padding adds one byte of plaintext: start a little
    // below the limit and step up one byte at a time.
    let mut empty = Browser::new(&client, NAME);
    empty.put("/api/session/pad", &padding(0)).await;
    let base = NAME.len() + empty.cookie.unwrap().len();
    let start = (4096 - base) * 3 / 4 - 6;

    let mut exact = false;
    for len in start..start + 20 {
        let mut browser = Browser::new(&client, NAME);
        let reply = browser.put("/api/session/pad", &padding(len)).await;
        if reply.status == Status::Ok {
            let size = NAME.len() + browser.cookie.unwrap().len();
            assert!(size <= 4096, "{size}");
            exact |= size == 4096;
            continue;
        }
        assert_eq!(reply.status, Status::ServiceUnavailable, "{}", reply.body);
        assert!(browser.cookie.is_none(), "no cookie for a failed write");
        assert!(
            reply.body.contains("4097 bytes") && reply.body.contains("4096"),
            "one byte over: {}",
            reply.body
        );
        assert!(exact, "a session of exactly 4096 bytes is kept");
        return;
    }
    panic!("the limit was never reached");
}

#[rocket::async_test]
async fn too_big_without_a_store_fails_and_the_previous_cookie_stays() {
    let env = Env::new(Mode::Cookie).await;
    let client = untracked(app(&env, json!({}))).await;
    let mut browser = Browser::new(&client, NAME);
    browser.put("/api/session/a", "1").await;
    let previous = browser.cookie.clone().unwrap();

    let reply = browser.put("/api/session/big", &padding(5000)).await;
    assert_eq!(reply.status, Status::ServiceUnavailable);
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    assert!(reply.body.contains("4096"), "{}", reply.body);
    assert_eq!(browser.cookie.as_deref(), Some(previous.as_str()));
    assert_eq!(browser.get("/api/session").await.json(), json!({ "a": 1 }));

    // `save()` hands the same error to the handler.
    let reply = browser.post("/t/save/big", &padding(5000)).await;
    assert_eq!(reply.status, Status::PayloadTooLarge);
    assert!(
        reply.body.contains("does not fit in a cookie"),
        "{}",
        reply.body
    );
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    assert_eq!(browser.get("/api/session").await.json(), json!({ "a": 1 }));

    // A change that fits afterwards does not bring the failed one back.
    let reply = browser.put("/api/session/b", "2").await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(
        browser.get("/api/session").await.json(),
        json!({ "a": 1, "b": 2 })
    );
}

#[rocket::async_test]
async fn sessions_that_outgrow_the_cookie_move_to_the_store() {
    let env = Env::cookie_with_store().await;
    let db = env.db();
    let (rocket, counts) = counted_app(&env, json!({ "absolute_timeout": 3600 }));
    let client = untracked(rocket).await;
    let mut browser = Browser::new(&client, NAME);

    browser.put("/api/session/a", "1").await;
    assert!(
        key_id_of(browser.cookie.as_ref().unwrap()).is_some(),
        "sealed"
    );
    assert_eq!(
        counts.get(),
        [0, 0, 0, 0],
        "a sealed session needs no store"
    );
    sleep(Duration::from_millis(1100)).await;

    let big = "x".repeat(5000);
    let reply = browser.put("/api/session/big", &format!("\"{big}\"")).await;
    assert_eq!(reply.status, Status::Ok);
    let id = browser.cookie.clone().unwrap();
    assert!(
        SessionId::parse(&id).is_some(),
        "the cookie now carries an id"
    );
    assert_eq!(db.data_of(&id).await, Some(json!({ "a": 1, "big": big })));
    assert_eq!(counts.get()[1], 1, "one create");

    // The absolute expiry still counts from the session's creation.
    let sql = format!(
        "SELECT extract(epoch FROM now() - created_at)::float8, \
                extract(epoch FROM absolute_expires_at - created_at)::float8 FROM {}",
        db.table()
    );
    let row = db.client.query_one(&sql, &[]).await.unwrap();
    let (age, lifetime): (f64, f64) = (row.get(0), row.get(1));
    assert!(age >= 1.0, "created before the move: {age}");
    assert_eq!(lifetime, 3600.0);

    // It reads like any stored session, and stays in the store when it
    // shrinks.
    assert_eq!(browser.get("/api/session").await.json()["a"], json!(1));
    let reply = browser.delete("/api/session/big").await;
    assert_eq!(reply.json(), json!({ "a": 1 }));
    let id_after = browser.cookie.clone().unwrap();
    assert!(SessionId::parse(&id_after).is_some(), "no move back");
    assert_eq!(db.data_of(&id_after).await, Some(json!({ "a": 1 })));

    let reply = browser.post("/api/logout", "").await;
    assert_eq!(reply.set_cookies.len(), 1);
    assert_eq!(db.count().await, 0);
}

#[rocket::async_test]
async fn a_new_session_too_big_for_the_cookie_starts_in_the_store() {
    let env = Env::cookie_with_store().await;
    let client = untracked(app(&env, json!({}))).await;
    let mut browser = Browser::new(&client, NAME);
    let reply = browser.put("/api/session/big", &padding(5000)).await;
    assert_eq!(reply.status, Status::Ok);
    let id = browser.cookie.clone().unwrap();
    assert!(SessionId::parse(&id).is_some());
    assert_eq!(env.db().count().await, 1);
    assert_eq!(browser.get("/t/is-new").await.body, "false");
}

#[rocket::async_test]
async fn a_failed_move_to_the_store_fails_the_write() {
    let env = Env::cookie_with_store().await;
    let (rocket, counts) = counted_app(&env, json!({}));
    let client = untracked(rocket).await;
    let mut browser = Browser::new(&client, NAME);
    browser.put("/api/session/a", "1").await;
    let previous = browser.cookie.clone().unwrap();

    counts.fail_writes.store(true, Ordering::SeqCst);
    let reply = browser.put("/api/session/big", &padding(5000)).await;
    assert_eq!(reply.status, Status::ServiceUnavailable);
    assert!(reply.set_cookies.is_empty());
    assert_eq!(browser.cookie.as_deref(), Some(previous.as_str()));
    assert_eq!(browser.get("/api/session").await.json(), json!({ "a": 1 }));
    assert_eq!(env.db().count().await, 0);
}
