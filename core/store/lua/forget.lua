-- Forget finished deliveries: once the history store has committed a terminal delivery's state at
-- version v, its hash leaves Redis (Redis keeps only live state). A delivery that changed since (a
-- manual retry raised its version) is kept. When a message has no delivery left in Redis, its hash
-- goes too: the history store has it (ingest appended it to the outbox before any delivery state).
-- Keys touched: hp:dlv:{did}, hp:msg:{mid}, hp:msg:{mid}:payload.
-- ARGV: did, version, did, version, ... Returns how many were forgotten.
local ENDED = {succeeded = true, failed = true, cancelled = true}
local forgotten = 0
for i = 1, #ARGV, 2 do
  local did, version = ARGV[i], tonumber(ARGV[i + 1])
  local dkey = 'hp:dlv:' .. did
  local d = redis.call('HMGET', dkey, 'status', 'v')
  if d[1] and ENDED[d[1]] and (tonumber(d[2]) or 0) <= version then
    redis.call('DEL', dkey, dkey .. ':attempts', dkey .. ':actions')  -- the lists: keys older versions wrote
    local mkey = 'hp:msg:' .. message_of(did)
    if redis.call('EXISTS', mkey) == 1 and redis.call('HINCRBY', mkey, 'remaining', -1) <= 0 then
      redis.call('DEL', mkey, mkey .. ':payload')
    end
    forgotten = forgotten + 1
  end
end
return forgotten
