//! The one definition of every breaker setting.
//!
//! Adding a setting is adding an entry here (and the code that acts on it): the
//! `Settings` field and builder, the `ServiceOverride` setter, the environment variable,
//! the attribute argument, the checks, their messages and the documentation table all
//! follow from it.

/// Hands every setting to `$callback`, a `macro_rules!` macro, as a list of entries:
///
/// ```text
/// $( $(#[$doc:meta])* $name:ident : $kind:ident [$($default:expr)?] { $($data:tt)* } )*
/// ```
///
/// - the `#[doc]` attributes: the rustdoc of the `Settings` field;
/// - `$kind`: `Count`, `Percent` or `Duration` (the Rust type, by [`value_type!`](crate::value_type!));
/// - `[$default]`: the default, or `[]` for a setting that is unset (`None`) by default
///   (its field is then an `Option`: see [`field_type!`](crate::field_type!));
/// - `{ $data }`: the fields of its [`Setting`](crate::Setting) (limits, meaning,
///   example, aliases, rules), which only this crate reads.
///
/// The crate builds [`SETTINGS`](crate::SETTINGS) from it; `infuse` generates
/// `Settings` and `ServiceOverride` from it.
#[macro_export]
macro_rules! for_each_setting {
    ($callback:path) => {
        $callback! {
            /// Consecutive failures that trip the breaker (≥ 1).
            fail_max: Count [5] {
                meaning: "consecutive failures that trip the breaker",
                example: "5",
                aliases: &["failure_threshold", "max_failures"],
                pybreaker: true,
            }

            /// How long the breaker stays open before a trial call is allowed (> 0, at most
            /// [`Settings::MAX_RESET_TIMEOUT`]).
            reset_timeout: Duration [::core::time::Duration::from_secs(60)] {
                max: $crate::Value::duration($crate::MAX_RESET_TIMEOUT),
                meaning: "how long the breaker stays open before a trial call is let through",
                example: "15s",
                aliases: &["recovery_timeout"],
                pybreaker: true,
            }

            /// Successful trial calls needed in half-open to close (≥ 1).
            success_threshold: Count [1] {
                meaning: "successful trial calls needed in half-open to close",
                example: "2",
                pybreaker: true,
            }

            /// A guarded call still running after this long is dropped (cancelled), counts as
            /// a failure and returns [`BreakerError::Timeout`](crate::BreakerError::Timeout).
            /// `None` (the default): no limit.
            timeout: Duration [] {
                max: $crate::Value::duration($crate::MAX_CALL_TIMEOUT),
                meaning: "a call still running after this long is cancelled and counts as a failure",
                unset: "no limit",
                example: "2s",
                aliases: &["call_timeout"],
            }

            /// The limit for a half-open trial call (default: `timeout`). The fleet's trial
            /// lease is derived from it, so a trial never outlives its slot.
            trial_timeout: Duration [] {
                max: $crate::Value::duration($crate::MAX_CALL_TIMEOUT),
                meaning: "the limit of a half-open trial call",
                unset: "`timeout`",
                example: "5s",
            }

            /// Calls slower than this count as slow (they still return their own result); see
            /// `slow_call_rate`. Must be below `timeout`.
            slow_call: Duration [] {
                max: $crate::Value::duration($crate::MAX_CALL_TIMEOUT),
                meaning: "the duration above which a call is slow",
                unset: "off",
                example: "500ms",
                aliases: &["slow_call_duration_threshold", "slow_call_duration"],
                rules: &[
                    $crate::Rule::Needs("slow_call_rate"),
                    $crate::Rule::Below("timeout", "a call that times out is already a failure"),
                ],
            }

            /// Trips when slow calls reach this percentage (1–100) of the calls in the window.
            slow_call_rate: Percent [] {
                meaning: "the percentage of slow calls in the window that trips the breaker",
                unset: "off",
                example: "50",
                aliases: &["slow_call_rate_threshold"],
                rules: &[$crate::Rule::Needs("slow_call")],
            }

            /// Trips when failures reach this percentage (1–100) of the calls in the window.
            failure_rate: Percent [] {
                meaning: "the percentage of failed calls in the window that trips the breaker",
                unset: "off",
                example: "50",
                aliases: &["failure_rate_threshold", "error_threshold_percentage"],
            }

            /// The sliding window both rates are measured over (≥ 1 s, at most 1 h; default
            /// 10 s), kept as ten buckets of a tenth each.
            window: Duration [::core::time::Duration::from_secs(10)] {
                min: $crate::Value::duration($crate::MIN_WINDOW),
                max: $crate::Value::duration($crate::MAX_WINDOW),
                meaning: "the sliding window both rates are measured over",
                example: "10s",
                aliases: &["sliding_window", "sliding_window_size", "rolling_window"],
                rules: &[$crate::Rule::Inert($crate::RATES, "it applies to the rate of failed or slow calls in the window")],
            }

            /// No rate decision below this many calls in the window (≥ 1; default 20). With
            /// Redis, the fleet's calls.
            min_calls: Count [20] {
                meaning: "no rate decision below this many calls in the window (with Redis, the fleet's calls)",
                example: "20",
                aliases: &["minimum_number_of_calls", "request_volume_threshold"],
                rules: &[$crate::Rule::Inert($crate::RATES, "it applies to the rate of failed or slow calls in the window")],
            }

            /// With Redis: a trip needs failures (or slow calls) reported by at least this many
            /// distinct processes (≥ 1; default 1) — in the window for a rate rule, in the
            /// current failure streak for `fail_max` — so that one sick caller cannot open the
            /// breaker for the whole fleet. That caller still protects its own calls: its own
            /// counts open the breaker for it alone. Above 1, a breaker reports its calls in
            /// batches (as with a rate rule), so that every process's successes count.
            min_instances: Count [1] {
                meaning: "with Redis, a trip needs failures reported by at least this many processes",
                example: "2",
            }

            /// When set, each re-open after a failed trial doubles the open time (less up to
            /// 20 % of jitter), up to this bound; a close resets it. `None` (the default): every
            /// open lasts `reset_timeout`, as in pybreaker.
            max_reset_timeout: Duration [] {
                max: $crate::Value::duration($crate::MAX_RESET_TIMEOUT),
                meaning: "each re-open after a failed trial doubles the open time, up to this bound",
                unset: "no backoff",
                example: "5m",
                rules: &[$crate::Rule::NotBelow(
                    "reset_timeout",
                    "backoff doubles the open time from `reset_timeout` up to `max_reset_timeout`",
                )],
            }

            /// After the breaker closes again (a successful trial, or an operator's `close`),
            /// the share of calls admitted grows linearly from `slow_start_min` percent to
            /// all of them over this time, so a target that just recovered (cold caches,
            /// empty pools) is not hit by every caller at once. With Redis it is timed from
            /// the close on Redis's clock: every process admits the same share at the same
            /// moment. A call not admitted returns
            /// [`BreakerError::Recovering`](crate::BreakerError::Recovering); a trip during
            /// slow start counts as a failed recovery for `max_reset_timeout`'s backoff.
            /// `None` (the default): every call is admitted at once (> 0, at most
            /// [`Settings::MAX_SLOW_START`], 1 h).
            slow_start: Duration [] {
                max: $crate::Value::duration($crate::MAX_SLOW_START),
                meaning: "after a close, the share of calls admitted grows from `slow_start_min` % to 100 % over this time",
                unset: "off",
                example: "30s",
                aliases: &["slow_start_window", "slow_start_duration", "warmup"],
            }

            /// The share of calls admitted when slow start begins, in percent (1–100; default
            /// 10); it then grows linearly to 100 over `slow_start`.
            slow_start_min: Percent [10] {
                meaning: "the percentage of calls admitted when slow start begins",
                example: "10",
                rules: &[$crate::Rule::Inert(&["slow_start"], "it is the share admitted when slow start begins")],
            }

            /// At most this many calls to the service in flight at once (1–1,000,000) —
            /// with Redis, **across the fleet**: each process holds a lease of the fleet's
            /// permits, renewed in the background, and a call takes a permit locally with
            /// no Redis command. A call beyond the cap waits up to `max_wait`, then returns
            /// [`BreakerError::Saturated`](crate::BreakerError::Saturated). `None` (the
            /// default): no cap.
            max_concurrent: Count [] {
                max: $crate::Value::count(1_000_000),
                meaning: "at most this many calls in flight at once (with Redis, across the fleet)",
                unset: "no cap",
                example: "64",
                aliases: &["max_concurrent_calls", "bulkhead", "max_requests", "concurrency_limit"],
            }

            /// How long a call beyond `max_concurrent` waits for a permit before it is
            /// rejected (default 0: at once; at most 1 min).
            max_wait: Duration [::core::time::Duration::ZERO] {
                min: $crate::Value::duration(::core::time::Duration::ZERO),
                max: $crate::Value::duration(::core::time::Duration::from_secs(60)),
                meaning: "how long a call beyond `max_concurrent` waits for a permit",
                example: "100ms",
                aliases: &["max_wait_duration"],
                rules: &[$crate::Rule::Inert(&["max_concurrent"], "it applies to calls beyond `max_concurrent`")],
            }

            /// Up to this many further attempts of a failed call (1–10), each a guarded call
            /// of its own, after an exponential backoff with full jitter (`retry_backoff`, up
            /// to `max_retry_backoff`), within the retry budget (`retry_budget`,
            /// `retry_min_per_sec`). Only failures as the breaker counts them are retried:
            /// never a rejection, an excluded or an ignored error. Applies to
            /// [`Breaker::call_retrying`](crate::Breaker::call_retrying) and the attribute.
            /// `None` (the default): no retry.
            retries: Count [] {
                max: $crate::Value::count(10),
                meaning: "further attempts of a failed call, within the retry budget",
                unset: "no retry",
                example: "2",
                aliases: &["max_retries", "max_attempts", "retry_attempts"],
            }

            /// The backoff before the first retry (default 25 ms; at most 1 min): each retry
            /// waits a random time up to this, doubled per attempt, capped at
            /// `max_retry_backoff` (full jitter).
            retry_backoff: Duration [::core::time::Duration::from_millis(25)] {
                max: $crate::Value::duration(::core::time::Duration::from_secs(60)),
                meaning: "the backoff before the first retry, doubled per attempt (full jitter)",
                example: "25ms",
                aliases: &["base_backoff", "initial_backoff", "wait_duration"],
                rules: &[$crate::Rule::Inert(&["retries"], "it applies to retries")],
            }

            /// The longest backoff between retries (default 1 s; at most 10 min; at least
            /// `retry_backoff`).
            max_retry_backoff: Duration [::core::time::Duration::from_secs(1)] {
                max: $crate::Value::duration(::core::time::Duration::from_secs(600)),
                meaning: "the longest backoff between retries",
                example: "1s",
                aliases: &["max_backoff"],
                rules: &[
                    $crate::Rule::Inert(&["retries"], "it applies to retries"),
                    $crate::Rule::NotBelow(
                        "retry_backoff",
                        "the backoff doubles from `retry_backoff` up to `max_retry_backoff`",
                    ),
                ],
            }

            /// Retries may add at most this percentage (1–100; default 20) to the first
            /// attempts over the last 10 s — or `retry_min_per_sec` a second, whichever
            /// allows more. With Redis, the **fleet's** retries and first attempts: the
            /// budget holds however many processes run. A failure past the budget is
            /// returned as it is, without a retry.
            retry_budget: Percent [20] {
                meaning: "retries may add at most this percentage to the first attempts (with Redis, the fleet's)",
                example: "20",
                aliases: &["retry_ratio", "budget_percent"],
                rules: &[$crate::Rule::Inert(&["retries"], "it applies to retries")],
            }

            /// Retries allowed per second whatever the first attempts (0–1,000,000; default
            /// 10), so that a quiet service still gets a few — with Redis, for the whole
            /// fleet, not per process.
            retry_min_per_sec: Count [10] {
                min: $crate::Value::count(0),
                max: $crate::Value::count(1_000_000),
                meaning: "retries allowed per second whatever the first attempts (with Redis, for the whole fleet)",
                example: "10",
                aliases: &["min_retries_per_second", "min_retries_per_sec"],
                rules: &[$crate::Rule::Inert(&["retries"], "it applies to retries")],
            }

            /// Shadow mode, to adopt a breaker without risk: the breaker runs its whole state
            /// machine (trips, open periods, trials; fleet-wide with Redis) but never rejects a
            /// call. Each call it would have rejected runs, and is counted
            /// ([`Breaker::would_reject`](crate::Breaker::would_reject)) and reported to
            /// listeners, `tracing` and metrics; its transitions are recorded with a shadow
            /// mark. An operator switches a fleet in or out of it at run time
            /// ([`Breaker::set_shadow`](crate::Breaker::set_shadow), `infuse shadow`), which
            /// overrides this setting until switched again.
            shadow: Bool [false] {
                meaning: "the breaker trips and records as usual but never rejects: calls it would reject run and are counted",
                example: "true",
            }
        }
    };
}
