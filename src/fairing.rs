//! The fairing: configuration, store and migrations at ignite; the write
//! back on each response; closing the store at shutdown.

use std::future::Future;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::http::{ContentType, Header, Status};
use rocket::{Build, Orbit, Request, Response, Rocket};

use crate::config::Config;
use crate::cookie;
use crate::session::{self, CookieOutcome, Slot};
use crate::store::{PostgresStore, SessionStore};
use crate::Error;

type StoreWrapper = dyn Fn(Arc<dyn SessionStore>) -> Arc<dyn SessionStore> + Send + Sync;

/// The fairing that gives a Rocket application sessions.
///
/// At ignite it reads the `sessions` table of the configuration (see
/// [`Config`]), connects to PostgreSQL, applies pending migrations and
/// stops launch with one clear error if any of that fails. On every
/// response it writes what the handler changed, then sets the cookie.
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
    pub(crate) store: Arc<dyn SessionStore>,
}

impl Shared {
    /// Runs a store call within `operation_timeout`.
    pub(crate) async fn call<T>(
        &self,
        op: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::time::timeout(self.config.operation_timeout(), op)
            .await
            .unwrap_or(Err(Error::Timeout))
    }
}

impl Sessions {
    /// The fairing, with the PostgreSQL store configured in `Rocket.toml`.
    pub fn fairing() -> Sessions {
        Sessions {
            store: None,
            wrap: None,
        }
    }

    /// The fairing, with a store of your own instead of the configured one.
    /// The cookie and lifetime settings still come from the configuration;
    /// `database_url` is not needed.
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
        log::info!(
            "sessions: PostgreSQL mode, table `{}` at {url}",
            config.table
        );
        Ok(Arc::new(store))
    }
}

#[rocket::async_trait]
impl Fairing for Sessions {
    fn info(&self) -> Info {
        Info {
            name: "Sessions",
            kind: Kind::Ignite | Kind::Response | Kind::Singleton,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        let config = match Config::from_figment(rocket.figment()) {
            Ok(config) => config,
            Err(e) => {
                log::error!("{e}");
                return Err(rocket);
            }
        };
        let store = match self.build_store(&config).await {
            Ok(store) => store,
            Err(e) => {
                log::error!("sessions: {e}");
                return Err(rocket);
            }
        };
        let store = match &self.wrap {
            Some(wrap) => wrap(store),
            None => store,
        };
        Ok(rocket.manage(Shared { config, store }))
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

    async fn on_shutdown(&self, _rocket: &Rocket<Orbit>) {}
}

/// Turns a response whose session could not be written into the crate's
/// own answer: 409 when another request ended the session, 503 when the
/// store failed. Cookies and redirects the handler set are dropped, so a
/// client is never told about data that was not stored. The body names the
/// kind of failure only; the log has the cause. It is JSON
/// (`{"error": "..."}`) when the handler answered JSON or the client asked
/// for it, plain text otherwise.
fn replace_with_error(req: &Request<'_>, res: &mut Response<'_>, e: &Error) {
    let (status, message) = match e {
        Error::Gone => {
            log::warn!("sessions: changes dropped: {e}");
            (
                Status::Conflict,
                "the session was ended by another request; the changes were not saved",
            )
        }
        Error::Timeout => {
            log::error!("sessions: cannot confirm the session write: {e}");
            (
                Status::ServiceUnavailable,
                "the session store did not confirm the write in time; it may or may not have happened",
            )
        }
        _ => {
            log::error!("sessions: cannot save the session: {e}");
            (
                Status::ServiceUnavailable,
                "the session could not be saved: the session store failed",
            )
        }
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
