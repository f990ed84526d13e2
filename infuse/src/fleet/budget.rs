//! The fleet's retry budget: a process reports its first attempts and takes retry tokens
//! in batches from Redis (`scripts/retry_budget.lua`), so that `retry_budget` and
//! `retry_min_per_sec` hold for the whole fleet, not per process. While Redis cannot
//! answer, each process keeps a budget of its own (the same rule over its own calls).

use std::sync::Arc;

use super::Fleet;
use crate::core::Settings;
use crate::local::{Cell, Token};

impl Fleet {
    /// Whether a retry of `cell`'s breaker may be made now: a token this process holds,
    /// else one batch asked of the fleet's budget (at most every `ASK_GAP`).
    pub(crate) async fn take_retry(&self, cell: &Cell, settings: &Settings) -> bool {
        let budget = &cell.retries;
        let (wanted, first_attempts) = match without_asking(cell, settings) {
            Ok(retry) => return retry,
            Err(ask) => ask,
        };
        if !self.health.is_healthy() {
            budget.not_answered(first_attempts);
            return budget.take(settings);
        }
        let asked = self
            .store
            .retry_tokens(cell.service, settings, first_attempts, wanted)
            .await;
        match asked {
            Ok(granted) => budget.granted(granted),
            Err(error) => {
                tracing::debug!(service = cell.service, %error, "the fleet's retry budget could not be asked: this process's own budget decides");
                budget.not_answered(first_attempts);
                budget.take(settings)
            }
        }
    }

    /// Like [`take_retry`](Fleet::take_retry), without waiting (a retry loop that is not
    /// infuse's own: `infuse::RetryBudget::withdraw`): when a batch must be asked for,
    /// the request starts in the background and this retry is not made — the fleet's
    /// budget is never exceeded, at the cost of the retry that needed the first token.
    /// Without a runtime to ask from, this process's own budget decides.
    pub(crate) fn try_take_retry(&self, cell: &Arc<Cell>, settings: &Settings) -> bool {
        let budget = &cell.retries;
        let (wanted, first_attempts) = match without_asking(cell, settings) {
            Ok(retry) => return retry,
            Err(ask) => ask,
        };
        if self.health.is_healthy()
            && self.ask_in_background(cell, settings, wanted, first_attempts)
        {
            return false;
        }
        budget.not_answered(first_attempts);
        budget.take(settings)
    }

    /// Counts a first attempt (as [`Backend::first_attempt`](crate::backend::Backend))
    /// and, when this process holds no token and has not asked for a while, asks the
    /// fleet's budget for a batch in the background: a failure that comes later finds a
    /// token to retry with instead of starting the request.
    pub(crate) fn first_attempt_prefetching(&self, cell: &Arc<Cell>) {
        let budget = &cell.retries;
        budget.first_attempt_of_fleet();
        if !self.health.is_healthy() {
            return;
        }
        if let Some(Token::Ask {
            wanted,
            first_attempts,
        }) = budget.prefetch()
        {
            if !self.ask_in_background(cell, &cell.settings(), wanted, first_attempts) {
                budget.not_answered(first_attempts);
            }
        }
    }

    /// Asks the fleet's budget for `wanted` tokens on the current runtime, without
    /// waiting; false when there is no runtime to ask from.
    fn ask_in_background(
        &self,
        cell: &Arc<Cell>,
        settings: &Settings,
        wanted: u64,
        first_attempts: u64,
    ) -> bool {
        let (Some(fleet), Ok(runtime)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return false;
        };
        let (cell, settings) = (cell.clone(), *settings);
        runtime.spawn(async move {
            let asked = fleet
                .store
                .retry_tokens(cell.service, &settings, first_attempts, wanted)
                .await;
            match asked {
                Ok(granted) => cell.retries.stocked(granted),
                Err(error) => {
                    tracing::debug!(service = cell.service, %error, "the fleet's retry budget could not be asked: this process's own budget decides");
                    cell.retries.not_answered(first_attempts);
                }
            }
        });
        true
    }
}

/// Whether a retry of `cell`'s breaker may be made without asking the fleet's budget (a
/// token held, none to be had yet, or this process's own budget while the fleet's did
/// not answer); else the request to make: tokens wanted, first attempts to report.
fn without_asking(cell: &Cell, settings: &Settings) -> Result<bool, (u64, u64)> {
    let budget = &cell.retries;
    match budget.token() {
        Token::Taken => Ok(true),
        Token::Spent => Ok(false),
        Token::OwnBudget => Ok(budget.take(settings)),
        Token::Ask {
            wanted,
            first_attempts,
        } => Err((wanted, first_attempts)),
    }
}
