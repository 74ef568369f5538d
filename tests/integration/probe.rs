//! Routes for the concurrency and per-user tests: requests that stop at a
//! gate the test opens, so that races happen in the order a test chooses
//! rather than by timing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocket::figment::Figment;
use rocket::http::Status;
use rocket::serde::json::{json, Json, Value};
use rocket::{delete, get, post, put, routes, Build, Rocket, State};
use rocket_tessera::{Error, Session, SessionHandle, SessionInfo};
use tokio::sync::{Barrier, Notify};

use crate::common::{Counting, Counts, TestDb};

/// How long a gated request or a test waits before failing loudly.
const PATIENCE: Duration = Duration::from_secs(10);

/// One gate: the request says it got there, then waits to be let through.
#[derive(Default)]
pub struct Gate {
    reached: Notify,
    release: Notify,
}

/// Gates by name, made on first use by either side.
#[derive(Default)]
pub struct Gates(Mutex<HashMap<String, Arc<Gate>>>);

impl Gates {
    pub fn get(&self, name: &str) -> Arc<Gate> {
        let mut gates = self.0.lock().unwrap();
        gates.entry(name.to_string()).or_default().clone()
    }

    /// Waits until a request stands at gate `name`.
    pub async fn reached(&self, name: &str) {
        let gate = self.get(name);
        tokio::time::timeout(PATIENCE, gate.reached.notified())
            .await
            .unwrap_or_else(|_| panic!("no request reached gate `{name}`"));
    }

    /// Lets the request at gate `name` (or the next to come) through.
    pub fn release(&self, name: &str) {
        self.get(name).release.notify_one();
    }
}

/// Stops the request at gate `name` until the test releases it.
async fn pass(gates: &Gates, name: &str) -> Result<(), Status> {
    let gate = gates.get(name);
    gate.reached.notify_one();
    tokio::time::timeout(PATIENCE, gate.release.notified())
        .await
        .map_err(|_| Status::GatewayTimeout)
}

/// Stores a value; a value the session refuses is the route's 422.
fn put(session: &Session<'_>, key: &str, value: Value) -> Result<(), Status> {
    session
        .insert_value(key, value)
        .map_err(|_| Status::UnprocessableEntity)
}

/// The session as the request sees it.
fn view(session: &Session<'_>) -> Json<Value> {
    Json(json!({
        "data": Value::Object(session.data()),
        "user": session.user(),
        "read_only": session.is_read_only(),
    }))
}

#[get("/me")]
fn me(session: Session<'_>) -> Json<Value> {
    view(&session)
}

#[put("/key/<key>", data = "<value>")]
fn put_key(session: Session<'_>, key: &str, value: Json<Value>) -> Result<Json<Value>, Status> {
    put(&session, key, value.into_inner())?;
    Ok(view(&session))
}

/// Sets `key`, then waits at gate `gate`; the write happens at the
/// response, after the gate.
#[put("/slow/<gate>/<key>", data = "<value>")]
async fn slow_put(
    session: Session<'_>,
    gates: &State<Arc<Gates>>,
    gate: &str,
    key: &str,
    value: Json<Value>,
) -> Result<Json<Value>, Status> {
    put(&session, key, value.into_inner())?;
    pass(gates, gate).await?;
    Ok(view(&session))
}

/// Sets `key`, waits at the gate, then saves and answers with what `save`
/// said. With `again`, it writes once more after a failed save.
#[put("/slow-save/<gate>/<key>?<again>", data = "<value>")]
async fn slow_save(
    session: Session<'_>,
    gates: &State<Arc<Gates>>,
    gate: &str,
    key: &str,
    again: bool,
    value: Json<Value>,
) -> Result<Json<Value>, Status> {
    put(&session, key, value.into_inner())?;
    pass(gates, gate).await?;
    let saved = match session.save().await {
        Ok(()) => "saved",
        Err(Error::Gone) => "gone",
        Err(_) => "failed",
    };
    if again {
        put(&session, "again", json!(true))?;
    }
    Ok(Json(json!({ "save": saved })))
}

/// Sets `key`, then waits until every request of the round has loaded.
#[put("/gathered/<key>", data = "<value>")]
async fn gathered(
    session: Session<'_>,
    barrier: &State<Arc<Barrier>>,
    key: &str,
    value: Json<Value>,
) -> Result<Json<Value>, Status> {
    put(&session, key, value.into_inner())?;
    tokio::time::timeout(PATIENCE, barrier.wait())
        .await
        .map_err(|_| Status::GatewayTimeout)?;
    Ok(view(&session))
}

#[post("/login/<user>")]
fn login(session: Session<'_>, user: &str) -> Result<Json<Value>, (Status, String)> {
    session
        .set_user(user)
        .map_err(|e| (Status::UnprocessableEntity, e.to_string()))?;
    session.regenerate();
    Ok(view(&session))
}

#[delete("/me/user")]
fn clear_user(session: Session<'_>) -> Json<Value> {
    session.clear_user();
    view(&session)
}

#[post("/regenerate")]
fn regenerate(session: Session<'_>) -> Json<Value> {
    session.regenerate();
    view(&session)
}

#[post("/logout")]
fn logout(session: Session<'_>) -> Json<Value> {
    session.destroy();
    Json(json!({}))
}

/// A per-user error as a status: what an application would answer.
fn status(e: Error) -> Status {
    match e {
        Error::NoUser => Status::Unauthorized,
        Error::Gone => Status::Conflict,
        Error::Unsupported => Status::NotImplemented,
        _ => Status::ServiceUnavailable,
    }
}

#[get("/me/sessions")]
async fn my_sessions(session: Session<'_>) -> Result<Json<Vec<SessionInfo>>, Status> {
    session.user_sessions().await.map(Json).map_err(status)
}

#[delete("/me/sessions/<handle>")]
async fn end_one(session: Session<'_>, handle: SessionHandle) -> Result<Json<Value>, Status> {
    let ended = session
        .destroy_user_session(&handle)
        .await
        .map_err(status)?;
    Ok(Json(json!({ "ended": ended })))
}

#[post("/me/logout-others")]
async fn logout_others(session: Session<'_>) -> Result<Json<Value>, Status> {
    let ended = session.destroy_other_sessions().await.map_err(status)?;
    Ok(Json(json!({ "ended": ended })))
}

/// Waits at gate `gate` after loading, then ends the user's other
/// sessions.
#[post("/slow-logout-others/<gate>")]
async fn slow_logout_others(
    session: Session<'_>,
    gates: &State<Arc<Gates>>,
    gate: &str,
) -> Result<Json<Value>, Status> {
    pass(gates, gate).await?;
    let ended = session.destroy_other_sessions().await.map_err(status)?;
    Ok(Json(json!({ "ended": ended })))
}

#[post("/me/logout-all")]
async fn logout_all(session: Session<'_>) -> Result<Json<Value>, Status> {
    let ended = session.destroy_all_sessions().await.map_err(status)?;
    Ok(Json(json!({ "ended": ended })))
}

/// The probe routes on this test's schema, with gates and a barrier of
/// `round` requests, and a counting store.
pub struct Probe {
    pub rocket: Rocket<Build>,
    pub gates: Arc<Gates>,
    pub counts: Arc<Counts>,
}

pub fn probe(db: &TestDb, overrides: Value, round: usize) -> Probe {
    probe_on(db.figment(overrides), round)
}

/// The probe routes and a counting store on the settings of `figment`.
pub fn probe_on(figment: Figment, round: usize) -> Probe {
    let counts = Arc::new(Counts::default());
    let rocket = rocket::custom(figment).attach(Counting::fairing(counts.clone()));
    let mut probe = mount(rocket, round);
    probe.counts = counts;
    probe
}

/// The probe routes on `rocket`, which brings its own fairing.
pub fn mount(rocket: Rocket<Build>, round: usize) -> Probe {
    let gates = Arc::new(Gates::default());
    let rocket = rocket
        .manage(gates.clone())
        .manage(Arc::new(Barrier::new(round)))
        .mount(
            "/",
            routes![
                me,
                put_key,
                slow_put,
                slow_save,
                gathered,
                login,
                clear_user,
                regenerate,
                logout,
                my_sessions,
                end_one,
                logout_others,
                slow_logout_others,
                logout_all,
            ],
        );
    Probe {
        rocket,
        gates,
        counts: Arc::default(),
    }
}
