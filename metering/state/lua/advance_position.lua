--[[ Move a partition position forward only (a state machine that refuses to go backwards:
     a slow processor that lost its partition must not drag the resume point back).
     KEYS[1] = position key, ARGV[1] = offset. Returns the stored position. ]]
local current = redis.call('GET', KEYS[1])
local offset = tonumber(ARGV[1])
if current and tonumber(current) >= offset then
  return tonumber(current)
end
redis.call('SET', KEYS[1], offset)
return offset
