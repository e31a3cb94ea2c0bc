-- Send permits for fast endpoints: a worker asks once for several sends of an endpoint and gets a
-- moment for each, spaced `interval` ms after the endpoint's last permit (its own or another
-- worker's), while no 1-s window holds more than `bound` permits (ceil(rate/60) + 1). Times are
-- Redis's clock, so every worker's permits fall in one order; the moment is the send's recorded
-- start (scheduler/sender.py sends at it, or asks again if it woke too late).
-- Asking for one send at a time capped an endpoint at one send per script round trip (about 490/s
-- for an endpoint paced at 1,000/s, BENCHMARKS.md); asking for a run of sends lifts that.
-- No permit goes before the endpoint's solo_until (claim.lua): until then a worker with a solo
-- claim may be pacing its own sends without permits.
-- Keys touched: hp:ep:{eid}:permits (ZSET send id -> moment ms; expires 2 s after its last moment),
--   hp:ep:{eid}:flow (solo_until, read)
-- ARGV: groups of eid, bound, interval_ms, n, then n send ids (did.attempt) in send order.
--   A send id asked for again gives up its earlier permit: the worker did not use it.
-- Returns {now_ms, then per group: k, k moments (ms, in order, for the first k sends), retry_ms}:
--   retry_ms is 0 when all n were granted, else the moment the window has room again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now}
local i = 1
while i <= #ARGV do
  local eid, bound, interval, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local key = 'hp:ep:' .. eid .. ':permits'
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 1000)
  if n > 0 then redis.call('ZREM', key, unpack(ARGV, i + 4, i + 3 + n)) end
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  -- The pace is kept in fractions of a ms; the moments handed out are whole ms, rounded up.
  local next_at = math.max(now, tonumber(redis.call('HGET', 'hp:ep:' .. eid .. ':flow', 'solo_until')) or 0)
  if last[2] then next_at = math.max(next_at, tonumber(last[2]) + interval) end
  local moments, retry = {}, 0
  for j = 1, n do
    local moment = math.ceil(next_at)
    -- Moments only grow, so the window ending at `moment` holds every permit after moment - 1000.
    if redis.call('ZCOUNT', key, '(' .. (moment - 1000), '+inf') >= bound then
      local oldest = redis.call('ZRANGEBYSCORE', key, '(' .. (moment - 1000), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      retry = tonumber(oldest[2]) + 1000
      break
    end
    redis.call('ZADD', key, moment, ARGV[i + 3 + j])
    moments[#moments + 1] = moment
    next_at = next_at + interval
  end
  if #moments > 0 then
    redis.call('PEXPIRE', key, moments[#moments] - now + 2000)
  end
  out[#out + 1] = #moments
  for _, m in ipairs(moments) do out[#out + 1] = m end
  out[#out + 1] = retry
  i = i + 4 + n
end
return out
