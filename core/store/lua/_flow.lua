-- The endpoint's pace as a control loop (prepended to complete.lua after _lib.lua).
--
-- State lives in hp:ep:{eid}:flow so every worker paces from the same numbers:
--   eff_rate      the rate the pump paces at now (per minute), never above the endpoint's `rate`
--                 (its ceiling) nor below its `min_rate`
--   w_max         the rate that last failed: the effective rate at the last congestion event
--   epoch_ms      start of the current growth curve (the last cut), moved on by idle gaps
--   cut_ms        when the rate was last cut: overloads of requests sent before cut_ms + HOLD_MS
--                 belong to that same congestion event and do not cut again
--   last_ok_ms    the last success; streak_fails counts overload answers since then, and
--   streak_rate / streak_wmax remember the pace when that streak began (undone on an outage)
--   backoff_level consecutive whole-endpoint backoff pauses (an outage), as before
--
-- The law (429/503 without Retry-After, or with it: its pause is applied on top):
--   * congestion (the receiver still accepts some): once per event, w_max = the rate that failed,
--     eff_rate = BETA * eff_rate, and the pacing clock holds one new pacing interval. (CUBIC's
--     "fast convergence", which sets w_max below the rate that failed when it failed below the last
--     peak, exists to share a link between flows; here it only parked the pace under a receiver's
--     capacity: 0.86 against 0.90 of a 2/s receiver's capacity in bench/adaptive.py.)
--   * growth, on successes: eff_rate follows the CUBIC curve from BETA * w_max back up to w_max,
--     slowly near it, then probes beyond it, faster the longer it holds. K, the time to get back to
--     w_max, spans K_REQUESTS requests at w_max, within [K_MIN_S, K_MAX_S]: about one refusal per
--     K_REQUESTS requests in the steady state (measured: bench/adaptive.py). The probe beyond w_max
--     runs on a fixed time scale (PROBE_S), so a receiver whose capacity came back is found again in
--     seconds even when the rate, and so K, is low.
--   * outage (nothing accepted for OUTAGE_MIN_MS and OUTAGE_MIN_FAILS answers in a row): the
--     whole endpoint pauses on the exponential schedule the sender computed, and the cuts made
--     during the streak are undone, so the pace after the outage is the pace before it.

local BETA = 0.8
local K_REQUESTS = 40
local K_MIN_S = 5
local K_MAX_S = 15
local PROBE_S = 4
local HOLD_MS = 200        -- = the pump's booking horizon: slots booked before a cut go out after it
local OUTAGE_MIN_MS = 2000
local OUTAGE_MIN_FAILS = 3
local IDLE_INTERVALS = 4   -- a gap of this many intervals without a success freezes growth

local F = {}  -- eid -> the endpoint's flow state as numbers, loaded once per script call

local function flow_load(eid)
  local f = F[eid]
  if f then return f end
  local e = redis.call('HMGET', 'hp:ep:' .. eid, 'rate', 'min_rate')
  local v = redis.call('HMGET', 'hp:ep:' .. eid .. ':flow', 'eff_rate', 'w_max', 'epoch_ms', 'cut_ms',
    'last_ok_ms', 'streak_fails', 'streak_rate', 'streak_wmax', 'backoff_level', 'tat', 'paused_at', 'pause_reason')
  local ceiling = tonumber(e[1]) or 60
  f = {
    ceiling = ceiling, floor = math.min(ceiling, tonumber(e[2]) or 1),
    eff = math.min(ceiling, tonumber(v[1]) or ceiling), w_max = tonumber(v[2]),
    epoch = tonumber(v[3]) or 0, cut = tonumber(v[4]) or 0, last_ok = tonumber(v[5]) or 0,
    streak = tonumber(v[6]) or 0, streak_rate = tonumber(v[7]), streak_wmax = tonumber(v[8]),
    level = tonumber(v[9]) or 0, tat = tonumber(v[10]) or 0,
    -- when the current backoff pause began: refusals of requests sent before it belong to it
    backoff_at = v[12] == 'backoff' and tonumber(v[11]) or 0,
    changed = false, pause_until = nil, pause_reason = nil, pause_code = nil, outage = false, events = {},
  }
  F[eid] = f
  return f
end

local function clamp(f, rate)
  return math.max(f.floor, math.min(f.ceiling, rate))
end

-- The CUBIC curve: the rate `t` ms after the last cut, for a loop that last failed at w_max.
local function cubic(w_max, t)
  local k = math.min(K_MAX_S * 1000, math.max(K_MIN_S * 1000, K_REQUESTS * 60000 / w_max))
  local x = (t - k) / k
  if x > 0 then x = (t - k) / (PROBE_S * 1000) end
  return w_max * (1 + (1 - BETA) * x * x * x)
end

-- A success at `now`.
local function flow_success(f, now)
  local interval = 60000 / f.eff
  if f.last_ok > 0 and f.epoch > 0 and now - f.last_ok > math.max(1000, IDLE_INTERVALS * interval) then
    -- Idle (nothing to send) is not evidence that a higher rate would be taken: freeze the curve.
    f.epoch = f.epoch + (now - f.last_ok)
  end
  f.last_ok, f.streak, f.level = now, 0, 0
  if f.w_max then
    f.eff = clamp(f, math.max(f.eff, cubic(f.w_max, now - f.epoch)))
  else
    f.eff = f.ceiling
  end
  f.changed = true
end

-- A 429/503 to a request started at `started`. `backoff_until` is the exponential pause the sender
-- drew for an outage; `retry_after_until` the receiver's own (0 if it sent none).
local function flow_overload(f, now, started, code, backoff_until, retry_after_until)
  if f.streak == 0 then f.streak_rate, f.streak_wmax = f.eff, f.w_max end
  f.streak = f.streak + 1
  f.changed = true
  f.pause_code = code
  if retry_after_until > 0 then
    f.pause_until = math.max(f.pause_until or 0, retry_after_until)
    f.pause_reason = 'retry_after'
  end
  if f.streak >= OUTAGE_MIN_FAILS and now - f.last_ok >= OUTAGE_MIN_MS then
    -- Nothing is getting through: an outage, not a pace to learn. Pause the endpoint and restore
    -- the pace it had before this streak of refusals.
    f.eff, f.w_max = f.streak_rate or f.eff, f.streak_wmax
    -- One pause (one step of the schedule) per outage event: a request already on its way when the
    -- current pause began does not pause the endpoint again.
    if started <= f.backoff_at then return end
    f.outage = true
    if retry_after_until == 0 then
      f.pause_until = math.max(f.pause_until or 0, backoff_until)
      f.pause_reason = 'backoff'
      f.backoff_at = now
    end
    return
  end
  if started < f.cut + HOLD_MS then return end  -- the same congestion event as the last cut
  f.w_max = f.eff
  f.eff = clamp(f, f.eff * BETA)
  f.cut, f.epoch = now, now
  f.tat = math.max(f.tat, now + 60000 / f.eff)  -- hold one (new) pacing interval
  f.events[#f.events + 1] = {start_ms = now, end_ms = math.floor(f.tat), reason = 'congestion', status_code = code}
end

-- Write every endpoint's changed flow state; returns {eid, paused_until, ...} for the pauses set.
local function flow_save(now)
  local paused = {}
  for eid, f in pairs(F) do
    if f.changed then
      local fkey = 'hp:ep:' .. eid .. ':flow'
      local fields = {'eff_rate', tostring(f.eff), 'epoch_ms', f.epoch, 'cut_ms', f.cut, 'last_ok_ms', f.last_ok,
        'streak_fails', f.streak, 'tat', tostring(f.tat), 'backoff_level', f.level}
      if f.w_max then
        fields[#fields + 1] = 'w_max'; fields[#fields + 1] = tostring(f.w_max)
      else
        redis.call('HDEL', fkey, 'w_max')  -- an outage undid what the streak's first refusals taught
      end
      if f.streak_rate then
        fields[#fields + 1] = 'streak_rate'; fields[#fields + 1] = tostring(f.streak_rate)
      end
      fields[#fields + 1] = 'streak_wmax'; fields[#fields + 1] = f.streak_wmax and tostring(f.streak_wmax) or ''
      if f.pause_until then
        local current = tonumber(redis.call('HGET', fkey, 'paused_until')) or 0
        local until_ms = math.max(current, f.pause_until)
        f.pause_until = until_ms  -- complete.lua holds the refused deliveries until then
        -- Nothing goes out before the pause ends: the pacing clock restarts there too.
        fields[#fields + 1] = 'paused_until'; fields[#fields + 1] = until_ms
        fields[#fields + 1] = 'pause_reason'; fields[#fields + 1] = f.pause_reason
        fields[#fields + 1] = 'paused_at'; fields[#fields + 1] = now
        fields[#fields + 1] = 'tat'; fields[#fields + 1] = tostring(math.max(f.tat, until_ms))
        if f.outage and f.pause_reason == 'backoff' then
          fields[#fields + 1] = 'backoff_level'; fields[#fields + 1] = f.level + 1
        end
        f.events[#f.events + 1] = {start_ms = now, end_ms = until_ms, reason = f.pause_reason,
          status_code = f.pause_code}
        paused[#paused + 1] = eid
        paused[#paused + 1] = until_ms
      end
      redis.call('HSET', fkey, unpack(fields))
      -- The pause log the endpoint timeline shows: newest first, the last 100.
      for _, event in ipairs(f.events) do
        redis.call('LPUSH', 'hp:ep:' .. eid .. ':pauses', cjson.encode(event))
      end
      if #f.events > 0 then redis.call('LTRIM', 'hp:ep:' .. eid .. ':pauses', 0, 99) end
    end
  end
  return paused
end
