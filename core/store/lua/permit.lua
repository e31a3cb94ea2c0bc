-- Send permits for fast endpoints, for a batch of sends at once: a sliding log of each endpoint's
-- sends in the last second, shared by every worker, so no 1-s window ever holds more than `bound`
-- sends (ceil(rate/60) + 1) however the workers' event loops stall. Times are Redis's clock, so the
-- log is in send order. A worker asks once per few milliseconds for every send it has waiting
-- (scheduler/permits.py): one script call instead of one per send.
-- Keys touched: hp:ep:{eid}:permits (ZSET send id -> ms; expires 2 s after the last send)
-- ARGV: (eid, send id (did.attempt), bound) repeated, in the order the sends asked
-- Returns {granted, ms} per send, flat: granted 1 with ms the send's moment, or 0 with ms when one may be.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local logs = {}  -- eid -> {count, grants (ZADD args)}
local out = {}
for i = 1, #ARGV, 3 do
  local eid, send_id, bound = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local key = 'hp:ep:' .. eid .. ':permits'
  local log = logs[eid]
  if not log then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 1000)
    log = {count = redis.call('ZCARD', key), grants = {}}
    logs[eid] = log
  end
  if log.count >= bound then
    -- Full: the oldest send of the window (already in Redis or granted in this call) frees a place.
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local free = oldest[2] and tonumber(oldest[2]) + 1000 or now + 1000
    out[#out + 1] = 0
    out[#out + 1] = math.min(free, now + 1000)
  else
    log.count = log.count + 1
    log.grants[#log.grants + 1] = now
    log.grants[#log.grants + 1] = send_id
    out[#out + 1] = 1
    out[#out + 1] = now
  end
end
for eid, log in pairs(logs) do
  if #log.grants > 0 then
    local key = 'hp:ep:' .. eid .. ':permits'
    redis.call('ZADD', key, unpack(log.grants))
    redis.call('PEXPIRE', key, 2000)
  end
end
return out
