-- KEYS members, nodes, pseq; ARGV channel, node. This node's members leave.
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  if owner(all[i + 1]) == ARGV[2] then
    redis.call('HDEL', KEYS[1], all[i])
    redis.call('PUBLISH', ARGV[1], 'L' .. int(redis.call('INCR', KEYS[3])) .. ' ' .. all[i])
    n = n + 1
  end
end
redis.call('ZREM', KEYS[2], ARGV[2])
return n
