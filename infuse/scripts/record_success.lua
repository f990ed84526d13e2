-- record_success: a success of a call admitted while closed at generation ARGV[1] resets
-- the consecutive-failure counter (sent once after failures, not per call).
-- ARGV: generation, key_ttl_ms, channel, service
local rec = load(nil)
if not rec then
  return ABSENT
end
if rec.state ~= CLOSED or rec.gen ~= tonumber(ARGV[1]) or rec.fail == 0 then
  return reply(0, rec.state, rec)
end
rec.fail = 0
save(rec, ARGV[2])
publish(ARGV[3], ARGV[4], rec)
return reply(1, CLOSED, rec)
