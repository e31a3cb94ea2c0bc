-- The pacing strategy hookpump had before the adaptive loop, kept for bench/adaptive.py's side-by-side
-- run: every 429/503 pauses the whole endpoint (Retry-After, else the exponential backoff the sender
-- drew) and halves the effective rate once per batch; each success adds a tenth of the limit back.
-- Same functions as core/store/lua/_flow.lua, which it replaces in the baseline worker.

local F = {}

local function flow_load(eid)
  local f = F[eid]
  if f then return f end
  local ceiling = tonumber(redis.call('HGET', 'hp:ep:' .. eid, 'rate')) or 60
  local v = redis.call('HMGET', 'hp:ep:' .. eid .. ':flow', 'eff_rate', 'backoff_level')
  f = {ceiling = ceiling, eff = tonumber(v[1]) or ceiling, level = tonumber(v[2]) or 0, successes = 0,
       changed = false, pause_until = nil, pause_reason = nil}
  F[eid] = f
  return f
end

local function flow_success(f, _now)
  f.successes = f.successes + 1
  f.changed = true
end

local function flow_overload(f, _now, _started, _code, backoff_until, retry_after_until)
  f.changed = true
  local until_ms = retry_after_until > 0 and retry_after_until or backoff_until
  if not f.pause_until or until_ms > f.pause_until then
    f.pause_until = until_ms
    f.pause_reason = retry_after_until > 0 and 'retry_after' or 'backoff'
  end
end

local function flow_save(now)
  local paused = {}
  for eid, f in pairs(F) do
    local fkey = 'hp:ep:' .. eid .. ':flow'
    if f.pause_until then
      local until_ms = math.max(tonumber(redis.call('HGET', fkey, 'paused_until')) or 0, f.pause_until)
      redis.call('HSET', fkey, 'paused_until', until_ms, 'pause_reason', f.pause_reason, 'paused_at', now,
        'backoff_level', f.level + 1, 'eff_rate', math.max(1, math.floor(f.eff / 2)), 'tat', until_ms)
      paused[#paused + 1] = eid
      paused[#paused + 1] = until_ms
    elseif f.successes > 0 then
      if f.eff < f.ceiling then
        redis.call('HSET', fkey, 'eff_rate', math.min(f.ceiling, f.eff + f.successes * math.max(1, math.ceil(f.ceiling / 10))))
      end
      redis.call('HSET', fkey, 'backoff_level', 0)
    end
  end
  return paused
end
