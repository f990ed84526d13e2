//! `Config::metrics`: calls by outcome, the state gauge, transitions and durations,
//! read back from `metrics-util`'s debugging recorder (installed for this process).

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry as Metrics};

use infuse::{BreakerError, CallOptions, Config, Registry, ServiceOverride, State};

use infuse_tests::support::calls::TestError;

/// A recorder that keeps every value (`metrics-util`'s debugging recorder hands out
/// deltas, gauges included, which tests running in parallel would steal from each other).
struct Recorder(Arc<Metrics<Key, AtomicStorage>>);

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// The process's metrics, recorded from the first registry on.
fn recorded() -> &'static Metrics<Key, AtomicStorage> {
    static METRICS: OnceLock<Arc<Metrics<Key, AtomicStorage>>> = OnceLock::new();
    METRICS.get_or_init(|| {
        let metrics = Arc::new(Metrics::atomic());
        metrics::set_global_recorder(Recorder(metrics.clone())).expect("the only recorder");
        metrics
    })
}

/// A value read back.
#[derive(Debug)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

type Labels = Vec<(String, String)>;

/// Every metric of one service, as (name, labels other than `service`, value).
struct Seen(Vec<(String, Labels, Value)>);

impl Seen {
    fn now(service: &str) -> Seen {
        let metrics = recorded();
        let mut found = Vec::new();
        let mut add = |key: &Key, value: Value| {
            let labels: Labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            if labels.iter().any(|(k, v)| k == "service" && v == service) {
                let rest = labels.into_iter().filter(|(k, _)| k != "service").collect();
                found.push((key.name().to_owned(), rest, value));
            }
        };
        for (key, counter) in metrics.get_counter_handles() {
            add(&key, Value::Counter(counter.load(Ordering::SeqCst)));
        }
        for (key, gauge) in metrics.get_gauge_handles() {
            add(
                &key,
                Value::Gauge(f64::from_bits(gauge.load(Ordering::SeqCst))),
            );
        }
        for (key, histogram) in metrics.get_histogram_handles() {
            add(&key, Value::Histogram(histogram.data()));
        }
        Seen(found)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Value> {
        self.0
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.value(name, labels) {
            Some(Value::Counter(n)) => *n,
            None => 0,
            other => panic!("{other:?}"),
        }
    }

    fn calls(&self, outcome: &str) -> u64 {
        self.counter("infuse_calls_total", &[("outcome", outcome)])
    }

    fn gauge(&self, state: State) -> f64 {
        match self.value("infuse_state", &[("state", state.as_str())]) {
            Some(Value::Gauge(g)) => *g,
            other => panic!("no state gauge for {state}: {other:?}"),
        }
    }

    fn durations(&self) -> Vec<f64> {
        match self.value("infuse_call_duration_seconds", &[]) {
            Some(Value::Histogram(values)) => values.clone(),
            None => Vec::new(),
            other => panic!("{other:?}"),
        }
    }

    fn registered(&self, name: &str) -> usize {
        self.0.iter().filter(|(n, _, _)| n == name).count()
    }
}

async fn registry(service: &'static str, overrides: ServiceOverride) -> infuse::Breaker {
    recorded();
    Registry::new(
        Config::in_memory()
            .env_overrides(false)
            .service(service, overrides)
            .metrics(),
    )
    .await
    .expect("registry")
    .breaker(service)
}

fn ignored(e: &TestError) -> bool {
    matches!(e, TestError::NotFound)
}

#[tokio::test(start_paused = true)]
async fn calls_are_counted_by_outcome_and_timed() {
    let service = "metrics-calls";
    let b = registry(
        service,
        ServiceOverride::new()
            .fail_max(3)
            .timeout(Duration::from_secs(1)),
    )
    .await;
    for _ in 0..3 {
        let _ = b.call(async { Ok::<u32, TestError>(1) }).await;
    }
    let _ = b
        .call(async { Err::<u32, TestError>(TestError::Boom) })
        .await;
    let options = CallOptions::new().ignore(ignored);
    let _ = b
        .call_with(options, async {
            Err::<u32, TestError>(TestError::NotFound)
        })
        .await;
    let slow = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<u32, TestError>(1)
    };
    let timed_out = b.call(slow).await;
    assert!(matches!(
        timed_out,
        Err(TestError::Breaker(BreakerError::Timeout { .. }))
    ));
    let took = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<u32, TestError>(1)
    };
    let _ = b.call(took).await;

    let seen = Seen::now(service);
    assert_eq!(seen.calls("success"), 4);
    assert_eq!(seen.calls("failure"), 1);
    assert_eq!(seen.calls("ignored"), 1);
    assert_eq!(seen.calls("timeout"), 1);
    assert_eq!(seen.calls("rejected"), 0);
    let mut seen = seen.durations();
    assert_eq!(seen.len(), 7, "every call that ran is timed: {seen:?}");
    seen.sort_by(f64::total_cmp);
    assert_eq!(seen[6], 1.0, "the timed-out call ran for its limit");
    assert_eq!(seen[5], 0.3);
}

#[tokio::test(start_paused = true)]
async fn the_state_gauge_and_transitions_follow_the_breaker() {
    let service = "metrics-states";
    let reset = Duration::from_secs(10);
    let b = registry(
        service,
        ServiceOverride::new().fail_max(1).reset_timeout(reset),
    )
    .await;
    let now = || Seen::now(service);
    let seen = now();
    assert_eq!(seen.gauge(State::Closed), 1.0);
    assert_eq!(seen.gauge(State::Open), 0.0);

    let _ = b
        .call(async { Err::<u32, TestError>(TestError::Boom) })
        .await;
    for _ in 0..2 {
        let rejected = b.call(async { Ok::<u32, TestError>(1) }).await;
        assert!(matches!(
            rejected,
            Err(TestError::Breaker(BreakerError::Open { .. }))
        ));
    }
    let seen = now();
    assert_eq!(seen.gauge(State::Open), 1.0);
    assert_eq!(seen.gauge(State::Closed), 0.0);
    assert_eq!(seen.calls("rejected"), 2);
    assert_eq!(seen.calls("failure"), 1);

    tokio::time::advance(reset).await;
    let _ = b.call(async { Ok::<u32, TestError>(1) }).await; // the trial closes it
    assert_eq!(now().gauge(State::Closed), 1.0);
    b.force_open().await.unwrap();
    assert_eq!(now().gauge(State::ForcedOpen), 1.0);
    b.close().await.unwrap();
    let seen = now();
    assert_eq!(seen.gauge(State::Closed), 1.0);
    for state in [
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
    ] {
        assert_eq!(seen.gauge(state), 0.0, "{state}");
    }
    // Pairs that never happened are not registered at all.
    assert_eq!(seen.registered("infuse_transitions_total"), 5);
    let mut pairs: Vec<((String, String), u64)> = seen
        .0
        .iter()
        .filter(|(name, _, _)| name == "infuse_transitions_total")
        .map(|(_, labels, value)| {
            let label = |key: &str| labels.iter().find(|(k, _)| k == key).unwrap().1.clone();
            let Value::Counter(n) = value else {
                panic!("{value:?}")
            };
            ((label("from"), label("to")), *n)
        })
        .collect();
    pairs.sort();
    let pair = |from: &str, to: &str| ((from.to_owned(), to.to_owned()), 1);
    assert_eq!(
        pairs,
        [
            pair("closed", "forced-open"),
            pair("closed", "open"),
            pair("forced-open", "closed"),
            pair("half-open", "closed"),
            pair("open", "half-open"),
        ]
    );
}

/// `infuse_slow_start_percent`: 100 outside slow start, the share admitted while in it
/// (rejections counted as `rejected`), 100 again once it is over.
#[tokio::test(start_paused = true)]
async fn the_slow_start_gauge_follows_the_share() {
    let service = "metrics-slow-start";
    let b = registry(
        service,
        ServiceOverride::new()
            .slow_start(Duration::from_secs(10))
            .slow_start_min(20),
    )
    .await;
    let share = || match Seen::now(service).value("infuse_slow_start_percent", &[]) {
        Some(Value::Gauge(g)) => *g,
        other => panic!("no slow-start gauge: {other:?}"),
    };
    assert_eq!(share(), 100.0, "never tripped");
    b.force_open().await.unwrap();
    b.close().await.unwrap();
    let calls = async |n| {
        for _ in 0..n {
            let _ = b.call(async { Ok::<u32, TestError>(1) }).await;
        }
    };
    calls(100).await;
    assert_eq!(share(), 20.0);
    assert_eq!(Seen::now(service).calls("rejected"), 80);
    tokio::time::advance(Duration::from_secs(5)).await;
    calls(10).await;
    assert_eq!(share(), 60.0);
    tokio::time::advance(Duration::from_secs(5)).await;
    calls(10).await;
    assert_eq!(share(), 100.0, "over");
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_counts_what_it_would_have_rejected() {
    let service = "metrics-shadow";
    let b = registry(service, ServiceOverride::new().fail_max(1).shadow(true)).await;
    let _ = b
        .call(async { Err::<u32, TestError>(TestError::Boom) })
        .await;
    for _ in 0..2 {
        let ran = b.call(async { Ok::<u32, TestError>(1) }).await;
        assert!(matches!(ran, Ok(1)), "{ran:?}");
    }
    let seen = Seen::now(service);
    assert_eq!(seen.gauge(State::Open), 1.0, "it tripped all the same");
    assert_eq!(seen.calls("shadow_rejected"), 2);
    assert_eq!(seen.calls("rejected"), 0);
    assert_eq!(seen.calls("success"), 2, "they ran");
    assert_eq!(b.would_reject(), 2);
}

/// `infuse_permits`: with `max_concurrent`, this process's permits in use, held and the
/// cap, set when calls end or are rejected; none for a breaker without a cap.
#[tokio::test(start_paused = true)]
async fn the_permits_gauges_follow_the_calls_in_flight() {
    let service = "metrics-permits";
    let b = registry(service, ServiceOverride::new().max_concurrent(2)).await;
    let permits = || {
        let seen = Seen::now(service);
        ["in_use", "held", "cap"].map(|kind| {
            match seen.value("infuse_permits", &[("kind", kind)]) {
                Some(Value::Gauge(g)) => *g,
                other => panic!("no {kind} permits gauge: {other:?}"),
            }
        })
    };
    assert_eq!(permits(), [0.0, 2.0, 2.0], "set when the breaker is made");
    let release = Arc::new(tokio::sync::Notify::new());
    let running: Vec<_> = (0..2)
        .map(|_| {
            let (b, release) = (b.clone(), release.clone());
            tokio::spawn(async move {
                b.call(async move {
                    release.notified().await;
                    Ok::<_, TestError>(())
                })
                .await
            })
        })
        .collect();
    while b.concurrency().unwrap().in_use < 2 {
        tokio::task::yield_now().await;
    }
    let saturated = b.call(async { Ok::<_, TestError>(()) }).await;
    assert!(
        matches!(
            saturated,
            Err(TestError::Breaker(BreakerError::Saturated { .. }))
        ),
        "{saturated:?}"
    );
    assert_eq!(permits(), [2.0, 2.0, 2.0], "read at the rejection");
    release.notify_waiters();
    for call in running {
        call.await.unwrap().unwrap();
    }
    assert_eq!(permits(), [0.0, 2.0, 2.0], "read as each call ended");

    let uncapped = "metrics-uncapped";
    let plain = registry(uncapped, ServiceOverride::new()).await;
    let _ = plain.call(async { Ok::<_, TestError>(()) }).await;
    assert_eq!(Seen::now(uncapped).registered("infuse_permits"), 0);
}
