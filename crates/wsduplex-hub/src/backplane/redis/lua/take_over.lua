-- KEYS session, members, nodes, pseq; ARGV channel, node, token, ttl, session id, the
-- node that had it. Moves the session's member to this node without a `left`/`joined`
-- (unless the old node died and its members were swept: then it joins again). Returns 0
-- if the session is gone, moved meanwhile, or its name was taken.
local info = redis.call('HMGET', KEYS[1], 'node', 'name')
local old, name = info[1], info[2]
if not old or not name or old ~= ARGV[6] then return 0 end
local now = now_ms()
sweep(KEYS[2], KEYS[3], KEYS[4], ARGV[1], now)
local v = redis.call('HGET', KEYS[2], name)
if v and owner(v) ~= old then return 0 end
redis.call('HSET', KEYS[1], 'node', ARGV[2])
if v then
  redis.call('HSET', KEYS[2], name, ARGV[2] .. ' ' .. string.match(v, ' (%d+)$'))
else
  local seq = int(redis.call('INCR', KEYS[4]))
  redis.call('HSET', KEYS[2], name, ARGV[2] .. ' ' .. seq)
  redis.call('PUBLISH', ARGV[1], 'J' .. seq .. ' ' .. ARGV[2] .. ' 0 ' .. name)
end
redis.call('ZADD', KEYS[3], int(now + tonumber(ARGV[4])), ARGV[2])
redis.call('PUBLISH', ARGV[1], 'T' .. ARGV[3] .. ' ' .. ARGV[5] .. ' ' .. name)
return 1
