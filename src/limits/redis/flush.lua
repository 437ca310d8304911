-- sagegate flush: adds the quota one task counted locally while the store was down to the shared
-- counters, exactly once per batch. A flush that timed out may still run later; the task then
-- resends the same batch (same id), and whichever copy runs second finds the marker and adds nothing.
--
-- KEYS[1]     the batch's marker, {prefix}:flush:<batch id>
-- KEYS[2..]   quota counters, {prefix}:q:<plan>:<key>:<D|W|M>:<period start>
-- ARGV[1]     seconds the marker is kept (longer than any retry of the batch)
-- ARGV[2i-2], ARGV[2i-1]   for KEYS[i]: the count to add, and when the counter expires (unix s)
--
-- Returns 1 when the batch was added, 0 when it had been already.

if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
for i = 2, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[2 * i - 2])
  redis.call('EXPIREAT', KEYS[i], ARGV[2 * i - 1])
end
return 1
