//! Routes the demo lacks, mounted next to it in every test application:
//! a failing handler, `save()`, destroy followed by a write, `clear` and
//! `is_new`.

use rocket::http::Status;
use rocket::serde::json::{json, Json, Value};
use rocket::{get, post, routes, Route};
use rocket_tessera::{Error, Session};

/// Changes the session, then fails.
#[post("/t/fail")]
fn fail(session: Session<'_>) -> Status {
    session
        .insert_value("failed", json!(true))
        .expect("a boolean is storable");
    Status::InternalServerError
}

/// Stores the body under `key` and saves at once: 200 with `saved`, 413
/// with the error when the session does not fit in a cookie, 422 when the
/// value is refused.
#[post("/t/save/<key>", data = "<value>")]
async fn save(session: Session<'_>, key: &str, value: Json<Value>) -> (Status, String) {
    if let Err(e) = session.insert_value(key, value.into_inner()) {
        return (Status::UnprocessableEntity, e.to_string());
    }
    match session.save().await {
        Ok(()) => (Status::Ok, "saved".into()),
        Err(e @ Error::CookieTooLarge { .. }) => (Status::PayloadTooLarge, e.to_string()),
        Err(e) => (Status::ServiceUnavailable, e.to_string()),
    }
}

/// Ends the session and starts another in the same request.
#[post("/t/destroy-then-set")]
fn destroy_then_set(session: Session<'_>) -> Json<Value> {
    session.destroy();
    session
        .insert_value("fresh", json!(true))
        .expect("a boolean is storable");
    Json(Value::Object(session.data()))
}

#[post("/t/clear")]
fn clear(session: Session<'_>) -> Json<Value> {
    session.clear();
    Json(Value::Object(session.data()))
}

#[get("/t/is-new")]
fn is_new(session: Session<'_>) -> String {
    session.is_new().to_string()
}

pub fn all() -> Vec<Route> {
    routes![fail, save, destroy_then_set, clear, is_new]
}
