//! Sessions of one user in cookie mode: the user travels in the seal and
//! into the store with a session that outgrows the cookie; with a store,
//! "log out everywhere" voids the user's sealed cookies too; without one,
//! the per-user calls are refused rather than half done.

use rocket::http::{Method, Status};
use rocket::serde::json::{json, Value};
use rocket_tessera::{Error, SessionAdmin, SessionId};

use crate::common::{issued, request, spawn_request, untracked, Env, Mode};
use crate::probe::probe_on;

#[rocket::async_test]
async fn the_user_travels_in_the_seal() {
    let env = Env::new(Mode::Cookie).await;
    let client = untracked(probe_on(env.figment(json!({})), 1).rocket).await;

    let answer = request(&client, Method::Post, "/login/ann", None, "").await;
    assert_eq!(answer.status, Status::Ok, "{answer:?}");
    let sealed = issued(&answer).expect("a user alone is enough to seal a session");
    assert!(
        SessionId::parse(&sealed).is_none(),
        "a sealed session, not an id"
    );

    let answer = request(
        &client,
        Method::Put,
        "/key/theme",
        Some(&sealed),
        "\"dark\"",
    )
    .await;
    assert_eq!(
        answer.json(),
        json!({ "data": { "theme": "dark" }, "user": "ann", "read_only": false })
    );
    let sealed = issued(&answer).unwrap();

    let answer = request(&client, Method::Post, "/regenerate", Some(&sealed), "").await;
    let sealed = issued(&answer).unwrap();
    let answer = request(&client, Method::Get, "/me", Some(&sealed), "").await;
    assert_eq!(answer.json()["user"], json!("ann"));
    assert_eq!(answer.json()["data"], json!({ "theme": "dark" }));

    let answer = request(&client, Method::Delete, "/me/user", Some(&sealed), "").await;
    let sealed = issued(&answer).unwrap();
    let answer = request(&client, Method::Get, "/me", Some(&sealed), "").await;
    assert_eq!(answer.json()["user"], Value::Null);
    assert_eq!(answer.json()["data"], json!({ "theme": "dark" }));
}

#[rocket::async_test]
async fn without_a_store_the_per_user_calls_are_unsupported() {
    let env = Env::new(Mode::Cookie).await;
    let client = untracked(probe_on(env.figment(json!({})), 1).rocket).await;
    let answer = request(&client, Method::Post, "/login/ann", None, "").await;
    let sealed = issued(&answer).unwrap();

    for (method, uri) in [
        (Method::Get, "/me/sessions"),
        (Method::Post, "/me/logout-others"),
        (Method::Post, "/me/logout-all"),
    ] {
        let answer = request(&client, method, uri, Some(&sealed), "").await;
        assert_eq!(answer.status, Status::NotImplemented, "{uri}: {answer:?}");
        assert!(answer.set_cookies.is_empty(), "{uri}: {answer:?}");
    }
    // The session itself is untouched.
    let answer = request(&client, Method::Get, "/me", Some(&sealed), "").await;
    assert_eq!(answer.json()["user"], json!("ann"));

    let admin = client.rocket().state::<SessionAdmin>().unwrap();
    assert!(matches!(admin.list("ann").await, Err(Error::Unsupported)));
    assert!(matches!(
        admin.destroy_all("ann").await,
        Err(Error::Unsupported)
    ));
    assert!(matches!(admin.sweep().await, Err(Error::Unsupported)));
}

#[rocket::async_test]
async fn a_session_that_moves_to_the_store_keeps_its_user() {
    let env = Env::cookie_with_store().await;
    let db = env.db();
    let figment = env.figment(json!({ "cleanup_interval": 0 }));
    let client = untracked(probe_on(figment, 1).rocket).await;

    let answer = request(&client, Method::Post, "/login/ann", None, "").await;
    let sealed = issued(&answer).unwrap();
    let big = format!("\"{}\"", "x".repeat(5000));
    let answer = request(&client, Method::Put, "/key/big", Some(&sealed), &big).await;
    assert_eq!(answer.status, Status::Ok, "{answer:?}");
    let id = issued(&answer).unwrap();
    assert!(
        SessionId::parse(&id).is_some(),
        "the session moved to the store"
    );
    assert_eq!(db.user_of(&id).await.as_deref(), Some("ann"));

    // Listed, and marked current, once it is in the store.
    let answer = request(&client, Method::Get, "/me/sessions", Some(&id), "").await;
    assert_eq!(answer.status, Status::Ok, "{answer:?}");
    let listed = answer.json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["current"], json!(true));

    // Ending the others leaves this one; the admin handle ends it too.
    let answer = request(&client, Method::Post, "/me/logout-others", Some(&id), "").await;
    assert_eq!(answer.status, Status::Ok, "{answer:?}");
    let admin = client.rocket().state::<SessionAdmin>().unwrap();
    assert_eq!(admin.list("ann").await.unwrap().len(), 1);
    assert_eq!(admin.destroy_all("ann").await.unwrap(), 1);
    assert_eq!(db.count().await, 0);
}

/// Signs `user` in on a new sealed session and returns its cookie.
async fn sign_in(client: &rocket::local::asynchronous::Client, user: &str) -> String {
    let answer = request(client, Method::Post, &format!("/login/{user}"), None, "").await;
    assert_eq!(answer.status, Status::Ok, "{answer:?}");
    issued(&answer).expect("a sealed cookie")
}

async fn user_of(client: &rocket::local::asynchronous::Client, cookie: &str) -> Value {
    let answer = request(client, Method::Get, "/me", Some(cookie), "").await;
    assert_eq!(answer.status, Status::Ok, "{answer:?}");
    answer.json()["user"].clone()
}

#[rocket::async_test]
async fn logging_out_the_others_voids_their_sealed_cookies() {
    let env = Env::cookie_with_store().await;
    let figment = env.figment(json!({ "cleanup_interval": 0 }));
    let client = untracked(probe_on(figment, 1).rocket).await;
    let laptop = sign_in(&client, "ann").await;
    let phone = sign_in(&client, "ann").await;
    let bob = sign_in(&client, "bob").await;

    let answer = request(
        &client,
        Method::Post,
        "/me/logout-others",
        Some(&laptop),
        "",
    )
    .await;
    assert_eq!(answer.status, Status::Ok, "{answer:?}");
    let kept = issued(&answer).expect("this session's cookie is sealed again");

    assert_eq!(user_of(&client, &kept).await, json!("ann"));
    assert_eq!(
        user_of(&client, &phone).await,
        Value::Null,
        "the other device is out"
    );
    assert_eq!(
        user_of(&client, &laptop).await,
        Value::Null,
        "so is a copy of the old cookie"
    );
    assert_eq!(
        user_of(&client, &bob).await,
        json!("bob"),
        "other users stay"
    );

    // Signing in again works at once: no clocks are compared.
    let phone = sign_in(&client, "ann").await;
    assert_eq!(user_of(&client, &phone).await, json!("ann"));
}

#[rocket::async_test]
async fn logging_out_everywhere_voids_every_sealed_cookie_of_the_user() {
    let env = Env::cookie_with_store().await;
    let figment = env.figment(json!({ "cleanup_interval": 0 }));
    let client = untracked(probe_on(figment, 1).rocket).await;
    let laptop = sign_in(&client, "ann").await;
    let phone = sign_in(&client, "ann").await;

    let answer = request(&client, Method::Post, "/me/logout-all", Some(&laptop), "").await;
    assert_eq!(answer.status, Status::Ok, "{answer:?}");
    assert!(answer.set_cookies[0].contains("Max-Age=0"), "{answer:?}");
    assert_eq!(user_of(&client, &laptop).await, Value::Null);
    assert_eq!(user_of(&client, &phone).await, Value::Null);

    // The same from the admin handle, for a session made afterwards.
    let tablet = sign_in(&client, "ann").await;
    assert_eq!(user_of(&client, &tablet).await, json!("ann"));
    let admin = client.rocket().state::<SessionAdmin>().unwrap();
    admin.destroy_all("ann").await.unwrap();
    assert_eq!(user_of(&client, &tablet).await, Value::Null);
}

#[rocket::async_test]
async fn logging_out_the_others_loses_to_an_earlier_log_out_everywhere() {
    let env = Env::cookie_with_store().await;
    let p = probe_on(env.figment(json!({ "cleanup_interval": 0 })), 1);
    let gates = p.gates.clone();
    let client = std::sync::Arc::new(untracked(p.rocket).await);
    let laptop = sign_in(&client, "ann").await;
    let phone = sign_in(&client, "ann").await;

    // The laptop's request has opened its cookie when the phone signs ann
    // out everywhere.
    let slow = spawn_request(
        &client,
        Method::Post,
        "/slow-logout-others/g",
        Some(&laptop),
        "",
    );
    gates.reached("g").await;
    let answer = request(&client, Method::Post, "/me/logout-all", Some(&phone), "").await;
    assert_eq!(answer.status, Status::Ok, "{answer:?}");
    gates.release("g");

    let answer = slow.await.unwrap();
    assert_eq!(answer.status, Status::Conflict, "{answer:?}");
    for cookie in std::iter::once(laptop).chain(issued(&answer)) {
        assert_eq!(user_of(&client, &cookie).await, Value::Null);
    }
}

#[rocket::async_test]
async fn a_session_moving_to_the_store_during_a_log_out_everywhere_stays_out() {
    let env = Env::cookie_with_store().await;
    let db = env.db();
    let p = probe_on(env.figment(json!({ "cleanup_interval": 0 })), 1);
    let gates = p.gates.clone();
    let client = std::sync::Arc::new(untracked(p.rocket).await);
    let laptop = sign_in(&client, "ann").await;

    // The laptop's write outgrows the cookie; it is held until ann has
    // been signed out everywhere.
    let big = format!("\"{}\"", "x".repeat(5000));
    let slow = spawn_request(&client, Method::Put, "/slow/g/big", Some(&laptop), &big);
    gates.reached("g").await;
    let admin = client.rocket().state::<SessionAdmin>().unwrap();
    admin.destroy_all("ann").await.unwrap();
    gates.release("g");

    let answer = slow.await.unwrap();
    answer.assert_conflict();
    assert_eq!(db.count().await, 0, "no session of ann came back");
}
