-- release_trial (machine.rs: release_trial): give the trial slot back without a verdict
-- (the trial was cancelled or panicked).
-- ARGV: token, key_ttl_ms, channel, service
local rec = load()
if not rec then
  return ABSENT
end
if redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return reply(0, rec.state, rec)
end
room(rec, false)
redis.call('DEL', KEYS[3])
save(rec, ARGV[2])
publish(ARGV[3], ARGV[4], rec)
return reply(1, rec.state, rec)
