//! Cookie mode's side of a session: the payload sealed in the cookie,
//! opening the request's cookie, and sealing the response's, moving a
//! session that outgrows the cookie to the store.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{unix_now, Config};
use crate::fairing::Shared;
use crate::seal::{KeyRing, Rejected};
use crate::store::{ChangeSet, Expiry};
use crate::{Error, SessionId};

/// Browsers drop, silently, a cookie whose name and value together take
/// more bytes than this (RFC 6265bis, section 5.6).
pub(crate) const COOKIE_LIMIT: usize = 4096;

/// What a sealed session carries besides its data.
#[derive(Clone)]
pub(crate) struct Meta {
    /// The session's id: it names the session in logs of hashes and changes
    /// on `regenerate()`; the client never sees it.
    pub(crate) id: SessionId,
    /// The user the session belongs to, if any.
    pub(crate) user: Option<String>,
    /// When the session began, in Unix seconds: fixed, it drives the
    /// absolute expiry.
    pub(crate) created: i64,
    /// When the cookie was last sealed, in Unix seconds.
    pub(crate) sealed: i64,
}

/// The plaintext of a sealed cookie, as JSON with one-letter names.
#[derive(Serialize)]
struct PayloadOut<'a> {
    d: &'a Map<String, Value>,
    i: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<&'a str>,
    c: i64,
    s: i64,
    e: i64,
}

#[derive(Deserialize)]
struct PayloadIn {
    d: Map<String, Value>,
    i: String,
    #[serde(default)]
    u: Option<String>,
    c: i64,
    s: i64,
    e: i64,
}

/// A sealed session that opened and is live.
pub(crate) struct Opened {
    pub(crate) meta: Meta,
    pub(crate) data: Map<String, Value>,
    /// Sealed with an older key, or a touch is due: the response seals it
    /// again even if nothing changed.
    pub(crate) reseal: bool,
}

/// What sealing a session came to.
pub(crate) enum Written {
    /// The session is in the cookie `value`.
    Sealed {
        value: String,
        expiry: Expiry,
        meta: Meta,
        data: Map<String, Value>,
    },
    /// The session outgrew the cookie and is now in the store.
    Stored(SessionId, Expiry),
    /// An unchanged session no longer fits its cookie (a longer key id, say)
    /// and there is no store: the cookie it came with stays.
    Kept,
}

/// One cookie-mode write: the session as it must be sealed.
pub(crate) struct Job {
    /// `None` for a new session.
    pub(crate) meta: Option<Meta>,
    pub(crate) regenerate: bool,
    pub(crate) data: Map<String, Value>,
    /// Something changed; otherwise this only re-seals (touch, key
    /// rotation), which may be skipped.
    pub(crate) changed: bool,
}

/// The first of `values` that opens as a live session of this
/// application. Every value that does not is logged, never quoted.
pub(crate) fn open(config: &Config, ring: &KeyRing, values: &[&str]) -> Option<Opened> {
    let now = unix_now();
    values
        .iter()
        .find_map(|value| open_one(config, ring, value, now))
}

fn open_one(config: &Config, ring: &KeyRing, value: &str, now: i64) -> Option<Opened> {
    let opened = match ring.open(config.cookie_name(), value) {
        Ok(opened) => opened,
        Err(Rejected::UnknownKey) => {
            log::info!(
                "sessions: ignoring a session cookie sealed with a key id not in `keys` \
                 (a retired key?)"
            );
            return None;
        }
        Err(Rejected::Malformed | Rejected::Forged) => {
            log::warn!("sessions: ignoring a session cookie that does not open");
            return None;
        }
    };
    let payload = serde_json::from_slice::<PayloadIn>(&opened.plaintext).ok();
    let Some((payload, id)) = payload.and_then(|p| SessionId::parse(&p.i).map(|id| (p, id))) else {
        log::warn!("sessions: ignoring a sealed session cookie whose payload does not read");
        return None;
    };

    let skew = i64::try_from(config.clock_skew).unwrap_or(0);
    if payload.c > payload.s || payload.s > now.saturating_add(skew) {
        log::warn!("sessions: ignoring a sealed session cookie dated in the future");
        return None;
    }
    if config.not_before_unix().is_some_and(|at| payload.c < at) {
        log::debug!("sessions: a session created before `not_before`; starting a new one");
        return None;
    }
    if now >= expires_at(config, payload.c, payload.s).min(payload.e) {
        log::debug!("sessions: expired session; starting a new one");
        return None;
    }

    let touch_due = now.saturating_sub(payload.s) >= secs(config.touch_interval);
    Some(Opened {
        meta: Meta {
            id,
            user: payload.u,
            created: payload.c,
            sealed: payload.s,
        },
        data: payload.d,
        reseal: touch_due || !opened.current_key,
    })
}

/// Seals a session into a cookie value, or moves it to the store when it
/// does not fit.
///
/// # Errors
///
/// - [`Error::CookieTooLarge`] when it does not fit and there is no store;
/// - the store's errors when moving it there failed.
pub(crate) async fn write(shared: &Shared, ring: &KeyRing, job: Job) -> Result<Written, Error> {
    let config = &shared.config;
    let now = unix_now();
    let mut meta = job.meta.unwrap_or_else(|| Meta {
        id: SessionId::generate(),
        user: None,
        created: now,
        sealed: now,
    });
    if job.regenerate {
        meta.id = SessionId::generate();
    }
    meta.sealed = now;

    let expires = expires_at(config, meta.created, now);
    let payload = PayloadOut {
        d: &job.data,
        i: meta.id.encode(),
        u: meta.user.as_deref(),
        c: meta.created,
        s: now,
        e: expires,
    };
    let plaintext = serde_json::to_vec(&payload).map_err(|e| Error::value("(session)", &e))?;

    // The exact size, counted as browsers do: name plus value.
    let name = config.cookie_name();
    let size = name.len() + ring.sealed_len(plaintext.len());
    if size <= COOKIE_LIMIT {
        if let Some(value) = ring.seal(name, &plaintext) {
            let expiry = Expiry {
                max_age: expires - now,
                unix: expires,
            };
            return Ok(Written::Sealed {
                value,
                expiry,
                meta,
                data: job.data,
            });
        }
    }
    spill(shared, meta, job.data, size, job.changed).await
}

/// Moves a session that does not fit in the cookie to the store, keeping
/// its creation instant; without a store, fails a change and keeps the old
/// cookie for a mere re-seal.
async fn spill(
    shared: &Shared,
    meta: Meta,
    data: Map<String, Value>,
    size: usize,
    changed: bool,
) -> Result<Written, Error> {
    let Some(store) = shared.store() else {
        if !changed {
            log::warn!(
                "sessions: cannot re-seal a session of {size} bytes (limit {COOKIE_LIMIT}); \
                 its previous cookie stays"
            );
            return Ok(Written::Kept);
        }
        log::warn!(
            "sessions: the session would take {size} bytes of cookie, over the limit of \
             {COOKIE_LIMIT}, and no store is configured: the changes are not saved and the \
             previous cookie stays valid"
        );
        return Err(Error::CookieTooLarge {
            size,
            limit: COOKIE_LIMIT,
        });
    };
    let id = SessionId::generate();
    let changes = ChangeSet {
        set: data,
        created_at: Some(meta.created),
        ..ChangeSet::default()
    };
    let expiry = shared.call(store.create(&id, &changes)).await?;
    log::info!(
        "sessions: a session of {size} bytes outgrew the cookie (limit {COOKIE_LIMIT}); \
         it moved to the store"
    );
    Ok(Written::Stored(id, expiry))
}

/// When a session sealed at `sealed` ends: idle expiry, capped by the
/// absolute one.
fn expires_at(config: &Config, created: i64, sealed: i64) -> i64 {
    let idle = sealed.saturating_add(secs(config.idle_timeout));
    let absolute = created.saturating_add(secs(config.absolute_timeout));
    idle.min(absolute)
}

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
