-- changes: what changed in the namespace since version ARGV[1] (what a process read
-- last): {version, {services changed since}, announced}; version -1 when the log is gone
-- (Redis restarted empty or flushed), and no services when the version did not move (or
-- went back: the log was recreated, the reader re-reads everything).
--
-- The same read keeps the process's announcement alive (`infuse status`), so an idle
-- process sends one command per resync interval: the announcement is written when what
-- it says changed (ARGV[4]), else its TTL is renewed; either way the process is scored in
-- the namespace's index of processes by when its announcement expires, on Redis's clock,
-- and entries that expired are dropped (tools list processes without a SCAN, in a cluster
-- too: every key here shares the namespace's hash tag). announced = 0 when there was
-- nothing to renew (the key expired or was lost): the process sends it whole next time.
-- KEYS[1]  infuse:{<namespace>}:version, KEYS[2]  infuse:{<namespace>}:changes (see
--          note_change.lua)
-- KEYS[3]  infuse:{<namespace>}:process:<id>  STRING, the announcement (JSON)
-- KEYS[4]  infuse:{<namespace>}:processes     ZSET, process id -> expiry (server ms)
-- ARGV: the version last read (0: none), process id ('' = no announcement: then neither
--       KEYS[3..4] nor the rest of ARGV are given), the announcement's ttl ms, the
--       announcement ('' = unchanged: renew it)
local announced = 0
if ARGV[2] ~= '' then
  local ttl = tonumber(ARGV[3])
  local alive
  if ARGV[4] ~= '' then
    redis.call('SET', KEYS[3], ARGV[4], 'PX', ttl)
    alive = true
  else
    alive = redis.call('PEXPIRE', KEYS[3], ttl) == 1
  end
  if alive then
    local time = redis.call('TIME')
    local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    redis.call('ZADD', KEYS[4], now + ttl, ARGV[2])
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
    -- The index outlives its longest-lived entry, and no more.
    if redis.call('PTTL', KEYS[4]) < ttl then
      redis.call('PEXPIRE', KEYS[4], ttl)
    end
    announced = 1
  end
end
local version = redis.call('GET', KEYS[1])
if not version then
  return {-1, {}, announced}
end
version = tonumber(version)
local last = tonumber(ARGV[1])
if version <= last then
  return {version, {}, announced}
end
return {version, redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf'), announced}
