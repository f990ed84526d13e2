//! The command as a thin layer over `infuse::admin`, against a real `redis-server`: its
//! controls never make it a fleet process, its views hold up when a record expired or
//! holds garbage, and `watch` outlives a Redis restart.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use infuse::{Registry, State};
use infuse_tests::support::calls::{eventually, fail, succeed};
use infuse_tests::support::redis_server::RedisServer;
use infuse_tests::support::redis_service_config;
use serde_json::Value;

mod common;

use common::{stdout, BIN};

fn infuse(server: &RedisServer, namespace: &str, args: &[&str]) -> Output {
    let url = server.url();
    common::infuse(
        ["--redis", &url, "--namespace", namespace]
            .iter()
            .chain(args),
    )
}

fn status_json(server: &RedisServer, namespace: &str) -> Vec<Value> {
    common::json_array(&infuse(server, namespace, &["status", "--json"]))
}

/// A registry of the fleet with `service` (fail_max 2, reset `reset`), announcing
/// itself every 200 ms.
async fn member(server: &RedisServer, namespace: &str, service: &str, reset: Duration) -> Registry {
    let config = redis_service_config(server, namespace, service, 2, reset)
        .resync_interval(Duration::from_millis(200));
    Registry::new(config).await.expect("registry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controls_never_make_the_command_a_fleet_process() {
    let server = RedisServer::start();
    let ns = "views-tool";
    let registry = member(&server, ns, "users", Duration::from_secs(60)).await;
    let users = registry.breaker("users");
    assert!(succeed(&users).await.is_ok());
    // This test's process announces itself; wait until it is listed.
    assert!(
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(100),
            async || status_json(&server, ns)[0]["processes"]
                .as_array()
                .is_some_and(|p| p.len() == 1)
        )
        .await
    );

    let said = stdout(&infuse(&server, ns, &["force-open", "users"]));
    assert!(said.starts_with("users: closed -> forced-open"), "{said}");
    let said = stdout(&infuse(&server, ns, &["close", "users"]));
    assert!(said.starts_with("users: forced-open -> closed"), "{said}");

    // Only this test's process is announced: in the index, in status and in explain.
    let index = server
        .cli(&["ZRANGE", &format!("infuse:{{{ns}}}:processes"), "0", "-1"])
        .unwrap();
    assert_eq!(index.lines().count(), 1, "one process announced: {index}");
    let json = status_json(&server, ns);
    let processes = json[0]["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1, "{processes:?}");
    assert_eq!(processes[0]["pid"], std::process::id());
    assert_ne!(processes[0]["name"], "infuse");
    let table = stdout(&infuse(&server, ns, &["status"]));
    assert!(table.contains("1 process ("), "{table}");
    assert!(!table.contains("infuse@"), "{table}");
    let explained = stdout(&infuse(&server, ns, &["explain", "users"]));
    let seen: Vec<&str> = explained
        .lines()
        .filter(|l| l.trim_start().starts_with("seen "))
        .collect();
    assert_eq!(seen.len(), 1, "{explained}");
    assert!(!seen[0].contains("infuse@"), "{explained}");
    assert!(seen[0].contains("last seen "), "{explained}");
    // The history names the change, newest first.
    let history: Vec<&str> = explained.lines().filter(|l| l.contains(" ago  ")).collect();
    assert!(
        history[0].contains("forced-open -> closed  manual"),
        "{explained}"
    );
    assert!(
        history[1].contains("closed -> forced-open  manual"),
        "{explained}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_expired_and_corrupt_records_as_rows() {
    let server = RedisServer::start();
    let ns = "views-odd";
    let registry = member(&server, ns, "users", Duration::from_millis(300)).await;
    assert!(succeed(&registry.breaker("users")).await.is_ok());
    // Two breakers of a process that has ended.
    let gone = member(&server, ns, "payments", Duration::from_secs(60)).await;
    for service in ["payments", "search"] {
        assert!(succeed(&gone.breaker(service)).await.is_ok());
    }
    gone.shutdown().await.unwrap();
    drop(gone);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // payments' record expired; search's holds what infuse never writes.
    server
        .cli(&["DEL", &format!("infuse:{{{ns}/payments}}:state")])
        .unwrap();
    server
        .cli(&[
            "HSET",
            &format!("infuse:{{{ns}/search}}:state"),
            "state",
            "9",
        ])
        .unwrap();
    // users is open, its open time over: a trial is due.
    for _ in 0..2 {
        let _ = fail(&registry.breaker("users")).await;
    }
    assert_eq!(
        registry.breaker("users").state().await.unwrap(),
        State::Open
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let json = status_json(&server, ns);
    let by_name = |name: &str| {
        json.iter()
            .find(|row| row["service"] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {json:?}"))
    };
    assert_eq!(by_name("payments")["record"], "missing");
    assert_eq!(by_name("search")["record"], "corrupt");
    assert!(by_name("search")["corrupt_reason"].is_string());
    assert_eq!(by_name("users")["record"], "ok");
    assert_eq!(by_name("users")["state"], "open");
    assert_eq!(by_name("users")["trial_due"], true);

    let table = stdout(&infuse(&server, ns, &["status"]));
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}: {table}"))
            .to_owned()
    };
    assert!(line("payments").contains("no record (expired)"), "{table}");
    assert!(line("search").contains("corrupt ("), "{table}");
    assert!(line("users").contains("half-open, trial due"), "{table}");
    // Its OPEN FOR cell is "-", not "0ms" (an age elsewhere on the line may end in 0ms).
    assert!(!line("users").contains("  0ms  "), "{table}");
    // One breaker named: the others' oddities do not matter.
    let one = stdout(&infuse(&server, ns, &["status", "payments"]));
    assert!(one.contains("no record (expired)"), "{one}");
    let explained = stdout(&infuse(&server, ns, &["explain", "search"]));
    assert!(explained.starts_with("search: corrupt ("), "{explained}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_a_redis_restart_and_says_so() {
    let mut server = RedisServer::start();
    let ns = "views-watch";
    let mut watch = Command::new(BIN)
        .args(["--redis", &server.url(), "--namespace", ns, "watch"])
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_in, lines) = mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_in.send(line).is_err() {
                return;
            }
        }
    });
    assert!(wait_for(&lines, |l| l.starts_with("watching namespace")).is_some());

    server.restart();
    let back = wait_for(&lines, |l| l.contains("reconnected to Redis"));
    assert!(back.is_some(), "no reconnection line");

    // Changes made after the restart are printed.
    let registry = member(&server, ns, "users", Duration::from_secs(60)).await;
    let users = registry.breaker("users");
    assert!(succeed(&users).await.is_ok());
    for _ in 0..2 {
        let _ = fail(&users).await;
    }
    let seen = tokio::task::spawn_blocking(move || {
        wait_for(&lines, |l| l.contains("users: ") && l.contains("-> open"))
    })
    .await
    .unwrap();
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert!(seen.is_some(), "the trip after the restart was not printed");
}

/// The first line of `lines` that `wanted` accepts, within 15 s.
fn wait_for(lines: &mpsc::Receiver<String>, wanted: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if wanted(&line) => return Some(line),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// One command in Redis's protocol, for `redis-cli --pipe`.
fn resp(out: &mut String, args: &[&str]) {
    use std::fmt::Write;
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let _ = write!(out, "${}\r\n{arg}\r\n", arg.len());
    }
}

/// `breakers` records, each with a two-entry history, and `processes` announcements of
/// 1,000 breakers each (the most a process announces), written in one pipe.
fn populate(server: &RedisServer, ns: &str, breakers: usize, processes: usize) {
    use std::io::Write;
    let mut text = String::new();
    for i in 0..breakers {
        let service = format!("svc-{i:05}");
        let state = format!("infuse:{{{ns}/{service}}}:state");
        #[rustfmt::skip]
        resp(&mut text, &["HSET", &state, "inc", "1", "gen", "3", "seq", "1", "state", "0",
            "fail", "1", "succ", "0", "reo", "0", "str", "0"]);
        let history = format!("infuse:{{{ns}/{service}}}:history");
        resp(
            &mut text,
            &["LPUSH", &history, "1 closed open 2 consecutive_failures ab"],
        );
        resp(&mut text, &["LPUSH", &history, "2 open closed 3 manual ab"]);
        let changes = format!("infuse:{{{ns}}}:changes");
        resp(&mut text, &["ZADD", &changes, &i.to_string(), &service]);
    }
    for p in 0..processes {
        let id = format!("{:x}0beef", p + 1);
        let seen: serde_json::Map<String, Value> = (0..breakers.min(1_000))
            .map(|i| {
                (
                    format!("svc-{:05}", (p * 250 + i) % breakers),
                    "closed".into(),
                )
            })
            .collect();
        let announcement = serde_json::json!({
            "at_ms": 1, "id": id, "name": "api", "host": format!("web-{p}"), "pid": 1000 + p,
            "interval_ms": 30000, "breakers_total": breakers, "breakers": seen,
        });
        let key = format!("infuse:{{{ns}}}:process:{id}");
        resp(&mut text, &["SET", &key, &announcement.to_string()]);
        let index = format!("infuse:{{{ns}}}:processes");
        resp(&mut text, &["ZADD", &index, "99999999999999", &id]);
    }
    let mut pipe = Command::new("redis-cli")
        .args(["-p", &server.port().to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    pipe.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let said = pipe.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&said.stdout);
    assert!(said.contains("errors: 0"), "{said}");
}

/// The peak resident memory (KiB) of `infuse args…`, by `/usr/bin/time`.
fn peak_kib(server: &RedisServer, ns: &str, args: &[&str]) -> u64 {
    let output = Command::new("/usr/bin/time")
        .args(["-f", "peak %M"])
        .arg(BIN)
        .args(["--redis", &server.url(), "--namespace", ns])
        .args(args)
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .output()
        .expect("/usr/bin/time measures the command's memory");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak "))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak in {stderr}"))
}

#[test]
fn status_memory_grows_with_breakers_plus_processes_not_their_product() {
    let server = RedisServer::start();
    populate(&server, "small", 1_000, 20);
    populate(&server, "large", 5_000, 20);
    let listing = common::json_array(&infuse(&server, "large", &["status", "--json"]));
    assert_eq!(listing.len(), 5_000);
    assert_eq!(listing[0]["processes"].as_array().unwrap().len(), 4);
    let small = peak_kib(&server, "small", &["status", "--json"]);
    let large = peak_kib(&server, "large", &["status", "--json"]);
    println!(
        "infuse status --json, peak RSS: 1,000 breakers x 20 processes {small} KiB, 5,000 x 20 {large} KiB"
    );
    // Measured (debug build): 45 MB and 64 MB; the copy per breaker of every process's
    // map it replaces took 125 MB at 1,000 breakers and 1.8 GB at 4,000.
    assert!(
        large < 160 * 1024,
        "5,000 breakers x 20 processes: {large} KiB"
    );
    assert!(
        large < small * 3,
        "five times the breakers, {large} KiB against {small} KiB: not linear"
    );
    // One breaker named: only its record is read, whatever the namespace holds.
    let before = server.command_calls("hgetall");
    let explained = stdout(&infuse(&server, "large", &["explain", "svc-00042"]));
    assert!(explained.starts_with("svc-00042: closed"), "{explained}");
    assert_eq!(explained.matches("  seen closed by api@").count(), 4);
    let reads = server.command_calls("hgetall") - before;
    assert!(reads <= 3, "explain read {reads} hashes");
}
