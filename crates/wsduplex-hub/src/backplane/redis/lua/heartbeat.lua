-- KEYS members, nodes, pseq; ARGV channel, node, ttl. Returns 1 if this node had been
-- given up for dead (its members may have been swept: resynchronize).
local now = now_ms()
local old = redis.call('ZSCORE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[2], int(now + tonumber(ARGV[3])), ARGV[2])
sweep(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now)
if old and tonumber(old) > now then return 0 end
return 1
