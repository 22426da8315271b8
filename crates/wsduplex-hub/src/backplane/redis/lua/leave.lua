-- KEYS members, pseq; ARGV channel, node, name. Only this node's member leaves.
local v = redis.call('HGET', KEYS[1], ARGV[3])
if v and owner(v) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[3])
  redis.call('PUBLISH', ARGV[1], 'L' .. int(redis.call('INCR', KEYS[2])) .. ' ' .. ARGV[3])
  return 1
end
return 0
