-- note_change: records in the namespace's change log that breaker ARGV[1] changed in a
-- way other processes must learn (a transition, a record created, the fail counter's
-- zero-ness): bumps the namespace version and scores the breaker with it. Sent by the
-- client after the breaker's own script (a separate command: in Redis Cluster the
-- namespace's keys live in another slot than the breaker's).
-- KEYS[1]  infuse:{<namespace>}:version  STRING, the namespace version (INCR)
-- KEYS[2]  infuse:{<namespace>}:changes  ZSET, service -> version of its last change
-- ARGV: service
local version = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], version, ARGV[1])
return version
