--[[
admit_gauge.lua: may these members be added to a gauge now? Decided atomically on the account's slot.

ActiveCampaign contacts: a gauge's level is the size of its set of present members. A CSV import
is admitted all or nothing ("you cannot add new contacts via CSV import if that would exceed the
limit"): in mode "whole" the script admits the request's new members together when the level,
plus the places other admitted imports still hold, plus all of them stays within `limit`, and
then holds a place for each of them until `hold_until_ms`; otherwise it admits none and holds
nothing. In mode "read" (the other origins, decided one by one in Python) it holds nothing and
only reports.

Held places are members in the sorted set `holds` (score = hold end, epoch ms), not in the
gauge itself: the gauge counts what the processor applied (thresholds, month shadows), and an
import that is admitted and then abandoned must not count for ever. A held member stops holding
a place as soon as it is present in the gauge (the processor applied its contact.added) or its
hold ends; both are removed here. A member of this request that another request holds counts
once, as this request's.

KEYS[1] = gauge set   mtr:{A}:g:<meter>
KEYS[2] = holds       mtr:{A}:h:<meter>   (zset member -> hold end, ms)
ARGV: limit (-1 = none), mode "whole"|"read", now_ms, hold_until_ms, members...
Reply: {gauge size, places held by others, new members, verdict, flags}
  verdict: "a" admitted and held (whole), "r" refused (whole), "-" (read)
  flags: one character per member, in order: "p" present, "n" new, "d" new but repeated
]]
local gauge_key, holds_key = KEYS[1], KEYS[2]
local limit = tonumber(ARGV[1])
local whole = ARGV[2] == 'whole'
local now_ms = tonumber(ARGV[3])
local hold_until = tonumber(ARGV[4])
local first = 5
local CHUNK = 2000 -- unpack() of more than ~8000 values overflows Lua's C stack

local function present_flags(list)
  local flags = {}
  for s = 1, #list, CHUNK do
    local part = redis.call('SMISMEMBER', gauge_key, unpack(list, s, math.min(s + CHUNK - 1, #list)))
    for k = 1, #part do flags[#flags + 1] = part[k] end
  end
  return flags
end

local members = {}
for j = first, #ARGV do members[#members + 1] = ARGV[j] end
local here = present_flags(members)
local flags, new, mine = {}, {}, {}
for j = 1, #members do
  local m = members[j]
  if here[j] == 1 then
    flags[j] = 'p'
  elseif mine[m] then
    flags[j] = 'd'
  else
    flags[j] = 'n'
    mine[m] = true
    new[#new + 1] = m
  end
end

-- Places held by other admitted imports: drop the ended holds and those already applied.
redis.call('ZREMRANGEBYSCORE', holds_key, '-inf', now_ms)
local held = redis.call('ZRANGE', holds_key, 0, -1)
local others = 0
if #held > 0 then
  local applied = {}
  local flags_held = present_flags(held)
  for k = 1, #held do
    if flags_held[k] == 1 then
      applied[#applied + 1] = held[k]
    elseif not mine[held[k]] then
      others = others + 1
    end
  end
  for s = 1, #applied, CHUNK do
    redis.call('ZREM', holds_key, unpack(applied, s, math.min(s + CHUNK - 1, #applied)))
  end
end

local size = redis.call('SCARD', gauge_key)
local verdict = '-'
if whole then
  if limit < 0 or size + others + #new <= limit then
    verdict = 'a'
    if #new > 0 then
      local args = {}
      for _, m in ipairs(new) do
        args[#args + 1] = hold_until
        args[#args + 1] = m
      end
      for s = 1, #args, CHUNK do
        redis.call('ZADD', holds_key, unpack(args, s, math.min(s + CHUNK - 1, #args)))
      end
    end
  else
    verdict = 'r'
  end
end
if redis.call('EXISTS', holds_key) == 1 then
  -- The set ends with its last hold (scores only grow: every hold lasts as long).
  local last = redis.call('ZRANGE', holds_key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', holds_key, math.floor(tonumber(last[2])) + 1)
end
return {size, others, #new, verdict, table.concat(flags)}
