//! Cookies the server did not issue: unknown, forged, malformed and
//! duplicated values give a working session, never an error.

use rocket::http::{Header, Status};
use rocket::local::asynchronous::Client;
use rocket::serde::json::{json, Value};
use rocket_tessera::SessionId;

use crate::common::{cookie_value, set_cookies, untracked, TestDb};
use crate::counted_demo_app;

const NAME: &str = "__Host-session";

async fn sign_in(client: &Client, user: &str) -> String {
    let body = json!({ "user": user }).to_string();
    let res = client.post("/api/login").body(body).dispatch().await;
    cookie_value(&res, NAME).unwrap()
}

#[rocket::async_test]
async fn an_unknown_id_is_never_adopted() {
    let db = TestDb::new().await;
    let (rocket, _) = counted_demo_app(&db, json!({}));
    let client = untracked(rocket).await;
    let planted = SessionId::generate().encode();
    let cookie = Header::new("Cookie", format!("{NAME}={planted}"));

    let res = client
        .get("/api/session")
        .header(cookie.clone())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.into_json::<Value>().await, Some(json!({})));

    let res = client
        .put("/api/session/k")
        .header(cookie)
        .body("1")
        .dispatch()
        .await;
    let issued = cookie_value(&res, NAME).unwrap();
    assert_ne!(issued, planted, "the server chose the id");
    assert_eq!(db.data_of(&planted).await, None);
    assert_eq!(db.data_of(&issued).await, Some(json!({ "k": 1 })));
}

#[rocket::async_test]
async fn malformed_cookies_give_a_fresh_session_without_a_query() {
    let db = TestDb::new().await;
    let (rocket, counts) = counted_demo_app(&db, json!({}));
    let client = untracked(rocket).await;
    let good = SessionId::generate().encode();
    let long = "A".repeat(4000);
    let values = [
        String::new(),
        "abc".to_string(),
        format!("{good}A"),
        good[..42].to_string(),
        format!("{}=", &good[..42]),
        "!".repeat(43),
        format!("{}+/", &good[..41]),
        "é".repeat(21) + "a",
        format!("\"{}\"x", &good[..41]),
        long,
        "%41%41%41".to_string(),
    ];
    for value in &values {
        let res = client
            .get("/api/session")
            .header(Header::new("Cookie", format!("{NAME}={value}")))
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Ok, "{value:?}");
        assert!(set_cookies(&res).is_empty());
        assert_eq!(res.into_json::<Value>().await, Some(json!({})), "{value:?}");
    }
    assert_eq!(
        counts.get(),
        [0, 0, 0, 0],
        "the grammar is checked before any query"
    );

    // A write on top of a malformed cookie starts a new session.
    let res = client
        .post("/api/counter")
        .header(Header::new("Cookie", format!("{NAME}=garbage")))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let id = cookie_value(&res, NAME).unwrap();
    assert_eq!(db.data_of(&id).await, Some(json!({ "counter": 1 })));
}

#[rocket::async_test]
async fn the_first_value_that_opens_wins_among_duplicates() {
    let db = TestDb::new().await;
    let (rocket, counts) = counted_demo_app(&db, json!({}));
    let client = untracked(rocket).await;
    let ann = sign_in(&client, "ann").await;
    let bob = sign_in(&client, "bob").await;
    let unknown = SessionId::generate().encode();
    let loads = counts.get()[0];

    let cases = [
        (format!("{NAME}=junk; {NAME}={ann}"), "ann"),
        (
            format!("{NAME}={unknown}; other=1; {NAME}={bob}; {NAME}={ann}"),
            "bob",
        ),
        (format!("{NAME}={ann}; {NAME}={bob}"), "ann"),
    ];
    for (header, user) in &cases {
        let res = client
            .get("/api/session")
            .header(Header::new("Cookie", header.clone()))
            .dispatch()
            .await;
        assert_eq!(
            res.into_json::<Value>().await,
            Some(json!({ "user": user })),
            "{header}"
        );
    }
    assert_eq!(
        counts.get()[0],
        loads + cases.len(),
        "one query per request"
    );

    // Separate Cookie headers count too.
    let res = client
        .get("/api/session")
        .header(Header::new("Cookie", format!("{NAME}={unknown}")))
        .header(Header::new("Cookie", format!("{NAME}={bob}")))
        .dispatch()
        .await;
    assert_eq!(
        res.into_json::<Value>().await,
        Some(json!({ "user": "bob" }))
    );
}

#[rocket::async_test]
async fn the_jar_is_read_when_there_is_no_raw_header() {
    let db = TestDb::new().await;
    let (rocket, _) = counted_demo_app(&db, json!({}));
    let client = Client::tracked(rocket).await.unwrap();
    client
        .post("/api/login")
        .body(r#"{"user":"ann"}"#)
        .dispatch()
        .await;
    let res = client.get("/api/session").dispatch().await;
    assert_eq!(
        res.into_json::<Value>().await,
        Some(json!({ "user": "ann" }))
    );
}
