-- announce: a process tells the namespace's operators it is alive (`infuse status`).
-- Writes its announcement with a TTL and scores it in the namespace's index of
-- processes by when it expires, on Redis's clock, dropping the entries that expired (so
-- the index lists the live processes without a SCAN, in a cluster too: every key here
-- shares the namespace's hash tag). Not on any call path: once per resync interval.
-- KEYS[1]  infuse:{<namespace>}:process:<id>  STRING, the announcement (JSON)
-- KEYS[2]  infuse:{<namespace>}:processes     ZSET, process id -> expiry (server ms)
-- ARGV: announcement, ttl ms, process id
local ttl = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
-- The index outlives its longest-lived entry, and no more.
local left = redis.call('PTTL', KEYS[2])
if left < ttl then
    redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
