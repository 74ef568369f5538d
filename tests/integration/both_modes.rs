//! The behaviour both modes share, each test run once per mode: the same
//! routes and the same `Session` API give the same answers whether the
//! session lives in PostgreSQL or in the cookie. Where the modes must
//! differ (a copy of an old cookie), the test says how.

use std::time::Duration;

use rocket::http::Status;
use rocket::serde::json::json;
use rocket::tokio::time::sleep;

use crate::common::{attributes, cookie, max_age, untracked, Browser, Env, Mode};
use crate::{app, counted_app};

const NAME: &str = "__Host-session";

both_modes!(
    untouched_session_sets_no_cookie,
    data_round_trips_and_unmodified_reads_send_no_cookie,
    remove_and_clear_are_kept,
    setting_the_same_value_writes_nothing,
    touch_reissues_the_cookie_once_due,
    idle_expiry_starts_a_fresh_session,
    absolute_expiry_holds_despite_activity,
    regenerate_gives_a_new_cookie_and_keeps_the_data,
    destroy_sends_a_removal_cookie,
    destroy_then_insert_starts_a_new_session,
    server_errors_keep_nothing,
    garbage_cookies_give_a_fresh_session,
    the_first_valid_of_several_cookies_wins,
    attributes_are_the_same_on_issue_and_removal,
);

async fn untouched_session_sets_no_cookie(mode: Mode) {
    let env = Env::new(mode).await;
    let (rocket, counts) = counted_app(&env, json!({}));
    let client = untracked(rocket).await;
    let mut browser = Browser::new(&client, NAME);

    let reply = browser.get("/api/session").await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.json(), json!({}));
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    assert!(reply.vary.iter().any(|v| v == "Cookie"), "{:?}", reply.vary);
    assert_eq!(browser.get("/t/is-new").await.body, "true");
    assert_eq!(browser.get("/").await.status, Status::Ok);
    assert_eq!(counts.get(), [0, 0, 0, 0], "no store call");
}

async fn data_round_trips_and_unmodified_reads_send_no_cookie(mode: Mode) {
    let env = Env::new(mode).await;
    let client = untracked(app(&env, json!({}))).await;
    let mut browser = Browser::new(&client, NAME);

    let reply = browser.put("/api/session/colour", r#""blue""#).await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.set_cookies.len(), 1, "{:?}", reply.set_cookies);
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
    assert_eq!(max_age(&reply.set_cookies[0]), 1800);

    let reply = browser.get("/api/session").await;
    assert_eq!(reply.json(), json!({ "colour": "blue" }));
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    assert_eq!(reply.cache_control, None);
    assert_eq!(browser.get("/t/is-new").await.body, "false");

    let reply = browser.post("/api/counter", "").await;
    assert_eq!(reply.json(), json!({ "counter": 1 }));
    let reply = browser.post("/api/counter", "").await;
    assert_eq!(reply.json(), json!({ "counter": 2 }));
    let reply = browser.get("/api/session").await;
    assert_eq!(reply.json(), json!({ "colour": "blue", "counter": 2 }));
}

async fn remove_and_clear_are_kept(mode: Mode) {
    let env = Env::new(mode).await;
    let client = untracked(app(&env, json!({}))).await;
    let mut browser = Browser::new(&client, NAME);

    browser.put("/api/session/a", "1").await;
    browser.put("/api/session/b", "2").await;
    let reply = browser.delete("/api/session/a").await;
    assert_eq!(reply.json(), json!({ "b": 2 }));
    assert_eq!(browser.get("/api/session").await.json(), json!({ "b": 2 }));

    let reply = browser.post("/t/clear", "").await;
    assert_eq!(reply.json(), json!({}));
    assert_eq!(browser.get("/api/session").await.json(), json!({}));
    assert_eq!(
        browser.get("/t/is-new").await.body,
        "false",
        "clear keeps it"
    );
}

async fn setting_the_same_value_writes_nothing(mode: Mode) {
    let env = Env::new(mode).await;
    let (rocket, counts) = counted_app(&env, json!({}));
    let client = untracked(rocket).await;
    let mut browser = Browser::new(&client, NAME);

    browser.put("/api/session/a", "1").await;
    let reply = browser.put("/api/session/a", "1").await;
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    let [_, create, update, _] = counts.get();
    let expected = if mode == Mode::Postgres { 1 } else { 0 };
    assert_eq!((create, update), (expected, 0));
}

async fn touch_reissues_the_cookie_once_due(mode: Mode) {
    let env = Env::new(mode).await;
    let overrides = json!({ "idle_timeout": 30, "touch_interval": 1 });
    let client = untracked(app(&env, overrides)).await;
    let mut browser = Browser::new(&client, NAME);

    browser.put("/api/session/a", "1").await;
    let reply = browser.get("/api/session").await;
    assert!(reply.set_cookies.is_empty(), "not due yet");

    sleep(Duration::from_millis(2100)).await;
    let reply = browser.get("/api/session").await;
    assert_eq!(reply.json(), json!({ "a": 1 }));
    assert_eq!(reply.set_cookies.len(), 1, "a touch re-issues the cookie");
    assert_eq!(max_age(&reply.set_cookies[0]), 30);
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));

    let reply = browser.get("/api/session").await;
    assert!(reply.set_cookies.is_empty(), "touched just now");
    assert_eq!(reply.json(), json!({ "a": 1 }));
}

async fn idle_expiry_starts_a_fresh_session(mode: Mode) {
    let env = Env::new(mode).await;
    let overrides = json!({ "idle_timeout": 1, "touch_interval": 0 });
    let client = untracked(app(&env, overrides)).await;
    let mut browser = Browser::new(&client, NAME);

    browser.put("/api/session/a", "1").await;
    sleep(Duration::from_millis(2200)).await;
    assert_eq!(browser.get("/api/session").await.json(), json!({}));
    assert_eq!(browser.get("/t/is-new").await.body, "true");
}

async fn absolute_expiry_holds_despite_activity(mode: Mode) {
    let env = Env::new(mode).await;
    let overrides = json!({ "idle_timeout": 10, "touch_interval": 1, "absolute_timeout": 4 });
    let client = untracked(app(&env, overrides)).await;
    let mut browser = Browser::new(&client, NAME);

    let reply = browser.put("/api/session/a", "1").await;
    assert!(
        max_age(&reply.set_cookies[0]) <= 4,
        "capped by the absolute timeout"
    );
    for pause in [1500, 1000] {
        sleep(Duration::from_millis(pause)).await;
        let reply = browser.get("/api/session").await;
        assert_eq!(reply.json(), json!({ "a": 1 }));
        assert_eq!(reply.set_cookies.len(), 1, "touched");
        assert!(
            max_age(&reply.set_cookies[0]) <= 3,
            "{:?}",
            reply.set_cookies
        );
    }
    sleep(Duration::from_millis(2100)).await;
    assert_eq!(browser.get("/api/session").await.json(), json!({}));
}

async fn regenerate_gives_a_new_cookie_and_keeps_the_data(mode: Mode) {
    let env = Env::new(mode).await;
    let client = untracked(app(&env, json!({}))).await;
    let mut browser = Browser::new(&client, NAME);

    browser.put("/api/session/a", "1").await;
    let before = browser.cookie.clone().unwrap();
    let reply = browser.post("/api/login", r#"{"user":"ann"}"#).await;
    assert_eq!(reply.json(), json!({ "a": 1, "user": "ann" }));
    let after = browser.cookie.clone().unwrap();
    assert_ne!(before, after);
    assert_eq!(
        browser.get("/api/session").await.json(),
        json!({ "a": 1, "user": "ann" })
    );

    // The old cookie: PostgreSQL forgets its id at once; a sealed cookie
    // cannot be recalled and opens until it expires (`not_before` is the
    // remedy).
    let mut old = Browser::new(&client, NAME);
    old.cookie = Some(before);
    let expected = match mode {
        Mode::Postgres => json!({}),
        Mode::Cookie => json!({ "a": 1 }),
    };
    assert_eq!(old.get("/api/session").await.json(), expected);
}

async fn destroy_sends_a_removal_cookie(mode: Mode) {
    let env = Env::new(mode).await;
    let client = untracked(app(&env, json!({}))).await;
    let mut browser = Browser::new(&client, NAME);

    browser.put("/api/session/a", "1").await;
    let before = browser.cookie.clone().unwrap();
    let reply = browser.post("/api/logout", "").await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.set_cookies.len(), 1, "{:?}", reply.set_cookies);
    let removal = &reply.set_cookies[0];
    assert!(removal.starts_with(&format!("{NAME}=;")), "{removal}");
    assert_eq!(max_age(removal), 0);
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
    assert_eq!(browser.cookie, None);
    assert_eq!(browser.get("/api/session").await.json(), json!({}));

    let mut old = Browser::new(&client, NAME);
    old.cookie = Some(before);
    let expected = match mode {
        Mode::Postgres => {
            assert_eq!(env.db().count().await, 0);
            json!({})
        }
        // The documented limit of cookie mode: a copy still opens.
        Mode::Cookie => json!({ "a": 1 }),
    };
    assert_eq!(old.get("/api/session").await.json(), expected);

    // Logging out without a session sends nothing.
    let mut stranger = Browser::new(&client, NAME);
    assert!(stranger
        .post("/api/logout", "")
        .await
        .set_cookies
        .is_empty());
}

async fn destroy_then_insert_starts_a_new_session(mode: Mode) {
    let env = Env::new(mode).await;
    let client = untracked(app(&env, json!({}))).await;
    let mut browser = Browser::new(&client, NAME);

    browser.put("/api/session/a", "1").await;
    let before = browser.cookie.clone().unwrap();
    let reply = browser.post("/t/destroy-then-set", "").await;
    assert_eq!(reply.json(), json!({ "fresh": true }));
    assert_eq!(reply.set_cookies.len(), 1, "{:?}", reply.set_cookies);
    let after = browser.cookie.clone().expect("a new session cookie");
    assert_ne!(before, after);
    assert_eq!(
        browser.get("/api/session").await.json(),
        json!({ "fresh": true })
    );
    if mode == Mode::Postgres {
        assert_eq!(env.db().count().await, 1, "the old row is gone");
    }
}

async fn server_errors_keep_nothing(mode: Mode) {
    let env = Env::new(mode).await;
    let client = untracked(app(&env, json!({}))).await;
    let mut browser = Browser::new(&client, NAME);

    let reply = browser.post("/t/fail", "").await;
    assert_eq!(reply.status, Status::InternalServerError);
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);

    browser.put("/api/session/a", "1").await;
    let reply = browser.post("/t/fail", "").await;
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    assert_eq!(browser.get("/api/session").await.json(), json!({ "a": 1 }));
}

async fn garbage_cookies_give_a_fresh_session(mode: Mode) {
    let env = Env::new(mode).await;
    let client = untracked(app(&env, json!({}))).await;
    let long = "A".repeat(5000);
    let values = [
        "",
        "x",
        "%%%",
        "\"quoted\"",
        "not base64!",
        "ünïcödé-välüé",
        "AQRrZXkx",
        &"A".repeat(43),
        &long,
    ];
    for value in values {
        let mut browser = Browser::new(&client, NAME);
        browser.cookie = Some(value.to_string());
        let reply = browser.get("/api/session").await;
        assert_eq!(reply.status, Status::Ok, "{value}");
        assert_eq!(reply.json(), json!({}), "{value}");
        assert!(reply.set_cookies.is_empty(), "{value}");

        let reply = browser.put("/api/session/a", "1").await;
        assert_eq!(reply.status, Status::Ok, "{value}");
        assert_ne!(browser.cookie.as_deref(), Some(value));
        assert_eq!(browser.get("/api/session").await.json(), json!({ "a": 1 }));
    }
}

async fn the_first_valid_of_several_cookies_wins(mode: Mode) {
    let env = Env::new(mode).await;
    let client = untracked(app(&env, json!({}))).await;
    let mut browser = Browser::new(&client, NAME);
    browser.put("/api/session/a", "1").await;
    let valid = browser.cookie.clone().unwrap();

    let res = client
        .get("/api/session")
        .header(cookie(NAME, &format!("garbage; other=1; {NAME}={valid}")))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.into_string().await.unwrap(), r#"{"a":1}"#);
}

async fn attributes_are_the_same_on_issue_and_removal(mode: Mode) {
    let env = Env::new(mode).await;
    let overrides = json!({
        "cookie_name": "__Secure-sid",
        "cookie_path": "/api",
        "cookie_domain": "example.test",
        "same_site": "strict",
        "idle_timeout": 600,
    });
    let client = untracked(app(&env, overrides)).await;
    let mut browser = Browser::new(&client, "__Secure-sid");

    let issued = browser.put("/api/session/a", "1").await.set_cookies;
    let removed = browser.post("/api/logout", "").await.set_cookies;
    assert_eq!((issued.len(), removed.len()), (1, 1));
    let without_lifetime = |header: &str| {
        let mut attrs: Vec<_> = attributes(header)
            .into_iter()
            .filter(|(k, _)| k != "max-age" && k != "expires")
            .collect();
        attrs.sort();
        attrs
    };
    let expected = vec![
        ("domain".to_string(), "example.test".to_string()),
        ("httponly".to_string(), String::new()),
        ("path".to_string(), "/api".to_string()),
        ("samesite".to_string(), "Strict".to_string()),
        ("secure".to_string(), String::new()),
    ];
    assert_eq!(without_lifetime(&issued[0]), expected, "{}", issued[0]);
    assert_eq!(without_lifetime(&removed[0]), expected, "{}", removed[0]);
    assert_eq!(max_age(&issued[0]), 600);
    assert_eq!(max_age(&removed[0]), 0);
    assert!(removed[0].contains("Expires=Thu, 01 Jan 1970 00:00:00 GMT"));
}
