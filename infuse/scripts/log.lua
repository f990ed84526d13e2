-- log: the namespace's change log, prepended at build time to its three scripts
-- (note_change, touch, changes; not to the breakers' scripts: in Redis Cluster the log
-- lives in the slot of `{<namespace>}`, a breaker's keys in another).
--
-- KEYS[1]  infuse:{<namespace>}:version  STRING, the namespace version (INCR)
-- KEYS[2]  infuse:{<namespace>}:changes  ZSET, service -> version of its last noted change
-- KEYS[3]  infuse:{<namespace>}:listed   ZSET, service -> until when it stays listed
--          (Redis's clock, ms; +inf for a record in a forced state, which never expires)
--
-- A service is in both sorted sets or in neither: note_change and touch add it to both,
-- changes.lua prunes it from both once its time is up. The three keys live as long as
-- their longest-listed service, and no more (forever while a forced one is listed).

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Keeps the log's keys at least keep_ms more (never less than they had), or for good
-- while a service in a forced state is listed.
local function bound_log(keep_ms)
  local forced = redis.call('ZRANGEBYSCORE', KEYS[3], '+inf', '+inf', 'LIMIT', 0, 1)[1]
  for i = 1, 3 do
    if forced then
      redis.call('PERSIST', KEYS[i])
    else
      local ttl = redis.call('PTTL', KEYS[i])
      if ttl == -1 or (ttl >= 0 and ttl < keep_ms) then
        redis.call('PEXPIRE', KEYS[i], keep_ms)
      end
    end
  end
end
