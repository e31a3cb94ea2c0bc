-- The pump's claim: for endpoints whose time has come, take due deliveries under a lease, each
-- with a send slot spaced by the endpoint's pacing interval (GCRA with no burst allowance).
-- Keys touched: hp:active, hp:ep:{eid}, hp:ep:{eid}:flow, hp:ep:{eid}:due, hp:ep:{eid}:inflight,
--   hp:leases, hp:dlv:{did}, hp:msg:{mid}, hp:msg:{mid}:payload, counters and hp:backlog (via _lib).
-- ARGV: now_ms, worker_id, lease_ms, horizon_ms, max_endpoints, max_deliveries, solo_grace_ms
-- Returns {endpoints, deliveries, next_ms, skipped}:
--   endpoints: flat list, 9 per endpoint that got deliveries:
--     eid, url, headers JSON, secrets JSON, trace flag, updated_ms, backoff_level, pacing interval (ms),
--     solo_until_ms ("0" unless the claim is solo, below)
--   deliveries: flat list, 9 per delivery:
--     did, eid, attempt number, slot_ms, budget_ms ("" when the budget starts at creation), trigger,
--     event_type, payload, trace (the message id and the creation time are the caller's to read from did)
--   next_ms: the earliest score left in hp:active ("" if none); skipped: endpoints visited but held back.
-- Invariant kept: a claimed delivery leaves the due set and enters the in-flight set and hp:leases,
-- with the same expiry (slot + lease), in this one step.
-- Solo claims: a claim is solo when no other worker's claims on the endpoint can still be sent (their
-- leases have all run out). Its worker may then pace the sends itself, with no send permit from
-- Redis (scheduler/sender.py), until solo_until = its last slot + solo_grace_ms (at most the
-- lease, so no other worker's solo claim can begin before it ends); permit.lua hands
-- no permit before the endpoint's latest solo_until, so a worker that claims later waits for it.
-- The flow hash keeps cw (the last worker to claim), cw_until (its claims' latest lease expiry)
-- and ow_until (the latest lease expiry of every other worker's claims).
local now, worker, lease = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local horizon, max_eps, budget = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local solo_grace = tonumber(ARGV[7])

local eps_out, dl_out, skipped = {}, {}, 0
local eids = redis.call('ZRANGEBYSCORE', 'hp:active', '-inf', now, 'LIMIT', 0, max_eps)

local function cancel_deleted(eid, key)
  local dids = redis.call('ZRANGE', key .. ':due', 0, 99)
  for _, did in ipairs(dids) do
    local status = redis.call('HGET', 'hp:dlv:' .. did, 'status')
    finish(did, eid, status, 'cancelled', now)
    redis.call('HSET', 'hp:dlv:' .. did, 'last_error', 'endpoint deleted')
  end
  if #dids > 0 then redis.call('ZREM', key .. ':due', unpack(dids)) end
  if redis.call('ZCARD', key .. ':due') > 0 then return end
  redis.call('ZREM', 'hp:active', eid)
  if redis.call('ZCARD', key .. ':inflight') == 0 then
    redis.call('DEL', key, key .. ':flow')
  end
end

for _, eid in ipairs(eids) do
  if budget <= 0 then break end
  local key = 'hp:ep:' .. eid
  local ep = redis.call('HMGET', key, 'url', 'enabled', 'deleted', 'max_in_flight', 'rate',
    'headers', 'secrets', 'trace', 'updated_ms')
  if not ep[1] then
    redis.call('ZREM', 'hp:active', eid)
  elseif ep[3] == '1' then
    cancel_deleted(eid, key)
  elseif ep[2] ~= '1' then
    redis.call('ZREM', 'hp:active', eid)  -- disabled: enabling puts it back
  else
    local flow = redis.call('HMGET', key .. ':flow', 'tat', 'eff_rate', 'paused_until', 'backoff_level',
      'cw', 'cw_until', 'ow_until', 'solo_until')
    local paused_until = tonumber(flow[3]) or 0
    local in_flight = redis.call('ZCARD', key .. ':inflight')
    local max_in_flight = tonumber(ep[4])
    if paused_until > now then
      redis.call('ZADD', 'hp:active', paused_until, eid)
      skipped = skipped + 1
    elseif in_flight >= max_in_flight then
      -- A completion rescores it sooner; the lease length is only the safety net.
      redis.call('ZADD', 'hp:active', now + lease, eid)
      skipped = skipped + 1
    else
      local rate = tonumber(flow[2]) or tonumber(ep[5])
      local interval = 60000 / rate
      local tat = math.max(tonumber(flow[1]) or 0, now)
      local slots = math.floor((now + horizon - tat) / interval) + 1
      local n = math.min(max_in_flight - in_flight, slots, budget)
      local dids = {}
      if n > 0 then
        dids = redis.call('ZRANGEBYSCORE', key .. ':due', '-inf', now, 'LIMIT', 0, n)
      end
      if #dids > 0 then
        -- Applied at once (not batched): the due head read below must not see these.
        redis.call('ZREM', key .. ':due', unpack(dids))
      end
      local in_flight_args = {}
      for i, did in ipairs(dids) do
        local slot = math.floor(tat + (i - 1) * interval)
        local expiry = slot + lease
        in_flight_args[#in_flight_args + 1] = expiry
        in_flight_args[#in_flight_args + 1] = did
        zadd('hp:leases', expiry, did)
        local dkey = 'hp:dlv:' .. did
        local d = redis.call('HMGET', dkey, 'status', 'attempts', 'budget_ms', 'trigger')
        local number = (tonumber(d[2]) or 0) + 1
        move_status(did, eid, d[1], 'delivering')
        -- The trigger stays until complete.lua records an attempt: a claim released unsent (paused
        -- endpoint, missed slot) must still go out as the operator's manual retry.
        redis.call('HSET', dkey, 'status', 'delivering', 'attempts', number, 'updated_ms', now,
          'worker', worker, 'lease_ms', expiry)
        local mkey = 'hp:msg:' .. message_of(did)
        local msg = redis.call('HMGET', mkey, 'payload', 'event_type', 'trace')
        -- (field `payload`: a message an older version wrote kept its payload in its hash)
        msg[1] = redis.call('GET', mkey .. ':payload') or msg[1]
        local base = #dl_out
        dl_out[base + 1] = did
        dl_out[base + 2] = eid
        dl_out[base + 3] = tostring(number)
        dl_out[base + 4] = tostring(slot)
        dl_out[base + 5] = d[3] or ''
        dl_out[base + 6] = d[4] or 'scheduled'
        dl_out[base + 7] = msg[2] or ''
        dl_out[base + 8] = msg[1] or 'null'
        dl_out[base + 9] = msg[3] or ''
      end
      if #in_flight_args > 0 then redis.call('ZADD', key .. ':inflight', unpack(in_flight_args)) end
      local new_tat = tat + #dids * interval
      if #dids > 0 then
        local last_expiry = math.floor(tat + (#dids - 1) * interval) + lease
        local cw_until, ow_until = tonumber(flow[6]) or 0, tonumber(flow[7]) or 0
        if flow[5] ~= worker then
          ow_until = math.max(ow_until, cw_until)
          cw_until = 0
        end
        cw_until = math.max(cw_until, last_expiry)
        local solo_until = 0
        if ow_until <= now then solo_until = last_expiry - lease + math.min(solo_grace, lease) end
        redis.call('HSET', key .. ':flow', 'tat', tostring(new_tat), 'cw', worker, 'cw_until', cw_until,
          'ow_until', ow_until, 'solo_until', math.max(solo_until, tonumber(flow[8]) or 0))
        budget = budget - #dids
        local base = #eps_out
        eps_out[base + 1] = eid
        eps_out[base + 2] = ep[1]
        eps_out[base + 3] = ep[6] or '{}'
        eps_out[base + 4] = ep[7] or '[]'
        eps_out[base + 5] = ep[8] or '1'
        eps_out[base + 6] = ep[9] or '0'
        eps_out[base + 7] = flow[4] or '0'
        eps_out[base + 8] = tostring(interval)
        eps_out[base + 9] = tostring(solo_until)
      else
        skipped = skipped + 1
      end
      local head = redis.call('ZRANGE', key .. ':due', 0, 0, 'WITHSCORES')
      if #head == 0 then
        redis.call('ZREM', 'hp:active', eid)
      else
        local next_ms = math.max(tonumber(head[2]), math.floor(new_tat - horizon))
        if in_flight + #dids >= max_in_flight then next_ms = math.max(next_ms, now + lease) end
        redis.call('ZADD', 'hp:active', next_ms, eid)
      end
    end
  end
end

flush()
local first = redis.call('ZRANGE', 'hp:active', 0, 0, 'WITHSCORES')
return {eps_out, dl_out, first[2] or '', skipped}
