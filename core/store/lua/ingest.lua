-- Ingest messages atomically: idempotency check, fan-out, message + deliveries + due sets + counters.
-- Keys touched: hp:idem:*, hp:ep:{eid}, hp:evt:{type}, hp:evt-all, hp:msg:{mid}, hp:msg:{mid}:payload, hp:dlv:{did},
--   hp:ep:{eid}:due, hp:active, hp:ep:{eid}:count, hp:count, hp:backlog, hp:log:<p> (the outbox); publishes hp:wake.
-- ARGV[1]: JSON {now, idem_key ("" for none), idem_hash, idem_ttl_ms,
--                messages: [{id, event_type, endpoint_ids (array or null), trace}]}
-- ARGV[2..n+1]: each message's payload as compact JSON, in order.
-- Returns JSON: {"replay": bool, "conflict": bool, "unknown_endpoint": id|null, "result": {...}}
-- Nothing is written unless every message is valid (all checks run before the first write).
local req = cjson.decode(ARGV[1])
local now = tonumber(req.now)

if req.idem_key ~= "" then
  local stored = redis.call('GET', req.idem_key)
  if stored then
    local rec = cjson.decode(stored)
    if rec.hash ~= req.idem_hash then
      return cjson.encode({conflict = true})
    end
    return cjson.encode({replay = true, result = rec.result})
  end
end

-- Phase 1: resolve every message's targets; refuse the whole request on an unknown endpoint.
local targets = {}
for i, m in ipairs(req.messages) do
  local list = {}
  if type(m.endpoint_ids) == 'table' then
    for _, eid in ipairs(m.endpoint_ids) do
      local deleted = redis.call('HMGET', 'hp:ep:' .. eid, 'url', 'deleted')
      if not deleted[1] or deleted[2] == '1' then
        return cjson.encode({unknown_endpoint = eid, index = i - 1})
      end
      list[#list + 1] = eid
    end
  else
    list = redis.call('SUNION', 'hp:evt:' .. m.event_type, 'hp:evt-all')
    table.sort(list)
  end
  targets[i] = list
end

-- Phase 2: write.
local out = {}
local enabled = {}  -- eid -> true when enabled (read once per endpoint per request)
local any = false
for i, m in ipairs(req.messages) do
  local mid = m.id
  local core = string.sub(mid, 5)
  local deliveries = {}
  local dids = {}
  for j, eid in ipairs(targets[i]) do
    local did = 'dlv_' .. core .. '_' .. j
    dids[#dids + 1] = did
    -- Only what did, mid and the message do not say (core/keys.py): no attempts yet, the retry
    -- budget starts at creation, the trigger is the pump's.
    redis.call('HSET', 'hp:dlv:' .. did, 'eid', eid, 'status', 'pending', 'updated_ms', now, 'due_ms', now)
    zadd('hp:ep:' .. eid .. ':due', now, did)
    -- No state record of its own: the message's record below stands for it (log_message).
    if enabled[eid] == nil then
      enabled[eid] = redis.call('HGET', 'hp:ep:' .. eid, 'enabled') == '1'
    end
    incr('hp:ep:' .. eid .. ':count', 'pending', 1)
    incr('hp:count', 'pending', 1)
    incr('hp:backlog', eid, 1)
    deliveries[#deliveries + 1] = {id = did, endpoint_id = eid, status = 'pending'}
  end
  -- The payload is a string of its own: a hash holding it would outgrow Redis's compact listpack
  -- encoding (values up to 64 bytes) and cost ~400 B more per message (core/keys.py).
  local mkey = 'hp:msg:' .. mid
  redis.call('HSET', mkey, 'event_type', m.event_type, 'fanout', #dids, 'remaining', #dids)
  if m.trace and m.trace ~= '' then redis.call('HSET', mkey, 'trace', m.trace) end
  redis.call('SET', mkey .. ':payload', ARGV[i + 1])
  log_message(mid, m.event_type, ARGV[i + 1], now, m.trace or '', targets[i])
  if #dids == 0 then
    redis.call('PEXPIRE', mkey, req.retention_ms)
    redis.call('PEXPIRE', mkey .. ':payload', req.retention_ms)
  end
  -- cjson encodes an empty table as {}; the caller normalises "deliveries" to a list.
  out[#out + 1] = {id = mid, event_type = m.event_type, created_ms = now, deliveries = deliveries}
end
flush()
for eid, on in pairs(enabled) do
  if on then
    redis.call('ZADD', 'hp:active', 'LT', now, eid)
    any = true
  end
end

local result = {messages = out}
if req.idem_key ~= "" then
  redis.call('SET', req.idem_key, cjson.encode({hash = req.idem_hash, result = result}), 'PX', req.idem_ttl_ms)
end
if any then
  redis.call('PUBLISH', 'hp:wake', '1')
end
return cjson.encode({result = result})
