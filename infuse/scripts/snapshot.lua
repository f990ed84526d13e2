-- snapshot (machine.rs: Command::Snapshot): read the record; writes nothing.
-- ARGV: (none)
local rec = load()
if not rec then
  return ABSENT
end
return reply(1, rec.state, rec)
