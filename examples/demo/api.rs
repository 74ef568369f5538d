//! The demo's JSON API, kept apart from `main.rs` so that the integration
//! tests mount exactly these routes.

use rocket::http::Status;
use rocket::response::content::RawHtml;
use rocket::serde::json::{json, Json, Value};
use rocket::{catch, catchers, delete, get, post, put, routes, Build, Request, Rocket};
use rocket_tessera::{Error, Session, SessionHandle};

/// An error answer: `{"error": "..."}` with a 4xx status.
type ApiError = (Status, Json<Value>);
type ApiResult = Result<Json<Value>, ApiError>;

fn api_error(status: Status, message: impl Into<String>) -> ApiError {
    (status, Json(json!({ "error": message.into() })))
}

/// Stores a value, answering 413 or 422 when the session cannot take it.
fn store(session: &Session<'_>, key: &str, value: Value) -> Result<(), ApiError> {
    session.insert_value(key, value).map_err(|e| match e {
        Error::TooLarge { .. } => api_error(Status::PayloadTooLarge, e.to_string()),
        e => api_error(Status::UnprocessableEntity, e.to_string()),
    })
}

fn whole(session: &Session<'_>) -> ApiResult {
    Ok(Json(Value::Object(session.data())))
}

#[get("/")]
fn index() -> RawHtml<&'static str> {
    RawHtml(include_str!("index.html"))
}

#[get("/api/session")]
fn show(session: Session<'_>) -> ApiResult {
    whole(&session)
}

#[put("/api/session/<key>", data = "<value>")]
fn put_key(session: Session<'_>, key: &str, value: Json<Value>) -> ApiResult {
    store(&session, key, value.into_inner())?;
    whole(&session)
}

#[delete("/api/session/<key>")]
fn delete_key(session: Session<'_>, key: &str) -> ApiResult {
    session.remove(key);
    whole(&session)
}

#[post("/api/counter")]
fn counter(session: Session<'_>) -> ApiResult {
    let current: i64 = session
        .get("counter")
        .map_err(|_| {
            api_error(
                Status::Conflict,
                "`counter` holds a value that is not an integer",
            )
        })?
        .unwrap_or(0);
    let next = current
        .checked_add(1)
        .ok_or_else(|| api_error(Status::Conflict, "`counter` cannot grow any further"))?;
    store(&session, "counter", json!(next))?;
    Ok(Json(json!({ "counter": next })))
}

#[derive(rocket::serde::Deserialize)]
#[serde(crate = "rocket::serde")]
struct Login {
    user: String,
}

#[post("/api/login", data = "<login>")]
fn login(session: Session<'_>, login: Json<Login>) -> ApiResult {
    let user = login.user.trim();
    if user.is_empty() || user.len() > 100 {
        return Err(api_error(
            Status::UnprocessableEntity,
            "`user` must be 1 to 100 characters",
        ));
    }
    // Another user signing in on this browser starts from nothing: the
    // previous user's data is not theirs.
    if session.user().is_some_and(|current| current != user) {
        session.clear();
    }
    // A new id on every sign-in: a cookie planted before it is worthless.
    session.regenerate();
    // The name doubles as the user id that ties the session to its user
    // (a column of its own), and is kept as data for display.
    session
        .set_user(user)
        .map_err(|e| api_error(Status::UnprocessableEntity, e.to_string()))?;
    store(&session, "user", json!(user))?;
    whole(&session)
}

/// A per-user call's error as an API answer.
fn user_error(e: Error) -> ApiError {
    let status = match e {
        Error::NoUser => Status::Unauthorized,
        Error::Gone => Status::Conflict,
        // Cookie mode without a store: sealed sessions cannot be listed or
        // ended elsewhere.
        Error::Unsupported => Status::NotImplemented,
        // The cause goes to the log, not to the client.
        _ => {
            log::error!("demo: a per-user call failed: {e}");
            return api_error(Status::ServiceUnavailable, "the session store failed");
        }
    };
    api_error(status, e.to_string())
}

#[get("/api/sessions")]
async fn sessions(session: Session<'_>) -> ApiResult {
    let list = session.user_sessions().await.map_err(user_error)?;
    Ok(Json(json!(list)))
}

#[delete("/api/sessions/<handle>")]
async fn end_session(session: Session<'_>, handle: SessionHandle) -> ApiResult {
    let ended = session
        .destroy_user_session(&handle)
        .await
        .map_err(user_error)?;
    Ok(Json(json!({ "ended": ended })))
}

#[post("/api/logout-others")]
async fn logout_others(session: Session<'_>) -> ApiResult {
    let ended = session.destroy_other_sessions().await.map_err(user_error)?;
    Ok(Json(json!({ "ended": ended })))
}

#[post("/api/logout-everywhere")]
async fn logout_everywhere(session: Session<'_>) -> ApiResult {
    let ended = session.destroy_all_sessions().await.map_err(user_error)?;
    Ok(Json(json!({ "ended": ended })))
}

#[post("/api/logout")]
fn logout(session: Session<'_>) -> Json<Value> {
    session.destroy();
    Json(json!({}))
}

#[catch(default)]
fn json_catcher(status: Status, _req: &Request<'_>) -> ApiError {
    let reason = status.reason().unwrap_or("error").to_lowercase();
    api_error(status, reason)
}

/// Mounts the demo's page, its JSON API and its JSON error catcher.
pub fn mount(rocket: Rocket<Build>) -> Rocket<Build> {
    rocket
        .mount(
            "/",
            routes![
                index,
                show,
                put_key,
                delete_key,
                counter,
                login,
                logout,
                sessions,
                end_session,
                logout_others,
                logout_everywhere,
            ],
        )
        .register("/", catchers![json_catcher])
}
