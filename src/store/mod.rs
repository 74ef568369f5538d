//! The store trait and the change set it receives.
//!
//! A store keeps sessions on the server. It never sees a whole session
//! object on write: it receives the [`ChangeSet`] a request produced (keys
//! set, keys removed, a new id, the owning user), so that a store can merge
//! concurrent requests' writes key by key.

mod postgres;

use serde_json::{Map, Value};

pub use self::postgres::PostgresStore;
use crate::{Error, SessionHandle, SessionId, SessionInfo};

/// A session as a store loaded it.
///
/// A custom store builds it with [`Loaded::new`] and the `with_*` methods,
/// so that fields added later do not break it.
#[derive(Clone)]
#[non_exhaustive]
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
    /// The user the session belongs to (the `user_id` column), kept apart
    /// from `data`.
    pub user: Option<String>,
    /// The candidate matched the id the session had before its last
    /// regenerate, inside the grace window: the request may read the
    /// session but not write it. A store that loads this way must not
    /// touch the session either.
    pub read_only: bool,
    /// When the session began, in seconds since the Unix epoch, if the
    /// store knows: cookie mode's `not_before` rejects sessions that moved
    /// to the store as it rejects sealed ones.
    pub created: Option<i64>,
}

impl Loaded {
    /// A session loaded through candidate `index`: not touched, no user,
    /// writable.
    pub fn new(index: usize, data: Map<String, Value>, expiry: Expiry) -> Loaded {
        Loaded {
            index,
            data,
            expiry,
            touched: false,
            user: None,
            read_only: false,
            created: None,
        }
    }

    /// Marks the load as a touch that moved the idle expiry.
    pub fn with_touched(mut self, touched: bool) -> Loaded {
        self.touched = touched;
        self
    }

    /// Sets the user the session belongs to.
    pub fn with_user(mut self, user: Option<String>) -> Loaded {
        self.user = user;
        self
    }

    /// Sets when the session began, in seconds since the Unix epoch.
    pub fn with_created(mut self, created: Option<i64>) -> Loaded {
        self.created = created;
        self
    }

    /// Marks the load as made through a previous id in its grace window.
    pub fn with_read_only(mut self, read_only: bool) -> Loaded {
        self.read_only = read_only;
        self
    }
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

/// What [`SessionStore::destroy_user`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Revoked {
    /// How many live sessions were deleted.
    pub ended: u64,
    /// The user's revocation generation from now on.
    pub generation: i64,
}

impl Revoked {
    /// What a store reports after deleting `ended` live sessions and moving
    /// the user to `generation`.
    pub fn new(ended: u64, generation: i64) -> Revoked {
        Revoked { ended, generation }
    }
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
    /// The new id the session moves to (`Session::regenerate`). A store
    /// that supports a grace window keeps the old id readable, and only
    /// readable, for that long.
    pub new_id: Option<SessionId>,
    /// Read by [`SessionStore::create`] only: when the session began, in
    /// seconds since the Unix epoch, for a session that began before it is
    /// stored (cookie mode moving a grown session to the store). Its
    /// absolute expiry counts from this instant. `None` means now.
    pub created_at: Option<i64>,
    /// The owning user, when this request changed it: `Some(Some(id))`
    /// sets it, `Some(None)` clears it, `None` leaves the stored value
    /// alone (another request may have changed it meanwhile).
    pub user: Option<Option<String>>,
    /// Read by [`SessionStore::create`] only: the user's revocation
    /// generation the session was made under (cookie mode moving a sealed
    /// session to the store). `None` means the user's present generation.
    pub user_generation: Option<i64>,
}

impl ChangeSet {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.clear
            && self.set.is_empty()
            && self.remove.is_empty()
            && self.new_id.is_none()
            && self.user.is_none()
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
            .field(
                "user",
                &match &self.user {
                    None => "unchanged",
                    Some(Some(_)) => "set",
                    Some(None) => "cleared",
                },
            )
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
            .field("user", &self.user.is_some())
            .field("read_only", &self.read_only)
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
///
/// The per-user methods and [`sweep_expired`](SessionStore::sweep_expired)
/// have defaults that answer [`Error::Unsupported`], so a store that only
/// keeps sessions compiles with the four required methods. A wrapper around
/// another store (for counting or tracing) must forward them too, or the
/// defaults hide the inner store's support.
///
/// # Semantics every store keeps
///
/// - `update` changes only the keys in the change set: concurrent requests
///   that change different keys both survive, and for one key the last
///   writer wins.
/// - `update` never creates a session: when the id names no live session,
///   it answers [`Error::Gone`].
/// - The user id is not part of the data; it changes only when the change
///   set says so, and follows the session to a new id.
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

    /// The live sessions of `user`, most recently seen first.
    ///
    /// [`SessionInfo::is_current`] is left `false`; the caller sets it.
    async fn list_user(&self, user: &str) -> Result<Vec<SessionInfo>, Error> {
        let _ = user;
        Err(Error::Unsupported)
    }

    /// Deletes the live session of `user` whose handle is `handle`.
    /// Returns whether there was one; a handle of another user's session
    /// deletes nothing.
    async fn destroy_by_handle(&self, user: &str, handle: &SessionHandle) -> Result<bool, Error> {
        let _ = (user, handle);
        Err(Error::Unsupported)
    }

    /// Deletes every session of `user` except `keep`, and moves the user's
    /// [`user_generation`](SessionStore::user_generation) forward by one,
    /// which voids the user's sealed cookies (sessions the store cannot
    /// delete) and any session stored under an older generation; `keep`
    /// moves to the new generation.
    ///
    /// With `expected_generation`, the generation moves only from that
    /// value: when another revocation came first, nothing happens and the
    /// answer is [`Error::Gone`], so that a request which loaded its
    /// session before that revocation cannot outlive it.
    async fn destroy_user(
        &self,
        user: &str,
        keep: Option<&SessionId>,
        expected_generation: Option<i64>,
    ) -> Result<Revoked, Error> {
        let _ = (user, keep, expected_generation);
        Err(Error::Unsupported)
    }

    /// How many times [`destroy_user`](SessionStore::destroy_user) ended
    /// the sessions of `user`; 0 when never (or when the record was swept,
    /// 400 days after the last time).
    ///
    /// The stored sessions are deleted by `destroy_user` already; this is
    /// for sessions a store cannot delete: a sealed cookie carries the
    /// generation of its user from when it was sealed and stops opening
    /// once this has moved past it.
    async fn user_generation(&self, user: &str) -> Result<i64, Error> {
        let _ = user;
        Err(Error::Unsupported)
    }

    /// Deletes at most `batch` expired sessions, by the store's clock.
    ///
    /// Returns `Ok(None)` when another instance is sweeping right now (the
    /// PostgreSQL store holds an advisory lock per batch), else how many
    /// rows were deleted; fewer than `batch` ends the sweep.
    async fn sweep_expired(&self, batch: u64) -> Result<Option<u64>, Error> {
        let _ = batch;
        Err(Error::Unsupported)
    }
}
