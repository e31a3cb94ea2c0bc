-- Crash recovery: deliveries whose lease expired (their worker died or stalled) go back to their
-- endpoint's due set, due now, with an attempt record saying the result was lost.
-- Keys touched: hp:leases, hp:ep:{eid}:inflight, hp:ep:{eid}:due, hp:dlv:{did}, hp:log:<p>, hp:active, counters and hp:backlog (via _lib).
-- ARGV: now_ms, limit. Returns the dids put back.
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local back, touched = {}, {}
for _, did in ipairs(redis.call('ZRANGEBYSCORE', 'hp:leases', '-inf', now, 'LIMIT', 0, limit)) do
  local dkey = 'hp:dlv:' .. did
  local d = redis.call('HMGET', dkey, 'eid', 'status', 'attempts', 'worker', 'trigger')
  if d[1] then
    release_lease(did, d[1])
    if d[2] == 'delivering' then
      local record = cjson.encode({
        number = tonumber(d[3]), trigger = d[5] or 'scheduled', outcome = 'lost', duration_ms = cjson.null,
        started_at = cjson.null, request = cjson.null, response = cjson.null,
        error = {kind = 'lease_expired', message = 'worker ' .. (d[4] or '?') ..
          ' held this delivery past its lease without reporting a result; it will be sent again'}})
      log_attempt(did, d[1], d[3], now, record)
      enqueue(did, d[1], 'delivering', 'retrying', now, now)
      if d[5] == 'manual' then redis.call('HDEL', dkey, 'trigger') end
      touched[d[1]] = true
      back[#back + 1] = did
    end
  else
    zrem('hp:leases', did)
  end
end
flush()
for eid in pairs(touched) do rescore_active(eid, now) end
return back
