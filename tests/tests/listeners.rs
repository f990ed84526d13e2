//! The exact order of listener events, as pybreaker fires them (§1.2): `before_call`, then
//! `on_failure` before the trip's `on_state_change`, or the `on_state_change` to closed
//! before `on_success`; rejected calls get only `on_rejected`.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infuse::{
    BreakerError, CallOptions, Config, Listener, Registry, ServiceOverride, State, Verdict,
};

use infuse_tests::support;

use support::calls::{breaker_with, not_found, TestError, R};

const RESET: Duration = Duration::from_secs(10);

async fn ok(v: u32) -> R {
    Ok(v)
}

async fn boom() -> R {
    Err(TestError::Boom)
}

/// Records every event; with `prefix`, each event is prefixed by its service.
#[derive(Default)]
struct Recorder {
    prefix: bool,
    events: Mutex<Vec<String>>,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    fn with_service() -> Arc<Recorder> {
        Arc::new(Recorder {
            prefix: true,
            events: Mutex::default(),
        })
    }

    fn push(&self, service: &str, event: String) {
        let event = if self.prefix {
            format!("{service}: {event}")
        } else {
            event
        };
        self.events.lock().unwrap().push(event);
    }

    /// The events since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

impl Listener for Recorder {
    fn before_call(&self, service: &str) {
        self.push(service, "before_call".into());
    }
    fn on_success(&self, service: &str) {
        self.push(service, "success".into());
    }
    fn on_failure(&self, service: &str, error: &dyn Debug) {
        self.push(service, format!("failure({error:?})"));
    }
    fn on_rejected(&self, service: &str) {
        self.push(service, "rejected".into());
    }
    fn on_state_change(&self, service: &str, from: State, to: State) {
        self.push(service, format!("{from} -> {to}"));
    }
}

/// Panics in every hook.
struct Panicker;

impl Listener for Panicker {
    fn before_call(&self, _: &str) {
        panic!("listener panic: before_call");
    }
    fn on_success(&self, _: &str) {
        panic!("listener panic: on_success");
    }
    fn on_failure(&self, _: &str, _: &dyn Debug) {
        panic!("listener panic: on_failure");
    }
    fn on_rejected(&self, _: &str) {
        panic!("listener panic: on_rejected");
    }
    fn on_state_change(&self, _: &str, _: State, _: State) {
        panic!("listener panic: on_state_change");
    }
}

/// A breaker with `fail_max` and a recorder attached.
async fn recorded(service: &'static str, fail_max: u32) -> (infuse::Breaker, Arc<Recorder>) {
    let b = breaker_with(
        service,
        ServiceOverride::new()
            .fail_max(fail_max)
            .reset_timeout(RESET),
    )
    .await;
    let recorder = Recorder::new();
    b.add_listener(recorder.clone());
    (b, recorder)
}

fn events(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn success_path() {
    let (b, rec) = recorded("lst-success", 3).await;
    assert_eq!(b.call(ok(1)).await, Ok(1));
    assert_eq!(rec.take(), events(&["before_call", "success"]));
    // After failures, the success that resets the counter fires the same events.
    let _ = b.call(boom()).await;
    rec.take();
    assert_eq!(b.call(ok(1)).await, Ok(1));
    assert_eq!(rec.take(), events(&["before_call", "success"]));
}

#[tokio::test(start_paused = true)]
async fn failure_path() {
    let (b, rec) = recorded("lst-failure", 3).await;
    assert_eq!(b.call(boom()).await, Err(TestError::Boom));
    assert_eq!(rec.take(), events(&["before_call", "failure(Boom)"]));
}

#[tokio::test(start_paused = true)]
async fn trip() {
    let (b, rec) = recorded("lst-trip", 2).await;
    let _ = b.call(boom()).await;
    rec.take();
    let _ = b.call(boom()).await;
    assert_eq!(
        rec.take(),
        events(&["before_call", "failure(Boom)", "closed -> open"])
    );
    // With error_on_trip the events are the same.
    b.close().await.unwrap();
    let options = CallOptions::new().error_on_trip(true);
    let _ = b.call_with(options, boom()).await;
    rec.take();
    let r = b.call_with(options, boom()).await;
    assert!(matches!(
        r,
        Err(TestError::Breaker(BreakerError::Tripped { .. }))
    ));
    assert_eq!(
        rec.take(),
        events(&["before_call", "failure(Boom)", "closed -> open"])
    );
}

#[tokio::test(start_paused = true)]
async fn rejection_fires_only_on_rejected() {
    let (b, rec) = recorded("lst-rejected", 1).await;
    let _ = b.call(boom()).await;
    rec.take();
    for _ in 0..3 {
        let r = b.call(ok(1)).await;
        assert!(matches!(
            r,
            Err(TestError::Breaker(BreakerError::Open { .. }))
        ));
    }
    assert!(b.acquire().await.is_err());
    assert_eq!(
        rec.take(),
        events(&["rejected", "rejected", "rejected", "rejected"])
    );
}

#[tokio::test(start_paused = true)]
async fn time_passing_and_reads_fire_nothing() {
    let (b, rec) = recorded("lst-lazy", 1).await;
    let _ = b.call(boom()).await;
    rec.take();
    tokio::time::advance(RESET * 3).await;
    assert_eq!(b.state().await.unwrap(), State::Open);
    let _ = b.snapshot().await.unwrap();
    let _ = b.fail_counter().await.unwrap();
    assert_eq!(rec.take(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn trial_success() {
    let (b, rec) = recorded("lst-trial-ok", 1).await;
    let _ = b.call(boom()).await;
    rec.take();
    tokio::time::advance(RESET).await;
    assert_eq!(b.call(ok(1)).await, Ok(1));
    // As pybreaker: the open state's call moves to half-open (state_change), then the
    // trial runs (before_call); closing is notified before on_success.
    assert_eq!(
        rec.take(),
        events(&[
            "open -> half-open",
            "before_call",
            "half-open -> closed",
            "success",
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn trial_failure() {
    let (b, rec) = recorded("lst-trial-fail", 1).await;
    let _ = b.call(boom()).await;
    rec.take();
    tokio::time::advance(RESET).await;
    let _ = b.call(boom()).await;
    assert_eq!(
        rec.take(),
        events(&[
            "open -> half-open",
            "before_call",
            "failure(Boom)",
            "half-open -> open",
        ])
    );
    // And rejected again afterwards.
    let _ = b.call(ok(1)).await;
    assert_eq!(rec.take(), events(&["rejected"]));
}

#[tokio::test(start_paused = true)]
async fn trials_below_the_success_threshold() {
    let b = breaker_with(
        "lst-threshold",
        ServiceOverride::new()
            .fail_max(1)
            .reset_timeout(RESET)
            .success_threshold(2),
    )
    .await;
    let rec = Recorder::new();
    b.add_listener(rec.clone());
    let _ = b.call(boom()).await;
    rec.take();
    tokio::time::advance(RESET).await;
    assert_eq!(b.call(ok(1)).await, Ok(1));
    assert_eq!(
        rec.take(),
        events(&["open -> half-open", "before_call", "success"])
    );
    assert_eq!(b.call(ok(2)).await, Ok(2));
    assert_eq!(
        rec.take(),
        events(&["before_call", "half-open -> closed", "success"])
    );
}

#[tokio::test(start_paused = true)]
async fn excluded_errors_fire_success() {
    let (b, rec) = recorded("lst-excluded", 1).await;
    let options = CallOptions::new().exclude(not_found);
    let r = b
        .call_with(options, async { Err::<u32, _>(TestError::NotFound) })
        .await;
    assert_eq!(r, Err(TestError::NotFound));
    assert_eq!(rec.take(), events(&["before_call", "success"]));
    // In half-open, the excluded error closes like a success.
    let _ = b.call(boom()).await;
    rec.take();
    tokio::time::advance(RESET).await;
    let r = b
        .call_with(options, async { Err::<u32, _>(TestError::NotFound) })
        .await;
    assert_eq!(r, Err(TestError::NotFound));
    assert_eq!(
        rec.take(),
        events(&[
            "open -> half-open",
            "before_call",
            "half-open -> closed",
            "success",
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn skipped_calls_fire_nothing() {
    let (b, rec) = recorded("lst-skip", 1).await;
    let _ = infuse::skip_breaker(b.call(boom())).await;
    let _ = infuse::skip_breaker(b.call(ok(1))).await;
    assert_eq!(rec.take(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn permits_fire_the_same_events() {
    let (b, rec) = recorded("lst-permit", 2).await;
    let permit = b.acquire().await.unwrap();
    assert_eq!(rec.take(), events(&["before_call"]));
    drop(permit);
    assert_eq!(
        rec.take(),
        Vec::<String>::new(),
        "an unreported permit fires nothing more"
    );
    let permit = b.acquire().await.unwrap();
    assert_eq!(permit.failure(&"io error").await, Verdict::Counted);
    assert_eq!(
        rec.take(),
        events(&["before_call", "failure(\"io error\")"])
    );

    // A stale failure is still shown to listeners, without a state change.
    let stale = b.acquire().await.unwrap();
    let _ = b.call(boom()).await; // trips
    rec.take();
    assert_eq!(stale.failure(&TestError::Boom).await, Verdict::Ignored);
    assert_eq!(rec.take(), events(&["failure(Boom)"]));
}

#[tokio::test(start_paused = true)]
async fn manual_transitions_always_notify() {
    let (b, rec) = recorded("lst-manual", 5).await;
    b.close().await.unwrap();
    b.open().await.unwrap();
    b.open().await.unwrap();
    b.half_open().await.unwrap();
    b.half_open().await.unwrap();
    b.close().await.unwrap();
    b.half_open().await.unwrap();
    b.open().await.unwrap();
    b.close().await.unwrap();
    assert_eq!(
        rec.take(),
        events(&[
            "closed -> closed",
            "closed -> open",
            "open -> open",
            "open -> half-open",
            "half-open -> half-open",
            "half-open -> closed",
            "closed -> half-open",
            "half-open -> open",
            "open -> closed",
        ])
    );
    // Forcing an open breaker whose timeout passed reports it as open (lazy half-open).
    b.open().await.unwrap();
    tokio::time::advance(RESET).await;
    rec.take();
    b.close().await.unwrap();
    assert_eq!(rec.take(), events(&["open -> closed"]));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_listener_breaks_nothing() {
    let b = breaker_with(
        "lst-panic",
        ServiceOverride::new().fail_max(2).reset_timeout(RESET),
    )
    .await;
    b.add_listener(Arc::new(Panicker));
    let rec = Recorder::new();
    b.add_listener(rec.clone()); // after the panicking one: still called

    assert_eq!(b.call(ok(1)).await, Ok(1));
    assert_eq!(b.call(boom()).await, Err(TestError::Boom));
    assert_eq!(b.call(boom()).await, Err(TestError::Boom));
    assert_eq!(b.state().await.unwrap(), State::Open);
    let r = b.call(ok(1)).await;
    assert!(matches!(
        r,
        Err(TestError::Breaker(BreakerError::Open { .. }))
    ));
    tokio::time::advance(RESET).await;
    assert_eq!(b.call(ok(2)).await, Ok(2));
    assert_eq!(b.state().await.unwrap(), State::Closed);
    b.open().await.unwrap();
    assert_eq!(b.state().await.unwrap(), State::Open);
    b.close().await.unwrap();
    assert_eq!(b.call(ok(3)).await, Ok(3));
    assert_eq!(
        rec.take(),
        events(&[
            "before_call",
            "success",
            "before_call",
            "failure(Boom)",
            "before_call",
            "failure(Boom)",
            "closed -> open",
            "rejected",
            "open -> half-open",
            "before_call",
            "half-open -> closed",
            "success",
            "closed -> open",
            "open -> closed",
            "before_call",
            "success",
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn config_listeners_apply_to_every_breaker_of_the_registry() {
    let rec = Recorder::with_service();
    let registry = Registry::new(
        Config::in_memory()
            .env_overrides(false)
            .listener(rec.clone())
            .service("lst-cfg-a", ServiceOverride::new().fail_max(1)),
    )
    .await
    .unwrap();
    let a = registry.breaker("lst-cfg-a");
    let b = registry.breaker("lst-cfg-b");
    assert_eq!(a.call(ok(1)).await, Ok(1));
    assert_eq!(b.call(boom()).await, Err(TestError::Boom));
    assert_eq!(a.call(boom()).await, Err(TestError::Boom));
    // A handle obtained again is the same breaker, with the listener once.
    assert_eq!(registry.breaker("lst-cfg-b").call(ok(2)).await, Ok(2));
    assert_eq!(
        rec.take(),
        events(&[
            "lst-cfg-a: before_call",
            "lst-cfg-a: success",
            "lst-cfg-b: before_call",
            "lst-cfg-b: failure(Boom)",
            "lst-cfg-a: before_call",
            "lst-cfg-a: failure(Boom)",
            "lst-cfg-a: closed -> open",
            "lst-cfg-b: before_call",
            "lst-cfg-b: success",
        ])
    );

    // `add_listener` on a handle reaches every handle of that service only.
    let only_b = Recorder::with_service();
    b.add_listener(only_b.clone());
    let _ = registry.breaker("lst-cfg-b").call(ok(3)).await;
    let _ = a.call(ok(3)).await;
    assert_eq!(
        only_b.take(),
        events(&["lst-cfg-b: before_call", "lst-cfg-b: success"])
    );
    assert_eq!(
        rec.take(),
        events(&[
            "lst-cfg-b: before_call",
            "lst-cfg-b: success",
            "lst-cfg-a: rejected",
        ])
    );

    // Another registry does not get this config's listeners.
    let other = Registry::new(Config::in_memory()).await.unwrap();
    let _ = other.breaker("lst-cfg-a").call(ok(1)).await;
    assert_eq!(rec.take(), Vec::<String>::new());
}

/// Records what shadow mode tells: would-be rejections (by kind), calls, transitions.
#[derive(Default)]
struct ShadowRecorder(Mutex<Vec<String>>);

impl ShadowRecorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Listener for ShadowRecorder {
    fn before_call(&self, _: &str) {
        self.0.lock().unwrap().push("before_call".into());
    }
    fn on_rejected(&self, _: &str) {
        self.0.lock().unwrap().push("rejected".into());
    }
    fn on_shadow_rejected(&self, _: &str, rejection: &BreakerError) {
        let kind = match rejection {
            BreakerError::Open { .. } => "open",
            BreakerError::ForcedOpen { .. } => "forced-open",
            BreakerError::TrialInFlight { .. } => "trial-in-flight",
            other => panic!("not a rejection: {other:?}"),
        };
        self.0
            .lock()
            .unwrap()
            .push(format!("shadow_rejected({kind})"));
    }
    fn on_transition(&self, t: &infuse::Transition) {
        let mark = if t.shadow { " (shadow)" } else { "" };
        self.0
            .lock()
            .unwrap()
            .push(format!("{} -> {}{mark}", t.from, t.to));
    }
}

/// Shadow mode: each call the breaker would reject (open, forced open, a trial in
/// flight) is told with its rejection and then runs as an admitted call; transitions
/// carry the mark; the results of those calls count for nothing (no new generation, no
/// second trip); a trial is still one call. Switched off, the breaker rejects again.
#[tokio::test(start_paused = true)]
async fn shadow_mode_tells_what_it_would_have_rejected_and_runs_it() {
    let b = breaker_with(
        "lst-shadow",
        ServiceOverride::new()
            .fail_max(1)
            .reset_timeout(RESET)
            .shadow(true),
    )
    .await;
    assert!(b.shadow());
    let rec = Arc::new(ShadowRecorder::default());
    b.add_listener(rec.clone());

    assert_eq!(b.call(boom()).await, Err(TestError::Boom));
    assert_eq!(
        rec.take(),
        events(&["before_call", "closed -> open (shadow)"])
    );
    let opened = b.snapshot().await.unwrap();
    assert_eq!(b.call(boom()).await, Err(TestError::Boom), "it ran");
    assert_eq!(b.call(ok(1)).await, Ok(1), "it ran");
    assert_eq!(
        rec.take(),
        events(&[
            "shadow_rejected(open)",
            "before_call",
            "shadow_rejected(open)",
            "before_call"
        ])
    );
    let still = b.snapshot().await.unwrap();
    assert_eq!(
        (still.state, still.generation, still.fail_counter),
        (State::Open, opened.generation, opened.fail_counter),
        "the calls that ran only in shadow mode counted for nothing"
    );

    // The open time ends: one call takes the trial; another, meanwhile, would be rejected.
    tokio::time::advance(RESET).await;
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let trial = {
        let b = b.clone();
        tokio::spawn(async move {
            b.call(async move {
                let _ = held.await;
                Ok::<u32, TestError>(7)
            })
            .await
        })
    };
    while b.snapshot().await.unwrap().state != State::HalfOpen {
        tokio::task::yield_now().await;
    }
    assert_eq!(b.call(ok(2)).await, Ok(2));
    release.send(()).unwrap();
    assert_eq!(trial.await.unwrap(), Ok(7));
    assert_eq!(b.snapshot().await.unwrap().state, State::Closed);
    assert_eq!(
        rec.take(),
        events(&[
            "open -> half-open (shadow)",
            "before_call",
            "shadow_rejected(trial-in-flight)",
            "before_call",
            "half-open -> closed (shadow)"
        ])
    );

    b.force_open().await.unwrap();
    assert_eq!(b.call(ok(3)).await, Ok(3));
    assert_eq!(b.would_reject(), 4);
    rec.take();

    b.set_shadow(false).await.unwrap();
    assert!(!b.shadow());
    assert!(matches!(
        b.call(ok(4)).await,
        Err(TestError::Breaker(BreakerError::ForcedOpen { .. }))
    ));
    assert_eq!(rec.take(), events(&["rejected"]));
    assert_eq!(b.would_reject(), 4);
}
