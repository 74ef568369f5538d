//! The test harness: a schema of its own per test on the real PostgreSQL,
//! a Rocket built from a figment of its own (so neither `Rocket.toml` nor
//! `ROCKET_*` variables leak in), and helpers for raw `Set-Cookie` headers.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::TryRng as _;
use rocket::figment::Figment;
use rocket::http::Header;
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::serde::json::{json, Value};
use rocket::{Build, Rocket};
use rocket_tessera::{
    ChangeSet, Error, Expiry, Loaded, Revoked, SessionHandle, SessionId, SessionInfo, SessionStore,
    Sessions,
};
use tokio_postgres::NoTls;

/// The cookie name under the default settings.
pub const COOKIE: &str = "__Host-session";

/// The bundled migrations, as a DBA would run them with psql.
pub const MIGRATIONS: [&str; 3] = [
    include_str!("../../migrations/0001_create_sessions.sql"),
    include_str!("../../migrations/0002_grace_and_revocations.sql"),
    include_str!("../../migrations/0003_revocation_generation.sql"),
];

/// Where the tests find PostgreSQL.
pub fn database_url() -> String {
    std::env::var("TESSERA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A schema of its own on the test database, dropped when the test ends.
pub struct TestDb {
    pub schema: String,
    pub client: tokio_postgres::Client,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let url = database_url();
        let (client, connection) = match tokio_postgres::connect(&url, NoTls).await {
            Ok(pair) => pair,
            Err(e) => panic!(
                "these tests need PostgreSQL and cannot reach it at {url}: {e}\n\
                 start it (`pg_ctlcluster --skip-systemctl-redirect 15 main start`) or point \
                 TESSERA_TEST_DATABASE_URL at a database where the user may create schemas"
            ),
        };
        tokio::spawn(connection);
        let schema = format!("t_{}", hex(&SessionId::generate().hash()[..8]));
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create the test schema");
        TestDb { schema, client }
    }

    /// The sessions table of this test, schema-qualified.
    pub fn table(&self) -> String {
        format!("{}.sessions", self.schema)
    }

    /// The `sessions` table of the configuration, for this test's schema.
    pub fn sessions_config(&self) -> Value {
        json!({ "database_url": database_url(), "table": self.table(), "pool_size": 4 })
    }

    /// A figment with this test's session settings, `overrides` merged in.
    pub fn figment(&self, overrides: Value) -> Figment {
        let mut sessions = self.sessions_config();
        merge(&mut sessions, overrides);
        figment_with(sessions)
    }

    pub async fn count(&self) -> i64 {
        let sql = format!("SELECT count(*) FROM {}", self.table());
        self.client.query_one(&sql, &[]).await.unwrap().get(0)
    }

    /// The stored data of the session whose cookie value is `id`.
    pub async fn data_of(&self, id: &str) -> Option<Value> {
        let hash = SessionId::parse(id).expect("a well-formed id").hash();
        let sql = format!("SELECT data FROM {} WHERE id_hash = $1", self.table());
        let row = self
            .client
            .query_opt(&sql, &[&hash.as_slice()])
            .await
            .unwrap();
        row.map(|r| r.get(0))
    }

    pub async fn exec(&self, sql: &str) {
        let sql = sql
            .replace("{table}", &self.table())
            .replace("{schema}", &self.schema);
        self.client.batch_execute(&sql).await.unwrap();
    }

    /// The first column of the first row of `sql` (`{table}` and
    /// `{schema}` substituted).
    pub async fn scalar<T>(&self, sql: &str) -> T
    where
        T: for<'a> tokio_postgres::types::FromSql<'a>,
    {
        let sql = sql
            .replace("{table}", &self.table())
            .replace("{schema}", &self.schema);
        self.client.query_one(&sql, &[]).await.unwrap().get(0)
    }

    /// The row of the session whose cookie value is `id`.
    pub async fn row_of(&self, id: &str) -> Option<tokio_postgres::Row> {
        let hash = SessionId::parse(id).expect("a well-formed id").hash();
        let sql = format!("SELECT * FROM {} WHERE id_hash = $1", self.table());
        self.client
            .query_opt(&sql, &[&hash.as_slice()])
            .await
            .unwrap()
    }

    /// The `user_id` column of the session whose cookie value is `id`.
    pub async fn user_of(&self, id: &str) -> Option<String> {
        let row = self.row_of(id).await.expect("the session is stored");
        row.get("user_id")
    }

    /// Applies the bundled migrations in this test's schema as written,
    /// the way `psql` with that schema on the search path would.
    pub async fn migrate_as_written(&self) {
        let sql = format!(
            "SET search_path TO {}; {}",
            self.schema,
            MIGRATIONS.join("\n")
        );
        self.client.batch_execute(&sql).await.unwrap();
        self.client
            .batch_execute("SET search_path TO DEFAULT")
            .await
            .unwrap();
    }

    /// Stores `n` sessions that expired a minute ago, with made-up hashes
    /// (`tag` keeps the batches of one test apart).
    pub async fn insert_expired(&self, tag: &str, n: i32) {
        self.exec(&format!(
            "INSERT INTO {{table}} (id_hash, data, user_id, idle_expires_at, absolute_expires_at) \
             SELECT sha256(convert_to('{tag}' || i, 'UTF8')), '{{\"k\": 1}}', 'expired-user', \
                    now() - interval '1 minute', now() + interval '1 hour' \
             FROM generate_series(1, {n}) AS i"
        ))
        .await;
    }

    /// Expired rows still in the table.
    pub async fn expired_count(&self) -> i64 {
        self.scalar("SELECT count(*) FROM {table} WHERE idle_expires_at <= now()")
            .await
    }

    /// A 64-bit advisory lock key of this test alone.
    pub fn private_lock_key(&self) -> i64 {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("test lock {}", self.schema));
        i64::from_be_bytes(digest[..8].try_into().unwrap())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        // The test's runtime may be gone already: drop the schema from a
        // thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&database_url(), NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A figment holding Rocket's debug defaults and `sessions`, nothing else.
pub fn figment_with(sessions: Value) -> Figment {
    let config = rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    };
    Figment::from(config).merge(("sessions", sessions))
}

/// The same, with the release profile's defaults (and the release profile
/// selected).
pub fn release_figment_with(sessions: Value) -> Figment {
    let config = rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::release_default()
    };
    Figment::from(config).merge(("sessions", sessions))
}

/// Where a test's sessions live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In this test's schema on PostgreSQL.
    Postgres,
    /// Sealed in the cookie, with a key made for this test, and no store.
    Cookie,
}

/// A test's session settings: PostgreSQL in a schema of its own, or
/// cookie mode with a key of its own (and, optionally, a schema to spill
/// over to).
pub struct Env {
    pub mode: Mode,
    pub db: Option<TestDb>,
    pub key: String,
}

impl Env {
    pub async fn new(mode: Mode) -> Env {
        let db = match mode {
            Mode::Postgres => Some(TestDb::new().await),
            Mode::Cookie => None,
        };
        Env {
            mode,
            db,
            key: random_key(),
        }
    }

    /// Cookie mode with a store configured: sessions that outgrow the
    /// cookie move to this test's schema.
    pub async fn cookie_with_store() -> Env {
        Env {
            mode: Mode::Cookie,
            db: Some(TestDb::new().await),
            key: random_key(),
        }
    }

    pub fn db(&self) -> &TestDb {
        self.db.as_ref().expect("this test has a database")
    }

    /// The `sessions` table for this test, `overrides` merged in.
    pub fn sessions(&self, overrides: Value) -> Value {
        let mut sessions = match &self.db {
            Some(db) => db.sessions_config(),
            None => json!({}),
        };
        if self.mode == Mode::Cookie {
            merge(
                &mut sessions,
                json!({ "mode": "cookie", "keys": [{ "id": "test", "key": self.key }] }),
            );
        }
        merge(&mut sessions, overrides);
        sessions
    }

    pub fn figment(&self, overrides: Value) -> Figment {
        figment_with(self.sessions(overrides))
    }
}

/// 32 random bytes in base64: a key for a test's key ring.
pub fn random_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::SysRng.try_fill_bytes(&mut bytes).unwrap();
    STANDARD.encode(bytes)
}

/// The key id a sealed cookie value names (its envelope header), or
/// `None` for anything else (a session id, say).
pub fn key_id_of(value: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    let n = usize::from(*bytes.get(1)?);
    if bytes.first() != Some(&1) || bytes.len() < 2 + n + 40 {
        return None;
    }
    String::from_utf8(bytes[2..2 + n].to_vec()).ok()
}

/// A `Cookie` request header.
pub fn cookie(name: &str, value: &str) -> Header<'static> {
    Header::new("Cookie", format!("{name}={value}"))
}

fn merge(base: &mut Value, overrides: Value) {
    if let (Some(base), Value::Object(overrides)) = (base.as_object_mut(), overrides) {
        for (key, value) in overrides {
            base.insert(key, value);
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Polls `check` every 20 ms until it holds; panics after `secs` seconds
/// with `what`.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Launches `rocket` on a local client that keeps no cookies, so that each
/// request says exactly which cookies it carries.
pub async fn untracked(rocket: Rocket<Build>) -> Client {
    Client::untracked(rocket)
        .await
        .expect("the test application launches")
}

/// What a test keeps of a response once the client is out of reach (a
/// request dispatched in a task of its own).
#[derive(Debug)]
pub struct Answer {
    pub status: rocket::http::Status,
    pub set_cookies: Vec<String>,
    pub location: Option<String>,
    pub body: String,
}

impl Answer {
    pub async fn of(res: LocalResponse<'_>) -> Answer {
        let status = res.status();
        let set_cookies = set_cookies(&res);
        let location = res.headers().get_one("Location").map(str::to_string);
        let body = res.into_string().await.unwrap_or_default();
        Answer {
            status,
            set_cookies,
            location,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    /// Asserts the crate's own 409: changes dropped, no cookie.
    pub fn assert_conflict(&self) {
        assert_eq!(self.status, rocket::http::Status::Conflict, "{self:?}");
        assert!(self.set_cookies.is_empty(), "{self:?}");
        assert!(self.location.is_none(), "{self:?}");
        // The probe routes answer JSON, so the crate's answer is JSON too.
        assert_eq!(
            self.json(),
            json!({
                "error": "the session was ended or given a new id by another request; \
                          the changes were not saved"
            }),
            "{self:?}"
        );
    }
}

/// Dispatches a request and waits for its answer. `id` is the session
/// cookie to send.
pub async fn request(
    client: &Client,
    method: rocket::http::Method,
    uri: &str,
    id: Option<&str>,
    body: &str,
) -> Answer {
    let mut req = client
        .req(method, uri.to_string())
        .header(rocket::http::ContentType::JSON)
        .body(body);
    if let Some(id) = id {
        req = req.header(cookie(COOKIE, id));
    }
    Answer::of(req.dispatch().await).await
}

/// The session id a response set, if it set one (and only one).
pub fn issued(answer: &Answer) -> Option<String> {
    let prefix = format!("{COOKIE}=");
    let values: Vec<String> = answer
        .set_cookies
        .iter()
        .filter_map(|h| h.strip_prefix(&prefix))
        .map(|rest| rest.split(';').next().unwrap().to_string())
        .collect();
    assert!(values.len() <= 1, "several session cookies: {values:?}");
    values.into_iter().next().filter(|v| !v.is_empty())
}

/// Whether a response removed the session cookie.
pub fn removed(answer: &Answer) -> bool {
    answer
        .set_cookies
        .iter()
        .any(|h| h.starts_with(&format!("{COOKIE}=;")) && h.contains("Max-Age=0"))
}

/// Dispatches a request in a task of its own, so that the test can go on
/// while it runs (or waits at a gate). `id` is the session cookie to send.
pub fn spawn_request(
    client: &Arc<Client>,
    method: rocket::http::Method,
    uri: &str,
    id: Option<&str>,
    body: &str,
) -> tokio::task::JoinHandle<Answer> {
    let client = client.clone();
    let uri = uri.to_string();
    let id = id.map(str::to_string);
    let body = body.to_string();
    tokio::spawn(async move { request(&client, method, &uri, id.as_deref(), &body).await })
}

/// Every raw `Set-Cookie` header of a response.
pub fn set_cookies(res: &LocalResponse<'_>) -> Vec<String> {
    res.headers()
        .get("Set-Cookie")
        .map(str::to_string)
        .collect()
}

/// The value of the only `Set-Cookie` header named `name`.
pub fn cookie_value(res: &LocalResponse<'_>, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    let values: Vec<String> = set_cookies(res)
        .into_iter()
        .filter_map(|h| {
            h.strip_prefix(&prefix)
                .map(|rest| rest.split(';').next().unwrap().to_string())
        })
        .collect();
    assert!(values.len() <= 1, "several session cookies: {values:?}");
    values.into_iter().next()
}

/// The attributes of a `Set-Cookie` header, lowercased names.
pub fn attributes(header: &str) -> Vec<(String, String)> {
    header
        .split(';')
        .skip(1)
        .map(|a| {
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect()
}

/// The `Max-Age` of a `Set-Cookie` header, in seconds.
pub fn max_age(header: &str) -> i64 {
    attributes(header)
        .iter()
        .find(|(k, _)| k == "max-age")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no Max-Age in {header}"))
}

/// Calls counted per store method.
#[derive(Default)]
pub struct Counts {
    pub load: AtomicUsize,
    pub create: AtomicUsize,
    pub update: AtomicUsize,
    pub destroy: AtomicUsize,
    /// Sweep batches that ran under the lock, and the rows they deleted.
    pub sweep_batches: AtomicUsize,
    pub swept_rows: AtomicU64,
    /// Sweep batches that found another instance holding the lock.
    pub sweep_skips: AtomicUsize,
    /// When set, every write fails.
    pub fail_writes: AtomicBool,
}

impl Counts {
    pub fn get(&self) -> [usize; 4] {
        [&self.load, &self.create, &self.update, &self.destroy].map(|c| c.load(Ordering::SeqCst))
    }
}

/// A store wrapper that counts calls and can fail writes.
pub struct Counting {
    inner: Arc<dyn SessionStore>,
    counts: Arc<Counts>,
}

impl Counting {
    /// The fairing, with the configured store wrapped in a counter.
    pub fn fairing(counts: Arc<Counts>) -> Sessions {
        Sessions::fairing().map_store(move |inner| {
            Arc::new(Counting {
                inner,
                counts: counts.clone(),
            })
        })
    }

    fn write(&self, counter: &AtomicUsize) -> Result<(), Error> {
        counter.fetch_add(1, Ordering::SeqCst);
        if self.counts.fail_writes.load(Ordering::SeqCst) {
            return Err(Error::store_msg("injected write failure"));
        }
        Ok(())
    }
}

#[rocket::async_trait]
impl SessionStore for Counting {
    async fn load(&self, candidates: &[SessionId]) -> Result<Option<Loaded>, Error> {
        self.counts.load.fetch_add(1, Ordering::SeqCst);
        self.inner.load(candidates).await
    }

    async fn create(&self, id: &SessionId, changes: &ChangeSet) -> Result<Expiry, Error> {
        self.write(&self.counts.create)?;
        self.inner.create(id, changes).await
    }

    async fn update(&self, id: &SessionId, changes: &ChangeSet) -> Result<Expiry, Error> {
        self.write(&self.counts.update)?;
        self.inner.update(id, changes).await
    }

    async fn destroy(&self, id: &SessionId) -> Result<(), Error> {
        self.write(&self.counts.destroy)?;
        self.inner.destroy(id).await
    }

    async fn list_user(&self, user: &str) -> Result<Vec<SessionInfo>, Error> {
        self.inner.list_user(user).await
    }

    async fn destroy_by_handle(&self, user: &str, handle: &SessionHandle) -> Result<bool, Error> {
        self.inner.destroy_by_handle(user, handle).await
    }

    async fn destroy_user(
        &self,
        user: &str,
        keep: Option<&SessionId>,
        expected_generation: Option<i64>,
    ) -> Result<Revoked, Error> {
        self.inner
            .destroy_user(user, keep, expected_generation)
            .await
    }

    async fn user_generation(&self, user: &str) -> Result<i64, Error> {
        self.inner.user_generation(user).await
    }

    async fn sweep_expired(&self, batch: u64) -> Result<Option<u64>, Error> {
        let result = self.inner.sweep_expired(batch).await;
        match &result {
            Ok(Some(rows)) => {
                self.counts.sweep_batches.fetch_add(1, Ordering::SeqCst);
                self.counts.swept_rows.fetch_add(*rows, Ordering::SeqCst);
            }
            Ok(None) => {
                self.counts.sweep_skips.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {}
        }
        result
    }
}

/// A response, read whole.
pub struct Reply {
    pub status: rocket::http::Status,
    pub body: String,
    pub set_cookies: Vec<String>,
    pub cache_control: Option<String>,
    pub vary: Vec<String>,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        rocket::serde::json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A client that keeps one session cookie, as a browser would: it sends
/// the cookie it holds and takes what `Set-Cookie` says.
pub struct Browser<'c> {
    pub client: &'c Client,
    pub name: String,
    pub cookie: Option<String>,
}

impl<'c> Browser<'c> {
    pub fn new(client: &'c Client, name: &str) -> Browser<'c> {
        Browser {
            client,
            name: name.to_string(),
            cookie: None,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        let req = self.client.get(path.to_string());
        self.send(req).await
    }

    pub async fn post(&mut self, path: &str, body: &str) -> Reply {
        let req = self.client.post(path.to_string()).body(body);
        self.send(req).await
    }

    pub async fn put(&mut self, path: &str, body: &str) -> Reply {
        let req = self.client.put(path.to_string()).body(body);
        self.send(req).await
    }

    pub async fn delete(&mut self, path: &str) -> Reply {
        let req = self.client.delete(path.to_string());
        self.send(req).await
    }

    async fn send(&mut self, req: rocket::local::asynchronous::LocalRequest<'c>) -> Reply {
        let req = match &self.cookie {
            Some(value) => req.header(cookie(&self.name, value)),
            None => req,
        };
        let res = req.dispatch().await;
        let set_cookies = set_cookies(&res);
        let cache_control = res.headers().get_one("Cache-Control").map(str::to_string);
        let vary = res.headers().get("Vary").map(str::to_string).collect();
        let status = res.status();
        if let Some(value) = cookie_value(&res, &self.name) {
            self.cookie = (!value.is_empty()).then_some(value);
        }
        Reply {
            status,
            body: res.into_string().await.unwrap_or_default(),
            set_cookies,
            cache_control,
            vary,
        }
    }
}
