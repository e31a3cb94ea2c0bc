-- Record finished attempts and move each delivery on, atomically, in one batch.
-- Keys touched: hp:dlv:{did}, hp:log (attempt records, via _lib), hp:ep:{eid}:inflight, hp:leases, hp:ep:{eid}:due, hp:ep:{eid}, hp:ep:{eid}:flow, hp:evt:*,
--   hp:active, hp:ep:{eid}:m:{minute}, status indexes and counters (via _lib).
-- ARGV[1]: now_ms, ARGV[2]: retention_ms, ARGV[3]: JSON array of results, each
--   [did, attempt number, outcome, due_ms, status code ("" if none), error ("" if none),
--    attempt record JSON ("" for a release), pause reason ("" unless overloaded)]
-- outcome: succeeded | retry | failed | overloaded | gone | released
--   retry:      back to the due set at due_ms as retrying
--   overloaded: the whole endpoint pauses until due_ms and its effective rate halves (once per
--               batch, however many of its requests were refused together); the delivery waits
--   gone:       the endpoint is disabled (410); the delivery is kept, queued for when it is re-enabled
--   released:   never sent (the worker saw the endpoint paused or was stopping): un-claimed, no attempt
-- A result whose attempt number is not the delivery's current one, or whose delivery has been
-- claimed again since (lease expired and reclaimed), only records its attempt: the newer claim owns
-- the delivery's state.
-- Returns the number of results applied to state.
local now, retention = tonumber(ARGV[1]), tonumber(ARGV[2])
local applied = 0
-- Per endpoint: {succeeded = n, pause_until = ms, pause_reason = s, gone = bool}
local touched = {}

local function effects(eid)
  local t = touched[eid]
  if not t then t = {succeeded = 0}; touched[eid] = t end
  return t
end

for _, r in ipairs(cjson.decode(ARGV[3])) do
  local did, number, outcome = r[1], tonumber(r[2]), r[3]
  local due_ms, code, err, record, reason = tonumber(r[4]), r[5], r[6], r[7], r[8]
  local dkey = 'hp:dlv:' .. did
  local d = redis.call('HMGET', dkey, 'eid', 'status', 'attempts', 'trigger')
  local eid, status = d[1], d[2]
  if eid then
    if record ~= '' then log_attempt(did, eid, number, now, record) end
    local current = tonumber(d[3]) == number and (status == 'delivering' or status == 'pending' or status == 'retrying')
    if current then
      applied = applied + 1
      local t = effects(eid)
      release_lease(did, eid)
      if status ~= 'delivering' then
        -- Reaped back into the due set before this result came in: take it out again.
        redis.call('ZREM', 'hp:ep:' .. eid .. ':due', did)
      end
      -- A manual retry's attempt has been made: later attempts are the pump's own.
      if d[4] == 'manual' and outcome ~= 'released' then redis.call('HSET', dkey, 'trigger', 'scheduled') end
      if code ~= '' then redis.call('HSET', dkey, 'last_code', code, 'last_error', err)
      elseif err ~= '' then redis.call('HSET', dkey, 'last_error', err) end
      if outcome == 'succeeded' then
        finish(did, eid, status, 'succeeded', now)
        count_minute(eid, now, 'succeeded')
        t.succeeded = t.succeeded + 1
      elseif outcome == 'failed' then
        finish(did, eid, status, 'failed', now)
        count_minute(eid, now, 'failed')
      elseif outcome == 'retry' then
        enqueue(did, eid, status, 'retrying', due_ms, now)
        count_minute(eid, now, 'retrying')
      elseif outcome == 'overloaded' then
        enqueue(did, eid, status, 'retrying', due_ms, now)
        count_minute(eid, now, 'overloaded')
        if not t.pause_until or due_ms > t.pause_until then
          t.pause_until = due_ms
          t.pause_reason = reason
        end
      elseif outcome == 'gone' then
        enqueue(did, eid, status, 'retrying', now, now)
        count_minute(eid, now, 'failed')
        t.gone = true
      elseif outcome == 'released' then
        local back = 'pending'
        if number > 1 then back = 'retrying' end
        enqueue(did, eid, status, back, due_ms, now)
        redis.call('HSET', dkey, 'attempts', number - 1)
      end
    end
  end
end

flush()

for eid, t in pairs(touched) do
  local ekey, fkey = 'hp:ep:' .. eid, 'hp:ep:' .. eid .. ':flow'
  if t.gone then
    local ep = redis.call('HMGET', ekey, 'enabled', 'event_types')
    if ep[1] == '1' then
      if not ep[2] or ep[2] == '' then
        redis.call('SREM', 'hp:evt-all', eid)
      else
        for _, name in ipairs(cjson.decode(ep[2])) do redis.call('SREM', 'hp:evt:' .. name, eid) end
      end
      redis.call('HSET', ekey, 'enabled', '0', 'disabled_reason', 'gone', 'updated_ms', now)
      redis.call('HSET', fkey, 'pause_reason', 'gone', 'paused_at', now)
    end
    redis.call('ZREM', 'hp:active', eid)
  elseif t.pause_until then
    local f = redis.call('HMGET', fkey, 'eff_rate', 'paused_until', 'backoff_level')
    local rate = tonumber(redis.call('HGET', ekey, 'rate')) or 60
    local until_ms = math.max(tonumber(f[2]) or 0, t.pause_until)
    -- Nothing goes out before the pause ends: the pacing clock restarts there too.
    redis.call('HSET', fkey, 'paused_until', until_ms, 'pause_reason', t.pause_reason, 'paused_at', now,
      'backoff_level', (tonumber(f[3]) or 0) + 1, 'eff_rate', math.max(1, math.floor((tonumber(f[1]) or rate) / 2)),
      'tat', until_ms)
    redis.call('ZADD', 'hp:active', until_ms, eid)
  else
    if t.succeeded > 0 then
      -- Slow start: after a pause the effective rate climbs back by a tenth of the limit per success.
      local f = redis.call('HMGET', fkey, 'eff_rate', 'backoff_level')
      local rate = tonumber(redis.call('HGET', ekey, 'rate')) or 60
      local eff = tonumber(f[1]) or rate
      if eff < rate then
        redis.call('HSET', fkey, 'eff_rate', math.min(rate, eff + t.succeeded * math.max(1, math.ceil(rate / 10))))
      end
      if f[2] and f[2] ~= '0' then redis.call('HSET', fkey, 'backoff_level', 0) end
    end
    rescore_active(eid, now)
  end
end
return applied
