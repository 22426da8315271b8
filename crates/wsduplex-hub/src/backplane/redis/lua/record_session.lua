-- KEYS session; ARGV room, name, node, cursor, last message id, ttl, stale cursors...
local cur = redis.call('HGET', KEYS[1], 'node')
if cur and cur ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'room', ARGV[1], 'name', ARGV[2], 'node', ARGV[3],
  'c:' .. ARGV[4], ARGV[5])
for i = 7, #ARGV do redis.call('HDEL', KEYS[1], 'c:' .. ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
