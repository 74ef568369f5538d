//! Sessions of one user: the opaque handle of a session, what a listing
//! shows of it, the per-user calls of a request's own session, and the
//! application-wide API to list and end any user's sessions.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rocket::request::FromParam;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::cleanup::{self, Sweep};
use crate::fairing::bounded;
use crate::store::SessionStore;
use crate::{Error, Session, SessionId};

/// The longest user id, in bytes.
const MAX_USER_BYTES: usize = 512;

/// Bytes in a handle: 128 bits.
const HANDLE_BYTES: usize = 16;

/// Length of a handle's text form: 16 bytes in base64url, no padding.
const HANDLE_CHARS: usize = 22;

/// Checks a user id before it reaches the store.
pub(crate) fn check_user(user: &str) -> Result<(), Error> {
    if user.is_empty() || user.len() > MAX_USER_BYTES || user.contains('\0') {
        return Err(Error::InvalidUser);
    }
    Ok(())
}

/// The opaque name of one stored session, for listing a user's sessions and
/// ending one of them ("sign out that device").
///
/// A handle is derived from the hash the store files the session under,
/// through one more SHA-256, cut to 128 bits: it is neither the session id
/// nor the database key, and knowing it gives neither. Its text form is 22
/// characters of base64url, so it never parses as a session cookie. Handles
/// are meant to be shown to the session's user and sent back; every call
/// that takes one also takes the user, so a handle of someone else's session
/// ends nothing.
///
/// A session gets a new handle when it gets a new id
/// ([`Session::regenerate`](crate::Session::regenerate)).
///
/// It works as a route parameter:
///
/// ```rust
/// use rocket::delete;
/// use rocket_tessera::{Session, SessionHandle};
///
/// #[delete("/devices/<handle>")]
/// async fn sign_out_device(session: Session<'_>, handle: SessionHandle) -> &'static str {
///     match session.destroy_user_session(&handle).await {
///         Ok(true) => "signed out",
///         Ok(false) => "no such session",
///         Err(_) => "failed",
///     }
/// }
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionHandle([u8; HANDLE_BYTES]);

impl SessionHandle {
    /// The handle of the session stored under `id`.
    pub fn of(id: &SessionId) -> SessionHandle {
        SessionHandle::from_id_hash(&id.hash())
    }

    /// The handle of the session whose id hashes to `id_hash`
    /// ([`SessionId::hash`]): for stores, which keep only the hash.
    pub fn from_id_hash(id_hash: &[u8; 32]) -> SessionHandle {
        let digest = Sha256::digest(id_hash);
        let mut bytes = [0u8; HANDLE_BYTES];
        bytes.copy_from_slice(&digest[..HANDLE_BYTES]);
        SessionHandle(bytes)
    }

    /// A handle from its 16 raw bytes, as a store reads them back.
    pub fn from_bytes(bytes: [u8; HANDLE_BYTES]) -> SessionHandle {
        SessionHandle(bytes)
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; HANDLE_BYTES] {
        &self.0
    }

    /// Parses the text form: exactly 22 characters of base64url.
    pub fn parse(text: &str) -> Option<SessionHandle> {
        if text.len() != HANDLE_CHARS {
            return None;
        }
        let decoded = URL_SAFE_NO_PAD.decode(text).ok()?;
        Some(SessionHandle(decoded.try_into().ok()?))
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({self})")
    }
}

/// The error of parsing a [`SessionHandle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidHandle;

impl fmt::Display for InvalidHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a session handle is 22 characters of base64url")
    }
}

impl std::error::Error for InvalidHandle {}

impl FromStr for SessionHandle {
    type Err = InvalidHandle;

    fn from_str(text: &str) -> Result<SessionHandle, InvalidHandle> {
        SessionHandle::parse(text).ok_or(InvalidHandle)
    }
}

impl<'a> FromParam<'a> for SessionHandle {
    type Error = InvalidHandle;

    fn from_param(param: &'a str) -> Result<SessionHandle, InvalidHandle> {
        param.parse()
    }
}

impl Serialize for SessionHandle {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SessionHandle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SessionHandle, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One live session of a user, as listed by
/// [`Session::user_sessions`](crate::Session::user_sessions) or
/// [`SessionAdmin::list`].
///
/// It serializes as `{"handle", "created", "last_seen", "expires",
/// "current"}`, the instants in whole seconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    handle: SessionHandle,
    created: SystemTime,
    last_seen: SystemTime,
    expires: SystemTime,
    current: bool,
}

impl SessionInfo {
    /// A listed session; not the current one.
    pub fn new(
        handle: SessionHandle,
        created: SystemTime,
        last_seen: SystemTime,
        expires: SystemTime,
    ) -> SessionInfo {
        SessionInfo {
            handle,
            created,
            last_seen,
            expires,
            current: false,
        }
    }

    /// The handle to end this session with.
    pub fn handle(&self) -> &SessionHandle {
        &self.handle
    }

    /// When the session was created (by the store's clock).
    pub fn created(&self) -> SystemTime {
        self.created
    }

    /// When a request last wrote or touched the session; reads between two
    /// touches (`touch_interval`) do not move it.
    pub fn last_seen(&self) -> SystemTime {
        self.last_seen
    }

    /// When the session ends unless a request comes first.
    pub fn expires(&self) -> SystemTime {
        self.expires
    }

    /// Whether this is the session of the request that listed it.
    pub fn is_current(&self) -> bool {
        self.current
    }

    pub(crate) fn mark_current(&mut self, current: &SessionHandle) {
        self.current = self.handle == *current;
    }
}

fn unix_seconds(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The instant `millis` milliseconds after the Unix epoch.
pub(crate) fn from_unix_millis(millis: i64) -> SystemTime {
    from_epoch(Duration::from_millis(millis.unsigned_abs()), millis >= 0)
}

fn from_epoch(magnitude: Duration, after: bool) -> SystemTime {
    if after {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

impl Serialize for SessionInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("SessionInfo", 5)?;
        s.serialize_field("handle", &self.handle)?;
        s.serialize_field("created", &unix_seconds(self.created))?;
        s.serialize_field("last_seen", &unix_seconds(self.last_seen))?;
        s.serialize_field("expires", &unix_seconds(self.expires))?;
        s.serialize_field("current", &self.current)?;
        s.end()
    }
}

/// The per-user calls of the request's own session; see "Sessions of one
/// user" on [`Session`].
impl Session<'_> {
    /// The live sessions of this session's user, most recently seen first,
    /// this one marked [current](SessionInfo::is_current). The listing is
    /// what the store holds: a user set in this request counts once it is
    /// written (at the response, or by [`save`](Session::save)). In cookie
    /// mode that is only the sessions that outgrew the cookie and moved to
    /// the store; sealed ones exist only in their cookies.
    ///
    /// ```rust
    /// use rocket::{get, http::Status, serde::json::Json};
    /// use rocket_tessera::{Error, Session, SessionInfo};
    ///
    /// #[get("/devices")]
    /// async fn devices(session: Session<'_>) -> Result<Json<Vec<SessionInfo>>, Status> {
    ///     match session.user_sessions().await {
    ///         Ok(list) => Ok(Json(list)),
    ///         Err(Error::NoUser) => Err(Status::Unauthorized),
    ///         Err(_) => Err(Status::ServiceUnavailable),
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::NoUser`] when the session belongs to no user;
    /// - [`Error::Store`] or [`Error::Timeout`] when the store failed;
    /// - [`Error::Unsupported`] when there is no store (cookie mode without
    ///   one) or a custom store cannot list.
    pub async fn user_sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        let (user, id) = self.user_and_id(false)?;
        let store = self.user_store()?;
        let mut list = self.shared().call(store.list_user(&user)).await?;
        if let Some(id) = id {
            let current = SessionHandle::of(&id);
            list.iter_mut().for_each(|info| info.mark_current(&current));
        }
        Ok(list)
    }

    /// Ends one session of this session's user, named by its handle from
    /// [`user_sessions`](Session::user_sessions): "sign out that device".
    /// Returns whether the user had such a live session. The handle of this
    /// very session works like [`destroy`](Session::destroy); a handle of
    /// another user's session ends nothing.
    ///
    /// # Errors
    ///
    /// - [`Error::NoUser`] when the session belongs to no user;
    /// - [`Error::Gone`] when this request may not write its session (it
    ///   came with a replaced id, or found its session gone);
    /// - [`Error::Store`], [`Error::Timeout`] or [`Error::Unsupported`] as
    ///   for [`user_sessions`](Session::user_sessions).
    pub async fn destroy_user_session(&self, handle: &SessionHandle) -> Result<bool, Error> {
        let (user, id) = self.user_and_id(true)?;
        if id.is_some_and(|id| SessionHandle::of(&id) == *handle) {
            self.destroy();
            return Ok(true);
        }
        let store = self.user_store()?;
        self.shared()
            .call(store.destroy_by_handle(&user, handle))
            .await
    }

    /// Ends every other session of this session's user and keeps this one:
    /// what a password change calls for. Returns how many live sessions
    /// ended. Requests running with them cannot write them back.
    ///
    /// ```rust
    /// use rocket::{http::Status, post};
    /// use rocket_tessera::Session;
    ///
    /// #[post("/password")]
    /// async fn change_password(session: Session<'_>) -> Result<String, Status> {
    ///     // ... check the old password, store the new one ...
    ///     let ended = session
    ///         .destroy_other_sessions()
    ///         .await
    ///         .map_err(|_| Status::ServiceUnavailable)?;
    ///     session.regenerate();
    ///     Ok(format!("password changed; {ended} other sessions signed out"))
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`destroy_user_session`](Session::destroy_user_session); also
    /// [`Error::Gone`] in cookie mode when another request ended all of the
    /// user's sessions after this one loaded: this session is then void
    /// too.
    ///
    /// In cookie mode (with a store, which this needs) the user's other
    /// sealed cookies stop opening from their next request on, and this
    /// request's cookie is sealed again so that it stays valid. The count
    /// covers only sessions that were in the store.
    pub async fn destroy_other_sessions(&self) -> Result<u64, Error> {
        let (user, id) = self.user_and_id(true)?;
        let store = self.user_store()?;
        // A sealed session names the generation it was opened under: the
        // revocation must start from it, or another one came first.
        let expected = self.sealed_generation(&user);
        let revoked = self
            .shared()
            .call(store.destroy_user(&user, id.as_ref(), expected))
            .await?;
        if expected.is_some() {
            self.keep_after_revocation(&user, revoked.generation);
        }
        Ok(revoked.ended)
    }

    /// Ends every session of this session's user, this one included: "log
    /// out everywhere". The others are deleted now; this one as by
    /// [`destroy`](Session::destroy), so the response clears the cookie.
    /// Returns how many live sessions ended, this one included.
    ///
    /// ```rust
    /// use rocket::{http::Status, post};
    /// use rocket_tessera::{Error, Session};
    ///
    /// #[post("/logout-everywhere")]
    /// async fn logout_everywhere(session: Session<'_>) -> Result<String, Status> {
    ///     match session.destroy_all_sessions().await {
    ///         Ok(ended) => Ok(format!("{ended} sessions signed out")),
    ///         Err(Error::NoUser) => Err(Status::Unauthorized),
    ///         Err(Error::Gone) => Err(Status::Conflict),
    ///         Err(_) => Err(Status::ServiceUnavailable),
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`destroy_other_sessions`](Session::destroy_other_sessions).
    pub async fn destroy_all_sessions(&self) -> Result<u64, Error> {
        let (user, _) = self.user_and_id(true)?;
        let store = self.user_store()?;
        let revoked = self
            .shared()
            .call(store.destroy_user(&user, None, None))
            .await?;
        self.destroy();
        Ok(revoked.ended)
    }
}

/// Application-wide control over stored sessions: list and end the
/// sessions of any user, and sweep expired sessions on demand.
///
/// The [`Sessions`](crate::Sessions) fairing manages one, so a route takes
/// it as `&State<SessionAdmin>`, and code outside requests finds it with
/// `rocket.state::<SessionAdmin>()`. It is cheap to clone. Every call is
/// one store operation bounded by `operation_timeout` (a sweep: one per
/// batch).
///
/// For the current request's own user, the methods of
/// [`Session`](crate::Session) are simpler: they know the user and never
/// end the current session behind its back.
///
/// ```rust
/// use rocket::serde::json::Json;
/// use rocket::{delete, get, State};
/// use rocket_tessera::{Error, SessionAdmin, SessionHandle, SessionInfo};
///
/// // Your own guard that lets only administrators through goes here too.
/// #[get("/admin/users/<user>/sessions")]
/// async fn list(admin: &State<SessionAdmin>, user: &str) -> Result<Json<Vec<SessionInfo>>, String> {
///     admin.list(user).await.map(Json).map_err(|e| e.to_string())
/// }
///
/// #[delete("/admin/users/<user>/sessions")]
/// async fn lock_out(admin: &State<SessionAdmin>, user: &str) -> Result<String, String> {
///     let ended = admin.destroy_all(user).await.map_err(|e| e.to_string())?;
///     Ok(format!("{ended} sessions ended"))
/// }
/// ```
///
/// Ending a user's sessions deletes them from the store at once: a request
/// already running with one of them cannot write it back (it gets a 409,
/// see [`Error::Gone`]).
#[derive(Clone)]
pub struct SessionAdmin {
    /// The store, when the application has one.
    store: Option<Arc<dyn SessionStore>>,
    timeout: Duration,
    batch: u64,
}

impl SessionAdmin {
    pub(crate) fn new(
        store: Option<Arc<dyn SessionStore>>,
        timeout: Duration,
        batch: u64,
    ) -> SessionAdmin {
        SessionAdmin {
            store,
            timeout,
            batch,
        }
    }

    fn store(&self) -> Result<&Arc<dyn SessionStore>, Error> {
        self.store.as_ref().ok_or(Error::Unsupported)
    }

    /// The live sessions of `user` in the store, most recently seen first.
    /// None of them is marked current. In cookie mode only the sessions
    /// that moved to the store are listed: sealed ones exist only in their
    /// cookies.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidUser`] when `user` cannot be a user id;
    /// - [`Error::Store`] or [`Error::Timeout`] when the store failed;
    /// - [`Error::Unsupported`] when there is no store (cookie mode without
    ///   one), or a custom store cannot list.
    pub async fn list(&self, user: &str) -> Result<Vec<SessionInfo>, Error> {
        check_user(user)?;
        bounded(self.timeout, self.store()?.list_user(user)).await
    }

    /// Ends the session of `user` named by `handle`. Returns whether there
    /// was such a live session.
    ///
    /// # Errors
    ///
    /// As for [`SessionAdmin::list`].
    pub async fn destroy(&self, user: &str, handle: &SessionHandle) -> Result<bool, Error> {
        check_user(user)?;
        bounded(self.timeout, self.store()?.destroy_by_handle(user, handle)).await
    }

    /// Ends every session of `user` ("log out everywhere", or locking an
    /// account) and returns how many live ones there were. It also records
    /// the instant, for sessions the store cannot delete.
    ///
    /// # Errors
    ///
    /// As for [`SessionAdmin::list`].
    ///
    /// In cookie mode (with a store, which this needs) the user's sealed
    /// cookies stop opening from their next request on; the count covers
    /// only sessions that were in the store.
    pub async fn destroy_all(&self, user: &str) -> Result<u64, Error> {
        check_user(user)?;
        let revoked = bounded(self.timeout, self.store()?.destroy_user(user, None, None)).await?;
        Ok(revoked.ended)
    }

    /// Deletes expired sessions now, in batches of `cleanup_batch` rows,
    /// each its own transaction; the same work the background task does
    /// every `cleanup_interval`. When another app instance is sweeping, it
    /// returns at once with [`Sweep::skipped`] set.
    ///
    /// # Errors
    ///
    /// - [`Error::Store`] or [`Error::Timeout`] when a batch failed; the
    ///   batches before it stay done;
    /// - [`Error::Unsupported`] when there is no store, or a custom store
    ///   cannot sweep.
    pub async fn sweep(&self) -> Result<Sweep, Error> {
        cleanup::sweep(self, || false).await
    }

    /// One batch of a sweep.
    pub(crate) async fn sweep_batch(&self) -> Result<Option<u64>, Error> {
        bounded(self.timeout, self.store()?.sweep_expired(self.batch)).await
    }

    pub(crate) fn batch(&self) -> u64 {
        self.batch
    }
}

impl fmt::Debug for SessionAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionAdmin")
            .field("store", &self.store.is_some())
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_never_parse_as_ids() {
        let id = SessionId::generate();
        let handle = SessionHandle::of(&id);
        let text = handle.to_string();
        assert_eq!(text.len(), HANDLE_CHARS);
        assert_eq!(text.parse::<SessionHandle>(), Ok(handle.clone()));
        assert!(SessionId::parse(&text).is_none());
        assert!(!text.contains(&id.encode()[..8]));
        assert_eq!(SessionHandle::from_id_hash(&id.hash()), handle);
        assert_eq!(SessionHandle::from_bytes(*handle.as_bytes()), handle);
    }

    #[test]
    fn handle_grammar_is_exact() {
        let text = SessionHandle::of(&SessionId::generate()).to_string();
        assert!(SessionHandle::parse(&text[..21]).is_none());
        assert!(SessionHandle::parse(&format!("{text}A")).is_none());
        assert!(SessionHandle::parse(&"+".repeat(22)).is_none());
        assert!(SessionHandle::parse(&"é".repeat(11)).is_none());
        // 22 characters carry 132 bits; the last four must be zero.
        let mut bad_tail = text[..21].to_string();
        bad_tail.push('B');
        assert!(SessionHandle::parse(&bad_tail).is_none());
    }

    #[test]
    fn user_ids_are_checked() {
        assert!(check_user("ann").is_ok());
        assert!(check_user(&"x".repeat(512)).is_ok());
        assert!(check_user("").is_err());
        assert!(check_user(&"x".repeat(513)).is_err());
        assert!(check_user("a\0b").is_err());
    }

    #[test]
    fn infos_serialize_as_unix_seconds() {
        let handle = SessionHandle::from_bytes([0; 16]);
        let mut info = SessionInfo::new(
            handle.clone(),
            from_unix_millis(1_000),
            from_unix_millis(2_500),
            from_unix_millis(-1_000),
        );
        info.mark_current(&handle);
        assert_eq!(
            serde_json::to_value(&info).unwrap(),
            serde_json::json!({
                "handle": "AAAAAAAAAAAAAAAAAAAAAA",
                "created": 1,
                "last_seen": 2,
                "expires": -1,
                "current": true,
            })
        );
    }
}
