-- record_failure (machine.rs: record_failure): count ARGV[2] failures of calls admitted at
-- generation ARGV[1] while calls ran (closed or disabled); a closed breaker trips at
-- fail_max (policy.rs: TripPolicy::ConsecutiveFailures) once the streak holds failures of
-- min_instances distinct processes (Record::streak_trips). A process coalesces the
-- failures that happen while its previous report is in flight into one count.
-- A trip during slow start is a failed recovery (prelude.lua: trip_closed).
-- ARGV: generation, count (>= 1), fail_max, reset_timeout_ms, key_ttl_ms, channel, service,
--       process, instance, min_instances (>= 1), max_reset_timeout_ms (0 = no backoff),
--       slow_start_ms (0 = off)
local rec = load_calls()
if not rec then
  return ABSENT
end
local from = rec.state
local count = tonumber(ARGV[2])
if rec.gen ~= tonumber(ARGV[1]) or (rec.state ~= CLOSED and rec.state ~= DISABLED)
    or count < 1 then
  return reply(0, from, rec)
end
local before, streak_before = rec.fail, rec.str
rec.fail = math.min(rec.fail + count, MAX_COUNT)
local quorum = tonumber(ARGV[10])
note_streak(rec, ARGV[9], quorum)
local trips = rec.state == CLOSED and streak_trips(rec, tonumber(ARGV[3]), quorum)
if not trips and rec.fail == before and rec.str == streak_before then
  -- The counter is saturated: nothing changed (machine.rs: no write, no new seq).
  return reply(1, from, rec)
end
room(rec, trips)
if trips then
  check_history()
  trip_closed(rec, tonumber(ARGV[4]), tonumber(ARGV[11]), tonumber(ARGV[12]))
  save(rec, ARGV[5])
  remember(from, rec, 'consecutive_failures', ARGV[8], ARGV[5])
else
  save_fail(rec, ARGV[5])
end
local r = reply(1, from, rec)
-- Other processes must learn of a trip, and of the fail counter's 0 -> non-zero edge
-- (their views' dirty bit: a success then resets the fleet's count); further failures
-- reach them with the next read. Publishing every failure would send each process a
-- message per failure of every other process.
if rec.state ~= from or before == 0 then
  publish_reply(ARGV[6], ARGV[7], r)
end
return r
