-- Create or update an endpoint and keep the fan-out sets and the active index consistent.
-- Keys touched: hp:ep:{eid}, hp:ep:{eid}:flow, hp:eps, hp:evt:{type}, hp:evt-all, hp:active,
--   hp:ep:{eid}:due.
-- ARGV[1]: eid, ARGV[2]: now, ARGV[3]: "create" | "update",
-- ARGV[4..]: field, value pairs of the new hash contents (all config fields on create; changed on update).
-- Returns 0 if an update names an endpoint that does not exist (or is deleted), else 1.
local eid, now, mode = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local key = 'hp:ep:' .. eid
local old = redis.call('HMGET', key, 'url', 'deleted', 'enabled', 'event_types', 'rate')
if mode == 'update' and (not old[1] or old[2] == '1') then
  return 0
end

local function subscriptions(enabled, event_types)
  if enabled ~= '1' then return {} end
  if event_types == nil or event_types == '' then return {'hp:evt-all'} end
  local sets = {}
  for _, t in ipairs(cjson.decode(event_types)) do sets[#sets + 1] = 'hp:evt:' .. t end
  return sets
end

for _, set in ipairs(subscriptions(old[3], old[4])) do redis.call('SREM', set, eid) end

local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', key, unpack(fields))
local new = redis.call('HMGET', key, 'enabled', 'event_types', 'rate')
for _, set in ipairs(subscriptions(new[1], new[2])) do redis.call('SADD', set, eid) end

if mode == 'create' then
  redis.call('ZADD', 'hp:eps', now, eid)
  redis.call('HSET', key .. ':flow', 'eff_rate', new[3], 'tat', 0, 'paused_until', 0, 'backoff_level', 0)
elseif old[5] ~= new[3] then
  -- A changed limit takes effect at once and starts the adaptive loop afresh (see _flow.lua).
  redis.call('HSET', key .. ':flow', 'eff_rate', new[3])
  -- (every field of _flow.lua's loop but the pacing clock, the pause, the backoff level, the count of
  -- refusals since the last success, and the last success and send)
  redis.call('HDEL', key .. ':flow', 'w_max', 'est', 's0', 'win_ms', 'win_n', 'win_r', 'win_first', 'win_last',
    'cut_ms', 'cut_from', 'cut_share', 'chain_from', 'chain_share', 'noise_n', 'probe_ms', 'probe_rate', 'recover',
    'next_recover_ms', 'recover_gap', 'held', 'held_ms', 'confirm', 'ramp', 'gain', 'next_probe_ms', 'trim_ms',
    'streak_rate', 'streak_wmax', 'streak_est', 'epoch_ms')
end

if new[1] == '1' then
  if redis.call('ZCARD', key .. ':due') > 0 then
    redis.call('ZADD', 'hp:active', 'LT', now, eid)
    redis.call('PUBLISH', 'hp:wake', '1')
  end
  if old[3] == '0' then
    -- Re-enabled (by an operator, e.g. after a 410): held deliveries go out again at the endpoint's rate.
    redis.call('HSET', key, 'disabled_reason', '')
    redis.call('HSET', key .. ':flow', 'paused_until', 0, 'pause_reason', '', 'backoff_level', 0)
  end
else
  redis.call('ZREM', 'hp:active', eid)
end
return 1
