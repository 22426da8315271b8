-- Helpers every script starts with: scripts.rs runs each file of this directory with this
-- one in front, so they share its locals (now_ms, int, owner, sweep).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(n) return string.format('%d', n) end
local function owner(v) return string.match(v, '^(%S+)') end
-- The members of nodes whose heartbeat expired leave, each with a `left` for every node.
local function sweep(members, nodes, pseq, channel, now)
  local dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', int(now))
  if #dead == 0 then return end
  local gone = {}
  for _, n in ipairs(dead) do gone[n] = true end
  local all = redis.call('HGETALL', members)
  for i = 1, #all, 2 do
    if gone[owner(all[i + 1])] then
      redis.call('HDEL', members, all[i])
      redis.call('PUBLISH', channel, 'L' .. int(redis.call('INCR', pseq)) .. ' ' .. all[i])
    end
  end
  for _, n in ipairs(dead) do redis.call('ZREM', nodes, n) end
end
