-- changes: what changed in the namespace since version ARGV[1] (what a process read
-- last): {version, {services changed since}, announced}; version -1 when the log is gone
-- (Redis restarted empty or flushed, or the namespace went unused until the log
-- expired), and no services when the version did not move (or went back: the log was
-- recreated, the reader re-reads everything).
--
-- With ARGV[3] = '1', it also forgets the services whose time in the log is up (see
-- log.lua: their record expired, nothing noted or touched them since), at most
-- PRUNE_BATCH per read, and lists for ARGV[2] ms the services a log written before
-- `listed` existed holds. Keys of the wrong type, or a version that is not a count, are
-- deleted: the log is only a guide to what to re-read, and readers then re-read
-- everything, as after a flush.
--
-- The same read keeps the process's announcement alive (`infuse status`), so an idle
-- process sends one command per resync interval: the announcement is written when what
-- it says changed (ARGV[6]), else its TTL is renewed; either way the process is scored in
-- the namespace's index of processes by when its announcement expires, on Redis's clock,
-- and entries that expired are dropped (tools list processes without a SCAN, in a cluster
-- too: every key here shares the namespace's hash tag). announced = 0 when there was
-- nothing to renew (the key expired or was lost): the process sends it whole next time.
-- KEYS[1..3]  the log (see log.lua)
-- KEYS[4]  infuse:{<namespace>}:process:<id>  STRING, the announcement (JSON)
-- KEYS[5]  infuse:{<namespace>}:processes     ZSET, process id -> expiry (server ms)
-- ARGV: the version last read (0: none), keep_ms (for a log written before `listed`),
--       prune ('1'/'0'), process id ('' = no announcement: then neither KEYS[4..5] nor
--       the rest of ARGV are given), the announcement's ttl ms, the announcement ('' =
--       unchanged: renew it)
local PRUNE_BATCH = 1000
local announced = 0
if ARGV[4] ~= '' then
  local ttl = tonumber(ARGV[5])
  local alive
  if ARGV[6] ~= '' then
    redis.call('SET', KEYS[4], ARGV[6], 'PX', ttl)
    alive = true
  else
    alive = redis.call('PEXPIRE', KEYS[4], ttl) == 1
  end
  if alive then
    local now = now_ms()
    redis.call('ZADD', KEYS[5], now + ttl, ARGV[4])
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
    -- The index outlives its longest-lived entry, and no more.
    if redis.call('PTTL', KEYS[5]) < ttl then
      redis.call('PEXPIRE', KEYS[5], ttl)
    end
    announced = 1
  end
end

local function failed(reply)
  return type(reply) == 'table' and reply.err ~= nil
end

-- The log holds what infuse did not write: start it over.
-- The server's run id (new at every restart, another on a promoted replica): a log that
-- was lost and rebuilt up to the reader's version again reads the same otherwise, so a
-- reader that meets another server than at its last read re-reads every breaker.
local function server_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
end

local function gone()
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  return {-1, {}, announced, server_id()}
end

local version = redis.pcall('GET', KEYS[1])
if failed(version) then
  return gone()
end
if not version then
  return {-1, {}, announced, server_id()}
end
version = tonumber(version)
if not version or version < 0 or version % 1 ~= 0 then
  return gone()
end

if ARGV[3] == '1' then
  local expired = redis.pcall('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms(), 'LIMIT', 0, PRUNE_BATCH)
  if failed(expired) then
    return gone()
  end
  if #expired > 0 then
    if failed(redis.pcall('ZREM', KEYS[2], unpack(expired))) then
      return gone()
    end
    redis.call('ZREM', KEYS[3], unpack(expired))
  elseif redis.call('EXISTS', KEYS[3]) == 0 then
    -- Nothing listed: a log written before `listed` existed lists its services from now.
    local unlisted = redis.pcall('ZRANGEBYSCORE', KEYS[2], '-inf', '+inf')
    if failed(unlisted) then
      return gone()
    end
    if #unlisted > 0 then
      local keep = tonumber(ARGV[2])
      local until_ms = now_ms() + keep
      for _, service in ipairs(unlisted) do
        redis.call('ZADD', KEYS[3], until_ms, service)
      end
      bound_log(keep)
    end
  end
end

local last = tonumber(ARGV[1])
if version <= last then
  return {version, {}, announced, server_id()}
end
local changed = redis.pcall('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
if failed(changed) then
  return gone()
end
return {version, changed, announced, server_id()}
