--[[ Delete published outbox entries and, when none is left, the stream itself (an empty stream
     would keep showing up in sweeps). Atomic, so an entry added meanwhile is never dropped.
     KEYS[1] = outbox key, ARGV = entry ids. Returns the entries left. ]]
if #ARGV > 0 then
  redis.call('XDEL', KEYS[1], unpack(ARGV))
end
local left = redis.call('XLEN', KEYS[1])
if left == 0 then
  redis.call('DEL', KEYS[1])
end
return left
