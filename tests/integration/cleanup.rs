//! The sweep of expired sessions, the background task from liftoff to
//! shutdown, the bundled migrations, and two app instances on one table.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rocket::http::{Method, Status};
use rocket::serde::json::{json, Value};
use rocket_tessera::{SessionAdmin, Sweep};

use crate::common::{eventually, issued, request, untracked, TestDb};
use crate::probe::probe;

/// Logs the rows each DELETE statement on the sessions table removed.
const DELETE_LOG: &str = "
    CREATE TABLE {schema}.delete_log (at timestamptz DEFAULT clock_timestamp(), rows bigint);
    CREATE FUNCTION {schema}.log_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {schema}.delete_log (rows) SELECT count(*) FROM gone;
        RETURN NULL;
    END $$;
    CREATE TRIGGER log_delete AFTER DELETE ON {table}
        REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
        EXECUTE FUNCTION {schema}.log_delete();";

async fn delete_log(db: &TestDb) -> Vec<i64> {
    let sql = format!("SELECT rows FROM {}.delete_log ORDER BY at", db.schema);
    let rows = db.client.query(&sql, &[]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

fn sweep_result(deleted: u64, batches: u32, skipped: bool) -> Sweep {
    let mut sweep = Sweep::default();
    sweep.deleted = deleted;
    sweep.batches = batches;
    sweep.skipped = skipped;
    sweep
}

#[rocket::async_test]
async fn a_sweep_deletes_expired_rows_only_in_batches() {
    let db = TestDb::new().await;
    let overrides = json!({ "cleanup_interval": 0, "cleanup_batch": 10 });
    let client = untracked(probe(&db, overrides, 1).rocket).await;
    let mut live = Vec::new();
    for user in ["ann", "bob", "cy"] {
        let answer = request(&client, Method::Post, &format!("/login/{user}"), None, "").await;
        live.push(issued(&answer).unwrap());
    }
    db.insert_expired("a", 25).await;
    db.exec(DELETE_LOG).await;

    // An expired session is invisible before any sweep: its cookie finds
    // nothing, and the read leaves the row as it was.
    let answer = request(&client, Method::Post, "/login/dee", None, "").await;
    let expired = issued(&answer).unwrap();
    db.exec(
        "UPDATE {table} SET idle_expires_at = now() - interval '1 second' WHERE user_id = 'dee'",
    )
    .await;
    let answer = request(&client, Method::Get, "/me", Some(&expired), "").await;
    assert_eq!(
        answer.json(),
        json!({ "data": {}, "user": null, "read_only": false })
    );
    assert!(answer.set_cookies.is_empty(), "{answer:?}");
    let answer = request(&client, Method::Put, "/key/k", Some(&expired), "1").await;
    assert_ne!(issued(&answer).as_deref(), Some(expired.as_str()));
    assert_eq!(db.expired_count().await, 26);

    let admin = client.rocket().state::<SessionAdmin>().unwrap();
    let sweep = admin.sweep().await.unwrap();
    assert_eq!(sweep, sweep_result(26, 3, false));
    assert_eq!(delete_log(&db).await, vec![10, 10, 6]);
    assert_eq!(db.expired_count().await, 0);
    for id in &live {
        assert!(db.row_of(id).await.is_some(), "a live session was swept");
    }
    // The three live sessions and the one the expired cookie's write made.
    assert_eq!(db.count().await, 4);

    // Nothing left: one short batch.
    assert_eq!(admin.sweep().await.unwrap(), sweep_result(0, 1, false));
}

#[rocket::async_test]
async fn a_sweep_skips_while_another_instance_holds_the_lock() {
    let db = TestDb::new().await;
    let overrides = json!({ "cleanup_interval": 0 });
    let client = untracked(probe(&db, overrides, 1).rocket).await;
    db.insert_expired("b", 3).await;

    // Another instance in the middle of a batch: the same transaction-level
    // lock, held by a transaction of the test's own.
    let key: i64 = db
        .scalar(&format!(
            "SELECT ('x' || substr(encode(sha256(convert_to('rocket_tessera cleanup {}', \
             'UTF8')), 'hex'), 1, 16))::bit(64)::bigint",
            db.table()
        ))
        .await;
    db.exec(&format!("BEGIN; SELECT pg_advisory_xact_lock({key})"))
        .await;

    let admin = client.rocket().state::<SessionAdmin>().unwrap();
    assert_eq!(admin.sweep().await.unwrap(), sweep_result(0, 0, true));
    assert_eq!(db.expired_count().await, 3);

    db.exec("COMMIT").await;
    assert_eq!(admin.sweep().await.unwrap(), sweep_result(3, 1, false));
    assert_eq!(db.expired_count().await, 0);
}

#[rocket::async_test]
async fn old_revocation_records_are_swept_and_recent_ones_kept() {
    let db = TestDb::new().await;
    let client = untracked(probe(&db, json!({ "cleanup_interval": 0 }), 1).rocket).await;
    db.exec(
        "INSERT INTO {schema}.sessions_revocations VALUES \
         ('old', now() - interval '401 days'), ('recent', now() - interval '399 days')",
    )
    .await;
    let admin = client.rocket().state::<SessionAdmin>().unwrap();
    assert_eq!(admin.sweep().await.unwrap(), sweep_result(1, 1, false));
    let left: Vec<String> = db
        .client
        .query(
            &format!("SELECT user_id FROM {}.sessions_revocations", db.schema),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, vec!["recent".to_string()]);
}

#[rocket::async_test]
async fn the_task_sweeps_from_liftoff_until_terminate() {
    let db = TestDb::new().await;
    db.migrate_as_written().await;
    db.insert_expired("c", 5).await;

    let p = probe(&db, json!({ "cleanup_interval": 1 }), 1);
    let counts = p.counts.clone();
    let client = untracked(p.rocket).await;
    eventually(5, "the first sweep at liftoff", || async {
        db.expired_count().await == 0
    })
    .await;

    // It keeps sweeping every second.
    db.insert_expired("d", 2).await;
    eventually(5, "a later sweep", || async {
        db.expired_count().await == 0
    })
    .await;

    client.terminate().await;
    let batches = counts.sweep_batches.load(Ordering::SeqCst);
    db.insert_expired("e", 2).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(db.expired_count().await, 2, "a sweep ran after shutdown");
    assert_eq!(counts.sweep_batches.load(Ordering::SeqCst), batches);
}

#[rocket::async_test]
async fn a_zero_interval_starts_no_task() {
    let db = TestDb::new().await;
    let p = probe(&db, json!({ "cleanup_interval": 0 }), 1);
    let counts = p.counts.clone();
    let client = untracked(p.rocket).await;
    db.insert_expired("f", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts.sweep_batches.load(Ordering::SeqCst), 0);
    assert_eq!(db.expired_count().await, 1);
    client.terminate().await;
}

#[rocket::async_test]
async fn the_bundled_migrations_upgrade_a_version_1_table() {
    let db = TestDb::new().await;
    // A deployment of the first release: migration 1 and its history.
    db.exec(&format!(
        "SET search_path TO {{schema}}; {} \
         CREATE TABLE sessions_migrations (version integer PRIMARY KEY, name text NOT NULL, \
           applied_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO sessions_migrations (version, name) VALUES (1, 'create_sessions'); \
         SET search_path TO DEFAULT",
        crate::common::MIGRATIONS[0]
    ))
    .await;

    let client = untracked(probe(&db, json!({ "cleanup_interval": 0 }), 1).rocket).await;
    let versions: Vec<i32> = db
        .client
        .query(
            &format!(
                "SELECT version FROM {}.sessions_migrations ORDER BY 1",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    // The new table went to the configured schema, not the search path's.
    let found: Option<String> = db
        .scalar("SELECT to_regclass('{schema}.sessions_revocations')::text")
        .await;
    assert!(found.is_some());

    let answer = request(&client, Method::Post, "/login/ann", None, "").await;
    assert_eq!(answer.status, Status::Ok);
}

#[rocket::async_test]
async fn two_instances_share_sessions_and_never_sweep_at_once() {
    let db = TestDb::new().await;
    // The migrations as written, then each instance applies them again at
    // launch (both at once): they are idempotent and run under a lock.
    db.migrate_as_written().await;
    let overrides = json!({ "cleanup_interval": 1, "operation_timeout": 20 });
    let (a, b) = (probe(&db, overrides.clone(), 1), probe(&db, overrides, 1));
    let (a_counts, b_counts) = (a.counts.clone(), b.counts.clone());
    let (a, b) = tokio::join!(untracked(a.rocket), untracked(b.rocket));

    // A session made on one instance is read and written on the other.
    let answer = request(&a, Method::Post, "/login/ann", None, "").await;
    let id = issued(&answer).unwrap();
    let answer = request(&b, Method::Put, "/key/k", Some(&id), "1").await;
    assert_eq!(answer.json()["user"], json!("ann"));
    let answer = request(&a, Method::Get, "/me", Some(&id), "").await;
    assert_eq!(answer.json()["data"], json!({ "k": 1 }));
    let answer = request(&b, Method::Post, "/logout", Some(&id), "").await;
    assert_eq!(answer.status, Status::Ok);
    let answer = request(&a, Method::Get, "/me", Some(&id), "").await;
    assert_eq!(answer.json()["user"], Value::Null);

    // Hold up every DELETE on the table until the test lets go of a lock
    // of its own, then give the sweepers something to delete. Both
    // triggers come in one transaction: a DDL statement after the first
    // would wait for the held DELETE.
    let gate = db.private_lock_key();
    db.exec(&format!(
        "SELECT pg_advisory_lock({gate});
         CREATE FUNCTION {{schema}}.hold() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             -- Bounded, so that a failing test ends instead of hanging.
             PERFORM set_config('lock_timeout', '15s', true);
             PERFORM pg_advisory_xact_lock_shared({gate});
             RETURN NULL;
         END $$;
         CREATE TRIGGER hold BEFORE DELETE ON {{table}}
           FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.hold();
         {DELETE_LOG}"
    ))
    .await;
    db.insert_expired("g", 5).await;
    let skips_before =
        a_counts.sweep_skips.load(Ordering::SeqCst) + b_counts.sweep_skips.load(Ordering::SeqCst);

    // One instance's batch stands in the trigger, holding the sweep lock;
    // the other's batches find the lock taken and skip.
    let waiting = format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND objid = ({gate} & 4294967295)::oid"
    );
    eventually(10, "a sweep blocked in the trigger", || async {
        db.scalar::<i64>(&waiting).await == 1
    })
    .await;
    eventually(10, "the other instance skipping", || async {
        a_counts.sweep_skips.load(Ordering::SeqCst) + b_counts.sweep_skips.load(Ordering::SeqCst)
            > skips_before
    })
    .await;
    assert_eq!(db.expired_count().await, 5, "a second sweep deleted rows");
    assert_eq!(delete_log(&db).await, Vec::<i64>::new());

    db.exec(&format!("SELECT pg_advisory_unlock({gate})")).await;
    eventually(10, "the held sweep finishing", || async {
        db.expired_count().await == 0
    })
    .await;
    // The held batch deleted all five; later batches found nothing.
    let log = delete_log(&db).await;
    assert_eq!(log.first(), Some(&5), "{log:?}");
    assert!(log[1..].iter().all(|rows| *rows == 0), "{log:?}");
    let swept =
        a_counts.swept_rows.load(Ordering::SeqCst) + b_counts.swept_rows.load(Ordering::SeqCst);
    assert_eq!(swept, 5);

    tokio::join!(a.terminate(), b.terminate());
}
