-- lease_permits: a process asks to hold a number of a breaker's `max_concurrent`
-- permits; the answer is how many it holds until its lease ends (core/lease.rs,
-- LeaseTable::request, mirrored here line by line). No breaker prelude: the breaker's
-- record is not read.
--
-- KEYS[1]  infuse:{<namespace>/<service>}:permits  HASH, one field per process holding a
--          lease: "<held> <wanted> <until ms>" (Redis's clock). A lease that ended, or a
--          field that does not parse, counts no more and is deleted. A key of another
--          type raises INFUSE_CORRUPT (the process then admits no call beyond what it
--          holds until it is deleted). Expires with the last lease.
-- ARGV: process id, keep, want, cap, lease ms[, now ms]
--   now: the time to count at, instead of the server's TIME — for the test that compares
--   this script with LeaseTable; infuse never sends it.
-- Reply: {target (the permits it may use for new calls), held (its lease: the target,
--   or what it must keep if more), held by the others, live leases of the others}
local MAX_U32 = 4294967295
local MAX_EXACT = 9007199254740991

local function count(text, max)
  if type(text) ~= 'string' or not string.find(text, '^%d+$') then
    return nil
  end
  local n = tonumber(text)
  if n > max then
    return nil
  end
  return n
end

local function arg(i, max)
  local n = count(ARGV[i], max)
  if not n then
    error({err = 'INFUSE_ARG lease_permits ARGV[' .. i .. '] is not a count up to ' .. max})
  end
  return n
end

local process = ARGV[1]
if type(process) ~= 'string' or not string.find(process, '^%d+$') or #process > 20 then
  error({err = 'INFUSE_ARG lease_permits ARGV[1] is not a process id'})
end
local keep, want, cap = arg(2, MAX_U32), arg(3, MAX_U32), arg(4, MAX_U32)
local lease = arg(5, MAX_EXACT)
local key = KEYS[1]
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'none' and kind ~= 'hash' then
  error({err = 'INFUSE_CORRUPT ' .. key .. ' is a ' .. kind .. ', not a hash'})
end
local now
if ARGV[6] then
  now = arg(6, MAX_EXACT)
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local others_held, others_wanted, live = 0, 0, 0
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  local field, value = fields[i], fields[i + 1]
  local h, w, u = string.match(value, '^(%d+) (%d+) (%d+)$')
  local held, wanted, until_ms = count(h, MAX_U32), count(w, MAX_U32), count(u, MAX_EXACT)
  if not (held and wanted and until_ms) or until_ms <= now then
    redis.call('HDEL', key, field)
  elseif field ~= process then
    others_held = math.min(others_held + held, MAX_U32)
    others_wanted = math.min(others_wanted + wanted, MAX_U32)
    live = live + 1
  end
end

local available = math.max(cap - others_held, 0)
local target = math.min(want, available)
if others_wanted > others_held then
  local fair = math.max(math.floor(cap / (live + 1)), 1)
  local room = math.max(cap - others_wanted, 0)
  target = math.min(target, math.max(fair, room))
end
local held = math.max(target, math.min(keep, available))
if want > 0 or held > 0 then
  local until_ms = math.min(now + lease, MAX_EXACT)
  redis.call('HSET', key, process, string.format('%d %d %d', held, want, until_ms))
  redis.call('PEXPIRE', key, math.max(lease, 1))
else
  redis.call('HDEL', key, process)
end
return {target, held, others_held, live}
