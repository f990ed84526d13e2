-- record_calls (machine.rs: record_calls): NOT YET WRITTEN.
-- ARGV: generation, calls, failures, slow, tail, instance, fail_max, failure_rate,
--       slow_call_rate, min_calls, min_instances, window_ms, reset_timeout_ms,
--       key_ttl_ms, channel, service
return redis.error_reply('INFUSE record_calls is not written yet')
