//! Cookie mode's key ring: rotation keeps users signed in and re-seals
//! their cookies under the new key; a retired key opens nothing.

use std::time::Duration;

use rocket::serde::json::{json, Value};
use rocket::tokio::time::sleep;

use crate::app;
use crate::common::{key_id_of, random_key, untracked, Browser, Env, Mode};

const NAME: &str = "__Host-session";

#[rocket::async_test]
async fn rotation_keeps_users_signed_in_and_reseals_under_the_new_key() {
    let env = Env::new(Mode::Cookie).await;
    let old = json!({ "id": "old", "key": random_key() });
    let new = json!({ "id": "new", "algorithm": "aes256gcm", "key": random_key() });
    let with_keys = |keys: Value| app(&env, json!({ "keys": keys }));

    let before = untracked(with_keys(json!([old]))).await;
    let mut browser = Browser::new(&before, NAME);
    browser.post("/api/login", r#"{"user":"ann"}"#).await;
    let sealed_old = browser.cookie.clone().unwrap();
    assert_eq!(key_id_of(&sealed_old).as_deref(), Some("old"));

    // Step 1: the new key goes first; the old one stays to open.
    let rotated = untracked(with_keys(json!([new, old]))).await;
    let mut browser = Browser::new(&rotated, NAME);
    browser.cookie = Some(sealed_old.clone());
    let reply = browser.get("/api/session").await;
    assert_eq!(reply.json(), json!({ "user": "ann" }), "still signed in");
    assert_eq!(reply.set_cookies.len(), 1, "re-sealed on this response");
    let sealed_new = browser.cookie.clone().unwrap();
    assert_eq!(key_id_of(&sealed_new).as_deref(), Some("new"));
    let reply = browser.get("/api/session").await;
    assert!(reply.set_cookies.is_empty(), "nothing more to do");

    // Step 2, once every live cookie had its chance: the old key retires.
    let retired = untracked(with_keys(json!([new]))).await;
    let mut browser = Browser::new(&retired, NAME);
    browser.cookie = Some(sealed_new);
    assert_eq!(
        browser.get("/api/session").await.json(),
        json!({ "user": "ann" })
    );
    browser.cookie = Some(sealed_old);
    assert_eq!(browser.get("/api/session").await.json(), json!({}));
}

#[rocket::async_test]
async fn resealing_keeps_the_creation_instant() {
    let env = Env::new(Mode::Cookie).await;
    let old = json!({ "id": "old", "key": random_key() });
    let new = json!({ "id": "new", "key": random_key() });
    let lifetimes = json!({ "absolute_timeout": 3, "idle_timeout": 10, "touch_interval": 5 });
    let with_keys = |keys: Value| {
        let mut overrides = lifetimes.clone();
        overrides["keys"] = keys;
        app(&env, overrides)
    };

    let before = untracked(with_keys(json!([old]))).await;
    let mut browser = Browser::new(&before, NAME);
    browser.put("/api/session/a", "1").await;
    let sealed_old = browser.cookie.clone().unwrap();

    sleep(Duration::from_millis(1200)).await;
    let rotated = untracked(with_keys(json!([new, old]))).await;
    let mut browser = Browser::new(&rotated, NAME);
    browser.cookie = Some(sealed_old);
    let reply = browser.get("/api/session").await;
    assert_eq!(reply.json(), json!({ "a": 1 }));
    assert_eq!(
        key_id_of(browser.cookie.as_ref().unwrap()).as_deref(),
        Some("new")
    );

    sleep(Duration::from_millis(2900)).await;
    assert_eq!(browser.get("/api/session").await.json(), json!({}));
}
