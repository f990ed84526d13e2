//! This process's side of a breaker's retry budget (see `core/retry_budget.rs` for the
//! rule): in memory, the budget itself; with Redis, the tokens the fleet's budget granted
//! this process, and the first attempts it has yet to report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::core::retry_budget::{BudgetWindow, BUDGET_SECONDS};
use crate::core::Settings;

/// How long tokens the fleet granted may be used: the budget counted them in the second
/// it granted them.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(1);

/// A process asks the fleet's budget at most this often (its tokens run out meanwhile:
/// the failure is returned without a retry).
pub(crate) const ASK_GAP: Duration = Duration::from_millis(100);

/// While the fleet's budget grants none, the gap between a process's requests doubles up
/// to this: a spent budget is not asked ten times a second by every process of a fleet
/// whose calls all fail.
pub(crate) const MAX_ASK_GAP: Duration = Duration::from_secs(1);

/// The most tokens a process asks for at once.
const MAX_BATCH: u64 = 100;

/// A breaker's retry budget in this process.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// The budget's own window: the in-memory store's budget, and the fleet's stand-in
    /// while Redis cannot answer.
    window: Mutex<BudgetWindow>,
    /// Seconds are counted from here (tokio's clock: a paused test clock moves them).
    epoch: Instant,
    /// First attempts not reported to the fleet's budget yet.
    unreported: AtomicU64,
    tokens: Mutex<Tokens>,
    /// Retries this process took from the budget (a held or granted token of the fleet's,
    /// or one of its own budget), since it started: what operators see as tokens spent.
    spent: AtomicU64,
}

/// The fleet's tokens this process holds.
#[derive(Debug, Default)]
struct Tokens {
    held: u64,
    granted_at: Option<Instant>,
    /// The last request to the fleet's budget (answered or not), and whether one is out.
    asked_at: Option<Instant>,
    asking: bool,
    /// The last request got no answer: this process's own budget decides until the next.
    unanswered: bool,
    /// Tokens used since the last request: the next one asks for about twice as many.
    used: u64,
    /// When first attempts were last reported.
    reported_at: Option<Instant>,
    /// The gap before the next request ([`ASK_GAP`], doubling while none are granted).
    gap: Duration,
}

impl Tokens {
    /// Whether it holds tokens granted less than [`TOKEN_LIFETIME`] ago.
    fn holds_fresh(&self, now: Instant) -> bool {
        self.held > 0
            && self
                .granted_at
                .is_some_and(|at| now.saturating_duration_since(at) < TOKEN_LIFETIME)
    }

    /// Whether the fleet was asked less than the current gap ago.
    fn asked_recently(&self, now: Instant) -> bool {
        let gap = self.gap.max(ASK_GAP);
        self.asked_at
            .is_some_and(|at| now.saturating_duration_since(at) < gap)
    }

    /// The fleet's budget answered with `granted` tokens: the gap doubles while it grants
    /// none.
    fn answered(&mut self, granted: u64) {
        self.gap = match granted {
            0 => (self.gap.max(ASK_GAP) * 2).min(MAX_ASK_GAP),
            _ => ASK_GAP,
        };
    }
}

/// What to do about a retry that needs a token of the fleet's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    /// A token this process held: retry.
    Taken,
    /// None held, and the fleet was asked less than [`ASK_GAP`] ago (up to
    /// [`MAX_ASK_GAP`] while it grants none), or is being asked: no retry.
    Spent,
    /// The fleet's budget did not answer the last request, less than [`ASK_GAP`] ago:
    /// this process's own budget decides ([`RetryBudget::take`]).
    OwnBudget,
    /// Ask the fleet's budget for `wanted` tokens, reporting `first_attempts`, then tell
    /// [`RetryBudget::granted`] or [`RetryBudget::not_answered`].
    Ask { wanted: u64, first_attempts: u64 },
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            window: Mutex::default(),
            epoch: Instant::now(),
            unreported: AtomicU64::new(0),
            tokens: Mutex::default(),
            spent: AtomicU64::new(0),
        }
    }
}

impl RetryBudget {
    fn second(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_secs()
    }

    /// Counts the first attempt of a call that may be retried, in this process's own
    /// budget (the in-memory store).
    pub(crate) fn first_attempt(&self) {
        let second = self.second();
        lock(&self.window).first_attempts(second, 1);
    }

    /// Counts the first attempt of a call that may be retried, for the next report to the
    /// fleet's budget (one relaxed add).
    pub(crate) fn first_attempt_of_fleet(&self) {
        self.unreported.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from this process's own budget, if it allows one. First attempts
    /// not reported to the fleet count in it from now on (the fleet's stand-in).
    pub(crate) fn take(&self, settings: &Settings) -> bool {
        let second = self.second();
        let mut window = lock(&self.window);
        let unreported = self.unreported.swap(0, Ordering::Relaxed);
        window.first_attempts(second, unreported);
        let taken = window.take(second, 1, settings.retry_budget, settings.retry_min_per_sec) == 1;
        if taken {
            self.spend();
        }
        taken
    }

    /// The retries this process took from the budget since it started.
    pub(crate) fn spent(&self) -> u64 {
        self.spent.load(Ordering::Relaxed)
    }

    fn spend(&self) {
        self.spent.fetch_add(1, Ordering::Relaxed);
    }

    /// A token of the fleet's budget, if this process holds one; else whether to ask.
    pub(crate) fn token(&self) -> Token {
        let now = Instant::now();
        let mut tokens = lock(&self.tokens);
        if tokens.holds_fresh(now) {
            tokens.held -= 1;
            tokens.used += 1;
            self.spend();
            return Token::Taken;
        }
        tokens.held = 0;
        let recent = tokens.asked_recently(now);
        if recent && tokens.unanswered && !tokens.asking {
            return Token::OwnBudget;
        }
        if tokens.asking || recent {
            return Token::Spent;
        }
        self.ask(&mut tokens, now)
    }

    /// Whether to ask the fleet's budget ahead of need (a first attempt, before any
    /// failure): no fresh token held, none being asked for, and the last request older
    /// than [`ASK_GAP`]. Then `Some(Token::Ask)`, answered with
    /// [`RetryBudget::stocked`] or [`RetryBudget::not_answered`].
    pub(crate) fn prefetch(&self) -> Option<Token> {
        let now = Instant::now();
        let mut tokens = lock(&self.tokens);
        if tokens.holds_fresh(now) || tokens.asking || tokens.asked_recently(now) {
            return None;
        }
        tokens.held = 0;
        Some(self.ask(&mut tokens, now))
    }

    /// A request to the fleet's budget starts now: how many tokens to ask for, and the
    /// first attempts to report.
    fn ask(&self, tokens: &mut Tokens, now: Instant) -> Token {
        tokens.asking = true;
        tokens.asked_at = Some(now);
        let wanted = (tokens.used.saturating_mul(2)).clamp(1, MAX_BATCH);
        tokens.used = 0;
        // First attempts held back for longer than the budget's window are reported as
        // that window's share of them: they must not all land in the current second.
        let mut first_attempts = self.unreported.swap(0, Ordering::Relaxed);
        let window = Duration::from_secs(BUDGET_SECONDS);
        if let Some(since) = tokens
            .reported_at
            .map(|at| now.saturating_duration_since(at))
        {
            if since > window {
                let share = window.as_secs_f64() / since.as_secs_f64();
                first_attempts = (first_attempts as f64 * share) as u64;
            }
        }
        tokens.reported_at = Some(now);
        Token::Ask {
            wanted,
            first_attempts,
        }
    }

    /// The fleet's budget granted `granted` tokens: takes one of them if any.
    pub(crate) fn granted(&self, granted: u64) -> bool {
        self.stocked(granted);
        let mut tokens = lock(&self.tokens);
        if tokens.held == 0 {
            return false;
        }
        tokens.held -= 1;
        tokens.used += 1;
        self.spend();
        true
    }

    /// The fleet's budget granted `granted` tokens to a request made in the background
    /// (no retry waits for it): this process holds them all.
    pub(crate) fn stocked(&self, granted: u64) {
        let mut tokens = lock(&self.tokens);
        tokens.asking = false;
        tokens.unanswered = false;
        tokens.granted_at = Some(Instant::now());
        tokens.held = granted;
        tokens.answered(granted);
    }

    /// The fleet's budget could not be asked: the first attempts stay to report (and
    /// count in this process's own budget, which decides meanwhile).
    pub(crate) fn not_answered(&self, first_attempts: u64) {
        self.unreported.fetch_add(first_attempts, Ordering::Relaxed);
        let mut tokens = lock(&self.tokens);
        tokens.asking = false;
        tokens.unanswered = true;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokens_are_asked_for_in_batches_at_most_every_ask_gap() {
        let budget = RetryBudget::default();
        for _ in 0..30 {
            budget.first_attempt_of_fleet();
        }
        let Token::Ask {
            wanted,
            first_attempts,
        } = budget.token()
        else {
            panic!("nothing held: ask");
        };
        assert_eq!((wanted, first_attempts), (1, 30));
        assert_eq!(budget.token(), Token::Spent, "one request at a time");
        assert!(budget.granted(3));
        assert_eq!(budget.token(), Token::Taken);
        assert_eq!(budget.token(), Token::Taken);
        assert_eq!(budget.token(), Token::Spent, "asked less than 100 ms ago");
        tokio::time::advance(ASK_GAP).await;
        let Token::Ask { wanted, .. } = budget.token() else {
            panic!("ask again");
        };
        assert_eq!(wanted, 6, "twice the three used");
        assert!(!budget.granted(0));
        assert_eq!(budget.token(), Token::Spent);
        assert_eq!(budget.spent(), 3, "the granted token and the two held");
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_that_grants_none_is_asked_less_and_less_often() {
        let budget = RetryBudget::default();
        let mut gaps = Vec::new();
        let mut last = Instant::now();
        for _ in 0..6 {
            while !matches!(budget.token(), Token::Ask { .. }) {
                tokio::time::advance(Duration::from_millis(10)).await;
            }
            gaps.push(last.elapsed().as_millis());
            last = Instant::now();
            assert!(!budget.granted(0));
        }
        assert_eq!(
            gaps,
            [0, 200, 400, 800, 1_000, 1_000],
            "doubling to MAX_ASK_GAP"
        );
        // A grant brings the gap back to ASK_GAP.
        tokio::time::advance(MAX_ASK_GAP).await;
        assert!(matches!(budget.token(), Token::Ask { .. }));
        assert!(budget.granted(1));
        tokio::time::advance(ASK_GAP).await;
        assert!(matches!(budget.token(), Token::Ask { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_expire_and_old_first_attempts_count_as_a_windows_share() {
        let budget = RetryBudget::default();
        assert!(matches!(budget.token(), Token::Ask { .. }));
        assert!(budget.granted(5));
        tokio::time::advance(TOKEN_LIFETIME).await;
        for _ in 0..1_000 {
            budget.first_attempt_of_fleet();
        }
        tokio::time::advance(Duration::from_secs(99)).await;
        let Token::Ask { first_attempts, .. } = budget.token() else {
            panic!("expired tokens are not used: ask");
        };
        assert_eq!(
            first_attempts, 100,
            "10 s of the 100 s they were held back for"
        );
        budget.not_answered(first_attempts);
        assert_eq!(budget.unreported.load(Ordering::Relaxed), 100);
        assert_eq!(budget.token(), Token::OwnBudget, "until the next request");
        tokio::time::advance(ASK_GAP).await;
        assert!(matches!(budget.token(), Token::Ask { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_prefetch_asks_ahead_of_need_at_most_every_ask_gap() {
        let budget = RetryBudget::default();
        budget.first_attempt_of_fleet();
        let Some(Token::Ask {
            wanted,
            first_attempts,
        }) = budget.prefetch()
        else {
            panic!("nothing held, never asked: prefetch");
        };
        assert_eq!((wanted, first_attempts), (1, 1));
        assert_eq!(budget.prefetch(), None, "one request at a time");
        assert_eq!(budget.token(), Token::Spent, "the prefetch is being asked");
        budget.stocked(2);
        assert_eq!(budget.prefetch(), None, "tokens held");
        assert_eq!(budget.token(), Token::Taken);
        assert_eq!(budget.token(), Token::Taken, "the prefetch took none");
        assert_eq!(budget.prefetch(), None, "asked less than ASK_GAP ago");
        tokio::time::advance(ASK_GAP).await;
        let Some(Token::Ask { wanted, .. }) = budget.prefetch() else {
            panic!("spent, and the last request is old: prefetch");
        };
        assert_eq!(wanted, 4, "twice the two used");
        budget.not_answered(0);
        assert_eq!(budget.token(), Token::OwnBudget);
        tokio::time::advance(ASK_GAP).await;
        budget.stocked(1);
        tokio::time::advance(TOKEN_LIFETIME).await;
        assert!(
            matches!(budget.prefetch(), Some(Token::Ask { .. })),
            "an expired token is not held"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_stand_in_counts_the_unreported_first_attempts() {
        let budget = RetryBudget::default();
        let settings = Settings::DEFAULT
            .retries(1)
            .retry_budget(10)
            .retry_min_per_sec(0);
        for _ in 0..50 {
            budget.first_attempt_of_fleet();
        }
        let taken = (0..10).filter(|_| budget.take(&settings)).count();
        assert_eq!(taken, 5, "10 % of 50");
        assert_eq!(budget.spent(), 5);
    }
}
