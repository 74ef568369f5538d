//! The demo's JSON API, as the README and outside checks rely on it.

use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::serde::json::{json, Value};

use crate::common::{cookie_value, set_cookies, untracked, TestDb};
use crate::demo_app;

const NAME: &str = "__Host-session";

async fn json_of(res: LocalResponse<'_>) -> Value {
    assert_eq!(res.content_type(), Some(ContentType::JSON));
    res.into_json().await.expect("a JSON body")
}

fn cookie(id: &str) -> Header<'static> {
    Header::new("Cookie", format!("{NAME}={id}"))
}

async fn client(db: &TestDb) -> Client {
    untracked(demo_app(db, json!({}))).await
}

#[rocket::async_test]
async fn keys_are_put_read_and_deleted() {
    let db = TestDb::new().await;
    let client = client(&db).await;
    let res = client.get("/api/session").dispatch().await;
    assert!(set_cookies(&res).is_empty());
    assert_eq!(json_of(res).await, json!({}));

    // No Content-Type needed.
    let res = client
        .put("/api/session/theme")
        .body(r#"{"dark":true}"#)
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let id = cookie_value(&res, NAME).unwrap();
    assert_eq!(json_of(res).await, json!({ "theme": { "dark": true } }));

    let res = client
        .put("/api/session/n")
        .header(cookie(&id))
        .body("null")
        .dispatch()
        .await;
    assert_eq!(
        json_of(res).await,
        json!({ "theme": { "dark": true }, "n": null })
    );

    let res = client
        .get("/api/session")
        .header(cookie(&id))
        .dispatch()
        .await;
    assert!(set_cookies(&res).is_empty(), "reads never set the cookie");
    assert_eq!(
        json_of(res).await,
        json!({ "theme": { "dark": true }, "n": null })
    );

    let res = client
        .delete("/api/session/theme")
        .header(cookie(&id))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert!(
        !set_cookies(&res).is_empty(),
        "the write re-issues the cookie"
    );
    assert_eq!(json_of(res).await, json!({ "n": null }));
    assert_eq!(db.data_of(&id).await, Some(json!({ "n": null })));

    let res = client
        .delete("/api/session/absent")
        .header(cookie(&id))
        .dispatch()
        .await;
    assert!(
        set_cookies(&res).is_empty(),
        "nothing changed, nothing written"
    );
    assert_eq!(json_of(res).await, json!({ "n": null }));
}

#[rocket::async_test]
async fn the_counter_counts_and_refuses_non_integers() {
    let db = TestDb::new().await;
    let client = client(&db).await;
    let res = client.post("/api/counter").dispatch().await;
    let id = cookie_value(&res, NAME).unwrap();
    assert_eq!(json_of(res).await, json!({ "counter": 1 }));
    let res = client
        .post("/api/counter")
        .header(cookie(&id))
        .dispatch()
        .await;
    assert_eq!(json_of(res).await, json!({ "counter": 2 }));

    client
        .put("/api/session/counter")
        .header(cookie(&id))
        .body(r#""two""#)
        .dispatch()
        .await;
    let res = client
        .post("/api/counter")
        .header(cookie(&id))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Conflict);
    assert!(json_of(res).await["error"].is_string());
    assert_eq!(db.data_of(&id).await, Some(json!({ "counter": "two" })));
}

#[rocket::async_test]
async fn login_creates_or_regenerates_and_logout_clears() {
    let db = TestDb::new().await;
    let client = client(&db).await;
    let res = client
        .post("/api/login")
        .body(r#"{"user":"ann"}"#)
        .dispatch()
        .await;
    let first = cookie_value(&res, NAME).unwrap();
    assert_eq!(json_of(res).await, json!({ "user": "ann" }));

    client
        .post("/api/counter")
        .header(cookie(&first))
        .dispatch()
        .await;
    // Signing in again as ann keeps her data under a new id.
    let res = client
        .post("/api/login")
        .header(cookie(&first))
        .body(r#"{"user":"ann"}"#)
        .dispatch()
        .await;
    let again = cookie_value(&res, NAME).unwrap();
    assert_ne!(first, again);
    assert_eq!(json_of(res).await, json!({ "user": "ann", "counter": 1 }));

    // Another user on the same browser starts from nothing.
    let res = client
        .post("/api/login")
        .header(cookie(&again))
        .body(r#"{"user":"bob"}"#)
        .dispatch()
        .await;
    let second = cookie_value(&res, NAME).unwrap();
    assert_ne!(again, second);
    assert_eq!(json_of(res).await, json!({ "user": "bob" }));

    let res = client
        .post("/api/logout")
        .header(cookie(&second))
        .dispatch()
        .await;
    let removal = set_cookies(&res);
    assert_eq!(removal.len(), 1);
    assert!(removal[0].starts_with(&format!("{NAME}=;")) && removal[0].contains("Max-Age=0"));
    assert_eq!(json_of(res).await, json!({}));
    assert_eq!(db.count().await, 0);
}

#[rocket::async_test]
async fn errors_are_json_with_a_4xx_status() {
    let db = TestDb::new().await;
    let client = client(&db).await;
    let cases = [
        (
            client.post("/api/login").body("{not json"),
            Status::BadRequest,
        ),
        (
            client.post("/api/login").body(r#"{"name":"ann"}"#),
            Status::UnprocessableEntity,
        ),
        (
            client.post("/api/login").body(r#"{"user":"  "}"#),
            Status::UnprocessableEntity,
        ),
        (client.put("/api/session/k").body("{"), Status::BadRequest),
        (client.get("/api/nothing"), Status::NotFound),
    ];
    for (req, status) in cases {
        let res = req.dispatch().await;
        assert_eq!(res.status(), status);
        assert!(set_cookies(&res).is_empty());
        assert!(json_of(res).await["error"].is_string());
    }
    assert_eq!(db.count().await, 0);
}

#[rocket::async_test]
async fn the_page_is_served() {
    let db = TestDb::new().await;
    let client = client(&db).await;
    let res = client.get("/").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.content_type(), Some(ContentType::HTML));
    let body = res.into_string().await.unwrap();
    assert!(
        body.contains("/api/login")
            && body.contains("/api/logout")
            && body.contains("/api/counter")
    );
}

#[rocket::async_test]
async fn values_the_store_cannot_keep_are_refused_up_front() {
    let db = TestDb::new().await;
    let client = client(&db).await;
    let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
    let big = format!("\"{}\"", "x".repeat(70_000));
    let cases = [
        (
            "/api/session/k",
            r#""a\u0000b""#.to_string(),
            Status::UnprocessableEntity,
        ),
        (
            "/api/session/a%00b",
            "1".to_string(),
            Status::UnprocessableEntity,
        ),
        ("/api/session/k", deep, Status::UnprocessableEntity),
        ("/api/session/k", big, Status::PayloadTooLarge),
    ];
    for (path, body, status) in cases {
        let res = client.put(path).body(body).dispatch().await;
        assert_eq!(res.status(), status, "{path}");
        assert!(set_cookies(&res).is_empty());
        assert!(json_of(res).await["error"].is_string());
    }
    let res = client
        .post("/api/login")
        .body(r#"{"user":"bob\u0000"}"#)
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::UnprocessableEntity);
    assert_eq!(db.count().await, 0);

    // Within the limit, many keys add up until the data is full.
    let res = client
        .put("/api/session/a")
        .body(format!("\"{}\"", "x".repeat(40_000)))
        .dispatch()
        .await;
    let id = cookie_value(&res, NAME).unwrap();
    let res = client
        .put("/api/session/b")
        .header(cookie(&id))
        .body(format!("\"{}\"", "y".repeat(30_000)))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::PayloadTooLarge);
    let res = client
        .get("/api/session")
        .header(cookie(&id))
        .dispatch()
        .await;
    assert_eq!(
        json_of(res).await.as_object().unwrap().len(),
        1,
        "the refused value was not kept"
    );
}
