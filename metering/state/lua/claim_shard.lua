--[[ Take or keep a publisher shard: extend the expiry when we hold it, take it when nobody
     does. KEYS[1] = shard claim key, ARGV[1] = owner, ARGV[2] = expiry (ms). Returns 1 when
     we hold it afterwards, 0 when another publisher does. ]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
