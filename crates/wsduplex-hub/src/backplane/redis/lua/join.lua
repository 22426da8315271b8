-- KEYS members, nodes, pseq; ARGV channel, node, ttl, token, wanted name. Returns the
-- name given (`name`, else `name-2`, `name-3`... as in a hub of one).
local now = now_ms()
sweep(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now)
local name = ARGV[5]
local n = 2
while redis.call('HEXISTS', KEYS[1], name) == 1 do
  name = ARGV[5] .. '-' .. n
  n = n + 1
end
local seq = int(redis.call('INCR', KEYS[3]))
redis.call('HSET', KEYS[1], name, ARGV[2] .. ' ' .. seq)
redis.call('ZADD', KEYS[2], int(now + tonumber(ARGV[3])), ARGV[2])
redis.call('PUBLISH', ARGV[1], 'J' .. seq .. ' ' .. ARGV[2] .. ' ' .. ARGV[4] .. ' ' .. name)
return name
