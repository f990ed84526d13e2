-- record_calls (machine.rs: record_calls): add one process's batch of call outcomes to a
-- breaker that lets calls through (closed or disabled) at generation ARGV[1]. The batch's
-- failures after its last success continue the consecutive-failure count (a success in
-- the batch resets it first); with a rate rule set, the counts go into the window's
-- current bucket (window.rs: Window::add). A closed breaker trips when the trip policy
-- says so (policy.rs: TripPolicy::trips, TripPolicy::trips_on).
--
-- The window (KEYS[4]) holds, per bucket slot (index % 10), a field b<slot> =
-- "index calls failures slow", and per instance that reported failures or slow calls a
-- field i<instance> = the last bucket it did; buckets and instances older than ten buckets
-- are out of the window (instance fields are pruned here). The bucket index is the
-- server's TIME in ms / bucket_ms. The key expires two windows after its last write.
-- Counts saturate at 2^53 - 1 (window::MAX_TOTAL); a field that is none of these, or not
-- integers below 2^53, makes the window corrupt (read_window).
-- ARGV: generation, calls, failures, slow, tail, instance, fail_max (>= 1),
--       failure_rate ('' = unset), slow_call_rate ('' = unset), min_calls (>= 1),
--       min_instances (>= 1), bucket_ms (window.rs: bucket_ms), reset_timeout_ms,
--       key_ttl_ms, channel, service, process, max_reset_timeout_ms (0 = no backoff),
--       slow_start_ms (0 = off; a trip during slow start is a failed recovery:
--       prelude.lua: trip_closed)
local rec = load()
if not rec then
  return ABSENT
end
local from = rec.state
local calls, failures, slow = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if rec.gen ~= tonumber(ARGV[1]) or (rec.state ~= CLOSED and rec.state ~= DISABLED)
    or calls == 0 then
  return reply(0, from, rec)
end
local before, streak_before = rec.fail, rec.str
local tail, quorum = tonumber(ARGV[5]), tonumber(ARGV[11])
if calls > failures then
  rec.fail = 0 -- a success ends the streak
  note_streak(rec, nil, quorum)
end
rec.fail = math.min(rec.fail + tail, MAX_COUNT)
if tail > 0 then
  note_streak(rec, ARGV[6], quorum)
else
  note_streak(rec, nil, quorum)
end
local trips = streak_trips(rec, tonumber(ARGV[7]), quorum)
local failure_rate, slow_rate = tonumber(ARGV[8]), tonumber(ARGV[9])
local rates = failure_rate ~= nil or slow_rate ~= nil
-- The window's totals at `index`, the batch's bucket (field `slot`), and what to write.
local tc, tf, ts = 0, 0, 0
local bucket_ms, index, slot, me, reporting, bc, bf, bs
local stale = {}
-- A closed breaker the consecutive rule trips loses its window anyway: skip it.
if rates and not (trips and rec.state == CLOSED) then
  bucket_ms = tonumber(ARGV[12])
  local time = redis.call('TIME')
  index = math.floor((tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)) / bucket_ms)
  slot = 'b' .. string.format('%d', index % 10)
  me = 'i' .. ARGV[6]
  reporting = failures > 0 or slow > 0
  bc, bf, bs = calls, failures, slow
  local instances = 0
  if reporting then
    instances = 1
  end
  local buckets, reporters = read_window()
  for _, bucket in ipairs(buckets) do
    local b, c, f, s, name = bucket[1], bucket[2], bucket[3], bucket[4], bucket[5]
    if name == slot then
      if b == index then
        bc, bf, bs = add(bc, c), add(bf, f), add(bs, s)
      end
    elseif b <= index and index - b < 10 then
      tc, tf, ts = add(tc, c), add(tf, f), add(ts, s)
    end
  end
  for _, reporter in ipairs(reporters) do
    local name, last = reporter[1], reporter[2]
    if name ~= me or not reporting then -- (this one counted above)
      if last <= index and index - last < 10 then
        instances = instances + 1
      else
        stale[#stale + 1] = name
      end
    end
  end
  tc, tf, ts = add(tc, bc), add(tf, bf), add(ts, bs)
  if not trips and tc >= tonumber(ARGV[10]) and instances >= tonumber(ARGV[11]) then
    trips = (failure_rate ~= nil and tf * 100 >= failure_rate * tc)
        or (slow_rate ~= nil and ts * 100 >= slow_rate * tc)
  end
end
local tripping = trips and rec.state == CLOSED
if not tripping and rec.fail == before and rec.str == streak_before and not rates then
  -- Nothing changed (machine.rs: no write, no new seq).
  return reply(1, from, rec)
end
-- Everything read is valid; what the writes need is checked before the first.
room(rec, tripping)
if tripping then
  check_history()
elseif rates then
  local bucket = string.format('%d %d %d %d', index, bc, bf, bs)
  if reporting then
    redis.call('HSET', KEYS[4], slot, bucket, me, string.format('%d', index))
  else
    redis.call('HSET', KEYS[4], slot, bucket)
  end
  for i = 1, #stale, 1000 do -- (unpack takes a few thousand values at most)
    redis.call('HDEL', KEYS[4], unpack(stale, i, math.min(i + 999, #stale)))
  end
  redis.call('PEXPIRE', KEYS[4], 20 * bucket_ms)
end
local window = nil
if tripping then
  trip_closed(rec, tonumber(ARGV[13]), tonumber(ARGV[18]), tonumber(ARGV[19]))
elseif rates then
  -- The window's totals, so the reporting process can tell when its next counts
  -- could trip (machine.rs: Outcome::window).
  window = string.format('%d %d %d', tc, tf, ts)
end
save(rec, ARGV[14])
remember(from, rec, 'tripped', ARGV[17], ARGV[14])
-- Other processes must learn of a trip, and of the fail counter's 0 <-> non-zero edge
-- (their views' dirty bit); counts alone reach them with the next resync. Publishing
-- every report would send each process a message per report of every other process.
if rec.state ~= from or (before == 0) ~= (rec.fail == 0) then
  publish(ARGV[15], ARGV[16], rec)
end
return reply(1, from, rec, window)
