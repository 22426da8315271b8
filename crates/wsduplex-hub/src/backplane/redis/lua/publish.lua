-- KEYS id, log; ARGV channel, head, tail, maxlen, token. Returns the id.
local id = redis.call('INCR', KEYS[1])
local m = ARGV[2] .. int(id) .. ',' .. ARGV[3]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-' .. int(id), 'm', m, 't', ARGV[5])
redis.call('PUBLISH', ARGV[1], 'M' .. int(id) .. ' ' .. m)
return id
