//! The demo application: sign in with a name, count visits, keep notes,
//! sign out. One HTML page on top of a small JSON API.
//!
//! ```sh
//! cargo run --example demo
//! ```
//!
//! Then open <http://127.0.0.1:8000>. The settings come from the
//! repository's `Rocket.toml`.

mod api;

use rocket::launch;
use rocket_tessera::Sessions;

#[launch]
fn rocket() -> _ {
    api::mount(rocket::build().attach(Sessions::fairing()))
}
