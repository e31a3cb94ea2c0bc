-- "Oldest pending" for the queue overview, with no per-delivery index: the earliest due time among
-- the queued deliveries that are due now, across every endpoint with a backlog. A due set is scored
-- by due time, so its head is its longest-waiting delivery; for one never delayed that time is its
-- creation. Read only; costs one ZRANGE per endpoint with a backlog (not per delivery).
-- Keys touched: hp:backlog, hp:ep:{eid}:due.
-- ARGV: now_ms. Returns that due time in ms, or nil when nothing queued is due.
local now = tonumber(ARGV[1])
local oldest = nil
for _, eid in ipairs(redis.call('ZRANGEBYSCORE', 'hp:backlog', '(0', '+inf')) do
  local head = redis.call('ZRANGE', 'hp:ep:' .. eid .. ':due', 0, 0, 'WITHSCORES')
  local due = tonumber(head[2])
  if due and due <= now and (oldest == nil or due < oldest) then oldest = due end
end
if oldest == nil then return false end
return math.floor(oldest)
