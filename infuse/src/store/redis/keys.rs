//! What Redis holds, written once: every key name of a namespace, the fields of a
//! breaker's hashes, and readers of what the scripts write there. The store, the fleet's
//! announcements and the `infuse` command all build their keys here; the tests below hold
//! the layout against the scripts' headers and writes.
//!
//! For breaker `<service>` in namespace `<ns>` (one Redis Cluster hash slot), with what
//! bounds each key and when it goes away:
//!
//! | key | type | content | bound, and when it goes away |
//! |---|---|---|---|
//! | `infuse:{<ns>/<service>}:state` | hash | `inc gen seq state fail succ reo str shd` (`reo`: re-opens, the backoff exponent; `str`: the processes of the current failure streak, up to `min_instances`; absent = 0 / empty; `shd`: the operator's shadow switch, `0`/`1`, absent = each process's `shadow` setting) | one per breaker (a registry creates at most `max_breakers`); `key_ttl` after the last write (at least 2 × the longest open time); none in forced states, until closed |
//! | `infuse:{<ns>/<service>}:open` | string | generation that opened it | the open time; deleted by the next transition |
//! | `infuse:{<ns>/<service>}:trial` | string | the trial holder's token | the trial lease; deleted by the trial's result |
//! | `infuse:{<ns>/<service>}:window` | hash | rate rules only: `b0`…`b9` = `"<bucket> <calls> <failures> <slow>"` per bucket slot, `i<instance>` = its last bucket with failures or slow calls | 10 bucket fields and one per process reporting failures within the window (dropped as they leave it); deleted by every transition; two windows after the last write |
//! | `infuse:{<ns>/<service>}:history` | list | the last transitions, newest first: `"<unix ms> <from> <to> <gen> <reason> <process>"`, then an operator's `" <who> <why>"`, then `" shadow"` in shadow mode (see [`HistoryEntry`]) | [`HISTORY_LEN`] entries; the record's TTL after the last append |
//!
//! The namespace's own keys (in Cluster, the slot of `{<ns>}`): the change log (written
//! by `scripts/note_change.lua` after a breaker's script and by `scripts/touch.lua` with a
//! full resync, read and pruned by `scripts/changes.lua`; see `scripts/log.lua`) and the
//! processes' announcements (renewed by the same read):
//!
//! | key | type | content | bound, and when it goes away |
//! |---|---|---|---|
//! | `infuse:{<ns>}:version` | string | the namespace version (`INCR`) | one; lives as long as the log's longest-listed service (for good while a forced one is listed); a touch recreates it at 0 if lost |
//! | `infuse:{<ns>}:changes` | sorted set | service → version of its last noted change (0: listed by a touch) | one member per listed service, pruned with it; lives as long as the version |
//! | `infuse:{<ns>}:listed` | sorted set | service → until when it stays listed (server ms; `+inf` in a forced state) | one member per service whose record may live or that a process uses: a note lists it for the record's TTL, a touch for `max(key_ttl,` [`TOUCH_PERIODS`]` ×` the toucher's full-pass period`)`; every [`PRUNE_EVERY`]-th read forgets those whose time is up; lives as long as its longest member |
//! | `infuse:{<ns>}:process:<id>` | string | a process's announcement (JSON; at most 1,000 breakers in 64 KiB, those not closed first) | one per live process; 10 resync intervals after its last renewal |
//! | `infuse:{<ns>}:processes` | sorted set | process id → when its announcement expires (server ms) | one member per live process, expired ones dropped at each renewal; the longest-lived announcement's TTL |
//!
//! Channel `infuse:events:<ns>` carries the breakers' writes (see `wire.rs`).
//!
//! [`TOUCH_PERIODS`]: super::TOUCH_PERIODS
//! [`PRUNE_EVERY`]: super::PRUNE_EVERY

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::core::window::BUCKETS;
use crate::core::{State, Totals};

/// How many transitions a breaker's history keeps (`HISTORY_LEN` of `scripts/prelude.lua`).
pub const HISTORY_LEN: usize = 50;

/// A breaker's keys, in the order every breaker script gets them (`KEYS[1]`…`KEYS[5]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerKey {
    /// The record: a hash of [`STATE_FIELDS`].
    State,
    /// Exists while open; expires when a trial is allowed.
    Open,
    /// The trial holder's token; expires with the trial's lease.
    Trial,
    /// The rate rules' window (see [`window_totals`]).
    Window,
    /// The last transitions (see [`HistoryEntry`]).
    History,
}

impl BreakerKey {
    /// Every key of a breaker, in script order.
    pub const ALL: [BreakerKey; 5] = [
        BreakerKey::State,
        BreakerKey::Open,
        BreakerKey::Trial,
        BreakerKey::Window,
        BreakerKey::History,
    ];

    /// The key's name after its breaker's hash tag.
    pub const fn suffix(self) -> &'static str {
        match self {
            BreakerKey::State => "state",
            BreakerKey::Open => "open",
            BreakerKey::Trial => "trial",
            BreakerKey::Window => "window",
            BreakerKey::History => "history",
        }
    }
}

/// A breaker's key: `infuse:{<namespace>/<service>}:<suffix>` (the braces are the Redis
/// Cluster hash tag, so that a script can touch every key of its breaker).
pub fn breaker_key(namespace: &str, service: &str, key: BreakerKey) -> String {
    format!("infuse:{{{namespace}/{service}}}:{}", key.suffix())
}

/// A breaker's retry budget (see `scripts/retry_budget.lua`): beside its record, under the
/// same hash tag, but read by no breaker script.
pub fn budget_key(namespace: &str, service: &str) -> String {
    format!("infuse:{{{namespace}/{service}}}:retry")
}

/// A breaker's concurrency leases (see `scripts/lease_permits.lua`): beside its record,
/// under the same hash tag, but read by no breaker script.
pub fn permits_key(namespace: &str, service: &str) -> String {
    format!("infuse:{{{namespace}/{service}}}:permits")
}

/// Every key of a breaker, in script order.
pub fn breaker_keys(namespace: &str, service: &str) -> [String; 5] {
    BreakerKey::ALL.map(|key| breaker_key(namespace, service, key))
}

/// A `SCAN` pattern matching the state key of every breaker of `namespace` (whatever
/// glob characters the namespace holds); [`service_of_state_key`] reads a match back.
pub fn state_keys_pattern(namespace: &str) -> String {
    let mut pattern = String::new();
    for c in format!("infuse:{{{namespace}/").chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str("*}:state");
    pattern
}

/// The service whose state key `key` is, in `namespace`.
pub fn service_of_state_key<'k>(namespace: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix("infuse:{")?
        .strip_prefix(namespace)?
        .strip_prefix('/')?
        .strip_suffix("}:state")
}

/// The change log's keys, in script order (`KEYS[1..3]` of `scripts/log.lua`): the
/// namespace version, the changes and the listing.
pub fn log_keys(namespace: &str) -> [String; 3] {
    ["version", "changes", "listed"].map(|key| format!("infuse:{{{namespace}}}:{key}"))
}

/// The change log's sorted set of services (every breaker created or changed lately).
pub fn changes_key(namespace: &str) -> String {
    format!("infuse:{{{namespace}}}:changes")
}

/// How a process's id is written (in its announcement's key, the index of processes,
/// a breaker's history and its trial tokens): lowercase hex.
pub fn process_id(instance: u64) -> String {
    format!("{instance:x}")
}

/// The key under which the process of id `id` (see [`process_id`]) announces itself.
pub fn process_key(namespace: &str, id: &str) -> String {
    format!("infuse:{{{namespace}}}:process:{id}")
}

/// The namespace's index of live processes: a sorted set of process ids scored by when
/// their announcement expires.
pub fn processes_key(namespace: &str) -> String {
    format!("infuse:{{{namespace}}}:processes")
}

/// The pub/sub channel of a namespace's events.
pub fn events_channel(namespace: &str) -> String {
    format!("infuse:events:{namespace}")
}

/// The fields of a breaker's state hash, in the order the scripts read them (`HMGET` in
/// `scripts/prelude.lua`).
pub const STATE_FIELDS: [&str; 9] = [
    "inc", "gen", "seq", "state", "fail", "succ", "reo", "str", "cls",
];

/// The state hash's field holding the operator's shadow switch (`"0"`, `"1"`; absent:
/// never switched). Read with [`STATE_FIELDS`] (`HMGET` in `scripts/prelude.lua`) but
/// written only by `scripts/set_shadow.lua`: `save` leaves it as it is.
pub const SHADOW_FIELD: &str = "shd";

/// A breaker's state hash, as a reader shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateHash {
    /// `inc`: the record's incarnation (random, drawn when it was created).
    pub incarnation: u64,
    /// `gen`: bumped by every transition.
    pub generation: u64,
    /// `seq`: bumped by every write.
    pub seq: u64,
    /// `state`, by its code.
    pub state: State,
    /// `fail`: the consecutive failures.
    pub fail_counter: u64,
    /// `succ`: the successful trials in a row.
    pub success_counter: u64,
    /// `reo`: consecutive failed trials (the backoff exponent).
    pub reopens: u64,
    /// `cls`: when the current closed period began, if it is a recovery (unix ms, the
    /// server's clock; slow start is timed from it). `None` when 0 or absent.
    pub closed_at_ms: Option<u64>,
    /// `shd`: the operator's shadow switch; `None` when absent (or not `0`/`1`).
    pub shadow: Option<bool>,
}

/// A state hash whose `state` is no state code: the scripts refuse such a record until
/// an operator forces the breaker (`close` repairs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownState(pub u64);

impl fmt::Display for UnknownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown state code {}", self.0)
    }
}

impl StateHash {
    /// Reads a (non-empty) state hash as `HGETALL` answers it. A number that is absent or
    /// not decimal reads as 0, as the scripts read an absent `reo`: a reader shows what is
    /// there; the scripts are the ones that refuse garbage.
    pub fn parse(hash: &HashMap<String, String>) -> Result<StateHash, UnknownState> {
        let number = |field: &str| {
            hash.get(field)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let [inc, generation, seq, state, fail, succ, reo, _, cls] = STATE_FIELDS;
        let code = number(state);
        let state = u8::try_from(code)
            .ok()
            .and_then(State::from_code)
            .ok_or(UnknownState(code))?;
        Ok(StateHash {
            incarnation: number(inc),
            generation: number(generation),
            seq: number(seq),
            state,
            fail_counter: number(fail),
            success_counter: number(succ),
            reopens: number(reo),
            closed_at_ms: Some(number(cls)).filter(|&ms| ms > 0),
            shadow: match hash.get(SHADOW_FIELD).map(String::as_str) {
                Some("1") => Some(true),
                Some("0") => Some(false),
                _ => None,
            },
        })
    }
}

/// The window's totals over its live buckets, from its hash as `HGETALL` answers it:
/// fields `b0`…`b9` hold `"<bucket> <calls> <failures> <slow>"` per bucket slot (the live
/// ones are the ten newest buckets), fields `i<instance>` the last bucket an instance
/// reported failures in. `None` without a bucket. Sums saturate: the keys may hold
/// anything.
pub fn window_totals(window: &HashMap<String, String>) -> Option<Totals> {
    let buckets: BTreeMap<u64, [u64; 3]> = window
        .iter()
        .filter(|(field, _)| field.starts_with('b'))
        .filter_map(|(_, value)| {
            let mut parts = value.split(' ').map(|p| p.parse::<u64>().ok());
            Some((
                parts.next()??,
                [parts.next()??, parts.next()??, parts.next()??],
            ))
        })
        .collect();
    let newest = *buckets.keys().next_back()?;
    let live = buckets.range(newest.saturating_sub(BUCKETS - 1)..);
    Some(
        live.fold(Totals::default(), |sum, (_, [calls, failures, slow])| {
            Totals {
                calls: sum.calls.saturating_add(*calls),
                failures: sum.failures.saturating_add(*failures),
                slow: sum.slow.saturating_add(*slow),
            }
        }),
    )
}

/// One entry of a breaker's history: `"<unix ms> <from> <to> <generation> <reason>
/// <process id>"`, written by the script that made the change (`remember` in
/// `scripts/prelude.lua`); an operator's change (force, set_shadow) noted with [`Audit`]
/// adds `" <who> <why>"`, each [`encode_field`]-encoded; an entry made in shadow mode
/// ends with the mark `" shadow"`. Entries without them still parse (a reader older than
/// the mark skips a marked entry, as any it cannot read). An operator's shadow switch is
/// an entry from and to the same state, with the reason [`SHADOW_ON`] or [`SHADOW_OFF`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When, on the server's clock (unix ms).
    pub at_ms: u64,
    /// The state before, by name.
    pub from: String,
    /// The state after, by name.
    pub to: String,
    /// The generation after.
    pub generation: u64,
    /// Why (a `TransitionReason`, by name).
    pub reason: String,
    /// The process that made it (see [`process_id`]).
    pub process: String,
    /// Who asked for an operator's change (e.g. `user@host` for the CLI); `None` when
    /// not noted (then [`HistoryEntry::process`] is who).
    pub who: Option<String>,
    /// The operator's reason, as given (at most [`WHY_MAX`] bytes); `None` when none.
    pub why: Option<String>,
    /// Made while the breaker was in shadow mode: a transition that rejected nothing
    /// (the breaker "would have" opened), or a switch into shadow mode.
    pub shadow: bool,
}

/// The reason of the history entry of an operator's switch into shadow mode.
pub const SHADOW_ON: &str = "shadow_on";
/// The reason of the history entry of an operator's switch out of shadow mode.
pub const SHADOW_OFF: &str = "shadow_off";

/// The last field of an entry made in shadow mode.
const SHADOW_MARK: &str = "shadow";

impl HistoryEntry {
    /// Reads one entry; `None` for anything else.
    pub fn parse(entry: &str) -> Option<HistoryEntry> {
        let mut parts = entry.split(' ');
        let mut parsed = HistoryEntry {
            at_ms: parts.next()?.parse().ok()?,
            from: parts.next()?.to_owned(),
            to: parts.next()?.to_owned(),
            generation: parts.next()?.parse().ok()?,
            reason: parts.next()?.to_owned(),
            process: parts.next()?.to_owned(),
            who: None,
            why: None,
            shadow: false,
        };
        // After the process: nothing, the mark, who and why, or who, why and the mark.
        let rest: Vec<&str> = parts.collect();
        let audit = match rest.as_slice() {
            [] => None,
            [mark] if *mark == SHADOW_MARK => {
                parsed.shadow = true;
                None
            }
            [who, why] => Some((who, why)),
            [who, why, mark] if *mark == SHADOW_MARK => {
                parsed.shadow = true;
                Some((who, why))
            }
            _ => return None,
        };
        if let Some((who, why)) = audit {
            parsed.who = Some(decode_field(who)?).filter(|who| !who.is_empty());
            parsed.why = Some(decode_field(why)?).filter(|why| !why.is_empty());
        }
        Some(parsed)
    }

    /// Whether this entry is an operator's shadow switch (not a change of state).
    pub fn is_shadow_switch(&self) -> bool {
        self.reason == SHADOW_ON || self.reason == SHADOW_OFF
    }
}

/// The largest operator's reason kept, in bytes (a longer one is cut at a character
/// boundary: the history is a bounded list read whole by `explain`).
pub const WHY_MAX: usize = 200;
/// The largest "who" kept, in bytes.
pub const WHO_MAX: usize = 100;
/// The largest encoded field the force script accepts (every byte encoded: 3 each).
pub const AUDIT_FIELD_MAX: usize = 3 * WHY_MAX;

/// Who asked for an operator's change, and why, for the breaker's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// Who (the CLI: `user@host`); empty with a reason: filled in when the change is made
    /// (see [`Audit::because`]); empty without one: the entry's process id names who.
    pub who: String,
    /// Why; empty: no reason given.
    pub why: String,
}

impl Audit {
    /// `who` and `why`, each cut to its bound ([`WHO_MAX`], [`WHY_MAX`]).
    pub fn new(who: &str, why: &str) -> Audit {
        Audit {
            who: bounded(who, WHO_MAX).to_owned(),
            why: bounded(why, WHY_MAX).to_owned(),
        }
    }

    /// An audit giving only why; who is filled in when the change is made: the process
    /// (`name@host (pid N)`) for a [`Breaker`](crate::Breaker)'s control, the operator
    /// (`user@host`, see [`operator`](crate::admin::operator)) for an
    /// [`Admin`](crate::admin::Admin)'s.
    pub fn because(why: &str) -> Audit {
        Audit::new("", why)
    }

    /// This audit, with `who()` named when it gives a reason and nobody (see
    /// [`Audit::because`]).
    pub(crate) fn naming(&self, who: impl FnOnce() -> String) -> std::borrow::Cow<'_, Audit> {
        if self.who.is_empty() && !self.why.is_empty() {
            std::borrow::Cow::Owned(Audit::new(&who(), &self.why))
        } else {
            std::borrow::Cow::Borrowed(self)
        }
    }

    /// The force script's last two arguments: both empty when nothing is noted (the
    /// entry keeps the six-field form), else both encoded.
    pub fn script_args(&self) -> [String; 2] {
        if self.who.is_empty() && self.why.is_empty() {
            return [String::new(), String::new()];
        }
        [
            encode_field(bounded(&self.who, WHO_MAX)),
            encode_field(bounded(&self.why, WHY_MAX)),
        ]
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn bounded(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One history field holding free text: space, `%`, control bytes (and DEL) as `%XX`,
/// so that splitting the entry at spaces cannot be fooled; the empty text as `-` (and
/// `-` itself as `%2D`), so that no field is empty.
pub fn encode_field(text: &str) -> String {
    if text.is_empty() {
        return "-".to_owned();
    }
    if text == "-" {
        return "%2D".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ' ' | '%' | '\u{0}'..='\u{1f}' | '\u{7f}' => {
                out.push_str(&format!("%{:02X}", c as u32))
            }
            _ => out.push(c),
        }
    }
    out
}

/// The text of a field written by [`encode_field`]; `None` if it is not one (a stray
/// `%`, or bytes that are not UTF-8 once decoded).
pub fn decode_field(field: &str) -> Option<String> {
    if field == "-" {
        return Some(String::new());
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = field.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The process holding a trial, from the token in the trial key (32 hex digits, the
/// first 16 its process's id: see `TrialToken`).
pub fn trial_holder(token: &str) -> Option<u64> {
    u64::from_str_radix(token.get(..16)?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{process_instance, TrialToken};

    const PRELUDE: &str = include_str!("../../../scripts/prelude.lua");
    const LOG: &str = include_str!("../../../scripts/log.lua");
    const CHANGES: &str = include_str!("../../../scripts/changes.lua");
    const RECORD_CALLS: &str = include_str!("../../../scripts/record_calls.lua");
    const FORCE: &str = include_str!("../../../scripts/force.lua");
    const SET_SHADOW: &str = include_str!("../../../scripts/set_shadow.lua");
    const GUIDE: &str = include_str!("../../guide/fleet.md");

    /// The guide's "What Redis holds" table names every key and state field of this
    /// layout, and the same history length: the reader's copy cannot drift from it.
    #[test]
    fn the_guide_shows_this_layout() {
        let table = GUIDE
            .split("## What Redis holds")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("the guide's fleet chapter has a \"What Redis holds\" section");
        for key in BreakerKey::ALL {
            let name = breaker_key("<namespace>", "<service>", key);
            assert!(table.contains(&format!("| `{name}` |")), "{name} missing");
        }
        for name in [
            budget_key("<namespace>", "<service>"),
            permits_key("<namespace>", "<service>"),
            process_key("<namespace>", "<process id>"),
            processes_key("<namespace>"),
        ]
        .into_iter()
        .chain(log_keys("<namespace>"))
        {
            assert!(table.contains(&format!("| `{name}` |")), "{name} missing");
        }
        assert!(table.contains(&format!("channel `{}`", events_channel("<namespace>"))));
        let state_row = table
            .lines()
            .find(|line| line.contains(":state` |"))
            .unwrap();
        for field in STATE_FIELDS {
            assert!(
                state_row.contains(&format!("`{field}`")),
                "field {field} missing"
            );
        }
        assert!(table.contains(&format!("last {HISTORY_LEN} transitions")));
    }

    /// The key a script's header names for `KEYS[n]` (`-- KEYS[n]  <key>  <TYPE>, ...`).
    fn header_key(script: &str, n: usize) -> &str {
        let prefix = format!("-- KEYS[{n}]");
        let line = script
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no header line for KEYS[{n}]"));
        line.split_whitespace().next().unwrap()
    }

    #[test]
    fn breaker_keys_are_the_ones_the_scripts_name() {
        let keys = breaker_keys("<namespace>", "<service>");
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(header_key(PRELUDE, i + 1), key, "KEYS[{}]", i + 1);
        }
        assert_eq!(keys[0], "infuse:{<namespace>/<service>}:state");
    }

    #[test]
    fn namespace_keys_are_the_ones_the_scripts_name() {
        for (i, key) in log_keys("<namespace>").iter().enumerate() {
            assert_eq!(header_key(LOG, i + 1), key, "log.lua KEYS[{}]", i + 1);
        }
        assert_eq!(header_key(CHANGES, 4), process_key("<namespace>", "<id>"));
        assert_eq!(header_key(CHANGES, 5), processes_key("<namespace>"));
        assert_eq!(changes_key("ns"), log_keys("ns")[1]);
    }

    #[test]
    fn state_fields_are_the_ones_the_scripts_read_and_write() {
        let quoted = STATE_FIELDS.map(|field| format!("'{field}'"));
        let read = format!(
            "redis.pcall('HMGET', KEYS[1], {}, '{SHADOW_FIELD}')",
            quoted.join(", ")
        );
        assert!(PRELUDE.contains(&read), "prelude.lua reads {read}");
        // `save` writes each field, in the same order, and no other.
        let save = PRELUDE
            .split("redis.call('HSET', KEYS[1], ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap();
        let written: Vec<&str> = save
            .split(',')
            .map(str::trim)
            .step_by(2)
            .map(|field| field.trim_matches('\''))
            .collect();
        assert_eq!(written, STATE_FIELDS);
        // The shadow switch is written by its own script alone.
        assert!(SET_SHADOW.contains(&format!(
            "redis.call('HSET', KEYS[1], '{SHADOW_FIELD}', rec.shd)"
        )));
        assert!(!PRELUDE.contains(&format!("'{SHADOW_FIELD}', rec.shd")));
    }

    #[test]
    fn the_history_is_as_long_as_the_scripts_keep_it() {
        let line = PRELUDE
            .lines()
            .find_map(|l| l.strip_prefix("local HISTORY_LEN = "));
        assert_eq!(line.and_then(|n| n.trim().parse().ok()), Some(HISTORY_LEN));
    }

    #[test]
    fn window_fields_are_the_ones_record_calls_writes() {
        assert!(RECORD_CALLS.contains("slot = 'b' .. string.format('%d', index % 10)"));
        assert!(RECORD_CALLS.contains("me = 'i' .. ARGV[6]"));
        assert_eq!(crate::core::window::BUCKETS, 10);
    }

    #[test]
    fn a_state_hash_reads_as_written() {
        let hash: HashMap<String, String> = STATE_FIELDS
            .iter()
            .zip(["77", "4", "9", "0", "5", "0", "2", "1f 2e", "1700000000000"])
            .map(|(field, value)| (field.to_string(), value.to_string()))
            .collect();
        let read = StateHash::parse(&hash).unwrap();
        assert_eq!(
            read,
            StateHash {
                incarnation: 77,
                generation: 4,
                seq: 9,
                state: State::Closed,
                fail_counter: 5,
                success_counter: 0,
                reopens: 2,
                closed_at_ms: Some(1_700_000_000_000),
                shadow: None,
            }
        );
        let mut switched = hash.clone();
        switched.insert(SHADOW_FIELD.to_owned(), "1".to_owned());
        assert_eq!(StateHash::parse(&switched).unwrap().shadow, Some(true));
        switched.insert(SHADOW_FIELD.to_owned(), "0".to_owned());
        assert_eq!(StateHash::parse(&switched).unwrap().shadow, Some(false));
        let mut old = hash.clone();
        old.remove("reo"); // a record written before `reo` existed
        old.remove("cls"); // or `cls`
        old.insert("fail".to_owned(), "nan".to_owned());
        let read = StateHash::parse(&old).unwrap();
        assert_eq!(
            (read.reopens, read.fail_counter, read.closed_at_ms),
            (0, 0, None)
        );
        let mut garbage = hash;
        garbage.insert("state".to_owned(), "9".to_owned());
        assert_eq!(StateHash::parse(&garbage), Err(UnknownState(9)));
    }

    #[test]
    fn the_window_sums_its_ten_newest_buckets() {
        let hash = |fields: &[(&str, String)]| -> HashMap<String, String> {
            fields
                .iter()
                .map(|(field, value)| (field.to_string(), value.clone()))
                .collect()
        };
        let window = hash(&[
            ("b0", "100 5 1 0".to_owned()),
            ("b1", "109 3 3 1".to_owned()),
            ("b2", "90 7 7 7".to_owned()), // older than the window
            ("i42", "109".to_owned()),
        ]);
        let totals = |calls, failures, slow| Totals {
            calls,
            failures,
            slow,
        };
        assert_eq!(window_totals(&window), Some(totals(8, 4, 1)));
        assert_eq!(window_totals(&HashMap::new()), None);
        let huge = hash(&[
            ("b0", format!("100 {} 1 0", u64::MAX)),
            ("b1", "101 5 1 0".to_owned()),
        ]);
        assert_eq!(
            window_totals(&huge),
            Some(totals(u64::MAX, 2, 0)),
            "saturates"
        );
    }

    #[test]
    fn history_entries_read_as_remember_writes_them() {
        assert!(PRELUDE.contains("string.format('%d %s %s %d %s %s', ms, STATE_NAMES[from],"));
        let entry =
            HistoryEntry::parse("1764550000123 closed open 4 consecutive_failures 1f2e").unwrap();
        assert_eq!((entry.from.as_str(), entry.to.as_str()), ("closed", "open"));
        assert_eq!((entry.at_ms, entry.generation), (1764550000123, 4));
        assert_eq!(
            (entry.reason.as_str(), entry.process.as_str()),
            ("consecutive_failures", "1f2e")
        );
        assert!(HistoryEntry::parse("garbage").is_none());
        assert_eq!(
            (entry.who, entry.why),
            (None, None),
            "a six-field entry still reads"
        );
    }

    #[test]
    fn an_operators_entry_reads_who_and_why() {
        assert!(FORCE.contains("remember(from, rec, 'manual', ARGV[7], ARGV[3], repaired, audit)"));
        let entry = HistoryEntry::parse(
            "1764550000123 closed forced-open 5 manual 1f2e ann@h1 deploy%20gone%25%0Abad",
        )
        .unwrap();
        assert_eq!(entry.who.as_deref(), Some("ann@h1"));
        assert_eq!(entry.why.as_deref(), Some("deploy gone%\nbad"));
        let no_why = HistoryEntry::parse("1 closed open 5 manual 1f2e ann@h1 -").unwrap();
        assert_eq!((no_why.who.as_deref(), no_why.why), (Some("ann@h1"), None));
        for bad in [
            "1 closed open 5 manual 1f2e ann@h1",
            "1 closed open 5 manual 1f2e ann@h1 a b",
            "1 closed open 5 manual 1f2e ann@h1 - shadows",
            "1 closed open 5 manual 1f2e ann@h1 50%",
            "1 closed open 5 manual 1f2e ann@h1 %ZZ",
            "1 closed open 5 manual 1f2e ann@h1 %FF",
        ] {
            assert!(HistoryEntry::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_shadow_entry_reads_its_mark_after_the_process_or_the_audit() {
        assert!(PRELUDE.contains("mark = ' shadow'"));
        assert!(PRELUDE.contains(".. (audit or '') .. mark)"));
        let trip =
            HistoryEntry::parse("1764550000123 closed open 4 consecutive_failures 1f2e shadow")
                .unwrap();
        assert!(trip.shadow && trip.who.is_none() && !trip.is_shadow_switch());
        assert_eq!((trip.to.as_str(), trip.generation), ("open", 4));
        let switch = HistoryEntry::parse(&format!(
            "1764550000123 open open 4 {SHADOW_ON} 1f2e ann@h1 rollout shadow"
        ))
        .unwrap();
        assert!(switch.shadow && switch.is_shadow_switch());
        assert_eq!(switch.who.as_deref(), Some("ann@h1"));
        assert_eq!(switch.why.as_deref(), Some("rollout"));
        let off = HistoryEntry::parse(&format!("1 open open 4 {SHADOW_OFF} 1f2e - -")).unwrap();
        assert!(!off.shadow && off.is_shadow_switch());
        for reason in [SHADOW_ON, SHADOW_OFF] {
            assert!(SET_SHADOW.contains(&format!("'{reason}'")), "{reason}");
        }
    }

    #[test]
    fn free_text_is_bounded_and_encoded_to_one_field() {
        let hostile = "a b\n\r\u{1b}[31m%-\u{7f}\u{0}é";
        let encoded = encode_field(hostile);
        assert_eq!(encoded, "a%20b%0A%0D%1B[31m%25-%7F%00é");
        assert_eq!(decode_field(&encoded).as_deref(), Some(hostile));
        for text in ["", "-", "%", "%2D", "--"] {
            assert_eq!(
                decode_field(&encode_field(text)).as_deref(),
                Some(text),
                "{text:?}"
            );
        }
        assert_eq!(bounded("héllo", 2), "h", "cut at a character boundary");
        let long = "é".repeat(10_000);
        let audit = Audit::new(&long, &long);
        assert_eq!((audit.who.len(), audit.why.len()), (WHO_MAX, WHY_MAX));
        let [who, why] = Audit::new("ann@h1", &"\n".repeat(10_000)).script_args();
        assert_eq!(who, "ann@h1");
        assert_eq!(
            why.len(),
            AUDIT_FIELD_MAX,
            "every byte encoded, within the script's bound"
        );
        assert_eq!(
            Audit::default().script_args(),
            [String::new(), String::new()]
        );
        assert!(
            PRELUDE.contains(&format!("local AUDIT_FIELD_MAX = {AUDIT_FIELD_MAX}\n")),
            "the script's bound is this one"
        );
        assert!(GUIDE.contains(&format!("each at most {WHY_MAX} bytes of text")));
    }

    #[test]
    fn a_trial_token_names_its_process() {
        let token = TrialToken::new().to_string();
        assert_eq!(trial_holder(&token), Some(process_instance()));
        assert_eq!(
            trial_holder("001c0d7a01c8aa0e1234567890abcdef").map(process_id),
            Some("1c0d7a01c8aa0e".to_owned())
        );
        assert_eq!(trial_holder("short"), None);
    }

    #[test]
    fn state_keys_are_found_by_pattern_and_read_back() {
        assert_eq!(
            state_keys_pattern("a*b?[c]\\"),
            "infuse:{a\\*b\\?\\[c\\]\\\\/*}:state"
        );
        let key = breaker_key("ns", "users api", BreakerKey::State);
        assert_eq!(service_of_state_key("ns", &key), Some("users api"));
        assert_eq!(service_of_state_key("other", &key), None);
        let open = breaker_key("ns", "users", BreakerKey::Open);
        assert_eq!(service_of_state_key("ns", &open), None);
    }
}
