//! Integration tests: Rocket's local client against the real PostgreSQL.
//!
//! Each test works in a schema of its own, so the tests run in parallel.
//! Set `TESSERA_TEST_DATABASE_URL` to use another server than
//! `postgres://postgres@127.0.0.1:5432/test`.

mod common;
#[path = "../../examples/demo/api.rs"]
mod demo;

mod bad_input;
mod cookies;
mod demo_api;
mod failures;
mod launch;
mod lifecycle;

use std::sync::Arc;

use rocket::serde::json::Value;
use rocket::{Build, Rocket};
use rocket_tessera::Sessions;

use common::{Counting, Counts, TestDb};

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
