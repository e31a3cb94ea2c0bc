-- Bring forgotten terminal deliveries back into Redis from their history rows, for a manual retry,
-- with their message (payload, trace) when Redis no longer holds it. Only when the delivery is not
-- in Redis and its message is known (in Redis or given).
-- Keys touched: hp:dlv:{did}, hp:msg:{mid}, hp:msg:{mid}:payload.
-- ARGV[1]: JSON array of {id, mid, eid, event_type, status, attempts, created_ms, updated_ms,
--   last_code, last_error, version, message: {event_type, payload, created_ms, trace, deliveries} or
--   absent}; the delivery hash keeps only what the ids and the message do not say (core/keys.py).
--   Returns the ids restored.
local ENDED = {succeeded = true, failed = true, cancelled = true}
local restored = {}
for _, r in ipairs(cjson.decode(ARGV[1])) do
  local dkey, mkey = 'hp:dlv:' .. r.id, 'hp:msg:' .. r.mid
  if ENDED[r.status] and redis.call('EXISTS', dkey) == 0 and redis.call('EXISTS', mkey) == 0
      and type(r.message) == 'table' then
    local m = r.message
    local _, commas = string.gsub(m.deliveries, ',', '')
    local fanout = m.deliveries == '' and 0 or commas + 1
    redis.call('HSET', mkey, 'event_type', m.event_type, 'fanout', fanout, 'remaining', 0)
    if m.trace and m.trace ~= '' and m.trace ~= cjson.null then redis.call('HSET', mkey, 'trace', m.trace) end
    redis.call('SET', mkey .. ':payload', m.payload)
  end
  if ENDED[r.status] and redis.call('EXISTS', dkey) == 0 and redis.call('EXISTS', mkey) == 1 then
    redis.call('HSET', dkey, 'eid', r.eid, 'status', r.status, 'attempts', r.attempts,
      'updated_ms', r.updated_ms, 'v', r.version)
    if r.last_code ~= '' and r.last_code ~= cjson.null then redis.call('HSET', dkey, 'last_code', r.last_code) end
    if r.last_error ~= '' and r.last_error ~= cjson.null then redis.call('HSET', dkey, 'last_error', r.last_error) end
    redis.call('HINCRBY', mkey, 'remaining', 1)
    redis.call('PERSIST', mkey)
    redis.call('PERSIST', mkey .. ':payload')
    restored[#restored + 1] = r.id
  end
end
return restored
