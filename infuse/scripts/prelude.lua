-- infuse: shared prelude, prepended to every script at build time. Each script mirrors
-- one arm of the state machine (infuse/src/core/machine.rs); `trip` and `close` below
-- mirror Record::trip and Record::close.
--
-- KEYS[1]  infuse:{<namespace>/<service>}:state   HASH  inc, gen, seq, state, fail, succ, reo,
--          str (reo: consecutive re-opens after failed trials, the backoff exponent; str:
--          the ids of the distinct processes that reported failures since fail was last 0,
--          space-separated, kept up to min_instances when it is above 1 — Record::streak;
--          a record written before they existed has neither, read as 0 and '');
--          cls: when the current closed period began, if it is a recovery (a trial that
--          succeeded, or force closing a breaker that was not letting calls through), in
--          ms of the server's TIME, else 0 — Record::closed_at; slow start is timed from
--          it (absent in a record written before it existed: 0)
--          shd: the operator's shadow switch, '0' or '1', written only by set_shadow.lua
--          (absent: never switched, each process follows its `shadow` setting; save()
--          leaves it as it is)
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
-- Reply fields: applied, from, inc, gen, seq, state, fail, succ, open_pttl, trial_pttl, window, since_close, shadow
--   applied     1 if the command took effect, else 0
--   from, state the recorded state before / after (codes below)
--   inc         the record's incarnation (random, set when created; "0" when absent)
--   gen         bumped on every state transition (results of older generations are stale)
--   seq         bumped on every write (orders replies and messages)
--   open_pttl   ms until a trial is allowed while open (0 once allowed), else -1
--   trial_pttl  ms left on the trial lease while one is in flight, else -1
--   window      record_calls only, with a rate rule, while calls run: the window's totals
--               "calls failures slow" after the batch; else ''
--   since_close while closed with cls set: ms since cls on the server's clock, else -1
--   shadow      the operator's shadow switch (shd): 1 on, 0 off, -1 never switched
-- Event fields: inc, gen, seq, state, fail, succ, open_pttl, trial_pttl, since_close, shadow, service
-- ARGV: every breaker script gets, after the arguments its header lists, the process's
-- `shadow` setting ('1' or '0'; SHADOW_SETTING below): with shd, whether a transition
-- is written to the history with the shadow mark.
-- Time comes only from the server: PX expiry of the open and trial keys, and TIME for the
-- window's buckets.
--
-- Validation: every script checks every key and field it reads before its first write
-- and raises INFUSE_CORRUPT (StorageError::Corrupt, naming the key and field) without
-- writing anything (no history entry, no window write, no PUBLISH) when one is wrong:
--   state    absent, or a hash whose inc, gen, seq, state, fail, succ (and reo, if
--            and cls, if present) are integers in their ranges (parse below; "nan", "inf", "-1",
--            "1.5", "1e400", 2^63 are all corrupt)
--   open     absent, or a string with an expiry (check_timed); so is trial
--   window   (record_calls with a rate rule, the only reader) absent, or a hash of
--            bucket and instance fields (read_window)
--   history  (arms that append to it) absent, or a list (check_history)
-- and a transition needs room to bump the generation, a write room to bump seq (room).
-- A key a command neither reads nor appends to is not checked (a closed breaker's
-- record_failure does not look at the open key; a trip replaces it). A breaker whose
-- keys are corrupt follows the unavailable-policy until force (close(), open(), ...)
-- repairs it: force.lua deletes every key holding garbage and recreates the record, in
-- the same script.

-- State codes (infuse/src/core/state.rs: State::code).
local CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED = 0, 1, 2, 3, 4
-- State names by code (State's Display).
local STATE_NAMES = {[0] = 'closed', 'open', 'half-open', 'forced-open', 'disabled'}
local HISTORY_LEN = 50
-- Bounds (the Rust constants of the same meaning are pinned to these by wire.rs's tests).
-- Every number a script reads or writes is an integer a Lua double holds exactly.
-- The largest generation (core::MAX_GENERATION, 2^53 - 2): a record at it cannot make a
-- transition (a script that would bump it raises INFUSE_CORRUPT; force recreates it).
local MAX_GENERATION = 9007199254740990
-- 2^53 - 1: the largest seq (a record at it cannot be written again), and the largest
-- count a window bucket or total holds (window::MAX_TOTAL; sums saturate at it).
local MAX_EXACT = 9007199254740991
-- u32::MAX: the largest fail, succ and reo (saturating, as in machine.rs).
local MAX_COUNT = 4294967295

local function corrupt(what)
  error({err = 'INFUSE_CORRUPT ' .. what})
end

-- A value as an error message shows it: quoted, and cut short.
local function shown(text)
  if #text > 40 then
    text = string.sub(text, 1, 40) .. '...'
  end
  return "'" .. text .. "'"
end

-- The integer `text` spells, if it is one in min..max: decimal digits only (no sign,
-- fraction, exponent, nan or inf). Nil otherwise.
local function integer(text, min, max)
  if type(text) ~= 'string' or not string.find(text, '^%d+$') then
    return nil
  end
  local n = tonumber(text)
  if n < min or n > max then
    return nil
  end
  return n
end

-- Field `name` of hash `key`, an integer in min..max (HMGET answers false for a missing
-- field).
local function field(key, name, text, min, max)
  if not text then
    corrupt(key .. ' has no field ' .. name)
  end
  local n = integer(text, min, max)
  if not n then
    corrupt(string.format('%s field %s is %s, not an integer in %d..%d', key, name, shown(text), min, max))
  end
  return n
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

-- The record from its HMGET fields, every one checked: inc a non-zero decimal u64 (the
-- incarnation Rust parses; "0" answers "no record"), gen 1..MAX_GENERATION, seq
-- 0..MAX_EXACT, state a state code, fail, succ and reo 0..MAX_COUNT (reo absent = 0: a
-- record written before it existed).
local function parse(v)
  local key = KEYS[1]
  local inc = v[1]
  if not inc then
    corrupt(key .. ' has no field inc')
  end
  if not string.find(inc, '^%d+$') or not string.find(inc, '[1-9]') or #inc > 20
      or (#inc == 20 and inc > '18446744073709551615') then
    corrupt(key .. ' field inc is ' .. shown(inc) .. ', not a non-zero decimal u64')
  end
  local rec = {inc = inc, gen = field(key, 'gen', v[2], 1, MAX_GENERATION),
               seq = field(key, 'seq', v[3], 0, MAX_EXACT),
               state = field(key, 'state', v[4], CLOSED, DISABLED),
               fail = field(key, 'fail', v[5], 0, MAX_COUNT),
               succ = field(key, 'succ', v[6], 0, MAX_COUNT), reo = 0}
  if v[7] then
    rec.reo = field(key, 'reo', v[7], 0, MAX_COUNT)
  end
  rec.str = v[8] or ''
  if not string.find(rec.str, '^[%d ]*$') or #rec.str > 65536 then
    corrupt(key .. ' field str is ' .. shown(rec.str) .. ', not a list of process ids')
  end
  rec.cls = 0
  if v[9] then
    rec.cls = field(key, 'cls', v[9], 0, MAX_EXACT)
  end
  rec.shd = v[10] or ''
  if rec.shd ~= '' and rec.shd ~= '0' and rec.shd ~= '1' then
    corrupt(key .. ' field shd is ' .. shown(rec.shd) .. ', not 0 or 1')
  end
  return rec
end

local function fields()
  local v = redis.pcall('HMGET', KEYS[1], 'inc', 'gen', 'seq', 'state', 'fail', 'succ', 'reo', 'str', 'cls', 'shd')
  if v.err then
    corrupt(KEYS[1] .. ' is a ' .. redis.call('TYPE', KEYS[1])['ok'] .. ', not a hash')
  end
  return v
end

-- Reads the record, or nil when absent (Option<Record> in machine.rs), checking the
-- state hash and the open and trial keys.
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
-- HMGET, and the timed keys checked only when the record is not letting calls through,
-- the only time these commands read them (a closed breaker's trip replaces the open
-- key whatever it holds). Nil when absent.
local function load_calls()
  local v = fields()
  if not (v[1] or v[2] or v[3] or v[4] or v[5] or v[6] or v[7] or v[8] or v[9] or v[10]) then
    if redis.call('EXISTS', KEYS[1]) == 1 then
      corrupt(KEYS[1] .. ' has none of the fields inc gen seq state fail succ reo str cls shd')
    end
    return nil
  end
  local rec = parse(v)
  if rec.state ~= CLOSED and rec.state ~= DISABLED then
    check_timed(KEYS[2])
    check_timed(KEYS[3])
  end
  return rec
end

-- Checked by an arm before its first write, so that a command is applied whole or not
-- at all: every write bumps seq, and every transition (`bumps`) the generation; one at
-- its maximum cannot be bumped, and the record is corrupt (force recreates it).
local function room(rec, bumps)
  if rec.seq >= MAX_EXACT then
    corrupt(string.format('%s field seq is at its maximum %d: it cannot be bumped', KEYS[1], MAX_EXACT))
  end
  if bumps and rec.gen >= MAX_GENERATION then
    corrupt(string.format('%s field gen is at its maximum %d: it cannot be bumped', KEYS[1], MAX_GENERATION))
  end
end

-- Checked by an arm that appends to the history (remember), before its first write.
local function check_history()
  local kind = redis.call('TYPE', KEYS[5])['ok']
  if kind ~= 'none' and kind ~= 'list' then
    corrupt(KEYS[5] .. ' is a ' .. kind .. ', not a list')
  end
end

-- Reads the window (KEYS[4]; see record_calls.lua), checking every field: b<slot> =
-- "index calls failures slow", integers in 0..MAX_EXACT with index % 10 = slot;
-- i<instance> = an integer in 0..MAX_EXACT; nothing else. Returns the buckets as
-- {index, calls, failures, slow, field} and the instances as {field, last bucket}.
local function read_window()
  local w = redis.pcall('HGETALL', KEYS[4])
  if w.err then
    corrupt(KEYS[4] .. ' is a ' .. redis.call('TYPE', KEYS[4])['ok'] .. ', not a hash')
  end
  local buckets, instances = {}, {}
  for i = 1, #w, 2 do
    local name, value = w[i], w[i + 1]
    local slot = string.match(name, '^b(%d)$')
    if slot then
      local b, c, f, s = string.match(value, '^(%d+) (%d+) (%d+) (%d+)$')
      b, c, f, s = integer(b, 0, MAX_EXACT), integer(c, 0, MAX_EXACT),
                   integer(f, 0, MAX_EXACT), integer(s, 0, MAX_EXACT)
      if not (b and c and f and s) or b % 10 ~= tonumber(slot) then
        corrupt(KEYS[4] .. ' field ' .. name .. ' is ' .. shown(value)
                .. ', not "index calls failures slow" (integers below 2^53, index % 10 = ' .. slot .. ')')
      end
      buckets[#buckets + 1] = {b, c, f, s, name}
    elseif #name <= 21 and string.find(name, '^i%d+$') then
      local last = integer(value, 0, MAX_EXACT)
      if not last then
        corrupt(KEYS[4] .. ' field ' .. name .. ' is ' .. shown(value) .. ', not a bucket index')
      end
      instances[#instances + 1] = {name, last}
    else
      corrupt(KEYS[4] .. ' has an unknown field ' .. shown(name))
    end
  end
  return buckets, instances
end

-- a + b, saturating at MAX_EXACT (window::MAX_TOTAL): exact below it.
local function add(a, b)
  return math.min(a + b, MAX_EXACT)
end

-- Record::closed
local function fresh(inc)
  return {inc = inc, gen = 1, seq = 0, state = CLOSED, fail = 0, succ = 0, reo = 0, str = '',
          cls = 0, shd = ''}
end

-- Writes the record. Forced states hold until closed by hand: their record never expires.
local function save(rec, ttl_ms)
  rec.seq = rec.seq + 1
  redis.call('HSET', KEYS[1], 'inc', rec.inc, 'gen', rec.gen, 'seq', rec.seq,
             'state', rec.state, 'fail', rec.fail, 'succ', rec.succ, 'reo', rec.reo,
             'str', rec.str, 'cls', rec.cls)
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

-- The server's clock, in ms (TIME).
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Record::trip: opens the breaker for open_ms (the window starts over).
local function trip(rec, open_ms)
  rec.state = OPEN
  rec.gen = rec.gen + 1
  rec.succ = 0
  rec.str = ''
  rec.cls = 0
  redis.call('SET', KEYS[2], rec.gen, 'PX', open_ms)
  redis.call('DEL', KEYS[3], KEYS[4])
end

-- Record::close: closes the breaker and resets its counters and window. Closing a
-- breaker that was not letting calls through is a recovery: slow start is timed from
-- now (cls). With slow start (slow_ms > 0) the backoff is kept until it ends
-- (trip_closed), else reset.
local function close(rec, slow_ms)
  if rec.state ~= CLOSED and rec.state ~= DISABLED then
    rec.cls = server_ms()
  end
  rec.state = CLOSED
  rec.gen = rec.gen + 1
  rec.succ = 0
  rec.fail = 0
  if slow_ms == 0 then
    rec.reo = 0
  end
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
-- first trip), in ms. max_ms = 0: no backoff. Integers below 2^53 throughout (the store
-- sends times of at most 2^53 - 1 ms, and the jitter's share is computed as Rust does,
-- by quotient and remainder), so the doubles of Lua compute exactly what Rust does.
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
  local j = math.min(jitter, 999)
  local r = math.fmod(doubled, 5000)
  return doubled - ((doubled - r) / 5000 * j + math.floor(r * j / 5000))
end

-- Record::trip_closed: trips a closed breaker. During slow start (cls set, less than
-- slow_ms ago) this is a failed recovery: the backoff grows as after a failed trial
-- (open_ms of reo + 1, no jitter); after it, the backoff starts over.
local function trip_closed(rec, reset_ms, max_ms, slow_ms)
  if slow_ms > 0 and rec.cls > 0 and server_ms() < rec.cls + slow_ms then
    rec.reo = math.min(rec.reo + 1, MAX_COUNT)
  else
    rec.reo = 0
  end
  trip(rec, open_ms(rec.reo, reset_ms, max_ms, 0))
end

-- The process's `shadow` setting: every breaker script's last argument (see the header).
local SHADOW_SETTING = ARGV[#ARGV] == '1'

-- Whether the breaker is in shadow mode: the operator's switch, else the setting.
local function in_shadow(rec)
  if rec.shd == '' then
    return SHADOW_SETTING
  end
  return rec.shd == '1'
end

-- Appends the change from -> rec.state, if any (or in any case when `always`), to the
-- breaker's history (KEYS[5]), with the server's clock; the list expires with the record.
-- `audit` (force only, from audit_fields): ' <who> <why>' after the process, or ''.
-- In shadow mode, the entry ends with the mark ' shadow' (keys.rs: HistoryEntry).
-- The arm checks the history first (check_history).
local function remember(from, rec, reason, process, ttl_ms, always, audit)
  if rec.state == from and not always then
    return
  end
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local mark = ''
  if in_shadow(rec) then
    mark = ' shadow'
  end
  redis.call('LPUSH', KEYS[5], string.format('%d %s %s %d %s %s', ms, STATE_NAMES[from],
             STATE_NAMES[rec.state], rec.gen, reason, process) .. (audit or '') .. mark)
  redis.call('LTRIM', KEYS[5], 0, HISTORY_LEN - 1)
  redis.call('PEXPIRE', KEYS[5], ttl_ms)
end

-- The largest encoded who or why (keys.rs: AUDIT_FIELD_MAX, 3 * WHY_MAX).
local AUDIT_FIELD_MAX = 600

-- An operator's who and why as remember() appends them: '' when both are empty, else
-- ' <who> <why>', each a non-empty field of at most AUDIT_FIELD_MAX bytes with no space
-- or control byte (keys.rs: encode_field), so the entry still splits at its spaces.
-- Raises INFUSE_ARG (nothing written) for anything else.
local function audit_fields(who, why)
  if who == '' and why == '' then
    return ''
  end
  for _, text in ipairs({who, why}) do
    if text == '' or #text > AUDIT_FIELD_MAX or string.find(text, '[%z\1-\32\127]') then
      error({err = 'INFUSE_ARG who/why not an encoded field: ' .. shown(text)})
    end
  end
  return ' ' .. who .. ' ' .. why
end

local function pttl(key)
  local t = redis.call('PTTL', key)
  if t < 0 then
    return -1
  end
  return t
end

-- The reply's and event's shadow field: the switch shd as 1 or 0, -1 when absent.
local function shadow_code(rec)
  if rec.shd == '' or rec.shd == nil then
    return -1
  end
  return tonumber(rec.shd)
end

local function reply(applied, from, rec, window)
  local open_pttl, trial_pttl = -1, -1
  if rec.state == OPEN then
    open_pttl = math.max(pttl(KEYS[2]), 0)
  end
  if rec.state ~= CLOSED then
    trial_pttl = pttl(KEYS[3])
  end
  local since_close = -1
  if rec.state == CLOSED and rec.cls > 0 then
    since_close = math.max(server_ms() - rec.cls, 0)
  end
  return {applied, from, rec.inc, rec.gen, rec.seq, rec.state, rec.fail, rec.succ, open_pttl, trial_pttl, window or '', since_close, shadow_code(rec)}
end

-- Outcome::absent: the answer about a breaker with no record.
local ABSENT = {0, CLOSED, '0', 1, 0, CLOSED, 0, 0, -1, -1, '', -1, -1}

-- Tells every process of the fleet what a reply `r` holds (event fields above,
-- space-separated).
-- (string.format: table.concat would write a number of 15 digits or more in exponent
-- notation.)
local function publish_reply(channel, service, r)
  redis.call('PUBLISH', channel, string.format('%s %d %d %d %d %d %d %d %d %d %s', r[3], r[4],
             r[5], r[6], r[7], r[8], r[9], r[10], r[12], r[13], service))
end

local function publish(channel, service, rec)
  publish_reply(channel, service, reply(1, rec.state, rec))
end
