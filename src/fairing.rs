//! The fairing: configuration, store and migrations at ignite; the sweep
//! task from liftoff to shutdown; the write back on each response.

use std::borrow::Cow;
use std::future::Future;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::http::{ContentType, Header, Status};
use rocket::{Build, Orbit, Request, Response, Rocket};

use crate::cleanup;
use crate::config::{Config, Mode};
use crate::cookie;
use crate::seal::KeyRing;
use crate::session::{self, CookieOutcome, Slot};
use crate::store::{PostgresStore, SessionStore};
use crate::{Error, SessionAdmin};

type StoreWrapper = dyn Fn(Arc<dyn SessionStore>) -> Arc<dyn SessionStore> + Send + Sync;

/// The fairing that gives a Rocket application sessions.
///
/// At ignite it reads the `sessions` table of the configuration (see
/// [`Config`]) and chooses the mode ([`Mode`]). When a database is
/// configured it connects to PostgreSQL and applies pending migrations, in
/// either mode; in cookie mode it builds the key ring. Launch stops with one
/// clear error if any of that fails: a database that is down never makes
/// it fall back to cookies. On every response it writes what the handler
/// changed, then sets the cookie. It manages a [`SessionAdmin`] for
/// application-wide control.
///
/// When there is a store (PostgreSQL mode, or cookie mode with a store to
/// move large sessions to), a background task deletes its expired sessions
/// from liftoff to shutdown, every `cleanup_interval` (see [`Config`]), in
/// batches of `cleanup_batch` rows, each batch one transaction that first
/// takes `pg_try_advisory_xact_lock` on a key derived from the table name:
/// when several app instances share the table, one sweeps and the others
/// skip that batch. The lock ends with the transaction, so a pooled
/// connection never keeps it. Rocket runs the shutdown step at a graceful
/// shutdown, and the local test client runs it on `terminate()`; the task
/// finishes the batch in flight and ends.
///
/// ```rust,no_run
/// # use rocket::launch;
/// use rocket_tessera::Sessions;
///
/// #[launch]
/// fn rocket() -> _ {
///     rocket::build().attach(Sessions::fairing())
/// }
/// ```
#[derive(Clone)]
pub struct Sessions {
    store: Option<Arc<dyn SessionStore>>,
    wrap: Option<Arc<StoreWrapper>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("custom_store", &self.store.is_some())
            .field("store_wrapper", &self.wrap.is_some())
            .finish()
    }
}

/// The state the fairing manages: shared by every request.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) backend: Backend,
    /// The sweep task, from liftoff to shutdown.
    cleanup: Mutex<Option<cleanup::Task>>,
}

/// Where this application's sessions live: the one place the two modes
/// differ.
pub(crate) enum Backend {
    /// PostgreSQL mode: every session is in the store; the cookie carries
    /// its id.
    Store(Arc<dyn SessionStore>),
    /// Cookie mode: sessions are sealed in the cookie. A session that
    /// outgrows it moves to `spill`, when there is one, and stays there.
    Cookie {
        ring: KeyRing,
        spill: Option<Arc<dyn SessionStore>>,
    },
}

impl Shared {
    /// The store, if this application has one: always in PostgreSQL mode,
    /// and in cookie mode when sessions can spill over to it.
    pub(crate) fn store(&self) -> Option<&Arc<dyn SessionStore>> {
        match &self.backend {
            Backend::Store(store) => Some(store),
            Backend::Cookie { spill, .. } => spill.as_ref(),
        }
    }

    /// Whether sessions are sealed in the cookie (cookie mode).
    pub(crate) fn is_sealing(&self) -> bool {
        matches!(self.backend, Backend::Cookie { .. })
    }

    /// Runs a store call within `operation_timeout`.
    pub(crate) async fn call<T>(
        &self,
        op: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        bounded(self.config.operation_timeout(), op).await
    }
}

/// Runs a store call within `timeout`.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    op: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(timeout, op)
        .await
        .unwrap_or(Err(Error::Timeout))
}

impl Sessions {
    /// The fairing, with the mode and the store configured in
    /// `Rocket.toml`.
    pub fn fairing() -> Sessions {
        Sessions {
            store: None,
            wrap: None,
        }
    }

    /// The fairing, with a store of your own instead of the configured one.
    /// The cookie and lifetime settings still come from the configuration;
    /// `database_url` is not needed. Without a `mode`, sessions live in
    /// this store; with `mode = "cookie"`, sessions that outgrow the cookie
    /// move to it.
    pub fn with_store(store: impl SessionStore) -> Sessions {
        Sessions {
            store: Some(Arc::new(store)),
            wrap: None,
        }
    }

    /// Wraps the store once it is built, for instrumentation: counting,
    /// tracing or injecting faults in tests.
    pub fn map_store<F>(mut self, wrap: F) -> Sessions
    where
        F: Fn(Arc<dyn SessionStore>) -> Arc<dyn SessionStore> + Send + Sync + 'static,
    {
        self.wrap = Some(Arc::new(wrap));
        self
    }

    /// The mode in effect and why, for the launch log.
    fn mode(&self, config: &Config) -> (Mode, &'static str) {
        match config.mode {
            Some(Mode::Postgres) => (Mode::Postgres, "mode = \"postgres\""),
            Some(Mode::Cookie) => (Mode::Cookie, "mode = \"cookie\""),
            None if self.store.is_some() => (Mode::Postgres, "a store was given to the fairing"),
            None if config.database_url.is_some() => (Mode::Postgres, "database_url is set"),
            None => (Mode::Cookie, "no database_url is set"),
        }
    }

    async fn build_backend(&self, config: &Config, debug: bool) -> Result<Backend, String> {
        let (mode, why) = self.mode(config);
        if mode == Mode::Postgres {
            if !config.keys.is_empty() || config.not_before.is_some() {
                log::warn!("sessions: `keys` and `not_before` only apply to cookie mode");
            }
            log::info!("sessions: PostgreSQL mode ({why})");
            return Ok(Backend::Store(
                self.wrapped(self.build_store(config).await?),
            ));
        }

        let ring = if !config.keys.is_empty() {
            KeyRing::new(&config.keys).map_err(|e| e.to_string())?
        } else if debug {
            log::warn!(
                "sessions: no `keys` configured; sealing cookies with a key made for this \
                 run only, so sessions end when the application restarts. Profiles other \
                 than `debug` refuse to launch without keys."
            );
            KeyRing::ephemeral()
        } else {
            return Err(
                "invalid session configuration: `sessions.keys` is empty; cookie mode needs \
                 at least one key outside the debug profile (32 random bytes in base64, as \
                 `openssl rand -base64 32` prints them)"
                    .into(),
            );
        };
        let spill = if self.store.is_some() || config.database_url.is_some() {
            Some(self.wrapped(self.build_store(config).await?))
        } else {
            None
        };
        match &spill {
            Some(_) => log::info!(
                "sessions: cookie mode ({why}); sessions too large for the cookie move to the store"
            ),
            None => log::info!(
                "sessions: cookie mode ({why}); no store, so a session too large for the \
                 cookie fails to save"
            ),
        }
        Ok(Backend::Cookie { ring, spill })
    }

    fn wrapped(&self, store: Arc<dyn SessionStore>) -> Arc<dyn SessionStore> {
        match &self.wrap {
            Some(wrap) => wrap(store),
            None => store,
        }
    }

    async fn build_store(&self, config: &Config) -> Result<Arc<dyn SessionStore>, String> {
        if let Some(store) = &self.store {
            return Ok(store.clone());
        }
        if config.database_url.is_none() {
            return Err(
                "invalid session configuration: `sessions.database_url` is not set; \
                        PostgreSQL mode needs it"
                    .into(),
            );
        }
        let store = PostgresStore::new(config).map_err(|e| e.to_string())?;
        let bound = Duration::from_secs(config.connect_timeout) + config.operation_timeout();
        let url = config.redacted_database_url();
        match tokio::time::timeout(bound, store.prepare(config)).await {
            Ok(Ok(())) => {}
            Ok(Err(Error::Store(e))) => return Err(e.summary().to_string()),
            Ok(Err(e)) => return Err(format!("cannot connect to PostgreSQL at {url}: {e}")),
            Err(_) => {
                let secs = bound.as_secs();
                return Err(format!(
                    "cannot connect to PostgreSQL at {url}: no answer within {secs} s"
                ));
            }
        }
        log::info!("sessions: store: table `{}` at {url}", config.table);
        Ok(Arc::new(store))
    }
}

#[rocket::async_trait]
impl Fairing for Sessions {
    fn info(&self) -> Info {
        Info {
            name: "Sessions",
            kind: Kind::Ignite | Kind::Liftoff | Kind::Response | Kind::Shutdown | Kind::Singleton,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        let mut config = match Config::from_figment(rocket.figment()) {
            Ok(config) => config,
            Err(e) => {
                log::error!("{e}");
                return Err(rocket);
            }
        };
        config.settle_not_before();
        let debug = rocket.figment().profile() == rocket::Config::DEBUG_PROFILE;
        let backend = match self.build_backend(&config, debug).await {
            Ok(backend) => backend,
            Err(e) => {
                log::error!("sessions: {e}");
                return Err(rocket);
            }
        };
        let shared = Shared {
            config,
            backend,
            cleanup: Mutex::new(None),
        };
        let admin = SessionAdmin::new(
            shared.store().cloned(),
            shared.config.operation_timeout(),
            shared.config.cleanup_batch,
        );
        Ok(rocket.manage(shared).manage(admin))
    }

    async fn on_liftoff(&self, rocket: &Rocket<Orbit>) {
        let (Some(shared), Some(admin)) =
            (rocket.state::<Shared>(), rocket.state::<SessionAdmin>())
        else {
            return;
        };
        if shared.store().is_none() {
            return;
        }
        let Some(every) = shared.config.cleanup_interval() else {
            log::info!("sessions: cleanup_interval = 0; expired sessions are not swept");
            return;
        };
        let task = cleanup::start(admin.clone(), every);
        let old = shared
            .cleanup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task);
        if let Some(old) = old {
            old.stop(Duration::ZERO).await;
        }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let Slot::Ready(state) = req.local_cache(|| Slot::Unused) else {
            return;
        };
        let Some(shared) = req.rocket().state::<Shared>() else {
            return;
        };
        res.adjoin_header(Header::new("Vary", "Cookie"));

        // A failed request keeps nothing it changed; only what `save()`
        // already wrote is answered with a cookie.
        let outcome = if res.status().code >= 500 {
            session::committed_outcome(state)
        } else {
            match session::flush(shared, state).await {
                Ok(()) => session::finish(state),
                Err(e) => return replace_with_error(req, res, &e),
            }
        };

        let header = match outcome {
            None => return,
            Some(CookieOutcome::Issue(value, expiry)) => {
                cookie::issue(&shared.config, &value, expiry)
            }
            Some(CookieOutcome::Remove) => cookie::removal(&shared.config),
        };
        res.adjoin_header(Header::new("Set-Cookie", header));
        res.set_header(Header::new("Cache-Control", "no-store"));
    }

    async fn on_shutdown(&self, rocket: &Rocket<Orbit>) {
        let Some(shared) = rocket.state::<Shared>() else {
            return;
        };
        let task = shared
            .cleanup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            task.stop(shared.config.operation_timeout() + Duration::from_secs(1))
                .await;
        }
    }
}

/// Turns a response whose session could not be written into the crate's
/// own answer: 409 when another request ended the session (or the request
/// came with an id only good for reading), 503 when the store failed.
/// Cookies and redirects the handler set are dropped, so a client is never
/// told about data that was not stored. The body names the kind of failure
/// only; the flush logged the cause. It is JSON (`{"error": "..."}`) when
/// the handler answered JSON or the client asked for it, plain text
/// otherwise.
fn replace_with_error(req: &Request<'_>, res: &mut Response<'_>, e: &Error) {
    let (status, message): (Status, Cow<'static, str>) = match e {
        Error::Gone => (
            Status::Conflict,
            "the session was ended or given a new id by another request; \
             the changes were not saved"
                .into(),
        ),
        Error::Timeout => (
            Status::ServiceUnavailable,
            "the session store did not confirm the write in time; it may or may not have happened"
                .into(),
        ),
        Error::CookieTooLarge { size, limit } => {
            let message = format!(
                "the session could not be saved: it would take {size} bytes of cookie, \
                 over the limit of {limit}; the previous cookie stays valid"
            );
            (Status::ServiceUnavailable, message.into())
        }
        _ => (
            Status::ServiceUnavailable,
            "the session could not be saved: the session store failed".into(),
        ),
    };
    let wants_json = res.content_type().is_some_and(|t| t.is_json())
        || req
            .accept()
            .is_some_and(|a| a.preferred().media_type().is_json());
    let (content_type, body) = if wants_json {
        (
            ContentType::JSON,
            serde_json::json!({ "error": message }).to_string(),
        )
    } else {
        (
            ContentType::Plain,
            format!("{} {}: {message}\n", status.code, status.reason_lossy()),
        )
    };
    res.remove_header("Set-Cookie");
    res.remove_header("Location");
    res.set_status(status);
    res.set_header(content_type);
    res.set_header(Header::new("Cache-Control", "no-store"));
    res.set_sized_body(body.len(), Cursor::new(body));
}
