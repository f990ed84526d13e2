-- record_failure: count a failure of a call admitted while closed at generation ARGV[1];
-- trip at fail_max.
-- ARGV: generation, fail_max, reset_timeout_ms, key_ttl_ms, channel, service, inc
local rec = load(ARGV[7])
if rec.created then
  save(rec, ARGV[4])
end
local from = rec.state
if rec.state ~= CLOSED or rec.gen ~= tonumber(ARGV[1]) then
  return reply(0, from, rec)
end
rec.fail = rec.fail + 1
if rec.fail >= tonumber(ARGV[2]) then
  rec.state = OPEN
  rec.gen = rec.gen + 1
  rec.succ = 0
  redis.call('SET', KEYS[2], rec.gen, 'PX', ARGV[3])
  redis.call('DEL', KEYS[3])
end
save(rec, ARGV[4])
publish(ARGV[5], ARGV[6], rec)
return reply(1, from, rec)
