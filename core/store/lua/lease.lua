-- Compare-and-act on a lease key held by a token (the pump's run lease).
-- KEYS[1]: the lease key. ARGV[1]: token, ARGV[2]: "refresh" | "release", ARGV[3]: ttl_ms (refresh).
-- Returns 1 if this token held the lease (and it was refreshed or released), else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'release' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
