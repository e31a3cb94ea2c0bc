-- Manual retry: terminal deliveries go back to pending with a fresh attempt budget, due now.
-- They still pass through the pump (pace, pause, max_in_flight): a retry never bypasses it.
-- Keys touched: hp:dlv:{did}, hp:ep:{eid}:due, hp:msg:{mid},
--   hp:active, status indexes, counters and hp:backlog (via _lib); publishes hp:wake.
-- ARGV: now_ms, action JSON (who/when/what, appended to each delivery's actions), did...
-- Returns one word per did: "queued", "already_queued" (pending/retrying/delivering), "missing",
-- or "message_gone" (its payload has expired, nothing to send).
local now, action = tonumber(ARGV[1]), ARGV[2]
local out, touched = {}, {}
for i = 3, #ARGV do
  local did = ARGV[i]
  local dkey = 'hp:dlv:' .. did
  local d = redis.call('HMGET', dkey, 'eid', 'status', 'mid', 'created_ms')
  if not d[1] then
    out[#out + 1] = 'missing'
  elseif d[2] == 'pending' or d[2] == 'retrying' or d[2] == 'delivering' then
    out[#out + 1] = 'already_queued'
  elseif redis.call('EXISTS', 'hp:msg:' .. d[3]) == 0 then
    out[#out + 1] = 'message_gone'
  else
    enqueue(did, d[1], d[2], 'pending', now, now)
    redis.call('HSET', dkey, 'budget_ms', now, 'trigger', 'manual', 'ended_ms', '')
    log_action(did, action)
    touched[d[1]] = true
    out[#out + 1] = 'queued'
  end
end
flush()
local woke = false
for eid in pairs(touched) do
  rescore_active(eid, now)
  woke = true
end
if woke then redis.call('PUBLISH', 'hp:wake', '1') end
return out
