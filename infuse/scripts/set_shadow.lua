-- set_shadow (machine.rs: set_shadow): an operator switches the breaker in or out of
-- shadow mode for the whole fleet. The switch is the state hash's field shd ('1' or
-- '0'), which overrides every process's `shadow` setting; state, generation and
-- counters are unchanged. An absent record is created closed first. Always applied; a
-- write (seq bumped, a history entry 'shadow_on' or 'shadow_off' with who and why, an
-- event) only when the switch changes.
-- ARGV: on ('1'/'0'), inc (for a new record), key_ttl_ms, channel, service, process,
--       who, why (both '' or both encoded: audit_fields; checked first)
local audit = audit_fields(ARGV[7], ARGV[8])
local rec = load()
if not rec then
  rec = fresh(ARGV[2])
end
if rec.shd == ARGV[1] then
  return reply(1, rec.state, rec)
end
room(rec, false)
check_history()
rec.shd = ARGV[1]
save(rec, ARGV[3])
redis.call('HSET', KEYS[1], 'shd', rec.shd)
local reason = 'shadow_off'
if rec.shd == '1' then
  reason = 'shadow_on'
end
remember(rec.state, rec, reason, ARGV[6], ARGV[3], true, audit)
publish(ARGV[4], ARGV[5], rec)
return reply(1, rec.state, rec)
