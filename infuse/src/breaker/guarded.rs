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
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use crate::breaker::handle::{Breaker, Verdict};
use crate::breaker::options::{CallOptions, GuardedResult};
use crate::breaker::permit::{Permit, PermitKind};
use crate::breaker::skip;
use crate::core::BreakerError;

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
        phase: Phase<R>,
    }

    impl<B, R, F> PinnedDrop for Guarded<B, R, F>
    where
        B: Borrow<Breaker>,
        R: GuardedResult,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Phase::Running(PermitKind::Trial { token }) = this.phase {
                Borrow::<Breaker>::borrow(&*this.breaker).release_abandoned_trial(*token);
            }
        }
    }
}

enum Phase<R: GuardedResult> {
    /// Not polled yet: admission happens on the first poll, inside the caller's task.
    Start,
    /// Inside `skip_breaker`: the call runs unchecked.
    Bypass,
    /// Waiting for the trial slot or the shared state.
    Admitting(BoxFuture<Result<PermitKind, BreakerError>>),
    /// Admitted: the call runs.
    Running(PermitKind),
    /// The call succeeded (or failed with an excluded error); recording it needs the store.
    Settling(BoxFuture<()>, Option<R>),
    /// The call failed; recording it needs the store.
    Failing(BoxFuture<Verdict>, Option<R>),
    Done,
}

impl<B: Borrow<Breaker>, R: GuardedResult, F> Guarded<B, R, F> {
    pub(crate) fn new(breaker: B, options: CallOptions<R::Err>, future: F) -> Self {
        Guarded {
            breaker,
            options,
            future,
            phase: Phase::Start,
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let mut this = self.project();
        if let Phase::Start = this.phase {
            if !skip::is_skipping() {
                let breaker: &Breaker = (*this.breaker).borrow();
                match breaker.admit_now() {
                    Ok(Some(kind)) => {
                        // The healthy path: run, and settle at once when nothing has to
                        // be recorded. The output goes back untouched.
                        let Poll::Ready(output) = this.future.as_mut().poll(cx) else {
                            *this.phase = Phase::Running(kind);
                            return Poll::Pending;
                        };
                        if let (Ok(_), PermitKind::Normal { generation }) =
                            (output.as_result(), kind)
                        {
                            if !breaker.cell.view.needs_reset(generation) {
                                *this.phase = Phase::Done;
                                breaker.emit_success();
                                return Poll::Ready(output);
                            }
                        }
                        match settle(breaker, this.options, kind, output) {
                            Ok(done) => {
                                *this.phase = Phase::Done;
                                return Poll::Ready(done);
                            }
                            Err(phase) => *this.phase = phase,
                        }
                    }
                    Ok(None) => *this.phase = admitting(breaker),
                    Err(rejected) => {
                        *this.phase = Phase::Done;
                        return Poll::Ready(R::from_result(Err(rejected.into())));
                    }
                }
            } else {
                *this.phase = Phase::Bypass;
            }
        }
        poll_phase(
            (*this.breaker).borrow(),
            this.options,
            this.future,
            this.phase,
            cx,
        )
    }
}

/// Every phase after the first poll.
#[inline(never)]
fn poll_phase<R: GuardedResult, F: Future<Output = R>>(
    breaker: &Breaker,
    options: &CallOptions<R::Err>,
    mut future: Pin<&mut F>,
    phase: &mut Phase<R>,
    cx: &mut Context<'_>,
) -> Poll<R> {
    loop {
        match phase {
            Phase::Start => unreachable!("admission runs on the first poll"),
            Phase::Bypass => return future.poll(cx),
            Phase::Admitting(admitting) => match ready!(admitting.as_mut().poll(cx)) {
                Ok(kind) => *phase = Phase::Running(kind),
                Err(rejected) => {
                    *phase = Phase::Done;
                    return Poll::Ready(R::from_result(Err(rejected.into())));
                }
            },
            Phase::Running(kind) => {
                let kind = *kind;
                let output = ready!(future.as_mut().poll(cx));
                *phase = Phase::Done; // the permit is settled below, not released on drop
                match settle(breaker, options, kind, output) {
                    Ok(done) => return Poll::Ready(done),
                    Err(next) => *phase = next,
                }
            }
            Phase::Settling(settling, output) => {
                ready!(settling.as_mut().poll(cx));
                let output = output.take().expect("output kept until settled");
                *phase = Phase::Done;
                return Poll::Ready(output);
            }
            Phase::Failing(failing, output) => {
                let verdict = ready!(failing.as_mut().poll(cx));
                let output = output.take().expect("output kept until settled");
                *phase = Phase::Done;
                let service = breaker.service();
                let replaced = match (verdict, options.error_on_trip) {
                    (Verdict::Tripped, true) => Some(BreakerError::Tripped { service }),
                    (Verdict::TrialFailed, true) => Some(BreakerError::TrialFailed { service }),
                    _ => None,
                };
                return Poll::Ready(match replaced {
                    Some(error) => R::from_result(Err(error.into())),
                    None => output,
                });
            }
            Phase::Done => panic!("a guarded call was polled after it completed"),
        }
    }
}

/// Starts waiting for the store's word on admission.
#[cold]
#[inline(never)]
fn admitting<R: GuardedResult>(breaker: &Breaker) -> Phase<R> {
    let breaker = breaker.clone();
    Phase::Admitting(Box::pin(async move { breaker.admit_slow().await }))
}

/// Records the call's outcome: at once when no store round trip is needed (`Ok`: the
/// output), else by moving to a settling phase (`Err`: the phase to poll).
#[cold]
#[inline(never)]
fn settle<R: GuardedResult>(
    breaker: &Breaker,
    options: &CallOptions<R::Err>,
    kind: PermitKind,
    output: R,
) -> Result<R, Phase<R>> {
    let permit = Permit::new(breaker.clone(), kind);
    match output.as_result() {
        Err(error) if !options.is_excluded(error) => {
            // Listeners see the error now; the recording does not borrow it.
            let failing = permit.failure(error);
            Err(Phase::Failing(Box::pin(failing), Some(output)))
        }
        // A success, or an excluded error (which counts as one).
        _ => match kind {
            PermitKind::Normal { generation } if !breaker.cell.view.needs_reset(generation) => {
                permit.into_kind();
                breaker.emit_success();
                Ok(output)
            }
            _ => Err(Phase::Settling(Box::pin(permit.success()), Some(output))),
        },
    }
}
