-- record_success (machine.rs: record_success): a success of a call admitted at
-- generation ARGV[1] while calls ran resets the consecutive-failure count (sent once
-- after failures, not per call).
-- ARGV: generation, key_ttl_ms, channel, service
local rec = load_calls()
if not rec then
  return ABSENT
end
local from = rec.state
if rec.gen ~= tonumber(ARGV[1]) or (rec.state ~= CLOSED and rec.state ~= DISABLED)
    or rec.fail == 0 then
  return reply(0, from, rec)
end
room(rec, false)
rec.fail = 0
rec.str = ''
save_fail(rec, ARGV[2])
local r = reply(1, from, rec)
publish_reply(ARGV[3], ARGV[4], r)
return r
