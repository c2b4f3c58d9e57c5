--[==[
close_period.lua: close one account's due periods and decide its tier placements, atomically.

The closer (streams/period_close.py) reads the account, decides in Python (metering/rollups.py)
and sends the decision here with the totals it expects. This step re-reads every total inside
the account's slot and writes only what matches, so a decision is taken once and never lost:

  1. per period, in order (gauge months of one meter oldest first):
       - already frozen (rollup field exists): it must equal the expected total; the index
         field is removed (a period re-opened by a stray write is closed again, nothing
         re-published);
       - else read the total: `c` GET counter, `d` SCARD distinct set, `m` level of the gauge's
         snapshot set after applying the month's shadow (`+member` present, `-member` absent
         at the month's end); it must equal the expected total, then: rollup field, statement
         into the outbox, snapshot set moved on and the shadow deleted (`m`), index field gone.
     A difference stops the step (status 1) before the differing write; what was written
     before is complete on its own.
  2. checks: rollups the placements used that were frozen earlier must still hold those totals.
  3. ladders: the stored placement must still be as of `expected_as_of` (another closer did
     not move it meanwhile); then each placement is stored and, when it changed, its tier
     event goes into the outbox. All ladders are checked before any is written.
  4. the account's closed-through time (mtr:{A}:ct) moves forward to `closed_through_ms`:
     every period ending by then is closed (frozen above, or without usage), and apply.lua
     refuses contributions to it, whatever partition and watermark they come with.
  5. rollups, placements, snapshot sets and the closed-through time expire at `expire_at`
     (refreshed by every close).

KEYS[1] = mtr:{A}:p  (the open-period index; declares the slot)
ARGV[1] = [prefix, expire_at_s, now_ms,
           [[meter, period, code (c|d|m), expected, statement id, statement body, index field]...],
           [[meter, period, total]...],
           [[ladder, expected_as_of ('' = none), [[as_of, record, event id ('' = none), body]...]]...],
           closed_through_ms (0 = leave as is)]
Returns {status (0 done, 1 mismatch), outbox length, periods frozen, statements, tier events
         [, detail]}.
]==]
local step = cjson.decode(ARGV[1])
local prefix, expire_at = step[1], step[2]
local at_ms = string.format('%d', step[3])
local outbox = prefix .. 'o'
local index = KEYS[1]
local frozen, statements, tiers = 0, 0, 0
local to_expire = {}

local function stop(detail)
  return {1, redis.call('XLEN', outbox), frozen, statements, tiers, detail}
end

local CHUNK = 2000
local function each_chunk(command, key, list)
  for s = 1, #list, CHUNK do
    redis.call(command, key, unpack(list, s, math.min(s + CHUNK - 1, #list)))
  end
end

-- Level of a gauge at the end of `period`: the snapshot (end of the previous month) with the
-- month's shadow applied; returns the level and the members to add and remove.
local function gauge_month(snap, shadow)
  local level = redis.call('SCARD', snap)
  local adds, rems = {}, {}
  for _, op in ipairs(redis.call('SMEMBERS', shadow)) do
    local sign, member = string.sub(op, 1, 1), string.sub(op, 2)
    local present = redis.call('SISMEMBER', snap, member) == 1
    if sign == '+' then
      if not present then
        level = level + 1
        adds[#adds + 1] = member
      end
    elseif present then
      level = level - 1
      rems[#rems + 1] = member
    end
  end
  return level, adds, rems
end

for _, f in ipairs(step[4]) do
  local meter, period, code, expected = f[1], f[2], f[3], f[4]
  local sid, body, field = f[5], f[6], f[7]
  local rollup = prefix .. 'r:' .. meter
  local shadow = prefix .. 'g:' .. meter .. '~' .. period
  local existing = redis.call('HGET', rollup, period)
  if existing then
    if tonumber(existing) ~= expected then
      return stop('rollup ' .. meter .. ':' .. period .. ' holds ' .. existing)
    end
    if code == 'm' then redis.call('DEL', shadow) end
  elseif sid == '' then
    return stop('rollup ' .. meter .. ':' .. period .. ' vanished')
  else
    local total, adds, rems
    local snap = prefix .. 'gs:' .. meter
    if code == 'c' then
      total = tonumber(redis.call('GET', prefix .. 'c:' .. meter .. ':' .. period) or '0')
    elseif code == 'd' then
      total = redis.call('SCARD', prefix .. 's:' .. meter .. ':' .. period)
    else
      total, adds, rems = gauge_month(snap, shadow)
    end
    if total ~= expected then
      return stop(meter .. ':' .. period .. ' totals ' .. total .. ', not ' .. expected)
    end
    if code == 'm' then
      if #adds > 0 then each_chunk('SADD', snap, adds) end
      if #rems > 0 then each_chunk('SREM', snap, rems) end
      redis.call('DEL', shadow)
      to_expire[#to_expire + 1] = snap
    end
    redis.call('HSET', rollup, period, string.format('%d', total))
    redis.call('XADD', outbox, '*', 'id', sid, 'kind', 'statement', 'body', body, 'at_ms', at_ms)
    frozen = frozen + 1
    statements = statements + 1
  end
  if field ~= '' then
    redis.call('HDEL', index, field)
    if code == 'm' then redis.call('HDEL', prefix .. 'u', field) end
  end
  to_expire[#to_expire + 1] = rollup
end

for _, c in ipairs(step[5]) do
  local value = redis.call('HGET', prefix .. 'r:' .. c[1], c[2])
  if (not value) or tonumber(value) ~= c[3] then
    return stop('rollup ' .. c[1] .. ':' .. c[2] .. ' changed')
  end
end

local placements = prefix .. 't'
for _, lad in ipairs(step[6]) do
  local as_of = redis.call('HGET', placements, 'as_of:' .. lad[1]) or ''
  if as_of ~= lad[2] then
    return stop('placement ' .. lad[1] .. ' is as of ' .. as_of .. ', not ' .. lad[2])
  end
end
for _, lad in ipairs(step[6]) do
  for _, w in ipairs(lad[3]) do
    redis.call('HSET', placements, lad[1], w[2], 'as_of:' .. lad[1], w[1])
    if w[3] ~= '' then
      redis.call('XADD', outbox, '*', 'id', w[3], 'kind', 'tier', 'body', w[4], 'at_ms', at_ms)
      tiers = tiers + 1
    end
  end
  to_expire[#to_expire + 1] = placements
end

-- 4. closed-through time: every period ending by then is closed for this account (the
--    apply step refuses contributions to those not in the open-period index); forward only.
local through = step[7] or 0
if through > 0 then
  local ct = prefix .. 'ct'
  if through > tonumber(redis.call('GET', ct) or '0') then
    redis.call('SET', ct, string.format('%d', through))
  end
  to_expire[#to_expire + 1] = ct
end

if expire_at > 0 then
  for _, key in ipairs(to_expire) do
    redis.call('EXPIREAT', key, expire_at)
  end
end
return {0, redis.call('XLEN', outbox), frozen, statements, tiers}
