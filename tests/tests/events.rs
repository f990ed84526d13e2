//! What listeners learn beyond pybreaker's events: how each call ended and how long it
//! ran (`on_call_end`), and each transition's generation and reason (`on_transition`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use infuse::{
    BreakerError, CallOptions, CallOutcome, Listener, ServiceOverride, State, Transition,
    TransitionReason,
};

use infuse_tests::support::calls::{breaker_with, not_found, TestError, R};

const RESET: Duration = Duration::from_secs(10);

/// Records `on_call_end` and `on_transition`; wants durations when asked to.
#[derive(Default)]
struct Ends {
    durations: bool,
    ends: Mutex<Vec<(CallOutcome, Option<Duration>)>>,
    transitions: Mutex<Vec<Transition>>,
}

impl Ends {
    fn take_ends(&self) -> Vec<(CallOutcome, Option<Duration>)> {
        std::mem::take(&mut *self.ends.lock().unwrap())
    }
    fn take_transitions(&self) -> Vec<(State, State, TransitionReason)> {
        let all = std::mem::take(&mut *self.transitions.lock().unwrap());
        all.into_iter().map(|t| (t.from, t.to, t.reason)).collect()
    }
}

impl Listener for Ends {
    fn on_call_end(&self, _: &str, outcome: CallOutcome, duration: Option<Duration>) {
        self.ends.lock().unwrap().push((outcome, duration));
    }
    fn on_transition(&self, transition: &Transition) {
        self.transitions.lock().unwrap().push(*transition);
    }
    fn wants_durations(&self) -> bool {
        self.durations
    }
}

async fn attached(
    service: &'static str,
    overrides: ServiceOverride,
    durations: bool,
) -> (infuse::Breaker, Arc<Ends>) {
    let breaker = breaker_with(service, overrides).await;
    let ends = Arc::new(Ends {
        durations,
        ..Ends::default()
    });
    breaker.add_listener(ends.clone());
    (breaker, ends)
}

async fn sleepy(after: Duration, result: R) -> R {
    tokio::time::sleep(after).await;
    result
}

fn ignore_boom(e: &TestError) -> bool {
    matches!(e, TestError::Boom)
}

#[tokio::test(start_paused = true)]
async fn every_call_that_ran_ends_once_with_its_outcome() {
    let overrides = ServiceOverride::new()
        .fail_max(10)
        .timeout(Duration::from_secs(1));
    let (b, ends) = attached("ev-outcomes", overrides, false).await;
    let _ = b.call(async { Ok::<u32, TestError>(1) }).await;
    let _ = b
        .call(async { Err::<u32, TestError>(TestError::Boom) })
        .await;
    let _ = b
        .call_with(CallOptions::new().exclude(not_found), async {
            Err::<u32, _>(TestError::NotFound)
        })
        .await;
    let _ = b
        .call_with(CallOptions::new().ignore(ignore_boom), async {
            Err::<u32, _>(TestError::Boom)
        })
        .await;
    let timed_out = b.call(sleepy(Duration::from_secs(5), Ok(1))).await;
    assert!(matches!(
        timed_out,
        Err(TestError::Breaker(BreakerError::Timeout { .. }))
    ));
    let outcomes: Vec<CallOutcome> = ends.take_ends().into_iter().map(|(o, _)| o).collect();
    assert_eq!(
        outcomes,
        [
            CallOutcome::Success,
            CallOutcome::Failure,
            CallOutcome::Success, // an excluded error counts as a success
            CallOutcome::Ignored,
            CallOutcome::Timeout,
        ]
    );
    // Rejections do not end a call that ran: they fire `on_rejected` only.
    b.open().await.unwrap();
    let _ = b.call(async { Ok::<u32, TestError>(1) }).await;
    assert!(ends.take_ends().is_empty());
}

#[tokio::test(start_paused = true)]
async fn durations_are_measured_only_when_a_listener_wants_them() {
    let (plain, ends) = attached("ev-no-durations", ServiceOverride::new(), false).await;
    let _ = plain.call(sleepy(Duration::from_millis(250), Ok(1))).await;
    assert_eq!(ends.take_ends(), [(CallOutcome::Success, None)]);

    let (timed, ends) = attached(
        "ev-durations",
        ServiceOverride::new().fail_max(1).reset_timeout(RESET),
        true,
    )
    .await;
    let _ = timed.call(sleepy(Duration::from_millis(250), Ok(1))).await;
    let _ = timed
        .call(sleepy(Duration::from_millis(40), Err(TestError::Boom)))
        .await;
    // The trial call (half-open) is measured too.
    tokio::time::advance(RESET).await;
    let _ = timed.call(sleepy(Duration::from_millis(7), Ok(1))).await;
    let measured = ends.take_ends();
    assert_eq!(
        measured,
        [
            (CallOutcome::Success, Some(Duration::from_millis(250))),
            (CallOutcome::Failure, Some(Duration::from_millis(40))),
            (CallOutcome::Success, Some(Duration::from_millis(7))),
        ],
        "the paused clock makes durations exact"
    );
}

#[tokio::test(start_paused = true)]
async fn transitions_carry_their_reason_and_generation() {
    let (b, ends) = attached(
        "ev-reasons",
        ServiceOverride::new().fail_max(1).reset_timeout(RESET),
        false,
    )
    .await;
    let _ = b
        .call(async { Err::<u32, TestError>(TestError::Boom) })
        .await;
    tokio::time::advance(RESET).await;
    let _ = b
        .call(async { Err::<u32, TestError>(TestError::Boom) })
        .await; // the trial fails
    tokio::time::advance(RESET).await;
    let _ = b.call(async { Ok::<u32, TestError>(1) }).await; // the trial succeeds
    b.force_open().await.unwrap();
    b.close().await.unwrap();
    let seen: Vec<Transition> = ends.transitions.lock().unwrap().clone();
    let generations: Vec<u64> = seen.iter().map(|t| t.generation).collect();
    assert!(
        generations.windows(2).all(|w| w[0] <= w[1]),
        "{generations:?}"
    );
    assert_eq!(
        generations.last(),
        Some(&b.snapshot().await.unwrap().generation)
    );
    assert!(seen.iter().all(|t| t.service == "ev-reasons"));
    use State::*;
    use TransitionReason::*;
    assert_eq!(
        ends.take_transitions(),
        [
            (Closed, Open, ConsecutiveFailures),
            (Open, HalfOpen, OpenElapsed),
            (HalfOpen, Open, TrialFailed),
            (Open, HalfOpen, OpenElapsed),
            (HalfOpen, Closed, TrialSucceeded),
            (Closed, ForcedOpen, Manual),
            (ForcedOpen, Closed, Manual),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_rule_trip_is_told_as_tripped() {
    let overrides = ServiceOverride::new()
        .failure_rate(50)
        .min_calls(4)
        .reset_timeout(RESET);
    let (b, ends) = attached("ev-rate", overrides, false).await;
    for _ in 0..2 {
        let _ = b.call(async { Ok::<u32, TestError>(1) }).await;
        let _ = b
            .call(async { Err::<u32, TestError>(TestError::Boom) })
            .await;
    }
    assert_eq!(b.state().await.unwrap(), State::Open);
    assert_eq!(
        ends.take_transitions(),
        [(State::Closed, State::Open, TransitionReason::Tripped)]
    );
}
