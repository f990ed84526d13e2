-- force: the manual open() / half_open() / close(). Always applied; also repairs a
-- record holding garbage, so an operator can recover with close().
-- ARGV: target state (0/1/2), reset_timeout_ms, key_ttl_ms, channel, service, inc
local ok, rec = pcall(load, ARGV[6])
if not ok then
  redis.call('DEL', KEYS[1])
  rec = load(ARGV[6])
end
local from = rec.state
local to = tonumber(ARGV[1])
rec.gen = rec.gen + 1
rec.succ = 0
redis.call('DEL', KEYS[3])
if to == OPEN then
  rec.state = OPEN
  redis.call('SET', KEYS[2], rec.gen, 'PX', ARGV[2])
elseif to == HALF_OPEN then
  rec.state = HALF_OPEN
  redis.call('DEL', KEYS[2])
else
  rec.state = CLOSED
  rec.fail = 0
  redis.call('DEL', KEYS[2])
end
save(rec, ARGV[3])
publish(ARGV[4], ARGV[5], rec)
return reply(1, from, rec)
