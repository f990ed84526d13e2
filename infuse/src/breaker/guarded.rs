//! The future of one guarded call.
//!
//! Hand-written rather than an `async fn`: on its first poll it decides the fast paths
//! (closed: run; open: reject) from the local view without awaiting anything, and only
//! the slow paths — the trial slot, a first load of the shared state, a store round trip
//! after the call — are boxed futures, built out of line. An `async fn` would carry every
//! slow path's state in every call's future and pay for it on every call.
//!
//! The slow paths own a handle to the breaker (an `Arc`), so a `Guarded` borrows
//! nothing but what its breaker parameter `B` does: `Guarded<&Breaker, …>` for the
//! attribute and [`Breaker::call`], `Guarded<Breaker, …>` (`'static`) for
//! [`Breaker::call_owned`].

use std::borrow::Borrow;
use std::future::Future;
use std::mem::{self, ManuallyDrop};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::breaker::admission::PermitKind;
use crate::breaker::counting::Counted;
use crate::breaker::options::{CallOptions, GuardedResult};
use crate::breaker::permit::Permit;
use crate::breaker::shared::{Breaker, Shared};
use crate::breaker::skip;
use crate::core::{BreakerError, TrialToken, Verdict};
use crate::local::{sleep_until, Admit, CallOutcome, CAP, CLOCK, COUNT, TIME};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project_lite::pin_project! {
    /// A call running through a breaker: the future returned by [`Breaker::call`],
    /// [`Breaker::call_with`], [`Breaker::guard`] and [`Breaker::call_owned`].
    ///
    /// Dropping it mid-call counts as neither success nor failure, and frees the trial
    /// slot if this call held it.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Guarded<B, R, F>
    where
        B: Borrow<Breaker>,
        R: GuardedResult,
    {
        breaker: B,
        options: CallOptions<R::Err>,
        #[pin]
        future: F,
        // Dropped by hand (`PinnedDrop`), so that dropping a finished call is one tag
        // check rather than the drop glue of every slow phase.
        phase: ManuallyDrop<Phase<R>>,
    }

    impl<B, R, F> PinnedDrop for Guarded<B, R, F>
    where
        B: Borrow<Breaker>,
        R: GuardedResult,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            match **this.phase {
                Phase::Trial { token } => {
                    Borrow::<Breaker>::borrow(&*this.breaker).cell.release_abandoned_trial(token);
                }
                Phase::Capped { .. } => {
                    Borrow::<Breaker>::borrow(&*this.breaker).cell.give_cap_back();
                }
                Phase::Slow(ref slow) => {
                    if let Slow::Timed(Timed { kind, capped, .. }) = **slow {
                        let cell = &Borrow::<Breaker>::borrow(&*this.breaker).cell;
                        if let PermitKind::Trial { token } = kind {
                            cell.release_abandoned_trial(token);
                        }
                        if capped {
                            cell.give_cap_back();
                        }
                    }
                    set(this.phase, Phase::Done)
                }
                _ => {}
            }
        }
    }
}

/// Where a guarded call stands. The fast paths only ever use the phases before `Trial`,
/// which own nothing: dropping a call in one of them is one tag comparison (hence the
/// explicit tag, in this order).
#[repr(u8)]
enum Phase<R: GuardedResult> {
    /// Not polled yet: admission happens on the first poll, inside the caller's task.
    Start,
    /// Inside `skip_breaker`: the call runs unchecked.
    Bypass,
    Done,
    /// Admitted at `generation`: the call runs.
    Running {
        generation: u64,
    },
    /// Admitted at `generation`, and measured for listeners: the call runs since `start`.
    /// No timer, nothing boxed.
    Clocked {
        generation: u64,
        start: Instant,
    },
    /// The trial call runs (its slot is given back if it is dropped).
    Trial {
        token: TrialToken,
    },
    /// Admitted at `generation` holding a permit of the concurrency cap (given back when
    /// the call ends or is dropped): the call runs. No timer, nothing boxed.
    Capped {
        generation: u64,
    },
    /// Waiting on the store (admission, or recording the outcome).
    Slow(Box<Slow<R>>),
}

/// The phases that wait on the store, boxed out of the call's future.
enum Slow<R: GuardedResult> {
    /// Waiting for the trial slot or the shared state.
    Admitting(BoxFuture<Result<PermitKind, BreakerError>>),
    /// Admitted as `kind`, waiting for a permit of the concurrency cap (`max_wait`);
    /// listeners are told of the call once it has one if `tell`. It answers whether the
    /// call holds one (in shadow mode, a saturated call runs without).
    CapWaiting(BoxFuture<Result<bool, BreakerError>>, PermitKind, bool),
    /// Admitted, and running under a clock: a timeout, or a slow-call rule.
    Timed(Timed),
    /// The call succeeded (or failed with an excluded error); recording it needs the store.
    Settling(BoxFuture<()>, Option<R>),
    /// The call failed; recording it needs the store.
    Failing(BoxFuture<Verdict>, Option<R>),
}

/// A call that is timed.
struct Timed {
    kind: PermitKind,
    /// It holds a permit of the concurrency cap.
    capped: bool,
    start: Instant,
    /// The breaker's `slow_call`, read once with the limit.
    slow_call: Option<Duration>,
    /// The call's limit and its timer (none: no limit, or no timer can be armed here).
    limit: Option<(Duration, Pin<Box<Sleep>>)>,
}

/// What timing a call found.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    /// It took `slow_call` or longer.
    slow: bool,
    /// It reached its limit and was dropped.
    timed_out: bool,
    /// How long it ran, when measured.
    elapsed: Option<Duration>,
}

impl<B: Borrow<Breaker>, R: GuardedResult, F> Guarded<B, R, F> {
    pub(crate) fn new(breaker: B, options: CallOptions<R::Err>, future: F) -> Self {
        Guarded {
            breaker,
            options,
            future,
            phase: ManuallyDrop::new(Phase::Start),
        }
    }
}

impl<B, R, F> Future for Guarded<B, R, F>
where
    B: Borrow<Breaker>,
    R: GuardedResult,
    F: Future<Output = R>,
{
    type Output = R;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let mut this = self.project();
        let cell = &(*this.breaker).borrow().cell;
        if let Phase::Start = **this.phase {
            if skip::is_skipping() {
                set(this.phase, Phase::Bypass);
            } else {
                match cell.view.admit() {
                    Admit::Pass(generation) => {
                        let measure = cell.measure();
                        if measure & !COUNT != 0 {
                            if measure == CAP && cell.take_cap_now() {
                                // The healthy path of a capped breaker: a permit taken with
                                // one atomic operation, held by the phase (so a drop or a
                                // panic gives it back) until the call ends.
                                set(this.phase, Phase::Capped { generation });
                                let Poll::Ready(output) = this.future.as_mut().poll(cx) else {
                                    return Poll::Pending;
                                };
                                set(this.phase, Phase::Done);
                                cell.give_cap_back();
                                if output.as_result().is_ok() && !cell.view.dirty() {
                                    return Poll::Ready(output);
                                }
                                let kind = PermitKind::Normal { generation };
                                match settle(cell, this.options, kind, output, Measured::default())
                                {
                                    Ok(done) => return Poll::Ready(done),
                                    Err(phase) => set(this.phase, phase),
                                }
                            } else {
                                set(this.phase, told(cell, generation));
                            }
                        } else {
                            // The healthy path: no listener to tell, nothing to time. Run,
                            // and settle at once when nothing has to be recorded (or only
                            // counted, with a rate rule). The output goes back untouched,
                            // and the phase stays `Start` (it owns nothing): polling a
                            // finished call again polls a finished future, which is the
                            // caller's bug either way.
                            let Poll::Ready(output) = this.future.as_mut().poll(cx) else {
                                set(this.phase, Phase::Running { generation });
                                return Poll::Pending;
                            };
                            if output.as_result().is_ok() {
                                if measure == COUNT {
                                    cell.count_success(false);
                                    return Poll::Ready(output);
                                }
                                // No failure to reset (at any generation: `settle` tells).
                                if !cell.view.dirty() {
                                    return Poll::Ready(output);
                                }
                            }
                            set(this.phase, Phase::Done);
                            let kind = PermitKind::Normal { generation };
                            match settle(cell, this.options, kind, output, Measured::default()) {
                                Ok(done) => return Poll::Ready(done),
                                Err(phase) => set(this.phase, phase),
                            }
                        }
                    }
                    Admit::RejectOpen(until) => match cell.refuse_open(until) {
                        // Shadow mode: it runs.
                        Ok(kind) => set(this.phase, running(cell, kind)),
                        Err(rejected) => {
                            set(this.phase, Phase::Done);
                            return Poll::Ready(R::from_result(Err(rejected.into())));
                        }
                    },
                    other => match cell.admit_other(other) {
                        Ok(Some(kind)) => set(this.phase, admitted(cell, kind)),
                        Ok(None) => set(this.phase, admitting(cell)),
                        Err(rejected) => {
                            set(this.phase, Phase::Done);
                            return Poll::Ready(R::from_result(Err(rejected.into())));
                        }
                    },
                }
            }
        }
        poll_phase(cell, this.options, this.future, this.phase, cx)
    }
}

/// Moves to the `next` phase. The fast phases own nothing, so the old one is dropped by
/// hand, and only a slow one (boxed) pays for drop glue.
#[inline(always)]
fn set<R: GuardedResult>(phase: &mut Phase<R>, next: Phase<R>) {
    match mem::replace(phase, next) {
        Phase::Slow(slow) => drop_slow(slow),
        fast => mem::forget(fast),
    }
}

#[cold]
#[inline(never)]
fn drop_slow<R: GuardedResult>(slow: Box<Slow<R>>) {
    drop(slow);
}

/// Every phase after the first poll.
#[inline(never)]
fn poll_phase<R: GuardedResult, F: Future<Output = R>>(
    cell: &Arc<Shared>,
    options: &CallOptions<R::Err>,
    mut future: Pin<&mut F>,
    phase: &mut Phase<R>,
    cx: &mut Context<'_>,
) -> Poll<R> {
    loop {
        match phase {
            Phase::Start => unreachable!("admission runs on the first poll"),
            Phase::Bypass => return future.poll(cx),
            Phase::Running { .. } | Phase::Trial { .. } => {
                let kind = match *phase {
                    Phase::Trial { token } => PermitKind::Trial { token },
                    Phase::Running { generation } => PermitKind::Normal { generation },
                    _ => unreachable!("matched above"),
                };
                let output = ready!(future.as_mut().poll(cx));
                set(phase, Phase::Done); // the permit is settled below, not released on drop
                match settle(cell, options, kind, output, Measured::default()) {
                    Ok(done) => return Poll::Ready(done),
                    Err(next) => set(phase, next),
                }
            }
            Phase::Capped { generation } => {
                let generation = *generation;
                let output = ready!(future.as_mut().poll(cx));
                set(phase, Phase::Done);
                cell.give_cap_back();
                let kind = PermitKind::Normal { generation };
                match settle(cell, options, kind, output, Measured::default()) {
                    Ok(done) => return Poll::Ready(done),
                    Err(next) => set(phase, next),
                }
            }
            Phase::Clocked { generation, start } => {
                let (generation, start) = (*generation, *start);
                let output = ready!(future.as_mut().poll(cx));
                let measured = Measured {
                    elapsed: Some(start.elapsed()),
                    ..Measured::default()
                };
                set(phase, Phase::Done);
                let kind = PermitKind::Normal { generation };
                match settle(cell, options, kind, output, measured) {
                    Ok(done) => return Poll::Ready(done),
                    Err(next) => set(phase, next),
                }
            }
            Phase::Slow(slow) if matches!(**slow, Slow::Timed(_)) => {
                let Slow::Timed(timed) = &mut **slow else {
                    unreachable!("matched above")
                };
                let (kind, measured, output) = match future.as_mut().poll(cx) {
                    Poll::Ready(output) => {
                        // The clock is read only if a rule or a listener needs it.
                        let elapsed = (timed.slow_call.is_some() || cell.measure() & CLOCK != 0)
                            .then(|| timed.start.elapsed());
                        let measured = Measured {
                            slow: timed.slow_call.zip(elapsed).is_some_and(|(s, e)| e >= s),
                            timed_out: false,
                            elapsed,
                        };
                        (timed.kind, measured, output)
                    }
                    Poll::Pending => {
                        let Some((limit, sleep)) = &mut timed.limit else {
                            return Poll::Pending;
                        };
                        ready!(sleep.as_mut().poll(cx));
                        let error = BreakerError::Timeout {
                            service: cell.service,
                            after: *limit,
                        };
                        let measured = Measured {
                            slow: true,
                            timed_out: true,
                            elapsed: Some(timed.start.elapsed()),
                        };
                        (timed.kind, measured, R::from_result(Err(error.into())))
                    }
                };
                if timed.capped {
                    cell.give_cap_back();
                }
                set(phase, Phase::Done); // the permit is settled below
                match settle(cell, options, kind, output, measured) {
                    Ok(done) => return Poll::Ready(done),
                    Err(next) => set(phase, next),
                }
            }
            Phase::Slow(slow) => match &mut **slow {
                Slow::Timed(_) => unreachable!("polled above"),
                Slow::Admitting(admitting) => match ready!(admitting.as_mut().poll(cx)) {
                    Ok(kind) => set(phase, admitted(cell, kind)),
                    Err(rejected) => {
                        set(phase, Phase::Done);
                        return Poll::Ready(R::from_result(Err(rejected.into())));
                    }
                },
                Slow::CapWaiting(waiting, kind, tell) => match ready!(waiting.as_mut().poll(cx)) {
                    Ok(true) => {
                        let (kind, tell) = (*kind, *tell);
                        if tell {
                            cell.listeners.before_call(cell.service);
                        }
                        set(phase, holding(cell, kind));
                    }
                    // Shadow mode: saturated, it runs without a permit (listeners told).
                    Ok(false) => {
                        let kind = *kind;
                        set(phase, running(cell, kind));
                    }
                    Err(rejected) => {
                        set(phase, Phase::Done);
                        return Poll::Ready(R::from_result(Err(rejected.into())));
                    }
                },
                Slow::Settling(settling, output) => {
                    ready!(settling.as_mut().poll(cx));
                    let output = output.take().expect("output kept until settled");
                    set(phase, Phase::Done);
                    return Poll::Ready(output);
                }
                Slow::Failing(failing, output) => {
                    let verdict = ready!(failing.as_mut().poll(cx));
                    let output = output.take().expect("output kept until settled");
                    set(phase, Phase::Done);
                    return Poll::Ready(after_failure(cell, options, verdict, output));
                }
            },
            Phase::Done => panic!("a guarded call was polled after it completed"),
        }
    }
}

/// Starts waiting for the store's word on admission.
#[cold]
#[inline(never)]
fn admitting<R: GuardedResult>(cell: &Arc<Shared>) -> Phase<R> {
    let cell = cell.clone();
    let admitting = Box::pin(async move { cell.admit_slow().await });
    Phase::Slow(Box::new(Slow::Admitting(admitting)))
}

/// The phase of a call admitted at `generation` that listeners are told of, or that is
/// measured.
#[cold]
#[inline(never)]
fn told<R: GuardedResult>(cell: &Arc<Shared>, generation: u64) -> Phase<R> {
    let kind = PermitKind::Normal { generation };
    if cell.measure() & CAP != 0 {
        return capped(cell, kind, true);
    }
    cell.listeners.before_call(cell.service);
    running(cell, kind)
}

/// The phase of a call the breaker admitted (listeners told): running, once it holds a
/// permit of the concurrency cap if one is set. A trial takes no permit: it is one call
/// for the whole fleet.
fn admitted<R: GuardedResult>(cell: &Arc<Shared>, kind: PermitKind) -> Phase<R> {
    match kind {
        PermitKind::Normal { .. } if cell.measure() & CAP != 0 => capped(cell, kind, false),
        _ => running(cell, kind),
    }
}

/// Takes a permit of the concurrency cap for an admitted call: now if one is free, else
/// waiting (`max_wait`) in a boxed phase. Listeners are told of the call once it has one
/// if `tell`.
#[cold]
#[inline(never)]
fn capped<R: GuardedResult>(cell: &Arc<Shared>, kind: PermitKind, tell: bool) -> Phase<R> {
    if cell.take_cap_now() {
        if tell {
            cell.listeners.before_call(cell.service);
        }
        return holding(cell, kind);
    }
    let waiting = {
        let cell = cell.clone();
        Box::pin(async move { cell.take_cap().await })
    };
    Phase::Slow(Box::new(Slow::CapWaiting(waiting, kind, tell)))
}

/// The phase of an ordinary call holding a permit of the concurrency cap: timed (boxed)
/// when it is measured, else `Capped`.
fn holding<R: GuardedResult>(cell: &Shared, kind: PermitKind) -> Phase<R> {
    let phase = match running(cell, kind) {
        Phase::Running { generation } => return Phase::Capped { generation },
        // Only a timed phase has room to say it holds a permit.
        Phase::Clocked { .. } => timed(cell, kind),
        other => other,
    };
    match phase {
        Phase::Slow(mut slow) => {
            if let Slow::Timed(timed) = &mut *slow {
                timed.capped = true;
            }
            Phase::Slow(slow)
        }
        other => other,
    }
}

/// A failed call's output: its own, or with `error_on_trip`, the breaker's word that this
/// failure opened it.
fn after_failure<R: GuardedResult>(
    cell: &Shared,
    options: &CallOptions<R::Err>,
    verdict: Verdict,
    output: R,
) -> R {
    let service = cell.service;
    let replaced = match (verdict, options.error_on_trip) {
        (Verdict::Tripped, true) => BreakerError::Tripped { service },
        (Verdict::TrialFailed, true) => BreakerError::TrialFailed { service },
        _ => return output,
    };
    R::from_result(Err(replaced.into()))
}

/// The phase of an admitted call: timed when a limit or a slow-call rule applies to it,
/// clocked when only listeners want its duration.
fn running<R: GuardedResult>(cell: &Shared, kind: PermitKind) -> Phase<R> {
    let measure = cell.measure();
    match kind {
        PermitKind::Trial { token } => {
            let settings = cell.settings();
            if settings.trial_limit().is_some()
                || settings.slow_call.is_some()
                || measure & CLOCK != 0
            {
                timed(cell, kind)
            } else {
                Phase::Trial { token }
            }
        }
        _ if measure & (TIME | CLOCK) != 0 => measured(cell, kind, measure),
        PermitKind::Normal { generation } => Phase::Running { generation },
        PermitKind::Settled => Phase::Done,
    }
}

/// The phase of an ordinary call that is measured: timed (a limit, a slow-call rule), or
/// only clocked for listeners.
#[cold]
#[inline(never)]
fn measured<R: GuardedResult>(cell: &Shared, kind: PermitKind, measure: u8) -> Phase<R> {
    match kind {
        PermitKind::Normal { generation } if measure & TIME == 0 => Phase::Clocked {
            generation,
            start: Instant::now(),
        },
        _ => timed(cell, kind),
    }
}

/// Starts the clock of a timed call (and its timer, when it has a limit).
#[cold]
#[inline(never)]
fn timed<R: GuardedResult>(cell: &Shared, kind: PermitKind) -> Phase<R> {
    let settings = cell.settings();
    let limit = match kind {
        PermitKind::Trial { .. } => settings.trial_limit(),
        _ => settings.timeout,
    };
    let start = Instant::now();
    let limit = limit.and_then(|limit| Some((limit, sleep_until(start + limit)?)));
    Phase::Slow(Box::new(Slow::Timed(Timed {
        kind,
        capped: false,
        start,
        slow_call: settings.slow_call,
        limit,
    })))
}

/// Records the call's outcome: at once when no store round trip is needed (`Ok`: the
/// output), else by moving to a settling phase (`Err`: the phase to poll).
///
/// An error the `ignore` predicate accepts counts as nothing (a trial gives its slot
/// back); a timeout always counts as a failure; an excluded error counts as a success.
/// With a rate rule, an ordinary call's outcome is counted into the tally (reported to
/// the store in batches) rather than sent on its own.
#[cold]
#[inline(never)]
fn settle<R: GuardedResult>(
    cell: &Arc<Shared>,
    options: &CallOptions<R::Err>,
    kind: PermitKind,
    output: R,
    measured: Measured,
) -> Result<R, Phase<R>> {
    let counted = match kind {
        PermitKind::Normal { generation } if cell.measure() & COUNT != 0 => Some(generation),
        _ => None,
    };
    let ended = if measured.timed_out {
        CallOutcome::Timeout
    } else {
        CallOutcome::Failure
    };
    let failed = match output.as_result() {
        Err(_) if measured.timed_out => true,
        Err(error) if options.is_ignored(error) => {
            if let PermitKind::Trial { token } = kind {
                cell.release_abandoned_trial(token); // the slot goes back
            }
            cell.listeners.ignored(cell.service, measured.elapsed);
            return Ok(output);
        }
        Err(error) => !options.is_excluded(error),
        Ok(_) => false,
    };
    match (output.as_result(), counted) {
        (Err(error), Some(generation)) if failed => {
            cell.listeners
                .failed(cell.service, error, ended, measured.elapsed);
            match cell.count_failure(generation, measured.slow) {
                Counted::Done(verdict) => Ok(after_failure(cell, options, verdict, output)),
                Counted::Reporting(reporting) => Err(Phase::Slow(Box::new(Slow::Failing(
                    reporting,
                    Some(output),
                )))),
            }
        }
        (Err(error), None) if failed => {
            // Listeners see the error now; the recording does not borrow it.
            let failing = Permit::new(Breaker { cell: cell.clone() }, kind).failure_ended(
                error,
                ended,
                measured.elapsed,
            );
            Err(Phase::Slow(Box::new(Slow::Failing(
                Box::pin(failing),
                Some(output),
            ))))
        }
        // A success, or an excluded error (which counts as one).
        (_, Some(_)) => {
            cell.count_success(measured.slow);
            cell.listeners.succeeded(cell.service, measured.elapsed);
            Ok(output)
        }
        (_, None) => match kind {
            PermitKind::Normal { generation } if !cell.view.needs_reset(generation) => {
                cell.listeners.succeeded(cell.service, measured.elapsed);
                Ok(output)
            }
            _ => Err(Phase::Slow(Box::new(Slow::Settling(
                Box::pin(
                    Permit::new(Breaker { cell: cell.clone() }, kind)
                        .success_ended(measured.elapsed),
                ),
                Some(output),
            )))),
        },
    }
}
