//! `infuse::admin` against real Redis servers: a listing that shows expired and corrupt
//! records as rows among good ones, a bounded history, processes with their ages, a
//! clean shutdown withdrawing its announcement, tools that are never processes, a change
//! stream that outlives a Redis restart, and all of it under the guide's minimal ACL.

use infuse_tests::support;

use std::time::Duration;

use infuse::admin::{Admin, Audit, Change, Control, Record, WHY_MAX};
use infuse::{Config, Registry, State};
use support::calls::eventually;
use support::redis_server::RedisServer;

fn config(server: &RedisServer, namespace: &str) -> Config {
    support::redis_config(server, namespace)
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn cmd<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> T {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(conn).await.unwrap()
}

/// A process announcement as `fleet/presence.rs` writes it, expiring in `ttl_ms`.
async fn announce(
    conn: &mut redis::aio::MultiplexedConnection,
    namespace: &str,
    id: &str,
    interval_ms: u64,
    ttl_ms: u64,
    breakers: &[(&str, &str)],
) {
    let listed: Vec<String> = breakers
        .iter()
        .map(|(service, state)| format!("\"{service}\":\"{state}\""))
        .collect();
    let json = format!(
        "{{\"at_ms\":1,\"id\":\"{id}\",\"name\":\"worker-{id}\",\"host\":\"box\",\"pid\":7,\"interval_ms\":{interval_ms},\"breakers_total\":{},\"breakers_omitted\":0,\"breakers\":{{{}}}}}",
        breakers.len(),
        listed.join(",")
    );
    let (secs, micros): (u64, u64) = cmd(conn, &["TIME"]).await;
    let now = secs * 1000 + micros / 1000;
    let key = format!("infuse:{{{namespace}}}:process:{id}");
    let index = format!("infuse:{{{namespace}}}:processes");
    let _: () = cmd(conn, &["SET", &key, &json, "PX", &ttl_ms.to_string()]).await;
    let _: () = cmd(conn, &["ZADD", &index, &(now + ttl_ms).to_string(), id]).await;
}

fn within(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_shows_expired_and_corrupt_records_among_good_ones() {
    let server = RedisServer::start();
    let ns = "admin-list";
    let admin = Admin::connect(&config(&server, ns)).await.unwrap();
    for service in [
        "good",
        "opened",
        "expired",
        "garbage",
        "wrongtype",
        "odd-window",
    ] {
        assert_eq!(admin.close(service).await.unwrap(), State::Closed);
    }
    admin.open_for("opened", within(60)).await.unwrap();
    let mut conn = raw(&server).await;
    let key = |service: &str, suffix: &str| format!("infuse:{{{ns}/{service}}}:{suffix}");
    // The record expired (the change log still lists it).
    let _: () = cmd(&mut conn, &["DEL", &key("expired", "state")]).await;
    let _: () = cmd(
        &mut conn,
        &["HSET", &key("garbage", "state"), "fail", "lots"],
    )
    .await;
    let _: () = cmd(&mut conn, &["DEL", &key("wrongtype", "state")]).await;
    let _: () = cmd(&mut conn, &["SET", &key("wrongtype", "state"), "x"]).await;
    let _: () = cmd(&mut conn, &["SET", &key("odd-window", "window"), "x"]).await;
    // A record the change log never heard of: found by SCAN.
    let _: () = cmd(
        &mut conn,
        &[
            "HSET",
            &key("unlisted", "state"),
            "inc",
            "5",
            "gen",
            "3",
            "seq",
            "4",
            "state",
            "0",
            "fail",
            "2",
            "succ",
            "0",
        ],
    )
    .await;

    // An announcement that is not JSON.
    let bad = format!("infuse:{{{ns}}}:process:bad");
    let _: () = cmd(&mut conn, &["SET", &bad, "\u{1b}[2J{", "PX", "60000"]).await;
    let index = format!("infuse:{{{ns}}}:processes");
    let _: () = cmd(&mut conn, &["ZADD", &index, "99999999999999", "bad"]).await;

    let listing = admin.breakers().await.unwrap();
    assert_eq!(listing.processes.len(), 1);
    assert_eq!(listing.processes[0].id, "bad");
    assert!(
        listing.processes[0].corrupt.is_some(),
        "{:?}",
        listing.processes[0]
    );
    let services: Vec<&str> = listing
        .breakers
        .iter()
        .map(|r| r.service.as_str())
        .collect();
    assert_eq!(
        services,
        [
            "expired",
            "garbage",
            "good",
            "odd-window",
            "opened",
            "unlisted",
            "wrongtype"
        ]
    );
    let row = |service: &str| {
        listing
            .breakers
            .iter()
            .find(|r| r.service == service)
            .unwrap()
    };
    assert_eq!(row("expired").record, Record::Missing);
    match &row("garbage").record {
        Record::Corrupt(reason) => assert!(reason.contains("field fail is \"lots\""), "{reason}"),
        other => panic!("{other:?}"),
    }
    match &row("wrongtype").record {
        Record::Corrupt(reason) => assert!(reason.contains("WRONGTYPE"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let Record::Ok(good) = &row("good").record else {
        panic!("{:?}", row("good").record)
    };
    assert_eq!(good.state, State::Closed);
    assert!(good.anomalies.is_empty());
    let Record::Ok(opened) = &row("opened").record else {
        panic!("{:?}", row("opened").record)
    };
    assert_eq!(opened.state, State::Open);
    let left = opened.open_remaining.unwrap();
    assert!(left > within(50) && left <= within(60), "{left:?}");
    assert!(!opened.trial_due());
    let last = row("opened").last_transition.clone().unwrap();
    assert_eq!((last.from.as_str(), last.to.as_str()), ("closed", "open"));
    let Record::Ok(odd) = &row("odd-window").record else {
        panic!("{:?}", row("odd-window").record)
    };
    assert_eq!(odd.window, None);
    assert_eq!(odd.anomalies.len(), 1, "{:?}", odd.anomalies);
    let Record::Ok(unlisted) = &row("unlisted").record else {
        panic!("{:?}", row("unlisted").record)
    };
    assert_eq!((unlisted.generation, unlisted.fail_counter), (3, 2));

    // One breaker alone, and one the namespace never had.
    assert_eq!(
        admin.breaker("expired").await.unwrap().record,
        Record::Missing
    );
    assert_eq!(
        admin.breaker("nothing").await.unwrap().record,
        Record::Missing
    );
    // The open key expired: a trial is due.
    let _: () = cmd(&mut conn, &["DEL", &key("opened", "open")]).await;
    let Record::Ok(due) = admin.breaker("opened").await.unwrap().record else {
        panic!()
    };
    assert!(due.trial_due());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_read_is_bounded_and_newest_first() {
    let server = RedisServer::start();
    let admin = Admin::connect(&config(&server, "admin-history"))
        .await
        .unwrap();
    for _ in 0..30 {
        admin.open_for("flappy", within(60)).await.unwrap();
        admin.close("flappy").await.unwrap();
    }
    let five = admin.history("flappy", 5).await.unwrap();
    assert_eq!(five.len(), 5);
    assert_eq!(five[0].to, "closed", "the newest first");
    assert!(
        five.windows(2).all(|w| w[0].generation > w[1].generation),
        "{five:?}"
    );
    assert!(five.windows(2).all(|w| w[0].at_ms >= w[1].at_ms));
    let all = admin.history("flappy", 1_000).await.unwrap();
    assert_eq!(all.len(), infuse::store::redis::keys::HISTORY_LEN);
    assert_eq!(all[..5], five[..]);
    assert!(admin.history("flappy", 0).await.unwrap().is_empty());
    assert!(admin.history("never", 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_with_an_audit_records_who_and_why() {
    let server = RedisServer::start();
    let ns = "admin-audit";
    let admin = Admin::connect(&config(&server, ns)).await.unwrap();
    let hostile = format!("a b\n\r\u{1b}[2J%-{}", "é".repeat(5_000));
    let audit = Audit {
        who: "ann@ops 1".to_owned(),
        why: hostile.clone(),
    };
    let state = admin.control("audited", Control::ForceOpen, &audit).await;
    assert_eq!(state.unwrap(), State::ForcedOpen);
    admin.close("audited").await.unwrap();
    let history = admin.history("audited", 10).await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(
        (history[0].who.as_deref(), history[0].why.as_deref()),
        (None, None)
    );
    let forced = &history[1];
    assert_eq!(
        (forced.to.as_str(), forced.reason.as_str()),
        ("forced-open", "manual")
    );
    assert_eq!(forced.who.as_deref(), Some("ann@ops 1"));
    let why = forced.why.as_deref().unwrap();
    assert!(
        why.len() <= WHY_MAX && why.len() > WHY_MAX - 4,
        "{}",
        why.len()
    );
    assert!(
        hostile.starts_with(why),
        "a prefix of what was given, cut at a char boundary"
    );

    // Stored as one line of space-separated fields, nothing raw a terminal acts on.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = infuse::store::redis::keys::breaker_key(
        ns,
        "audited",
        infuse::store::redis::keys::BreakerKey::History,
    );
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(raw[1].split(' ').count(), 8, "{}", raw[1]);
    assert_eq!(
        raw[0].split(' ').count(),
        6,
        "a plain control keeps the old form"
    );
    assert!(!raw[1].chars().any(char::is_control), "{:?}", raw[1]);
    assert!(raw[1].len() < 700);

    // The script checks its arguments before writing: a field that would break the
    // entry is refused, and nothing changes.
    let force = redis::Script::new(concat!(
        include_str!("../../infuse/scripts/prelude.lua"),
        include_str!("../../infuse/scripts/force.lua")
    ));
    for (who, why) in [("a b", "x"), ("ann", ""), ("", "x"), ("ann", "a\nb")] {
        let mut invocation = force.prepare_invoke();
        for key in infuse::store::redis::keys::breaker_keys(ns, "audited") {
            invocation.key(key);
        }
        for arg in ["3", "0", "60000", "ch", "audited", "7", "p1", who, why] {
            invocation.arg(arg);
        }
        let refused = invocation.invoke_async::<redis::Value>(&mut conn).await;
        let error = refused.expect_err("refused").to_string();
        assert!(error.contains("INFUSE_ARG"), "{error}");
    }
    assert_eq!(admin.history("audited", 10).await.unwrap().len(), 2);
    let Record::Ok(record) = admin.breaker("audited").await.unwrap().record else {
        panic!()
    };
    assert_eq!(record.state, State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_control_with_a_reason_is_in_the_history_with_the_process() {
    let server = RedisServer::start();
    let ns = "admin-breaker-audit";
    let registry = Registry::new(config(&server, ns)).await.unwrap();
    let breaker = registry.breaker("billing");
    breaker
        .control(Control::ForceOpen, &Audit::because("billing migration"))
        .await
        .unwrap();
    assert_eq!(breaker.state().await.unwrap(), State::ForcedOpen);
    breaker.close().await.unwrap();
    let admin = Admin::connect(&config(&server, ns)).await.unwrap();
    // Why alone from a tool: the operator is named.
    admin
        .control("billing", Control::Disable, &Audit::because("load test"))
        .await
        .unwrap();
    let history = admin.history("billing", 10).await.unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    let [disabled, closed, forced] = &history[..] else {
        unreachable!()
    };
    assert_eq!(forced.to, "forced-open");
    assert_eq!(forced.why.as_deref(), Some("billing migration"));
    let who = forced.who.as_deref().unwrap();
    let pid = format!("(pid {})", std::process::id());
    assert!(who.ends_with(&pid), "the process is who: {who}");
    assert_eq!((closed.who.as_deref(), closed.why.as_deref()), (None, None));
    assert_eq!(disabled.why.as_deref(), Some("load test"));
    assert_eq!(
        disabled.who.as_deref(),
        Some(infuse::admin::operator().as_str())
    );

    // A bad duration is refused before anything is written, as by `open_for`.
    let refused = breaker
        .control(Control::OpenFor(Duration::ZERO), &Audit::because("x"))
        .await;
    assert!(
        matches!(refused, Err(infuse::StorageError::InvalidInput(_))),
        "{refused:?}"
    );
    assert_eq!(admin.history("billing", 10).await.unwrap().len(), 3);
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rejections_of_each_process_are_announced_and_summed_per_breaker() {
    let server = RedisServer::start();
    let ns = "admin-rejections";
    let registry = Registry::new(config(&server, ns).resync_interval(Duration::from_millis(200)))
        .await
        .unwrap();
    let users = registry.breaker("users");
    let quiet = registry.breaker("quiet");
    quiet.close().await.unwrap();
    users.force_open().await.unwrap();
    let admin = Admin::connect(&config(&server, ns)).await.unwrap();
    // Another process, announced by hand: 300 rejections over its last 1.5 s.
    let mut conn = raw(&server).await;
    let other = r#"{"at_ms":1,"id":"other1","name":"api","host":"box","pid":9,"interval_ms":1000,"breakers_total":1,"breakers_omitted":0,"breakers":{"users":"forced-open"},"rejections":{"users":[300,1500]}}"#;
    let (secs, _): (u64, u64) = cmd(&mut conn, &["TIME"]).await;
    let key = infuse::store::redis::keys::process_key(ns, "other1");
    let index = infuse::store::redis::keys::processes_key(ns);
    let until = ((secs + 60) * 1000).to_string();
    let _: () = cmd(&mut conn, &["SET", &key, other, "PX", "60000"]).await;
    let _: () = cmd(&mut conn, &["ZADD", &index, &until, "other1"]).await;

    // This process rejects calls while the listing is read: its own rate shows up
    // beside the other's, and their sum is the row's.
    let rejecting = tokio::spawn(async move {
        loop {
            let call = users.call(async { Ok::<_, std::io::Error>(()) }).await;
            assert!(call.is_err(), "forced open: rejected");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let listed = eventually(within(10), Duration::from_millis(100), async || {
        let listing = admin.breakers().await.unwrap();
        let row = listing
            .breakers
            .iter()
            .find(|r| r.service == "users")
            .unwrap();
        row.seen_by.len() == 2 && row.seen_by.iter().all(|seen| seen.rejections.is_some())
    })
    .await;
    assert!(listed, "both processes announce their rejections");
    let listing = admin.breakers().await.unwrap();
    let row = listing
        .breakers
        .iter()
        .find(|r| r.service == "users")
        .unwrap();
    let of = |id: &str| {
        let seen = row
            .seen_by
            .iter()
            .find(|seen| (listing.processes[seen.process].id == id) == (id == "other1"))
            .unwrap();
        seen.rejections.unwrap()
    };
    assert_eq!(of("other1").per_second(), 200.0);
    let mine = of("me");
    assert!(mine.count > 0 && !mine.over.is_zero(), "{mine:?}");
    let sum = row.rejections_per_second();
    assert!(
        (sum - 200.0 - mine.per_second()).abs() < 1e-9,
        "{sum} is the sum of both"
    );
    let quiet_row = listing
        .breakers
        .iter()
        .find(|r| r.service == "quiet")
        .unwrap();
    assert_eq!(
        quiet_row.rejections_per_second(),
        0.0,
        "it rejected nothing"
    );

    // Once the calls stop, the process says so in its next announcements.
    rejecting.abort();
    let stopped = eventually(within(10), Duration::from_millis(100), async || {
        let listing = admin.breakers().await.unwrap();
        let row = listing
            .breakers
            .iter()
            .find(|r| r.service == "users")
            .unwrap();
        row.seen_by
            .iter()
            .filter(|seen| listing.processes[seen.process].id != "other1")
            .all(|seen| seen.rejections.is_none())
    })
    .await;
    assert!(
        stopped,
        "a process that stopped rejecting announces no rate"
    );
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calls_shadow_mode_let_run_are_announced_and_summed() {
    let server = RedisServer::start();
    let ns = "admin-would-reject";
    let shadowed = infuse::ServiceOverride::new().shadow(true);
    let member = config(&server, ns)
        .resync_interval(Duration::from_millis(200))
        .service("users", shadowed);
    let registry = Registry::new(member).await.unwrap();
    let users = registry.breaker("users");
    users.force_open().await.unwrap();
    for _ in 0..25 {
        let ran = users.call(async { Ok::<_, std::io::Error>(()) }).await;
        assert!(ran.is_ok(), "shadow mode rejects nothing");
    }
    assert_eq!(users.would_reject(), 25);
    let admin = Admin::connect(&config(&server, ns)).await.unwrap();
    let announced = eventually(within(10), Duration::from_millis(100), async || {
        let listing = admin.breakers_named(&["users"]).await.unwrap();
        listing.breakers[0].would_reject() == 25
    })
    .await;
    assert!(announced, "the process announces its would-be rejections");
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_process_announces_its_permits_of_the_concurrency_cap() {
    let server = RedisServer::start();
    let ns = "admin-permits";
    let capped = infuse::ServiceOverride::new().max_concurrent(8);
    let member = config(&server, ns)
        .resync_interval(Duration::from_millis(200))
        .service("search", capped);
    let registry = Registry::new(member).await.unwrap();
    let search = registry.breaker("search");
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(search.concurrency().unwrap().in_use, 3);
    let admin = Admin::connect(&config(&server, ns)).await.unwrap();
    let announced = eventually(within(10), Duration::from_millis(100), async || {
        let listing = admin.breakers_named(&["search"]).await.unwrap();
        listing.breakers[0]
            .permits()
            .is_some_and(|p| (p.in_use, p.cap) == (3, 8) && p.held >= 3)
    })
    .await;
    assert!(announced, "the process announces its permits");
    release.notify_waiters();
    for call in running {
        call.await.unwrap().unwrap();
    }
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_show_their_age_and_a_clean_shutdown_withdraws_the_announcement() {
    let server = RedisServer::start();
    let ns = "admin-processes";
    let registry = Registry::new(config(&server, ns).resync_interval(Duration::from_millis(200)))
        .await
        .unwrap();
    registry.breaker("users").force_open().await.unwrap();
    let admin = Admin::connect(&config(&server, ns)).await.unwrap();
    // A process that died 7 s ago: its announcement (1 s interval, so 10 s of life)
    // has 3 s left.
    let mut conn = raw(&server).await;
    announce(&mut conn, ns, "dead1", 1_000, 3_000, &[("users", "closed")]).await;

    assert!(
        eventually(within(5), Duration::from_millis(50), async || {
            admin
                .processes()
                .await
                .unwrap()
                .iter()
                .any(|p| p.sees("users") == Some(State::ForcedOpen))
        })
        .await,
        "the live process announces itself"
    );
    let processes = admin.processes().await.unwrap();
    assert_eq!(processes.len(), 2, "{processes:?}");
    let dead = processes.iter().find(|p| p.id == "dead1").unwrap();
    let seen = dead.last_seen.unwrap();
    assert!(
        seen >= Duration::from_millis(6_500) && seen <= Duration::from_millis(9_500),
        "{seen:?}"
    );
    assert!(dead.is_stale());
    assert_eq!(dead.label(), "worker-dead1@box (pid 7)");
    let live = processes.iter().find(|p| p.id != "dead1").unwrap();
    assert!(!live.is_stale(), "{live:?}");
    assert_eq!(live.pid, u64::from(std::process::id()));
    assert!(live.last_seen.unwrap() < within(2), "{live:?}");

    // The listing says who sees what, and each sees its own state.
    let listing = admin.breakers().await.unwrap();
    let users = listing
        .breakers
        .iter()
        .find(|r| r.service == "users")
        .unwrap();
    let mut seen_by: Vec<(&str, &str)> = users
        .seen_by
        .iter()
        .map(|s| (listing.processes[s.process].id.as_str(), s.state.as_str()))
        .collect();
    seen_by.sort();
    let mut expected = [(live.id.as_str(), "forced-open"), ("dead1", "closed")];
    expected.sort();
    assert_eq!(seen_by, expected);

    registry.shutdown().await.unwrap();
    let after = admin.processes().await.unwrap();
    assert_eq!(
        after.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["dead1"]
    );
    // It never comes back, though the registry still resyncs and its breakers work.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        registry.breaker("users").state().await.unwrap(),
        State::ForcedOpen
    );
    let later = admin.processes().await.unwrap();
    assert!(later.iter().all(|p| p.id != live.id), "{later:?}");
    // The dead one goes when its announcement expires.
    assert!(
        eventually(within(5), Duration::from_millis(100), async || admin
            .processes()
            .await
            .unwrap()
            .is_empty())
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_connection_is_never_listed_as_a_process() {
    let server = RedisServer::start();
    let ns = "admin-tool";
    let admin = Admin::connect(&config(&server, ns).resync_interval(Duration::from_millis(100)))
        .await
        .unwrap();
    admin.force_open("payments").await.unwrap();
    admin.disable("payments").await.unwrap();
    admin.open("payments").await.unwrap();
    admin.half_open("payments").await.unwrap();
    admin.close("payments").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(admin.processes().await.unwrap().is_empty());
    let listing = admin.breakers().await.unwrap();
    assert_eq!(listing.breakers.len(), 1);
    assert!(listing.breakers[0].seen_by.is_empty());
    let mut conn = raw(&server).await;
    let announced: Vec<String> =
        cmd(&mut conn, &["KEYS", &format!("infuse:{{{ns}}}:process*")]).await;
    assert!(announced.is_empty(), "{announced:?}");
    // A control refuses what no registry would accept.
    assert!(admin.close("a{b}").await.is_err());
    assert!(admin.open_for("payments", Duration::ZERO).await.is_err());
}

/// Waits for the next change, at most 10 s.
async fn next(stream: &mut infuse::admin::ChangeStream) -> Change {
    tokio::time::timeout(within(10), stream.next())
        .await
        .expect("a change within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_stream_reconnects_across_a_redis_restart_and_says_so() {
    let mut server = RedisServer::start();
    let admin = Admin::connect(&config(&server, "admin-stream"))
        .await
        .unwrap();
    let mut changes = admin.changes().await.unwrap();
    admin.force_open("search").await.unwrap();
    match next(&mut changes).await {
        Change::Breaker { service, snapshot } => {
            assert_eq!(
                (service.as_str(), snapshot.state),
                ("search", State::ForcedOpen)
            );
        }
        other => panic!("{other:?}"),
    }
    server.restart();
    assert!(matches!(
        next(&mut changes).await,
        Change::Disconnected { .. }
    ));
    assert!(matches!(
        next(&mut changes).await,
        Change::Reconnected { .. }
    ));
    // Events flow again (the command connection reconnects by itself too).
    assert!(
        eventually(within(5), Duration::from_millis(50), async || admin
            .close("search")
            .await
            .is_ok())
        .await
    );
    match next(&mut changes).await {
        Change::Breaker { service, snapshot } => {
            assert_eq!(
                (service.as_str(), snapshot.state),
                ("search", State::Closed)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_works_under_the_documented_minimal_acl() {
    let server = RedisServer::start();
    let guide = include_str!("../../infuse/src/guide/fleet.md");
    let acl = guide
        .lines()
        .find(|l| l.trim_start().starts_with("ACL SETUSER infuse "))
        .expect("the guide documents the ACL");
    let args: Vec<String> = acl
        .split_whitespace()
        .map(|arg| {
            if arg == ">CHANGE-ME" {
                ">s3cret".to_owned()
            } else {
                arg.to_owned()
            }
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    server.cli(&args).expect("ACL SETUSER");
    let url = format!("redis://infuse:s3cret@127.0.0.1:{}/0", server.port());
    let make = || {
        Config::redis(&url)
            .namespace("acl")
            .env_overrides(false)
            .resync_interval(Duration::from_millis(100))
    };
    let registry = Registry::new(make()).await.unwrap();
    registry.breaker("users").open().await.unwrap();
    let admin = Admin::connect(&make()).await.unwrap();
    let mut changes = admin.changes().await.unwrap();
    admin.close("orders").await.unwrap();
    assert!(matches!(next(&mut changes).await, Change::Breaker { .. }));
    assert!(
        eventually(within(5), Duration::from_millis(50), async || admin
            .breakers()
            .await
            .unwrap()
            .breakers
            .iter()
            .any(|row| !row.seen_by.is_empty()))
        .await
    );
    let listing = admin.breakers().await.unwrap();
    assert_eq!(listing.breakers.len(), 2);
    assert!(listing
        .breakers
        .iter()
        .all(|row| matches!(row.record, Record::Ok(_))));
    assert_eq!(admin.history("users", 10).await.unwrap().len(), 1);
    assert_eq!(admin.processes().await.unwrap().len(), 1);
    registry.shutdown().await.unwrap();
    assert!(admin.processes().await.unwrap().is_empty());
    let denied = server.cli(&["ACL", "LOG"]).unwrap();
    assert!(
        !denied.contains("infuse"),
        "commands were denied:\n{denied}"
    );
}

/// On a Redis Cluster (no `SCAN`: breakers are found through the change log and the
/// announcements; each breaker's pipeline stays in its own hash slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_works_on_a_redis_cluster() {
    let cluster = support::topology::RedisCluster::start();
    let make = || {
        support::topology_config(Config::redis_cluster(cluster.urls()), "admin-cluster")
            .redis_admin_timeout(within(2))
            .resync_interval(Duration::from_millis(100))
    };
    let registry = Registry::new(make()).await.unwrap();
    registry.breaker("users").force_open().await.unwrap();
    let admin = Admin::connect(&make()).await.unwrap();
    let mut changes = admin.changes().await.unwrap();
    let services: Vec<String> = (0..20).map(|i| format!("svc-{i:02}")).collect();
    for service in &services {
        admin.open_for(service, within(60)).await.unwrap();
    }
    assert!(matches!(next(&mut changes).await, Change::Breaker { .. }));
    assert!(
        eventually(within(5), Duration::from_millis(50), async || admin
            .processes()
            .await
            .unwrap()
            .len()
            == 1)
        .await
    );
    let listing = admin.breakers().await.unwrap();
    assert_eq!(listing.breakers.len(), 21);
    for row in &listing.breakers {
        let Record::Ok(record) = &row.record else {
            panic!("{row:?}")
        };
        let expected = if row.service == "users" {
            State::ForcedOpen
        } else {
            State::Open
        };
        assert_eq!(record.state, expected, "{}", row.service);
        assert!(row.last_transition.is_some(), "{}", row.service);
    }
    let users = listing
        .breakers
        .iter()
        .find(|r| r.service == "users")
        .unwrap();
    assert_eq!(users.seen_by.len(), 1);
    assert_eq!(admin.history("svc-07", 10).await.unwrap().len(), 1);
    registry.shutdown().await.unwrap();
    assert!(admin.processes().await.unwrap().is_empty());
}

/// A silent subscription is checked with a `PING` (every admin timeout, here 1 s): a
/// healthy one stays up however long nothing happens; a frozen server (SIGSTOP: the
/// connection stays open, nothing answers) is reported lost, and found again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_change_stream_is_checked_and_a_frozen_server_reported() {
    let server = RedisServer::start();
    let admin = Admin::connect(&config(&server, "admin-silent").redis_admin_timeout(within(1)))
        .await
        .unwrap();
    let mut changes = admin.changes().await.unwrap();
    assert!(
        tokio::time::timeout(within(4), changes.next())
            .await
            .is_err(),
        "no change while idle: the PINGs are answered"
    );
    server.pause();
    let lost = next(&mut changes).await;
    server.resume();
    assert!(matches!(lost, Change::Disconnected { .. }), "{lost:?}");
    assert!(matches!(
        next(&mut changes).await,
        Change::Reconnected { .. }
    ));
    admin.force_open("x").await.unwrap();
    assert!(matches!(next(&mut changes).await, Change::Breaker { .. }));
}

/// `infuse::shutdown` withdraws the process-wide registry's announcement (the one test
/// of this binary that uses `init`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_registry_shuts_down_cleanly() {
    let server = RedisServer::start();
    let ns = "admin-global";
    infuse::init(config(&server, ns).resync_interval(Duration::from_millis(100)))
        .await
        .unwrap();
    infuse::breaker("global-users").force_open().await.unwrap();
    let admin = Admin::connect(&config(&server, ns)).await.unwrap();
    assert!(
        eventually(within(5), Duration::from_millis(50), async || admin
            .processes()
            .await
            .unwrap()
            .len()
            == 1)
        .await
    );
    infuse::shutdown().await.unwrap();
    assert!(admin.processes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_of_named_breakers_reads_only_those() {
    let server = RedisServer::start();
    let ns = "admin-named";
    let admin = Admin::connect(&config(&server, ns)).await.unwrap();
    for service in ["a", "b", "c"] {
        admin.close(service).await.unwrap();
    }
    let mut conn = raw(&server).await;
    announce(
        &mut conn,
        ns,
        "e1",
        30_000,
        60_000,
        &[("a", "closed"), ("c", "closed")],
    )
    .await;
    let listing = admin
        .breakers_named(&["c", "nosuch", "a", "c"])
        .await
        .unwrap();
    let names: Vec<&str> = listing
        .breakers
        .iter()
        .map(|r| r.service.as_str())
        .collect();
    assert_eq!(names, ["a", "c", "nosuch"]);
    assert!(matches!(listing.breakers[0].record, Record::Ok(_)));
    assert_eq!(listing.breakers[2].record, Record::Missing);
    for row in &listing.breakers[..2] {
        assert_eq!(row.seen_by.len(), 1, "{row:?}");
        assert_eq!(listing.processes[row.seen_by[0].process].id, "e1");
    }
    assert!(listing.breakers[2].seen_by.is_empty());
}

/// `BreakerRow::retries`: the retry tokens the fleet spent, the sum of what each process
/// announces: this test's registry and a worker process (an OS process of its own: the
/// announcement is per process), both retrying the calls of a dead downstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_sums_the_retries_each_process_took_from_the_budget() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let server = RedisServer::start();
    let ns = "admin-retries";
    // A worker making 20 calls a second for a minute (killed when the test ends), each
    // retried once within a budget of 100 retries a second for the fleet.
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_infuse-retry-worker"))
        .args([&server.url(), ns, "w", "20", "60", "1", "100", "100"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning infuse-retry-worker");
    let mut lines = BufReader::new(worker.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(within(30), lines.next_line())
        .await
        .expect("the worker is ready within 30 s")
        .unwrap()
        .unwrap_or_default();
    assert!(ready.starts_with("READY"), "{ready:?}");
    let stdin = worker.stdin.as_mut().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    stdin.flush().await.unwrap();

    let retried = infuse::ServiceOverride::new()
        .fail_max(u32::MAX)
        .retries(1)
        .retry_budget(100)
        .retry_min_per_sec(100)
        .retry_backoff(Duration::from_millis(5))
        .max_retry_backoff(Duration::from_millis(20));
    let member = config(&server, ns)
        .resync_interval(Duration::from_millis(200))
        .service("users", retried);
    let registry = Registry::new(member).await.unwrap();
    let users = registry.breaker("users");
    assert_eq!(users.retries().unwrap().spent, 0);
    for _ in 0..5 {
        let failed = users
            .call_retrying(|| async { Err::<(), _>(std::io::Error::other("503")) })
            .await;
        assert!(failed.is_err());
    }
    let spent = users.retries().unwrap().spent;
    assert!(spent > 0, "the fleet's budget granted retries");

    let admin = Admin::connect(&config(&server, ns)).await.unwrap();
    let me = u64::from(std::process::id());
    let summed = eventually(within(15), Duration::from_millis(100), async || {
        let listing = admin.breakers_named(&["users"]).await.unwrap();
        let row = &listing.breakers[0];
        let by_process: Vec<(u64, Option<u64>)> = row
            .seen_by
            .iter()
            .map(|seen| (listing.processes[seen.process].pid, seen.retries))
            .collect();
        let mine = by_process.iter().find(|(pid, _)| *pid == me);
        let theirs = by_process.iter().find(|(pid, _)| *pid != me);
        match (mine, theirs) {
            (Some((_, Some(mine))), Some((_, Some(theirs)))) if *mine == spent && *theirs > 0 => {
                assert_eq!(row.retries(), Some(mine + theirs), "{by_process:?}");
                true
            }
            _ => false,
        }
    })
    .await;
    assert!(summed, "both processes announce the retries they took");
    registry.shutdown().await.unwrap();
}
