-- register (machine.rs: register): create the record if absent, from the seed when one
-- is given, else closed. Replace an existing record by the seed only when the store lost
-- history (Seed::shows_lost_history): the seeding process read a newer version of this
-- very record before (same incarnation, higher seq: Redis restarted from an old
-- snapshot, or failed over to a lagging replica), or the record it read is gone and a
-- blank one (generation 1) stands in its place while the seed knows of a transition.
-- Never otherwise overwrites what the fleet knows: a process that was merely cut off
-- finds the record at or past what it read, and takes it in. A created or replaced
-- record gets a new incarnation (the first process to notice re-seeds, the others
-- adopt), no backoff and an empty window; a seeded one is written to the history
-- ('reseeded': the record was missing or blank; 'replaced_after_failover': it was older).
-- ARGV: inc (for a new record), key_ttl_ms, channel, service,
--       seeded (1/0), seed_state, seed_gen, seed_fail, seed_open_ms,
--       confirmed_inc ('' = none), confirmed_seq, process, seed_trial_ms (half-open: the
--       slot is held by TrialToken::UNKNOWN, 32 zeros, that long), seed_shadow (the
--       operator's shadow switch the seed knows of: '1', '0', or '' for none),
--       seed_since_close_ms (a closed seed in a recovery: ms since it closed, or '')
local rec = load()
local seeded = ARGV[5] == '1'
local reason = 'reseeded'
if rec then
  local lost = false
  if seeded and ARGV[10] ~= '' then
    if ARGV[10] == rec.inc then
      lost = tonumber(ARGV[11]) > rec.seq
      reason = 'replaced_after_failover'
    else
      lost = rec.gen == 1 and tonumber(ARGV[7]) > 1
    end
  end
  if not lost then
    return reply(0, rec.state, rec)
  end
end
if seeded then
  check_history() -- written below, before anything is
end
local new = fresh(ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
-- A new record has the seed's shadow switch, if any (Record::seeded), else none.
redis.call('HDEL', KEYS[1], 'shd')
if seeded and (ARGV[14] == '0' or ARGV[14] == '1') then
  new.shd = ARGV[14]
end
if seeded then
  new.state = tonumber(ARGV[6])
  new.gen = math.max(tonumber(ARGV[7]), 1)
  new.fail = tonumber(ARGV[8])
  if new.state == OPEN and tonumber(ARGV[9]) > 0 then
    redis.call('SET', KEYS[2], new.gen, 'PX', ARGV[9])
  elseif new.state == HALF_OPEN and tonumber(ARGV[13]) > 0 then
    redis.call('SET', KEYS[3], string.rep('0', 32), 'PX', ARGV[13])
  elseif new.state == CLOSED and tonumber(ARGV[15]) then
    -- A recovery's close, as long ago as the seed says (Record::seeded: closed_at).
    new.cls = math.max(server_ms() - tonumber(ARGV[15]), 1)
  end
end
local from = new.state
if rec then
  from = rec.state
end
save(new, ARGV[2])
if new.shd ~= '' then
  redis.call('HSET', KEYS[1], 'shd', new.shd)
end
if seeded then
  remember(from, new, reason, ARGV[12], ARGV[2], true)
end
publish(ARGV[3], ARGV[4], new)
return reply(1, from, new)
