//! The crate's public error type.

use std::error::Error as StdError;
use std::fmt;

/// What went wrong with a session.
///
/// `Display` and `Debug` print the same short, lowercase description. Neither
/// ever contains a session id, a cookie value or session data: Rocket logs a
/// failed guard's error with `{:?}`, and errors end up in logs.
#[non_exhaustive]
pub enum Error {
    /// The session store failed: the connection broke, a statement was
    /// rejected, or the pool could not hand out a connection.
    Store(StoreError),
    /// The store did not answer within `operation_timeout`.
    Timeout,
    /// The session was destroyed or given a new id by another request (or
    /// it expired) while this request was running, so this request's
    /// changes were dropped rather than bringing it back. Also the answer
    /// to any write through an id that
    /// [`regenerate`](crate::Session::regenerate) replaced, while its grace
    /// window lets it read (see [`Session::is_read_only`](crate::Session::is_read_only)).
    Gone,
    /// A value could not be converted to or from JSON.
    Value {
        /// The key whose value did not convert.
        key: String,
        /// What kind of mismatch it was, without the value itself.
        reason: String,
    },
    /// Storing a value would make the session's data larger than
    /// `max_size` allows; the value was not stored.
    TooLarge {
        /// The size the data would have had, in bytes of JSON.
        size: usize,
        /// The configured `max_size`.
        limit: usize,
    },
    /// The [`Sessions`](crate::Sessions) fairing is not attached to this
    /// Rocket instance.
    NotAttached,
    /// Loading the session failed earlier in this request; the cause was
    /// logged then.
    Unavailable,
    /// Cookie mode: the sealed session would exceed what browsers keep of a
    /// cookie, and no store is configured to move it to. The previous
    /// cookie stays valid; the changes were dropped.
    CookieTooLarge {
        /// Bytes of cookie name and value the session would have taken.
        size: usize,
        /// The most a browser keeps: 4096.
        limit: usize,
    },
    /// A per-user operation was asked of a session that belongs to no user
    /// (see [`Session::set_user`](crate::Session::set_user)).
    NoUser,
    /// A user id was empty, longer than 512 bytes, or held a NUL character,
    /// which PostgreSQL's `text` cannot store.
    InvalidUser,
    /// The operation is not available here: there is no session store
    /// (cookie mode without one), the store does not implement it (a
    /// custom [`SessionStore`](crate::SessionStore) that keeps the trait's
    /// default), or cookie mode cannot honour it (ending all of a user's
    /// sessions, while their sealed cookies would stay valid).
    Unsupported,
}

impl Error {
    /// Wraps a store's error. `summary` is what `Display` shows: it must not
    /// contain ids or session data. `source` stays reachable through
    /// [`std::error::Error::source`].
    pub fn store<E>(summary: impl Into<String>, source: E) -> Error
    where
        E: StdError + Send + Sync + 'static,
    {
        Error::Store(StoreError {
            summary: summary.into(),
            source: Some(Box::new(source)),
        })
    }

    /// A store error without an underlying source.
    pub fn store_msg(summary: impl Into<String>) -> Error {
        Error::Store(StoreError {
            summary: summary.into(),
            source: None,
        })
    }

    pub(crate) fn value(key: &str, err: &serde_json::Error) -> Error {
        use serde_json::error::Category;
        let reason = match err.classify() {
            Category::Data => "the stored value has another type or shape",
            Category::Syntax | Category::Eof => "the value is not valid JSON",
            Category::Io => "the value could not be written",
        };
        Error::Value {
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Store(e) => write!(f, "session store failed: {}", e.summary),
            Error::Timeout => f.write_str("session store did not answer in time"),
            Error::Gone => f.write_str("session was ended or given a new id by another request"),
            Error::Value { key, reason } => write!(f, "session value `{key}`: {reason}"),
            Error::TooLarge { size, limit } => {
                write!(
                    f,
                    "session data would be {size} bytes, over the limit of {limit} (max_size)"
                )
            }
            Error::NotAttached => f.write_str(
                "the Session guard was used, but the rocket_tessera fairing is not attached",
            ),
            Error::Unavailable => f.write_str("session could not be loaded"),
            Error::CookieTooLarge { size, limit } => write!(
                f,
                "session does not fit in a cookie: {size} bytes of name and value, \
                 browsers keep at most {limit}"
            ),
            Error::NoUser => f.write_str("the session belongs to no user"),
            Error::InvalidUser => {
                f.write_str("a user id must be 1 to 512 bytes without NUL characters")
            }
            Error::Unsupported => {
                f.write_str("the session store or mode in use does not support this operation")
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Store(e) => e.source.as_deref().map(|s| s as &(dyn StdError + 'static)),
            _ => None,
        }
    }
}

/// The details of [`Error::Store`]: a summary that is safe to log, and the
/// backend's own error as the source.
pub struct StoreError {
    summary: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl StoreError {
    /// The loggable summary.
    pub fn summary(&self) -> &str {
        &self.summary
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)
    }
}
