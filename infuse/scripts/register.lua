-- register: create the record if absent; never overwrite what the fleet knows.
-- ARGV: inc (for a new record), key_ttl_ms
local rec = load(ARGV[1])
if rec.created then
  save(rec, ARGV[2])
  return reply(1, rec.state, rec)
end
return reply(0, rec.state, rec)
