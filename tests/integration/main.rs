//! Integration tests: Rocket's local client against the real PostgreSQL.
//!
//! Each test works in a schema of its own, so the tests run in parallel.
//! Set `TESSERA_TEST_DATABASE_URL` to use another server than
//! `postgres://postgres@127.0.0.1:5432/test`.

mod common;
#[path = "../../examples/demo/api.rs"]
mod demo;
mod routes;

/// Runs each listed `async fn name(mode: Mode)` once per mode, as the
/// tests `name::postgres` and `name::cookie`.
macro_rules! both_modes {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[rocket::async_test]
            async fn postgres() {
                super::$name(crate::common::Mode::Postgres).await
            }

            #[rocket::async_test]
            async fn cookie() {
                super::$name(crate::common::Mode::Cookie).await
            }
        }
    )+};
}

mod probe;

mod bad_input;
mod both_modes;
mod cleanup;
mod concurrency;
mod cookie_users;
mod cookies;
mod demo_api;
mod failures;
mod grace;
mod launch;
mod lifecycle;
mod modes;
mod rotation;
mod sealing;
mod size;
mod users;

use std::sync::Arc;

use rocket::serde::json::Value;
use rocket::{Build, Rocket};
use rocket_tessera::Sessions;

use common::{Counting, Counts, Env, TestDb};

/// The demo's routes and the test routes, `overrides` merged into the
/// session settings of `env`.
pub fn app(env: &Env, overrides: Value) -> Rocket<Build> {
    let rocket = rocket::custom(env.figment(overrides)).attach(Sessions::fairing());
    demo::mount(rocket).mount("/", routes::all())
}

/// The same, with a counting wrapper around the store (if there is one).
pub fn counted_app(env: &Env, overrides: Value) -> (Rocket<Build>, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let rocket = rocket::custom(env.figment(overrides)).attach(Counting::fairing(counts.clone()));
    (demo::mount(rocket).mount("/", routes::all()), counts)
}

/// The demo's routes on this test's schema, `overrides` merged into the
/// session settings.
pub fn demo_app(db: &TestDb, overrides: Value) -> Rocket<Build> {
    demo::mount(rocket::custom(db.figment(overrides)).attach(Sessions::fairing()))
}

/// The demo's routes with a counting store wrapper.
pub fn counted_demo_app(db: &TestDb, overrides: Value) -> (Rocket<Build>, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let rocket = rocket::custom(db.figment(overrides)).attach(Counting::fairing(counts.clone()));
    (demo::mount(rocket), counts)
}
