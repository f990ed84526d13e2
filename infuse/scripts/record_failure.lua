-- record_failure (machine.rs: record_failure): count a failure of a call admitted at
-- generation ARGV[1] while calls ran (closed or disabled); a closed breaker trips at
-- fail_max (policy.rs: TripPolicy::ConsecutiveFailures).
-- ARGV: generation, fail_max, reset_timeout_ms, key_ttl_ms, channel, service
local rec = load()
if not rec then
  return ABSENT
end
local from = rec.state
if rec.gen ~= tonumber(ARGV[1]) or (rec.state ~= CLOSED and rec.state ~= DISABLED) then
  return reply(0, from, rec)
end
rec.fail = rec.fail + 1
if rec.state == CLOSED and rec.fail >= tonumber(ARGV[2]) then
  trip(rec, ARGV[3])
end
save(rec, ARGV[4])
publish(ARGV[5], ARGV[6], rec)
return reply(1, from, rec)
