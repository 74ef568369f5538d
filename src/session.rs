//! The `Session` request guard and its API.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};
use rocket::{Ignite, Request, Rocket, Sentinel};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cookie;
use crate::fairing::{Backend, Shared};
use crate::limits;
use crate::sealed::{self, Job, Meta, Written};
use crate::store::{ChangeSet, Expiry, SessionStore};
use crate::users::check_user;
use crate::{Error, SessionId};

/// The session of the current request: a request guard.
///
/// Take it as an argument of any route that reads or changes the session.
/// The session loads the first time a guard asks for it in a request (one
/// store query at most, however many guards ask) and routes without the
/// guard cost nothing. Changes are kept in memory and written once, when
/// the response goes out, by the [`Sessions`](crate::Sessions) fairing.
///
/// Values are stored as JSON under string keys. The API and its behaviour
/// are the same in both modes ([`Mode`](crate::Mode)); where the modes
/// differ (what `destroy()` and `regenerate()` can do about copies of an
/// old cookie), the method says so.
///
/// ```rust
/// use rocket::{get, post, serde::json::Json};
/// use rocket_tessera::Session;
///
/// #[post("/visit")]
/// fn visit(session: Session<'_>) -> Result<String, rocket::http::Status> {
///     let visits: u64 = session.get("visits").map_err(|_| rocket::http::Status::Conflict)?
///         .unwrap_or(0);
///     session.insert("visits", visits + 1).expect("a u64 is valid JSON");
///     Ok(format!("visit number {}", visits + 1))
/// }
///
/// #[get("/whoami")]
/// fn whoami(session: Session<'_>) -> Option<String> {
///     session.get::<String>("user").ok().flatten()
/// }
/// ```
///
/// If the store cannot be reached, the guard fails with `503 Service
/// Unavailable` within `operation_timeout`; if the fairing is not
/// attached, launch fails (see the [`Sentinel`] implementation).
///
/// # Concurrent requests
///
/// Browsers send several requests of one session at once, and each request
/// works on its own copy. When the response goes out, the request writes
/// only what it changed, in one statement:
///
/// - Keys set and keys removed are merged into the stored session, so
///   concurrent requests that change *different* keys all keep their
///   changes. For the *same* key, the request that writes last wins; a
///   read-modify-write of one key (a counter) can lose an increment to a
///   concurrent one.
/// - [`clear`](Session::clear) empties the stored session as it is when
///   the write happens, keys other requests wrote meanwhile included.
/// - A stored session is only ever updated, never created again: if
///   another request destroyed it, gave it a new id, or ended all of its
///   user's sessions while this one ran (or it expired meanwhile), this
///   request's changes are dropped, logged once, and its response is
///   replaced by the crate's own `409 Conflict` with no session cookie and
///   no `Location`. [`save`](Session::save) reports the same case as
///   [`Error::Gone`] for the handler to answer itself; writes after that
///   in the same request are refused the same way.
/// - After [`regenerate`](Session::regenerate), the old id reads the
///   session for `regenerate_grace` seconds (default 0) and cannot write
///   it; see [`is_read_only`](Session::is_read_only).
///
/// These rules hold for sessions in the store. A session sealed in the
/// cookie (cookie mode) is written whole by each response, and the browser
/// keeps the cookie of the last one.
///
/// # Sessions of one user
///
/// [`set_user`](Session::set_user) ties the session to a user id, kept
/// apart from the data. The session can then list its user's sessions and
/// end them: one by its [`SessionHandle`](crate::SessionHandle), all others
/// (after a password change), or all ("log out everywhere").
/// [`SessionAdmin`](crate::SessionAdmin) does the same for any user. In
/// cookie mode the user id is sealed with the session; see
/// [`user_sessions`](Session::user_sessions) for what cookie mode can do.
pub struct Session<'r> {
    state: &'r Mutex<State>,
    shared: &'r Shared,
}

/// The request-local slot the guard fills and the fairing reads.
pub(crate) enum Slot {
    /// No guard asked for the session in this request.
    Unused,
    /// Loading failed; the cause was logged.
    Failed,
    /// The session, loaded or new.
    Ready(Box<Mutex<State>>),
}

/// One request's view of its session.
pub(crate) struct State {
    /// Where the session lives, if anywhere yet.
    backing: Backing,
    data: Map<String, Value>,
    changes: ChangeSet,
    regenerate: bool,
    /// `destroy()` was called; the stored id to delete, if any.
    destroy: Option<Option<SessionId>>,
    /// The request carried a value under our cookie name.
    had_cookie: bool,
    /// The load moved the idle expiry: the cookie is due again.
    touched: Option<Expiry>,
    /// The data's size as JSON, computed when first needed.
    size: Option<usize>,
    /// The user the session belongs to, as this request sees it.
    user: Option<String>,
    /// The store's revocation generation of a user, when this request read
    /// it (cookie mode): a new seal for that user carries it.
    user_generation: Option<(String, i64)>,
    /// Loaded through the id the session had before its last regenerate:
    /// every write is refused.
    read_only: bool,
    /// A write was refused (read-only) or found the session gone, and that
    /// was logged: later writes are refused without another log line.
    gone: bool,
    /// What the response must do with the cookie after writes that
    /// succeeded.
    pub(crate) outcome: Option<CookieOutcome>,
}

/// What backs a request's session.
enum Backing {
    /// Nothing yet: a new session, or one destroyed in this request.
    New,
    /// A session in the store under this id (PostgreSQL mode, or a cookie
    /// mode session that outgrew the cookie).
    Stored(SessionId),
    /// A session sealed in the cookie (cookie mode).
    Sealed {
        meta: Meta,
        /// The data as the cookie holds it; changes apply to it.
        base: Map<String, Value>,
        /// The cookie is due to be sealed again even if nothing changes.
        reseal: bool,
    },
}

impl Backing {
    fn is_new(&self) -> bool {
        matches!(self, Backing::New)
    }
}

/// The cookie the response carries.
pub(crate) enum CookieOutcome {
    Issue(String, Expiry),
    Remove,
}

/// Why a flush wrote nothing.
enum Refusal {
    /// The session was loaded through its previous id.
    ReadOnly,
    /// An earlier write of this request found the session gone.
    AlreadyGone,
}

/// The store calls one flush makes, taken out of the state so that no lock
/// is held while they run.
struct Plan {
    destroy: Option<Option<SessionId>>,
    write: Option<Write>,
}

enum Write {
    Create(SessionId, ChangeSet),
    Update(SessionId, ChangeSet),
    Seal(Job),
}

impl State {
    fn fresh(had_cookie: bool) -> State {
        State {
            backing: Backing::New,
            data: Map::new(),
            changes: ChangeSet::default(),
            regenerate: false,
            destroy: None,
            had_cookie,
            touched: None,
            size: None,
            user: None,
            user_generation: None,
            read_only: false,
            gone: false,
            outcome: None,
        }
    }

    /// The known revocation generation of `user`, if this request read it.
    fn generation_of(&self, user: &Option<String>) -> Option<i64> {
        match (user, &self.user_generation) {
            (Some(user), Some((known, generation))) if user == known => Some(*generation),
            (None, _) => Some(0),
            _ => None,
        }
    }

    /// The writes this request's changes need; `sealing` tells whether new
    /// sessions go into the cookie (cookie mode) or the store. Refused when
    /// the request may not write its session.
    fn plan(&mut self, sealing: bool) -> Result<Plan, Refusal> {
        let changes = std::mem::take(&mut self.changes);
        let regenerate = std::mem::take(&mut self.regenerate);
        let changed = regenerate || !changes.is_empty();
        if (changed || self.destroy.is_some()) && (self.read_only || self.gone) {
            self.destroy = None;
            let refusal = if self.gone {
                Refusal::AlreadyGone
            } else {
                Refusal::ReadOnly
            };
            self.gone = true;
            return Err(refusal);
        }

        let user = self.user.clone();
        let generation = self.generation_of(&user);
        let write = match &mut self.backing {
            Backing::Stored(id) if changed => {
                let new_id = regenerate.then(SessionId::generate);
                Some(Write::Update(id.clone(), ChangeSet { new_id, ..changes }))
            }
            Backing::Stored(_) => None,
            Backing::Sealed { meta, base, reseal } if changed || *reseal => {
                *reseal = false;
                let mut data = base.clone();
                changes.apply_to(&mut data);
                Some(Write::Seal(Job {
                    meta: Some(meta.clone()),
                    regenerate,
                    data,
                    user,
                    changed,
                    generation,
                }))
            }
            Backing::Sealed { .. } => None,
            // A new session is stored once something was set in it, or it
            // was given a user.
            Backing::New if changes.set.is_empty() && !matches!(changes.user, Some(Some(_))) => {
                None
            }
            Backing::New if sealing => Some(Write::Seal(Job {
                meta: None,
                regenerate: false,
                data: self.data.clone(),
                user,
                changed: true,
                generation,
            })),
            Backing::New => {
                let all = ChangeSet {
                    set: self.data.clone(),
                    user: self.user.clone().map(Some),
                    ..ChangeSet::default()
                };
                Some(Write::Create(SessionId::generate(), all))
            }
        };
        Ok(Plan {
            destroy: self.destroy.take(),
            write,
        })
    }

    /// Sets `key`, refusing values the store could not keep and data that
    /// would grow past `max_size`.
    fn set(&mut self, key: String, value: Value, max_size: usize) -> Result<(), Error> {
        if self.data.get(&key) == Some(&value) {
            return Ok(());
        }
        limits::check(&key, &value)?;
        let old = self
            .data
            .get(&key)
            .map_or(0, |v| limits::entry_len(&key, v));
        let size = self.size() - old + limits::entry_len(&key, &value);
        if size > max_size {
            return Err(Error::TooLarge {
                size,
                limit: max_size,
            });
        }
        self.size = Some(size);
        self.changes.remove.retain(|k| *k != key);
        self.changes.set.insert(key.clone(), value.clone());
        self.data.insert(key, value);
        Ok(())
    }

    fn size(&mut self) -> usize {
        let data = &self.data;
        *self.size.get_or_insert_with(|| limits::json_len(data))
    }
}

impl Plan {
    async fn run(self, shared: &Shared, state: &Mutex<State>) -> Result<(), Error> {
        if let Some(stored) = self.destroy {
            if let Some(id) = &stored {
                shared.call(store(shared)?.destroy(id)).await?;
            }
            let mut state = lock(state);
            if stored.is_some() || state.had_cookie {
                state.outcome = Some(CookieOutcome::Remove);
            }
        }
        let written = match self.write {
            None => return Ok(()),
            Some(Write::Create(id, changes)) => {
                let expiry = shared.call(store(shared)?.create(&id, &changes)).await?;
                Written::Stored(id, expiry)
            }
            Some(Write::Update(id, changes)) => {
                let expiry = shared.call(store(shared)?.update(&id, &changes)).await?;
                Written::Stored(changes.new_id.unwrap_or(id), expiry)
            }
            Some(Write::Seal(job)) => match &shared.backend {
                Backend::Cookie { ring, .. } => sealed::write(shared, ring, job).await?,
                Backend::Store(_) => return Err(Error::store_msg("cookie mode is not in use")),
            },
        };

        let mut state = lock(state);
        match written {
            Written::Stored(id, expiry) => {
                state.outcome = Some(CookieOutcome::Issue(id.encode(), expiry));
                state.backing = Backing::Stored(id);
                state.touched = None;
            }
            Written::Sealed {
                value,
                expiry,
                meta,
                data,
            } => {
                state.outcome = Some(CookieOutcome::Issue(value, expiry));
                state.backing = Backing::Sealed {
                    meta,
                    base: data,
                    reseal: false,
                };
            }
            Written::Kept => {}
        }
        Ok(())
    }
}

/// The store that a stored session's writes go to.
fn store(shared: &Shared) -> Result<&dyn crate::SessionStore, Error> {
    shared
        .store()
        .map(|store| &**store)
        .ok_or_else(|| Error::store_msg("no session store is configured"))
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while the lock was held left plain data behind, still usable.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes the pending changes of a request's session, logging a failure
/// once: here, whether the caller is `save()` or the response fairing.
pub(crate) async fn flush(shared: &Shared, state: &Mutex<State>) -> Result<(), Error> {
    let plan = match lock(state).plan(shared.is_sealing()) {
        Ok(plan) => plan,
        Err(Refusal::ReadOnly) => {
            log::warn!(
                "sessions: changes dropped: the request came with an id that \
                 regenerate replaced, which may only read during the grace window"
            );
            return Err(Error::Gone);
        }
        Err(Refusal::AlreadyGone) => return Err(Error::Gone),
    };
    let result = plan.run(shared, state).await;
    match &result {
        Ok(()) => {}
        Err(e @ Error::Gone) => {
            lock(state).gone = true;
            log::warn!("sessions: changes dropped: {e}");
        }
        Err(e @ Error::Timeout) => log::error!("sessions: cannot confirm the session write: {e}"),
        Err(e) => log::error!("sessions: cannot save the session: {e}"),
    }
    result
}

/// The cookie a response needs once its writes are done: the outcome of
/// the writes, else a re-issue after a touch.
pub(crate) fn finish(state: &Mutex<State>) -> Option<CookieOutcome> {
    let mut state = lock(state);
    if let Some(outcome) = state.outcome.take() {
        return Some(outcome);
    }
    let touched = state.touched.take();
    match (&state.backing, touched) {
        (Backing::Stored(id), Some(expiry)) => Some(CookieOutcome::Issue(id.encode(), expiry)),
        _ => None,
    }
}

/// Drops what a request changed, keeping only the outcome of writes that
/// already happened (through `save()`).
pub(crate) fn committed_outcome(state: &Mutex<State>) -> Option<CookieOutcome> {
    lock(state).outcome.take()
}

impl<'r> Session<'r> {
    fn state(&self) -> MutexGuard<'r, State> {
        lock(self.state)
    }

    /// The value stored under `key`, converted to `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Value`] when the stored value does not convert to `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.state().data.get(key) {
            None => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|e| Error::value(key, &e)),
        }
    }

    /// The JSON value stored under `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.state().data.get(key).cloned()
    }

    /// Stores `value` under `key`. Storing the value a key already holds
    /// changes nothing and causes no write.
    ///
    /// # Errors
    ///
    /// - [`Error::Value`] when `value` cannot be represented as JSON (a map
    ///   with non-string keys, say), or breaks the rules of
    ///   [`Session::insert_value`];
    /// - [`Error::TooLarge`] when the session's data would outgrow
    ///   `max_size`.
    pub fn insert<T: Serialize>(&self, key: impl Into<String>, value: T) -> Result<(), Error> {
        let key = key.into();
        let value = serde_json::to_value(value).map_err(|e| Error::value(&key, &e))?;
        self.insert_value(key, value)
    }

    /// Stores a JSON value under `key`. Storing the value a key already
    /// holds changes nothing and causes no write.
    ///
    /// # Errors
    ///
    /// - [`Error::Value`] when the key or value holds a NUL character
    ///   (PostgreSQL cannot store it) or the value nests more than 64
    ///   levels deep;
    /// - [`Error::TooLarge`] when the session's data would outgrow
    ///   `max_size`.
    ///
    /// The session is unchanged after an error.
    pub fn insert_value(&self, key: impl Into<String>, value: Value) -> Result<(), Error> {
        self.state()
            .set(key.into(), value, self.shared.config.max_size)
    }

    /// Removes `key`, returning the value it held.
    pub fn remove(&self, key: &str) -> Option<Value> {
        let mut state = self.state();
        let old = state.data.remove(key)?;
        let freed = limits::entry_len(key, &old);
        if let Some(size) = &mut state.size {
            *size -= freed;
        }
        state.changes.set.remove(key);
        if !state.changes.clear && !state.changes.remove.iter().any(|k| k == key) {
            state.changes.remove.push(key.to_string());
        }
        Some(old)
    }

    /// Removes every key; the session itself, and its id, stay.
    pub fn clear(&self) {
        let mut state = self.state();
        if state.data.is_empty() && state.changes.is_empty() {
            return;
        }
        state.data.clear();
        state.size = None;
        state.changes.clear = true;
        state.changes.set.clear();
        state.changes.remove.clear();
    }

    /// A copy of all the session's data.
    pub fn data(&self) -> Map<String, Value> {
        self.state().data.clone()
    }

    /// Whether the session holds no keys.
    pub fn is_empty(&self) -> bool {
        self.state().data.is_empty()
    }

    /// Whether no stored session backs this request (yet): the request
    /// carried no valid cookie, or the session was destroyed.
    pub fn is_new(&self) -> bool {
        self.state().backing.is_new()
    }

    /// Gives the session a new id and keeps its data and its user: the
    /// defence against session fixation, to call whenever privileges change
    /// (sign-in, sign-out, password change).
    ///
    /// In PostgreSQL mode the id changes in the same statement as the
    /// request's other changes. With `regenerate_grace = 0` (the default)
    /// the old id stops working at once: a request still running with it
    /// gets a 409 when it writes, and a request arriving with it finds no
    /// session. With a grace of N seconds, a request arriving with the old
    /// id in those N seconds reads the session as it is under the new id,
    /// but cannot write it (a 409, and no cookie, so the client keeps the
    /// new id); the response to it never reveals the new id. In cookie mode
    /// the session gets a new id and a fresh seal; a copy of the old cookie
    /// still opens until it expires, as nothing on the server remembers it
    /// (`not_before` in the configuration is the way to reject every older
    /// session). On a new session this does nothing: it gets a fresh id
    /// when first stored anyway.
    pub fn regenerate(&self) {
        let mut state = self.state();
        if !state.backing.is_new() {
            state.regenerate = true;
        }
    }

    /// Ends the session: its data and its user go, the stored row (if any)
    /// is deleted, and the response clears the cookie with a removal cookie
    /// of the same name, path and domain. Keys inserted afterwards start a
    /// new session with a new id.
    ///
    /// In cookie mode this relies on the browser: a copy of the sealed
    /// cookie taken before still opens until it expires.
    pub fn destroy(&self) {
        let mut state = self.state();
        if !state.read_only {
            // A session found gone may still be ended explicitly.
            state.gone = false;
        }
        state.user = None;
        let stored = match std::mem::replace(&mut state.backing, Backing::New) {
            Backing::Stored(id) => Some(id),
            Backing::New | Backing::Sealed { .. } => None,
        };
        let destroy = match state.destroy.take() {
            Some(Some(earlier)) => Some(earlier),
            _ => stored,
        };
        state.destroy = Some(destroy);
        state.data.clear();
        state.size = None;
        state.changes = ChangeSet::default();
        state.regenerate = false;
        state.touched = None;
    }

    /// Writes the pending changes now instead of when the response goes
    /// out, so that the handler can choose its own answer when the write
    /// fails. The cookie still goes out with the response.
    ///
    /// # Errors
    ///
    /// - [`Error::Store`] or [`Error::Timeout`] when the store failed;
    /// - [`Error::Gone`] when another request destroyed the session or gave
    ///   it a new id meanwhile;
    /// - [`Error::CookieTooLarge`] in cookie mode, when the session no longer
    ///   fits in a cookie and no store is configured to move it to.
    ///
    /// On error the pending changes are dropped: they are neither retried
    /// when the response goes out nor answered with a cookie. After
    /// [`Error::Timeout`] the outcome is unknown: the statement may still
    /// have run on the server after the crate stopped waiting. After
    /// [`Error::Gone`], later writes in this request are refused too.
    pub async fn save(&self) -> Result<(), Error> {
        flush(self.shared, self.state).await
    }

    /// Whether this request came with the id the session had before its
    /// last [`regenerate`](Session::regenerate), inside the
    /// `regenerate_grace` window. The session then reads as usual, but any
    /// write (`destroy()` included) ends in [`Error::Gone`] and a 409, and
    /// the response sets no cookie. Always `false` with no grace window.
    ///
    /// A handler can tell the client to retry instead of trying a write
    /// that will fail:
    ///
    /// ```rust
    /// use rocket::{http::Status, post};
    /// use rocket_tessera::Session;
    ///
    /// #[post("/cart/<item>")]
    /// fn add_to_cart(session: Session<'_>, item: u32) -> Result<&'static str, Status> {
    ///     if session.is_read_only() {
    ///         // The browser has the new cookie by now; a retry carries it.
    ///         return Err(Status::Conflict);
    ///     }
    ///     let mut cart: Vec<u32> = session.get("cart").ok().flatten().unwrap_or_default();
    ///     cart.push(item);
    ///     session.insert("cart", cart).map_err(|_| Status::InternalServerError)?;
    ///     Ok("added")
    /// }
    /// ```
    pub fn is_read_only(&self) -> bool {
        self.state().read_only
    }

    /// The user this session belongs to, if any.
    pub fn user(&self) -> Option<String> {
        self.state().user.clone()
    }

    /// Ties the session to `user` (an id of your choosing: a primary key,
    /// a UUID, an email), so that it shows up in the user's listing and
    /// ends with "log out everywhere". The user id is stored in a column of
    /// its own, not among the data, and is written with the request's
    /// other changes; it stays with the session across
    /// [`regenerate`](Session::regenerate). Setting the user a session
    /// already has changes nothing. A new session is stored once it has a
    /// user, even without data.
    ///
    /// Call [`regenerate`](Session::regenerate) on sign-in as well.
    ///
    /// ```rust
    /// use rocket::{http::Status, post};
    /// use rocket_tessera::Session;
    ///
    /// #[post("/login")]
    /// fn login(session: Session<'_>) -> Result<&'static str, Status> {
    ///     // ... check the credentials, find the user's id ...
    ///     session.regenerate();
    ///     session.set_user("user-42").map_err(|_| Status::UnprocessableEntity)?;
    ///     Ok("welcome")
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUser`] when `user` is empty, longer than 512 bytes
    /// or holds a NUL character; the session is left as it was.
    pub fn set_user(&self, user: impl Into<String>) -> Result<(), Error> {
        let user = user.into();
        check_user(&user)?;
        let mut state = self.state();
        if state.user.as_ref() == Some(&user) {
            return Ok(());
        }
        state.user = Some(user.clone());
        state.changes.user = Some(Some(user));
        Ok(())
    }

    /// Unties the session from its user; the session and its data stay.
    pub fn clear_user(&self) {
        let mut state = self.state();
        if state.user.take().is_some() || state.changes.user.is_some() {
            state.changes.user = Some(None);
        }
    }

    /// The fairing's shared state.
    pub(crate) fn shared(&self) -> &'r Shared {
        self.shared
    }

    /// The user and, when a stored session backs the request, its id; for
    /// the per-user operations. With `writes`, refuses a request that may
    /// not write its session.
    pub(crate) fn user_and_id(&self, writes: bool) -> Result<(String, Option<SessionId>), Error> {
        let state = self.state();
        if writes && (state.read_only || state.gone) {
            return Err(Error::Gone);
        }
        let user = state.user.clone().ok_or(Error::NoUser)?;
        let id = match &state.backing {
            _ if state.read_only => None,
            Backing::Stored(id) => Some(id.clone()),
            Backing::Sealed { meta, .. } => Some(meta.id.clone()),
            Backing::New => None,
        };
        Ok((user, id))
    }

    /// The store, for the per-user operations.
    pub(crate) fn user_store(&self) -> Result<&'r Arc<dyn SessionStore>, Error> {
        self.shared.store().ok_or(Error::Unsupported)
    }

    /// For a session sealed in the cookie, the revocation generation of
    /// `user` this request opened it under; `None` for other sessions.
    pub(crate) fn sealed_generation(&self, user: &str) -> Option<i64> {
        let state = self.state();
        match &state.backing {
            Backing::Sealed { .. } => state.generation_of(&Some(user.to_string())).or(Some(0)),
            _ => None,
        }
    }

    /// After the user's revocation generation moved to `generation` (cookie
    /// mode), makes this request's own sealed cookie carry it, so that it
    /// survives when it is meant to.
    pub(crate) fn keep_after_revocation(&self, user: &str, generation: i64) {
        let mut state = self.state();
        state.user_generation = Some((user.to_string(), generation));
        if let Backing::Sealed { reseal, .. } = &mut state.backing {
            *reseal = true;
        }
    }
}

impl fmt::Debug for Session<'_> {
    // Keys only: ids and values are secrets or user data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Session")
            .field("new", &state.backing.is_new())
            .field("keys", &state.data.keys().collect::<Vec<_>>())
            .field("has_user", &state.user.is_some())
            .field("read_only", &state.read_only)
            .finish()
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Session<'r> {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Error> {
        let Some(shared) = req.rocket().state::<Shared>() else {
            log::error!("sessions: {}", Error::NotAttached);
            return Outcome::Error((Status::InternalServerError, Error::NotAttached));
        };
        let slot = req.local_cache_async(load(req, shared)).await;
        match slot {
            Slot::Ready(state) => Outcome::Success(Session { state, shared }),
            Slot::Failed | Slot::Unused => {
                Outcome::Error((Status::ServiceUnavailable, Error::Unavailable))
            }
        }
    }
}

async fn load(req: &Request<'_>, shared: &Shared) -> Slot {
    let values = cookie::values(req, shared.config.cookie_name());
    let mut candidates: Vec<SessionId> = Vec::with_capacity(values.len());
    let mut others = Vec::new();
    for value in &values {
        match SessionId::parse(value) {
            Some(id) if !candidates.contains(&id) => candidates.push(id),
            Some(_) => {}
            None => others.push(*value),
        }
    }

    // Cookie mode: a sealed session opens without a store.
    let mut state = State::fresh(!values.is_empty());
    match &shared.backend {
        Backend::Cookie { ring, .. } => {
            if let Some(opened) = sealed::open(&shared.config, ring, &others) {
                // A user's sealed cookies die with "log out everywhere":
                // the store's generation for the user moved past theirs.
                if let Some(user) = &opened.meta.user {
                    match sealed::user_generation(shared, user).await {
                        Ok(current) if opened.meta.generation < current => {
                            log::debug!(
                                "sessions: a sealed session its user signed out everywhere"
                            );
                            return Slot::Ready(Box::new(Mutex::new(state)));
                        }
                        Ok(current) => state.user_generation = Some((user.clone(), current)),
                        Err(e) => {
                            log::error!("sessions: cannot check the session's user: {e}");
                            return Slot::Failed;
                        }
                    }
                }
                state.data = opened.data.clone();
                state.user = opened.meta.user.clone();
                state.backing = Backing::Sealed {
                    meta: opened.meta,
                    base: opened.data,
                    reseal: opened.reseal,
                };
                return Slot::Ready(Box::new(Mutex::new(state)));
            }
        }
        Backend::Store(_) if !others.is_empty() => {
            log::debug!("sessions: ignoring a malformed session cookie");
        }
        Backend::Store(_) => {}
    }

    let Some(store) = shared.store().filter(|_| !candidates.is_empty()) else {
        return Slot::Ready(Box::new(Mutex::new(state)));
    };
    let not_before = shared
        .config
        .not_before_unix()
        .filter(|_| shared.is_sealing());
    match shared.call(store.load(&candidates)).await {
        // Cookie mode's `not_before` ends the sessions that moved to the
        // store as it ends sealed ones.
        Ok(Some(loaded)) if not_before.is_some_and(|at| loaded.created.is_some_and(|c| c < at)) => {
            log::debug!("sessions: a session created before `not_before`; starting a new one");
        }
        Ok(Some(loaded)) => {
            state.backing = candidates
                .into_iter()
                .nth(loaded.index)
                .map_or(Backing::New, Backing::Stored);
            state.data = loaded.data;
            state.user = loaded.user;
            state.read_only = loaded.read_only;
            // A read through a replaced id never re-issues that id.
            state.touched = (loaded.touched && !loaded.read_only).then_some(loaded.expiry);
        }
        Ok(None) => log::debug!("sessions: unknown or expired session; starting a new one"),
        Err(e) => {
            log::error!("sessions: cannot load the session: {e}");
            return Slot::Failed;
        }
    }
    Slot::Ready(Box::new(Mutex::new(state)))
}

impl Sentinel for Session<'_> {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        if rocket.state::<Shared>().is_none() {
            log::error!("sessions: the Session guard is used, but the fairing is not attached");
            log::error!("sessions: attach it with `.attach(rocket_tessera::Sessions::fairing())`");
            return true;
        }
        false
    }
}
