//! The `[default.sessions]` table: fields, defaults and validation.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rocket::figment::error::{Actual, Kind};
use rocket::figment::Figment;
use serde::{Deserialize, Serialize};

/// The key under which the configuration lives in Rocket's figment.
pub(crate) const FIGMENT_KEY: &str = "sessions";

/// Session configuration, read from the `sessions` table of Rocket's
/// configuration (`[default.sessions]` in `Rocket.toml`, or
/// `ROCKET_SESSIONS='{idle_timeout=600}'` in the environment).
///
/// Every field is optional; durations are whole seconds. Unknown keys are
/// rejected at launch, naming the key.
///
/// Sessions live in one of two places (see [`Mode`]): in PostgreSQL, with
/// only an id in the cookie, or sealed inside the cookie itself, encrypted
/// with the keys of `keys`.
///
/// ```toml
/// [default.sessions]
/// database_url = "postgres://app@127.0.0.1:5432/app"
/// idle_timeout = 1800
/// absolute_timeout = 86400
/// # Requests already on their way with the old id may read, not write,
/// # for two seconds after `regenerate()`.
/// regenerate_grace = 2
/// # Sweep expired sessions every 10 minutes, 500 rows per transaction.
/// cleanup_interval = 600
/// cleanup_batch = 500
///
/// [debug.sessions]
/// # Plain HTTP on a developer's machine: a Secure cookie would never
/// # come back, so turn Secure off for the debug profile only.
/// secure = false
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where sessions live: `"postgres"` (a row per session, the cookie
    /// carries an id) or `"cookie"` (the session is sealed in the cookie).
    ///
    /// _Default:_ `"postgres"` when `database_url` is set (or the fairing
    /// was given a store of its own), `"cookie"` otherwise. Launch logs
    /// which mode is in use and why.
    pub mode: Option<Mode>,
    /// PostgreSQL connection string, as a URL
    /// (`postgres://user:password@host:port/database`) or in key-value form.
    ///
    /// _Default:_ none; PostgreSQL mode needs it.
    pub database_url: Option<String>,
    /// Most connections the pool opens.
    ///
    /// _Default:_ four per CPU core.
    pub pool_size: usize,
    /// Seconds to wait for a new database connection.
    ///
    /// _Default:_ `5`.
    pub connect_timeout: u64,
    /// Seconds any single store operation may take, waiting for a pooled
    /// connection included. Past it the request gets a 503.
    ///
    /// _Default:_ `5`.
    pub operation_timeout: u64,
    /// The sessions table, optionally schema-qualified (`auth.sessions`).
    /// Lowercase letters, digits and `_`, at most 40 characters per part.
    ///
    /// _Default:_ `"sessions"`.
    pub table: String,
    /// Whether to apply the bundled migrations at launch.
    ///
    /// _Default:_ `true`.
    pub migrate: bool,
    /// The cookie's name.
    ///
    /// _Default:_ `"__Host-session"` when `secure` is on, `cookie_path` is
    /// `/` and no `cookie_domain` is set (the prefix makes browsers enforce
    /// exactly that); `"session"` otherwise.
    pub cookie_name: Option<String>,
    /// The cookie's `Path` attribute.
    ///
    /// _Default:_ `"/"`.
    pub cookie_path: String,
    /// The cookie's `Domain` attribute.
    ///
    /// _Default:_ none: the cookie goes back only to the host that set it.
    pub cookie_domain: Option<String>,
    /// The cookie's `Secure` attribute, independent of whether Rocket
    /// itself terminates TLS (a proxy in front usually does).
    ///
    /// _Default:_ `true`.
    pub secure: bool,
    /// The cookie's `HttpOnly` attribute.
    ///
    /// _Default:_ `true`.
    pub http_only: bool,
    /// The cookie's `SameSite` attribute: `"strict"`, `"lax"` or `"none"`
    /// (which requires `secure`).
    ///
    /// _Default:_ `"lax"`.
    pub same_site: SameSite,
    /// Seconds without a request after which a session ends.
    ///
    /// _Default:_ `1800` (30 minutes).
    pub idle_timeout: u64,
    /// Seconds after creation at which a session ends however active it
    /// is; a new id from `regenerate()` does not reset it. At most 400 days,
    /// the longest cookie lifetime browsers keep.
    ///
    /// _Default:_ `86400` (one day).
    pub absolute_timeout: u64,
    /// Seconds that must pass since a session was last written before a
    /// read moves its idle expiry forward (and re-issues the cookie). Must
    /// be below `idle_timeout`.
    ///
    /// _Default:_ `60`.
    pub touch_interval: u64,
    /// Most bytes a session's data may take as JSON. Storing a value that
    /// would grow it further fails with
    /// [`Error::TooLarge`](crate::Error::TooLarge), so that no client can
    /// make its session, and every request that loads it, as large as it
    /// likes.
    ///
    /// _Default:_ `65536` (64 KiB).
    pub max_size: usize,
    /// Cookie mode's key ring. The first key seals every cookie; every key
    /// opens the cookies sealed with it, and a cookie opened with a key
    /// other than the first is sealed again with the first on that
    /// response. See [`SealKey`].
    ///
    /// _Default:_ none. In cookie mode, the `debug` profile then uses a key
    /// generated at launch (sessions end when the application restarts)
    /// and every other profile refuses to launch.
    pub keys: Vec<SealKey>,
    /// Cookie mode: seconds by which the instants in a sealed cookie may lie
    /// in the future, for application instances whose clocks differ a
    /// little. At most 3600. Expiry itself is enforced to the second.
    ///
    /// _Default:_ `60`.
    pub clock_skew: u64,
    /// Cookie mode: an RFC 3339 instant (`"2025-06-01T12:00:00Z"`); every
    /// session created before it is rejected, sealed or moved to the store,
    /// so setting it to the present signs everyone out without rotating
    /// keys. It may lie at most `clock_skew` ahead, and an instant ahead of
    /// the launch is taken as the launch instant, so that sign-ins after
    /// launch are kept.
    ///
    /// _Default:_ none.
    pub not_before: Option<String>,
    /// Seconds during which the id a session had before
    /// [`Session::regenerate`](crate::Session::regenerate) still reads it,
    /// for requests that were already on their way with the old cookie.
    /// Through the old id the session is read-only: a write, `destroy()`
    /// included, is answered with `409 Conflict` and the response sets no
    /// cookie, so the client keeps the new one. At most 300.
    ///
    /// `0` ends the old id at once. A window reopens session fixation for
    /// its length: whoever else holds the old id (a cookie planted before
    /// sign-in, or a stolen one) reads the signed-in session, data written
    /// after the sign-in and [`Session::user`](crate::Session::user)
    /// included, until it closes. Keep it to the few seconds a request
    /// takes, and have guards that authorise refuse a session for which
    /// [`Session::is_read_only`](crate::Session::is_read_only) is true. It
    /// applies to sessions in the store; a sealed cookie has no server-side
    /// id to keep.
    ///
    /// _Default:_ `0`.
    pub regenerate_grace: u64,
    /// Seconds between two sweeps of expired sessions in the store by the
    /// background task that the fairing starts at liftoff and stops at
    /// shutdown (when there is a store). The first sweep runs at liftoff. `0` turns the task off (for example
    /// when a scheduled job of your own deletes expired rows). At most
    /// 86400.
    ///
    /// Expired sessions are never read or written, swept or not; the sweep
    /// only reclaims their space.
    ///
    /// _Default:_ `300` (5 minutes).
    pub cleanup_interval: u64,
    /// Most rows one sweep deletes per transaction; a sweep repeats batches
    /// until one comes back short. Between 1 and 100000.
    ///
    /// _Default:_ `1000`.
    pub cleanup_batch: u64,
}

/// Where sessions live; see [`Config::mode`].
///
/// The [`Session`](crate::Session) API and the routes that use it are the
/// same in both modes; what differs is what each costs and what it can
/// do.
///
/// | | `postgres` | `cookie` |
/// |---|---|---|
/// | per request with a session | one indexed query | none: an AEAD open |
/// | cookie | a 43-character id | the sealed session, up to 4096 bytes of name and value |
/// | ending one session | immediate: the row is deleted | the browser is told to drop the cookie; a copy still opens until it expires |
/// | ending every session | delete rows | `not_before` (or a new key ring) |
/// | ending one user's sessions | immediate | with a store configured, the user's seals stop opening; without one, not possible |
/// | parallel writes to one session | merged key by key | the browser keeps the last cookie: one request's changes survive |
/// | secrets to keep | the database credentials | the key ring |
///
/// In cookie mode, `regenerate()` and `destroy()` cannot reach copies of
/// the old cookie: nothing on the server remembers it. Both expiries are
/// inside the seal and checked on every request, so a copy nobody uses
/// dies at its idle expiry, and a copy that keeps being used (touched like
/// any session) at the absolute one. `not_before` rejects every session
/// created before an instant: it signs everyone out at once.
///
/// A session that outgrows the cookie moves to the store when one is
/// configured (`database_url`, or [`Sessions::with_store`]), and stays
/// there until it ends, even if it shrinks again; without a store, the
/// write fails with [`Error::CookieTooLarge`] and the previous cookie
/// stays valid.
///
/// [`Sessions::with_store`]: crate::Sessions::with_store
/// [`Error::CookieTooLarge`]: crate::Error::CookieTooLarge
///
/// ```rust
/// use rocket::figment::Figment;
/// use rocket::local::blocking::Client;
/// use rocket::serde::json::json;
/// use rocket_tessera::{Session, Sessions};
///
/// #[rocket::post("/visit")]
/// fn visit(session: Session<'_>) -> String {
///     let visits = session.get::<u64>("visits").ok().flatten().unwrap_or(0) + 1;
///     session.insert("visits", visits).expect("a number is valid JSON");
///     visits.to_string()
/// }
///
/// // As `mode = "cookie"` and one `[[default.sessions.keys]]` entry in
/// // Rocket.toml would say. This key is published: never use it.
/// let sessions = json!({
///     "mode": "cookie",
///     "keys": [{ "id": "2025-06", "key": "qvfQfnBPKXzlN3ZzPpGTRh3sDdPRmnH0TeBysFjb9Rk=" }],
/// });
/// let figment = Figment::from(rocket::Config::debug_default()).merge(("sessions", sessions));
/// let rocket = rocket::custom(figment)
///     .attach(Sessions::fairing())
///     .mount("/", rocket::routes![visit]);
///
/// let client = Client::tracked(rocket).expect("launches without a database");
/// assert_eq!(client.post("/visit").dispatch().into_string().unwrap(), "1");
/// assert_eq!(client.post("/visit").dispatch().into_string().unwrap(), "2");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A row per session in PostgreSQL (or the store given to
    /// [`Sessions::with_store`](crate::Sessions::with_store)); the cookie
    /// carries only the session's id.
    Postgres,
    /// The whole session sealed in the cookie with an AEAD. A session that
    /// outgrows the cookie moves to the store when one is configured.
    Cookie,
}

/// One key of cookie mode's key ring: an entry of `keys`.
///
/// ```toml
/// [[release.sessions.keys]]
/// id = "2025-06"
/// algorithm = "xchacha20poly1305"
/// key = "base64 of 32 random bytes"
/// ```
///
/// A key is 32 bytes from a CSPRNG: `openssl rand -base64 32` makes one,
/// and this repository's `cargo run --example keygen` prints a whole
/// entry. Passphrases are not accepted. Keep keys out of version control;
/// Rocket also reads them from the environment:
/// `ROCKET_SESSIONS='{keys=[{id="2025-06",key="..."}]}'`.
///
/// Rotating keys, without signing anyone out:
///
/// 1. Add the new key *first* in `keys`, keeping the old ones after it,
///    and deploy everywhere. The first key seals; every key opens, and a
///    cookie opened with an older key is sealed again with the first on
///    that response.
/// 2. Once `idle_timeout` plus `clock_skew` has passed since the last
///    instance started sealing with the new key, no live cookie is sealed
///    with the old one: each was either used, and sealed again, or has
///    expired. Remove the old key. A cookie it sealed now gives a fresh
///    session, as an expired one would.
///
/// A key that leaked must go at once, without step 2's wait: remove it
/// and everyone whose cookie it sealed is signed out.
///
/// Profiles replace, not extend, a list: keep a whole ring in one
/// profile.
///
/// `Debug` shows the id and the algorithm, never the key.
///
/// ```rust
/// use rocket::figment::{providers::{Format, Toml}, Figment};
/// use rocket_tessera::{Algorithm, Config};
///
/// let toml = r#"
///     [sessions]
///     [[sessions.keys]]
///     id = "2025-06"
///     key = "qvfQfnBPKXzlN3ZzPpGTRh3sDdPRmnH0TeBysFjb9Rk="
///
///     [[sessions.keys]]
///     id = "2025-01"
///     algorithm = "aes256gcm"
///     key = "Sa8HBMWqnfYGn7b2lHz5ySymB3EUQtFbp8Zp4/fXQ1I="
/// "#;
/// let config = Config::from_figment(&Figment::from(Toml::string(toml))).unwrap();
/// assert_eq!(config.keys[0].id, "2025-06");
/// assert_eq!(config.keys[1].algorithm, Algorithm::Aes256Gcm);
/// assert!(!format!("{config:?}").contains("qvfQ"));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealKey {
    /// A short public name for the key, carried in every cookie it seals so
    /// that the right key opens it: 1 to 32 letters, digits, `.`, `_` or
    /// `-`, unique within the ring.
    pub id: String,
    /// The AEAD this key seals with.
    ///
    /// _Default:_ `"xchacha20poly1305"`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// 32 random bytes in base64 (standard or URL-safe alphabet, padding
    /// optional). `cargo run --example keygen` prints a fresh entry.
    pub key: String,
}

/// The AEAD of a [`SealKey`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// XChaCha20-Poly1305 with random 192-bit nonces: no practical limit on
    /// how many cookies one key seals.
    #[default]
    #[serde(rename = "xchacha20poly1305")]
    XChaCha20Poly1305,
    /// AES-256-GCM. Each cookie is sealed with a subkey derived (HKDF-SHA256)
    /// from the key and 192 random bits carried in the cookie, so the
    /// 96-bit nonce limit of AES-GCM (about 2^32 messages per key) does not
    /// apply to the configured key.
    #[serde(rename = "aes256gcm")]
    Aes256Gcm,
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The cookie's `SameSite` attribute, written `"strict"`, `"lax"` or
/// `"none"` in any case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    /// Sent only with requests that start on the same site.
    Strict,
    /// Also sent on top-level navigations from other sites.
    Lax,
    /// Sent with cross-site requests too; needs `secure`.
    None,
}

impl<'de> Deserialize<'de> for SameSite {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<SameSite, D::Error> {
        const NAMES: &[&str] = &["strict", "lax", "none"];
        let name = String::deserialize(de)?;
        match name.to_ascii_lowercase().as_str() {
            "strict" => Ok(SameSite::Strict),
            "lax" => Ok(SameSite::Lax),
            "none" => Ok(SameSite::None),
            _ => Err(serde::de::Error::unknown_variant(&name, NAMES)),
        }
    }
}

const MAX_LIFETIME: u64 = 400 * 24 * 60 * 60;
const MAX_CLOCK_SKEW: u64 = 3600;
const MAX_KEY_ID: usize = 32;
const MAX_TABLE_PART: usize = 40;
const MAX_GRACE: u64 = 300;
const MAX_CLEANUP_INTERVAL: u64 = 86400;
const MAX_CLEANUP_BATCH: u64 = 100_000;

impl Default for Config {
    fn default() -> Config {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            mode: None,
            database_url: None,
            pool_size: cores * 4,
            connect_timeout: 5,
            operation_timeout: 5,
            table: "sessions".into(),
            migrate: true,
            cookie_name: None,
            cookie_path: "/".into(),
            cookie_domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            idle_timeout: 1800,
            absolute_timeout: 86400,
            touch_interval: 60,
            max_size: 65536,
            keys: Vec::new(),
            clock_skew: 60,
            not_before: None,
            regenerate_grace: 0,
            cleanup_interval: 300,
            cleanup_batch: 1000,
        }
    }
}

impl Config {
    /// Reads and validates the `sessions` table of a figment; an absent
    /// table gives the defaults (which still need a `database_url`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field that is unknown, has the
    /// wrong type, or holds a value that is not allowed.
    pub fn from_figment(figment: &Figment) -> Result<Config, ConfigError> {
        let config = if figment.find_value(FIGMENT_KEY).is_ok() {
            figment
                .extract_inner::<Config>(FIGMENT_KEY)
                .map_err(ConfigError::from_figment)?
        } else {
            Config::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values against each other and against what browsers
    /// accept.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem: &str| Err(ConfigError::new(field, problem));

        if let Some(url) = &self.database_url {
            if tokio_postgres::Config::from_str(url).is_err() {
                return bad(
                    "database_url",
                    "is not a valid PostgreSQL connection string",
                );
            }
        }
        if self.pool_size == 0 {
            return bad("pool_size", "must be at least 1");
        }
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("operation_timeout", self.operation_timeout),
            ("idle_timeout", self.idle_timeout),
            ("absolute_timeout", self.absolute_timeout),
        ] {
            if value == 0 {
                return bad(field, "must be at least 1 second");
            }
        }
        if self.idle_timeout > MAX_LIFETIME || self.absolute_timeout > MAX_LIFETIME {
            let field = if self.idle_timeout > MAX_LIFETIME {
                "idle_timeout"
            } else {
                "absolute_timeout"
            };
            return bad(
                field,
                "must be at most 400 days (34560000 seconds), the most browsers keep a cookie",
            );
        }
        if self.touch_interval >= self.idle_timeout {
            return bad(
                "touch_interval",
                "must be less than idle_timeout, or sessions expire before they are touched",
            );
        }
        if self.max_size < 64 {
            return bad("max_size", "must be at least 64 bytes");
        }
        if self.clock_skew > MAX_CLOCK_SKEW {
            return bad("clock_skew", "must be at most 3600 seconds");
        }
        if self.regenerate_grace > MAX_GRACE {
            return bad(
                "regenerate_grace",
                "must be at most 300 seconds: the old id stays readable that long",
            );
        }
        if self.cleanup_interval > MAX_CLEANUP_INTERVAL {
            return bad(
                "cleanup_interval",
                "must be at most 86400 seconds (one day), or 0 to turn the sweep off",
            );
        }
        if self.cleanup_batch == 0 || self.cleanup_batch > MAX_CLEANUP_BATCH {
            return bad("cleanup_batch", "must be between 1 and 100000 rows");
        }
        if !valid_table(&self.table) {
            return bad(
                "table",
                "must be a lowercase name of letters, digits and `_` (at most 40 characters), optionally schema-qualified",
            );
        }

        let name = self.cookie_name();
        if name.is_empty() || name.len() > 64 || !name.bytes().all(is_token_char) {
            return bad(
                "cookie_name",
                "must be 1 to 64 letters, digits or the characters !#$%&'*+-.^_`|~",
            );
        }
        if !self.cookie_path.starts_with('/') || !self.cookie_path.bytes().all(is_attribute_char) {
            return bad(
                "cookie_path",
                "must start with `/` and hold no `;`, spaces or control characters",
            );
        }
        if let Some(domain) = &self.cookie_domain {
            if domain.is_empty() || !domain.bytes().all(|b| is_attribute_char(b) && b != b'/') {
                return bad(
                    "cookie_domain",
                    "must be a host name without `;`, `/`, spaces or control characters",
                );
            }
        }
        if self.same_site == SameSite::None && !self.secure {
            return bad(
                "same_site",
                "\"none\" requires secure = true; browsers reject it otherwise",
            );
        }
        if name.starts_with("__Host-") {
            if !self.secure {
                return bad("cookie_name", "a __Host- name requires secure = true");
            }
            if self.cookie_domain.is_some() {
                return bad("cookie_name", "a __Host- name forbids cookie_domain");
            }
            if self.cookie_path != "/" {
                return bad("cookie_name", "a __Host- name requires cookie_path = \"/\"");
            }
        }
        if name.starts_with("__Secure-") && !self.secure {
            return bad("cookie_name", "a __Secure- name requires secure = true");
        }
        self.validate_keys()?;
        if self.not_before.is_some() {
            match self.not_before_unix() {
                None => {
                    return bad(
                        "not_before",
                        "must be an RFC 3339 instant such as \"2025-06-01T12:00:00Z\"",
                    )
                }
                Some(at) if at > unix_now().saturating_add(self.clock_skew as i64) => {
                    return bad(
                        "not_before",
                        "lies in the future; it would reject every session until then",
                    )
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn validate_keys(&self) -> Result<(), ConfigError> {
        for (i, key) in self.keys.iter().enumerate() {
            let field = |name: &str| format!("keys[{i}].{name}");
            let id_ok = |id: &str| {
                (1..=MAX_KEY_ID).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            };
            if !id_ok(&key.id) {
                return Err(ConfigError::new(
                    &field("id"),
                    "must be 1 to 32 letters, digits, `.`, `_` or `-`",
                ));
            }
            if self.keys[..i].iter().any(|k| k.id == key.id) {
                return Err(ConfigError::new(
                    &field("id"),
                    "is used by an earlier key; ids must be unique",
                ));
            }
            match crate::seal::decode_key(&key.key) {
                None => {
                    return Err(ConfigError::new(
                        &field("key"),
                        "must be 32 bytes in base64 (44 characters with padding)",
                    ))
                }
                Some(bytes) if bytes.iter().all(|b| *b == bytes[0]) => {
                    return Err(ConfigError::new(
                        &field("key"),
                        "repeats a single byte; use 32 random bytes",
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The cookie name in effect: `cookie_name`, or the default described
    /// on that field.
    pub fn cookie_name(&self) -> &str {
        match &self.cookie_name {
            Some(name) => name,
            None if self.secure && self.cookie_path == "/" && self.cookie_domain.is_none() => {
                "__Host-session"
            }
            None => "session",
        }
    }

    pub(crate) fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.operation_timeout)
    }

    /// Brings a `not_before` that lies ahead (within `clock_skew`, which
    /// validation allows) back to the present: sessions made from launch on
    /// are made under this configuration, and rejecting them until that
    /// instant would lose every sign-in in between.
    pub(crate) fn settle_not_before(&mut self) {
        use rocket::time::format_description::well_known::Rfc3339;
        use rocket::time::OffsetDateTime;

        let now = unix_now();
        if self.not_before_unix().is_some_and(|at| at > now) {
            log::info!("sessions: `not_before` lies ahead of this clock; using the launch instant");
            self.not_before = OffsetDateTime::from_unix_timestamp(now)
                .ok()
                .and_then(|at| at.format(&Rfc3339).ok());
        }
    }

    /// `not_before` in seconds since the Unix epoch, if it is set and
    /// parses.
    pub(crate) fn not_before_unix(&self) -> Option<i64> {
        use rocket::time::format_description::well_known::Rfc3339;
        use rocket::time::OffsetDateTime;

        let text = self.not_before.as_deref()?;
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .map(OffsetDateTime::unix_timestamp)
    }

    /// The pause between sweeps, or `None` when the sweep is off.
    pub(crate) fn cleanup_interval(&self) -> Option<Duration> {
        (self.cleanup_interval > 0).then(|| Duration::from_secs(self.cleanup_interval))
    }

    /// The database URL with any password replaced, for messages.
    pub fn redacted_database_url(&self) -> String {
        match self
            .database_url
            .as_deref()
            .map(tokio_postgres::Config::from_str)
        {
            Some(Ok(config)) => redact(&config),
            Some(Err(_)) => "<invalid connection string>".into(),
            None => "<none>".into(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &self.redacted_database_url())
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("table", &self.table)
            .field("migrate", &self.migrate)
            .field("cookie_name", &self.cookie_name())
            .field("cookie_path", &self.cookie_path)
            .field("cookie_domain", &self.cookie_domain)
            .field("secure", &self.secure)
            .field("http_only", &self.http_only)
            .field("same_site", &self.same_site)
            .field("idle_timeout", &self.idle_timeout)
            .field("absolute_timeout", &self.absolute_timeout)
            .field("touch_interval", &self.touch_interval)
            .field("max_size", &self.max_size)
            .field("mode", &self.mode)
            .field("keys", &self.keys)
            .field("clock_skew", &self.clock_skew)
            .field("not_before", &self.not_before)
            .field("regenerate_grace", &self.regenerate_grace)
            .field("cleanup_interval", &self.cleanup_interval)
            .field("cleanup_batch", &self.cleanup_batch)
            .finish()
    }
}

/// Renders a parsed connection string as a URL without its password.
pub(crate) fn redact(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;

    let user = config.get_user().unwrap_or("");
    let password = if config.get_password().is_some() {
        ":***"
    } else {
        ""
    };
    let at = if user.is_empty() && password.is_empty() {
        ""
    } else {
        "@"
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{password}{at}{}/{db}", hosts.join(","))
}

/// The server's clock, in seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}

fn valid_table(table: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= MAX_TABLE_PART
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !p.as_bytes()[0].is_ascii_digit()
    };
    match table.split_once('.') {
        // PostgreSQL's own schemas are not for application tables.
        Some((schema, _)) if schema.starts_with("pg_") || schema == "information_schema" => false,
        Some((schema, name)) => part_ok(schema) && part_ok(name),
        None => part_ok(table),
    }
}

/// RFC 6265's `token`: visible ASCII without separators.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What an attribute value may hold: visible ASCII without `;`.
fn is_attribute_char(b: u8) -> bool {
    b.is_ascii_graphic() && b != b';'
}

/// A configuration problem: which field, and what is wrong with it.
///
/// The message names the field and the rule, never the offending value, so
/// that a secret put in the wrong place is not printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: String,
    problem: String,
}

impl ConfigError {
    pub(crate) fn new(field: &str, problem: &str) -> ConfigError {
        ConfigError {
            field: field.to_string(),
            problem: problem.to_string(),
        }
    }

    /// The offending field, as `sessions.<name>`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Translates figment's error, dropping the value it quotes. Paths read
    /// as in TOML: `keys[0].key`.
    fn from_figment(err: rocket::figment::Error) -> ConfigError {
        let mut path = String::new();
        // Figment appends the table's own key to the path.
        for part in err.path.iter().filter(|p| *p != FIGMENT_KEY) {
            if !path.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                path.push_str(&format!("[{part}]"));
            } else {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(part);
            }
        }
        let within = |name: &str| {
            if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        };
        let problem = match &err.kind {
            // The path already ends with the unknown name.
            Kind::UnknownField(name, _) if path.is_empty() || path == *name => {
                return ConfigError::new(name, "is not a known setting of the sessions table");
            }
            Kind::InvalidType(Actual::Str(_), _) if path.is_empty() => {
                return ConfigError::new(
                    "(table)",
                    "must be a table of settings, such as ROCKET_SESSIONS='{idle_timeout=300}'; \
                     check its quotes and braces",
                );
            }
            Kind::UnknownField(..) => {
                return ConfigError::new(&path, "is not a known setting here");
            }
            Kind::InvalidType(actual, expected) => {
                format!(
                    "must be {}, not {}",
                    expected_kind(expected),
                    kind_of(actual)
                )
            }
            Kind::InvalidValue(_, expected) => {
                format!(
                    "must be {}; this one is out of range",
                    expected_kind(expected)
                )
            }
            Kind::UnknownVariant(_, expected) => format!("must be one of {}", expected.join(", ")),
            Kind::InvalidLength(_, expected) => format!("expected {expected}"),
            Kind::MissingField(name) => return ConfigError::new(&within(name), "is missing"),
            Kind::DuplicateField(name) => return ConfigError::new(&within(name), "is given twice"),
            _ => "is not valid here".to_string(),
        };
        let field = if path.is_empty() {
            "(table)".to_string()
        } else {
            path
        };
        ConfigError { field, problem }
    }
}

/// Serde's name for an expected type, in words.
fn expected_kind(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "a boolean" | "bool" => "true or false".into(),
        other => other
            .trim_start_matches("a ")
            .to_string()
            .replace("string", "a string"),
    }
}

fn kind_of(actual: &Actual) -> &'static str {
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a decimal number",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        _ => "a value of another kind",
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid session configuration: `{FIGMENT_KEY}.{}` {}",
            self.field, self.problem
        )
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    use rocket::figment::providers::{Format, Toml};

    fn parse(toml: &str) -> Result<Config, ConfigError> {
        Config::from_figment(&Figment::from(Toml::string(toml)))
    }

    const URL: &str = "database_url = \"postgres://app:hunter2@db.local:5433/app\"\n";

    #[test]
    fn defaults_are_secure() {
        let c = Config::default();
        assert!(c.secure && c.http_only && c.migrate);
        assert_eq!(c.same_site, SameSite::Lax);
        assert_eq!(c.cookie_name(), "__Host-session");
        assert_eq!(c.table, "sessions");
        assert_eq!(
            (c.idle_timeout, c.absolute_timeout, c.touch_interval),
            (1800, 86400, 60)
        );
        assert!(c.pool_size >= 4);
        assert_eq!(
            (c.regenerate_grace, c.cleanup_interval, c.cleanup_batch),
            (0, 300, 1000)
        );
        assert_eq!(c.cleanup_interval(), Some(Duration::from_secs(300)));
    }

    #[test]
    fn a_zero_cleanup_interval_turns_the_sweep_off() {
        let c = parse(&format!("[sessions]\n{URL}cleanup_interval = 0")).unwrap();
        assert_eq!(c.cleanup_interval(), None);
    }

    #[test]
    fn default_name_drops_the_prefix_when_it_cannot_hold() {
        let c = parse(&format!("[sessions]\n{URL}secure = false")).unwrap();
        assert_eq!(c.cookie_name(), "session");
        let c = parse(&format!("[sessions]\n{URL}cookie_path = \"/app\"")).unwrap();
        assert_eq!(c.cookie_name(), "session");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse(&format!("[sessions]\n{URL}idle_timout = 5")).unwrap_err();
        assert_eq!(err.field(), "idle_timout");
        assert!(err.to_string().contains("sessions.idle_timout"), "{err}");
    }

    #[test]
    fn type_errors_name_the_field_but_not_the_value() {
        let err = parse(&format!("[sessions]\n{URL}idle_timeout = \"s3cr3t-value\"")).unwrap_err();
        assert_eq!(err.field(), "idle_timeout");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        let err = parse(&format!("[sessions]\n{URL}same_site = \"s3cr3t\"")).unwrap_err();
        assert_eq!(err.field(), "same_site");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(err.to_string().contains("strict"), "{err}");
    }

    #[test]
    fn bad_urls_are_not_quoted() {
        let err =
            parse("[sessions]\ndatabase_url = \"postgres://u:s3cr3t@h:notaport/db\"").unwrap_err();
        assert_eq!(err.field(), "database_url");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn messages_read_as_sentences() {
        let err = parse(&format!("[sessions]\n{URL}idle_timeout = -1")).unwrap_err();
        assert_eq!(err.to_string(), "invalid session configuration: `sessions.idle_timeout` must be a whole number, 0 or more; this one is out of range");
        let err = parse(&format!("[sessions]\n{URL}secure = \"yes\"")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid session configuration: `sessions.secure` must be true or false, not a string"
        );
        let err = Config::from_figment(&Figment::from(Toml::string(
            "sessions = \"{idle_timeout=3\"",
        )))
        .unwrap_err();
        assert!(err.to_string().contains("ROCKET_SESSIONS="), "{err}");
    }

    #[test]
    fn same_site_ignores_case() {
        let c = parse(&format!("[sessions]\n{URL}same_site = \"Strict\"")).unwrap();
        assert_eq!(c.same_site, SameSite::Strict);
    }

    #[test]
    fn redaction_hides_the_password() {
        let c = parse(&format!("[sessions]\n{URL}")).unwrap();
        assert_eq!(
            c.redacted_database_url(),
            "postgres://app:***@db.local:5433/app"
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn cookie_rules_are_enforced() {
        let cases = [
            ("same_site = \"none\"\nsecure = false", "same_site"),
            (
                "cookie_name = \"__Host-x\"\ncookie_domain = \"example.com\"",
                "cookie_name",
            ),
            (
                "cookie_name = \"__Host-x\"\ncookie_path = \"/a\"",
                "cookie_name",
            ),
            ("cookie_name = \"__Host-x\"\nsecure = false", "cookie_name"),
            ("cookie_name = \"a b\"", "cookie_name"),
            ("cookie_path = \"a\"", "cookie_path"),
            ("cookie_domain = \"a;b\"", "cookie_domain"),
            ("touch_interval = 1800", "touch_interval"),
            ("idle_timeout = 0", "idle_timeout"),
            ("absolute_timeout = 34560001", "absolute_timeout"),
            ("table = \"Sessions\"", "table"),
            ("table = \"a.b.c\"", "table"),
            ("table = \"information_schema.s\"", "table"),
            ("table = \"pg_catalog.s\"", "table"),
            ("max_size = 10", "max_size"),
            ("pool_size = 0", "pool_size"),
            ("regenerate_grace = 301", "regenerate_grace"),
            ("cleanup_interval = 86401", "cleanup_interval"),
            ("cleanup_batch = 0", "cleanup_batch"),
            ("cleanup_batch = 100001", "cleanup_batch"),
            ("cleanup_batch = -1", "cleanup_batch"),
        ];
        for (toml, field) in cases {
            let err = parse(&format!("[sessions]\n{URL}{toml}")).unwrap_err();
            assert_eq!(err.field(), field, "{toml}");
        }
        assert!(parse(&format!("[sessions]\n{URL}table = \"auth.web_sessions\"")).is_ok());
    }

    #[test]
    fn an_absent_table_gives_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    const KEY: &str = "qvfQfnBPKXzlN3ZzPpGTRh3sDdPRmnH0TeBysFjb9Rk=";

    #[test]
    fn mode_and_cookie_settings_parse() {
        let c = parse(&format!(
            "[sessions]\nmode = \"cookie\"\nclock_skew = 5\n\
             not_before = \"2024-01-02T03:04:05Z\"\n\
             keys = [{{ id = \"k1\", key = \"{KEY}\" }}, \
                     {{ id = \"k0\", algorithm = \"aes256gcm\", key = \"{KEY}\" }}]"
        ))
        .unwrap();
        assert_eq!(c.mode, Some(Mode::Cookie));
        assert_eq!(c.clock_skew, 5);
        assert_eq!(c.not_before_unix(), Some(1_704_164_645));
        assert_eq!(c.keys[0].algorithm, Algorithm::XChaCha20Poly1305);
        assert_eq!(c.keys[1].algorithm, Algorithm::Aes256Gcm);
        assert_eq!(Config::default().mode, None);
    }

    #[test]
    fn key_errors_name_the_entry_but_never_the_key() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlYw";
        let cases = [
            (format!("{{ id = \"a b\", key = \"{KEY}\" }}"), "keys[0].id"),
            (format!("{{ id = \"\", key = \"{KEY}\" }}"), "keys[0].id"),
            (
                format!("{{ id = \"a\", key = \"{KEY}\" }}, {{ id = \"a\", key = \"{KEY}\" }}"),
                "keys[1].id",
            ),
            (
                format!("{{ id = \"a\", key = \"{secret}\" }}"),
                "keys[0].key",
            ),
            (
                format!("{{ id = \"a\", key = \"{secret}!!\" }}"),
                "keys[0].key",
            ),
            (
                "{ id = \"a\", key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\" }".into(),
                "keys[0].key",
            ),
            (
                format!("{{ id = \"a\", key = \"{secret}\", algorithm = \"des\" }}"),
                "keys[0].algorithm",
            ),
            (
                format!("{{ id = \"a\", key = \"{secret}\", extra = 1 }}"),
                "keys[0].extra",
            ),
            ("{ id = \"a\" }".into(), "keys[0].key"),
        ];
        for (keys, field) in cases {
            let err = parse(&format!("[sessions]\nkeys = [{keys}]")).unwrap_err();
            assert_eq!(err.field(), field, "{keys}");
            assert!(!err.to_string().contains(&secret[..12]), "{err}");
        }
    }

    #[test]
    fn debug_hides_the_keys() {
        let c = parse(&format!(
            "[sessions]\nkeys = [{{ id = \"k1\", key = \"{KEY}\" }}]"
        ))
        .unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("k1"), "{shown}");
        assert!(!shown.contains(&KEY[..12]), "{shown}");
    }

    #[test]
    fn a_not_before_ahead_becomes_the_launch_instant() {
        let ahead = rocket::time::OffsetDateTime::from_unix_timestamp(unix_now() + 30).unwrap();
        let text = ahead
            .format(&rocket::time::format_description::well_known::Rfc3339)
            .unwrap();
        let mut c = parse(&format!("[sessions]\nnot_before = \"{text}\"")).unwrap();
        c.settle_not_before();
        assert!(c.not_before_unix().unwrap() <= unix_now());
        let mut past = parse("[sessions]\nnot_before = \"2020-01-01T00:00:00Z\"").unwrap();
        past.settle_not_before();
        assert_eq!(past.not_before_unix(), Some(1_577_836_800));
    }

    #[test]
    fn not_before_and_clock_skew_are_checked() {
        let err = parse("[sessions]\nnot_before = \"yesterday\"").unwrap_err();
        assert_eq!(err.field(), "not_before");
        let err = parse("[sessions]\nnot_before = \"2999-01-01T00:00:00Z\"").unwrap_err();
        assert_eq!(err.field(), "not_before");
        assert!(err.to_string().contains("future"), "{err}");
        let err = parse("[sessions]\nclock_skew = 3601").unwrap_err();
        assert_eq!(err.field(), "clock_skew");
        assert!(parse("[sessions]\nnot_before = \"2020-01-01T00:00:00+02:00\"").is_ok());
    }
}
