-- Compare-and-act on a lease key held by a token (the pump's run lease).
-- KEYS[1]: the lease key, KEYS[2]: its handover flag. ARGV[1]: token, ARGV[2]: "refresh" | "release",
-- ARGV[3]: ttl_ms (refresh).
-- Returns 0 if this token does not hold the lease; else 1, or 2 on a refresh when the next run has
-- asked for a handover (one round trip answers both questions the pump asks every half second).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'release' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
return 1
