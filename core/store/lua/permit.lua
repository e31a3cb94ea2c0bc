-- A send permit for a fast endpoint: a sliding log of its sends in the last second, shared by every
-- worker, so no 1-s window ever holds more than `bound` sends (ceil(rate/60) + 1) however the
-- workers' event loops stall. Times are Redis's clock, so the log is in send order.
-- Keys touched: hp:ep:{eid}:permits (ZSET send id -> ms; expires 2 s after the last send)
-- ARGV: eid, send id (did.attempt), bound
-- Returns {1, now_ms} when granted (now_ms is the send's moment), else {0, ms when one may be}.
local eid, send_id, bound = ARGV[1], ARGV[2], tonumber(ARGV[3])
local key = 'hp:ep:' .. eid .. ':permits'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 1000)
if redis.call('ZCARD', key) >= bound then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + 1000}
end
redis.call('ZADD', key, now, send_id)
redis.call('PEXPIRE', key, 2000)
return {1, now}
