//! Server-side sessions for Rocket.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod cookie;
mod error;
mod fairing;
mod id;
mod session;
mod store;

pub use crate::config::{Config, ConfigError, SameSite};
pub use crate::error::{Error, StoreError};
pub use crate::fairing::Sessions;
pub use crate::id::SessionId;
pub use crate::session::Session;
pub use crate::store::{ChangeSet, Expiry, Loaded, PostgresStore, SessionStore};
