-- Manual retry: terminal deliveries go back to pending with a fresh attempt budget, due now.
-- With `hasten` set, a delivery waiting for its next automatic attempt (pending/retrying) is made
-- due now instead ("try now"; its budget and attempt count are kept).
-- Either way it still passes through the pump (pace, pause, max_in_flight): a retry never bypasses it.
-- Keys touched: hp:dlv:{did}, hp:ep:{eid}:due, hp:msg:{mid},
--   hp:active, counters and hp:backlog (via _lib); publishes hp:wake.
-- ARGV: now_ms, action JSON (who/when/what, appended to each delivery's actions), hasten ("1"/"0"), did...
-- Returns one word per did: "queued", "hastened" (pending/retrying made due now), "already_queued"
-- (delivering, or pending/retrying without hasten), "missing", or "message_gone" (its payload has
-- expired, nothing to send).
local now, action, hasten = tonumber(ARGV[1]), ARGV[2], ARGV[3] == '1'
local out, touched = {}, {}
for i = 4, #ARGV do
  local did = ARGV[i]
  local dkey = 'hp:dlv:' .. did
  local d = redis.call('HMGET', dkey, 'eid', 'status')
  if not d[1] then
    out[#out + 1] = 'missing'
  elseif hasten and (d[2] == 'pending' or d[2] == 'retrying') then
    local due = tonumber(redis.call('ZSCORE', 'hp:ep:' .. d[1] .. ':due', did))
    if not due or due > now then enqueue(did, d[1], d[2], d[2], now, now) end
    redis.call('HSET', dkey, 'trigger', 'manual')
    log_action(did, d[1], action)
    touched[d[1]] = true
    out[#out + 1] = 'hastened'
  elseif d[2] == 'pending' or d[2] == 'retrying' or d[2] == 'delivering' then
    out[#out + 1] = 'already_queued'
  elseif redis.call('EXISTS', 'hp:msg:' .. message_of(did)) == 0 then
    out[#out + 1] = 'message_gone'
  else
    enqueue(did, d[1], d[2], 'pending', now, now)
    -- A fresh retry budget from now (absent, it starts at creation).
    redis.call('HSET', dkey, 'budget_ms', now, 'trigger', 'manual')
    log_action(did, d[1], action)
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
