-- touch: keeps the breakers a process tracks (ARGV[2..]) listed in the change log for at
-- least ARGV[1] ms more (never less than they were: a forced record's stays +inf), and
-- lists those that are missing (with version 0 in `changes`: listed, but no change
-- anyone must re-read). Sent with a process's periodic full resync, which registers every
-- one of them anyway (recreating a record that expired), so a breaker in use stays
-- listed whether or not anything is noted about it: the ones only counters are written
-- to, or idle ones. Keys: see log.lua.
-- ARGV: keep_ms, service...
local keep = tonumber(ARGV[1])
local until_ms = now_ms() + keep
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[3], ARGV[i])
  if not score or (score ~= 'inf' and tonumber(score) < until_ms) then
    redis.call('ZADD', KEYS[3], until_ms, ARGV[i])
  end
  redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[i])
end
-- A log that was gone (flushed, expired, repaired) starts again at version 0, so that
-- readers stop finding it gone (each time, a full pass of every process) although no
-- change is noted.
redis.call('SET', KEYS[1], 0, 'NX')
bound_log(keep)
return #ARGV - 1
