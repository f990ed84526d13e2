//! Shadow mode in a real fleet: three worker *processes* (`src/bin/infuse-shadow-worker.rs`)
//! share one breaker with `shadow = true` through a hermetic Redis, calling a downstream
//! that always fails. The breaker trips, opens and makes trials as usual, but rejects no
//! call: every call reaches the downstream (counted there), each process counts what it
//! would have rejected, listeners hear it, and the transitions are shadow-marked in the
//! history. Then one operator's switch (`Admin::set_shadow`) turns shadow mode off for
//! the whole fleet, and every process follows within a second and starts rejecting.

use infuse_tests::support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infuse::admin::{Admin, Audit, SHADOW_OFF};
use infuse::Config;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;

use support::redis_server::RedisServer;

const WORKERS: usize = 3;
const SERVICE: &str = "users";

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// A downstream that answers every request `fail`, counting them.
async fn failing_downstream(count: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(read).read_line(&mut line).await.is_ok() && !line.is_empty() {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = write.write_all(b"fail\n").await;
                }
            });
        }
    });
    address
}

/// Every line the workers printed, by worker, as they come.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<BTreeMap<String, Vec<String>>>>);

impl Lines {
    fn of(&self, id: &str) -> Vec<String> {
        self.0.lock().unwrap().get(id).cloned().unwrap_or_default()
    }

    /// The fields of worker `id`'s last line starting with `word`.
    fn last(&self, id: &str, word: &str) -> Option<BTreeMap<String, String>> {
        let lines = self.of(id);
        let line = lines
            .iter()
            .rev()
            .find(|l| l.starts_with(&format!("{word} ")))?;
        Some(
            line.split_whitespace()
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    fn number(&self, id: &str, word: &str, field: &str) -> u64 {
        self.last(id, word)
            .and_then(|fields| fields.get(field)?.parse().ok())
            .unwrap_or(0)
    }
}

/// Polls `done` every 20 ms until it holds; panics with `what` after `within`.
async fn until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Worker {
    id: String,
    child: Child,
    stdin: Option<ChildStdin>,
    reader: tokio::task::JoinHandle<()>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_in_shadow_mode_rejects_nothing_until_switched_off() {
    let server = RedisServer::start();
    let reached = Arc::new(AtomicU64::new(0));
    let address = failing_downstream(reached.clone()).await;
    let namespace = format!("shadow-{}", std::process::id());
    let lines = Lines::default();

    let mut workers = Vec::new();
    for i in 0..WORKERS {
        let id = format!("w{i}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_infuse-shadow-worker"))
            .args([
                server.url().to_string(),
                namespace.clone(),
                address.clone(),
                id.clone(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning infuse-shadow-worker");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (lines, who) = (lines.clone(), id.clone());
        let reader = tokio::spawn(async move {
            let mut stdout = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = stdout.next_line().await {
                lines
                    .0
                    .lock()
                    .unwrap()
                    .entry(who.clone())
                    .or_default()
                    .push(line);
            }
        });
        workers.push(Worker {
            id,
            child,
            stdin,
            reader,
        });
    }
    let ids: Vec<String> = workers.iter().map(|w| w.id.clone()).collect();

    // ----- Shadow mode: the breaker works, and rejects nothing -------------------------
    let admin = Admin::connect(&Config::redis(server.url()).namespace(namespace.as_str()))
        .await
        .unwrap();
    // Trials are made as usual (one call, when the open time is over), and fail.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let history = admin.history(SERVICE, 50).await.unwrap();
        let trials = history
            .iter()
            .filter(|e| e.reason == "trial_failed" && e.shadow)
            .count();
        if trials >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no two failed shadow trials: {history:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until(
        Duration::from_secs(20),
        "every worker would have rejected calls",
        || {
            ids.iter()
                .all(|id| lines.number(id, "STATUS", "would_reject") >= 20)
        },
    )
    .await;
    for id in &ids {
        let status = lines.last(id, "STATUS").unwrap();
        assert_eq!(status["shadow"], "true", "{id}: {status:?}");
        assert_eq!(
            status["rejected"], "0",
            "{id}: no call rejected: {status:?}"
        );
        assert_eq!(status["ok"], "0", "{id}: {status:?}");
        let told = lines.number(id, "STATUS", "told");
        assert!(told >= 20, "{id}: the listener heard of them: {status:?}");
        let opened = lines.of(id).iter().any(|l| {
            l.starts_with(&format!("TRANSITION {id} ")) && l.ends_with(" open shadow=true")
        });
        assert!(
            opened,
            "{id}: saw a shadow transition to open: {:#?}",
            lines.of(id)
        );
    }
    let history = admin.history(SERVICE, 50).await.unwrap();
    let shadow_trips = history
        .iter()
        .filter(|e| e.shadow && e.from == "closed" && e.to == "open")
        .count();
    assert!(
        shadow_trips >= 1,
        "a shadow-marked trip in the history: {history:#?}"
    );
    assert!(
        history
            .iter()
            .filter(|e| !e.is_shadow_switch())
            .all(|e| e.shadow),
        "every transition so far was made in shadow mode: {history:#?}"
    );

    // ----- One operator switches the fleet out of shadow mode --------------------------
    let switched_at = unix_ms();
    admin
        .set_shadow(
            SERVICE,
            false,
            &Audit::new("tester@ci", "thresholds look right"),
        )
        .await
        .unwrap();
    until(
        Duration::from_secs(5),
        "every worker saw the switch",
        || {
            ids.iter().all(|id| {
                lines
                    .of(id)
                    .iter()
                    .any(|l| l.starts_with(&format!("SHADOW {id} false ")))
            })
        },
    )
    .await;
    for id in &ids {
        let line = lines
            .of(id)
            .into_iter()
            .find(|l| l.starts_with(&format!("SHADOW {id} false ")))
            .unwrap();
        let at: u128 = line.rsplit(' ').next().unwrap().parse().unwrap();
        let after = at.saturating_sub(switched_at);
        assert!(
            after <= 1_000,
            "{id} followed the switch {after} ms after it"
        );
    }
    until(Duration::from_secs(5), "every worker rejects calls", || {
        ids.iter()
            .all(|id| lines.number(id, "STATUS", "rejected") > 0)
    })
    .await;
    let history = admin.history(SERVICE, 50).await.unwrap();
    let switch = history
        .iter()
        .find(|e| e.reason == SHADOW_OFF)
        .unwrap_or_else(|| panic!("the switch is in the history: {history:#?}"));
    assert_eq!(switch.who.as_deref(), Some("tester@ci"));
    assert_eq!(switch.why.as_deref(), Some("thresholds look right"));
    assert!(!switch.shadow, "{switch:?}");
    let record = admin.breaker(SERVICE).await.unwrap();
    assert!(
        matches!(&record.record, infuse::admin::Record::Ok(r) if r.shadow == Some(false)),
        "{record:?}"
    );

    if std::env::var_os("INFUSE_SHADOW_TRACE").is_some() {
        eprintln!("{:#?}\n{history:#?}", lines.0.lock().unwrap());
    }

    // ----- Every call that ran reached the downstream ----------------------------------
    let mut ran = 0;
    for mut worker in workers {
        drop(worker.stdin.take()); // the worker stops calling and sums up
        let status = tokio::time::timeout(Duration::from_secs(10), worker.child.wait())
            .await
            .expect("a worker did not exit")
            .unwrap();
        worker.reader.await.unwrap();
        assert!(status.success(), "{}: {status}", worker.id);
        let summary = lines.last(&worker.id, "SUMMARY").expect("a summary");
        ran += summary["failed"].parse::<u64>().unwrap() + summary["ok"].parse::<u64>().unwrap();
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        ran,
        "every call that ran (and none other) reached the downstream"
    );
}

/// A process that missed the switch's event (here: the switch written into the record
/// with neither an event nor a note in the change log) takes it in with its periodic
/// full resync: the switch is part of the record every read answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_whose_event_was_lost_arrives_with_the_resync() {
    let server = RedisServer::start();
    let registry = infuse::Registry::new(
        support::redis_service_config(
            &server,
            "shadow-resync",
            SERVICE,
            5,
            Duration::from_secs(60),
        )
        .resync_interval(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let breaker = registry.breaker(SERVICE);
    assert!(breaker
        .call(async { Ok::<(), infuse::BreakerError>(()) })
        .await
        .is_ok());
    assert!(!breaker.shadow(), "the setting: off");
    let key = infuse::store::redis::keys::breaker_key(
        "shadow-resync",
        SERVICE,
        infuse::store::redis::keys::BreakerKey::State,
    );
    assert_eq!(
        server
            .cli(&["HSET", &key, "shd", "1"])
            .as_deref()
            .map(str::trim),
        Some("1")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !breaker.shadow() {
        assert!(Instant::now() < deadline, "the switch never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
