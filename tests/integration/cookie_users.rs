//! Sessions of one user in cookie mode: the user travels in the seal and
//! into the store with a session that outgrows the cookie; what cannot be
//! honoured (ending every session of a user while sealed cookies stay
//! valid) is refused rather than half done.

use rocket::http::{Method, Status};
use rocket::serde::json::{json, Value};
use rocket_tessera::{Error, SessionAdmin, SessionId};

use crate::common::{issued, request, untracked, Env, Mode};
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

    // Ending all of ann's sessions would leave her sealed cookies valid:
    // refused, from the session and from the admin handle alike.
    let answer = request(&client, Method::Post, "/me/logout-others", Some(&id), "").await;
    assert_eq!(answer.status, Status::NotImplemented);
    let admin = client.rocket().state::<SessionAdmin>().unwrap();
    assert!(matches!(
        admin.destroy_all("ann").await,
        Err(Error::Unsupported)
    ));
    assert_eq!(admin.list("ann").await.unwrap().len(), 1);
    assert_eq!(db.count().await, 1);
}
