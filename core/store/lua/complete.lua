-- Record finished attempts and move each delivery on, atomically, in one batch.
-- Keys touched: hp:dlv:{did}, hp:log:<p> (attempt records, via _lib), hp:ep:{eid}:inflight, hp:leases,
--   hp:ep:{eid}:due, hp:ep:{eid}, hp:ep:{eid}:flow, hp:ep:{eid}:pauses, hp:evt:*, hp:active,
--   hp:ep:{eid}:m:{minute}, hp:ep:{eid}:sent:{minute}, counters and hp:backlog (via _lib).
-- ARGV[1]: now_ms, ARGV[2]: JSON array of results, each
--   [did, attempt number, outcome, due_ms, status code ("" if none), error ("" if none),
--    attempt record JSON ("" for a release), pause reason ("" unless overloaded), started_ms (0 if unknown)]
-- outcome: succeeded | retry | failed | overloaded | gone | released
--   retry:      back to the due set at due_ms as retrying
--   overloaded: 429/503; the endpoint's pace reacts (see _flow.lua). pause reason "retry_after":
--               due_ms is the receiver's Retry-After, a hard floor for the whole endpoint; else
--               due_ms is the exponential pause to apply should this turn out to be an outage.
--               The delivery waits in the due set for the endpoint's next slot or pause end.
--   gone:       the endpoint is disabled (410); the delivery is kept, queued for when it is re-enabled
--   released:   never sent (the worker saw the endpoint paused or was stopping): un-claimed, no attempt
-- A result whose attempt number is not the delivery's current one, or whose delivery has been
-- claimed again since (lease expired and reclaimed), only records its attempt: the newer claim owns
-- the delivery's state.
-- Returns {applied, paused}: how many results changed a delivery's state, and a flat list
-- eid, paused_until_ms of the endpoints this batch paused (so the worker stops their booked slots).
local now = tonumber(ARGV[1])
local applied = 0
-- Per endpoint: {gone = bool}; the refused deliveries of this batch: {did, eid}
local touched, overloaded = {}, {}

-- Sends per second for the endpoint's timeline, by the second each attempt started (core/keys.py).
local function count_second(eid, started_ms)
  local second = math.floor(started_ms / 1000)
  local key = 'hp:ep:' .. eid .. ':sent:' .. math.floor(second / 60)
  incr(key, tostring(second), 1)
  B.expire[key] = 1200
end

local function effects(eid)
  local t = touched[eid]
  if not t then t = {}; touched[eid] = t end
  return t
end

for _, r in ipairs(cjson.decode(ARGV[2])) do
  local did, number, outcome = r[1], tonumber(r[2]), r[3]
  local due_ms, code, err, record, reason = tonumber(r[4]), r[5], r[6], r[7], r[8]
  local sent_ms = tonumber(r[9]) or 0
  local started = sent_ms > 0 and sent_ms or now
  local dkey = 'hp:dlv:' .. did
  local d = redis.call('HMGET', dkey, 'eid', 'status', 'attempts', 'trigger')
  local eid, status = d[1], d[2]
  if eid then
    if record ~= '' then
      log_attempt(did, eid, number, now, record)
      if sent_ms > 0 then count_second(eid, sent_ms) end
    end
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
      if d[4] == 'manual' and outcome ~= 'released' then redis.call('HDEL', dkey, 'trigger') end
      -- An answer replaces the last error (an empty one is not stored).
      if code ~= '' then redis.call('HSET', dkey, 'last_code', code) end
      if err ~= '' then redis.call('HSET', dkey, 'last_error', err)
      elseif code ~= '' then redis.call('HDEL', dkey, 'last_error') end
      if outcome == 'succeeded' then
        finish(did, eid, status, 'succeeded', now)
        count_minute(eid, now, 'succeeded')
        flow_success(flow_load(eid), now, started)
      elseif outcome == 'failed' then
        finish(did, eid, status, 'failed', now)
        count_minute(eid, now, 'failed')
      elseif outcome == 'retry' then
        enqueue(did, eid, status, 'retrying', due_ms, now)
        count_minute(eid, now, 'retrying')
      elseif outcome == 'overloaded' then
        local f = flow_load(eid)
        flow_overload(f, now, started, tonumber(code), due_ms, reason == 'retry_after' and due_ms or 0)
        -- Due at once: the endpoint's pace (or pause, set below) decides when it goes again.
        enqueue(did, eid, status, 'retrying', now, now)
        overloaded[#overloaded + 1] = {did, eid}
        count_minute(eid, now, 'overloaded')
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
local paused = flow_save(now)
-- A paused endpoint's refused deliveries wait for the pause's end, not in front of it.
for _, held in ipairs(overloaded) do
  local until_ms = F[held[2]].pause_until  -- as flow_save wrote it: the later of this pause and any running one
  if until_ms then
    redis.call('ZADD', 'hp:ep:' .. held[2] .. ':due', 'XX', until_ms, held[1])
    redis.call('HSET', 'hp:dlv:' .. held[1], 'due_ms', until_ms)
  end
end

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
  else
    rescore_active(eid, now)
  end
end
return {applied, paused}
