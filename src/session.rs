//! The `Session` request guard and its API.

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};
use rocket::{Ignite, Request, Rocket, Sentinel};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cookie;
use crate::fairing::Shared;
use crate::limits;
use crate::store::{ChangeSet, Expiry};
use crate::{Error, SessionId};

/// The session of the current request: a request guard.
///
/// Take it as an argument of any route that reads or changes the session.
/// The session loads the first time a guard asks for it in a request (one
/// store query at most, however many guards ask) and routes without the
/// guard cost nothing. Changes are kept in memory and written once, when
/// the response goes out, by the [`Sessions`](crate::Sessions) fairing.
///
/// Values are stored as JSON under string keys.
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
    /// The id of the stored session, if there is one.
    id: Option<SessionId>,
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
    /// What the response must do with the cookie after writes that
    /// succeeded.
    pub(crate) outcome: Option<CookieOutcome>,
}

/// The cookie the response carries.
pub(crate) enum CookieOutcome {
    Issue(String, Expiry),
    Remove,
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
}

impl State {
    fn fresh(had_cookie: bool) -> State {
        State {
            id: None,
            data: Map::new(),
            changes: ChangeSet::default(),
            regenerate: false,
            destroy: None,
            had_cookie,
            touched: None,
            size: None,
            outcome: None,
        }
    }

    fn plan(&mut self) -> Plan {
        let changes = std::mem::take(&mut self.changes);
        let regenerate = std::mem::take(&mut self.regenerate);
        let write = match &self.id {
            Some(id) if regenerate || !changes.is_empty() => {
                let new_id = regenerate.then(SessionId::generate);
                Some(Write::Update(id.clone(), ChangeSet { new_id, ..changes }))
            }
            Some(_) => None,
            // A new session is stored once something was set in it.
            None if !changes.set.is_empty() => {
                let all = ChangeSet {
                    set: self.data.clone(),
                    ..ChangeSet::default()
                };
                Some(Write::Create(SessionId::generate(), all))
            }
            None => None,
        };
        Plan {
            destroy: self.destroy.take(),
            write,
        }
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
                shared.call(shared.store.destroy(id)).await?;
            }
            let mut state = lock(state);
            if stored.is_some() || state.had_cookie {
                state.outcome = Some(CookieOutcome::Remove);
            }
        }
        let (id, expiry) = match self.write {
            None => return Ok(()),
            Some(Write::Create(id, changes)) => {
                let expiry = shared.call(shared.store.create(&id, &changes)).await?;
                (id, expiry)
            }
            Some(Write::Update(id, changes)) => {
                let expiry = shared.call(shared.store.update(&id, &changes)).await?;
                (changes.new_id.unwrap_or(id), expiry)
            }
        };
        let mut state = lock(state);
        state.outcome = Some(CookieOutcome::Issue(id.encode(), expiry));
        state.id = Some(id);
        state.touched = None;
        Ok(())
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while the lock was held left plain data behind, still usable.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes the pending changes of a request's session.
pub(crate) async fn flush(shared: &Shared, state: &Mutex<State>) -> Result<(), Error> {
    let plan = lock(state).plan();
    plan.run(shared, state).await
}

/// The cookie a response needs once its writes are done: the outcome of
/// the writes, else a re-issue after a touch.
pub(crate) fn finish(state: &Mutex<State>) -> Option<CookieOutcome> {
    let mut state = lock(state);
    if let Some(outcome) = state.outcome.take() {
        return Some(outcome);
    }
    let touched = state.touched.take();
    match (&state.id, touched) {
        (Some(id), Some(expiry)) => Some(CookieOutcome::Issue(id.encode(), expiry)),
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
        self.state().id.is_none()
    }

    /// Gives the session a new id and keeps its data: the defence against
    /// session fixation, to call whenever privileges change (sign-in,
    /// sign-out, password change).
    ///
    /// The id changes in the same statement as the request's other changes
    /// and the old id stops working at once. On a new session this does
    /// nothing: it gets a fresh id when first stored anyway.
    pub fn regenerate(&self) {
        let mut state = self.state();
        if state.id.is_some() {
            state.regenerate = true;
        }
    }

    /// Ends the session: its data goes, the stored row is deleted, and the
    /// response clears the cookie. Keys inserted afterwards start a new
    /// session with a new id.
    pub fn destroy(&self) {
        let mut state = self.state();
        let stored = state.id.take();
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
    ///   it a new id meanwhile.
    ///
    /// On error the pending changes are dropped: they are neither retried
    /// when the response goes out nor answered with a cookie. After
    /// [`Error::Timeout`] the outcome is unknown: the statement may still
    /// have run on the server after the crate stopped waiting.
    pub async fn save(&self) -> Result<(), Error> {
        flush(self.shared, self.state).await
    }
}

impl fmt::Debug for Session<'_> {
    // Keys only: ids and values are secrets or user data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Session")
            .field("new", &state.id.is_none())
            .field("keys", &state.data.keys().collect::<Vec<_>>())
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
    for id in values.iter().filter_map(|v| SessionId::parse(v)) {
        if !candidates.contains(&id) {
            candidates.push(id);
        }
    }
    if candidates.len() < values.len() {
        log::debug!("sessions: ignoring a malformed session cookie");
    }

    let mut state = State::fresh(!values.is_empty());
    if candidates.is_empty() {
        return Slot::Ready(Box::new(Mutex::new(state)));
    }
    match shared.call(shared.store.load(&candidates)).await {
        Ok(Some(loaded)) => {
            state.id = candidates.into_iter().nth(loaded.index);
            state.data = loaded.data;
            state.touched = loaded.touched.then_some(loaded.expiry);
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
