//! A store that fails: writes that fail become the crate's 503 without a
//! cookie, and a database that goes away answers 503 within
//! `operation_timeout`, then recovers by itself.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rocket::http::{CookieJar, Header, Status};
use rocket::local::asynchronous::Client;
use rocket::response::Redirect;
use rocket::serde::json::{json, Value};
use rocket::{post, routes};
use rocket_tessera::Session;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::common::{cookie_value, database_url, set_cookies, untracked, TestDb};
use crate::{counted_demo_app, demo_app};

const NAME: &str = "__Host-session";

#[post("/redirect")]
fn redirect(session: Session<'_>, jar: &CookieJar<'_>) -> Redirect {
    session.insert("k", 1).unwrap();
    jar.add(("other", "1"));
    Redirect::to("/next")
}

#[rocket::async_test]
async fn a_failed_write_becomes_a_503_without_cookies_or_location() {
    let db = TestDb::new().await;
    let (rocket, counts) = counted_demo_app(&db, json!({}));
    let client = untracked(rocket.mount("/t", routes![redirect])).await;
    counts.fail_writes.store(true, Ordering::SeqCst);

    let res = client.post("/t/redirect").dispatch().await;
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert!(set_cookies(&res).is_empty(), "{:?}", set_cookies(&res));
    assert!(res.headers().get_one("Location").is_none());
    assert_eq!(res.content_type(), Some(rocket::http::ContentType::Plain));
    let body = res.into_string().await.unwrap();
    assert!(body.contains("the session could not be saved"), "{body}");
    assert!(
        !body.contains("injected"),
        "the cause stays in the log: {body}"
    );
    assert_eq!(db.count().await, 0);

    // A JSON route gets a JSON answer.
    let res = client.post("/api/counter").dispatch().await;
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert!(set_cookies(&res).is_empty());
    let body: Value = res.into_json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("could not be saved"),
        "{body}"
    );

    // An existing session keeps its data and its cookie stays valid.
    counts.fail_writes.store(false, Ordering::SeqCst);
    let res = client
        .post("/api/login")
        .body(r#"{"user":"ann"}"#)
        .dispatch()
        .await;
    let id = cookie_value(&res, NAME).unwrap();
    counts.fail_writes.store(true, Ordering::SeqCst);
    let res = client
        .post("/api/logout")
        .header(Header::new("Cookie", format!("{NAME}={id}")))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(db.data_of(&id).await, Some(json!({ "user": "ann" })));
}

/// A TCP forwarder to PostgreSQL that a test can cut: `Cut::Closed` closes
/// the port, `Cut::Silent` accepts connections and never answers.
struct Proxy {
    port: u16,
    tasks: JoinSet<()>,
}

enum Mode {
    Forward,
    Silent,
}

impl Proxy {
    async fn start(port: u16, mode: Mode) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy port");
        let port = listener.local_addr().unwrap().port();
        let upstream = postgres_addr();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    break;
                };
                let upstream = upstream.clone();
                match mode {
                    Mode::Forward => conns.spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    }),
                    Mode::Silent => conns.spawn(async move {
                        let _keep = inbound;
                        std::future::pending::<()>().await
                    }),
                };
            }
        });
        Proxy { port, tasks }
    }

    /// Closes the port and every connection through it.
    async fn stop(mut self) -> u16 {
        self.tasks.shutdown().await;
        self.port
    }

    fn url(&self) -> String {
        let config: tokio_postgres::Config = database_url().parse().unwrap();
        let user = config.get_user().unwrap_or("postgres");
        let db = config.get_dbname().unwrap_or("postgres");
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }
}

fn postgres_addr() -> String {
    let config: tokio_postgres::Config = database_url().parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => "127.0.0.1".into(),
    };
    format!(
        "{host}:{}",
        config.get_ports().first().copied().unwrap_or(5432)
    )
}

/// The demo on `db` through a proxy to PostgreSQL, with the given
/// `operation_timeout` and `connect_timeout`, and the cookie of a session
/// signed in through it.
async fn signed_in_behind_proxy(
    db: &TestDb,
    operation_timeout: u64,
    connect_timeout: u64,
) -> (Client, Proxy, Header<'static>) {
    let proxy = Proxy::start(0, Mode::Forward).await;
    let overrides = json!({
        "database_url": proxy.url(),
        "operation_timeout": operation_timeout,
        "connect_timeout": connect_timeout,
    });
    let client = untracked(demo_app(db, overrides)).await;
    let res = client
        .post("/api/login")
        .body(r#"{"user":"ann"}"#)
        .dispatch()
        .await;
    let id = cookie_value(&res, NAME).unwrap();
    drop(res);
    (client, proxy, Header::new("Cookie", format!("{NAME}={id}")))
}

#[rocket::async_test]
async fn a_database_that_goes_away_gives_503_in_time_and_comes_back() {
    let db = TestDb::new().await;
    let (client, proxy, cookie) = signed_in_behind_proxy(&db, 2, 1).await;

    let port = proxy.stop().await;
    for _ in 0..2 {
        let started = Instant::now();
        let res = client
            .get("/api/session")
            .header(cookie.clone())
            .dispatch()
            .await;
        let took = started.elapsed();
        assert_eq!(res.status(), Status::ServiceUnavailable);
        assert!(set_cookies(&res).is_empty());
        assert!(
            took < Duration::from_secs(3),
            "answered after {took:?}, bound is 2 s"
        );
    }
    // A route without the guard is not affected.
    assert_eq!(client.get("/").dispatch().await.status(), Status::Ok);

    let _proxy = Proxy::start(port, Mode::Forward).await;
    let res = client.get("/api/session").header(cookie).dispatch().await;
    assert_eq!(res.status(), Status::Ok, "service resumes by itself");
    assert_eq!(
        res.into_json::<Value>().await,
        Some(json!({ "user": "ann" }))
    );
}

#[rocket::async_test]
async fn a_database_that_never_answers_gives_503_within_the_bound() {
    let db = TestDb::new().await;
    let (client, proxy, cookie) = signed_in_behind_proxy(&db, 1, 10).await;

    let port = proxy.stop().await;
    let _silent = Proxy::start(port, Mode::Silent).await;
    let started = Instant::now();
    let res = client.get("/api/session").header(cookie).dispatch().await;
    let took = started.elapsed();
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert!(
        took < Duration::from_secs(2),
        "answered after {took:?}, bound is 1 s"
    );
}

#[rocket::async_test]
async fn a_database_unreachable_at_launch_stops_launch() {
    let db = TestDb::new().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres:hunter2@127.0.0.1:{closed}/test");
    let started = Instant::now();
    let result = rocket::local::asynchronous::Client::untracked(demo_app(
        &db,
        json!({ "database_url": url, "connect_timeout": 2 }),
    ))
    .await;
    let Err(err) = result else {
        panic!("launch must fail")
    };
    assert!(
        matches!(err.kind(), rocket::error::ErrorKind::FailedFairings(f) if f[0].name == "Sessions"),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // The cause names the URL without its password.
    let config = rocket_tessera::Config {
        database_url: Some(url),
        ..rocket_tessera::Config::default()
    };
    let store = rocket_tessera::PostgresStore::new(&config).unwrap();
    let message = store.prepare(&config).await.unwrap_err().to_string();
    assert!(
        message.contains(&format!("postgres://postgres:***@127.0.0.1:{closed}/test")),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[rocket::async_test]
async fn a_row_that_does_not_decode_gives_503_not_a_panic() {
    let db = TestDb::new().await;
    let client = untracked(demo_app(&db, json!({}))).await;
    let res = client
        .post("/api/login")
        .body(r#"{"user":"ann"}"#)
        .dispatch()
        .await;
    let id = cookie_value(&res, NAME).unwrap();
    // Deeper than the JSON parser reading rows back accepts; written past
    // the crate, as another program could.
    db.exec("UPDATE {table} SET data = ('{\"k\":' || repeat('[', 130) || repeat(']', 130) || '}')::jsonb")
        .await;
    let res = client
        .get("/api/session")
        .header(Header::new("Cookie", format!("{NAME}={id}")))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert_eq!(
        db.count().await,
        1,
        "the row is left for someone to look into"
    );
}
