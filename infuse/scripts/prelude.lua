-- infuse: shared prelude, prepended to every script at build time. Each script mirrors
-- one arm of the state machine (infuse/src/core/machine.rs); `trip` and `close` below
-- mirror Record::trip and Record::close.
--
-- KEYS[1]  infuse:{<namespace>/<service>}:state   HASH  inc, gen, seq, state, fail, succ, reo,
--          str (reo: consecutive re-opens after failed trials, the backoff exponent; str:
--          the ids of the distinct processes that reported failures since fail was last 0,
--          space-separated, kept up to min_instances when it is above 1 — Record::streak;
--          a record written before they existed has neither, read as 0 and '')
-- KEYS[2]  infuse:{<namespace>/<service>}:open    STRING, exists while open (PX = open time)
-- KEYS[3]  infuse:{<namespace>/<service>}:trial   STRING, the trial holder's token (PX = lease)
-- KEYS[4]  infuse:{<namespace>/<service>}:window  HASH, the calls of the current closed
--          period (rate rules only; see record_calls.lua): fields b0..b9 "index calls
--          failures slow" per bucket slot, i<instance> = the last bucket that instance
--          reported failures or slow calls in. Deleted by every transition (trip, close,
--          force, register), as Record::window is reset.
-- KEYS[5]  infuse:{<namespace>/<service>}:history LIST, the breaker's last HISTORY_LEN
--          transitions, newest first, "<unix ms> <from> <to> <gen> <reason> <process>"
--          (state names, the reason as TransitionReason::as_str, the process id in hex),
--          written by the script that made the change (`infuse explain` reads it).
--
-- Reply fields: applied, from, inc, gen, seq, state, fail, succ, open_pttl, trial_pttl, window
--   applied     1 if the command took effect, else 0
--   from, state the recorded state before / after (codes below)
--   inc         the record's incarnation (random, set when created; "0" when absent)
--   gen         bumped on every state transition (results of older generations are stale)
--   seq         bumped on every write (orders replies and messages)
--   open_pttl   ms until a trial is allowed while open (0 once allowed), else -1
--   trial_pttl  ms left on the trial lease while one is in flight, else -1
--   window      record_calls only, with a rate rule, while calls run: the window's totals
--               "calls failures slow" after the batch; else ''
-- Event fields: inc, gen, seq, state, fail, succ, open_pttl, trial_pttl, service
-- Time comes only from the server: PX expiry of the open and trial keys, and TIME for the
-- window's buckets.

-- State codes (infuse/src/core/state.rs: State::code).
local CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED = 0, 1, 2, 3, 4
-- State names by code (State's Display).
local STATE_NAMES = {[0] = 'closed', 'open', 'half-open', 'forced-open', 'disabled'}
local HISTORY_LEN = 50

local function corrupt(what)
  error({err = 'INFUSE_CORRUPT ' .. what})
end

-- A timed key must be absent, or a string that expires; anything else would wedge the
-- breaker (an open key that never expires keeps it open forever).
local function check_timed(key)
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' then
    return
  end
  if kind ~= 'string' then
    corrupt(key .. ' is a ' .. kind .. ', not a string')
  end
  if redis.call('PTTL', key) < 0 then
    corrupt(key .. ' has no expiry')
  end
end

-- The record from its HMGET fields (nil when the hash is absent).
local function parse(v)
  local rec = {inc = v[1], gen = tonumber(v[2]), seq = tonumber(v[3]), state = tonumber(v[4]),
               fail = tonumber(v[5]), succ = tonumber(v[6]), reo = tonumber(v[7] or 0),
               str = v[8] or ''}
  if not (rec.inc and rec.gen and rec.seq and rec.state and rec.fail and rec.succ and rec.reo)
      or rec.state < CLOSED or rec.state > DISABLED or rec.state % 1 ~= 0 then
    corrupt(KEYS[1] .. ' has missing or invalid fields')
  end
  if not string.match(rec.str, '^[%d ]*$') then
    corrupt(KEYS[1] .. ' field str is not a list of process ids')
  end
  return rec
end

local function fields()
  return redis.call('HMGET', KEYS[1], 'inc', 'gen', 'seq', 'state', 'fail', 'succ', 'reo', 'str')
end

-- Reads the record, or nil when absent (Option<Record> in machine.rs).
local function load()
  local kind = redis.call('TYPE', KEYS[1])['ok']
  if kind == 'none' then
    return nil
  end
  if kind ~= 'hash' then
    corrupt(KEYS[1] .. ' is a ' .. kind .. ', not a hash')
  end
  local rec = parse(fields())
  check_timed(KEYS[2])
  check_timed(KEYS[3])
  return rec
end

-- load() for the commands of the calls' own path (record_failure, record_success): one
-- HMGET (a key of another type fails it with WRONGTYPE, which the client reports as
-- corrupt), and the timed keys checked only when the record is not letting calls
-- through, the only time these commands read them. Nil when absent.
local function load_calls()
  local v = fields()
  if not (v[1] or v[2] or v[3] or v[4] or v[5] or v[6] or v[7] or v[8]) then
    return nil
  end
  local rec = parse(v)
  if rec.state ~= CLOSED and rec.state ~= DISABLED then
    check_timed(KEYS[2])
    check_timed(KEYS[3])
  end
  return rec
end

-- Record::closed
local function fresh(inc)
  return {inc = inc, gen = 1, seq = 0, state = CLOSED, fail = 0, succ = 0, reo = 0, str = ''}
end

-- Writes the record. Forced states hold until closed by hand: their record never expires.
local function save(rec, ttl_ms)
  rec.seq = rec.seq + 1
  redis.call('HSET', KEYS[1], 'inc', rec.inc, 'gen', rec.gen, 'seq', rec.seq,
             'state', rec.state, 'fail', rec.fail, 'succ', rec.succ, 'reo', rec.reo,
             'str', rec.str)
  if rec.state == FORCED_OPEN or rec.state == DISABLED then
    redis.call('PERSIST', KEYS[1])
  else
    redis.call('PEXPIRE', KEYS[1], ttl_ms)
  end
end

-- save() of a write that changed only the fail counter and its streak (state, generation,
-- successes and backoff as they were): three fields instead of eight.
local function save_fail(rec, ttl_ms)
  rec.seq = rec.seq + 1
  redis.call('HSET', KEYS[1], 'seq', rec.seq, 'fail', rec.fail, 'str', rec.str)
  if rec.state ~= FORCED_OPEN and rec.state ~= DISABLED then
    redis.call('PEXPIRE', KEYS[1], ttl_ms)
  end
end

-- Record::trip: opens the breaker for open_ms (the window starts over).
local function trip(rec, open_ms)
  rec.state = OPEN
  rec.gen = rec.gen + 1
  rec.succ = 0
  rec.str = ''
  redis.call('SET', KEYS[2], rec.gen, 'PX', open_ms)
  redis.call('DEL', KEYS[3], KEYS[4])
end

-- Record::close: closes the breaker and resets its counters, backoff and window.
local function close(rec)
  rec.state = CLOSED
  rec.gen = rec.gen + 1
  rec.succ = 0
  rec.fail = 0
  rec.reo = 0
  rec.str = ''
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
end

-- Record::note_streak: counts `instance` (nil: none) among the reporters of the current
-- failure streak, after rec.fail was updated; the streak ends when fail is 0.
local function note_streak(rec, instance, quorum)
  if rec.fail == 0 or quorum <= 1 then
    rec.str = ''
    return
  end
  if not instance then
    return
  end
  local n = 0
  for id in string.gmatch(rec.str, '%d+') do
    if id == instance then
      return
    end
    n = n + 1
  end
  if n < quorum then
    if rec.str == '' then
      rec.str = instance
    else
      rec.str = rec.str .. ' ' .. instance
    end
  end
end

-- Record::streak_trips: fail_max failures in a row, from at least `quorum` processes.
local function streak_trips(rec, fail_max, quorum)
  if rec.fail < fail_max then
    return false
  end
  if quorum <= 1 then
    return true
  end
  local n = 0
  for _ in string.gmatch(rec.str, '%d+') do
    n = n + 1
  end
  return n >= quorum
end

-- Settings::open_ms: how long the reopens-th consecutive re-open lasts (reopens = 0: a
-- first trip), in ms. max_ms = 0: no backoff. Integers below 2^53 throughout (times are
-- at most 24 h), so the doubles of Lua compute exactly what Rust does.
local function open_ms(reopens, reset_ms, max_ms, jitter)
  local base = math.max(reset_ms, 1)
  if max_ms == 0 or reopens == 0 then
    return base
  end
  local max = math.max(max_ms, base)
  local doubled = max
  if reopens < 40 then
    doubled = math.min(base * 2 ^ reopens, max)
  end
  return doubled - math.floor(doubled * math.min(jitter, 999) / 5000)
end

-- Appends the change from -> rec.state to the breaker's history (KEYS[5]), with the
-- server's clock; the list expires with the record. `remember` only when the state
-- changed; `write_history` always (a record re-seeded in the same state).
local function write_history(from, rec, reason, process, ttl_ms)
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('LPUSH', KEYS[5], table.concat({string.format('%d', ms), STATE_NAMES[from],
             STATE_NAMES[rec.state], rec.gen, reason, process}, ' '))
  redis.call('LTRIM', KEYS[5], 0, HISTORY_LEN - 1)
  redis.call('PEXPIRE', KEYS[5], ttl_ms)
end

local function remember(from, rec, reason, process, ttl_ms)
  if rec.state ~= from then
    write_history(from, rec, reason, process, ttl_ms)
  end
end

local function pttl(key)
  local t = redis.call('PTTL', key)
  if t < 0 then
    return -1
  end
  return t
end

local function reply(applied, from, rec, window)
  local open_pttl, trial_pttl = -1, -1
  if rec.state == OPEN then
    open_pttl = math.max(pttl(KEYS[2]), 0)
  end
  if rec.state ~= CLOSED then
    trial_pttl = pttl(KEYS[3])
  end
  return {applied, from, rec.inc, rec.gen, rec.seq, rec.state, rec.fail, rec.succ, open_pttl, trial_pttl, window or ''}
end

-- Outcome::absent: the answer about a breaker with no record.
local ABSENT = {0, CLOSED, '0', 1, 0, CLOSED, 0, 0, -1, -1, ''}

-- Tells every process of the fleet what a reply `r` holds (event fields above,
-- space-separated).
local function publish_reply(channel, service, r)
  redis.call('PUBLISH', channel, table.concat({r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], service}, ' '))
end

local function publish(channel, service, rec)
  publish_reply(channel, service, reply(1, rec.state, rec))
end
