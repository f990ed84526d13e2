-- release_trial: give the trial slot back without a verdict (cancelled or panicked trial).
-- ARGV: token, key_ttl_ms
if redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[3])
local rec = load(nil)
if rec then
  save(rec, ARGV[2])
end
return 1
