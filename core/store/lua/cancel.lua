-- Cancel queued deliveries (pending or retrying): they become terminal and leave the due set.
-- A delivery being sent right now cannot be cancelled (its request may already be on the wire).
-- Keys touched: hp:dlv:{did}, hp:ep:{eid}:due, hp:active,
--   counters and hp:backlog (via _lib).
-- ARGV: now_ms, action JSON, did... Returns per did: "cancelled", "delivering", "terminal", "missing".
local now, action = tonumber(ARGV[1]), ARGV[2]
local out, touched = {}, {}
for i = 3, #ARGV do
  local did = ARGV[i]
  local dkey = 'hp:dlv:' .. did
  local d = redis.call('HMGET', dkey, 'eid', 'status')
  if not d[1] then
    out[#out + 1] = 'missing'
  elseif d[2] == 'delivering' then
    out[#out + 1] = 'delivering'
  elseif d[2] ~= 'pending' and d[2] ~= 'retrying' then
    out[#out + 1] = 'terminal'
  else
    redis.call('ZREM', 'hp:ep:' .. d[1] .. ':due', did)
    finish(did, d[1], d[2], 'cancelled', now)
    redis.call('HSET', dkey, 'last_error', 'cancelled by an operator')
    log_action(did, d[1], action)
    touched[d[1]] = true
    out[#out + 1] = 'cancelled'
  end
end
flush()
for eid in pairs(touched) do
  if redis.call('ZCARD', 'hp:ep:' .. eid .. ':due') == 0 then redis.call('ZREM', 'hp:active', eid) end
end
return out
