-- register (machine.rs: register): create the record if absent, from the seed when one
-- is given, else closed; replace a record by a seed of a newer generation (a store that
-- lost writes). Never otherwise overwrites what the fleet knows. A created or replaced
-- record starts with no backoff and an empty window.
-- ARGV: inc (for a new record), key_ttl_ms, channel, service,
--       seeded (1/0), seed_state, seed_gen, seed_fail, seed_open_ms
local rec = load()
local seeded = ARGV[5] == '1'
if rec and not (seeded and tonumber(ARGV[7]) > rec.gen) then
  return reply(0, rec.state, rec)
end
local new = fresh(ARGV[1])
if rec then
  new.inc = rec.inc
  new.seq = rec.seq
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
if seeded then
  new.state = tonumber(ARGV[6])
  new.gen = math.max(tonumber(ARGV[7]), 1)
  new.fail = tonumber(ARGV[8])
  if new.state == OPEN and tonumber(ARGV[9]) > 0 then
    redis.call('SET', KEYS[2], new.gen, 'PX', ARGV[9])
  end
end
local from = new.state
if rec then
  from = rec.state
end
save(new, ARGV[2])
publish(ARGV[3], ARGV[4], new)
return reply(1, from, new)
