//! `infuse dashboard` against a real `redis-server`: the token check over HTTP (from the
//! command line, the environment or a file; reads guarded unless `--public-read`), the
//! `Host` check, the header deadline and the connection cap against raw sockets, and the
//! page in headless Chromium (driven through chromedriver's WebDriver API: a page that
//! holds an SSE stream open never lets `--dump-dom` return): a breaker shown open soon
//! after a registry of the fleet trips it; each process listed with the state it sees;
//! the history made before the page opened; a fail counter moving without adding
//! timeline rows; the filter. A screenshot is saved as a test artifact.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use infuse::Registry;
use infuse_tests::support::calls::{fail, succeed};
use infuse_tests::support::redis_server::RedisServer;
use infuse_tests::support::redis_service_config;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_infuse");

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `infuse dashboard` on a free port; answers with the process and its URL.
fn dashboard(server: &RedisServer, namespace: &str, token: Option<&str>) -> (Running, String) {
    let args: Vec<&str> = token
        .map(|token| vec!["--token", token])
        .unwrap_or_default();
    dashboard_with(server, namespace, &args, &[])
}

/// Starts `infuse dashboard` on a free port with more arguments and environment
/// variables; answers with the process and its URL.
fn dashboard_with(
    server: &RedisServer,
    namespace: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Running, String) {
    let mut command = Command::new(BIN);
    command
        .args(["--redis", &server.url(), "--namespace", namespace])
        .args(["dashboard", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("INFUSE_DASHBOARD_TOKEN")
        .envs(env.iter().copied())
        .stdout(Stdio::piped());
    let mut child = command.spawn().expect("start the dashboard");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_owned();
    (Running(child), url)
}

/// `127.0.0.1:PORT` of a dashboard's URL.
fn address(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Sends `request` as written on a new connection; answers the status and the body.
async fn raw(url: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address(url)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A `GET` of `path` with `Host: host` (and `Connection: close`).
async fn get_as(url: &str, host: &str, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw(url, &request).await.0
}

async fn member(server: &RedisServer, namespace: &str) -> Registry {
    Registry::new(redis_service_config(
        server,
        namespace,
        "users",
        2,
        Duration::from_secs(60),
    ))
    .await
    .expect("registry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_need_the_token() {
    let server = RedisServer::start();
    let registry = member(&server, "dash-token").await;
    let users = registry.breaker("users");
    assert!(succeed(&users).await.is_ok());
    let http = reqwest::Client::new();

    let (_read_only, url) = dashboard(&server, "dash-token", None);
    let answer = http
        .post(format!("{url}api/breakers/users/close"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        403,
        "a dashboard without --token is read-only"
    );
    let config: Value = serde_json::from_str(
        &http
            .get(format!("{url}api/config"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(config["writable"], false);

    let (_writable, url) = dashboard(&server, "dash-token", Some("s3cret"));
    let open = format!("{url}api/breakers/users/open?for=30m");
    let answer = http.post(&open).send().await.unwrap();
    assert_eq!(answer.status(), 401, "no token");
    let answer = http.post(&open).bearer_auth("guess").send().await.unwrap();
    assert_eq!(answer.status(), 401, "a wrong token");
    assert_eq!(users.state().await.unwrap(), infuse::State::Closed);
    let answer = http.post(&open).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(users.state().await.unwrap(), infuse::State::Open);
    let answer = http
        .post(format!("{url}api/breakers/nosuch/close"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        400,
        "an unknown service is refused, not created"
    );
    let answer = http
        .post(format!("{url}api/breakers/users/close"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(users.state().await.unwrap(), infuse::State::Closed);
}

/// The command line of a running process, as `ps` shows it to every user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_an_expired_record_as_a_row_and_changes_never_announce_the_dashboard() {
    let server = RedisServer::start();
    let ns = "dash-expired";
    let registry = member(&server, ns).await;
    assert!(succeed(&registry.breaker("users")).await.is_ok());
    // A breaker of a process that has ended, whose record then expired.
    let gone = Registry::new(redis_service_config(
        &server,
        ns,
        "retired",
        2,
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    assert!(succeed(&gone.breaker("retired")).await.is_ok());
    gone.shutdown().await.unwrap();
    drop(gone);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .cli(&["DEL", &format!("infuse:{{{ns}/retired}}:state")])
        .unwrap();

    let (dashboard, url) = dashboard(&server, ns, Some("s3cret"));
    let http = reqwest::Client::new();
    let answer = http
        .get(format!("{url}api/breakers"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let rows: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["service"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["retired", "users"]);
    assert_eq!(rows[0]["record"], "missing");
    assert_eq!(rows[1]["state"], "closed");

    let answer = http
        .post(format!("{url}api/breakers/users/close"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let index = server
        .cli(&["ZRANGE", &format!("infuse:{{{ns}}}:processes"), "0", "-1"])
        .unwrap();
    let dashboard_pid = format!("\"pid\":{},", dashboard.0.id());
    for id in index.lines() {
        let announced = server
            .cli(&["GET", &format!("infuse:{{{ns}}}:process:{id}")])
            .unwrap_or_default();
        assert!(
            !announced.contains(&dashboard_pid),
            "the dashboard announced itself: {announced}"
        );
    }
}

fn command_line(process: &Running) -> String {
    std::fs::read(format!("/proc/{}/cmdline", process.0.id()))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default()
}

/// The status of `method path` with `token` as the Bearer (if any).
async fn status_of(method: reqwest::Method, url: &str, token: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    // The event stream answers its headers at once and then stays open.
    let answer = tokio::time::timeout(Duration::from_secs(5), request.send())
        .await
        .expect("an answer within 5 s")
        .unwrap();
    answer.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_comes_from_the_environment_or_a_file_and_guards_reads() {
    let server = RedisServer::start();
    let registry = member(&server, "dash-secret").await;
    assert!(succeed(&registry.breaker("users")).await.is_ok());
    let file = std::env::temp_dir().join(format!("infuse-token-{}", std::process::id()));
    std::fs::write(&file, "fr0m-a-file\n").unwrap();
    let file_arg = file.to_str().unwrap();
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    for (args, env, token) in [
        (
            vec![],
            vec![("INFUSE_DASHBOARD_TOKEN", "fr0m-the-env")],
            "fr0m-the-env",
        ),
        (vec!["--token-file", file_arg], vec![], "fr0m-a-file"),
    ] {
        let (process, url) = dashboard_with(&server, "dash-secret", &args, &env);
        assert!(
            !command_line(&process).contains(token),
            "the token is not on the command line: {}",
            command_line(&process)
        );
        for path in ["api/breakers", "api/config", "api/events"] {
            let at = format!("{url}{path}");
            assert_eq!(
                status_of(get.clone(), &at, None).await,
                401,
                "{path}, no token"
            );
            assert_eq!(
                status_of(get.clone(), &at, Some("guess")).await,
                401,
                "{path}"
            );
            assert_eq!(
                status_of(get.clone(), &at, Some(token)).await,
                200,
                "{path}"
            );
        }
        // The page itself holds no data: it loads, then asks for the token.
        assert_eq!(status_of(get.clone(), &url, None).await, 200);
        let close = format!("{url}api/breakers/users/close");
        assert_eq!(status_of(post.clone(), &close, None).await, 401);
        assert_eq!(status_of(post.clone(), &close, Some(token)).await, 200);
    }

    let (_public, url) = dashboard_with(
        &server,
        "dash-secret",
        &["--token-file", file_arg, "--public-read"],
        &[],
    );
    for path in ["api/breakers", "api/config", "api/events"] {
        let at = format!("{url}{path}");
        assert_eq!(
            status_of(get.clone(), &at, None).await,
            200,
            "--public-read: {path}"
        );
    }
    let close = format!("{url}api/breakers/users/close");
    assert_eq!(
        status_of(post.clone(), &close, None).await,
        401,
        "changes still need it"
    );

    // Two sources of a token, or an empty one: refused at start, in one line.
    let refused = |args: &[&str], env: &[(&str, &str)]| {
        let output = Command::new(BIN)
            .args([
                "--redis",
                &server.url(),
                "dashboard",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .env_remove("INFUSE_DASHBOARD_TOKEN")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} {env:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let both = refused(
        &["--token-file", file_arg],
        &[("INFUSE_DASHBOARD_TOKEN", "x")],
    );
    assert!(
        both.contains("$INFUSE_DASHBOARD_TOKEN and --token-file"),
        "{both}"
    );
    std::fs::write(&file, "\n").unwrap();
    let empty = refused(&["--token-file", file_arg], &[]);
    assert!(empty.contains("token is empty"), "{empty}");
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_against_dns_rebinding() {
    let server = RedisServer::start();
    let (_strict, url) = dashboard(&server, "dash-host", None);
    let port = address(&url).rsplit_once(':').unwrap().1.to_owned();
    for path in ["/", "/api/breakers", "/api/config"] {
        assert_eq!(
            get_as(&url, &format!("127.0.0.1:{port}"), path).await,
            200,
            "{path}"
        );
        assert_eq!(
            get_as(&url, &format!("localhost:{port}"), path).await,
            200,
            "{path}"
        );
        assert_eq!(
            get_as(&url, &format!("evil.example:{port}"), path).await,
            421,
            "a rebinding page's name: {path}"
        );
    }
    assert_eq!(
        get_as(&url, "127.0.0.2", "/api/config").await,
        421,
        "another address"
    );
    let (status, body) = raw(
        &url,
        "GET /api/config HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "no Host: {body}");
    let (_, body) = raw(
        &url,
        "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        body.contains("--allow-host"),
        "the refusal says what to do: {body}"
    );

    let (_proxied, url) =
        dashboard_with(&server, "dash-host", &["--allow-host", "dash.example"], &[]);
    assert_eq!(get_as(&url, "dash.example", "/api/config").await, 200);
    assert_eq!(get_as(&url, "DASH.example:443", "/api/config").await, 200);
    assert_eq!(get_as(&url, "evil.example", "/api/config").await, 421);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_sent_too_slowly_are_cut_off() {
    let server = RedisServer::start();
    let (_dashboard, url) = dashboard_with(&server, "dash-slow", &["--header-timeout", "1s"], &[]);
    let mut stream = TcpStream::connect(address(&url)).await.unwrap();
    stream
        .write_all(b"GET /api/breakers HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    // One byte of a header every 100 ms (slowloris): the deadline is for the whole head.
    let start = Instant::now();
    let mut buffer = [0u8; 512];
    let closed_after = loop {
        assert!(start.elapsed() < Duration::from_secs(10), "never closed");
        if stream.write_all(b"z").await.is_err() {
            break start.elapsed();
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => break start.elapsed(),
            Ok(Ok(n)) => panic!(
                "an answer to an unfinished head: {:?}",
                String::from_utf8_lossy(&buffer[..n])
            ),
            Err(_) => {}
        }
    };
    eprintln!("a trickled head was closed after {closed_after:?}");
    assert!(
        closed_after >= Duration::from_millis(800) && closed_after < Duration::from_secs(3),
        "closed after {closed_after:?} (deadline 1 s)"
    );
    // The dashboard still answers.
    assert_eq!(get_as(&url, "127.0.0.1", "/api/config").await, 200);
}

/// The number of open descriptors of a process.
fn descriptors(process: &Running) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", process.0.id()))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_cap_do_not_starve_the_api() {
    let server = RedisServer::start();
    let registry = member(&server, "dash-cap").await;
    assert!(succeed(&registry.breaker("users")).await.is_ok());
    // The default cap (256) and header deadline (10 s).
    let (dashboard, url) = dashboard(&server, "dash-cap", None);
    let before = descriptors(&dashboard);
    let mut idle = Vec::new();
    for _ in 0..1_100 {
        idle.push(TcpStream::connect(address(&url)).await.unwrap());
    }
    let http = reqwest::Client::new();
    let start = Instant::now();
    let answer = http
        .get(format!("{url}api/breakers"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/api/breakers answers past 1,100 idle connections");
    let took = start.elapsed();
    assert_eq!(answer.status(), 200);
    let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(body[0]["service"], "users");
    let held = descriptors(&dashboard);
    eprintln!(
        "with 1,100 idle connections: /api/breakers in {took:?}; the dashboard holds {held} descriptors ({before} before)"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        held <= before + 256 + 8,
        "{held} descriptors: the cap holds"
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_of_busy_connections_a_newcomer_is_refused_at_once() {
    let server = RedisServer::start();
    let (_dashboard, url) = dashboard_with(&server, "dash-busy", &["--max-connections", "3"], &[]);
    // Three event streams: busy for as long as they are open.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(address(&url)).await.unwrap();
        stream
            .write_all(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        // The answer's head, to its blank line.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte));
            assert_eq!(read.await.unwrap().unwrap(), 1, "{head:?}");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
        streams.push(stream);
    }
    let start = Instant::now();
    let (status, body) = raw(
        &url,
        "GET /api/config HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("--max-connections"), "{body}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    // The streams were left alone.
    let mut more = [0u8; 1];
    for stream in &mut streams {
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut more)).await;
        assert!(read.is_err(), "an event stream was closed: {read:?}");
    }
}

/// A WebDriver session of headless Chromium.
struct Browser {
    http: reqwest::Client,
    session: String,
    /// chromedriver's port and the session's id, to end it when dropped.
    port: u16,
    id: String,
    _driver: Running,
}

impl Drop for Browser {
    /// Ends the session, so that chromedriver quits Chromium (killing chromedriver alone
    /// leaves Chromium running, its page's event stream reconnecting to whatever next
    /// listens on the dashboard's port — another test's server). Synchronous, so it runs
    /// on a failed test too; chromedriver answers once Chromium is gone.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.id, self.port
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            // The answer's first bytes: Chromium has quit.
            let _ = stream.read(&mut [0; 512]);
        }
    }
}

impl Browser {
    async fn start() -> Browser {
        for binary in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Running(
            Command::new("/usr/bin/chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,640"]
            }
        }}});
        let answer = post(&http, &format!("{base}/session"), capabilities).await;
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        Browser {
            http,
            session: format!("{base}/session/{session}"),
            port,
            id: session,
            _driver: driver,
        }
    }

    async fn go(&self, url: &str) {
        post(
            &self.http,
            &format!("{}/url", self.session),
            json!({ "url": url }),
        )
        .await;
    }

    /// Runs `script` in the page; answers with its return value.
    async fn eval(&self, script: &str) -> Value {
        let answer = post(
            &self.http,
            &format!("{}/execute/sync", self.session),
            json!({ "script": script, "args": [] }),
        )
        .await;
        answer["value"].clone()
    }

    /// Waits (up to 10 s) for the page's `prompt()`, types `text` and accepts it.
    async fn answer_prompt(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let open = self
                .http
                .get(format!("{}/alert/text", self.session))
                .send()
                .await
                .unwrap()
                .status()
                .is_success();
            if open {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the page never asked for its token"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = format!("{}/alert/text", self.session);
        post(&self.http, &url, json!({ "text": text })).await;
        let url = format!("{}/alert/accept", self.session);
        post(&self.http, &url, json!({})).await;
    }

    async fn screenshot(&self) -> Vec<u8> {
        let answer: Value = serde_json::from_str(
            &self
                .http
                .get(format!("{}/screenshot", self.session))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        base64_decode(answer["value"].as_str().expect("a screenshot"))
    }
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> Value {
    let text = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Standard base64 (WebDriver's screenshots), without padding checks.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let sextets: Vec<u8> = text.bytes().filter_map(value).collect();
    sextets
        .chunks(4)
        .flat_map(|chunk| {
            let n = chunk.iter().fold(0u32, |acc, &s| acc << 6 | u32::from(s))
                << (6 * (4 - chunk.len()));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(chunk.len().saturating_sub(1))
        })
        .collect()
}

/// Polls `script` until it returns `want` (or `within` passes); answers how long it took.
async fn until(browser: &Browser, script: &str, want: &str, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if browser.eval(script).await == want {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

const USERS_STATE: &str =
    "const s = document.querySelector('tr[data-service=\"users\"] .state'); return s ? s.textContent : '';";

/// Waits until the page shows `users` closed and its event stream is connected (the
/// dot turns green), so that a change made next reaches it live.
async fn until_live(browser: &Browser) {
    assert!(
        until(browser, USERS_STATE, "closed", Duration::from_secs(20))
            .await
            .is_some(),
        "the page never showed the breaker"
    );
    let live = "return document.getElementById('live').classList.contains('on') ? 'on' : 'off';";
    assert!(
        until(browser, live, "on", Duration::from_secs(10))
            .await
            .is_some(),
        "no event stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_trip_within_a_second() {
    let server = RedisServer::start();
    let registry = member(&server, "dash-page").await;
    let users = registry.breaker("users");
    assert!(succeed(&users).await.is_ok());
    let (_dashboard, url) = dashboard(&server, "dash-page", None);
    let browser = Browser::start().await;
    browser.go(&url).await;
    // The event stream is connected before the trip.
    until_live(&browser).await;

    for _ in 0..2 {
        let _ = fail(&users).await;
    }
    let shown = until(&browser, USERS_STATE, "open", Duration::from_secs(5)).await;
    let shown = shown.expect("the page did not show the breaker open within 5 s");
    eprintln!("the page showed the trip after {shown:?}");
    assert!(
        shown < Duration::from_secs(1),
        "the page showed the trip after {shown:?}"
    );
    let timeline = "return document.getElementById('timeline').textContent;";
    assert!(browser
        .eval(timeline)
        .await
        .as_str()
        .unwrap()
        .contains("users"));

    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let artifact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&artifact, png).unwrap();
    eprintln!("screenshot: {}", artifact.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_asks_for_the_token_once_and_then_reads_live() {
    let server = RedisServer::start();
    let registry = member(&server, "dash-page-token").await;
    let users = registry.breaker("users");
    assert!(succeed(&users).await.is_ok());
    let (_dashboard, url) = dashboard_with(
        &server,
        "dash-page-token",
        &[],
        &[("INFUSE_DASHBOARD_TOKEN", "pa9e-t0ken")],
    );
    let browser = Browser::start().await;
    browser.go(&url).await;
    browser.answer_prompt("pa9e-t0ken").await;
    until_live(&browser).await; // with the token
    for _ in 0..2 {
        let _ = fail(&users).await;
    }
    assert!(
        until(&browser, USERS_STATE, "open", Duration::from_secs(5))
            .await
            .is_some(),
        "the page did not show the trip"
    );
    // The page offers changes (it has the token) and never asked twice.
    let buttons = "return String(document.querySelectorAll('button[data-act]').length);";
    assert_eq!(browser.eval(buttons).await, "2");
}

/// Runs `infuse` against `server`'s namespace `ns` and waits for it.
fn infuse(server: &RedisServer, ns: &str, args: &[&str]) {
    let status = Command::new(BIN)
        .args(["--redis", &server.url(), "--namespace", ns])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("run infuse");
    assert!(status.success(), "infuse {args:?} failed");
}

/// Redis's clock (unix ms).
fn redis_ms(server: &RedisServer) -> u64 {
    let time = server.cli(&["TIME"]).unwrap();
    let mut parts = time.split_whitespace().map(|p| p.parse::<u64>().unwrap());
    parts.next().unwrap() * 1000 + parts.next().unwrap() / 1000
}

/// Announces a process the way `fleet/presence.rs` does, last seen `age` ago with a 5 s
/// interval: one that sees `breakers` as given (a process that missed the news, say).
fn announce(
    server: &RedisServer,
    ns: &str,
    id: &str,
    host: &str,
    pid: u32,
    age: Duration,
    breakers: &[(&str, &str)],
) {
    let now = redis_ms(server);
    let listed: serde_json::Map<String, Value> = breakers
        .iter()
        .map(|(name, state)| (name.to_string(), json!(state)))
        .collect();
    let text = json!({
        "at_ms": now - age.as_millis() as u64, "id": id, "name": "api", "host": host, "pid": pid,
        "interval_ms": 5000, "breakers_total": breakers.len(), "breakers_omitted": 0, "breakers": listed,
    })
    .to_string();
    // It lives ten intervals after its last renewal.
    let expires = now + 50_000 - age.as_millis() as u64;
    server
        .cli(&["SET", &format!("infuse:{{{ns}}}:process:{id}"), &text])
        .unwrap();
    server
        .cli(&[
            "ZADD",
            &format!("infuse:{{{ns}}}:processes"),
            &expires.to_string(),
            id,
        ])
        .unwrap();
}

/// The text of `selector`'s matches, joined by `|`.
fn texts_of(selector: &str) -> String {
    format!(
        "return [...document.querySelectorAll({selector:?})].filter(e => !e.closest('[hidden]')).map(e => e.textContent.replace(/\\s+/g, ' ').trim()).join('|');"
    )
}

/// How many of `selector`'s matches are visible (not `hidden`), as a string.
fn count_of(selector: &str) -> String {
    format!("return String([...document.querySelectorAll({selector:?})].filter(e => !e.closest('[hidden]')).length);")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_each_process_with_its_state_and_the_history_made_before_it_opened() {
    let server = RedisServer::start();
    let ns = "dash-seen";
    let registry = member(&server, ns).await;
    let users = registry.breaker("users");
    // Two transitions before the page opens: a trip, then an operator's close.
    for _ in 0..2 {
        let _ = fail(&users).await;
    }
    assert_eq!(users.state().await.unwrap(), infuse::State::Open);
    infuse(&server, ns, &["close", "users"]);
    // A second process, which last reported 12 s ago and still sees the breaker open.
    announce(
        &server,
        ns,
        "5eed",
        "web-2",
        4242,
        Duration::from_secs(12),
        &[("users", "open")],
    );

    let (_dashboard, url) = dashboard(&server, ns, None);
    let browser = Browser::start().await;
    browser.go(&url).await;
    // Each process that sees the breaker, with the state it sees and when it was last seen.
    let seen = texts_of("tr[data-service=\"users\"] ul.seen li");
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let listed = browser
            .eval(&seen)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let settled = listed.contains("web-2")
            && listed.split('|').count() == 2
            && listed.split('|').any(|i| i.starts_with("closed "));
        if settled || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let items: Vec<&str> = listed.split('|').collect();
    assert_eq!(items.len(), 2, "two processes: {listed:?}");
    let stale = items.iter().find(|i| i.contains("web-2")).unwrap();
    assert!(stale.starts_with("open api@web-2 pid 4242"), "{stale:?}");
    // Seen 12 s before it was announced, a few seconds before the page read it.
    let age: u64 = stale
        .strip_suffix(" s ago")
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no age in {stale:?}"));
    assert!((12..=20).contains(&age), "{stale:?}");
    let live = items.iter().find(|i| !i.contains("web-2")).unwrap();
    assert!(
        live.starts_with("closed ") && live.contains(&format!("pid {}", std::process::id())),
        "this test's registry sees it closed: {live:?}"
    );

    // The transitions made before the page opened, from Redis: one row each, with why
    // and by whom.
    let rows = "tr[data-service=\"users\"]";
    assert!(
        until(&browser, &count_of(rows), "1", Duration::from_secs(5))
            .await
            .is_some()
    );
    let timeline = texts_of("#timeline li[data-service=\"users\"]");
    let deadline = Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown = browser
            .eval(&timeline)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if shown.split('|').count() == 2 || Instant::now() > deadline {
            break shown;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let entries: Vec<&str> = shown.split('|').collect();
    assert_eq!(entries.len(), 2, "two transitions: {shown:?}");
    let history: Vec<Value> = serde_json::from_str(
        &reqwest::get(format!("{url}api/history?service=users&limit=5"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    // Newest first: the close, then the trip.
    assert!(entries[0].contains("open → closed"), "{entries:?}");
    assert!(entries[1].contains("closed → open"), "{entries:?}");
    for (entry, made) in entries.iter().zip(&history) {
        let reason = made["reason"].as_str().unwrap();
        assert!(
            entry.contains(reason),
            "{entry:?} without its reason {reason:?}"
        );
        assert!(
            entry.starts_with("just now") || entry.contains(" s ago"),
            "a relative time: {entry:?}"
        );
    }
    // The trip was made by this test's registry, shown by name, not by id.
    assert!(
        entries[1].contains(&format!("pid {}", std::process::id())),
        "{entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_changes_are_a_sparkline_not_timeline_rows_and_the_filter_hides_rows() {
    let server = RedisServer::start();
    let ns = "dash-counters";
    // A breaker that 100 failures do not trip, and another.
    let registry = Registry::new(redis_service_config(
        &server,
        ns,
        "users",
        1000,
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    let users = registry.breaker("users");
    let orders = registry.breaker("orders");
    assert!(succeed(&users).await.is_ok());
    assert!(succeed(&orders).await.is_ok());
    let (_dashboard, url) = dashboard(&server, ns, None);
    let browser = Browser::start().await;
    browser.go(&url).await;
    until_live(&browser).await;

    for _ in 0..100 {
        let _ = fail(&users).await;
    }
    let fails = "const f = document.querySelector('tr[data-service=\"users\"] .fails'); return f ? f.textContent : '';";
    assert!(
        until(&browser, fails, "100", Duration::from_secs(10))
            .await
            .is_some(),
        "the page never showed the 100 failures"
    );
    // The counter moved: the sparkline draws it; the timeline has no row for it.
    let spark = "return document.querySelector('tr[data-service=\"users\"] svg.spark polyline') ? 'drawn' : 'none';";
    assert_eq!(browser.eval(spark).await, "drawn");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(browser.eval(&count_of("#timeline li")).await, "0");
    // A transition is one row.
    infuse(&server, ns, &["open", "users"]);
    assert!(until(&browser, USERS_STATE, "open", Duration::from_secs(5))
        .await
        .is_some());
    assert!(
        until(
            &browser,
            &count_of("#timeline li"),
            "1",
            Duration::from_secs(5)
        )
        .await
        .is_some(),
        "one row for the trip"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(browser.eval(&count_of("#timeline li")).await, "1");

    // The filter, by name then by state, hides the rows that do not match.
    let names = texts_of("#rows tr[data-service] td:first-child");
    assert_eq!(browser.eval(&names).await, "orders|users");
    let set = |id: &str, value: &str, event: &str| {
        format!("const e = document.getElementById({id:?}); e.value = {value:?}; e.dispatchEvent(new Event({event:?})); return 'ok';")
    };
    browser.eval(&set("filter", "ORD", "input")).await;
    assert_eq!(browser.eval(&names).await, "orders");
    assert_eq!(
        browser.eval(&count_of("#timeline li")).await,
        "0",
        "the timeline is filtered by name too"
    );
    browser.eval(&set("filter", "", "input")).await;
    browser.eval(&set("state-filter", "open", "change")).await;
    assert_eq!(browser.eval(&names).await, "users");
    browser.eval(&set("state-filter", "closed", "change")).await;
    assert_eq!(browser.eval(&names).await, "orders");
    // It holds across the page's refresh (every 2 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(browser.eval(&names).await, "orders");

    // An open period that has run out, no trial made yet: "half-open, trial due", and
    // no "0 ms" left.
    browser.eval(&set("state-filter", "", "change")).await;
    infuse(&server, ns, &["open", "orders", "--for", "1s"]);
    let orders_state = "const s = document.querySelector('tr[data-service=\"orders\"] .state'); return s ? s.textContent : '';";
    assert!(
        until(
            &browser,
            orders_state,
            "half-open, trial due",
            Duration::from_secs(6)
        )
        .await
        .is_some(),
        "the page never said the trial is due"
    );
    let left = "return document.querySelector('tr[data-service=\"orders\"] .left').textContent;";
    assert_eq!(browser.eval(left).await, "trial due");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_api_is_bounded_and_guarded() {
    let server = RedisServer::start();
    let ns = "dash-history";
    let registry = member(&server, ns).await;
    let users = registry.breaker("users");
    // Three transitions: a trip, a close, a trip.
    for _ in 0..2 {
        let _ = fail(&users).await;
    }
    infuse(&server, ns, &["close", "users"]);
    // Until the registry has heard of the close, its calls are rejected: fail until the
    // third transition is in the history.
    let key = format!("infuse:{{{ns}/users}}:history");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.cli(&["LLEN", &key]).unwrap().trim() != "3" {
        assert!(Instant::now() < deadline, "the breaker never tripped again");
        let _ = fail(&users).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_dashboard, url) = dashboard(&server, ns, Some("h1story"));
    let http = reqwest::Client::new();
    let get = |query: &str, token: Option<&str>| {
        let mut request = http.get(format!("{url}api/history{query}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            (
                status,
                serde_json::from_str::<Value>(&answer.text().await.unwrap()).unwrap(),
            )
        }
    };
    assert_eq!(
        get("?service=users", None).await.0,
        401,
        "reads need the token"
    );
    let (status, all) = get("?service=users", Some("h1story")).await;
    assert_eq!(status, 200);
    let tos: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(tos, ["open", "closed", "open"], "newest first");
    assert!(all[0]["reason"].is_string() && all[0]["process"].is_string());
    let (_, two) = get("?service=users&limit=2", Some("h1story")).await;
    assert_eq!(two.as_array().unwrap().len(), 2);
    assert_eq!(two[0], all[0]);
    // Past the bound, the bound (there are only three here: no error).
    let (status, many) = get("?service=users&limit=100000", Some("h1story")).await;
    assert_eq!((status, many.as_array().unwrap().len()), (200, 3));
    let (status, none) = get("?service=nobody", Some("h1story")).await;
    assert_eq!((status, none), (200, json!([])));
    assert_eq!(get("", Some("h1story")).await.0, 400);
    assert_eq!(get("?service=users&limit=-1", Some("h1story")).await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_fleets_permits_and_retry_tokens_spent() {
    let server = RedisServer::start();
    let ns = "dash-budgets";
    let registry = member(&server, ns).await;
    assert!(succeed(&registry.breaker("users")).await.is_ok());
    // Two more processes, each with its permits of the cap and the retries it took.
    for (id, permits, retries) in [("b1", [2, 4, 8], 5), ("b2", [1, 3, 8], 1_995)] {
        let now = redis_ms(&server);
        let text = json!({
            "at_ms": now, "id": id, "name": "api", "host": "web", "pid": 7, "interval_ms": 5000,
            "breakers_total": 1, "breakers_omitted": 0, "breakers": { "users": "closed" },
            "permits": { "users": permits }, "retries": { "users": retries },
        })
        .to_string();
        let key = format!("infuse:{{{ns}}}:process:{id}");
        server.cli(&["SET", &key, &text]).unwrap();
        let index = format!("infuse:{{{ns}}}:processes");
        let expires = (now + 50_000).to_string();
        server.cli(&["ZADD", &index, &expires, id]).unwrap();
    }

    let (_dashboard, url) = dashboard(&server, ns, None);
    let browser = Browser::start().await;
    browser.go(&url).await;
    let budgets =
        texts_of("tr[data-service=\"users\"] .permits, tr[data-service=\"users\"] .retries");
    let want = "3 of 8 permits in use (7 leased)|2,000 retries taken from the budget";
    let shown = until(&browser, &budgets, want, Duration::from_secs(20)).await;
    assert!(
        shown.is_some(),
        "the page shows the sums: {}",
        browser.eval(&budgets).await
    );
}
