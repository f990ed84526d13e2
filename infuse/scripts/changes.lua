-- changes: what changed in the namespace since version ARGV[1] (what a process read
-- last): {version, {services changed since}}; version -1 when the log is gone (Redis
-- restarted empty or flushed), and no services when the version did not move (or went
-- back: the log was recreated, the reader re-reads everything).
-- KEYS[1]  infuse:{<namespace>}:version, KEYS[2]  infuse:{<namespace>}:changes (see
-- note_change.lua)
-- ARGV: the version last read (0: none)
local version = redis.call('GET', KEYS[1])
if not version then
  return {-1, {}}
end
version = tonumber(version)
local last = tonumber(ARGV[1])
if version <= last then
  return {version, {}}
end
return {version, redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')}
