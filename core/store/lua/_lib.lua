-- Shared prelude, prepended to every script by core/store/connection.py:load_script.
--
-- Status bookkeeping lives here so every script moves a delivery between statuses the same way:
-- the counters (hp:count, hp:ep:{eid}:count) and hp:backlog always agree with the status field of
-- hp:dlv:{did}. There is no per-status index of deliveries: the due sets hold the queued ones, the
-- in-flight sets the delivering ones, and the history store answers the delivery log.
--
-- Scripts handle deliveries in batches, so set moves and counter increments are collected in
-- `B` and written once per key at the end (`flush()`): one variadic ZADD/ZREM per set and one
-- HINCRBY per counter instead of one command per delivery. Every script must call flush() last.
--
-- The history outbox: every change of a delivery but its claim appends a compact record to an
-- outbox stream in the same script (so the history is exactly as atomic as the state): `move_status`
-- marks the delivery and flush() appends its state as it stands at the end of the script, with a
-- version the delivery's hash counts up (`v`) so the history store never moves a delivery
-- backwards; `log_message`, `log_attempt` and `log_action` append messages (with their payload),
-- attempt records and operator actions (an attempt rides in the same entry as the state it led to,
-- at flush(): one XADD instead of two). The history writer (core/history/writer.py) drains the
-- streams into PostgreSQL or SQLite.
--
-- The outbox is LOG_PARTITIONS streams, hp:log:<p>, and every record of an endpoint's deliveries
-- goes to its endpoint's partition (log_key; core/keys.py computes the same): a Redis Cluster
-- keyspace can then give an endpoint's live keys and its outbox stream one hash tag
-- (../shared/notes/scale-out.md), and records of one delivery stay in order in one stream.

local B = {incr = {}, zrem = {}, zadd = {}, expire = {}, log = {}, attempts = {}}
local LOG_PARTITIONS = 16
local ID_ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'  -- core/ids.py: ids end in random base32
local LOG_FIELDS = {'eid', 'status', 'attempts', 'updated_ms', 'due_ms', 'last_code', 'last_error'}
local QUEUED = {pending = true, retrying = true}

-- A delivery's hash keeps only what its id and its message do not say (core/keys.py): `dlv_<core>_<n>`
-- is the n-th delivery of message `msg_<core>`, and both ids carry their creation time.
local function message_of(did)
  return 'msg_' .. string.match(did, '^dlv_(.+)_%d+$')
end

-- The outbox stream of an endpoint (or, for a message with no delivery, of the message): by the
-- id's last character, which is random (core/keys.py: outbox_partition).
local function log_key(id)
  local at = string.find(ID_ALPHABET, string.sub(id, -1), 1, true) or 1
  return 'hp:log:' .. ((at - 1) % LOG_PARTITIONS)
end

local function incr(key, field, n)
  local h = B.incr[key]
  if not h then h = {}; B.incr[key] = h end
  h[field] = (h[field] or 0) + n
end

local function zrem(key, member)
  local t = B.zrem[key]
  if not t then t = {}; B.zrem[key] = t end
  t[#t + 1] = member
end

local function zadd(key, score, member)
  local t = B.zadd[key]
  if not t then t = {}; B.zadd[key] = t end
  t[#t + 1] = score
  t[#t + 1] = member
end

local function chunked(command, key, args)
  -- Lua's C stack limits unpack(); 4000 arguments per call is well inside it (and even, for ZADD).
  for i = 1, #args, 4000 do
    redis.call(command, key, unpack(args, i, math.min(i + 3999, #args)))
  end
end

-- Record the delivery's state in the outbox when the script ends (flush()).
local function log_delivery(did)
  B.log[did] = true
end

-- An attempt record rides in its delivery's state record when the script also logs that state (one
-- stream entry instead of two: fields an, at, ar); otherwise it is an entry of its own (k=a).
local function log_attempt(did, eid, number, now, record)
  local list = B.attempts[did]
  if not list then list = {}; B.attempts[did] = list end
  list[#list + 1] = {eid, number, now, record}
end

-- A message's record also stands for its deliveries' first state (pending, due at creation, version
-- 0), so ingest appends one entry per message and outbox partition, not one per delivery. Each
-- partition's copy lists only the deliveries whose endpoints are in it: `j`, their numbers in fan-out
-- order (delivery dlv_{core}_{j}), and `e`, their endpoints. Only the first copy (the first
-- endpoint's partition, or the message's own when it has no delivery) carries the payload, the
-- trace and the fan-out count `f`, and stands for the message itself: with 100 endpoints over 16
-- partitions, full copies cost Redis and the writer about 16 times the bytes (BENCHMARKS.md).
local function log_message(mid, event_type, payload, created_ms, trace, eids)
  local copies, order = {}, {}
  for j, eid in ipairs(eids) do
    local key = log_key(eid)
    local copy = copies[key]
    if not copy then copy = {j = {}, e = {}}; copies[key] = copy; order[#order + 1] = key end
    copy.j[#copy.j + 1] = j
    copy.e[#copy.e + 1] = eid
  end
  if #order == 0 then order[1] = log_key(mid); copies[order[1]] = {j = {}, e = {}} end
  for n, key in ipairs(order) do
    local copy = copies[key]
    local j, e = table.concat(copy.j, ','), table.concat(copy.e, ',')
    if n == 1 then
      redis.call('XADD', key, '*', 'k', 'm', 'i', mid, 'y', event_type, 'c', created_ms, 'j', j, 'e', e,
        'p', payload, 't', trace, 'f', #eids)
    else
      redis.call('XADD', key, '*', 'k', 'm', 'i', mid, 'y', event_type, 'c', created_ms, 'j', j, 'e', e)
    end
  end
end

local function log_action(did, eid, action)
  redis.call('XADD', log_key(eid), '*', 'k', 'x', 'i', did, 'a', action)
end

local function flush_log()
  for did, list in pairs(B.attempts) do
    -- All but the last go alone (the last one recorded is the one a state record may carry).
    local last = B.log[did] and #list - 1 or #list
    for i = 1, last do
      local a = list[i]
      redis.call('XADD', log_key(a[1]), '*', 'k', 'a', 'i', did, 'e', a[1], 'n', a[2], 't', a[3], 'r', a[4])
    end
  end
  local event_types = {}  -- mid -> event_type: a message's deliveries share it
  for did in pairs(B.log) do
    local dkey = 'hp:dlv:' .. did
    local d = redis.call('HMGET', dkey, unpack(LOG_FIELDS))
    local list = B.attempts[did]
    local a = list and list[#list]
    if d[1] then
      local v = redis.call('HINCRBY', dkey, 'v', 1)
      local mid = message_of(did)
      local y = event_types[mid]
      if not y then
        y = redis.call('HGET', 'hp:msg:' .. mid, 'event_type') or ''
        event_types[mid] = y
      end
      local record = {'XADD', log_key(d[1]), '*', 'k', 'd', 'i', did, 'm', mid, 'e', d[1], 'y', y, 's', d[2],
        'n', d[3] or 0, 'u', d[4] or 0, 'w', d[5] or '', 'c', d[6] or '', 'x', d[7] or '', 'v', v}
      if a and a[1] == d[1] then
        for _, field in ipairs({'an', a[2], 'at', a[3], 'ar', a[4]}) do record[#record + 1] = field end
        a = nil
      end
      redis.call(unpack(record))
    end
    if a then
      redis.call('XADD', log_key(a[1]), '*', 'k', 'a', 'i', did, 'e', a[1], 'n', a[2], 't', a[3], 'r', a[4])
    end
  end
end

local function flush()
  for key, members in pairs(B.zrem) do chunked('ZREM', key, members) end
  for key, args in pairs(B.zadd) do chunked('ZADD', key, args) end
  for key, fields in pairs(B.incr) do
    for field, n in pairs(fields) do
      if n ~= 0 then
        if key == 'hp:backlog' then redis.call('ZINCRBY', key, n, field) else redis.call('HINCRBY', key, field, n) end
      end
    end
  end
  for key, seconds in pairs(B.expire) do redis.call('EXPIRE', key, seconds) end
  flush_log()
  B = {incr = {}, zrem = {}, zadd = {}, expire = {}, log = {}, attempts = {}}
end

local function move_status(did, eid, from, to)
  -- The history does not record a claim (status delivering, lasting one request): the delivery log
  -- reads who is being sent from Redis (core/history/log.py). One outbox record fewer per attempt
  -- (BENCHMARKS.md); the attempt's outcome records the state it led to, with the attempt count.
  if to ~= 'delivering' then log_delivery(did) end
  if from == to then return end
  incr('hp:ep:' .. eid .. ':count', from, -1)
  incr('hp:ep:' .. eid .. ':count', to, 1)
  incr('hp:count', from, -1)
  incr('hp:count', to, 1)
  if QUEUED[from] and not QUEUED[to] then
    incr('hp:backlog', eid, -1)
  elseif QUEUED[to] and not QUEUED[from] then
    incr('hp:backlog', eid, 1)
  end
end

-- Count an outcome in the endpoint's per-minute bucket (stats for the last minute and hour).
local function count_minute(eid, now, field)
  local key = 'hp:ep:' .. eid .. ':m:' .. math.floor(now / 60000)
  incr(key, field, 1)
  B.expire[key] = 7200
end

-- Put a queued (pending/retrying) delivery into its endpoint's due set.
local function enqueue(did, eid, from, to, due_ms, now)
  move_status(did, eid, from, to)
  redis.call('HSET', 'hp:dlv:' .. did, 'status', to, 'due_ms', due_ms, 'updated_ms', now)
  zadd('hp:ep:' .. eid .. ':due', due_ms, did)
end

-- End a delivery: terminal status, out of every queue. Its keys are removed once the history
-- writer has committed this final state (forget.lua).
local function finish(did, eid, from, to, now)
  move_status(did, eid, from, to)
  redis.call('HSET', 'hp:dlv:' .. did, 'status', to, 'updated_ms', now)
  redis.call('HDEL', 'hp:dlv:' .. did, 'due_ms')  -- due nowhere
end

-- Take a delivery out of the in-flight bookkeeping.
local function release_lease(did, eid)
  zrem('hp:ep:' .. eid .. ':inflight', did)
  zrem('hp:leases', did)
end

-- After something changed for an endpoint, make sure the pump looks at it when it can next send.
-- Call after flush(): it reads the due set.
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
