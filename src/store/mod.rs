//! The store trait and the change set it receives.
//!
//! A store keeps sessions on the server. It never sees a whole session
//! object on write: it receives the [`ChangeSet`] a request produced (keys
//! set, keys removed, a new id), so that a store can merge concurrent
//! requests' writes key by key.

mod postgres;

use serde_json::{Map, Value};

pub use self::postgres::PostgresStore;
use crate::{Error, SessionId};

/// A session as a store loaded it.
#[derive(Clone)]
pub struct Loaded {
    /// Which of the candidate ids matched (an index into the slice given to
    /// [`SessionStore::load`]).
    pub index: usize,
    /// The session's data.
    pub data: Map<String, Value>,
    /// When the session expires, idle and absolute expiry combined.
    pub expiry: Expiry,
    /// Whether loading moved the idle expiry forward (a touch), so that the
    /// response should re-issue the cookie.
    pub touched: bool,
}

/// When a session expires, as the store's clock sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// Seconds from now until expiry (the cookie's `Max-Age`).
    pub max_age: i64,
    /// The instant of expiry, in seconds since the Unix epoch (the cookie's
    /// `Expires`).
    pub unix: i64,
}

/// What one request changed in a session.
#[derive(Clone, Default, PartialEq)]
pub struct ChangeSet {
    /// Remove every key first (`Session::clear`).
    pub clear: bool,
    /// Keys to set, with their new values.
    pub set: Map<String, Value>,
    /// Keys to remove. Never overlaps `set`.
    pub remove: Vec<String>,
    /// The new id the session moves to (`Session::regenerate`).
    pub new_id: Option<SessionId>,
    /// Read by [`SessionStore::create`] only: when the session began, in
    /// seconds since the Unix epoch, for a session that began before it is
    /// stored (cookie mode moving a grown session to the store). Its
    /// absolute expiry counts from this instant. `None` means now.
    pub created_at: Option<i64>,
}

impl ChangeSet {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.clear && self.set.is_empty() && self.remove.is_empty() && self.new_id.is_none()
    }

    /// Applies the data changes to a whole session's data, in the order a
    /// store applies them: clear, then remove, then set.
    pub fn apply_to(&self, data: &mut Map<String, Value>) {
        if self.clear {
            data.clear();
        }
        for key in &self.remove {
            data.remove(key);
        }
        for (key, value) in &self.set {
            data.insert(key.clone(), value.clone());
        }
    }
}

impl std::fmt::Debug for ChangeSet {
    // Keys are the application's names, not data; values stay hidden.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeSet")
            .field("clear", &self.clear)
            .field("set", &self.set.keys().collect::<Vec<_>>())
            .field("remove", &self.remove)
            .field("new_id", &self.new_id.is_some())
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("index", &self.index)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("expiry", &self.expiry)
            .field("touched", &self.touched)
            .finish()
    }
}

/// Where server-side sessions live.
///
/// Object-safe, so that the [`Session`](crate::Session) guard does not
/// depend on the backend. Every call is bounded by `operation_timeout` by the
/// caller; a store does not need its own timeout.
///
/// Timestamps and expiry are the store's business: the PostgreSQL store
/// computes them with the database's clock, so that many app instances
/// agree.
#[rocket::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Loads the first live session among `candidates` (in order), moving
    /// its idle expiry forward when the touch interval has passed.
    ///
    /// Returns `Ok(None)` when none of the ids names a live session.
    async fn load(&self, candidates: &[SessionId]) -> Result<Option<Loaded>, Error>;

    /// Stores a new session under `id`, with the data in `changes`
    /// (`changes.new_id` is ignored: `id` is already new). Its absolute
    /// expiry counts from `changes.created_at` when set, else from now.
    async fn create(&self, id: &SessionId, changes: &ChangeSet) -> Result<Expiry, Error>;

    /// Applies `changes` to the live session `id` in one step, moving it to
    /// `changes.new_id` if set, and refreshes its idle expiry.
    ///
    /// Returns [`Error::Gone`] when no live session has that id any more
    /// (destroyed, regenerated or expired meanwhile): a store never
    /// re-creates a session on update.
    async fn update(&self, id: &SessionId, changes: &ChangeSet) -> Result<Expiry, Error>;

    /// Deletes the session `id`; deleting an absent session succeeds.
    async fn destroy(&self, id: &SessionId) -> Result<(), Error>;
}
