-- KEYS members, nodes, pseq; ARGV channel, name. Asks whichever node has the member to
-- cut it (`C<name>`); 0 if no live node has it.
sweep(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now_ms())
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[1], 'C' .. ARGV[2])
return 1
