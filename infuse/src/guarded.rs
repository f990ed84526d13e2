//! The future of one guarded call.
//!
//! Hand-written rather than an `async fn`: on its first poll it decides the fast paths
//! (closed: run; open: reject) from the local view without awaiting anything, and only
//! the slow paths — the trial slot, a first load of the shared state, a store round trip
//! after the call — are boxed futures. An `async fn` would carry every slow path's state
//! in every call's future (over 2 KB) and pay for it on every call.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use crate::breaker::{Admission, Breaker, Permit, Verdict};
use crate::call::{CallOptions, GuardedResult};
use crate::{skip, BreakerError};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pin_project_lite::pin_project! {
    /// A call running through a breaker: the future returned by [`Breaker::call`],
    /// [`Breaker::call_with`] and [`Breaker::guard`].
    ///
    /// Dropping it mid-call counts as neither success nor failure, and frees the trial
    /// slot if this call held it.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Guarded<'a, R, F>
    where
        R: GuardedResult,
    {
        breaker: &'a Breaker,
        options: CallOptions<R::Err>,
        #[pin]
        future: F,
        phase: Phase<'a, R>,
    }
}

enum Phase<'a, R: GuardedResult> {
    /// Not polled yet: admission happens on the first poll, inside the caller's task.
    Start,
    /// Inside `skip_breaker`: the call runs unchecked.
    Bypass,
    /// Waiting for the trial slot or the shared state.
    Admitting(BoxFuture<'a, Result<Permit<'a>, BreakerError>>),
    /// Admitted: the call runs.
    Running(Permit<'a>),
    /// The call succeeded (or failed with an excluded error); recording it needs the store.
    Settling(BoxFuture<'a, ()>, Option<Result<R::Ok, R::Err>>),
    /// The call failed; recording it needs the store.
    Failing(BoxFuture<'a, Verdict>, Option<R::Err>),
    Done,
}

impl<'a, R: GuardedResult, F> Guarded<'a, R, F> {
    pub(crate) fn new(breaker: &'a Breaker, options: CallOptions<R::Err>, future: F) -> Self {
        Guarded {
            breaker,
            options,
            future,
            phase: Phase::Start,
        }
    }
}

impl<'a, R, F> Future for Guarded<'a, R, F>
where
    R: GuardedResult,
    F: Future<Output = R>,
{
    type Output = R;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let mut this = self.project();
        if let Phase::Start = this.phase {
            // First poll, inside the caller's task: admission from the local view.
            if skip::is_skipping() {
                *this.phase = Phase::Bypass;
            } else {
                match this.breaker.admit_now() {
                    Admission::Pass(permit) => {
                        // The permit stays local unless the call has to wait.
                        let Poll::Ready(output) = this.future.as_mut().poll(cx) else {
                            *this.phase = Phase::Running(permit);
                            return Poll::Pending;
                        };
                        if let Some(done) = settle(this.options, this.phase, permit, output) {
                            return Poll::Ready(done);
                        }
                    }
                    Admission::Reject(rejected) => {
                        *this.phase = Phase::Done;
                        return Poll::Ready(R::from_result(Err(rejected.into())));
                    }
                    Admission::Slow => {
                        *this.phase = Phase::Admitting(Box::pin(this.breaker.acquire_slow()));
                    }
                }
            }
        }
        loop {
            match this.phase {
                Phase::Start => unreachable!("admission ran above"),
                Phase::Bypass => return this.future.poll(cx),
                Phase::Admitting(admitting) => match ready!(admitting.as_mut().poll(cx)) {
                    Ok(permit) => *this.phase = Phase::Running(permit),
                    Err(rejected) => {
                        *this.phase = Phase::Done;
                        return Poll::Ready(R::from_result(Err(rejected.into())));
                    }
                },
                Phase::Running(_) => {
                    let output = ready!(this.future.as_mut().poll(cx));
                    let Phase::Running(permit) = mem::replace(this.phase, Phase::Done) else {
                        unreachable!("matched Running above");
                    };
                    if let Some(done) = settle(this.options, this.phase, permit, output) {
                        return Poll::Ready(done);
                    }
                }
                Phase::Settling(settling, result) => {
                    ready!(settling.as_mut().poll(cx));
                    let result = result.take().expect("result kept until settled");
                    *this.phase = Phase::Done;
                    return Poll::Ready(R::from_result(result));
                }
                Phase::Failing(failing, error) => {
                    let verdict = ready!(failing.as_mut().poll(cx));
                    let error = error.take().expect("error kept until settled");
                    *this.phase = Phase::Done;
                    let service = this.breaker.service();
                    let replaced = match (verdict, this.options.error_on_trip) {
                        (Verdict::Tripped, true) => Some(BreakerError::Tripped { service }),
                        (Verdict::TrialFailed, true) => Some(BreakerError::TrialFailed { service }),
                        _ => None,
                    };
                    return Poll::Ready(R::from_result(Err(replaced.map_or(error, Into::into))));
                }
                Phase::Done => panic!("a guarded call was polled after it completed"),
            }
        }
    }
}

/// Records the call's outcome: at once when no store round trip is needed (returns the
/// output), else by moving to a settling phase (returns `None`; the caller polls on).
#[inline(always)]
fn settle<'a, R: GuardedResult>(
    options: &CallOptions<R::Err>,
    phase: &mut Phase<'a, R>,
    permit: Permit<'a>,
    output: R,
) -> Option<R> {
    match output.into_result() {
        Err(error) if !options.is_excluded(&error) => {
            // Listeners see the error now; the recording does not borrow it.
            *phase = Phase::Failing(Box::pin(permit.failure(&error)), Some(error));
            None
        }
        // A success, or an excluded error (which counts as one).
        result => match permit.success_now() {
            Ok(()) => {
                *phase = Phase::Done;
                Some(R::from_result(result))
            }
            Err(permit) => {
                *phase = Phase::Settling(Box::pin(permit.success()), Some(result));
                None
            }
        },
    }
}
