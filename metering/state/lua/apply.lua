--[[
apply.lua: apply one account's batch delta atomically (one slot: every key carries {account}).

Order inside the step (all or nothing, Redis runs a script atomically):
  1. account fence  : if this partition's offsets up to last_offset were applied -> status 1
                      (no-op); if the fence lies inside [first, last] -> status 2 + fence
                      (the caller re-sends only the events above it).
  2. dedup          : if any event id is remembered -> status 3 + those ids, nothing written
                      (the caller drops them and re-sends the rest). Ids are remembered in
                      per-account sets, one per time bucket of half the dedup window; the
                      current and two previous buckets are checked, so an id is remembered for
                      at least the window (and at most 1.5 windows). One SMISMEMBER per bucket
                      and one SADD per step; small sets stay listpack-encoded (compact).
  3. suppressions, counters, distinct sets, gauges, balances, last-update times,
     the open-period index.
  4. thresholds     : a crossing is decided here, exactly once per (meter, period, threshold),
                      guarded by a mark key; it goes into the account's outbox stream.
  5. dedup ids and the fence move forward last.
Returns {0, outbox_length, crossing ids...}; statuses 1 also carry the outbox length so a caller
that crashed before indexing the outbox indexes it on replay.

KEYS[1] = fence key  mtr:{A}:f:<topic>:<partition>   (declares the slot)
ARGV: prefix "mtr:{A}:", account, first, last, bucket_s, now_ms, n_ids, ids...,
      n_supp, (member, ms)..., n_meters, then per meter:
      meter, period, agg (c|d|g|b), amount, period_start_ms, period_end_ms, expire_at_s,
      limit (-1 = none), scope, n_thr, (name, num, den, strict "1"|"0", crossing id)...,
      n_members, members... (gauge: member, "1"|"0")
A threshold is reached when used > 0 and used*den >= limit*num (> when strict); its mark key is
x:<meter>:<scope>:<name>, scope being the period key (or "L<limit>" for unwindowed meters), and
the crossing id is computed by the caller (metering.thresholds.crossing_id).
]]
local fence_key = KEYS[1]
local prefix = ARGV[1]
local account = ARGV[2]
local first = tonumber(ARGV[3])
local last = tonumber(ARGV[4])
local bucket_s = tonumber(ARGV[5])
local now_ms = ARGV[6]
local bucket = math.floor(tonumber(now_ms) / 1000 / bucket_s)
local outbox = prefix .. 'o'

local fence = redis.call('GET', fence_key)
if fence then
  fence = tonumber(fence)
  if fence >= last then
    return {1, redis.call('XLEN', outbox)}
  end
  if fence >= first then
    return {2, fence}
  end
end

local i = 7
local n_ids = tonumber(ARGV[i]); i = i + 1
local ids_at = i
local dups = {}
if n_ids > 0 then
  local ids = {unpack(ARGV, ids_at, ids_at + n_ids - 1)}
  for b = bucket - 2, bucket do
    local seen = redis.call('SMISMEMBER', prefix .. 'd:' .. b, unpack(ids))
    for j = 1, n_ids do
      if seen[j] == 1 then dups[#dups + 1] = ids[j] end
    end
  end
end
if #dups > 0 then
  return {3, dups}
end
i = i + n_ids

local sup_key = prefix .. 'sup'
local n_supp = tonumber(ARGV[i]); i = i + 1
for _ = 1, n_supp do
  local member, ms = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local known = redis.call('HGET', sup_key, member)
  if (not known) or ms < tonumber(known) then
    redis.call('HSET', sup_key, member, ms)
  end
end

local result = {0, 0}
local upd_key = prefix .. 'u'
local open_key = prefix .. 'p'
local CHUNK = 2000

local function sadd_all(key, members)
  for s = 1, #members, CHUNK do
    redis.call('SADD', key, unpack(members, s, math.min(s + CHUNK - 1, #members)))
  end
end

local n_meters = tonumber(ARGV[i]); i = i + 1
for _ = 1, n_meters do
  local meter, period, agg = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local amount = tonumber(ARGV[i + 3])
  local period_start = tonumber(ARGV[i + 4])
  local period_end = ARGV[i + 5]
  local expire_at = tonumber(ARGV[i + 6])
  local limit = tonumber(ARGV[i + 7])
  local scope = ARGV[i + 8]
  local n_thr = tonumber(ARGV[i + 9])
  i = i + 10
  local thr_at = i
  i = i + 5 * n_thr
  local n_members = tonumber(ARGV[i]); i = i + 1
  local slot = meter .. ':' .. period
  local before, after, key

  if agg == 'c' then
    key = prefix .. 'c:' .. slot
    after = redis.call('INCRBY', key, amount)
    before = after - amount
  elseif agg == 'b' then
    key = prefix .. 'b:' .. meter
    after = redis.call('INCRBY', key, amount)
    before = after - amount
  elseif agg == 'd' then
    key = prefix .. 's:' .. slot
    before = redis.call('SCARD', key)
    local members = {}
    for j = 0, n_members - 1 do
      local m = ARGV[i + j]
      local counts = true
      if period_start > 0 then
        local sup = redis.call('HGET', sup_key, m)
        if sup and tonumber(sup) < period_start then counts = false end
      end
      if counts then members[#members + 1] = m end
    end
    i = i + n_members
    if #members > 0 then sadd_all(key, members) end
    after = redis.call('SCARD', key)
  else -- 'g': gauge of known members (present flag per member) plus a plain level
    key = prefix .. 'g:' .. meter
    before = redis.call('SCARD', key)
    local adds, rems = {}, {}
    for j = 0, n_members - 1 do
      local m, flag = ARGV[i + 2 * j], ARGV[i + 2 * j + 1]
      if flag == '1' then adds[#adds + 1] = m else rems[#rems + 1] = m end
    end
    i = i + 2 * n_members
    if #adds > 0 then sadd_all(key, adds) end
    for s = 1, #rems, CHUNK do
      redis.call('SREM', key, unpack(rems, s, math.min(s + CHUNK - 1, #rems)))
    end
    after = redis.call('SCARD', key)
  end

  if expire_at > 0 then
    redis.call('EXPIREAT', key, expire_at)
  end
  redis.call('HSET', upd_key, slot, now_ms)
  if period ~= '' then
    redis.call('HSET', open_key, slot, period_end)
  end

  if limit >= 0 and after > 0 then
    for t = 0, n_thr - 1 do
      local at = thr_at + 5 * t
      local name = ARGV[at]
      local lhs = after * tonumber(ARGV[at + 2])
      local rhs = limit * tonumber(ARGV[at + 1])
      local is_reached
      if ARGV[at + 3] == '1' then is_reached = lhs > rhs else is_reached = lhs >= rhs end
      if is_reached then
        local mark = prefix .. 'x:' .. meter .. ':' .. scope .. ':' .. name
        if redis.call('SET', mark, now_ms, 'NX') then
          if expire_at > 0 then redis.call('EXPIREAT', mark, expire_at) end
          local id = ARGV[at + 4]
          redis.call('XADD', outbox, '*', 'id', id, 'account', account, 'meter', meter,
            'period', period, 'scope', scope, 'threshold', name, 'num', ARGV[at + 1],
            'den', ARGV[at + 2], 'strict', ARGV[at + 3], 'limit', limit, 'used', after,
            'before', before, 'at_ms', now_ms)
          result[#result + 1] = id
        end
      end
    end
  end
end

if n_ids > 0 then
  local dkey = prefix .. 'd:' .. bucket
  for s = ids_at, ids_at + n_ids - 1, CHUNK do
    redis.call('SADD', dkey, unpack(ARGV, s, math.min(s + CHUNK - 1, ids_at + n_ids - 1)))
  end
  redis.call('EXPIREAT', dkey, (bucket + 3) * bucket_s + 1)
end
redis.call('SET', fence_key, last)
result[2] = redis.call('XLEN', outbox)
return result
