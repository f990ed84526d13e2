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
/// - `$kind`: `Count`, `Percent`, `Duration` or `Bool` (the Rust type, by [`value_type!`](crate::value_type!));
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
