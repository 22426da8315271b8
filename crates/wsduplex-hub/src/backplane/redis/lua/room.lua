-- KEYS members, nodes, pseq, id; ARGV channel. The room for `GET /api/rooms/ROOM` on a
-- node that does not follow it: `{last id, members (flat name/value pairs)}` after the
-- sweep, or `false` if the room never had a member nor a message.
if redis.call('EXISTS', KEYS[1], KEYS[3], KEYS[4]) == 0 then return false end
sweep(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now_ms())
return {tonumber(redis.call('GET', KEYS[4]) or '0'), redis.call('HGETALL', KEYS[1])}
