-- infuse: shared prelude, prepended to every script at build time.
--
-- KEYS[1]  infuse:{<namespace>/<service>}:state  HASH  inc, gen, seq, state, fail, succ
-- KEYS[2]  infuse:{<namespace>/<service>}:open   STRING, exists while open (PX = reset_timeout)
-- KEYS[3]  infuse:{<namespace>/<service>}:trial  STRING, the trial holder's token (PX = lease)
--
-- Every script replies {applied, from, inc, gen, seq, state, fail, succ, open_pttl, trial_pttl}:
--   applied     1 if the request took effect, else 0
--   from, state the recorded state before / after: 0 closed, 1 open, 2 half-open
--   inc         the record's incarnation (random, set when created; "0" when absent)
--   gen         bumped on every state transition (results of older generations are stale)
--   seq         bumped on every write (orders replies and messages)
--   open_pttl   ms until a trial is allowed while open (0 once allowed), else -1
--   trial_pttl  ms left on the trial lease while one is in flight, else -1
-- Time comes only from the server: PX expiry of the open and trial keys.

local CLOSED, OPEN, HALF_OPEN = 0, 1, 2

local function corrupt(what)
  error({err = 'INFUSE_CORRUPT ' .. KEYS[1] .. ' ' .. what})
end

-- Reads the record; creates a fresh closed one (not yet written) when absent and
-- create_inc is given, else returns nil.
local function load(create_inc)
  local kind = redis.call('TYPE', KEYS[1])['ok']
  if kind == 'none' then
    if not create_inc then
      return nil
    end
    redis.call('DEL', KEYS[2], KEYS[3])
    return {inc = create_inc, gen = 1, seq = 0, state = CLOSED, fail = 0, succ = 0, created = true}
  end
  if kind ~= 'hash' then
    corrupt('is a ' .. kind .. ', not a hash')
  end
  local v = redis.call('HMGET', KEYS[1], 'inc', 'gen', 'seq', 'state', 'fail', 'succ')
  local rec = {inc = v[1], gen = tonumber(v[2]), seq = tonumber(v[3]), state = tonumber(v[4]),
               fail = tonumber(v[5]), succ = tonumber(v[6])}
  if not (rec.inc and rec.gen and rec.seq and rec.state and rec.fail and rec.succ)
      or (rec.state ~= CLOSED and rec.state ~= OPEN and rec.state ~= HALF_OPEN) then
    corrupt('has missing or invalid fields')
  end
  return rec
end

local function save(rec, ttl_ms)
  rec.seq = rec.seq + 1
  redis.call('HSET', KEYS[1], 'inc', rec.inc, 'gen', rec.gen, 'seq', rec.seq,
             'state', rec.state, 'fail', rec.fail, 'succ', rec.succ)
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
end

local function pttl(key)
  local t = redis.call('PTTL', key)
  if t < 0 then
    return -1
  end
  return t
end

local function reply(applied, from, rec)
  local open_pttl, trial_pttl = -1, -1
  if rec.state == OPEN then
    open_pttl = math.max(pttl(KEYS[2]), 0)
  end
  if rec.state ~= CLOSED then
    trial_pttl = pttl(KEYS[3])
  end
  return {applied, from, rec.inc, rec.gen, rec.seq, rec.state, rec.fail, rec.succ, open_pttl, trial_pttl}
end

local ABSENT = {0, CLOSED, '0', 1, 0, CLOSED, 0, 0, -1, -1}

-- Tells every process of the fleet: "<inc> <gen> <seq> <state> <fail> <succ> <open_pttl> <trial_pttl> <service>".
local function publish(channel, service, rec)
  local r = reply(1, rec.state, rec)
  redis.call('PUBLISH', channel, table.concat({r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], service}, ' '))
end
