--[[
admit_members.lua: may these members be messaged now? Decided atomically on the account's slot.

Act-On active contacts: members already in the period's distinct set are always allowed; a new
member is allowed while the set holds fewer than `limit` members, and an admitted new member is
added to the set at once (a reservation). Because the check and the SADD are one script, two
concurrent senders can never together push the set past the limit. The processor's later SADD
of the same member (when the e-mail.sent event arrives) is idempotent, so nothing counts twice.
Members suppressed before the period started never count (same rule as apply.lua) and are
allowed without a reservation. A member repeated in the request counts once.

In advisory mode (`hard` = "0") nothing is refused and nothing is reserved: the reply only says
which members would be new and whether they would go over the limit.

KEYS[1] = distinct set   mtr:{A}:s:<meter>:<period>
KEYS[2] = suppressions   mtr:{A}:sup
KEYS[3] = open periods   mtr:{A}:p   (hash meter:period -> period end, as apply.lua writes it)
ARGV: limit (-1 = none), hard "1"|"0", period_start_ms (0 = ignore suppressions),
      expire_at_s (0 = none), slot "meter:period", period_end_ms, members...
Reply: {count after, codes} where codes has one character per member, in order:
  c already counted   s suppressed, not counted   a admitted (reserved when hard)
  o over the limit but advisory                   r refused (new member over the limit)
]]
local set_key, sup_key, open_key = KEYS[1], KEYS[2], KEYS[3]
local limit = tonumber(ARGV[1])
local hard = ARGV[2] == '1'
local period_start = tonumber(ARGV[3])
local expire_at = tonumber(ARGV[4])
local slot, period_end = ARGV[5], ARGV[6]
local first = 7
local n = #ARGV - first + 1
if n <= 0 then
  return {redis.call('SCARD', set_key), ''}
end

local CHUNK = 2000 -- unpack() of more than ~8000 values overflows Lua's C stack
local used = redis.call('SCARD', set_key)
local counted = {}
for s = first, #ARGV, CHUNK do
  local flags = redis.call('SMISMEMBER', set_key, unpack(ARGV, s, math.min(s + CHUNK - 1, #ARGV)))
  for k = 1, #flags do counted[#counted + 1] = flags[k] end
end
local seen = {}
local codes = {}
local admitted = {}
for j = 1, n do
  local m = ARGV[first + j - 1]
  local code
  if counted[j] == 1 or seen[m] then
    code = 'c'
  else
    local suppressed = false
    if period_start > 0 then
      local sup = redis.call('HGET', sup_key, m)
      if sup and tonumber(sup) < period_start then suppressed = true end
    end
    if suppressed then
      code = 's'
    elseif limit < 0 or used + 1 <= limit then
      code = 'a'
      used = used + 1
      seen[m] = true
      if hard then admitted[#admitted + 1] = m end
    elseif hard then
      code = 'r'
    else
      code = 'o'
      used = used + 1
      seen[m] = true
    end
  end
  codes[j] = code
end

if #admitted > 0 then
  for s = 1, #admitted, CHUNK do
    redis.call('SADD', set_key, unpack(admitted, s, math.min(s + CHUNK - 1, #admitted)))
  end
  if expire_at > 0 then redis.call('EXPIREAT', set_key, expire_at) end
  redis.call('HSET', open_key, slot, period_end)
end
return {redis.call('SCARD', set_key), table.concat(codes)}
