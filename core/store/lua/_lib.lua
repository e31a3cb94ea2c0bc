-- Shared prelude, prepended to every script by core/store/connection.py:load_script.
-- Status bookkeeping lives here so every script moves a delivery between statuses the same way:
-- the status indexes (hp:idx:dlv:st:*, hp:idx:dlv:ep:{eid}:st:*) and the counters (hp:count,
-- hp:ep:{eid}:count) always agree with the status field of hp:dlv:{did}.

local QUEUED = {pending = true, retrying = true}

-- Index sets are ordered by member (delivery ids sort by creation time): every score is 0.
-- hp:backlog ranks endpoints by how many deliveries they have queued (pending + retrying).
local function move_status(did, eid, from, to, created_ms)
  if from == to then return end
  redis.call('ZREM', 'hp:idx:dlv:st:' .. from, did)
  redis.call('ZREM', 'hp:idx:dlv:ep:' .. eid .. ':st:' .. from, did)
  redis.call('ZADD', 'hp:idx:dlv:st:' .. to, 0, did)
  redis.call('ZADD', 'hp:idx:dlv:ep:' .. eid .. ':st:' .. to, 0, did)
  redis.call('HINCRBY', 'hp:ep:' .. eid .. ':count', from, -1)
  redis.call('HINCRBY', 'hp:ep:' .. eid .. ':count', to, 1)
  redis.call('HINCRBY', 'hp:count', from, -1)
  redis.call('HINCRBY', 'hp:count', to, 1)
  if QUEUED[from] and not QUEUED[to] then
    redis.call('ZINCRBY', 'hp:backlog', -1, eid)
  elseif QUEUED[to] and not QUEUED[from] then
    redis.call('ZINCRBY', 'hp:backlog', 1, eid)
  end
end

-- Count an outcome in the endpoint's per-minute bucket (stats for the last minute and hour).
local function count_minute(eid, now, field)
  local key = 'hp:ep:' .. eid .. ':m:' .. math.floor(now / 60000)
  redis.call('HINCRBY', key, field, 1)
  redis.call('EXPIRE', key, 7200)
end

-- Put a queued (pending/retrying) delivery into its endpoint's due set.
local function enqueue(did, eid, from, to, created_ms, due_ms, now)
  move_status(did, eid, from, to, created_ms)
  redis.call('HSET', 'hp:dlv:' .. did, 'status', to, 'due_ms', due_ms, 'updated_ms', now)
  redis.call('ZADD', 'hp:ep:' .. eid .. ':due', due_ms, did)
end

-- End a delivery: terminal status, out of every queue, remembered for the retention sweep.
local function finish(did, eid, from, to, created_ms, now)
  move_status(did, eid, from, to, created_ms)
  redis.call('HSET', 'hp:dlv:' .. did, 'status', to, 'due_ms', '', 'updated_ms', now, 'ended_ms', now)
  redis.call('ZADD', 'hp:terminal', now, did)
end

-- Take a delivery out of the in-flight bookkeeping.
local function release_lease(did, eid)
  redis.call('ZREM', 'hp:ep:' .. eid .. ':inflight', did)
  redis.call('ZREM', 'hp:leases', did)
end

-- After something changed for an endpoint, make sure the pump looks at it when it can next send.
local function rescore_active(eid, now)
  local ep = redis.call('HMGET', 'hp:ep:' .. eid, 'enabled', 'deleted')
  if ep[2] == '1' then
    redis.call('ZADD', 'hp:active', 'LT', now, eid)
    return
  end
  if ep[1] ~= '1' or redis.call('ZCARD', 'hp:ep:' .. eid .. ':due') == 0 then return end
  local paused = tonumber(redis.call('HGET', 'hp:ep:' .. eid .. ':flow', 'paused_until')) or 0
  redis.call('ZADD', 'hp:active', 'LT', math.max(now, paused), eid)
end
