//! Sessions for [Rocket](https://rocket.rs) 0.5, in PostgreSQL or sealed in
//! the cookie.
//!
//! A fairing sets things up at launch and writes each request's changes
//! back; a request guard, [`Session`], gives handlers a typed key-value API.
//! Where sessions live is configuration, not code ([`Mode`]):
//!
//! - **PostgreSQL mode**: the browser holds a cookie with a random id; the
//!   data lives in a PostgreSQL table keyed by the id's SHA-256 hash.
//! - **Cookie mode**: the whole session is sealed in the cookie with an
//!   AEAD under a key ring of your own (see [Cookie mode](#cookie-mode)).
//!
//! # Quick start
//!
//! Add the crate and configure the `sessions` table in `Rocket.toml`:
//!
//! ```toml
//! [default.sessions]
//! database_url = "postgres://app@127.0.0.1:5432/app"
//!
//! [debug.sessions]
//! # Plain HTTP on a developer's machine: a Secure cookie would not come back.
//! secure = false
//! ```
//!
//! Attach the fairing and take the guard in routes:
//!
//! ```rust,no_run
//! use rocket::{get, launch, post, routes};
//! use rocket_tessera::{Session, Sessions};
//!
//! #[post("/login/<name>")]
//! fn login(session: Session<'_>, name: &str) -> &'static str {
//!     // A new id whenever privileges change: a planted cookie is worthless.
//!     session.regenerate();
//!     session.insert("user", name).expect("a string is valid JSON");
//!     "signed in"
//! }
//!
//! #[get("/me")]
//! fn me(session: Session<'_>) -> Option<String> {
//!     session.get::<String>("user").ok().flatten()
//! }
//!
//! #[post("/logout")]
//! fn logout(session: Session<'_>) {
//!     session.destroy();
//! }
//!
//! #[launch]
//! fn rocket() -> _ {
//!     rocket::build()
//!         .attach(Sessions::fairing())
//!         .mount("/", routes![login, me, logout])
//! }
//! ```
//!
//! At launch the fairing connects (when a database is configured), applies
//! the bundled migrations (the SQL in the repository's `migrations/`) under
//! an advisory lock, and stops launch with one clear line if the
//! configuration or the database is not right. Every setting, with its
//! default, is documented on [`Config`].
//!
//! # One request
//!
//! - **Lazy.** A route without the guard runs no query. The first guard in
//!   a request loads the session with one query (none for a sealed cookie);
//!   further guards in the same request share it.
//! - **New sessions cost nothing** until a handler stores something: no row
//!   and no cookie before that.
//! - **Changes are a change set.** [`Session::insert`], [`Session::remove`]
//!   and [`Session::clear`] change an in-memory copy and record which keys
//!   changed. When the response goes out, the fairing writes them once. In
//!   the store that is one statement that merges the changed keys into the
//!   stored JSON object, so concurrent requests that change different keys
//!   keep each other's work (for the same key, the last writer wins). In
//!   cookie mode the response carries a new seal of the whole session, and
//!   the browser keeps the last cookie it receives: of parallel requests
//!   that write, only one request's changes survive.
//! - **Reads stay reads.** An unmodified session is not written, except for
//!   a touch that moves its idle expiry, made at most once per
//!   `touch_interval`. A write or a touch re-issues the cookie with the new
//!   lifetime; otherwise no cookie is sent.
//! - **The cookie follows the write.** `Set-Cookie` is added only after the
//!   write succeeded, with `Cache-Control: no-store`.
//! - **5xx keeps nothing.** When the response (from the handler or a
//!   catcher) has a status of 500 or above, the request's changes are
//!   dropped.
//!
//! # When things fail
//!
//! | what | answer |
//! |---|---|
//! | the store cannot be reached when loading | the guard fails with `503`, within `operation_timeout`; service resumes by itself |
//! | the write at the end of the request fails | the response becomes a `503` written by this crate; the handler's `Set-Cookie` and `Location` headers are dropped |
//! | another request destroyed the session or gave it a new id meanwhile | the response becomes a `409`; the changes are dropped, no cookie is set |
//! | a request carries an id that `regenerate()` replaced less than `regenerate_grace` seconds ago | it reads the session; a write gets the `409`, and no cookie is set |
//! | the handler wants to choose its own answer | call [`Session::save`] and match its [`Error`] |
//! | a cookie that is unknown, expired, forged or malformed | a fresh session with a new, server-chosen id |
//!
//! # Many requests, many devices, many instances
//!
//! - **No lost updates across keys, no resurrection.** Writes merge the
//!   changed keys (for one key the last writer wins);
//!   a stored session is only ever updated, so a request that outlives a
//!   logout, a new id or the session's expiry cannot bring it back. The
//!   rules are under "Concurrent requests" on [`Session`].
//! - **Grace window.** For sessions in the store, `regenerate_grace` (see
//!   [`Config`]) lets requests
//!   already on their way with the old id read, not write, for a few
//!   seconds after [`Session::regenerate`]; see [`Session::is_read_only`].
//! - **Sessions of one user.** [`Session::set_user`] ties a session to a
//!   user id, kept in a column of its own. [`Session::user_sessions`] lists
//!   that user's sessions with an opaque [`SessionHandle`] each;
//!   [`Session::destroy_user_session`], [`Session::destroy_other_sessions`]
//!   and [`Session::destroy_all_sessions`] end one, all others (a password
//!   change) or all ("log out everywhere"). [`SessionAdmin`], managed by
//!   the fairing, does the same for any user. In cookie mode the user id
//!   travels in the seal; with a store configured, ending a user's sessions
//!   also voids that user's sealed cookies (a per-user revocation
//!   generation each seal carries), and only sessions in the store are
//!   listed. Without a store these calls answer [`Error::Unsupported`].
//! - **Cleanup.** From liftoff to shutdown the fairing deletes expired rows
//!   every `cleanup_interval` seconds, in batches, one app instance at a
//!   time; see [`Sessions`]. Expired sessions are never read before that.
//!
//! # Guards built on `Session`
//!
//! A guard of your own that takes the session (a `User`, say) needs its own
//! [`Sentinel`](rocket::Sentinel) that delegates, so that an application
//! using it without the fairing fails at launch. Without one, such a route
//! answers `500` and logs why.
//!
//! ```rust
//! use rocket::request::{self, FromRequest, Request};
//! use rocket::{http::Status, Ignite, Rocket, Sentinel};
//! use rocket_tessera::Session;
//!
//! struct User(String);
//!
//! #[rocket::async_trait]
//! impl<'r> FromRequest<'r> for User {
//!     type Error = ();
//!
//!     async fn from_request(req: &'r Request<'_>) -> request::Outcome<User, ()> {
//!         match req.guard::<Session<'_>>().await {
//!             request::Outcome::Success(session) => match session.get::<String>("user") {
//!                 Ok(Some(name)) => request::Outcome::Success(User(name)),
//!                 _ => request::Outcome::Forward(Status::Unauthorized),
//!             },
//!             request::Outcome::Error((status, _)) => request::Outcome::Error((status, ())),
//!             request::Outcome::Forward(status) => request::Outcome::Forward(status),
//!         }
//!     }
//! }
//!
//! impl Sentinel for User {
//!     fn abort(rocket: &Rocket<Ignite>) -> bool {
//!         <Session<'_> as Sentinel>::abort(rocket)
//!     }
//! }
//! ```
//!
//! # Security
//!
//! - Ids are 256 bits from the operating system's CSPRNG, sent as 43
//!   characters of base64url; a cookie that does not match that grammar
//!   (or, in cookie mode, does not open) is rejected before any query. The
//!   id is never chosen by the client.
//! - The table stores only SHA-256 of the id: a copy of it holds no usable
//!   cookie value.
//! - Cookies are `HttpOnly`, `SameSite=Lax`, `Path=/` and `Secure` by
//!   default, named `__Host-session` so that browsers enforce those
//!   attributes. Settings that browsers would reject (`SameSite=None`
//!   without `Secure`, a `__Host-` name with a `Domain`) stop launch.
//! - Both an idle and an absolute timeout are enforced on the server: by
//!   the database's clock in the store, from instants inside the seal in
//!   cookie mode. The cookie's own lifetime is only a hint to the browser.
//!   [`Session::regenerate`] keeps the absolute deadline.
//! - Ids, cookie values, keys and session data never appear in this
//!   crate's logs or `Debug` output; configuration errors name the field,
//!   never the value. Rocket's own `debug` log level prints whole headers,
//!   cookies included: keep production logs at `normal` or above.
//! - `SameSite=Lax` is defence in depth, not CSRF protection: pair state
//!   changing routes with a CSRF token or an `Origin` check.
//!
//! # Testing an application
//!
//! Build the Rocket instance from a figment of its own so that neither
//! `Rocket.toml` nor `ROCKET_*` variables leak into tests:
//!
//! ```rust,no_run
//! use rocket::figment::Figment;
//! use rocket::serde::json::json;
//!
//! let figment = Figment::from(rocket::Config::debug_default()).merge((
//!     "sessions",
//!     json!({ "database_url": "postgres://postgres@127.0.0.1/test", "table": "t1.sessions" }),
//! ));
//! let rocket = rocket::custom(figment).attach(rocket_tessera::Sessions::fairing());
//! ```
//!
//! # Cookie mode
//!
//! Without a `database_url` (or with `mode = "cookie"`), sessions are sealed
//! in the cookie instead, with XChaCha20-Poly1305 or AES-256-GCM and a key
//! ring of your own, behind the same [`Session`] API. It needs no database
//! and costs no I/O, but it cannot end one copied cookie before it expires
//! (a copy that keeps being used lives until the absolute expiry), parallel
//! writes do not merge, and a sealed session must fit in 4096 bytes of
//! cookie: a larger one moves to the store when one is configured, and
//! otherwise fails to save. [`Mode`] sets the two modes side by side;
//! [`SealKey`] covers keys, their generation and rotation.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(rust_2018_idioms, missing_debug_implementations)]

mod cleanup;
mod config;
mod cookie;
mod error;
mod fairing;
mod id;
mod limits;
mod seal;
mod sealed;
mod session;
mod store;
mod users;

pub use crate::cleanup::Sweep;
pub use crate::config::{Algorithm, Config, ConfigError, Mode, SameSite, SealKey};
pub use crate::error::{Error, StoreError};
pub use crate::fairing::Sessions;
pub use crate::id::SessionId;
pub use crate::session::Session;
pub use crate::store::{ChangeSet, Expiry, Loaded, PostgresStore, Revoked, SessionStore};
pub use crate::users::{InvalidHandle, SessionAdmin, SessionHandle, SessionInfo};
