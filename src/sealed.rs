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
    /// The session's id, sealed with it (so the client cannot read it):
    /// it names the session for the per-user work and changes on
    /// `regenerate()`.
    pub(crate) id: SessionId,
    /// The user the session belongs to, if any.
    pub(crate) user: Option<String>,
    /// When the session began, in Unix seconds: fixed, it drives the
    /// absolute expiry.
    pub(crate) created: i64,
    /// When the cookie was last sealed, in Unix seconds.
    pub(crate) sealed: i64,
    /// The user's revocation generation when the cookie was sealed: a
    /// "log out everywhere" moves the store's generation past it, which
    /// voids the cookie.
    pub(crate) generation: i64,
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
    #[serde(skip_serializing_if = "is_zero")]
    g: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
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
    #[serde(default)]
    g: i64,
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
    /// The session's user as the request leaves it.
    pub(crate) user: Option<String>,
    /// Something changed; otherwise this only re-seals (touch, key
    /// rotation), which may be skipped.
    pub(crate) changed: bool,
    /// The store's revocation generation of `user`, when this request
    /// knows it; otherwise `write` asks the store.
    pub(crate) generation: Option<i64>,
}

/// Why a sealed value gave no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Seal(Rejected),
    Unreadable,
    FromTheFuture,
    BeforeNotBefore,
    Expired,
}

impl Refusal {
    /// One line for the log, without the value.
    fn log(self) {
        match self {
            Refusal::Seal(Rejected::UnknownKey) => log::info!(
                "sessions: ignoring a session cookie sealed with a key id not in `keys` \
                 (a retired key?)"
            ),
            // Garbage is common and harmless (the same level as PostgreSQL
            // mode's malformed ids); a well-formed envelope that fails its
            // tag is worth a look.
            Refusal::Seal(Rejected::Malformed) => {
                log::debug!("sessions: ignoring a malformed session cookie")
            }
            // Any client can send these as often as it likes: info, so that
            // they cannot flood the warnings.
            Refusal::Seal(Rejected::Forged) => {
                log::info!("sessions: ignoring a session cookie whose seal does not verify")
            }
            Refusal::Unreadable => {
                log::info!("sessions: ignoring a sealed session cookie whose payload does not read")
            }
            Refusal::FromTheFuture => {
                log::info!("sessions: ignoring a sealed session cookie dated in the future")
            }
            Refusal::BeforeNotBefore => {
                log::debug!("sessions: a session created before `not_before`; starting a new one")
            }
            Refusal::Expired => log::debug!("sessions: expired session; starting a new one"),
        }
    }
}

/// The first of `values` that opens as a live session of this
/// application. When none does, one line says why the first did not;
/// values are never logged.
pub(crate) fn open(config: &Config, ring: &KeyRing, values: &[&str]) -> Option<Opened> {
    let now = unix_now();
    let mut first_refusal = None;
    for value in values {
        match open_one(config, ring, value, now) {
            Ok(opened) => return Some(opened),
            Err(refusal) => {
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    if let Some(refusal) = first_refusal {
        refusal.log();
    }
    None
}

fn open_one(config: &Config, ring: &KeyRing, value: &str, now: i64) -> Result<Opened, Refusal> {
    let opened = ring
        .open(config.cookie_name(), value)
        .map_err(Refusal::Seal)?;
    let payload =
        serde_json::from_slice::<PayloadIn>(&opened.plaintext).map_err(|_| Refusal::Unreadable)?;
    let id = SessionId::parse(&payload.i).ok_or(Refusal::Unreadable)?;

    let skew = i64::try_from(config.clock_skew).unwrap_or(0);
    if payload.c > payload.s || payload.s > now.saturating_add(skew) {
        return Err(Refusal::FromTheFuture);
    }
    if config.not_before_unix().is_some_and(|at| payload.c < at) {
        return Err(Refusal::BeforeNotBefore);
    }
    if now >= expires_at(config, payload.c, payload.s).min(payload.e) {
        return Err(Refusal::Expired);
    }

    let touch_due = now.saturating_sub(payload.s) >= secs(config.touch_interval);
    Ok(Opened {
        meta: Meta {
            id,
            user: payload.u,
            created: payload.c,
            sealed: payload.s,
            generation: payload.g,
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
        generation: 0,
    });
    if job.regenerate {
        meta.id = SessionId::generate();
    }
    meta.generation = match (&job.user, job.generation) {
        (None, _) => 0,
        (Some(_), Some(generation)) => generation,
        (Some(user), None) => user_generation(shared, user).await?,
    };
    meta.user = job.user;
    meta.sealed = now;

    let expires = expires_at(config, meta.created, now);
    let payload = PayloadOut {
        d: &job.data,
        i: meta.id.encode(),
        u: meta.user.as_deref(),
        c: meta.created,
        s: now,
        e: expires,
        g: meta.generation,
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

/// The store's revocation generation of `user`: 0 when there is no store
/// or it keeps none, as then nothing can have been revoked.
///
/// # Errors
///
/// The store's errors, other than [`Error::Unsupported`].
pub(crate) async fn user_generation(shared: &Shared, user: &str) -> Result<i64, Error> {
    let Some(store) = shared.store() else {
        return Ok(0);
    };
    match shared.call(store.user_generation(user)).await {
        Err(Error::Unsupported) => Ok(0),
        other => other,
    }
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
        user_generation: meta.user.as_ref().map(|_| meta.generation),
        user: meta.user.map(Some),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SealKey;

    const KEY: &str = "qvfQfnBPKXzlN3ZzPpGTRh3sDdPRmnH0TeBysFjb9Rk=";
    const NOW: i64 = 1_750_000_000;

    fn config() -> Config {
        Config {
            idle_timeout: 600,
            absolute_timeout: 3600,
            touch_interval: 60,
            clock_skew: 30,
            ..Config::default()
        }
    }

    fn ring() -> KeyRing {
        let key = SealKey {
            id: "k".into(),
            algorithm: Default::default(),
            key: KEY.into(),
        };
        KeyRing::new(&[key]).unwrap()
    }

    /// A cookie holding `{"a": 1}`, created at `c`, sealed at `s`, with the
    /// idle expiry `e`.
    fn sealed(c: i64, s: i64, e: i64) -> String {
        let data = serde_json::json!({ "a": 1 });
        let payload = PayloadOut {
            d: data.as_object().unwrap(),
            i: SessionId::generate().encode(),
            u: None,
            c,
            s,
            e,
            g: 0,
        };
        let plaintext = serde_json::to_vec(&payload).unwrap();
        ring().seal(config().cookie_name(), &plaintext).unwrap()
    }

    fn opens(config: &Config, value: &str, now: i64) -> Option<Opened> {
        open_one(config, &ring(), value, now).ok()
    }

    #[test]
    fn a_live_session_opens_with_its_data_and_instants() {
        let value = sealed(NOW - 100, NOW - 10, NOW + 590);
        let opened = opens(&config(), &value, NOW).unwrap();
        assert_eq!(opened.data["a"], 1);
        assert_eq!(
            (opened.meta.created, opened.meta.sealed),
            (NOW - 100, NOW - 10)
        );
        assert!(!opened.reseal, "no touch due yet");
        assert!(!opens(&config(), &value, NOW + 49).unwrap().reseal);
        assert!(
            opens(&config(), &value, NOW + 50).unwrap().reseal,
            "touch due"
        );
    }

    #[test]
    fn both_expiries_are_enforced_from_the_payload() {
        // Idle: the instant in the payload.
        let value = sealed(NOW - 100, NOW - 10, NOW + 5);
        assert!(opens(&config(), &value, NOW + 4).is_some());
        assert!(opens(&config(), &value, NOW + 5).is_none());
        // Idle: a lower idle_timeout applies to cookies sealed before.
        let value = sealed(NOW - 100, NOW - 10, NOW + 590);
        let shorter = Config {
            idle_timeout: 5,
            touch_interval: 1,
            ..config()
        };
        assert!(opens(&shorter, &value, NOW).is_none());
        // Absolute: from the creation instant, whatever the idle expiry says.
        let value = sealed(NOW - 3600, NOW - 1, NOW + 599);
        assert!(opens(&config(), &value, NOW).is_none());
        let value = sealed(NOW - 3599, NOW - 1, NOW + 599);
        assert!(opens(&config(), &value, NOW).is_some());
    }

    #[test]
    fn instants_in_the_future_are_allowed_only_within_the_skew() {
        let value = sealed(NOW + 30, NOW + 30, NOW + 630);
        assert!(opens(&config(), &value, NOW).is_some());
        let value = sealed(NOW + 31, NOW + 31, NOW + 631);
        assert!(opens(&config(), &value, NOW).is_none());
        // A creation after the seal is not a payload this code writes.
        let value = sealed(NOW, NOW - 1, NOW + 599);
        assert!(opens(&config(), &value, NOW).is_none());
    }

    #[test]
    fn not_before_rejects_sessions_created_earlier() {
        let at = rocket::time::OffsetDateTime::from_unix_timestamp(NOW - 50).unwrap();
        let text = at
            .format(&rocket::time::format_description::well_known::Rfc3339)
            .unwrap();
        let config = Config {
            not_before: Some(text),
            ..config()
        };
        // Sealed after not_before, but created before it: rejected.
        assert!(opens(&config, &sealed(NOW - 51, NOW - 1, NOW + 599), NOW).is_none());
        assert!(opens(&config, &sealed(NOW - 50, NOW - 1, NOW + 599), NOW).is_some());
    }

    #[test]
    fn payloads_that_do_not_read_are_rejected() {
        let ring = ring();
        let name = config().cookie_name().to_string();
        for plaintext in [
            &b"not json"[..],
            b"{}",
            br#"{"d":{},"i":"short","c":1,"s":1,"e":2}"#,
            br#"{"d":[],"i":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","c":1,"s":1,"e":2}"#,
        ] {
            let value = ring.seal(&name, plaintext).unwrap();
            let refusal = open_one(&config(), &ring, &value, NOW).err();
            assert_eq!(refusal, Some(Refusal::Unreadable));
        }
    }
}
