-- note_change: records in the namespace's change log that breaker ARGV[1] changed in a
-- way other processes must learn (a transition, a record created or replaced, an
-- operator's command): bumps the namespace version and scores the breaker with it, and
-- lists it for as long as its record lives after this change. Sent by the client after
-- the breaker's own script (a separate command: in Redis Cluster the namespace's keys
-- live in another slot than the breaker's). Keys: see log.lua.
-- ARGV: service, keep_ms (how long the record lives after this change; '' = for good: a
--       forced state)
local version = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], version, ARGV[1])
local keep = tonumber(ARGV[2])
if keep then
  redis.call('ZADD', KEYS[3], now_ms() + keep, ARGV[1])
  bound_log(keep)
else
  redis.call('ZADD', KEYS[3], '+inf', ARGV[1])
  bound_log(0)
end
return version
