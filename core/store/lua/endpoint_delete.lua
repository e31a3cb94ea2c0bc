-- Delete an endpoint: it stops receiving messages at once; the pump cancels its queued deliveries
-- and removes the hash once nothing of it is queued or in flight.
-- Keys touched: hp:ep:{eid}, hp:eps, hp:evt:{type}, hp:evt-all, hp:active.
-- ARGV[1]: eid, ARGV[2]: now. Returns 0 if there is no such (live) endpoint, else 1.
local eid, now = ARGV[1], tonumber(ARGV[2])
local key = 'hp:ep:' .. eid
local old = redis.call('HMGET', key, 'url', 'deleted', 'enabled', 'event_types')
if not old[1] or old[2] == '1' then return 0 end
if old[3] == '1' then
  if old[4] == nil or old[4] == '' then
    redis.call('SREM', 'hp:evt-all', eid)
  else
    for _, t in ipairs(cjson.decode(old[4])) do redis.call('SREM', 'hp:evt:' .. t, eid) end
  end
end
redis.call('ZREM', 'hp:eps', eid)
redis.call('HSET', key, 'deleted', '1', 'enabled', '0', 'updated_ms', now)
-- Let the pump see it now so it cancels what is queued (claim.lua handles deleted endpoints).
redis.call('ZADD', 'hp:active', now, eid)
redis.call('PUBLISH', 'hp:wake', '1')
return 1
