-- record_trial (machine.rs: record_trial): apply the result of the trial holding ARGV[1]
-- (ignored if the token no longer holds the slot). A success counts towards
-- success_threshold and closes at it; a failure re-opens, backing off: the open time
-- doubles with each consecutive failed trial up to max_reset_timeout, less a jitter
-- derived from the token (Settings::open_ms, TrialToken::jitter).
-- ARGV: token, success (1/0), success_threshold, reset_timeout_ms,
--       max_reset_timeout_ms (0 = no backoff), jitter (‰, < 1000), key_ttl_ms, channel,
--       service, process, slow_start_ms (0 = off: close resets the backoff)
local rec = load()
if not rec then
  return ABSENT
end
local from = rec.state
if rec.state ~= HALF_OPEN or redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return reply(0, from, rec)
end
local success = ARGV[2] == '1'
local moves = not success or rec.succ + 1 >= tonumber(ARGV[3])
room(rec, moves)
if moves then
  check_history()
end
redis.call('DEL', KEYS[3])
if success then
  rec.fail = 0
  rec.str = ''
  rec.succ = math.min(rec.succ + 1, MAX_COUNT)
  if rec.succ >= tonumber(ARGV[3]) then
    close(rec, tonumber(ARGV[11]))
  end
else
  -- As pybreaker: the fail counter keeps counting through half-open.
  rec.fail = math.min(rec.fail + 1, MAX_COUNT)
  rec.reo = math.min(rec.reo + 1, MAX_COUNT)
  trip(rec, open_ms(rec.reo, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])))
end
save(rec, ARGV[7])
if success then
  remember(from, rec, 'trial_succeeded', ARGV[10], ARGV[7])
else
  remember(from, rec, 'trial_failed', ARGV[10], ARGV[7])
end
publish(ARGV[8], ARGV[9], rec)
return reply(1, from, rec)
