//! The wire contract with the Lua scripts: reply and event fields, state codes, error
//! tags. `scripts/prelude.lua` documents the same tables; the tests below read it.

use std::time::Duration;

use crate::core::{Outcome, Snapshot, State, StorageError, Totals, Version};

/// The fields every script replies with, in order.
#[allow(dead_code)] // the Rust side of the table; the tests read the Lua side
pub(crate) const REPLY_FIELDS: [&str; 13] = [
    "applied",
    "from",
    "inc",
    "gen",
    "seq",
    "state",
    "fail",
    "succ",
    "open_pttl",
    "trial_pttl",
    "window",
    "since_close",
    "shadow",
];

/// The fields of an event published on the namespace channel, space-separated.
pub(crate) const EVENT_FIELDS: [&str; 11] = [
    "inc",
    "gen",
    "seq",
    "state",
    "fail",
    "succ",
    "open_pttl",
    "trial_pttl",
    "since_close",
    "shadow",
    "service",
];

/// The error tag a script raises when a breaker's keys hold garbage.
pub(crate) const CORRUPT_TAG: &str = "INFUSE_CORRUPT";

/// A script's reply, as [`REPLY_FIELDS`] lists: an array of integers and strings (read
/// field by field: past twelve fields, a tuple cannot take it whole).
pub(crate) type Reply = Vec<redis::Value>;

/// Field `at` of a reply.
fn field<T: redis::FromRedisValue>(reply: &[redis::Value], at: usize) -> Result<T, StorageError> {
    let value = reply.get(at).cloned().ok_or_else(|| {
        StorageError::Corrupt(format!(
            "a script answered {} fields, not {}",
            reply.len(),
            REPLY_FIELDS.len()
        ))
    })?;
    redis::from_redis_value(value).map_err(|error| {
        StorageError::Corrupt(format!(
            "a script answered an unreadable {}: {error}",
            REPLY_FIELDS[at]
        ))
    })
}

fn state_from(code: i64) -> Result<State, StorageError> {
    u8::try_from(code)
        .ok()
        .and_then(State::from_code)
        .ok_or_else(|| StorageError::Corrupt(format!("unknown state code {code}")))
}

fn pttl(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// The `shadow` field: the operator's switch, 1 on, 0 off, -1 never switched.
fn shadow_from(code: i64) -> Result<Option<bool>, StorageError> {
    match code {
        -1 => Ok(None),
        0 => Ok(Some(false)),
        1 => Ok(Some(true)),
        other => Err(StorageError::Corrupt(format!(
            "a script answered shadow {other}, not -1, 0 or 1"
        ))),
    }
}

/// Builds a snapshot from the fields every reply and event carries.
fn snapshot_from(inc: &str, fields: [i64; 9]) -> Result<Snapshot, StorageError> {
    let [generation, seq, state, fail, succ, open_pttl, trial_pttl, since_close, shadow] = fields;
    let state = state_from(state)?;
    Ok(Snapshot {
        state,
        generation: u64::try_from(generation).unwrap_or(0),
        fail_counter: count(fail),
        success_counter: count(succ),
        open_remaining: (state == State::Open).then(|| pttl(open_pttl).unwrap_or_default()),
        trial_remaining: pttl(trial_pttl),
        since_close: (state == State::Closed)
            .then(|| pttl(since_close))
            .flatten(),
        version: Version {
            incarnation: inc
                .parse()
                .map_err(|_| StorageError::Corrupt(format!("bad incarnation {inc:?}")))?,
            seq: u64::try_from(seq).unwrap_or(0),
        },
        shadow: shadow_from(shadow)?,
    })
}

/// Decodes a script's reply.
pub(crate) fn outcome_from_reply(reply: Reply) -> Result<Outcome, StorageError> {
    if reply.len() != REPLY_FIELDS.len() {
        return Err(StorageError::Corrupt(format!(
            "a script answered {} fields, not {}",
            reply.len(),
            REPLY_FIELDS.len()
        )));
    }
    let number = |at| field::<i64>(&reply, at);
    let inc: String = field(&reply, 2)?;
    let window: String = field(&reply, 10)?;
    Ok(Outcome {
        applied: number(0)? == 1,
        from: state_from(number(1)?)?,
        snapshot: snapshot_from(
            &inc,
            [
                number(3)?,
                number(4)?,
                number(5)?,
                number(6)?,
                number(7)?,
                number(8)?,
                number(9)?,
                number(11)?,
                number(12)?,
            ],
        )?,
        window: window_from(&window)?,
    })
}

/// A count of the `window` field: decimal digits, saturating at `u64::MAX` (the scripts
/// saturate at 2^53 - 1 already; a count never wraps).
fn saturating_count(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// The `window` field: `""`, or `"calls failures slow"`.
fn window_from(text: &str) -> Result<Option<Totals>, StorageError> {
    if text.is_empty() {
        return Ok(None);
    }
    let mut fields = text.split(' ').map(saturating_count);
    match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some(Some(calls)), Some(Some(failures)), Some(Some(slow)), None) => Ok(Some(Totals {
            calls,
            failures,
            slow,
        })),
        _ => Err(StorageError::Corrupt(format!(
            "a script answered window {text:?}, not \"calls failures slow\""
        ))),
    }
}

/// Parses an event published on the namespace channel into `(service, snapshot)`.
///
/// An event of a process that predates `since_close` and `shadow` (two fields fewer,
/// the service right after `trial_pttl`) is read too, without them, so that a fleet
/// being upgraded keeps hearing its older members (unless the service's name starts with
/// two numbers, then read as those fields: the event is then for an unknown service, and
/// the periodic resync brings the change).
pub fn parse_event(payload: &str) -> Option<(&str, Snapshot)> {
    let mut parts = payload.splitn(EVENT_FIELDS.len() - 2, ' ');
    let inc = parts.next()?;
    let mut fields = [-1i64; 9];
    for field in &mut fields[..7] {
        *field = parts.next()?.parse().ok()?;
    }
    let rest = parts.next()?;
    let newer = rest.splitn(3, ' ').collect::<Vec<_>>();
    let service = match newer[..] {
        [since_close, shadow, service] => match (since_close.parse(), shadow.parse()) {
            (Ok(since_close), Ok(shadow)) => {
                fields[7] = since_close;
                fields[8] = shadow;
                service
            }
            _ => rest,
        },
        _ => rest,
    };
    Some((service, snapshot_from(inc, fields).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TransitionReason;

    const PRELUDE: &str = include_str!("../../../scripts/prelude.lua");

    fn prelude_line(prefix: &str) -> &'static str {
        PRELUDE
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("prelude.lua has no line starting with {prefix:?}"))
    }

    #[test]
    fn prelude_state_codes_match_the_rust_table() {
        let line = prelude_line("local CLOSED");
        let (names, codes) = line.split_once('=').expect("`names = codes`");
        let names: Vec<String> = std::iter::once("CLOSED".to_owned())
            .chain(names.split(',').skip(1).map(|n| n.trim().to_owned()))
            .collect();
        let codes: Vec<u8> = codes
            .split(',')
            .map(|c| c.trim().parse().unwrap())
            .collect();
        let expected: Vec<(String, u8)> = State::ALL
            .iter()
            .map(|s| (s.lua_name().to_owned(), s.code()))
            .collect();
        let actual: Vec<(String, u8)> = names.into_iter().zip(codes).collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn prelude_state_names_are_the_states_display() {
        // `local STATE_NAMES = {[0] = 'closed', 'open', …}`: by code, from 0.
        let line = prelude_line("local STATE_NAMES = {[0] = ");
        let names: Vec<&str> = line
            .trim_end_matches('}')
            .split(',')
            .map(|n| n.trim().trim_matches('\''))
            .collect();
        let expected: Vec<String> = State::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(names, expected);
        for (code, state) in State::ALL.iter().enumerate() {
            assert_eq!(usize::from(state.code()), code);
        }
    }

    /// `local NAME = <integer>` of the prelude.
    fn prelude_constant(name: &str) -> u64 {
        let value = prelude_line(&format!("local {name} = "));
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("prelude.lua's {name} is {value:?}, not an integer"))
    }

    #[test]
    fn prelude_bounds_are_the_rust_constants() {
        assert_eq!(
            prelude_constant("MAX_GENERATION"),
            crate::core::MAX_GENERATION
        );
        assert_eq!(crate::core::MAX_GENERATION, (1 << 53) - 2);
        assert_eq!(
            prelude_constant("MAX_EXACT"),
            crate::core::window::MAX_TOTAL
        );
        assert_eq!(crate::core::window::MAX_TOTAL, (1 << 53) - 1);
        assert_eq!(crate::core::MAX_EXPIRY_MS, (1 << 53) - 1);
        assert_eq!(prelude_constant("MAX_COUNT"), u64::from(u32::MAX));
        // Each is an integer a double holds exactly, and so is the one after it.
        for bound in [crate::core::MAX_GENERATION, crate::core::window::MAX_TOTAL] {
            assert_eq!(bound as f64 as u64, bound);
            assert_eq!((bound + 1) as f64 as u64, bound + 1);
        }
    }

    #[test]
    fn window_totals_saturate_instead_of_failing_or_wrapping() {
        let huge = "18446744073709551620 5 99999999999999999999999";
        assert_eq!(
            window_from(huge).unwrap(),
            Some(Totals {
                calls: u64::MAX,
                failures: 5,
                slow: u64::MAX
            })
        );
        assert_eq!(
            window_from("9007199254740991 0 0").unwrap().unwrap().calls,
            (1 << 53) - 1
        );
        for garbage in [
            "-1 0 0", "1.5 0 0", "nan 0 0", "1 2", "1 2 3 4", " 1 2 3", "1e3 0 0",
        ] {
            assert!(window_from(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn history_reasons_written_by_the_scripts_are_transition_reasons() {
        let scripts = [
            include_str!("../../../scripts/record_failure.lua"),
            include_str!("../../../scripts/record_calls.lua"),
            include_str!("../../../scripts/acquire_trial.lua"),
            include_str!("../../../scripts/record_trial.lua"),
            include_str!("../../../scripts/force.lua"),
        ];
        let known = [
            TransitionReason::ConsecutiveFailures,
            TransitionReason::Tripped,
            TransitionReason::TrialSucceeded,
            TransitionReason::TrialFailed,
            TransitionReason::OpenElapsed,
            TransitionReason::Manual,
            TransitionReason::Reseeded,
            TransitionReason::ReplacedAfterFailover,
        ]
        .map(TransitionReason::as_str);
        let mut seen = Vec::new();
        let register = include_str!("../../../scripts/register.lua");
        let calls = scripts
            .iter()
            .flat_map(|script| script.split("remember(from, rec, '").skip(1))
            // register.lua names its reason once per case, then writes it.
            .chain(register.split("reason = '").skip(1));
        for call in calls {
            let reason = call.split('\'').next().unwrap();
            assert!(known.contains(&reason), "unknown reason {reason:?}");
            seen.push(reason);
        }
        seen.sort_unstable();
        let mut all = known.to_vec();
        all.sort_unstable();
        assert_eq!(seen, all, "each reason a script can give is written by one");
    }

    #[test]
    fn prelude_reply_and_event_fields_match() {
        let fields = |prefix| -> Vec<String> {
            prelude_line(prefix)
                .split(',')
                .map(|f| f.trim().to_owned())
                .collect()
        };
        assert_eq!(fields("-- Reply fields: "), REPLY_FIELDS);
        assert_eq!(fields("-- Event fields: "), EVENT_FIELDS);
        // The reply the scripts build lists the same fields in the same order.
        let built = prelude_line("  return {applied, from, ");
        assert!(
            built.starts_with(
                "rec.inc, rec.gen, rec.seq, rec.state, rec.fail, rec.succ, open_pttl, trial_pttl, window or '', since_close, shadow_code(rec)}"
            ),
            "{built}"
        );
        assert!(PRELUDE.contains(&format!("error({{err = '{CORRUPT_TAG} '")));
    }

    #[test]
    fn events_round_trip() {
        let (service, snapshot) = parse_event("77 3 9 1 5 0 1200 -1 -1 -1 users api").unwrap();
        assert_eq!(service, "users api");
        assert_eq!(snapshot.state, State::Open);
        assert_eq!(snapshot.generation, 3);
        assert_eq!(snapshot.open_remaining, Some(Duration::from_millis(1200)));
        assert_eq!(snapshot.trial_remaining, None);
        assert_eq!(snapshot.since_close, None);
        assert_eq!(snapshot.shadow, None);
        // A closed breaker in its recovery: the time since the close.
        let (_, closed) = parse_event("77 4 10 0 0 0 -1 -1 2500 -1 users").unwrap();
        assert_eq!(closed.since_close, Some(Duration::from_millis(2500)));
        assert_eq!(
            parse_event("77 4 10 0 0 0 -1 -1 -1 -1 users")
                .unwrap()
                .1
                .since_close,
            None
        );
        assert_eq!(
            snapshot.version,
            Version {
                incarnation: 77,
                seq: 9
            }
        );
        // The operator's shadow switch.
        let (_, switched) = parse_event("77 3 10 1 5 0 1200 -1 -1 1 users").unwrap();
        assert_eq!(switched.shadow, Some(true));
        let (_, off) = parse_event("77 3 10 1 5 0 1200 -1 -1 0 users").unwrap();
        assert_eq!(off.shadow, Some(false));
        assert!(
            parse_event("77 3 9 1 5 0 1200 -1 -1 2 users").is_none(),
            "unknown shadow switch"
        );
        // An older process's event: no since_close, no shadow.
        let (service, old) = parse_event("77 4 10 0 0 0 -1 -1 users api").unwrap();
        assert_eq!(
            (service, old.since_close, old.shadow),
            ("users api", None, None)
        );
        assert_eq!(old.state, State::Closed);
        assert!(
            parse_event("77 3 9 9 5 0 1200 -1 -1 -1 users").is_none(),
            "unknown state"
        );
        assert!(parse_event("77 3 9").is_none());
    }
}
