-- KEYS members, nodes, pseq, id, log; ARGV channel, node, ttl, last id, last applied id,
-- history, presence seq, then this node's member names.
--
-- Makes Redis agree with this node (its members exactly those given; ids and presence
-- numbers never below what it has seen, even if Redis lost them in a restart) and returns
-- the room: `{id counter, presence seq, members (flat name/value pairs), messages after
-- the last applied id (newest first, at most history), missed (0/1), names another node
-- holds}`.
local now = now_ms()
sweep(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now)
local function raise(key, floor)
  local cur = tonumber(redis.call('GET', key) or '0')
  if cur < floor then
    redis.call('SET', key, int(floor))
    return floor
  end
  return cur
end
local top = raise(KEYS[4], tonumber(ARGV[4]))
raise(KEYS[3], tonumber(ARGV[7]))
local node = ARGV[2]
local mine = {}
for i = 8, #ARGV do mine[ARGV[i]] = true end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if owner(all[i + 1]) == node then
    if mine[all[i]] then
      mine[all[i]] = nil
    else
      redis.call('HDEL', KEYS[1], all[i])
      redis.call('PUBLISH', ARGV[1], 'L' .. int(redis.call('INCR', KEYS[3])) .. ' ' .. all[i])
    end
  end
end
local conflicts = {}
for name in pairs(mine) do
  if redis.call('HEXISTS', KEYS[1], name) == 1 then
    table.insert(conflicts, name)
  else
    local seq = int(redis.call('INCR', KEYS[3]))
    redis.call('HSET', KEYS[1], name, node .. ' ' .. seq)
    redis.call('PUBLISH', ARGV[1], 'J' .. seq .. ' ' .. node .. ' 0 ' .. name)
  end
end
if #ARGV >= 8 then
  redis.call('ZADD', KEYS[2], int(now + tonumber(ARGV[3])), node)
end
local last = tonumber(ARGV[5])
local count = tonumber(ARGV[6])
local entries = {}
local missed = 0
if count > 0 then
  local low = '-'
  if last > 0 then low = '(0-' .. int(last) end
  entries = redis.call('XREVRANGE', KEYS[5], '+', low, 'COUNT', count)
  if last > 0 and #entries == count then
    local older = redis.call('XREVRANGE', KEYS[5], '(' .. entries[#entries][1], low, 'COUNT', 1)
    if #older > 0 then missed = 1 end
  end
end
if last > 0 and redis.call('EXISTS', KEYS[5]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[5])
  for i = 1, #info, 2 do
    if info[i] == 'max-deleted-entry-id' then
      local deleted = tonumber(string.match(info[i + 1], '^0%-(%d+)$') or '0')
      if deleted > last then missed = 1 end
    end
  end
end
return {top, tonumber(redis.call('GET', KEYS[3]) or '0'), redis.call('HGETALL', KEYS[1]),
  entries, missed, conflicts}
