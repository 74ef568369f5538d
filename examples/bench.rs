//! Throughput and latency of session routes in both modes, each as a ratio
//! against bare Rocket on the same instance, measured side by side in one
//! run.
//!
//! ```sh
//! bench/run                        # or:
//! cargo run --release --example bench -- [seconds per round] [connections]
//! ```
//!
//! Two Rocket servers run in this process, each on a loopback port of its
//! own: one in PostgreSQL mode, one in cookie mode (sealing with a key drawn
//! from the operating system's CSPRNG at startup). Each serves `/bare` (no
//! session guard), `/read` (loads the session, changes nothing) and
//! `/write` (loads the session and writes one key); the PostgreSQL one also
//! serves `/select1` (one `SELECT 1` on a pool of its own, no session), the
//! cost of a round trip alone.
//!
//! Each instance gets 4096 sessions, made through `/write` and spread over
//! the connections; each connection uses its sessions in turn and keeps the
//! cookie it was last sent for each, as a browser would. Keep-alive clients
//! in the same process hit one scenario at a time, in interleaved rounds
//! whose order rotates, so that every scenario sees the same machine; a
//! warm-up per scenario comes first and is not counted.
//!
//! PostgreSQL comes from `TESSERA_BENCH_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); the run works in a schema of
//! its own and drops it at the end, also when a request fails.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rand::TryRng as _;
use rocket::figment::Figment;
use rocket::http::Status;
use rocket::serde::json::{json, Value};
use rocket::{get, post, routes, State};
use rocket_tessera::{Config, Session, SessionId, Sessions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

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

/// One `SELECT 1` on a pool of the size the session store's has by
/// default, and no session: what one PostgreSQL round trip costs.
#[get("/select1")]
async fn select1(pool: &State<Pool>) -> Result<&'static str, Status> {
    let client = pool.get().await.map_err(|_| Status::ServiceUnavailable)?;
    let statement = client
        .prepare_cached("SELECT 1")
        .await
        .map_err(|_| Status::ServiceUnavailable)?;
    client
        .query_one(&statement, &[])
        .await
        .map_err(|_| Status::ServiceUnavailable)?;
    Ok("ok")
}

/// The two instances, by index into the servers.
const INSTANCES: [&str; 2] = ["postgres", "cookie"];
/// Every scenario: the instance, a name, and the request line's start.
/// Each instance's `bare` comes first: its other scenarios compare with it.
const SCENARIOS: [(usize, &str, &str); 7] = [
    (0, "bare", "GET /bare"),
    (0, "select1", "GET /select1"),
    (0, "read", "GET /read"),
    (0, "write", "POST /write"),
    (1, "bare", "GET /bare"),
    (1, "read", "GET /read"),
    (1, "write", "POST /write"),
];
/// Sessions made on each instance, spread over the connections, which use
/// theirs in turn: many rows, each written now and then, as in a real
/// deployment, rather than a few rows written thousands of times.
const SESSIONS: usize = 4096;
/// Measured rounds; each runs every scenario once.
const ROUNDS: usize = 5;
/// Unmeasured time per scenario before the first round.
const WARM_UP: Duration = Duration::from_secs(1);
/// Longest wait for one response before the run gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What one scenario measured over all rounds.
#[derive(Default)]
struct Totals {
    responses: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Responses per second in each round, in the order of the rounds.
    rounds: Vec<f64>,
}

struct Server {
    port: u16,
    shutdown: rocket::Shutdown,
    task: tokio::task::JoinHandle<Result<rocket::Rocket<rocket::Ignite>, rocket::Error>>,
}

#[rocket::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(2);
    let connections: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    if seconds == 0 || !(1..=1024).contains(&connections) {
        eprintln!("usage: bench [seconds per round, 1 or more] [connections, 1 to 1024]");
        return ExitCode::from(2);
    }
    let url = std::env::var("TESSERA_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());

    let schema = format!(
        "bench_{}",
        &SessionId::generate().encode()[..8]
            .to_ascii_lowercase()
            .replace(['-', '_'], "x")
    );
    let mut key = [0u8; 32];
    if rand::rngs::SysRng.try_fill_bytes(&mut key).is_err() {
        eprintln!("bench: the operating system's CSPRNG failed");
        return ExitCode::FAILURE;
    }
    let pool = match round_trip_pool(&url) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let configs = [
        (
            json!({
                "mode": "postgres",
                "database_url": url,
                "table": format!("{schema}.sessions"),
                "secure": false,
            }),
            Some(pool),
        ),
        (
            json!({
                "mode": "cookie",
                "keys": [{ "id": "bench", "key": STANDARD.encode(key) }],
                "secure": false,
            }),
            None,
        ),
    ];

    let mut servers = Vec::new();
    let mut failure = None;
    for (config, pool) in configs {
        match start(config, pool).await {
            Ok(server) => servers.push(server),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let outcome = match failure {
        Some(e) => Err(e),
        None => {
            let ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
            measure(&ports, seconds, connections).await
        }
    };
    for server in servers {
        server.shutdown.notify();
        let _ = server.task.await;
    }
    drop_schema(&url, &schema).await;

    match outcome {
        Ok(totals) => {
            report(&totals);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A pool for `/select1`, as large as the session store's by default.
fn round_trip_pool(url: &str) -> Result<Pool, String> {
    let pg: tokio_postgres::Config = url
        .parse()
        .map_err(|_| "TESSERA_BENCH_DATABASE_URL is not a PostgreSQL connection string")?;
    let manager = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(Config::default().pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| format!("cannot build the pool for /select1: {e}"))
}

/// Ignites and launches one instance with `sessions` as its session
/// configuration (and `/select1` when given a pool), and waits until it
/// accepts connections.
async fn start(sessions: Value, pool: Option<Pool>) -> Result<Server, String> {
    let port = free_port();
    let figment = Figment::from(rocket::Config {
        log_level: rocket::config::LogLevel::Critical,
        port,
        ..rocket::Config::release_default()
    })
    .merge(("sessions", sessions));
    let mut rocket = rocket::custom(figment)
        .attach(Sessions::fairing())
        .mount("/", routes![bare, read, write]);
    if let Some(pool) = pool {
        rocket = rocket.manage(pool).mount("/", routes![select1]);
    }
    let rocket = rocket
        .ignite()
        .await
        .map_err(|e| format!("a bench server did not ignite: {e}"))?;
    let shutdown = rocket.shutdown();
    let task = tokio::spawn(rocket.launch());
    wait_for(port).await?;
    Ok(Server {
        port,
        shutdown,
        task,
    })
}

/// Makes the sessions on each instance, warms every scenario up, then runs
/// the measured rounds.
async fn measure(ports: &[u16], seconds: u64, connections: usize) -> Result<Vec<Totals>, String> {
    let per_connection = SESSIONS.div_ceil(connections);
    let mut jars: Vec<Vec<Jar>> = Vec::new();
    for &port in ports {
        jars.push(make_sessions(port, connections, per_connection).await?);
    }

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!(
        "rocket_tessera bench: {connections} connections, {ROUNDS} rounds of {seconds} s per \
         scenario, {} s warm-up each; {} sessions per instance; {cpus} CPUs, load average {}",
        WARM_UP.as_secs(),
        per_connection * connections,
        load.join(" ")
    );
    println!(
        "cookie sizes (name=value): postgres {} bytes, cookie {} bytes",
        jars[0][0].cookies[0].len(),
        jars[1][0].cookies[0].len()
    );

    for (instance, _, request) in SCENARIOS {
        run(ports[instance], request, &mut jars[instance], WARM_UP).await?;
    }
    let mut totals: Vec<Totals> = SCENARIOS.iter().map(|_| Totals::default()).collect();
    for round in 0..ROUNDS {
        // Rotate the order, so that no scenario always follows the same one.
        for k in 0..SCENARIOS.len() {
            let i = (round + k) % SCENARIOS.len();
            let (instance, _, request) = SCENARIOS[i];
            let length = Duration::from_secs(seconds);
            let (elapsed, latencies) =
                run(ports[instance], request, &mut jars[instance], length).await?;
            totals[i].responses += latencies.len() as u64;
            totals[i].elapsed += elapsed;
            totals[i]
                .rounds
                .push(latencies.len() as f64 / elapsed.as_secs_f64());
            totals[i].latencies.extend(latencies);
        }
    }
    Ok(totals)
}

fn report(totals: &[Totals]) {
    println!(
        "{:<9} {:<7} {:>8} {:>6} {:>9} {:>9} {:>9}  req/s by round",
        "instance", "route", "req/s", "ratio", "p50 (us)", "p99 (us)", "p50 ratio"
    );
    // The bare scenario of each instance, which its other rows compare with.
    let mut bare = (0.0, 0.0);
    for ((instance, name, _), totals) in SCENARIOS.iter().zip(totals) {
        let rps = totals.responses as f64 / totals.elapsed.as_secs_f64();
        let mut latencies = totals.latencies.clone();
        let p50 = percentile(&mut latencies, 0.50).as_secs_f64();
        let p99 = percentile(&mut latencies, 0.99).as_secs_f64();
        if *name == "bare" {
            bare = (rps, p50);
        }
        println!(
            "{:<9} {:<7} {rps:>8.0} {:>6.3} {:>9.0} {:>9.0} {:>9.2}  {}",
            INSTANCES[*instance],
            name,
            rps / bare.0,
            p50 * 1e6,
            p99 * 1e6,
            p50 / bare.1,
            totals
                .rounds
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    println!("ratios: against bare Rocket (/bare) on the same instance");
}

/// The sessions of one client connection: a cookie for each, as last sent
/// by the server, used in turn.
#[derive(Default)]
struct Jar {
    cookies: Vec<String>,
    next: usize,
}

/// Makes `per_connection` sessions on each of `connections` connections at
/// once, through the API itself (`POST /write` without a cookie).
async fn make_sessions(
    port: u16,
    connections: usize,
    per_connection: usize,
) -> Result<Vec<Jar>, String> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(async move {
            let mut conn = Conn::open(port).await?;
            let mut jar = Jar::default();
            for _ in 0..per_connection {
                match conn.request("POST /write", None).await? {
                    (200, Some(cookie)) => jar.cookies.push(cookie),
                    (status, _) => return Err(format!("a first write answered {status}")),
                }
            }
            Ok(jar)
        });
    }
    let mut jars = Vec::new();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(jar) => jars.push(jar),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(jars),
    }
}

/// Runs `request` on a fresh connection per jar, each request with the
/// jar's next cookie, for `length` once all are connected; returns the time
/// that took and each response's latency. A cookie the server sends
/// replaces the one the request carried, as in a browser.
async fn run(
    port: u16,
    request: &'static str,
    jars: &mut [Jar],
    length: Duration,
) -> Result<(Duration, Vec<Duration>), String> {
    let start = Arc::new(Barrier::new(jars.len() + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for (slot, jar) in jars.iter_mut().enumerate() {
        let mut jar = std::mem::take(jar);
        let start = start.clone();
        tasks.spawn(async move {
            let conn = Conn::open(port).await;
            start.wait().await;
            let mut conn = conn?;
            let deadline = Instant::now() + length;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let cookie = &mut jar.cookies[jar.next];
                let started = Instant::now();
                let (status, set_cookie) = conn.request(request, Some(cookie)).await?;
                if status != 200 {
                    return Err(format!("{request} answered {status}"));
                }
                latencies.push(started.elapsed());
                if let Some(set_cookie) = set_cookie {
                    *cookie = set_cookie;
                }
                jar.next = (jar.next + 1) % jar.cookies.len();
            }
            Ok((slot, jar, latencies))
        });
    }
    start.wait().await;
    let started = Instant::now();
    let mut all = Vec::new();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok((slot, jar, latencies)) => {
                jars[slot] = jar;
                all.extend(latencies);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    let elapsed = started.elapsed();
    match failure {
        Some(e) => Err(e),
        None => Ok((elapsed, all)),
    }
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
    async fn open(port: u16) -> Result<Conn, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("cannot connect to the bench server: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` and returns the status and the `name=value` of the
    /// `Set-Cookie` header, if any.
    async fn request(
        &mut self,
        request: &str,
        cookie: Option<&str>,
    ) -> Result<(u16, Option<String>), String> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request, cookie))
            .await
            .map_err(|_| format!("{request}: no answer within {REQUEST_TIMEOUT:?}"))?
    }

    async fn exchange(
        &mut self,
        request: &str,
        cookie: Option<&str>,
    ) -> Result<(u16, Option<String>), String> {
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        let text =
            format!("{request} HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}Content-Length: 0\r\n\r\n");
        self.stream
            .write_all(text.as_bytes())
            .await
            .map_err(|e| format!("{request}: send: {e}"))?;
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
                        .and_then(|v| v.split(';').next())
                        .map(str::to_string);
                    return Ok((status, set_cookie));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("{request}: receive: {e}"))?;
            if n == 0 {
                return Err(format!("{request}: the server closed the connection"));
            }
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

async fn wait_for(port: u16) -> Result<(), String> {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err("a bench server did not start listening within 5 s".into())
}

async fn drop_schema(url: &str, schema: &str) {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            if let Err(e) = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
            {
                eprintln!("bench: could not drop schema {schema}: {e}");
            }
        }
        Err(e) => eprintln!("bench: could not connect to drop schema {schema}: {e}"),
    }
}
