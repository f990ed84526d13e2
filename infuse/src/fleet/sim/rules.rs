//! Check (2): every write the simulated store makes is a transition the rules allow
//! from the command it received. Written from the rules table of
//! [`machine`](crate::core::machine) and the scripts' headers, not from the machine's
//! code: the store applies the machine, and this says independently whether what it did
//! is allowed (the arithmetic of a rate over the window is the window's own).

use std::time::Duration;

use tokio::time::Instant;

use crate::core::machine::Record;
use crate::core::window::bucket_ms;
use crate::core::{store_millis, Command, Outcome, Settings, State, Target};

/// Why the change from `before` to `after` by `command` at `now` is not allowed (`None`:
/// it is). Replacing or creating a record (a new incarnation) is judged by the store's
/// history oracle, not here.
pub(super) fn violation(
    before: Option<&Record>,
    command: &Command,
    after: Option<&Record>,
    outcome: &Outcome,
    settings: &Settings,
    now: Instant,
) -> Option<String> {
    let (b, a) = match (before, after) {
        (None, None) => {
            return outcome
                .applied
                .then(|| "a command about a missing record answered applied".to_owned());
        }
        (Some(_), None) => return Some("a record vanished by a command".to_owned()),
        (None, Some(a)) => {
            return match command {
                Command::Register { .. } | Command::Force(_) | Command::SetShadow { .. }
                    if a.seq == 1 =>
                {
                    None
                }
                Command::Register { .. } | Command::Force(_) | Command::SetShadow { .. } => {
                    Some(format!("a created record starts at seq {}, not 1", a.seq))
                }
                _ => Some("a record was created by a command that never creates one".to_owned()),
            };
        }
        (Some(b), Some(a)) => (b, a),
    };
    if a.version() != outcome.snapshot.version
        || a.state != outcome.snapshot.state
        || a.generation != outcome.snapshot.generation
    {
        return Some(format!(
            "the answer ({:?}) is not the record written ({a:?})",
            outcome.snapshot
        ));
    }
    if a == b {
        return None; // nothing written
    }
    if a.incarnation != b.incarnation {
        return match command {
            Command::Register { seed: Some(_) } if a.seq == 1 => None, // the oracle judges
            _ => Some(format!(
                "the record's incarnation changed ({} -> {}) by {command:?}",
                b.incarnation, a.incarnation
            )),
        };
    }
    if a.seq != b.seq + 1 {
        return Some(format!("a write moved seq {} -> {}", b.seq, a.seq));
    }
    if !outcome.applied {
        return Some("the record changed, yet the answer says not applied".to_owned());
    }
    let transition = a.state != b.state;
    let same_period = || {
        (a.state == b.state && a.generation == b.generation)
            .then_some(())
            .ok_or_else(|| {
                format!(
                    "{} gen {} -> {} gen {} without a transition",
                    b.state, b.generation, a.state, a.generation
                )
            })
    };
    let bumped = |to: State| {
        (a.state == to && a.generation == b.generation + 1)
            .then_some(())
            .ok_or_else(|| {
                format!(
                    "{} gen {} -> {} gen {}, expected {to} gen {}",
                    b.state,
                    b.generation,
                    a.state,
                    a.generation,
                    b.generation + 1
                )
            })
    };
    let lets_calls = matches!(b.state, State::Closed | State::Disabled);
    let result: Result<(), String> = match *command {
        Command::Register { .. } => Err("a register wrote over the record it found".to_owned()),
        Command::Snapshot => Err("a snapshot wrote".to_owned()),
        Command::RecordFailure {
            generation,
            count,
            instance,
        } => {
            if b.generation != generation || !lets_calls || count == 0 {
                Err(format!(
                    "a failure of gen {generation} (count {count}) was applied to {} gen {}",
                    b.state, b.generation
                ))
            } else if a.fail != b.fail.saturating_add(count) {
                Err(format!(
                    "fail {} + {count} became {} (not the sum)",
                    b.fail, a.fail
                ))
            } else if transition {
                bumped(State::Open)
                    .and_then(|()| closed_before(b))
                    .and_then(|()| consecutive_trips(b, a, Some(instance), settings))
                    .and_then(|()| opened_for(a, now, settings.reset_timeout))
            } else {
                same_period()
            }
        }
        Command::RecordSuccess { generation } => {
            if b.generation != generation || !lets_calls || b.fail == 0 {
                Err(format!(
                    "a success of gen {generation} was applied to {} gen {} fail {}",
                    b.state, b.generation, b.fail
                ))
            } else if a.fail != 0 {
                Err("a success left the fail counter above zero".to_owned())
            } else {
                same_period()
            }
        }
        Command::RecordCalls {
            generation,
            counts,
            instance,
        } => {
            if b.generation != generation || !lets_calls || counts.is_empty() {
                Err(format!(
                    "a batch of gen {generation} was applied to {} gen {}",
                    b.state, b.generation
                ))
            } else {
                let fail = if counts.has_success() {
                    counts.tail
                } else {
                    b.fail.saturating_add(counts.tail)
                };
                if a.fail != fail {
                    Err(format!(
                        "fail {} with a batch {counts:?} became {} (expected {fail})",
                        b.fail, a.fail
                    ))
                } else if transition {
                    let tail_instance = (counts.tail > 0).then_some(instance);
                    bumped(State::Open)
                        .and_then(|()| closed_before(b))
                        .and_then(|()| {
                            let streak = if counts.has_success() {
                                Record {
                                    streak: Vec::new(),
                                    ..b.clone()
                                }
                            } else {
                                b.clone()
                            };
                            consecutive_trips(&streak, a, tail_instance, settings).or_else(
                                |consecutive| {
                                    rate_trips(b, &counts, instance, settings, now).map_err(
                                        |rate| format!("neither rule trips: {consecutive}; {rate}"),
                                    )
                                },
                            )
                        })
                        .and_then(|()| opened_for(a, now, settings.reset_timeout))
                } else {
                    same_period()
                }
            }
        }
        Command::AcquireTrial { token, lease } => {
            let due = match b.state {
                State::HalfOpen => true,
                State::Open => b.open_until.is_none_or(|until| until <= now),
                _ => false,
            };
            let holder = b.trial.filter(|&(_, until)| now < until).map(|(t, _)| t);
            if !due {
                Err(format!(
                    "a trial was granted while {} with {:?} left",
                    b.state,
                    b.open_until
                        .map(|until| until.saturating_duration_since(now))
                ))
            } else if holder.is_some_and(|holder| holder != token) {
                Err("a trial was granted while another token held the slot".to_owned())
            } else if a.trial != Some((token, now + lease)) {
                Err(format!("the granted slot is {:?}", a.trial))
            } else if a.state != State::HalfOpen || a.generation != b.generation {
                Err(format!(
                    "a trial moved {} gen {} -> {} gen {}",
                    b.state, b.generation, a.state, a.generation
                ))
            } else {
                Ok(())
            }
        }
        Command::RecordTrial { token, success } => {
            let holder = b.trial.filter(|&(_, until)| now < until).map(|(t, _)| t);
            if b.state != State::HalfOpen || holder != Some(token) {
                Err(format!(
                    "a trial's result was applied to {} whose slot is {:?}, not the trial's",
                    b.state, b.trial
                ))
            } else if a.trial.is_some() {
                Err("a trial's result left the slot taken".to_owned())
            } else if success {
                if a.fail != 0 {
                    Err("a successful trial left the fail counter above zero".to_owned())
                } else if b.success + 1 >= settings.success_threshold {
                    bumped(State::Closed)
                } else if a.success != b.success + 1 {
                    Err(format!(
                        "a successful trial counted {} -> {}",
                        b.success, a.success
                    ))
                } else {
                    same_period()
                }
            } else {
                let open_for = Duration::from_millis(
                    settings.open_ms(b.reopens.saturating_add(1), token.jitter()),
                );
                let open_for = if settings.max_reset_timeout.is_none() {
                    settings.reset_timeout
                } else {
                    open_for
                };
                bumped(State::Open).and_then(|()| opened_for(a, now, open_for))
            }
        }
        Command::ReleaseTrial { token } => {
            let holder = b.trial.filter(|&(_, until)| now < until).map(|(t, _)| t);
            if holder != Some(token) {
                Err(format!(
                    "a release by a token that does not hold the slot ({:?})",
                    b.trial
                ))
            } else if a.trial.is_some() {
                Err("a release left the slot taken".to_owned())
            } else {
                same_period()
            }
        }
        Command::Force(target) => bumped(target.state()).and_then(|()| match target {
            Target::Open(open_for) => opened_for(a, now, open_for),
            _ => Ok(()),
        }),
        Command::SetShadow { on } => {
            let mut unswitched = a.clone();
            unswitched.shadow = b.shadow;
            unswitched.seq = b.seq;
            if a.shadow != Some(on) {
                Err(format!("the switch is {:?}, not {on}", a.shadow))
            } else if unswitched != *b {
                Err("a shadow switch changed more than the switch".to_owned())
            } else {
                Ok(())
            }
        }
    };
    result.err().map(|why| format!("{command:?}: {why}"))
}

fn closed_before(b: &Record) -> Result<(), String> {
    if b.state == State::Closed {
        Ok(())
    } else {
        Err(format!(
            "a {} breaker tripped (only a closed one does)",
            b.state
        ))
    }
}

/// The consecutive rule: `fail_max` failures in a row, reported by `min_instances`
/// distinct processes.
fn consecutive_trips(
    b: &Record,
    a: &Record,
    instance: Option<u64>,
    settings: &Settings,
) -> Result<(), String> {
    if a.fail < settings.fail_max {
        return Err(format!(
            "tripped at fail {} < fail_max {}",
            a.fail, settings.fail_max
        ));
    }
    if settings.min_instances > 1 {
        let mut reporters = if b.fail == 0 {
            Vec::new()
        } else {
            b.streak.clone()
        };
        if let Some(instance) = instance {
            if !reporters.contains(&instance) {
                reporters.push(instance);
            }
        }
        if reporters.len() < settings.min_instances as usize {
            return Err(format!(
                "tripped by the consecutive rule with {} reporter(s) < min_instances {}",
                reporters.len(),
                settings.min_instances
            ));
        }
    }
    Ok(())
}

/// A rate rule over the window with the batch in it.
fn rate_trips(
    b: &Record,
    counts: &crate::core::Counts,
    instance: u64,
    settings: &Settings,
    now: Instant,
) -> Result<(), String> {
    if !settings.has_rates() {
        return Err("no rate rule is set".to_owned());
    }
    let bucket = store_millis(now) / bucket_ms(settings.window);
    let mut window = b.window.clone();
    window.add(bucket, counts, instance);
    let totals = window.totals(bucket);
    let instances = window.instances(bucket);
    if totals.calls < u64::from(settings.min_calls) {
        return Err(format!(
            "{} calls < min_calls {}",
            totals.calls, settings.min_calls
        ));
    }
    if instances < settings.min_instances {
        return Err(format!(
            "{instances} reporting process(es) < min_instances {}",
            settings.min_instances
        ));
    }
    let reached = |count: u64, rate: Option<u32>| {
        rate.is_some_and(|r| count * 100 >= u64::from(r) * totals.calls)
    };
    if reached(totals.failures, settings.failure_rate)
        || reached(totals.slow, settings.slow_call_rate)
    {
        Ok(())
    } else {
        Err(format!("the window {totals:?} is below the rates"))
    }
}

fn opened_for(a: &Record, now: Instant, open_for: Duration) -> Result<(), String> {
    if a.open_until == Some(now + open_for) {
        Ok(())
    } else {
        Err(format!(
            "opened until {:?} from now, expected {open_for:?}",
            a.open_until
                .map(|until| until.saturating_duration_since(now))
        ))
    }
}
