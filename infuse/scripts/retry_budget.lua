-- retry_budget: a process reports the first attempts of a breaker's calls since its last
-- report and asks for retry tokens; the fleet's budget grants what its rule allows
-- (infuse/src/core/retry_budget.rs, BudgetWindow::take, mirrored here line by line).
-- No breaker prelude: the breaker's record is not read.
--
-- KEYS[1]  infuse:{<namespace>/<service>}:retry  HASH, the fleet's first attempts and
--          retries by second: fields s0..s9 (the second modulo 10) "<unix s> <first
--          attempts> <retries>". A field that does not parse counts as empty and is
--          rewritten; a key of another type raises INFUSE_CORRUPT (the process then keeps
--          a budget of its own until it is deleted). Expires ARGV[5] ms after the last
--          request.
-- ARGV: first attempts, tokens wanted, ratio (percent), min per second, ttl ms[, now]
--   now: the unix second to count in, instead of the server's TIME — for the test that
--   compares this script with BudgetWindow over chosen seconds; infuse never sends it.
-- Reply: {granted, first attempts in the window, retries in the window (after)}
local SECONDS = 10
local MAX_EXACT = 9007199254740991

local function count(text)
  if type(text) ~= 'string' or not string.find(text, '^%d+$') then
    return nil
  end
  local n = tonumber(text)
  if n > MAX_EXACT then
    return nil
  end
  return n
end

local function arg(i)
  local n = count(ARGV[i])
  if not n then
    error({err = 'INFUSE_ARG retry_budget ARGV[' .. i .. '] is not a count'})
  end
  return n
end

local firsts, wanted, ratio, floor, ttl = arg(1), arg(2), arg(3), arg(4), arg(5)
local key = KEYS[1]
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'none' and kind ~= 'hash' then
  error({err = 'INFUSE_CORRUPT ' .. key .. ' is a ' .. kind .. ', not a hash'})
end
local now = tonumber(redis.call('TIME')[1])
if ARGV[6] then
  now = arg(6)
end

local names = {}
for i = 0, SECONDS - 1 do
  names[#names + 1] = 's' .. i
end
local values = redis.call('HMGET', key, unpack(names))
-- Each slot as {second, first attempts, retries}; one that does not parse is empty.
local slots = {}
for i = 0, SECONDS - 1 do
  local at, f, r
  local text = values[i + 1]
  if type(text) == 'string' then
    local a, b, c = string.match(text, '^(%d+) (%d+) (%d+)$')
    at, f, r = count(a), count(b), count(c)
  end
  if at and f and r then
    slots[i] = {at, f, r}
  else
    slots[i] = {0, 0, 0}
  end
end
local current = slots[now % SECONDS]
if current[1] ~= now then
  current[1], current[2], current[3] = now, 0, 0
end
current[2] = math.min(current[2] + firsts, MAX_EXACT)

local total_firsts, total_retries = 0, 0
for i = 0, SECONDS - 1 do
  local slot = slots[i]
  if slot[1] <= now and slot[1] > now - SECONDS then
    total_firsts = math.min(total_firsts + slot[2], MAX_EXACT)
    total_retries = math.min(total_retries + slot[3], MAX_EXACT)
  end
end
-- floor(total_firsts * ratio / 100), exact: the product may pass 2^53.
local share = math.floor(total_firsts / 100) * ratio + math.floor((total_firsts % 100) * ratio / 100)
local by_ratio = math.max(share - total_retries, 0)
local by_floor = math.max(floor - current[3], 0)
local granted = math.min(wanted, math.max(by_ratio, by_floor))
current[3] = math.min(current[3] + granted, MAX_EXACT)
total_retries = math.min(total_retries + granted, MAX_EXACT)

redis.call('HSET', key, 's' .. (now % SECONDS),
  string.format('%d %d %d', current[1], current[2], current[3]))
redis.call('PEXPIRE', key, ttl)
return {granted, total_firsts, total_retries}
