//! The demo application: sign in with a name, count visits, keep notes,
//! sign out. One HTML page on top of a small JSON API.
//!
//! ```sh
//! cargo run --example demo                      # sessions sealed in the cookie
//! ROCKET_PROFILE=pg cargo run --example demo    # sessions in PostgreSQL
//! ```
//!
//! Then open <http://127.0.0.1:8000>. The settings come from the
//! repository's `Rocket.toml`: its default profile has no database, so the
//! first command needs no PostgreSQL; the `pg` profile adds one.

mod api;

use rocket_tessera::Sessions;

#[rocket::main]
async fn main() {
    let rocket = api::mount(rocket::build().attach(Sessions::fairing()));
    if let Err(e) = rocket.launch().await {
        // The cause was logged above; end without a panic's backtrace.
        eprintln!("the demo did not start: {}", e.kind());
        std::process::exit(1);
    }
}
