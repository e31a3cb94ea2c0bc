-- Operator pause and resume of an endpoint. A paused endpoint still receives new messages; the pump
-- sends nothing to it until it is resumed (or the pause's end passes).
-- Keys touched: hp:ep:{eid}, hp:ep:{eid}:flow, hp:ep:{eid}:actions, hp:active; publishes hp:wake.
-- ARGV: eid, now_ms, "pause" | "resume", until_ms (pause; 0 = until resumed), action JSON.
-- Returns 0 if there is no such (live) endpoint, else 1.
local eid, now, verb, until_ms, action = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
local key = 'hp:ep:' .. eid
local ep = redis.call('HMGET', key, 'url', 'deleted')
if not ep[1] or ep[2] == '1' then return 0 end
if verb == 'pause' then
  if until_ms == 0 then until_ms = 9007199254740991 end  -- 2^53 - 1: until resumed
  redis.call('HSET', key .. ':flow', 'paused_until', until_ms, 'pause_reason', 'operator', 'paused_at', now)
  if redis.call('ZSCORE', 'hp:active', eid) then redis.call('ZADD', 'hp:active', until_ms, eid) end
else
  redis.call('HSET', key .. ':flow', 'paused_until', 0, 'pause_reason', '', 'backoff_level', 0)
  rescore_active(eid, now)
  redis.call('PUBLISH', 'hp:wake', '1')
end
redis.call('LPUSH', key .. ':actions', action)
redis.call('LTRIM', key .. ':actions', 0, 99)
return 1
