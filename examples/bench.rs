//! Throughput and latency of session routes as a ratio against bare Rocket,
//! measured side by side in one run.
//!
//! ```sh
//! bench/run                        # or:
//! cargo run --release --example bench -- [seconds per round] [connections]
//! ```
//!
//! One Rocket server serves every scenario on one loopback port: `/bare`
//! (no session guard), `/read` (loads a session, changes nothing) and
//! `/write` (loads and writes a session). Keep-alive clients in the same
//! process hit one scenario at a time, in interleaved rounds, so that all
//! scenarios see the same machine. PostgreSQL comes from
//! `TESSERA_BENCH_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! the run works in a schema of its own and drops it at the end.

use std::time::{Duration, Instant};

use rocket::figment::Figment;
use rocket::serde::json::json;
use rocket::{get, post, routes};
use rocket_tessera::{Session, SessionId, Sessions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[get("/bare")]
fn bare() -> &'static str {
    "ok"
}

#[get("/read")]
fn read(session: Session<'_>) -> String {
    session
        .get::<i64>("n")
        .ok()
        .flatten()
        .unwrap_or(0)
        .to_string()
}

#[post("/write")]
fn write(session: Session<'_>) -> String {
    let n = session.get::<i64>("n").ok().flatten().unwrap_or(0) + 1;
    session.insert("n", n).expect("an integer is JSON");
    n.to_string()
}

const SCENARIOS: [(&str, &str); 3] = [
    ("bare", "GET /bare"),
    ("read", "GET /read"),
    ("write", "POST /write"),
];

#[rocket::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let connections: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let rounds = 3;
    let url = std::env::var("TESSERA_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());

    let schema = format!(
        "bench_{}",
        &SessionId::generate().encode()[..8]
            .to_ascii_lowercase()
            .replace(['-', '_'], "x")
    );
    let port = free_port();
    let figment = Figment::from(rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        port,
        ..rocket::Config::release_default()
    })
    .merge((
        "sessions",
        json!({ "database_url": url, "table": format!("{schema}.sessions"), "secure": false }),
    ));
    let rocket = rocket::custom(figment)
        .attach(Sessions::fairing())
        .mount("/", routes![bare, read, write]);
    let rocket = rocket.ignite().await.expect("the bench server ignites");
    let shutdown = rocket.shutdown();
    let server = tokio::spawn(rocket.launch());
    wait_for(port).await;

    // One session per connection, made through the API itself.
    let mut cookies = Vec::new();
    for _ in 0..connections {
        let mut conn = Conn::open(port).await;
        let (_, set_cookie) = conn.request("POST /write", None).await;
        cookies.push(set_cookie.expect("a write sets the cookie"));
    }

    println!("rocket_tessera bench: {connections} connections, {rounds} rounds of {seconds} s per scenario");
    let mut totals: [(u64, Vec<Duration>); 3] = Default::default();
    for _ in 0..rounds {
        for (i, (_, request)) in SCENARIOS.iter().enumerate() {
            let (count, latencies) =
                load(port, request, &cookies, Duration::from_secs(seconds)).await;
            totals[i].0 += count;
            totals[i].1.extend(latencies);
        }
    }

    let elapsed = (rounds as u64 * seconds) as f64;
    let bare_rps = totals[0].0 as f64 / elapsed;
    let bare_p50 = percentile(&mut totals[0].1.clone(), 0.50);
    println!(
        "{:<8} {:>10} {:>8} {:>10} {:>10} {:>9}",
        "route", "req/s", "ratio", "p50 (us)", "p99 (us)", "p50 ratio"
    );
    for (i, (name, _)) in SCENARIOS.iter().enumerate() {
        let rps = totals[i].0 as f64 / elapsed;
        let p50 = percentile(&mut totals[i].1, 0.50);
        let p99 = percentile(&mut totals[i].1, 0.99);
        println!(
            "{name:<8} {rps:>10.0} {:>8.3} {:>10} {:>10} {:>9.2}",
            rps / bare_rps,
            p50.as_micros(),
            p99.as_micros(),
            p50.as_secs_f64() / bare_p50.as_secs_f64()
        );
    }

    shutdown.notify();
    let _ = server.await;
    drop_schema(&url, &schema).await;
}

/// Runs `request` on every connection for `length`; returns the number of
/// responses and each one's latency.
async fn load(
    port: u16,
    request: &'static str,
    cookies: &[String],
    length: Duration,
) -> (u64, Vec<Duration>) {
    let deadline = Instant::now() + length;
    let mut tasks = tokio::task::JoinSet::new();
    for cookie in cookies {
        let cookie = cookie.clone();
        tasks.spawn(async move {
            let mut conn = Conn::open(port).await;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let (status, _) = conn.request(request, Some(&cookie)).await;
                assert_eq!(status, 200, "{request}");
                latencies.push(started.elapsed());
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(latencies) = tasks.join_next().await {
        all.extend(latencies.expect("a load task"));
    }
    (all.len() as u64, all)
}

fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort_unstable();
    values
        .get(((values.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or_default()
}

/// A keep-alive HTTP/1.1 connection that understands just enough of the
/// answer: the status, `Set-Cookie` and `Content-Length`.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the bench server");
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    async fn request(&mut self, request: &str, cookie: Option<&str>) -> (u16, Option<String>) {
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        let text =
            format!("{request} HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}Content-Length: 0\r\n\r\n");
        self.stream.write_all(text.as_bytes()).await.expect("send");
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let length = header(&head, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + length {
                    self.buf.drain(..end + 4 + length);
                    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                    let set_cookie = header(&head, "set-cookie")
                        .map(|v| v.split(';').next().unwrap().to_string());
                    return (status, set_cookie);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.expect("receive");
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(port: u16) {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the bench server did not start");
}

async fn drop_schema(url: &str, schema: &str) {
    if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await;
    }
}
