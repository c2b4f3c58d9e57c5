--[[
holds.lua: admission holds of one account (authorize, then capture; metering/core/holds.py).

Keys (all of one account, hash tag {A}):
  KEYS[1] = mtr:{A}:hx  zset  hold id -> expiry (epoch ms)
  KEYS[2] = mtr:{A}:hd  hash  hold id -> JSON {"<meter>:<period>": units, ...} still held
  KEYS[3] = mtr:{A}:ht  hash  "<meter>:<period>" -> units held by live holds (the sum)
  KEYS[4..] (admit) = the amount key of each meter (counter mtr:{A}:c:<m>:<p>, balance
                      mtr:{A}:b:<m>)
Every call but "read" first drops the holds whose expiry has passed (no background job: every
admission prunes before it reads the held totals), then:

ARGV[1] = "admit": now_ms, expires_ms, hold id, n items, then per meter: slot, kind (c|b),
          limit (-1 = none), per (units per item).
          Admits the longest prefix of the n items that fits every meter (c: used + held +
          units <= limit; b: balance - held >= units) and holds admitted*per units per meter
          under the id until expires_ms. Reply: {admitted, used1, held1, used2, held2, ...}
          (held: by other holds, before this one).
ARGV[1] = "shrink": now_ms, hold id, then slot, units pairs: the hold keeps at most `units`
          on each slot (an admission that another meter refused in part). Reply: 1 | 0 (gone).
ARGV[1] = "release": now_ms, hold id. Frees what the hold still holds.
          Reply: {slot, units, ...} freed (empty: unknown, captured or expired).
ARGV[1] = "read": now_ms, slots... Reply: units live holds hold per slot (writes nothing).

The processor's capture (lua/apply.lua) shrinks a hold by the units an event carrying its id
used, in the step that counts the event.
]]
local hx, hd, ht = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local now_ms = tonumber(ARGV[2])

local function free(id)
  local rec = redis.call('HGET', hd, id)
  local freed = {}
  if rec then
    for slot, units in pairs(cjson.decode(rec)) do
      if redis.call('HINCRBY', ht, slot, -units) <= 0 then redis.call('HDEL', ht, slot) end
      freed[#freed + 1] = slot
      freed[#freed + 1] = units
    end
    redis.call('HDEL', hd, id)
  end
  redis.call('ZREM', hx, id)
  return freed
end

local function prune()
  while true do
    local ended = redis.call('ZRANGEBYSCORE', hx, '-inf', now_ms, 'LIMIT', 0, 500)
    for _, id in ipairs(ended) do free(id) end
    if #ended < 500 then return end
  end
end

if op == 'read' then
  -- Read-only (a usage answer, also while Redis refuses writes): the totals minus what
  -- expired holds not pruned yet still count there.
  local slots = {}
  for j = 3, #ARGV do slots[#slots + 1] = ARGV[j] end
  if #slots == 0 then return {} end
  local found = redis.call('HMGET', ht, unpack(slots))
  local index = {}
  for j = 1, #found do
    found[j] = tonumber(found[j] or '0')
    index[slots[j]] = j
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', hx, '-inf', now_ms)) do
    local rec = redis.call('HGET', hd, id)
    if rec then
      for slot, units in pairs(cjson.decode(rec)) do
        local j = index[slot]
        if j then found[j] = found[j] - units end
      end
    end
  end
  return found
end

prune()

if op == 'admit' then
  local expires_ms, id, n = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
  local admitted = n
  local reply = {0}
  local slots, pers = {}, {}
  for i = 1, #KEYS - 3 do
    local base = 5 + (i - 1) * 4
    local slot, kind, limit, per = ARGV[base + 1], ARGV[base + 2], tonumber(ARGV[base + 3]),
      tonumber(ARGV[base + 4])
    local used = tonumber(redis.call('GET', KEYS[3 + i]) or '0')
    local held = tonumber(redis.call('HGET', ht, slot) or '0')
    reply[#reply + 1] = used
    reply[#reply + 1] = held
    slots[i], pers[i] = slot, per
    if per > 0 and (kind == 'b' or limit >= 0) then
      local room
      if kind == 'b' then room = used - held else room = limit - used - held end
      local fit = math.floor(room / per)
      if fit < 0 then fit = 0 end
      if fit < admitted then admitted = fit end
    end
  end
  reply[1] = admitted
  local rec, any = {}, false
  for i = 1, #slots do
    local units = admitted * pers[i]
    if units > 0 then
      rec[slots[i]] = units
      any = true
      redis.call('HINCRBY', ht, slots[i], units)
    end
  end
  if any then
    redis.call('HSET', hd, id, cjson.encode(rec))
    redis.call('ZADD', hx, expires_ms, id)
    -- The three keys outlive their last hold: refreshed to the hold's TTL + 61 s whenever
    -- less than TTL + 1 s is left (about once a minute under steady admissions: one PTTL per
    -- call instead of three PEXPIREs). A relative TTL: the caller's clock decides expiry, the
    -- server's clock only cleans up.
    local ttl = expires_ms - now_ms
    if redis.call('PTTL', hx) < ttl + 1000 then
      for k = 1, 3 do redis.call('PEXPIRE', KEYS[k], ttl + 61000) end
    end
  end
  return reply
elseif op == 'shrink' then
  local id = ARGV[3]
  local rec = redis.call('HGET', hd, id)
  if not rec then return 0 end
  rec = cjson.decode(rec)
  local left = false
  for j = 4, #ARGV, 2 do
    local slot, keep = ARGV[j], tonumber(ARGV[j + 1])
    local units = rec[slot]
    if units and units > keep then
      if redis.call('HINCRBY', ht, slot, keep - units) <= 0 then redis.call('HDEL', ht, slot) end
      if keep > 0 then rec[slot] = keep else rec[slot] = nil end
    end
  end
  for _ in pairs(rec) do left = true end
  if left then
    redis.call('HSET', hd, id, cjson.encode(rec))
    return 1
  end
  free(id)
  return 0
elseif op == 'release' then
  return free(ARGV[3])
end
return redis.error_reply('holds.lua: unknown operation ' .. tostring(op))
