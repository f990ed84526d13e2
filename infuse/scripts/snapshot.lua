-- snapshot: read the record; writes nothing.
-- ARGV: (none)
local rec = load(nil)
if not rec then
  return ABSENT
end
return reply(1, rec.state, rec)
