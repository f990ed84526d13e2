-- acquire_trial (machine.rs: acquire_trial): take the single trial slot of the fleet,
-- once the open key has expired (or half-open with the slot free). The holder asking
-- again with its token is granted again (safe retry).
-- ARGV: token, lease_ms, key_ttl_ms, channel, service, process
local rec = load()
if not rec then
  return ABSENT
end
local from = rec.state
if not (rec.state == HALF_OPEN or (rec.state == OPEN and redis.call('EXISTS', KEYS[2]) == 0)) then
  return reply(0, from, rec)
end
local holder = redis.call('GET', KEYS[3])
if holder then
  if holder == ARGV[1] then
    return reply(1, from, rec)
  end
  return reply(0, from, rec)
end
room(rec, false)
if rec.state == OPEN then
  check_history()
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
if rec.state == OPEN then
  rec.state = HALF_OPEN
  rec.succ = 0
end
save(rec, ARGV[3])
remember(from, rec, 'open_elapsed', ARGV[6], ARGV[3])
publish(ARGV[4], ARGV[5], rec)
return reply(1, from, rec)
