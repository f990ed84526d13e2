-- record_trial: apply the result of the trial holding ARGV[1] (ignored if the token no
-- longer holds the slot). Success counts towards success_threshold; failure re-opens.
-- ARGV: token, success (1/0), success_threshold, reset_timeout_ms, key_ttl_ms, channel, service
local rec = load(nil)
if not rec then
  return ABSENT
end
local from = rec.state
if rec.state ~= HALF_OPEN or redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return reply(0, from, rec)
end
redis.call('DEL', KEYS[3])
if ARGV[2] == '1' then
  rec.fail = 0
  rec.succ = rec.succ + 1
  if rec.succ >= tonumber(ARGV[3]) then
    rec.state = CLOSED
    rec.gen = rec.gen + 1
    rec.succ = 0
    redis.call('DEL', KEYS[2])
  end
else
  rec.fail = rec.fail + 1
  rec.state = OPEN
  rec.gen = rec.gen + 1
  rec.succ = 0
  redis.call('SET', KEYS[2], rec.gen, 'PX', ARGV[4])
end
save(rec, ARGV[5])
publish(ARGV[6], ARGV[7], rec)
return reply(1, from, rec)
