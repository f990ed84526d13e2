//! What the `infuse` command prints, against a real `redis-server`: bytes from Redis
//! never reach the terminal raw (a hostile service name, process announcement, history
//! entry or event shows escaped, and the table stays aligned), and the messages speak
//! the command's language (options and commands, not library calls; what answered
//! instead of Redis; no password).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use infuse::Registry;
use infuse_tests::support::calls::succeed;
use infuse_tests::support::redis_server::RedisServer;
use infuse_tests::support::redis_service_config;
use infuse_tests::support::tls::tls_server;
use serde_json::Value;

mod common;

use common::{failure, stdout, BIN};

fn infuse(server: &RedisServer, namespace: &str, args: &[&str]) -> Output {
    let url = server.url();
    common::infuse(
        ["--redis", &url, "--namespace", namespace]
            .iter()
            .chain(args),
    )
}

/// What a terminal would act on: C0 controls but the newline, DEL, C1 controls, and the
/// bidirectional overrides and isolates.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let raw = raw_controls(&text);
    assert!(raw.is_empty(), "{what} printed raw {raw:?}: {text:?}");
}

/// A name that clears the screen, retitles the window, starts a C1 control sequence,
/// reverses the text and breaks table cells.
const EVIL: &str = "evil\x1b[2J\x1b]0;pwned\x07\u{9b}31m\u{202e}gpj.exe\tcol\nrow\x7f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_from_redis_are_escaped_and_the_table_stays_aligned() {
    let server = RedisServer::start();
    let ns = "cli-hostile";
    let registry = Registry::new(redis_service_config(
        &server,
        ns,
        "users",
        2,
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    assert!(succeed(&registry.breaker("users")).await.is_ok());
    // What a buggy or hostile writer could leave in Redis, in the documented layout: a
    // record under a name no registry accepts, a process announcement, a history entry.
    let cli = |args: &[&str]| {
        server
            .cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?}"))
    };
    let state = format!("infuse:{{{ns}/{EVIL}}}:state");
    cli(&["HSET", &state, "state", "1", "gen", "7", "fail", "3"]);
    cli(&["PEXPIRE", &state, "600000"]);
    cli(&["ZADD", &format!("infuse:{{{ns}}}:changes"), "1", EVIL]);
    let announcement = serde_json::json!({
        "id": "e1e1", "name": EVIL, "host": "host\x1b[31m", "pid": 7, "at_ms": 1,
        "interval_ms": 30000, "breakers": { "users": "open\x1b[2J", EVIL: "closed" }
    });
    cli(&[
        "SET",
        &format!("infuse:{{{ns}}}:process:e1e1"),
        &announcement.to_string(),
    ]);
    // Scored with its expiry (far ahead): a live announcement.
    cli(&[
        "ZADD",
        &format!("infuse:{{{ns}}}:processes",),
        "99999999999999",
        "e1e1",
    ]);
    let reason = "because\x1b]0;owned\x07\u{85}";
    let entry = format!("1764550000123 closed open 2 {reason} e1e1");
    cli(&["LPUSH", &format!("infuse:{{{ns}/users}}:history"), &entry]);

    // The table.
    let output = infuse(&server, ns, &["status"]);
    assert_clean("status", &output.stdout);
    let table = stdout(&output);
    assert!(
        table.contains(
            "evil\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{9b}31m\\u{202e}gpj.exe\\tcol\\nrow\\u{7f}"
        ),
        "{table}"
    );
    assert!(
        table.contains("because\\u{1b}]0;owned\\u{7}\\u{85}"),
        "{table}"
    );
    let lines: Vec<Vec<char>> = table.lines().map(|l| l.chars().collect()).collect();
    assert_eq!(lines.len(), 3, "one line per breaker: {table}");
    let header: String = lines[0].iter().collect();
    for column in ["STATE", "FAILS", "GEN", "SEEN BY", "LAST CHANGE"] {
        let at = header.find(column).unwrap(); // ASCII: bytes = chars
        for line in &lines[1..] {
            assert!(
                line[at - 1] == ' ' && line[at] != ' ',
                "column {column} is not aligned:\n{table}"
            );
        }
    }
    // JSON: escaped as JSON, the same strings once parsed.
    let output = infuse(&server, ns, &["status", "--json"]);
    assert_clean("status --json", &output.stdout);
    let all: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(all[0]["service"], EVIL);
    assert_eq!(all[1]["last_transition"]["reason"], reason);

    // The history and the processes.
    for args in [&["explain", "users"][..], &["explain", "users", "--json"]] {
        let output = infuse(&server, ns, args);
        assert_clean(&format!("{args:?}"), &output.stdout);
        assert!(output.status.success(), "{args:?}");
    }
    let explained = stdout(&infuse(&server, ns, &["explain", "users"]));
    assert!(
        explained.contains("seen open\\u{1b}[2J by evil\\u{1b}"),
        "{explained}"
    );
    assert!(
        explained.contains("@host\\u{1b}[31m (pid 7)"),
        "{explained}"
    );
    // An error listing the names the namespace has.
    let output = infuse(&server, ns, &["status", "nosuch"]);
    assert_clean("an error", &output.stderr);
    assert!(
        failure(&output).contains("known: evil\\u{1b}[2J"),
        "{output:?}"
    );

    // An event on the namespace's channel.
    let mut watch = Command::new(BIN)
        .args(["--redis", &server.url(), "--namespace", ns, "watch"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("watching"), "{first}");
    let channel = infuse::store::redis::keys::events_channel(ns);
    let event = format!("1 8 1 1 3 0 5000 -2 -1 {EVIL}");
    cli(&["PUBLISH", &channel, &event]);
    let seen = tokio::task::spawn_blocking(move || lines.next());
    let seen = tokio::time::timeout(Duration::from_secs(10), seen).await;
    watch.kill().unwrap();
    watch.wait().unwrap();
    let line = seen
        .expect("watch printed the event")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_clean("watch", line.as_bytes());
    assert!(line.contains("evil\\u{1b}[2J"), "{line}");
}

/// A TCP server on a free port that answers every connection with `answer` (once it
/// has read something), for as long as the test runs.
fn impostor(answer: &'static [u8]) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buffer = [0u8; 512];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(answer);
        }
    });
    port
}

#[test]
fn a_port_that_is_not_redis_is_named_as_such() {
    let port = impostor(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let output = common::infuse(["--redis", &format!("redis://127.0.0.1:{port}"), "status"]);
    let said = failure(&output);
    assert!(
        said.contains(&format!(
            "127.0.0.1:{port} is not a Redis server (it answered \"HTTP/1.1 400 Bad Request\" to PING)"
        )),
        "{said}"
    );
    assert!(!said.contains("Parse error"), "{said}");
}

#[test]
fn tls_on_one_side_only_fails_fast_with_the_scheme_to_use() {
    let plain = RedisServer::start();
    let start = Instant::now();
    let output = common::infuse([
        "--redis",
        &format!("rediss://127.0.0.1:{}", plain.port()),
        "status",
    ]);
    let took = start.elapsed();
    let said = failure(&output);
    assert!(
        said.contains("speaks plain Redis, not TLS: use a redis:// URL"),
        "{said}"
    );
    assert!(
        took < Duration::from_secs(2),
        "{took:?}: not the 5 s deadline"
    );

    let tls = tls_server(false);
    let output = common::infuse([
        "--redis",
        &format!("redis://127.0.0.1:{}", tls.port()),
        "status",
    ]);
    let said = failure(&output);
    assert!(said.contains("speaks TLS: use a rediss:// URL"), "{said}");
}

#[test]
fn a_password_is_never_printed() {
    let server = RedisServer::start();
    let socket = std::env::temp_dir().join(format!("infuse-cli-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    server
        .cli(&["CONFIG", "SET", "requirepass", "the-right-one"])
        .unwrap();
    // A second server on a Unix socket, for `redis+unix://…?pass=`.
    let mut unix = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--requirepass",
            "the-right-one",
        ])
        .args(["--unixsocket", socket.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "redis-server made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sock = socket.to_str().unwrap();
    let port = server.port();
    for url in [
        format!("redis+unix://{sock}?pass=hunter2"),
        format!("redis+unix://{sock}?db=x&pass=hunter2"),
        format!("unix://{sock}?password=hunter2"),
        format!("redis://ops:hunter2@127.0.0.1:{port}"),
        format!("redis://ops:hunter2@127.0.0.1:{port}/x"),
    ] {
        let output = common::infuse(["--redis", &url, "status"]);
        let said = failure(&output);
        assert!(!said.contains("hunter2"), "{url}: {said}");
        assert!(
            !said.contains("Config::"),
            "the option, not the library call: {said}"
        );
    }
    let _ = unix.kill();
    let _ = unix.wait();
    let _ = std::fs::remove_file(&socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_for_reads_as_asked_and_limits_name_commands() {
    let server = RedisServer::start();
    let registry = Registry::new(redis_service_config(
        &server,
        "cli-words",
        "users",
        2,
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    assert!(succeed(&registry.breaker("users")).await.is_ok());
    let said = stdout(&infuse(
        &server,
        "cli-words",
        &["open", "users", "--for", "10m"],
    ));
    assert!(said.trim_end().ends_with("open for 10m"), "{said}");
    let said = stdout(&infuse(
        &server,
        "cli-words",
        &["open", "users", "--for", "2h"],
    ));
    assert!(said.trim_end().ends_with("open for 2h"), "{said}");

    let output = infuse(&server, "cli-words", &["open", "users", "--for", "31d"]);
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("infuse force-open SERVICE"), "{said}");
    assert!(!said.contains("force_open()"), "{said}");

    // A record the scripts cannot read: shown as such, the repair named as a command;
    // an operator's open (a forced write, as close is) repairs it too.
    server
        .cli(&["HSET", "infuse:{cli-words/users}:state", "state", "9"])
        .unwrap();
    let said = stdout(&infuse(&server, "cli-words", &["status", "users"]));
    assert!(said.contains("corrupt ("), "{said}");
    assert!(said.contains("infuse close repairs it"), "{said}");
    assert!(!said.contains("close()"), "{said}");
    let said = stdout(&infuse(&server, "cli-words", &["open", "users"]));
    assert!(said.starts_with("users: corrupt record -> open"), "{said}");
}

/// A breaker an operator closed after holding it open is in slow start when the
/// command's settings (here from the environment, as a fleet's) give it one: `status`
/// says so, with the share; without `slow_start` it is plainly closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_slow_start_share() {
    let server = RedisServer::start();
    let url = server.url();
    let run = |args: &[&str], slow_start: Option<&str>| {
        let mut command = Command::new(BIN);
        command
            .args(["--redis", &url, "--namespace", "cli-slow"])
            .args(args)
            .env_remove("REDIS_URL")
            .env_remove("INFUSE_USERS_SLOW_START");
        if let Some(ramp) = slow_start {
            command.env("INFUSE_USERS_SLOW_START", ramp);
        }
        stdout(&command.output().expect("run the infuse binary"))
    };
    let registry = Registry::new(redis_service_config(
        &server,
        "cli-slow",
        "users",
        2,
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    assert!(succeed(&registry.breaker("users")).await.is_ok());
    stdout(&infuse(&server, "cli-slow", &["force-open", "users"]));
    stdout(&infuse(&server, "cli-slow", &["close", "users"]));
    let json = run(&["status", "users", "--json"], Some("60m"));
    let said = run(&["status", "users"], Some("60m"));
    assert!(said.contains("closed (slow start 10%)"), "{said}\n{json}");
    let row: Value = serde_json::from_str(&json).unwrap();
    let row = &row[0];
    assert_eq!(row["slow_start_percent"], 10, "{row}");
    assert!(row["since_close_ms"].as_u64().unwrap() < 60_000, "{row}");
    let said = run(&["status", "users"], None);
    assert!(!said.contains("slow start"), "{said}");
}
