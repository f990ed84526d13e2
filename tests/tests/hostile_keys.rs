//! Nothing in Redis, however wrong, makes a breaker silently stop working or half-applies
//! a command: every breaker script checks every key and field it reads before its first
//! write. Table-driven, against a `redis-server` of each test's own: each hostile value
//! (a field out of range, a key of the wrong type, a timed key without expiry, a window
//! field that is not a bucket) is written straight into one key of a breaker set up for
//! each command, then the command runs through the Redis store. A command that reads the
//! key (or appends to it) must fail with `StorageError::Corrupt` naming the key (and the
//! field) and change nothing: the five keys dumped before and after are the same (type,
//! content, expiry not renewed) and Redis counted no write command and no `PUBLISH`
//! meanwhile. A command that neither reads nor appends to the key must answer exactly as
//! on a healthy breaker (its writes replace the key whole, e.g. a trip's `SET` of the open
//! key). `Force` (what `close()`, `open()`, `force_open()`, `disable()` run) must repair
//! every key in the same script and succeed: a clean record, a history that starts with
//! the manual change, and a normal trip cycle afterwards. The store connects as the user
//! of the guide's minimal ACL: no check or repair may need a command outside it.

use std::collections::BTreeMap;
use std::time::Duration;

use infuse::store::redis::keys::{breaker_key, BreakerKey as Key};
use infuse::store::redis::{Deadlines, RedisStore};
use infuse::store::{Command, Counts, Outcome, Store, Target, Totals, TrialToken};
use infuse::{Settings, State, StorageError};
use infuse_tests::support::redis_server::RedisServer;
use redis::aio::MultiplexedConnection;

const NAMESPACE: &str = "hostile";
/// Every time the cases set: no time-dependent arm fires while a case runs.
const LONG: Duration = Duration::from_secs(600);
/// The expiry given to every timed key after the set-up, so that a command renewing one
/// (to `LONG` or the store's `key_ttl`) shows in the dump.
const SET_UP_TTL_MS: i64 = 3_600_000;
const TOKEN: TrialToken = TrialToken(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

/// One hostile value: Redis commands run against one key (`{key}` stands for its name).
#[derive(Debug, Clone)]
struct Hostile {
    what: String,
    key: Key,
    /// The field the error must name, for a field of the state hash.
    field: Option<&'static str>,
    ops: Vec<Vec<String>>,
}

fn hostile(
    what: impl Into<String>,
    key: Key,
    field: Option<&'static str>,
    ops: &[&[&str]],
) -> Hostile {
    Hostile {
        what: what.into(),
        key,
        field,
        ops: ops
            .iter()
            .map(|op| op.iter().map(|s| (*s).to_owned()).collect())
            .collect(),
    }
}

/// Values no number field may hold.
const GARBAGE: [&str; 14] = [
    "nan",
    "inf",
    "-inf",
    "-1000000",
    "-1",
    "1.5",
    "9223372036854775807",
    "1e400",
    "",
    " 1",
    "0x10",
    "1e3",
    "abc",
    "-0",
];

/// The state hash's fields, with values out of range for each beyond [`GARBAGE`].
const FIELDS: [(&str, &[&str]); 7] = [
    (
        "inc",
        &["0", "00", "18446744073709551616", "000000000000000000001"],
    ),
    (
        "gen",
        &[
            "0",
            "9007199254740991",
            "9007199254740992",
            "18446744073709551615",
        ],
    ),
    ("seq", &["9007199254740992", "18446744073709551615"]),
    ("state", &["5", "4294967295"]),
    ("fail", &["4294967296"]),
    ("succ", &["4294967296"]),
    ("reo", &["4294967296"]),
];

fn state_field_hostiles() -> Vec<Hostile> {
    let mut all = Vec::new();
    for (field, out_of_range) in FIELDS {
        for value in GARBAGE.iter().chain(out_of_range) {
            if field == "inc" && *value == "9223372036854775807" {
                continue; // a valid u64
            }
            all.push(hostile(
                format!("{field} = {value:?}"),
                Key::State,
                Some(field),
                &[&["HSET", "{key}", field, value]],
            ));
        }
        if field != "reo" {
            // (a record without `reo` predates it: read as 0)
            all.push(hostile(
                format!("no {field}"),
                Key::State,
                Some(field),
                &[&["HDEL", "{key}", field]],
            ));
        }
    }
    all
}

/// A key replaced by a value of another type.
fn retyped(key: Key, types: &[&str]) -> Vec<Hostile> {
    types
        .iter()
        .map(|kind| {
            let create: &[&str] = match *kind {
                "string" => &["SET", "{key}", "1"],
                "list" => &["RPUSH", "{key}", "1"],
                "set" => &["SADD", "{key}", "1"],
                "zset" => &["ZADD", "{key}", "1", "1"],
                "hash" => &["HSET", "{key}", "foo", "1"],
                _ => unreachable!(),
            };
            hostile(format!("a {kind}"), key, None, &[&["DEL", "{key}"], create])
        })
        .collect()
}

fn state_type_hostiles() -> Vec<Hostile> {
    let mut all = retyped(Key::State, &["string", "list", "set", "zset"]);
    all.push(hostile(
        "a hash of none of its fields",
        Key::State,
        None,
        &[&["DEL", "{key}"], &["HSET", "{key}", "foo", "1"]],
    ));
    all
}

fn timed_hostiles(key: Key) -> Vec<Hostile> {
    let mut all = retyped(key, &["list", "hash", "set"]);
    // The trial key holding the very token of the case, but forever.
    let token = TOKEN.to_string();
    let value = if key == Key::Trial {
        token.as_str()
    } else {
        "2"
    };
    all.push(hostile(
        "a string without expiry",
        key,
        None,
        &[&["DEL", "{key}"], &["SET", "{key}", value]],
    ));
    all
}

fn window_hostiles() -> Vec<Hostile> {
    let mut all = retyped(Key::Window, &["string", "list", "set"]);
    let fields: [(&str, &str); 17] = [
        ("b3", "7 1 1 1"), // the index is not of slot 3
        ("b0", "nan 1 1 1"),
        ("b0", "0 1 1"),
        ("b0", "0 1 1 1 1"),
        ("b0", "0 18446744073709551615 0 0"),
        ("b0", "0 9007199254740992 0 0"),
        ("b0", "0 1 1 9223372036854775807"),
        ("b0", "-10 1 1 1"),
        ("b0", "0 1.5 1 1"),
        ("b0", " 0 1 1 1"),
        ("b10", "10 1 1 1"),
        ("x", "1"),
        ("i5", "nan"),
        ("i5", "-1"),
        ("i5", "1.5"),
        ("i5", "9007199254740992"),
        ("ifoo", "1"),
    ];
    for (field, value) in fields {
        all.push(hostile(
            format!("field {field} = {value:?}"),
            Key::Window,
            None,
            &[&["HSET", "{key}", field, value]],
        ));
    }
    all
}

fn history_hostiles() -> Vec<Hostile> {
    retyped(Key::History, &["string", "hash", "set", "zset"])
}

fn hostiles_of(key: Key) -> Vec<Hostile> {
    match key {
        Key::State => {
            let mut all = state_field_hostiles();
            all.extend(state_type_hostiles());
            all
        }
        Key::Open | Key::Trial => timed_hostiles(key),
        Key::Window => window_hostiles(),
        Key::History => history_hostiles(),
    }
}

/// A command, run on a breaker set up so that it applies (and writes) when healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Snapshot,
    Register,
    /// Closed with one failure of fail_max 2: this one trips.
    FailureTrips,
    /// Closed, no failures: counted.
    FailureCounts,
    /// Closed with one failure: reset.
    Success,
    /// A rate rule; the batch goes into the window.
    CallsCounted,
    /// A rate rule; the batch trips it.
    CallsTrip,
    /// Open, its time passed: the trial slot is taken.
    Acquire,
    /// Half-open with the case's trial: its success closes.
    TrialSucceeds,
    /// Half-open with the case's trial: its failure re-opens.
    TrialFails,
    /// Half-open with the case's trial: released.
    Release,
}

impl Case {
    const ALL: [Case; 11] = [
        Case::Snapshot,
        Case::Register,
        Case::FailureTrips,
        Case::FailureCounts,
        Case::Success,
        Case::CallsCounted,
        Case::CallsTrip,
        Case::Acquire,
        Case::TrialSucceeds,
        Case::TrialFails,
        Case::Release,
    ];

    /// The keys the command reads or appends to, in this case: it must find them
    /// corrupt. (The calls' own path reads the open and trial keys only when the breaker
    /// does not let calls through; the window is read by a rate rule's batch; the
    /// history by a change of state.)
    fn reads(self) -> &'static [Key] {
        use Key::*;
        match self {
            Case::Snapshot | Case::Register | Case::Release => &[State, Open, Trial],
            Case::FailureTrips => &[State, History],
            Case::FailureCounts | Case::Success => &[State],
            Case::CallsCounted => &[State, Open, Trial, Window],
            Case::CallsTrip => &[State, Open, Trial, Window, History],
            Case::Acquire | Case::TrialSucceeds | Case::TrialFails => {
                &[State, Open, Trial, History]
            }
        }
    }

    fn settings(self) -> Settings {
        let plain = Settings::DEFAULT
            .fail_max(2)
            .success_threshold(1)
            .reset_timeout(LONG);
        match self {
            Case::CallsCounted | Case::CallsTrip => plain
                .fail_max(100)
                .failure_rate(50)
                .min_calls(4)
                .window(Duration::from_secs(60)),
            _ => plain,
        }
    }
}

fn counts(calls: u32, failures: u32, tail: u32) -> Counts {
    Counts {
        calls,
        failures,
        slow: 0,
        tail,
    }
}

/// A Redis store on its own server, and a plain connection to look at the keys.
struct Harness {
    store: RedisStore,
    conn: MultiplexedConnection,
    _server: RedisServer,
}

impl Harness {
    /// The store connects as the user of the guide's minimal ACL, so that every check
    /// and repair stays within it (a command outside it fails the case); the test looks
    /// and writes as the default user.
    async fn start() -> Harness {
        let server = RedisServer::start();
        let guide = include_str!("../../infuse/src/guide/fleet.md");
        let acl = guide
            .lines()
            .find(|l| l.trim_start().starts_with("ACL SETUSER infuse "))
            .expect("the guide documents the ACL");
        let args: Vec<&str> = acl
            .split_whitespace()
            .map(|arg| if arg == ">CHANGE-ME" { ">s3cret" } else { arg })
            .collect();
        server.cli(&args).expect("ACL SETUSER");
        let url = format!("redis://infuse:s3cret@127.0.0.1:{}/0", server.port());
        let manager = redis::aio::ConnectionManager::new(redis::Client::open(url).unwrap())
            .await
            .unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let deadlines = Deadlines {
            call: Duration::from_secs(5),
            admin: Duration::from_secs(5),
        };
        let store = RedisStore::new(manager, NAMESPACE, Duration::from_secs(60), deadlines);
        store.load_scripts().await.unwrap();
        let conn = client.get_multiplexed_async_connection().await.unwrap();
        Harness {
            store,
            conn,
            _server: server,
        }
    }

    async fn apply(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Result<Outcome, StorageError> {
        self.store.apply(service, settings, command).await
    }

    /// Fails if Redis refused any command of the store's user (the minimal ACL).
    async fn assert_no_denials(&self) {
        let log: Vec<redis::Value> = self.query(&["ACL", "LOG"]).await;
        assert!(log.is_empty(), "commands were denied: {log:?}");
    }

    /// `apply`, which must succeed (set-up steps).
    async fn run(&self, service: &'static str, settings: &Settings, command: Command) -> Outcome {
        self.apply(service, settings, command)
            .await
            .unwrap_or_else(|e| panic!("{service}: set-up {command:?}: {e}"))
    }

    async fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut self.conn.clone())
            .await
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Sets up `service` for `case` and answers the command to run.
    async fn set_up(&self, service: &'static str, case: Case) -> Command {
        let s = &case.settings();
        self.run(service, s, Command::Register { seed: None }).await;
        let fail = Command::RecordFailure {
            generation: 1,
            count: 1,
            instance: 1,
        };
        let report = |counts, instance| Command::RecordCalls {
            generation: 1,
            counts,
            instance,
        };
        match case {
            Case::Snapshot => Command::Snapshot,
            Case::Register => Command::Register { seed: None },
            Case::FailureTrips => {
                self.run(service, s, fail).await;
                fail
            }
            Case::FailureCounts => fail,
            Case::Success => {
                self.run(service, s, fail).await;
                Command::RecordSuccess { generation: 1 }
            }
            Case::CallsCounted => {
                self.run(service, s, report(counts(2, 0, 0), 1)).await;
                report(counts(1, 0, 0), 2)
            }
            Case::CallsTrip => {
                self.run(service, s, report(counts(2, 1, 0), 1)).await;
                report(counts(2, 2, 2), 2)
            }
            Case::Acquire | Case::TrialSucceeds | Case::TrialFails | Case::Release => {
                self.run(service, s, Command::Force(Target::Open(LONG)))
                    .await;
                // Its time passed.
                let open = &self.store.keys(service)[Key::Open as usize];
                let _: i64 = self.query(&["DEL", open]).await;
                let acquire = Command::AcquireTrial {
                    token: TOKEN,
                    lease: LONG,
                };
                if case == Case::Acquire {
                    return acquire;
                }
                assert!(self.run(service, s, acquire).await.applied);
                match case {
                    Case::TrialSucceeds => Command::RecordTrial {
                        token: TOKEN,
                        success: true,
                    },
                    Case::TrialFails => Command::RecordTrial {
                        token: TOKEN,
                        success: false,
                    },
                    _ => Command::ReleaseTrial { token: TOKEN },
                }
            }
        }
    }

    /// Gives every key with an expiry [`SET_UP_TTL_MS`], so that a renewal shows.
    async fn mark_expiries(&self, service: &str) {
        for key in self.store.keys(service) {
            let pttl: i64 = self.query(&["PTTL", &key]).await;
            if pttl > 0 {
                let _: i64 = self
                    .query(&["PEXPIRE", &key, &SET_UP_TTL_MS.to_string()])
                    .await;
            }
        }
    }

    async fn spoil(&self, service: &str, hostile: &Hostile) {
        let key = &self.store.keys(service)[hostile.key as usize];
        for op in &hostile.ops {
            let op: Vec<&str> = op
                .iter()
                .map(|a| {
                    if a == "{key}" {
                        key.as_str()
                    } else {
                        a.as_str()
                    }
                })
                .collect();
            let _: redis::Value = self.query(&op).await;
        }
    }

    /// The five keys as they are.
    async fn dump(&self, service: &str) -> Vec<Dump> {
        let mut dumps = Vec::new();
        for key in self.store.keys(service) {
            let kind: String = self.query(&["TYPE", &key]).await;
            let pttl: i64 = self.query(&["PTTL", &key]).await;
            let content: Vec<String> = match kind.as_str() {
                "none" => Vec::new(),
                "string" => vec![self.query(&["GET", &key]).await],
                "list" => self.query(&["LRANGE", &key, "0", "-1"]).await,
                "hash" => {
                    let map: BTreeMap<String, String> = self.query(&["HGETALL", &key]).await;
                    map.into_iter().map(|(f, v)| format!("{f}={v}")).collect()
                }
                "set" => {
                    let mut members: Vec<String> = self.query(&["SMEMBERS", &key]).await;
                    members.sort();
                    members
                }
                "zset" => self.query(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]).await,
                other => panic!("{key} is a {other}"),
            };
            dumps.push(Dump {
                key,
                kind,
                pttl,
                content,
            });
        }
        dumps
    }

    /// `command` on `service`, whose state field `field` is at its maximum, must fail as
    /// `Corrupt` naming it and write nothing; then a force recreates the record (another
    /// incarnation than `old`'s): answers the force's outcome.
    async fn refused_at_maximum_then_recreated(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
        field: &str,
        old: &Outcome,
    ) -> Outcome {
        let before = self.dump(service).await;
        let writes = self.writes().await;
        match self.apply(service, settings, command).await {
            Err(StorageError::Corrupt(detail)) => assert!(
                detail.contains(&format!("field {field} is at its maximum")),
                "{detail}"
            ),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(
            changes(&before, &self.dump(service).await),
            Vec::<String>::new()
        );
        assert_eq!(self.writes().await, writes);
        let closed = self
            .run(service, settings, Command::Force(Target::Closed))
            .await;
        assert_ne!(
            closed.snapshot.version.incarnation,
            old.snapshot.version.incarnation
        );
        closed
    }

    /// How many write commands (those the scripts use, and PUBLISH) Redis ran, once the
    /// change-log notes of earlier commands (sent in the background after their replies,
    /// and retried; they renew the log's keys with PEXPIRE) have landed: the counts
    /// stayed the same over 30 ms (at most 2 s).
    async fn writes(&self) -> BTreeMap<String, u64> {
        let mut last = self.write_counts().await;
        for _ in 0..66 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let now = self.write_counts().await;
            if now == last {
                break;
            }
            last = now;
        }
        last
    }

    async fn write_counts(&self) -> BTreeMap<String, u64> {
        const WRITES: [&str; 9] = [
            "hset", "hdel", "set", "del", "lpush", "ltrim", "pexpire", "persist", "publish",
        ];
        let info: String = self.query(&["INFO", "commandstats"]).await;
        info.lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                WRITES.contains(&name).then(|| (name.to_owned(), calls))
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Dump {
    key: String,
    kind: String,
    pttl: i64,
    content: Vec<String>,
}

/// What differs between two dumps (an expiry only if it was renewed or set or removed).
fn changes(before: &[Dump], after: &[Dump]) -> Vec<String> {
    let mut changed = Vec::new();
    for (b, a) in before.iter().zip(after) {
        let renewed = match (b.pttl >= 0, a.pttl >= 0) {
            (true, true) => (b.pttl - a.pttl).abs() > 30_000,
            (x, y) => x != y || b.pttl != a.pttl,
        };
        if b.kind != a.kind || b.content != a.content || renewed {
            changed.push(format!("{b:?} -> {a:?}"));
        }
    }
    changed
}

/// What must be the same as on a healthy breaker.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    applied: bool,
    from: State,
    state: State,
    generation: u64,
    fail_counter: u32,
    success_counter: u32,
    open: bool,
    trial: bool,
    window: Option<Totals>,
}

fn observed(o: &Outcome) -> Observed {
    Observed {
        applied: o.applied,
        from: o.from,
        state: o.snapshot.state,
        generation: o.snapshot.generation,
        fail_counter: o.snapshot.fail_counter,
        success_counter: o.snapshot.success_counter,
        open: o.snapshot.open_remaining.is_some(),
        trial: o.snapshot.trial_remaining.is_some(),
        window: o.window,
    }
}

fn service(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

/// Every case against every hostile value of `key`: the command that reads the key
/// changes nothing and reports it; any other answers as on a healthy breaker.
async fn every_command_against(key: Key) {
    let h = Harness::start().await;
    let mut healthy = BTreeMap::new();
    for case in Case::ALL {
        let svc = service(format!("healthy-{case:?}"));
        let command = h.set_up(svc, case).await;
        let outcome = h.run(svc, &case.settings(), command).await;
        healthy.insert(format!("{case:?}"), observed(&outcome));
    }
    // The healthy cases do what they are there for.
    assert!(
        healthy["FailureTrips"].state == State::Open && healthy["CallsTrip"].state == State::Open
    );
    assert!(
        healthy["CallsCounted"].window.is_some() && healthy["TrialSucceeds"].state == State::Closed
    );

    let hostiles = hostiles_of(key);
    let mut failures = Vec::new();
    let mut detected = 0;
    for (i, hostile) in hostiles.iter().enumerate() {
        for case in Case::ALL {
            let svc = service(format!("{key:?}-{i}-{case:?}"));
            let what = format!("{case:?} with {:?} {}", hostile.key, hostile.what);
            let command = h.set_up(svc, case).await;
            h.mark_expiries(svc).await;
            h.spoil(svc, hostile).await;
            let before = h.dump(svc).await;
            let writes_before = h.writes().await;
            let result = h.apply(svc, &case.settings(), command).await;
            let writes_after = h.writes().await;
            let after = h.dump(svc).await;
            if !case.reads().contains(&key) {
                match result {
                    Ok(outcome) if observed(&outcome) == healthy[&format!("{case:?}")] => {}
                    other => failures.push(format!(
                        "{what}: expected the healthy answer {:?}, got {other:?}",
                        healthy[&format!("{case:?}")]
                    )),
                }
                continue;
            }
            detected += 1;
            let mut problems = Vec::new();
            match &result {
                Err(StorageError::Corrupt(detail)) => {
                    if !detail.contains("INFUSE_CORRUPT")
                        || !detail.contains(&format!(":{}", key.suffix()))
                    {
                        problems.push(format!("the error does not name the key: {detail}"));
                    }
                    if let Some(field) = hostile.field {
                        if !detail.contains(&format!("field {field} "))
                            && !detail.contains(&format!("no field {field}"))
                        {
                            problems.push(format!("the error does not name the field: {detail}"));
                        }
                    }
                }
                other => problems.push(format!("expected Corrupt, got {other:?}")),
            }
            let changed = changes(&before, &after);
            if !changed.is_empty() {
                problems.push(format!("the keys changed: {changed:#?}"));
            }
            if writes_before != writes_after {
                problems.push(format!(
                    "Redis ran writes: {writes_before:?} -> {writes_after:?}"
                ));
            }
            if !problems.is_empty() {
                failures.push(format!("{what}: {}", problems.join("; ")));
            }
        }
    }
    h.assert_no_denials().await;
    assert!(
        detected >= hostiles.len(),
        "every value is read by some case"
    );
    assert!(
        failures.is_empty(),
        "{} of {} (value, command) pairs failed:\n{}",
        failures.len(),
        hostiles.len() * Case::ALL.len(),
        failures.join("\n")
    );
}

/// One test a key: each `name: Key` runs `check(Key::Key)`.
macro_rules! a_test_per_key {
    ($check:ident { $($name:ident: $key:ident),* $(,)? }) => {
        $(
            #[tokio::test]
            async fn $name() {
                $check(Key::$key).await;
            }
        )*
    };
}

a_test_per_key!(every_command_against {
    every_command_refuses_a_corrupt_state_hash_and_writes_nothing: State,
    every_reader_refuses_a_corrupt_open_key_and_writes_nothing: Open,
    every_reader_refuses_a_corrupt_trial_key_and_writes_nothing: Trial,
    a_rate_rule_s_batch_refuses_a_corrupt_window_and_writes_nothing: Window,
    a_change_of_state_refuses_a_corrupt_history_and_writes_nothing: History,
});

fn target_name(target: Target) -> &'static str {
    match target.state() {
        State::Closed => "closed",
        State::Open => "open",
        State::HalfOpen => "half-open",
        State::ForcedOpen => "forced-open",
        State::Disabled => "disabled",
        _ => unreachable!(),
    }
}

/// Every force target against every hostile value of `key`: the keys are repaired in the
/// same script, the answer and its event are sent, the history starts with the manual
/// change, and the breaker then trips as usual.
async fn force_repairs(key: Key) {
    let h = Harness::start().await;
    let settings = Case::FailureTrips.settings();
    let targets = [
        Target::Closed,
        Target::Open(LONG),
        Target::HalfOpen,
        Target::ForcedOpen,
        Target::Disabled,
    ];
    let mut failures = Vec::new();
    for (i, hostile) in hostiles_of(key).iter().enumerate() {
        for target in targets {
            let svc = service(format!("force-{key:?}-{i}-{}", target_name(target)));
            let what = format!("Force({target:?}) with {:?} {}", hostile.key, hostile.what);
            // Closed with one failure, a history of two changes, a window (a rate rule's
            // batch), and a trial key left by another breaker's process: every key exists.
            h.run(svc, &settings, Command::Register { seed: None })
                .await;
            h.run(svc, &settings, Command::Force(Target::Disabled))
                .await;
            h.run(svc, &settings, Command::Force(Target::Closed)).await;
            let rates = Case::CallsCounted.settings();
            let batch = Command::RecordCalls {
                generation: 3,
                counts: counts(2, 1, 1),
                instance: 7,
            };
            h.run(svc, &rates, batch).await;
            let keys = h.store.keys(svc);
            let _: () = h
                .query(&["SET", &keys[Key::Trial as usize], "x", "PX", "600000"])
                .await;
            h.mark_expiries(svc).await;
            h.spoil(svc, hostile).await;
            let publishes = h.writes().await.get("publish").copied().unwrap_or(0);
            let forced = match h.apply(svc, &settings, Command::Force(target)).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    failures.push(format!("{what}: {error}"));
                    continue;
                }
            };
            let mut problems = Vec::new();
            if !forced.applied || forced.snapshot.state != target.state() {
                problems.push(format!("answered {forced:?}"));
            }
            if h.writes().await.get("publish").copied().unwrap_or(0) != publishes + 1 {
                problems.push("no event published".to_owned());
            }
            match h.apply(svc, &settings, Command::Snapshot).await {
                Ok(snapshot) if observed(&snapshot).state == target.state() => {}
                other => problems.push(format!("then a snapshot answered {other:?}")),
            }
            let dump = h.dump(svc).await;
            let open_kind = if target.state() == State::Open {
                "string"
            } else {
                "none"
            };
            let expect = [
                (Key::State, "hash"),
                (Key::Open, open_kind),
                (Key::Trial, "none"),
                (Key::Window, "none"),
                (Key::History, "list"),
            ];
            for (k, kind) in expect {
                if dump[k as usize].kind != kind {
                    problems.push(format!(
                        "{:?} is a {}, not a {kind}",
                        k, dump[k as usize].kind
                    ));
                }
            }
            let history = &dump[Key::History as usize];
            match history
                .content
                .first()
                .map(|e| e.split(' ').collect::<Vec<_>>())
            {
                Some(entry)
                    if entry.len() == 6
                        && entry[2] == target_name(target)
                        && entry[3] == forced.snapshot.generation.to_string()
                        && entry[4] == "manual" => {}
                other => problems.push(format!("the newest history entry is {other:?}")),
            }
            if history.pttl <= 0 {
                problems.push(format!("the history expires in {} ms", history.pttl));
            }
            if key == Key::History && history.content.len() != 1 {
                problems.push(format!("the history was not started afresh: {history:?}"));
            }
            // A normal trip cycle.
            let closed = h.run(svc, &settings, Command::Force(Target::Closed)).await;
            let generation = closed.snapshot.generation;
            let fail = Command::RecordFailure {
                generation,
                count: 1,
                instance: 1,
            };
            h.run(svc, &settings, fail).await;
            let tripped = h.run(svc, &settings, fail).await;
            if tripped.snapshot.state != State::Open
                || tripped.snapshot.generation != generation + 1
            {
                problems.push(format!("two failures then answered {tripped:?}"));
            }
            let newest: Vec<String> = h
                .query(&["LRANGE", &keys[Key::History as usize], "0", "0"])
                .await;
            if !newest.first().is_some_and(|e| {
                e.contains(" closed open ") && e.contains(" consecutive_failures ")
            }) {
                problems.push(format!(
                    "the trip was not written to the history: {newest:?}"
                ));
            }
            if !problems.is_empty() {
                failures.push(format!("{what}: {}", problems.join("; ")));
            }
        }
    }
    h.assert_no_denials().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

a_test_per_key!(force_repairs {
    force_repairs_a_corrupt_state_hash: State,
    force_repairs_a_corrupt_open_key: Open,
    force_repairs_a_corrupt_trial_key: Trial,
    force_repairs_a_corrupt_window: Window,
    force_repairs_a_corrupt_history: History,
});

/// A force of a breaker that is not corrupt repairs nothing: a change to the same state
/// writes no history entry (as before), and the record keeps its incarnation.
#[tokio::test]
async fn force_of_a_sound_breaker_keeps_its_record_and_history() {
    let h = Harness::start().await;
    let settings = Case::FailureTrips.settings();
    let svc = service("sound".to_owned());
    let created = h
        .run(svc, &settings, Command::Register { seed: None })
        .await;
    let first = h
        .run(svc, &settings, Command::Force(Target::ForcedOpen))
        .await;
    let second = h
        .run(svc, &settings, Command::Force(Target::ForcedOpen))
        .await;
    assert_eq!(
        first.snapshot.version.incarnation,
        created.snapshot.version.incarnation
    );
    assert_eq!(
        second.snapshot.version.incarnation,
        created.snapshot.version.incarnation
    );
    assert_eq!(second.snapshot.generation, first.snapshot.generation + 1);
    let history: Vec<String> = h
        .query(&[
            "LRANGE",
            &breaker_key(NAMESPACE, svc, Key::History),
            "0",
            "-1",
        ])
        .await;
    assert_eq!(history.len(), 1, "{history:?}");
    h.assert_no_denials().await;
}

/// A record whose generation is at `MAX_GENERATION` (the most any record holds) counts
/// failures, but cannot trip: the trip is `Corrupt` and writes nothing; force recreates
/// it. Its history says what happened.
#[tokio::test]
async fn a_generation_at_its_maximum_is_corrupt_for_a_transition_and_force_recreates_the_record() {
    let h = Harness::start().await;
    let settings = Settings::DEFAULT.fail_max(2).reset_timeout(LONG);
    let svc = service("max-generation".to_owned());
    h.run(svc, &settings, Command::Register { seed: None })
        .await;
    let keys = h.store.keys(svc);
    let max = infuse::store::MAX_GENERATION.to_string();
    let _: i64 = h.query(&["HSET", &keys[0], "gen", &max]).await;
    let generation = infuse::store::MAX_GENERATION;
    let fail = Command::RecordFailure {
        generation,
        count: 1,
        instance: 1,
    };
    let counted = h.run(svc, &settings, fail).await;
    assert_eq!(counted.snapshot.fail_counter, 1);
    assert_eq!(counted.snapshot.generation, generation);
    let closed = h
        .refused_at_maximum_then_recreated(svc, &settings, fail, "gen", &counted)
        .await;
    assert_eq!(
        (closed.snapshot.state, closed.snapshot.generation),
        (State::Closed, 2)
    );
    let history: Vec<String> = h.query(&["LRANGE", &keys[4], "0", "0"]).await;
    assert!(
        history[0].contains(" closed closed 2 manual "),
        "{history:?}"
    );
    h.assert_no_denials().await;
}

/// A record whose seq is at its maximum (2^53 - 1) reads as usual but cannot be written
/// again: a write is `Corrupt` and writes nothing; force recreates the record.
#[tokio::test]
async fn a_seq_at_its_maximum_is_corrupt_for_a_write_and_force_recreates_the_record() {
    let h = Harness::start().await;
    let settings = Settings::DEFAULT.fail_max(5).reset_timeout(LONG);
    let svc = service("max-seq".to_owned());
    let created = h
        .run(svc, &settings, Command::Register { seed: None })
        .await;
    let keys = h.store.keys(svc);
    let _: i64 = h
        .query(&["HSET", &keys[0], "seq", "9007199254740991"])
        .await;
    let read = h.run(svc, &settings, Command::Snapshot).await;
    assert_eq!(read.snapshot.version.seq, (1 << 53) - 1);
    let fail = Command::RecordFailure {
        generation: 1,
        count: 1,
        instance: 1,
    };
    let closed = h
        .refused_at_maximum_then_recreated(svc, &settings, fail, "seq", &created)
        .await;
    assert_eq!(closed.snapshot.version.seq, 1);
    let generation = closed.snapshot.generation;
    let counted = h
        .run(
            svc,
            &settings,
            Command::RecordFailure {
                generation,
                count: 1,
                instance: 1,
            },
        )
        .await;
    assert!(
        counted.applied && counted.snapshot.version.seq == 2,
        "{counted:?}"
    );
    h.assert_no_denials().await;
}

// ---- The fleet layer: a corrupt breaker is reported, follows the policy, and close()
// repairs it.

mod fleet {
    use super::*;
    use infuse::{Breaker, BreakerError, Registry, UnavailablePolicy};
    use infuse_tests::support;
    use infuse_tests::support::calls::{fail, succeed, DOWNSTREAM};

    const SERVICE: &str = "svc";

    fn key(namespace: &str, which: &str) -> String {
        format!("infuse:{{{namespace}/{SERVICE}}}:{which}")
    }

    fn cli(server: &RedisServer, args: &[&str]) -> String {
        server
            .cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
            .trim()
            .to_owned()
    }

    /// Whether the call ran (its own error came back, not a rejection).
    fn ran(result: &Result<(), BreakerError>) -> bool {
        match result {
            Ok(()) => true,
            Err(error) => error.service() == DOWNSTREAM,
        }
    }

    /// A registry whose breaker (fail_max 2, open a minute) has made one call.
    async fn breaker(
        server: &RedisServer,
        namespace: &str,
        policy: UnavailablePolicy,
    ) -> (Registry, Breaker) {
        let registry = Registry::new(
            support::redis_service_config(server, namespace, SERVICE, 2, LONG)
                .on_redis_unavailable(policy)
                .resync_interval(Duration::from_secs(60)),
        )
        .await
        .unwrap();
        let breaker = registry.breaker(SERVICE);
        assert_eq!(succeed(&breaker).await, Ok(()));
        (registry, breaker)
    }

    /// close() repairs the keys; the breaker then trips in Redis, and the trip is in its
    /// history.
    async fn close_repairs(server: &RedisServer, namespace: &str, breaker: &Breaker) {
        breaker
            .close()
            .await
            .unwrap_or_else(|e| panic!("{namespace}: close(): {e}"));
        assert_eq!(breaker.state().await.unwrap(), State::Closed, "{namespace}");
        let history = cli(server, &["LRANGE", &key(namespace, "history"), "0", "0"]);
        assert!(history.contains(" manual "), "{namespace}: {history}");
        assert!(ran(&fail(breaker).await));
        assert!(ran(&fail(breaker).await));
        assert_eq!(breaker.state().await.unwrap(), State::Open, "{namespace}");
        assert_eq!(
            cli(server, &["HGET", &key(namespace, "state"), "state"]),
            "1",
            "{namespace}"
        );
        let history = cli(server, &["LRANGE", &key(namespace, "history"), "0", "0"]);
        assert!(
            history.contains(" closed open ") && history.contains(" consecutive_failures "),
            "{namespace}: {history}"
        );
        assert!(
            !ran(&succeed(breaker).await),
            "{namespace}: the fleet's breaker is open"
        );
    }

    /// A number field holding garbage, e.g. `fail = nan`, used to make the breaker never
    /// trip (failures were added to nan, or never counted under a garbage generation),
    /// silently. Now `state()` reports it, the calls follow the policy (the local
    /// fallback trips at fail_max), and `close()` repairs it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_garbage_number_is_reported_calls_follow_the_local_fallback_and_close_repairs() {
        let server = RedisServer::start();
        let cases = [
            ("fail", "nan"),
            ("fail", "-1000000"),
            ("gen", "9223372036854775807"),
            ("gen", "nan"),
            ("succ", "1.5"),
            ("seq", "1e400"),
            ("state", "9"),
        ];
        for (i, (field, value)) in cases.into_iter().enumerate() {
            let namespace = &format!("fleet-garbage-{i}");
            let (_registry, breaker) =
                breaker(&server, namespace, UnavailablePolicy::LocalFallback).await;
            cli(&server, &["HSET", &key(namespace, "state"), field, value]);
            match breaker.state().await {
                Err(StorageError::Corrupt(detail)) => {
                    assert!(
                        detail.contains(&format!("field {field} is '{value}'")),
                        "{detail}"
                    )
                }
                other => panic!("{field} = {value}: expected Corrupt, got {other:?}"),
            }
            // Two failures trip the local fallback: the next call is rejected.
            assert!(ran(&fail(&breaker).await));
            assert!(ran(&fail(&breaker).await));
            assert!(
                matches!(succeed(&breaker).await, Err(BreakerError::Open { .. })),
                "{field} = {value}: two failures did not open the breaker"
            );
            // Nothing was written over the garbage.
            assert_eq!(
                cli(&server, &["HGET", &key(namespace, "state"), field]),
                value
            );
            close_repairs(&server, namespace, &breaker).await;
        }
    }

    /// The same under `FailClosed`: once a call meets the corrupt record, calls are
    /// rejected until `close()` repairs it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_garbage_number_under_fail_closed_rejects_calls_until_close() {
        let server = RedisServer::start();
        let namespace = "fleet-garbage-fc";
        let (_registry, breaker) = breaker(&server, namespace, UnavailablePolicy::FailClosed).await;
        cli(&server, &["HSET", &key(namespace, "state"), "fail", "nan"]);
        assert!(
            ran(&fail(&breaker).await),
            "the failure's report meets the garbage"
        );
        assert!(
            matches!(succeed(&breaker).await, Err(BreakerError::Open { .. })),
            "a call after the corrupt record was met ran"
        );
        close_repairs(&server, namespace, &breaker).await;
    }

    /// A history key of another type used to make a trip half-applied: the state written,
    /// then the script failed on LPUSH (no event, no change noted), and close() failed the
    /// same way after writing the state. Now the trip changes nothing in Redis (the local
    /// fallback protects the process) and close() repairs the history.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_history_of_another_type_half_applies_nothing_and_close_repairs_it() {
        let server = RedisServer::start();
        let namespace = "fleet-history";
        let (_registry, breaker) =
            breaker(&server, namespace, UnavailablePolicy::LocalFallback).await;
        let history = key(namespace, "history");
        cli(&server, &["SET", &history, "x"]);
        assert!(ran(&fail(&breaker).await));
        assert_eq!(
            cli(&server, &["HGET", &key(namespace, "state"), "fail"]),
            "1"
        );
        let publishes = server.command_calls("publish");
        assert!(ran(&fail(&breaker).await), "the trip meets the garbage");
        assert_eq!(
            cli(&server, &["HGET", &key(namespace, "state"), "state"]),
            "0",
            "not tripped in Redis"
        );
        assert_eq!(
            cli(&server, &["HGET", &key(namespace, "state"), "fail"]),
            "1",
            "nothing written"
        );
        assert_eq!(
            server.command_calls("publish"),
            publishes,
            "nothing published"
        );
        assert_eq!(cli(&server, &["TYPE", &history]), "string");
        assert!(
            matches!(succeed(&breaker).await, Err(BreakerError::Open { .. })),
            "the local fallback tripped"
        );
        close_repairs(&server, namespace, &breaker).await;
        assert_eq!(cli(&server, &["TYPE", &history]), "list");
    }
}
