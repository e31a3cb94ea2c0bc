-- Retention: remove terminal deliveries that ended more than `retention` ago, with their attempt
-- records, index entries and counts, and their message once no delivery of it is left. Bounded:
-- at most `limit` deliveries per call. Queued and in-flight deliveries are never touched (only
-- hp:terminal is read, and a delivery is there only while its status is terminal).
-- Keys touched: hp:terminal, hp:dlv:{did}, hp:dlv:{did}:attempts, hp:dlv:{did}:actions, hp:att:{aid},
--   hp:ep:{eid}:attempts, hp:idx:dlv*, hp:ep:{eid}:count, hp:count, hp:msg:{mid}.
-- ARGV: now_ms, retention_ms, limit. Returns the number of deliveries removed.
local now, retention, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local removed = 0
for _, did in ipairs(redis.call('ZRANGEBYSCORE', 'hp:terminal', '-inf', now - retention, 'LIMIT', 0, limit)) do
  local dkey = 'hp:dlv:' .. did
  local d = redis.call('HMGET', dkey, 'eid', 'status', 'mid', 'event_type')
  redis.call('ZREM', 'hp:terminal', did)
  if d[1] and (d[2] == 'succeeded' or d[2] == 'failed' or d[2] == 'cancelled') then
    local eid = d[1]
    local aids = redis.call('LRANGE', dkey .. ':attempts', 0, -1)
    for _, aid in ipairs(aids) do redis.call('DEL', 'hp:att:' .. aid) end
    if #aids > 0 then redis.call('ZREM', 'hp:ep:' .. eid .. ':attempts', unpack(aids)) end
    redis.call('DEL', dkey, dkey .. ':attempts', dkey .. ':actions')
    redis.call('ZREM', 'hp:idx:dlv', did)
    redis.call('ZREM', 'hp:idx:dlv:ep:' .. eid, did)
    redis.call('ZREM', 'hp:idx:dlv:st:' .. d[2], did)
    redis.call('ZREM', 'hp:idx:dlv:ep:' .. eid .. ':st:' .. d[2], did)
    redis.call('ZREM', 'hp:idx:dlv:evt:' .. d[4], did)
    redis.call('HINCRBY', 'hp:ep:' .. eid .. ':count', d[2], -1)
    redis.call('HINCRBY', 'hp:count', d[2], -1)
    if redis.call('HINCRBY', 'hp:msg:' .. d[3], 'remaining', -1) <= 0 then
      redis.call('DEL', 'hp:msg:' .. d[3])
    end
    removed = removed + 1
  end
end
return removed
