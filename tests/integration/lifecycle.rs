//! One request's lifecycle: lazy load, no cookie for untouched sessions,
//! touch, expiry, regenerate, destroy, save, and nothing kept on 5xx.

use std::sync::Arc;

use rocket::http::{Header, Status};
use rocket::local::asynchronous::Client;
use rocket::serde::json::{json, Value};
use rocket::{get, post, routes};
use rocket_tessera::Session;

use crate::common::{cookie_value, max_age, set_cookies, untracked, Counts, TestDb};
use crate::counted_demo_app;

const NAME: &str = "__Host-session";

fn with_cookie(id: &str) -> Header<'static> {
    Header::new("Cookie", format!("{NAME}={id}"))
}

/// Signs in on a fresh session and returns its cookie value.
async fn sign_in(client: &Client) -> String {
    let res = client
        .post("/api/login")
        .body(r#"{"user":"ann"}"#)
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    cookie_value(&res, NAME).expect("sign-in sets the cookie")
}

async fn get_json(client: &Client, id: &str) -> (Value, Vec<String>) {
    let res = client
        .get("/api/session")
        .header(with_cookie(id))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let cookies = set_cookies(&res);
    (res.into_json().await.unwrap(), cookies)
}

#[get("/twice")]
fn twice(a: Session<'_>, b: Session<'_>) -> String {
    a.insert("seen", true).unwrap();
    format!("{}", b.get::<bool>("seen").unwrap().unwrap())
}

#[post("/fail")]
fn fail(session: Session<'_>) -> Status {
    session.insert("lost", 1).unwrap();
    Status::InternalServerError
}

#[post("/fail-catcher")]
fn fail_catcher(session: Session<'_>) -> Result<(), Status> {
    session.insert("lost", 1).unwrap();
    Err(Status::ServiceUnavailable)
}

#[post("/bad-request")]
fn bad_request(session: Session<'_>) -> Status {
    session.insert("kept", 1).unwrap();
    Status::BadRequest
}

#[post("/save")]
async fn save(session: Session<'_>) -> String {
    session.insert("saved", 1).unwrap();
    match session.save().await {
        Ok(()) => "saved".into(),
        Err(e) => format!("not saved: {e}"),
    }
}

#[get("/debug")]
fn debug(session: Session<'_>) -> String {
    format!("{session:?}")
}

async fn app(db: &TestDb, overrides: Value) -> (Client, Arc<Counts>) {
    let (rocket, counts) = counted_demo_app(db, overrides);
    let rocket = rocket.mount(
        "/t",
        routes![twice, fail, fail_catcher, bad_request, save, debug],
    );
    (untracked(rocket).await, counts)
}

#[rocket::async_test]
async fn a_route_without_the_guard_runs_no_query() {
    let db = TestDb::new().await;
    let (client, counts) = app(&db, json!({})).await;
    let id = sign_in(&client).await;
    let before = counts.get();
    let res = client.get("/").header(with_cookie(&id)).dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert!(set_cookies(&res).is_empty());
    assert!(res.headers().get_one("Vary").is_none());
    assert_eq!(counts.get(), before);
}

#[rocket::async_test]
async fn several_guards_load_once() {
    let db = TestDb::new().await;
    let (client, counts) = app(&db, json!({})).await;
    let id = sign_in(&client).await;
    let [loads, ..] = counts.get();
    let res = client
        .get("/t/twice")
        .header(with_cookie(&id))
        .dispatch()
        .await;
    assert_eq!(
        res.into_string().await.as_deref(),
        Some("true"),
        "both guards share one session"
    );
    assert_eq!(counts.get()[0], loads + 1);
}

#[rocket::async_test]
async fn a_new_session_stores_nothing_until_written() {
    let db = TestDb::new().await;
    let (client, counts) = app(&db, json!({})).await;
    let res = client.get("/api/session").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(res.into_json::<Value>().await, Some(json!({})));
    assert_eq!(counts.get(), [0, 0, 0, 0], "no cookie, no query");
    assert_eq!(db.count().await, 0);

    // Inserting then removing leaves nothing to store either.
    let res = client.put("/api/session/a").body("1").dispatch().await;
    let id = cookie_value(&res, NAME).expect("a write sets the cookie");
    assert_eq!(
        db.data_of(&id).await,
        Some(json!({ "a": 1 })),
        "the row is keyed by the id's hash"
    );
    assert_eq!(db.count().await, 1);
}

#[rocket::async_test]
async fn an_unmodified_read_after_a_write_sends_no_cookie() {
    let db = TestDb::new().await;
    let (client, counts) = app(&db, json!({})).await;
    let id = sign_in(&client).await;
    let before = counts.get();
    let (data, cookies) = get_json(&client, &id).await;
    assert_eq!(data, json!({ "user": "ann" }));
    assert!(cookies.is_empty(), "{cookies:?}");
    let after = counts.get();
    assert_eq!(after[0], before[0] + 1);
    assert_eq!(after[1..], before[1..], "a read writes nothing");
}

#[rocket::async_test]
async fn a_touch_moves_the_idle_expiry_and_reissues_the_cookie() {
    let db = TestDb::new().await;
    let (client, counts) = app(&db, json!({ "idle_timeout": 600, "touch_interval": 60 })).await;
    let id = sign_in(&client).await;
    // Two minutes pass without a write; the session has 10 s left.
    db.exec(
        "UPDATE {table} SET last_seen_at = now() - interval '2 minutes', \
         idle_expires_at = now() + interval '10 seconds'",
    )
    .await;
    let before = counts.get();
    let (data, cookies) = get_json(&client, &id).await;
    assert_eq!(data, json!({ "user": "ann" }));
    assert_eq!(cookies.len(), 1, "the touch re-issues the cookie");
    assert!(
        cookies[0].starts_with(&format!("{NAME}={id};")),
        "same id: {}",
        cookies[0]
    );
    let max_age = max_age(&cookies[0]);
    assert!((598..=600).contains(&max_age), "max-age {max_age}");
    assert_eq!(
        counts.get()[1..],
        before[1..],
        "the touch happens inside the load"
    );

    let row = db
        .client
        .query_one(
            &format!(
                "SELECT extract(epoch FROM idle_expires_at - now())::int FROM {}",
                db.table()
            ),
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i32>(0) > 590, "the row's idle expiry moved");

    // Right after the touch, a read is quiet again.
    let (_, cookies) = get_json(&client, &id).await;
    assert!(cookies.is_empty(), "{cookies:?}");
}

#[rocket::async_test]
async fn the_absolute_expiry_caps_a_touch() {
    let db = TestDb::new().await;
    let (client, _) = app(&db, json!({ "idle_timeout": 600, "touch_interval": 60 })).await;
    let id = sign_in(&client).await;
    db.exec(
        "UPDATE {table} SET last_seen_at = now() - interval '2 minutes', \
         absolute_expires_at = now() + interval '30 seconds'",
    )
    .await;
    let (_, cookies) = get_json(&client, &id).await;
    let max_age = max_age(&cookies[0]);
    assert!((28..=30).contains(&max_age), "max-age {max_age}");
}

#[rocket::async_test]
async fn an_expired_session_gives_a_fresh_one() {
    let db = TestDb::new().await;
    let (client, _) = app(&db, json!({})).await;
    let id = sign_in(&client).await;
    db.exec("UPDATE {table} SET idle_expires_at = now() - interval '1 second'")
        .await;
    let (data, cookies) = get_json(&client, &id).await;
    assert_eq!(data, json!({}));
    assert!(cookies.is_empty());

    let res = client
        .put("/api/session/a")
        .header(with_cookie(&id))
        .body("1")
        .dispatch()
        .await;
    let new_id = cookie_value(&res, NAME).unwrap();
    assert_ne!(new_id, id, "an expired id is never reused");
    assert_eq!(db.data_of(&new_id).await, Some(json!({ "a": 1 })));
}

#[rocket::async_test]
async fn an_absolutely_expired_session_is_gone_even_if_active() {
    let db = TestDb::new().await;
    let (client, _) = app(&db, json!({})).await;
    let id = sign_in(&client).await;
    db.exec("UPDATE {table} SET idle_expires_at = now() - interval '1 second', absolute_expires_at = now() - interval '1 second'").await;
    assert_eq!(get_json(&client, &id).await.0, json!({}));
}

#[rocket::async_test]
async fn regenerate_moves_the_data_to_a_new_id_in_one_statement() {
    let db = TestDb::new().await;
    let (client, counts) = app(&db, json!({})).await;
    let id = sign_in(&client).await;
    client
        .put("/api/session/cart")
        .header(with_cookie(&id))
        .body("[1,2]")
        .dispatch()
        .await;
    let before = counts.get();

    let res = client
        .post("/api/login")
        .header(with_cookie(&id))
        .body(r#"{"user":"ann"}"#)
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let new_id = cookie_value(&res, NAME).expect("the new id is sent");
    assert_ne!(new_id, id);
    let after = counts.get();
    assert_eq!(
        [
            after[1] - before[1],
            after[2] - before[2],
            after[3] - before[3]
        ],
        [0, 1, 0],
        "one update, no delete and insert"
    );

    assert_eq!(db.count().await, 1);
    assert_eq!(db.data_of(&id).await, None, "the old id is dead at once");
    assert_eq!(get_json(&client, &id).await.0, json!({}));
    assert_eq!(
        get_json(&client, &new_id).await.0,
        json!({ "user": "ann", "cart": [1, 2] })
    );
}

#[rocket::async_test]
async fn destroy_deletes_the_row() {
    let db = TestDb::new().await;
    let (client, counts) = app(&db, json!({})).await;
    let id = sign_in(&client).await;
    let res = client
        .post("/api/logout")
        .header(with_cookie(&id))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert!(set_cookies(&res)[0].starts_with(&format!("{NAME}=;")));
    assert_eq!(counts.get()[3], 1);
    assert_eq!(db.count().await, 0);
    assert_eq!(get_json(&client, &id).await.0, json!({}));
}

#[rocket::async_test]
async fn logout_without_a_cookie_clears_nothing() {
    let db = TestDb::new().await;
    let (client, counts) = app(&db, json!({})).await;
    let res = client.post("/api/logout").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(counts.get(), [0, 0, 0, 0]);

    // A stale cookie is cleared, without a delete.
    let stale = rocket_tessera::SessionId::generate().encode();
    let res = client
        .post("/api/logout")
        .header(with_cookie(&stale))
        .dispatch()
        .await;
    assert!(set_cookies(&res)[0].contains("Max-Age=0"));
    assert_eq!(counts.get()[3], 0);
}

#[rocket::async_test]
async fn nothing_is_kept_on_a_server_error() {
    let db = TestDb::new().await;
    let (client, counts) = app(&db, json!({})).await;
    for path in ["/t/fail", "/t/fail-catcher"] {
        let res = client.post(path).dispatch().await;
        assert!(res.status().code >= 500);
        assert!(set_cookies(&res).is_empty(), "{path}");
    }
    let id = sign_in(&client).await;
    for path in ["/t/fail", "/t/fail-catcher"] {
        let res = client.post(path).header(with_cookie(&id)).dispatch().await;
        assert!(set_cookies(&res).is_empty(), "{path}");
    }
    assert_eq!(db.count().await, 1);
    assert_eq!(db.data_of(&id).await, Some(json!({ "user": "ann" })));
    assert_eq!(counts.get()[1..], [1, 0, 0]);

    // A 4xx still keeps the changes.
    let res = client
        .post("/t/bad-request")
        .header(with_cookie(&id))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::BadRequest);
    assert_eq!(
        db.data_of(&id).await,
        Some(json!({ "user": "ann", "kept": 1 }))
    );
}

#[rocket::async_test]
async fn save_writes_now_and_reports_failure_to_the_handler() {
    let db = TestDb::new().await;
    let (client, counts) = app(&db, json!({})).await;
    let res = client.post("/t/save").dispatch().await;
    let id = cookie_value(&res, NAME).expect("the cookie goes out with the response");
    assert_eq!(res.into_string().await.as_deref(), Some("saved"));
    assert_eq!(
        counts.get()[1..],
        [1, 0, 0],
        "written once, not again at the end"
    );
    assert_eq!(db.data_of(&id).await, Some(json!({ "saved": 1 })));

    counts
        .fail_writes
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let res = client.post("/t/save").dispatch().await;
    assert_eq!(res.status(), Status::Ok, "the handler chose its own answer");
    assert!(set_cookies(&res).is_empty());
    let body = res.into_string().await.unwrap();
    assert!(
        body.starts_with("not saved: session store failed"),
        "{body}"
    );
    assert_eq!(db.count().await, 1);
}

#[rocket::async_test]
async fn debug_output_shows_no_id_and_no_values() {
    let db = TestDb::new().await;
    let (client, _) = app(&db, json!({})).await;
    let id = sign_in(&client).await;
    let res = client
        .get("/t/debug")
        .header(with_cookie(&id))
        .dispatch()
        .await;
    let body = res.into_string().await.unwrap();
    assert!(body.contains("user"), "{body}");
    assert!(!body.contains(&id) && !body.contains("ann"), "{body}");
}
