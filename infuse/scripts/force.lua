-- force (machine.rs: force): put the breaker in a state by hand. Always applied, and
-- repairs every key of the breaker in the same script, so an operator recovers with
-- close(): a state hash holding garbage (parse: a field missing or out of range) is
-- deleted and the record recreated closed with a new incarnation, as is one whose
-- generation or seq is at its maximum (machine.rs does the same); the open, trial and
-- window keys are deleted whatever they hold (every target resets the backoff and the
-- window); a history that is not a list with an expiry is deleted (the entry this
-- command writes starts it afresh). A repair is written to the history even when the
-- state does not change. (Only commands of the README's minimal ACL.)
-- ARGV: target state code, open_ms (target open), key_ttl_ms, channel, service, inc,
--       process, who, why (both '' or both encoded: audit_fields; checked first),
--       slow_start_ms (0 = off: close resets the backoff)

-- Whether the history is what remember() leaves: a list with an expiry (its entries are
-- read only by `infuse explain`, which skips any it cannot parse, and LTRIM bounds it).
local function history_ok()
  local kind = redis.call('TYPE', KEYS[5])['ok']
  return kind == 'none' or (kind == 'list' and redis.call('PTTL', KEYS[5]) >= 0)
end

local audit = audit_fields(ARGV[8], ARGV[9])
local repaired = false
local rec = nil
local from = CLOSED
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'hash' then
  local ok, parsed = pcall(parse, fields())
  if ok and parsed.gen < MAX_GENERATION and parsed.seq < MAX_EXACT then
    rec = parsed
    from = rec.state
  else
    -- Garbage, or a record that cannot be bumped: recreated. The change is from the
    -- state it claims, if it names one.
    from = integer(redis.call('HMGET', KEYS[1], 'state')[1], CLOSED, DISABLED) or CLOSED
    redis.call('DEL', KEYS[1])
    repaired = true
  end
elseif kind ~= 'none' then
  redis.call('DEL', KEYS[1])
  repaired = true
end
if not (pcall(check_timed, KEYS[2]) and pcall(check_timed, KEYS[3]) and pcall(read_window)) then
  repaired = true -- deleted below, as by every force
end
if not history_ok() then
  redis.call('DEL', KEYS[5])
  repaired = true
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
if not rec then
  rec = fresh(ARGV[6])
end
local to = tonumber(ARGV[1])
rec.reo = 0
if to == CLOSED then
  close(rec, tonumber(ARGV[10]))
elseif to == OPEN then
  trip(rec, ARGV[2])
else
  rec.state = to
  rec.gen = rec.gen + 1
  rec.succ = 0
  rec.str = ''
  rec.cls = 0
end
save(rec, ARGV[3])
remember(from, rec, 'manual', ARGV[7], ARGV[3], repaired, audit)
publish(ARGV[4], ARGV[5], rec)
return reply(1, from, rec)
