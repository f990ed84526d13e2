-- force (machine.rs: force): put the breaker in a state by hand. Always applied; a
-- record holding garbage is replaced, so an operator recovers with close(). Every target
-- resets the backoff and the window.
-- ARGV: target state code, open_ms (target open), key_ttl_ms, channel, service, inc,
--       process
local ok, rec = pcall(load)
if not ok then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  rec = nil
end
if not rec then
  rec = fresh(ARGV[6])
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
end
local from = rec.state
local to = tonumber(ARGV[1])
rec.reo = 0
if to == CLOSED then
  close(rec)
elseif to == OPEN then
  trip(rec, ARGV[2])
else
  rec.state = to
  rec.gen = rec.gen + 1
  rec.succ = 0
  rec.str = ''
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
end
save(rec, ARGV[3])
remember(from, rec, 'manual', ARGV[7], ARGV[3])
publish(ARGV[4], ARGV[5], rec)
return reply(1, from, rec)
