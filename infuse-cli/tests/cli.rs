//! The `infuse` command against a real `redis-server` (started by the harness) and a
//! running registry of the same fleet.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use infuse::{BreakerError, Registry, State};
use infuse_tests::support::calls::{eventually, fail, succeed};
use infuse_tests::support::redis_server::RedisServer;
use infuse_tests::support::redis_service_config;
use serde_json::Value;

mod common;

use common::{stdout, BIN};

/// Runs `infuse --redis <server> --namespace <ns> args…` to completion.
fn infuse(server: &RedisServer, namespace: &str, args: &[&str]) -> Output {
    let url = server.url();
    common::infuse(
        ["--redis", &url, "--namespace", namespace]
            .iter()
            .chain(args),
    )
}

/// `status --json`, parsed.
fn status_json(server: &RedisServer, namespace: &str, services: &[&str]) -> Vec<Value> {
    let mut args = vec!["status", "--json"];
    args.extend_from_slice(services);
    common::json_array(&infuse(server, namespace, &args))
}

/// A registry of the fleet with `service` (fail_max 2, reset `reset`).
async fn member(server: &RedisServer, namespace: &str, service: &str, reset: Duration) -> Registry {
    Registry::new(redis_service_config(server, namespace, service, 2, reset))
        .await
        .expect("registry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_breaker_the_fleet_tripped() {
    let server = RedisServer::start();
    let registry = member(&server, "cli-status", "users", Duration::from_secs(60)).await;
    let users = registry.breaker("users");
    let payments = registry.breaker("payments");
    assert!(succeed(&payments).await.is_ok());
    for _ in 0..2 {
        let _ = fail(&users).await;
    }
    assert_eq!(users.state().await.unwrap(), State::Open);

    let all = status_json(&server, "cli-status", &[]);
    let names: Vec<&str> = all.iter().map(|b| b["service"].as_str().unwrap()).collect();
    assert_eq!(names, ["payments", "users"]);
    let users_json = &all[1];
    assert_eq!(users_json["state"], "open");
    assert_eq!(users_json["fail_counter"], 2);
    let left = users_json["open_remaining_ms"]
        .as_u64()
        .expect("open: time left");
    assert!(left > 50_000 && left <= 60_000, "{left}");
    assert_eq!(all[0]["state"], "closed");
    assert_eq!(all[0]["open_remaining_ms"], Value::Null);

    let table = stdout(&infuse(&server, "cli-status", &["status", "users"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SERVICE"), "{table}");
    assert!(
        lines[1].starts_with("users") && lines[1].contains("open"),
        "{table}"
    );
    assert_eq!(lines.len(), 2, "{table}");

    // Another process announces that it rejected 90 calls of users over 1.5 s: the
    // rate shows as the fleet's, in the JSON and the table.
    let announcement = r#"{"id":"p2","name":"api","host":"web-2","pid":4,"interval_ms":1000,"breakers_total":1,"breakers_omitted":0,"breakers":{"users":"open"},"rejections":{"users":[90,1500]}}"#;
    let ns = "cli-status";
    server
        .cli(&["SET", &format!("infuse:{{{ns}}}:process:p2"), announcement])
        .unwrap();
    server
        .cli(&[
            "ZADD",
            &format!("infuse:{{{ns}}}:processes"),
            "9999999999999",
            "p2",
        ])
        .unwrap();
    let users_json = &status_json(&server, ns, &["users"])[0];
    assert_eq!(users_json["rejected_per_sec"], 60.0, "{users_json}");
    let seen = users_json["processes"].as_array().unwrap();
    let p2 = seen.iter().find(|p| p["id"] == "p2").unwrap();
    assert_eq!(p2["rejected_per_sec"], 60.0);
    let table = stdout(&infuse(&server, ns, &["status", "users"]));
    assert!(
        table.lines().next().unwrap().contains("REJECTED/S"),
        "{table}"
    );
    assert!(table.lines().nth(1).unwrap().contains(" 60 "), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_for_holds_the_fleet_open_until_it_expires() {
    let server = RedisServer::start();
    let registry = member(&server, "cli-open", "users", Duration::from_secs(60)).await;
    let users = registry.breaker("users");
    assert!(succeed(&users).await.is_ok());

    let said = stdout(&infuse(
        &server,
        "cli-open",
        &["open", "users", "--for", "2s"],
    ));
    assert!(said.starts_with("users: closed -> open"), "{said}");
    // The running registry learns it (pub/sub) and rejects without calling.
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(20),
            async || { matches!(succeed(&users).await, Err(BreakerError::Open { .. })) }
        )
        .await,
        "the registry never saw the breaker open"
    );
    let json = status_json(&server, "cli-open", &["users"]);
    assert_eq!(json[0]["state"], "open");
    assert!(json[0]["open_remaining_ms"].as_u64().unwrap() <= 2_000);
    // Once the time is up, a trial call goes through and closes it.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(50),
            async || { succeed(&users).await.is_ok() }
        )
        .await
    );
    assert_eq!(
        status_json(&server, "cli-open", &["users"])[0]["state"],
        "closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_open_disable_and_close_reach_a_running_registry() {
    let server = RedisServer::start();
    let registry = member(&server, "cli-force", "payments", Duration::from_secs(60)).await;
    let payments = registry.breaker("payments");
    assert!(succeed(&payments).await.is_ok());

    let said = stdout(&infuse(&server, "cli-force", &["force-open", "payments"]));
    assert!(
        said.starts_with("payments: closed -> forced-open"),
        "{said}"
    );
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(20),
            async || {
                matches!(
                    succeed(&payments).await,
                    Err(BreakerError::ForcedOpen { .. })
                )
            }
        )
        .await,
        "the registry never saw the forced state"
    );
    let said = stdout(&infuse(&server, "cli-force", &["disable", "payments"]));
    assert!(
        said.starts_with("payments: forced-open -> disabled"),
        "{said}"
    );
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(20),
            async || { succeed(&payments).await.is_ok() }
        )
        .await
    );
    for _ in 0..5 {
        let _ = fail(&payments).await; // counted, never trips
    }
    assert_eq!(payments.state().await.unwrap(), State::Disabled);
    let said = stdout(&infuse(&server, "cli-force", &["close", "payments"]));
    assert!(said.starts_with("payments: disabled -> closed"), "{said}");
    assert_eq!(status_json(&server, "cli-force", &[])[0]["state"], "closed");
}

/// Runs `infuse … args` as user `ann` (so the history says `ann@<host>`).
fn infuse_as_ann(server: &RedisServer, namespace: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--redis", &server.url(), "--namespace", namespace])
        .args(args)
        .env_remove("REDIS_URL")
        .env("USER", "ann")
        .output()
        .expect("run the infuse binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reason_is_kept_with_who_gave_it_and_shown_by_explain() {
    let server = RedisServer::start();
    let ns = "cli-audit";
    let registry = member(&server, ns, "payments", Duration::from_secs(60)).await;
    assert!(succeed(&registry.breaker("payments")).await.is_ok());

    let said = stdout(&infuse_as_ann(
        &server,
        ns,
        &[
            "force-open",
            "payments",
            "--reason",
            "deploy 42 broke payments",
        ],
    ));
    assert!(
        said.starts_with("payments: closed -> forced-open"),
        "{said}"
    );
    let text = stdout(&infuse(&server, ns, &["explain", "payments"]));
    let line = text
        .lines()
        .find(|line| line.contains("-> forced-open"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("by ann@"), "{line}");
    assert!(line.ends_with("reason: deploy 42 broke payments"), "{line}");

    // Hostile text: bounded, one history field, shown escaped on one line.
    let hostile = format!("a b\n\u{1b}[2J%{}", "x".repeat(10_000));
    let said = stdout(&infuse_as_ann(
        &server,
        ns,
        &["close", "payments", "--reason", &hostile],
    ));
    assert!(
        said.starts_with("payments: forced-open -> closed"),
        "{said}"
    );
    let text = stdout(&infuse(&server, ns, &["explain", "payments"]));
    let line = text
        .lines()
        .find(|line| line.contains("-> closed"))
        .unwrap_or_else(|| panic!("{text}"));
    let shown = line.split("reason: ").nth(1).unwrap();
    assert!(shown.starts_with("a b\\n\\u{1b}[2J%xxx"), "{line}");
    assert!(!line.contains('\u{1b}'));
    assert_eq!(shown.matches('x').count(), 200 - "a b\n\u{1b}[2J%".len());

    let admin = infuse::admin::Admin::connect(&infuse::Config::redis(server.url()).namespace(ns))
        .await
        .unwrap();
    let history = admin.history("payments", 10).await.unwrap();
    assert_eq!(history[0].why.as_deref(), Some(&hostile[..200]));
    assert_eq!(history[1].why.as_deref(), Some("deploy 42 broke payments"));
    for entry in &history[..2] {
        assert!(
            entry.who.as_deref().unwrap().starts_with("ann@"),
            "{entry:?}"
        );
    }
    let explained: Value = serde_json::from_str(&stdout(&infuse(
        &server,
        ns,
        &["explain", "payments", "--json"],
    )))
    .unwrap();
    assert_eq!(explained["history"][1]["why"], "deploy 42 broke payments");
    assert!(explained["history"][1]["who"]
        .as_str()
        .unwrap()
        .starts_with("ann@"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_change_as_it_happens() {
    let server = RedisServer::start();
    let registry = member(&server, "cli-watch", "users", Duration::from_secs(60)).await;
    let users = registry.breaker("users");
    assert!(succeed(&users).await.is_ok());
    let mut watch = Command::new(BIN)
        .args([
            "--redis",
            &server.url(),
            "--namespace",
            "cli-watch",
            "watch",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("watching namespace \"cli-watch\""),
        "{first}"
    );
    for _ in 0..2 {
        let _ = fail(&users).await;
    }
    let seen = tokio::task::spawn_blocking(move || {
        lines
            .map_while(Result::ok)
            .find(|line| line.contains("users: closed -> open"))
    });
    let seen = tokio::time::timeout(Duration::from_secs(10), seen).await;
    watch.kill().unwrap();
    watch.wait().unwrap();
    let line = seen.expect("no change printed within 10 s").unwrap();
    let line = line.expect("the watch ended without printing the trip");
    assert!(line.contains("generation"), "{line}");
    assert!(
        !line.contains('\x1b'),
        "no colour when stdout is not a terminal: {line:?}"
    );
}

#[test]
fn mistakes_end_with_one_line_on_stderr_and_a_failure_status() {
    let server = RedisServer::start();
    // An unknown service: nothing is created.
    let output = infuse(&server, "cli-errors", &["close", "nosuch"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no breaker \"nosuch\" in namespace \"cli-errors\""),
        "{stderr}"
    );
    assert_eq!(
        server.cli(&["DBSIZE"]).as_deref().map(str::trim),
        Some("0"),
        "nothing was written"
    );
    // An unknown service in status.
    let output = infuse(&server, "cli-errors", &["status", "nosuch"]);
    assert_eq!(output.status.code(), Some(1));
    // Redis unreachable: one line naming the address.
    let output = Command::new(BIN)
        .args(["--redis", "redis://127.0.0.1:1", "status"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot reach Redis at 127.0.0.1:1"),
        "{stderr}"
    );
    // A password never shows.
    let output = Command::new(BIN)
        .args(["--redis", "redis://ops:hunter2@127.0.0.1:1", "status"])
        .output()
        .unwrap();
    assert!(!String::from_utf8(output.stderr)
        .unwrap()
        .contains("hunter2"));
    // Usage mistakes: clap's message, status 2.
    for args in [
        &["open"][..],
        &["open", "users", "--for", "soon"],
        &["frobnicate"],
    ] {
        let output = infuse(&server, "cli-errors", args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty());
    }
    // An empty namespace's status is not an error.
    let said = stdout(&infuse(&server, "cli-errors", &["status"]));
    assert!(
        said.contains("no breakers in namespace \"cli-errors\""),
        "{said}"
    );
    assert_eq!(status_json(&server, "cli-errors", &[]), Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_explain_tell_who_sees_a_breaker_and_why_it_changed() {
    let server = RedisServer::start();
    let config = |ns| {
        redis_service_config(&server, ns, "users", 2, Duration::from_secs(60))
            .resync_interval(Duration::from_millis(200))
    };
    let first = Registry::new(config("cli-explain")).await.unwrap();
    let second = Registry::new(config("cli-explain")).await.unwrap();
    let (a, b) = (first.breaker("users"), second.breaker("users"));
    assert!(succeed(&a).await.is_ok() && succeed(&b).await.is_ok());
    for _ in 0..2 {
        let _ = fail(&a).await;
    }
    // This OS process announces itself once (its registries share one identity), and
    // sees the breaker open.
    let seen = eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let json = status_json(&server, "cli-explain", &["users"]);
            let processes = json[0]["processes"].as_array().cloned().unwrap_or_default();
            processes.len() == 1 && processes[0]["state"] == "open"
        },
    )
    .await;
    assert!(
        seen,
        "{:?}",
        status_json(&server, "cli-explain", &["users"])
    );
    let json = status_json(&server, "cli-explain", &["users"]);
    let process = &json[0]["processes"][0];
    assert_eq!(process["pid"], std::process::id());
    assert!(process["name"].as_str().unwrap().starts_with("cli"));
    let last = &json[0]["last_transition"];
    assert_eq!(
        (last["from"].as_str(), last["to"].as_str()),
        (Some("closed"), Some("open"))
    );
    assert_eq!(last["reason"], "consecutive_failures");

    let said = stdout(&infuse(&server, "cli-explain", &["close", "users"]));
    assert!(said.starts_with("users: open -> closed"), "{said}");
    let text = stdout(&infuse(&server, "cli-explain", &["explain", "users"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("users: closed (generation"), "{text}");
    let history: Vec<&&str> = lines.iter().filter(|l| l.contains(" ago  ")).collect();
    assert_eq!(history.len(), 2, "{text}");
    assert!(history[0].contains("open -> closed  manual"), "{text}");
    assert!(
        history[1].contains("closed -> open  consecutive_failures"),
        "{text}"
    );
    let explained: Value = serde_json::from_str(&stdout(&infuse(
        &server,
        "cli-explain",
        &["explain", "users", "--json"],
    )))
    .unwrap();
    assert_eq!(explained["history"].as_array().unwrap().len(), 2);
    assert_eq!(explained["history"][1]["reason"], "consecutive_failures");
    assert!(explained["history"][1]["by"]
        .as_str()
        .unwrap()
        .contains("(pid "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_process_holding_the_trial() {
    let server = RedisServer::start();
    let config = redis_service_config(&server, "cli-trial", "users", 2, Duration::from_millis(300))
        .resync_interval(Duration::from_millis(200));
    let registry = Registry::new(config).await.unwrap();
    let users = registry.breaker("users");
    for _ in 0..2 {
        let _ = fail(&users).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let trial = users.acquire_owned().await.expect("the trial");
    assert!(trial.is_trial());
    let held = eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let json = status_json(&server, "cli-trial", &["users"]);
            let process = json[0]["processes"][0]["id"].clone();
            json[0]["trial_in_flight"] == true
                && process.is_string()
                && json[0]["trial_holder"] == process
        },
    )
    .await;
    assert!(held, "{:?}", status_json(&server, "cli-trial", &["users"]));
    let table = stdout(&infuse(&server, "cli-trial", &["status"]));
    assert!(table.contains("in flight by cli"), "{table}");
    assert!(
        table.contains(&format!("(pid {})", std::process::id())),
        "{table}"
    );
    trial.success().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_switches_a_running_registry_and_explain_tells_what_would_have_happened() {
    let server = RedisServer::start();
    let ns = "cli-shadow";
    let registry = member(&server, ns, "payments", Duration::from_secs(60)).await;
    let payments = registry.breaker("payments");
    assert!(succeed(&payments).await.is_ok());

    let said = stdout(&infuse_as_ann(
        &server,
        ns,
        &["shadow", "payments", "on", "--reason", "rollout"],
    ));
    assert!(
        said.starts_with("payments: shadow mode as configured -> on"),
        "{said}"
    );
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(20),
            async || payments.shadow()
        )
        .await,
        "the registry never saw the switch"
    );
    for _ in 0..2 {
        let _ = fail(&payments).await; // trips (fail_max 2)
    }
    assert_eq!(payments.state().await.unwrap(), State::Open);
    assert!(succeed(&payments).await.is_ok(), "open, yet it runs");
    assert_eq!(payments.would_reject(), 1);
    // The process announces it with its next resync read: the fleet's count.
    assert!(
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(100),
            async || status_json(&server, ns, &["payments"])[0]["would_reject"] == 1
        )
        .await,
        "the would-be rejection never reached the announcement"
    );

    let text = stdout(&infuse(&server, ns, &["explain", "payments"]));
    assert!(
        text.contains("shadow mode: would have rejected 1 call "),
        "{text}"
    );
    let switch = text
        .lines()
        .find(|line| line.contains("shadow mode on"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(switch.contains("by ann@"), "{switch}");
    assert!(switch.ends_with("reason: rollout"), "{switch}");
    let trip = text
        .lines()
        .find(|line| line.contains("would have opened at "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(trip.contains("closed -> open"), "{trip}");
    assert_eq!(status_json(&server, ns, &[])[0]["shadow"], true);
    let text = stdout(&infuse(&server, ns, &["status"]));
    assert!(
        text.contains("open (shadow mode: rejects nothing)"),
        "{text}"
    );

    let said = stdout(&infuse(&server, ns, &["shadow", "payments", "off"]));
    assert!(
        said.starts_with("payments: shadow mode on -> off"),
        "{said}"
    );
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(20),
            async || matches!(succeed(&payments).await, Err(BreakerError::Open { .. }))
        )
        .await,
        "the registry never left shadow mode"
    );
    let wrong = infuse(&server, ns, &["shadow", "payments", "maybe"]);
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(said.contains("expected `on` or `off`"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_explain_show_the_fleets_permits_and_retry_tokens_spent() {
    let server = RedisServer::start();
    let ns = "cli-budgets";
    let budgets = infuse::ServiceOverride::new()
        .fail_max(u32::MAX)
        .max_concurrent(8)
        // A call short of a permit waits while the process's lease grows.
        .max_wait(Duration::from_secs(5))
        .retries(1)
        .retry_min_per_sec(100)
        .retry_backoff(Duration::from_millis(5))
        .max_retry_backoff(Duration::from_millis(20));
    let config = infuse_tests::support::redis_config(&server, ns)
        .resync_interval(Duration::from_millis(200))
        .service("search", budgets);
    let registry = Registry::new(config).await.expect("registry");
    let search = registry.breaker("search");
    assert!(succeed(&registry.breaker("plain")).await.is_ok());
    // Three calls in flight, and two that failed and were retried within the budget.
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut running = Vec::new();
    for _ in 0..3 {
        let (search, release) = (search.clone(), release.clone());
        running.push(tokio::spawn(async move {
            search
                .call(async move {
                    release.notified().await;
                    Ok::<_, std::io::Error>(())
                })
                .await
        }));
    }
    for _ in 0..2 {
        let failed = search
            .call_retrying(|| async { Err::<(), _>(std::io::Error::other("503")) })
            .await;
        assert!(failed.is_err());
    }
    let three = eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        async || search.concurrency().unwrap().in_use == 3,
    )
    .await;
    assert!(three, "the three calls hold a permit each");
    let spent = search.retries().unwrap().spent;
    assert!(spent > 0, "the budget granted retries");
    // Another process of the fleet announces 2 permits in use of the 5 it holds, and 7
    // retries taken.
    let announcement = r#"{"id":"p2","name":"api","host":"web-2","pid":4,"interval_ms":1000,"breakers_total":1,"breakers_omitted":0,"breakers":{"search":"closed"},"permits":{"search":[2,5,8]},"retries":{"search":7}}"#;
    server
        .cli(&["SET", &format!("infuse:{{{ns}}}:process:p2"), announcement])
        .unwrap();
    server
        .cli(&[
            "ZADD",
            &format!("infuse:{{{ns}}}:processes"),
            "9999999999999",
            "p2",
        ])
        .unwrap();
    let announced = eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let row = &status_json(&server, ns, &["search"])[0];
            row["permits"]["in_use"] == 5 && row["retries_spent"] == spent + 7
        },
    )
    .await;
    assert!(announced, "this process announces its permits and retries");
    let row = &status_json(&server, ns, &["search"])[0];
    assert_eq!(row["permits"]["cap"], 8, "{row}");
    let p2 = row["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "p2")
        .unwrap();
    assert_eq!(p2["permits"]["held"], 5, "{p2}");
    assert_eq!(p2["retries_spent"], 7, "{p2}");

    let table = stdout(&infuse(&server, ns, &["status"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("REJECTED/S  PERMITS (use/held/cap)  RETRIES  OPEN FOR"),
        "{table}"
    );
    let plain: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        plain[..7],
        ["plain", "closed", "0", "-", "-", "-", "-"],
        "{table}"
    );
    let cells: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(cells[..2], ["search", "closed"], "{table}");
    assert_eq!(cells[3..5], ["-", "-"], "{table}");
    let permits: Vec<&str> = cells[5].split('/').collect();
    assert_eq!((permits[0], permits[2]), ("5", "8"), "{table}");
    assert_eq!(cells[6], (spent + 7).to_string(), "{table}");
    let narrow = stdout(&infuse(&server, ns, &["status", "plain"]));
    assert!(
        !narrow.contains("PERMITS") && !narrow.contains("RETRIES"),
        "no budget, no column: {narrow}"
    );

    let text = stdout(&infuse(&server, ns, &["explain", "search"]));
    assert!(
        text.contains("concurrency cap 8: 5 permits in use, "),
        "{text}"
    );
    assert!(
        text.contains(&format!("retry budget: {} retries taken", spent + 7)),
        "{text}"
    );
    release.notify_waiters();
    for call in running {
        call.await.unwrap().unwrap();
    }
    registry.shutdown().await.unwrap();
}
