//! This process's retry budget of one breaker (the in-memory store's; see
//! `core/retry_budget.rs` for the rule).

use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

use crate::core::retry_budget::BudgetWindow;
use crate::core::Settings;

/// First attempts and retries of one breaker's calls, by second.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    window: Mutex<BudgetWindow>,
    /// Seconds are counted from here (tokio's clock: a paused test clock moves them).
    epoch: Instant,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            window: Mutex::default(),
            epoch: Instant::now(),
        }
    }
}

impl RetryBudget {
    fn second(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_secs()
    }

    /// Counts the first attempt of a call that may be retried.
    pub(crate) fn first_attempt(&self) {
        let second = self.second();
        self.lock().first_attempts(second, 1);
    }

    /// Takes one retry if the budget allows it.
    pub(crate) fn take(&self, settings: &Settings) -> bool {
        let second = self.second();
        self.lock()
            .take(second, 1, settings.retry_budget, settings.retry_min_per_sec)
            == 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetWindow> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
