-- record_trial (machine.rs: record_trial): apply the result of the trial holding ARGV[1]
-- (ignored if the token no longer holds the slot). A success counts towards
-- success_threshold and closes at it; a failure re-opens.
-- ARGV: token, success (1/0), success_threshold, reset_timeout_ms, key_ttl_ms, channel, service
local rec = load()
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
    close(rec)
  end
else
  -- As pybreaker: the fail counter keeps counting through half-open.
  rec.fail = rec.fail + 1
  trip(rec, ARGV[4])
end
save(rec, ARGV[5])
publish(ARGV[6], ARGV[7], rec)
return reply(1, from, rec)
