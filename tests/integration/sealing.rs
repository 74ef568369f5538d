//! Cookie mode's seal over HTTP: every altered, cut, extended, moved or
//! foreign value gives a fresh session and a 200, never an error.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket::serde::json::json;

use crate::app;
use crate::common::{key_id_of, random_key, untracked, Browser, Env, Mode};

const NAME: &str = "__Host-session";

/// A cookie-mode application and the value of a session holding
/// `{"user": "ann"}` (under `overrides.cookie_name`, if given).
async fn signed_in(overrides: rocket::serde::json::Value) -> (Env, Client, String) {
    let name = overrides["cookie_name"]
        .as_str()
        .unwrap_or(NAME)
        .to_string();
    let env = Env::new(Mode::Cookie).await;
    let client = untracked(app(&env, overrides)).await;
    let mut browser = Browser::new(&client, &name);
    browser.put("/api/session/user", r#""ann""#).await;
    let value = browser.cookie.clone().expect("a sealed cookie");
    assert_eq!(
        opens(&client, &name, &value).await,
        json!({ "user": "ann" })
    );
    (env, client, value)
}

/// The session `value` opens to under the cookie `name`; asserts a 200.
async fn opens(client: &Client, name: &str, value: &str) -> rocket::serde::json::Value {
    let mut browser = Browser::new(client, name);
    browser.cookie = Some(value.to_string());
    let reply = browser.get("/api/session").await;
    assert_eq!(reply.status, Status::Ok, "{value}");
    reply.json()
}

#[rocket::async_test]
async fn every_single_bit_flip_gives_a_fresh_session() {
    let (_env, client, value) = signed_in(json!({})).await;
    let bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let altered = URL_SAFE_NO_PAD.encode(&flipped);
        assert_eq!(opens(&client, NAME, &altered).await, json!({}), "bit {bit}");
    }
}

#[rocket::async_test]
async fn truncated_and_extended_values_give_a_fresh_session() {
    let (_env, client, value) = signed_in(json!({})).await;
    for len in 0..value.len() {
        assert_eq!(
            opens(&client, NAME, &value[..len]).await,
            json!({}),
            "{len}"
        );
    }
    for tail in ["A", "AA", "AAA", "AAAA", "=", "-_", "%3D"] {
        let longer = format!("{value}{tail}");
        assert_eq!(opens(&client, NAME, &longer).await, json!({}), "{tail}");
    }
    let bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
    let longer = URL_SAFE_NO_PAD.encode([&bytes[..], &[0u8; 16]].concat());
    assert_eq!(opens(&client, NAME, &longer).await, json!({}));
}

#[rocket::async_test]
async fn non_base64_and_non_ascii_values_give_a_fresh_session() {
    let (_env, client, value) = signed_in(json!({})).await;
    let middle = value.len() / 2;
    let variants = [
        format!("{}+{}", &value[..middle], &value[middle + 1..]),
        format!("{}/{}", &value[..middle], &value[middle + 1..]),
        format!("{}é{}", &value[..middle], &value[middle + 1..]),
        format!("{}\u{1F36A}", &value[..value.len() - 1]),
        format!("{value}=="),
        format!(" {value} x"),
        value.to_lowercase(),
        value.to_uppercase(),
        "ßß".repeat(300),
    ];
    for altered in &variants {
        assert_eq!(opens(&client, NAME, altered).await, json!({}), "{altered}");
    }
}

#[rocket::async_test]
async fn unknown_versions_and_key_ids_give_a_fresh_session() {
    let (_env, client, value) = signed_in(json!({})).await;
    assert_eq!(key_id_of(&value).as_deref(), Some("test"));
    let bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();

    for version in [0u8, 2, 255] {
        let mut altered = bytes.clone();
        altered[0] = version;
        let altered = URL_SAFE_NO_PAD.encode(&altered);
        assert_eq!(opens(&client, NAME, &altered).await, json!({}), "{version}");
    }
    for (len, id) in [(4u8, &b"tesu"[..]), (4, b"TEST"), (3, b"tes"), (0, b"")] {
        let altered = [&[1, len][..], id, &bytes[6..]].concat();
        let altered = URL_SAFE_NO_PAD.encode(&altered);
        assert_eq!(opens(&client, NAME, &altered).await, json!({}), "{id:?}");
    }
}

#[rocket::async_test]
async fn another_key_does_not_open_it() {
    let (env, _client, value) = signed_in(json!({})).await;
    // Same key id, other bytes.
    let other = Env {
        key: random_key(),
        ..Env::new(Mode::Cookie).await
    };
    let client = untracked(app(&other, json!({}))).await;
    assert_eq!(opens(&client, NAME, &value).await, json!({}));
    // And the right key still does, from another application instance.
    let client = untracked(app(&env, json!({}))).await;
    assert_eq!(opens(&client, NAME, &value).await, json!({ "user": "ann" }));
}

#[rocket::async_test]
async fn a_value_moved_to_another_cookie_name_does_not_open() {
    let (env, _client, value) = signed_in(json!({ "cookie_name": "__Host-a" })).await;
    let client = untracked(app(&env, json!({ "cookie_name": "__Host-b" }))).await;
    assert_eq!(opens(&client, "__Host-b", &value).await, json!({}));
    let client = untracked(app(&env, json!({ "cookie_name": "__Host-a" }))).await;
    assert_eq!(
        opens(&client, "__Host-a", &value).await,
        json!({ "user": "ann" })
    );
}

#[rocket::async_test]
async fn the_data_is_encrypted_and_aes_gcm_keys_work() {
    let env = Env::new(Mode::Cookie).await;
    let keys = json!([{ "id": "gcm", "algorithm": "aes256gcm", "key": random_key() }]);
    let client = untracked(app(&env, json!({ "keys": keys }))).await;
    let mut browser = Browser::new(&client, NAME);
    browser
        .put("/api/session/note", r#""plaintext-marker""#)
        .await;
    let value = browser.cookie.clone().unwrap();
    assert_eq!(key_id_of(&value).as_deref(), Some("gcm"));
    let bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("plaintext-marker") && !text.contains("note"));
    assert_eq!(
        browser.get("/api/session").await.json(),
        json!({ "note": "plaintext-marker" })
    );
}
