//! The PostgreSQL store: pool, statements and migrations.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::{timeout_at, Instant};
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{NoTls, Row};

use super::{ChangeSet, Expiry, Loaded, Revoked, SessionStore};
use crate::config::Config;
use crate::users::from_unix_millis;
use crate::{Error, SessionHandle, SessionId, SessionInfo};

/// The bundled migrations, in order: version, name, SQL for a table named
/// `sessions`.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "create_sessions",
        include_str!("../../migrations/0001_create_sessions.sql"),
    ),
    (
        2,
        "grace_and_revocations",
        include_str!("../../migrations/0002_grace_and_revocations.sql"),
    ),
    (
        3,
        "revocation_generation",
        include_str!("../../migrations/0003_revocation_generation.sql"),
    ),
];

/// A session's handle, computed by the database the way
/// [`SessionHandle::from_id_hash`] computes it.
const HANDLE: &str = "substring(sha256(id_hash) FROM 1 FOR 16)";

/// Per-user revocation records older than this reject nothing: no session
/// lives longer, whatever the configuration.
const REVOCATION_HORIZON: &str = "interval '400 days'";

/// How long a cancel request for a timed-out statement may take.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// Every column the statements use: what launch checks for when it does
/// not migrate.
const COLUMNS: &str = "id_hash, data, user_id, version, created_at, last_seen_at, \
                       idle_expires_at, absolute_expires_at, previous_id_hash, \
                       previous_valid_until, user_generation";

/// The expiry columns every statement returns, as `Max-Age` and `Expires`.
const EXPIRY: &str = "ceil(extract(epoch FROM idle_expires_at - now()))::bigint, \
                      floor(extract(epoch FROM idle_expires_at))::bigint";

/// Sessions in a PostgreSQL table, through a deadpool connection pool.
///
/// Rows are keyed by the SHA-256 of the session id. All timestamps come from
/// the database's clock. Each operation is one statement, except a sweep
/// batch: one short transaction.
///
/// Besides the sessions table (`table`), the store keeps `<table>_revocations`:
/// one row per user whose sessions were all ended, with that instant, for
/// the sessions it cannot delete (sealed cookies).
pub struct PostgresStore {
    pool: Pool,
    table: String,
    timeout: Duration,
    sweep_lock: i64,
    sql: Statements,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table)
            .field("pool", &self.pool.status())
            .finish()
    }
}

struct Statements {
    load: String,
    create: String,
    update: String,
    destroy: String,
    list_user: String,
    destroy_by_handle: String,
    destroy_user: String,
    sweep: String,
    sweep_revocations: String,
    generation: String,
}

impl PostgresStore {
    /// Builds the store and its pool from the configuration. No connection
    /// is opened yet; see [`PostgresStore::prepare`].
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the configuration has no usable
    /// `database_url`.
    pub fn new(config: &Config) -> Result<PostgresStore, Error> {
        let url = config.database_url.as_deref().unwrap_or_default();
        let mut pg = tokio_postgres::Config::from_str(url).map_err(|_| {
            Error::store_msg("database_url is not a valid PostgreSQL connection string")
        })?;
        pg.connect_timeout(Duration::from_secs(config.connect_timeout));
        if pg.get_application_name().is_none() {
            pg.application_name("rocket_tessera");
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeout = config.operation_timeout();
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(
                Duration::from_secs(config.connect_timeout).min(timeout),
            ))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| Error::store("cannot build the connection pool", e))?;
        Ok(PostgresStore::with_pool(pool, config))
    }

    /// Uses an existing pool; the table name, lifetimes and grace window
    /// come from `config`.
    pub fn with_pool(pool: Pool, config: &Config) -> PostgresStore {
        let t = &quote(&config.table);
        let revocations = quote(&format!("{}_revocations", config.table));
        // A stored session is void once its user's generation has moved
        // past the one it was stored under.
        let current = format!(
            "NOT EXISTS (SELECT 1 FROM {revocations} v \
               WHERE v.user_id = s.user_id AND v.generation > s.user_generation)"
        );
        let generation_of = |param: &str| {
            format!(
                "COALESCE((SELECT generation FROM {revocations} WHERE user_id = {param}::text), 0)"
            )
        };
        let generation_of_4 = generation_of("$4");
        let generation_of_7 = generation_of("$7");
        let idle = format!("interval '{} seconds'", config.idle_timeout);
        let absolute = format!("interval '{} seconds'", config.absolute_timeout);
        let touch = format!("interval '{} seconds'", config.touch_interval);
        // On regenerate the old hash moves to `previous_id_hash` for the
        // grace window; without one, a former previous id is forgotten.
        let (previous, previous_until) = if config.regenerate_grace > 0 {
            (
                "id_hash".to_string(),
                format!("now() + interval '{} seconds'", config.regenerate_grace),
            )
        } else {
            ("NULL".to_string(), "NULL".to_string())
        };
        let sql = Statements {
            // The first live candidate: a current id in the order given,
            // else a previous id inside its grace window (read-only, never
            // touched). A current id is touched when the interval has
            // passed; the outer SELECT reads the row as it was before the
            // touch, so the new expiry comes from `touched`.
            load: format!(
                "WITH cand AS ( \
                   SELECT h, pos FROM unnest($1::bytea[]) WITH ORDINALITY AS c(h, pos) \
                 ), hit AS ( \
                   SELECT id_hash, pos, previous FROM ( \
                     SELECT s.id_hash, cand.pos, false AS previous \
                     FROM cand JOIN {t} s ON s.id_hash = cand.h \
                     WHERE s.idle_expires_at > now() AND {current} \
                     UNION ALL \
                     SELECT s.id_hash, cand.pos, true \
                     FROM cand JOIN {t} s ON s.previous_id_hash = cand.h \
                     WHERE s.previous_valid_until > now() AND s.idle_expires_at > now() \
                       AND {current} \
                   ) found ORDER BY previous, pos LIMIT 1 \
                 ), touched AS ( \
                   UPDATE {t} s SET last_seen_at = now(), \
                     idle_expires_at = LEAST(now() + {idle}, s.absolute_expires_at) \
                   FROM hit WHERE s.id_hash = hit.id_hash AND NOT hit.previous \
                     AND s.last_seen_at <= now() - {touch} \
                   RETURNING s.idle_expires_at \
                 ) \
                 SELECT hit.pos::int4, s.data, \
                   ceil(extract(epoch FROM e.at - now()))::bigint, \
                   floor(extract(epoch FROM e.at))::bigint, \
                   EXISTS (SELECT 1 FROM touched), s.user_id, hit.previous, \
                   floor(extract(epoch FROM s.created_at))::bigint \
                 FROM hit JOIN {t} s ON s.id_hash = hit.id_hash \
                 CROSS JOIN LATERAL (SELECT COALESCE( \
                   (SELECT idle_expires_at FROM touched), s.idle_expires_at) AS at) e"
            ),
            // A session that began earlier (moved from the cookie) keeps
            // its absolute expiry; it is never placed after now.
            create: format!(
                "INSERT INTO {t} \
                   (id_hash, data, user_id, user_generation, created_at, idle_expires_at, \
                    absolute_expires_at) \
                 SELECT $1, $2, $4::text, COALESCE($5::bigint, {generation_of_4}), c.at, \
                   LEAST(now() + {idle}, c.at + {absolute}), c.at + {absolute} \
                 FROM (SELECT LEAST(COALESCE(to_timestamp($3::bigint), now()), now()) AS at) c \
                 WHERE $5::bigint IS NULL OR $5::bigint >= {generation_of_4} \
                 ON CONFLICT DO NOTHING RETURNING {EXPIRY}"
            ),
            // Removed keys go first, then set keys are merged in: only what
            // this request changed is written. Only the live row under the
            // current id matches: a destroyed, regenerated or expired
            // session is never brought back.
            update: format!(
                "UPDATE {t} SET \
                   data = (CASE WHEN $2 THEN '{{}}'::jsonb ELSE data - $3::text[] END) || $4::jsonb, \
                   user_id = CASE WHEN $6 THEN $7::text ELSE user_id END, \
                   user_generation = CASE WHEN $6 THEN {generation_of_7} ELSE user_generation END, \
                   previous_id_hash = CASE WHEN $5::bytea IS NULL THEN previous_id_hash \
                     ELSE {previous} END, \
                   previous_valid_until = CASE WHEN $5::bytea IS NULL THEN previous_valid_until \
                     ELSE {previous_until} END, \
                   id_hash = COALESCE($5, id_hash), \
                   version = version + 1, \
                   last_seen_at = now(), \
                   idle_expires_at = LEAST(now() + {idle}, absolute_expires_at) \
                 WHERE id_hash = $1 AND idle_expires_at > now() \
                 RETURNING {EXPIRY}"
            ),
            destroy: format!("DELETE FROM {t} WHERE id_hash = $1"),
            list_user: format!(
                "SELECT {HANDLE}, \
                   floor(extract(epoch FROM created_at) * 1000)::bigint, \
                   floor(extract(epoch FROM last_seen_at) * 1000)::bigint, \
                   floor(extract(epoch FROM idle_expires_at) * 1000)::bigint \
                 FROM {t} WHERE user_id = $1 AND idle_expires_at > now() \
                 ORDER BY last_seen_at DESC, created_at DESC"
            ),
            destroy_by_handle: format!(
                "DELETE FROM {t} WHERE user_id = $1 AND {HANDLE} = $2 \
                   AND idle_expires_at > now() RETURNING 1"
            ),
            // Deletes and records the instant in one statement, so that no
            // reader sees one without the other.
            // Moves the user's generation forward (only from `$3` when that
            // is given, so that a request which loaded its session before
            // another revocation cannot outlive it), deletes the user's
            // other sessions and keeps `$2` current, in one statement.
            destroy_user: format!(
                "WITH revoked AS ( \
                   INSERT INTO {revocations} AS r (user_id, valid_after, generation) \
                   SELECT $1, now(), 1 WHERE $3::bigint IS NULL OR $3::bigint = 0 \
                     OR EXISTS (SELECT 1 FROM {revocations} WHERE user_id = $1) \
                   ON CONFLICT (user_id) DO UPDATE \
                     SET valid_after = GREATEST(r.valid_after, EXCLUDED.valid_after), \
                         generation = r.generation + 1 \
                     WHERE $3::bigint IS NULL OR r.generation = $3::bigint \
                   RETURNING generation \
                 ), ended AS ( \
                   DELETE FROM {t} WHERE user_id = $1 AND id_hash IS DISTINCT FROM $2::bytea \
                     AND EXISTS (SELECT 1 FROM revoked) \
                   RETURNING idle_expires_at \
                 ), kept AS ( \
                   UPDATE {t} SET user_generation = (SELECT generation FROM revoked) \
                   WHERE id_hash = $2::bytea AND user_id = $1 AND EXISTS (SELECT 1 FROM revoked) \
                 ) \
                 SELECT (SELECT count(*) FILTER (WHERE idle_expires_at > now()) FROM ended), \
                   (SELECT generation FROM revoked)"
            ),
            // PostgreSQL's DELETE has no LIMIT: the batch is a subquery.
            // Rows another transaction is writing are left for the next
            // sweep instead of waited for, and the expiry is checked again
            // on the row as it is when deleted.
            sweep: format!(
                "DELETE FROM {t} WHERE id_hash IN ( \
                   SELECT id_hash FROM {t} WHERE idle_expires_at <= now() \
                   ORDER BY idle_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED \
                 ) AND idle_expires_at <= now()"
            ),
            sweep_revocations: format!(
                "DELETE FROM {revocations} WHERE user_id IN ( \
                   SELECT user_id FROM {revocations} \
                   WHERE valid_after < now() - {REVOCATION_HORIZON} \
                   LIMIT $1 FOR UPDATE SKIP LOCKED \
                 )"
            ),
            generation: format!("SELECT generation FROM {revocations} WHERE user_id = $1"),
        };
        PostgresStore {
            pool,
            table: config.table.clone(),
            timeout: config.operation_timeout(),
            sweep_lock: lock_key("cleanup", &config.table),
            sql,
        }
    }

    /// The pool, for an application that wants to share it.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Gets the store ready at launch: opens a connection, applies the
    /// pending migrations when `config.migrate` is on, and checks that the
    /// table can be read. Turns an unreachable database or a missing table
    /// into one clear error.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] naming the URL (password redacted), the step and the
    /// cause.
    pub async fn prepare(&self, config: &Config) -> Result<(), Error> {
        let url = config.redacted_database_url();
        let client = self.pool.get().await.map_err(|e| {
            Error::store(
                format!(
                    "cannot connect to PostgreSQL at {url}: {}",
                    pool_summary(&e)
                ),
                e,
            )
        })?;
        drop(client);
        if config.migrate {
            self.migrate().await.map_err(|e| {
                Error::store_msg(format!(
                    "cannot migrate table `{}` at {url}: {}",
                    self.table,
                    summary(&e)
                ))
            })?;
        }
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .simple_query(&format!(
                "SELECT {COLUMNS} FROM {} LIMIT 0; \
                 SELECT user_id, valid_after, generation FROM {} LIMIT 0",
                quote(&self.table),
                quote(&format!("{}_revocations", self.table))
            ))
            .await
            .map_err(|e| {
                let hint = if config.migrate {
                    ""
                } else {
                    " (migrate = false: apply migrations/ yourself)"
                };
                Error::store(
                    format!(
                        "table `{}` at {url} is not usable: {}{hint}",
                        self.table,
                        pg_summary(&e)
                    ),
                    e,
                )
            })?;
        Ok(())
    }

    /// Applies the bundled migrations that the table's history does not
    /// list yet, in one transaction under an advisory lock, so that several
    /// instances starting at once are safe.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when a statement fails; nothing is applied then.
    pub async fn migrate(&self) -> Result<(), Error> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(query_error)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&lock_key("migrate", &self.table)],
        )
        .await
        .map_err(query_error)?;

        // "Already exists, skipping" notices are no news on every launch.
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .await
            .map_err(query_error)?;
        // Tables other than the sessions table itself are named
        // `sessions_<x>` in the migrations, which substitution turns into
        // `<table>_<x>` without a schema: put the schema first on the
        // search path, for this transaction only.
        if let Some((schema, _)) = self.table.split_once('.') {
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET LOCAL search_path TO \"{schema}\""
            ))
            .await
            .map_err(query_error)?;
        }
        let history = quote(&format!("{}_migrations", self.table));
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {history} (version integer PRIMARY KEY, \
             name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(query_error)?;
        let row = tx
            .query_one(&format!("SELECT max(version) FROM {history}"), &[])
            .await
            .map_err(query_error)?;
        let applied: i32 = row.get::<_, Option<i32>>(0).unwrap_or(0);

        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
            tx.batch_execute(&substitute_table(sql, &self.table))
                .await
                .map_err(|e| {
                    Error::store(
                        format!("migration {version} ({name}) failed: {}", pg_summary(&e)),
                        e,
                    )
                })?;
            tx.execute(
                &format!("INSERT INTO {history} (version, name) VALUES ($1, $2)"),
                &[version, name],
            )
            .await
            .map_err(query_error)?;
            log::info!(
                "sessions: applied migration {version} ({name}) to `{}`",
                self.table
            );
        }
        tx.commit().await.map_err(query_error)
    }

    /// A pooled connection, within `deadline`.
    async fn connection(&self, deadline: Instant) -> Result<Object, Error> {
        match timeout_at(deadline, self.pool.get()).await {
            Ok(client) => client.map_err(pool_error),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Runs one statement on a pooled connection within the operation
    /// timeout. A connection whose statement timed out is closed rather
    /// than returned to the pool, where it could hang the next request.
    async fn run(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let deadline = self.deadline();
        let client = self.connection(deadline).await?;
        let query = async {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        };
        match timeout_at(deadline, query).await {
            Ok(rows) => rows.map_err(query_error),
            Err(_) => {
                // Ask the server to stop the statement (best effort: the
                // write may still have happened), then close the connection.
                let cancel = client.cancel_token();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CANCEL_WAIT, cancel.cancel_query(NoTls)).await;
                });
                drop(Object::take(client));
                Err(Error::Timeout)
            }
        }
    }

    /// When a store operation must be done: a little before the caller's
    /// own bound (the same duration), so that the store's timeout, which
    /// can close the connection, fires first.
    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout.mul_f32(0.9)
    }
}

#[rocket::async_trait]
impl SessionStore for PostgresStore {
    async fn load(&self, candidates: &[SessionId]) -> Result<Option<Loaded>, Error> {
        let hashes: Vec<Vec<u8>> = candidates.iter().map(|id| id.hash().to_vec()).collect();
        let rows = self.run(&self.sql.load, &[&hashes]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let position: i32 = column(row, 0)?;
        // A row that does not decode is reported, never guessed at: the
        // session stays as it is for someone to look into.
        let Json(data): Json<Value> = column(row, 1)?;
        let Value::Object(data) = data else {
            return Err(Error::store_msg("a stored session is not a JSON object"));
        };
        Ok(Some(Loaded {
            index: usize::try_from(position - 1).unwrap_or(0),
            data,
            expiry: Expiry {
                max_age: column(row, 2)?,
                unix: column(row, 3)?,
            },
            touched: column(row, 4)?,
            user: column(row, 5)?,
            read_only: column(row, 6)?,
            created: Some(column(row, 7)?),
        }))
    }

    async fn create(&self, id: &SessionId, changes: &ChangeSet) -> Result<Expiry, Error> {
        let data = Json(Value::Object(changes.set.clone()));
        let user = changes.user.clone().flatten();
        let hash = id.hash();
        let params: [&(dyn ToSql + Sync); 5] = [
            &hash.as_slice(),
            &data,
            &changes.created_at,
            &user,
            &changes.user_generation,
        ];
        let rows = self.run(&self.sql.create, &params).await?;
        match rows.first() {
            Some(row) => Ok(expiry(row)),
            // The user was signed out everywhere after the session was made.
            None if changes.user_generation.is_some() => Err(Error::Gone),
            None => Err(Error::store_msg(
                "a new session id collided with a stored one",
            )),
        }
    }

    async fn update(&self, id: &SessionId, changes: &ChangeSet) -> Result<Expiry, Error> {
        let new_hash = changes.new_id.as_ref().map(|id| id.hash().to_vec());
        let set = Json(Value::Object(changes.set.clone()));
        let hash = id.hash();
        let user_changed = changes.user.is_some();
        let user = changes.user.clone().flatten();
        let params: [&(dyn ToSql + Sync); 7] = [
            &hash.as_slice(),
            &changes.clear,
            &changes.remove,
            &set,
            &new_hash,
            &user_changed,
            &user,
        ];
        let rows = self.run(&self.sql.update, &params).await?;
        rows.first().map(expiry).ok_or(Error::Gone)
    }

    async fn destroy(&self, id: &SessionId) -> Result<(), Error> {
        self.run(&self.sql.destroy, &[&id.hash().as_slice()])
            .await
            .map(drop)
    }

    async fn list_user(&self, user: &str) -> Result<Vec<SessionInfo>, Error> {
        let rows = self.run(&self.sql.list_user, &[&user]).await?;
        rows.iter()
            .map(|row| {
                let handle: Vec<u8> = row.get(0);
                let handle = handle
                    .try_into()
                    .map_err(|_| Error::store_msg("a stored session hash is malformed"))?;
                Ok(SessionInfo::new(
                    SessionHandle::from_bytes(handle),
                    from_unix_millis(row.get(1)),
                    from_unix_millis(row.get(2)),
                    from_unix_millis(row.get(3)),
                ))
            })
            .collect()
    }

    async fn destroy_by_handle(&self, user: &str, handle: &SessionHandle) -> Result<bool, Error> {
        let handle = handle.as_bytes().as_slice();
        let rows = self
            .run(&self.sql.destroy_by_handle, &[&user, &handle])
            .await?;
        Ok(!rows.is_empty())
    }

    async fn destroy_user(
        &self,
        user: &str,
        keep: Option<&SessionId>,
        expected_generation: Option<i64>,
    ) -> Result<Revoked, Error> {
        let keep = keep.map(|id| id.hash().to_vec());
        let params: [&(dyn ToSql + Sync); 3] = [&user, &keep, &expected_generation];
        let rows = self.run(&self.sql.destroy_user, &params).await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::store_msg("no answer to ending a user's sessions"))?;
        let ended: i64 = column(row, 0)?;
        let generation: Option<i64> = column(row, 1)?;
        match generation {
            Some(generation) => Ok(Revoked {
                ended: u64::try_from(ended).unwrap_or(0),
                generation,
            }),
            None => Err(Error::Gone),
        }
    }

    async fn user_generation(&self, user: &str) -> Result<i64, Error> {
        let rows = self.run(&self.sql.generation, &[&user]).await?;
        rows.first().map_or(Ok(0), |row| column(row, 0))
    }

    async fn sweep_expired(&self, batch: u64) -> Result<Option<u64>, Error> {
        let limit = i64::try_from(batch).unwrap_or(i64::MAX);
        let deadline = self.deadline();
        let mut client = self.connection(deadline).await?;

        // One transaction per batch, under an advisory lock that ends with
        // it: a lock that outlived the transaction would stay with the
        // pooled connection. When another instance holds it, skip.
        let work = async {
            let tx = client.transaction().await?;
            let row = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&self.sweep_lock])
                .await?;
            if !row.get::<_, bool>(0) {
                tx.rollback().await?;
                return Ok(None);
            }
            let sessions = tx.execute(&self.sql.sweep, &[&limit]).await?;
            let revocations = tx.execute(&self.sql.sweep_revocations, &[&limit]).await?;
            tx.commit().await?;
            Ok(Some(sessions + revocations))
        };
        let outcome = timeout_at(deadline, work).await;
        match outcome {
            Ok(result) => result.map_err(query_error),
            Err(_) => {
                drop(Object::take(client));
                Err(Error::Timeout)
            }
        }
    }
}

/// One column of a row, as a store error when it does not decode.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
) -> Result<T, Error> {
    row.try_get(index).map_err(|e| {
        let summary = format!(
            "column {index} of a stored session does not decode: {}",
            pg_summary(&e)
        );
        Error::store(summary, e)
    })
}

fn expiry(row: &Row) -> Expiry {
    Expiry {
        max_age: row.get(0),
        unix: row.get(1),
    }
}

/// Quotes a table name, schema-qualified or not, so that names which are
/// also SQL keywords (`user`) work. Validation allows only lowercase
/// letters, digits and `_`, so nothing needs escaping.
pub(crate) fn quote(table: &str) -> String {
    table
        .split('.')
        .map(|part| format!("\"{part}\""))
        .collect::<Vec<_>>()
        .join(".")
}

/// A 64-bit advisory lock key for one purpose on one table.
pub(crate) fn lock_key(purpose: &str, table: &str) -> i64 {
    let digest = Sha256::digest(format!("rocket_tessera {purpose} {table}"));
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Rewrites SQL written for a table named `sessions` to the configured
/// name: the identifier `sessions` becomes the (possibly qualified) table,
/// and identifiers that start with `sessions_` (index names) take the bare
/// table name as their prefix.
pub(crate) fn substitute_table(sql: &str, table: &str) -> String {
    let bare = table.rsplit('.').next().unwrap_or(table);
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = rest.find(|c: char| is_ident(c)) {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        let word = &rest[..end];
        match word.strip_prefix("sessions") {
            Some("") => out.push_str(&quote(table)),
            Some(suffix) if suffix.starts_with('_') => {
                out.push_str(&quote(&format!("{bare}{suffix}")))
            }
            _ => out.push_str(word),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A loggable summary of a database error: SQLSTATE and message, without
/// the DETAIL line, which can quote row values; for other errors the
/// message and its causes.
fn pg_summary(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The summary of a store error, without the generic prefix.
fn summary(e: &Error) -> String {
    match e {
        Error::Store(inner) => inner.summary().to_string(),
        other => other.to_string(),
    }
}

fn pool_summary(e: &PoolError) -> String {
    match e {
        PoolError::Timeout(_) => "timed out waiting for a database connection".into(),
        PoolError::Backend(e) => pg_summary(e),
        PoolError::Closed => "the connection pool is closed".into(),
        other => other.to_string(),
    }
}

fn pool_error(e: PoolError) -> Error {
    match e {
        PoolError::Timeout(_) => Error::Timeout,
        e => Error::store(pool_summary(&e), e),
    }
}

fn query_error(e: tokio_postgres::Error) -> Error {
    Error::store(pg_summary(&e), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_renames_table_and_indexes() {
        let sql = "CREATE TABLE IF NOT EXISTS sessions (id int);\n\
                   CREATE INDEX IF NOT EXISTS sessions_x_idx ON sessions (id); -- my_sessions stay";
        assert_eq!(
            substitute_table(sql, "auth.web"),
            "CREATE TABLE IF NOT EXISTS \"auth\".\"web\" (id int);\n\
             CREATE INDEX IF NOT EXISTS \"web_x_idx\" ON \"auth\".\"web\" (id); -- my_sessions stay"
        );
    }

    #[test]
    fn lock_keys_differ_by_purpose_and_table() {
        assert_ne!(lock_key("migrate", "a"), lock_key("migrate", "b"));
        assert_ne!(lock_key("migrate", "a"), lock_key("cleanup", "a"));
    }
}
