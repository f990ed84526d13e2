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
-- ARGV: generation, calls, failures, slow, tail, instance, fail_max (>= 1),
--       failure_rate ('' = unset), slow_call_rate ('' = unset), min_calls (>= 1),
--       min_instances (>= 1), bucket_ms (window.rs: bucket_ms), reset_timeout_ms,
--       key_ttl_ms, channel, service, process
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
rec.fail = math.min(rec.fail + tail, 4294967295)
if tail > 0 then
  note_streak(rec, ARGV[6], quorum)
else
  note_streak(rec, nil, quorum)
end
local trips = streak_trips(rec, tonumber(ARGV[7]), quorum)
local failure_rate, slow_rate = tonumber(ARGV[8]), tonumber(ARGV[9])
local rates = failure_rate ~= nil or slow_rate ~= nil
local tc, tf, ts = 0, 0, 0
-- A closed breaker the consecutive rule trips loses its window anyway: skip it.
if rates and not (trips and rec.state == CLOSED) then
  local bucket_ms = tonumber(ARGV[12])
  local time = redis.call('TIME')
  local index = math.floor((tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)) / bucket_ms)
  local slot = 'b' .. (index % 10)
  local me = 'i' .. ARGV[6]
  local reporting = failures > 0 or slow > 0
  -- The batch's bucket, and the totals and instances of the window at `index`.
  local bc, bf, bs = calls, failures, slow
  local instances, stale = 0, {}
  if reporting then
    instances = 1
  end
  local w = redis.call('HGETALL', KEYS[4])
  for i = 1, #w, 2 do
    local field, value = w[i], w[i + 1]
    if string.byte(field) == 98 then -- 'b': a bucket
      local b, c, f, s = string.match(value, '^(%d+) (%d+) (%d+) (%d+)$')
      if not b then
        corrupt(KEYS[4] .. ' field ' .. field .. ' is not "index calls failures slow"')
      end
      b = tonumber(b)
      if field == slot then
        if b == index then
          bc, bf, bs = bc + c, bf + f, bs + s
        end
      elseif b <= index and index - b < 10 then
        tc, tf, ts = tc + c, tf + f, ts + s
      end
    elseif field ~= me or not reporting then -- an instance (this one counted above)
      local last = tonumber(value)
      if last and last <= index and index - last < 10 then
        instances = instances + 1
      else
        stale[#stale + 1] = field
      end
    end
  end
  tc, tf, ts = tc + bc, tf + bf, ts + bs
  if not trips and tc >= tonumber(ARGV[10]) and instances >= tonumber(ARGV[11]) then
    trips = (failure_rate ~= nil and tf * 100 >= failure_rate * tc)
        or (slow_rate ~= nil and ts * 100 >= slow_rate * tc)
  end
  if not (trips and rec.state == CLOSED) then
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
end
local window = nil
if trips and rec.state == CLOSED then
  trip(rec, ARGV[13])
elseif rec.fail == before and rec.str == streak_before and not rates then
  -- Nothing changed (machine.rs: no write, no new seq).
  return reply(1, from, rec)
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
