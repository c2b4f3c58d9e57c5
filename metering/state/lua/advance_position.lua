--[[ Move a partition position (and its event-time watermark) forward only: a state machine
     that refuses to go backwards, so a slow processor that lost its partition cannot drag the
     resume point back. The time of the move is kept beside them (how fresh the counts are).
     KEYS[1] = position key, KEYS[2] = watermark key, KEYS[3] = applied-time key;
     ARGV[1] = offset, ARGV[2] = watermark ms, ARGV[3] = applied time ms.
     Returns the stored position. ]]
local offset = tonumber(ARGV[1])
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= offset then
  return tonumber(current)
end
redis.call('SET', KEYS[1], offset)
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
return offset
