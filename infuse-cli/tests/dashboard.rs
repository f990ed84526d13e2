//! `infuse dashboard` against a real `redis-server`: the token check over HTTP, and the
//! page in headless Chromium (driven through chromedriver's WebDriver API: a page that
//! holds an SSE stream open never lets `--dump-dom` return) showing a breaker open soon
//! after a registry of the fleet trips it. A screenshot is saved as a test artifact.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use infuse::Registry;
use infuse_tests::support::calls::{fail, succeed};
use infuse_tests::support::redis_server::RedisServer;
use infuse_tests::support::redis_service_config;
use serde_json::{json, Value};

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
    let mut command = Command::new(BIN);
    command
        .args(["--redis", &server.url(), "--namespace", namespace])
        .args(["dashboard", "--listen", "127.0.0.1:0"])
        .env_remove("INFUSE_DASHBOARD_TOKEN")
        .stdout(Stdio::piped());
    if let Some(token) = token {
        command.args(["--token", token]);
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_trip_within_a_second() {
    let server = RedisServer::start();
    let registry = member(&server, "dash-page").await;
    let users = registry.breaker("users");
    assert!(succeed(&users).await.is_ok());
    let (_dashboard, url) = dashboard(&server, "dash-page", None);
    let browser = Browser::start().await;
    browser.go(&url).await;
    assert!(
        until(&browser, USERS_STATE, "closed", Duration::from_secs(20))
            .await
            .is_some(),
        "the page never showed the breaker"
    );
    // The event stream is connected before the trip (its dot turns green).
    let live = "return document.getElementById('live').classList.contains('on') ? 'on' : 'off';";
    assert!(
        until(&browser, live, "on", Duration::from_secs(10))
            .await
            .is_some(),
        "no event stream"
    );

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
