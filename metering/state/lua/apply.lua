--[==[
apply.lua: apply account steps of one batch; each step is one account's delta, applied
atomically (the whole call is atomic; in Redis Cluster the caller groups steps by hash slot,
since every key of a step carries {account}; on a single Redis it sends a few hundred steps
per call, which bounds how long one call blocks the server).

KEYS[i] = fence key of step i; ARGV[1] = JSON array of steps. Returns one reply per step.
The order inside one step:

Order inside the step (all or nothing, Redis runs a script atomically):
  1. account fence  : if this partition's offsets up to `last` were applied -> status 1 (no-op);
                      if the fence lies inside [first, last] -> status 2 + fence (the caller
                      re-sends only the events above it).
  2. dedup          : if any event id is remembered -> status 3 + those ids, nothing written
                      (the caller drops them and re-sends the rest). Ids are remembered in
                      per-account sets, one per time bucket of half the dedup window; the
                      current and two previous buckets are checked, so an id is remembered for
                      at least the window (and at most 1.5 windows). One SMISMEMBER per bucket
                      and one SADD per step; small sets stay listpack-encoded (compact).
  3. closed periods : a (meter, period) of the step that is not in the open-period index
                      (mtr:{A}:p) is closed when the close step froze it (rollup field in
                      mtr:{A}:r:<meter>) or when it ends at or before the account's closed-
                      through time (mtr:{A}:ct, written by close_period.lua: every period ending
                      by then was closed, with or without usage) -> status 4 + those
                      [meter, period, ...], nothing written (the caller sends the events to the
                      late topic, drops those contributions and re-sends the rest). A closed
                      period never changes, whatever the caller's watermark said (ADR 0004).
                      Costs one HMGET of the index per step; a GET and an HEXISTS only for a
                      period not in the index (its first write, or a closed one). Gauge month
                      shadows (agg g with a period) are not checked here.
  4. suppressions (before the distinct adds that may skip them), counters, distinct sets,
     gauges, balances, last-update times, the open-period index (fields it lacked).
  5. thresholds     : a crossing is decided here, exactly once per (meter, scope, threshold),
                      guarded by a mark key; it goes into the account's outbox stream.
  5b. holds       : a step whose events carry admission hold ids (step[10] =
                      [[hold id, "meter:period", units]...], absent otherwise) captures them:
                      each hold shrinks by the units its events used there (never below 0),
                      an expired one is freed; the events count either way (lua/holds.lua).
  6. dedup ids and the fence move forward last.
A step's reply is {0, outbox_length, crossing ids...} (outbox_length is 0 when the step added no
crossing); status 1 also carries the outbox length so a caller that crashed before indexing the
outbox indexes it on replay. Keys get their expiry when a step creates them.

Fence key of a step: mtr:{A}:f:<topic>:<partition>. Steps travel as JSON (packing thousands
of small arguments was the processor's largest client-side cost; cjson decodes in C). A step:
  [prefix, account, first, last, bucket_s, now_ms, [ids], [[member, ms]...],
   [[meter, period, agg (c|d|g|b), amount, period_start_ms, period_end_ms, expire_at_s,
     limit (-1 = none), scope, [[name, num, den, strict 0|1, crossing id]...],
     members: [m...] (distinct) or [[m, 1|0]...] (gauge), event_ms]...]]
A threshold is reached when used > 0 and used*den >= limit*num (> when strict); its mark key is
x:<meter>:<scope>:<name>, scope being the period key (or "L<limit>" for unwindowed meters).
A crossing is decided only by a step that raised the usage (used > before): a step that leaves
it where it was (a known member added again, a gauge that lost one member and gained another)
decides nothing, even when a new limit or threshold is already reached, so a crossing's
`before` is always below its `used`. event_ms (the newest event time of the step's events
for this meter) goes into the outbox entry as the crossing's event time.
]==]

local CHUNK = 2000
local function each_chunk(command, key, list)
  for s = 1, #list, CHUNK do
    redis.call(command, key, unpack(list, s, math.min(s + CHUNK - 1, #list)))
  end
end

local function apply_step(fence_key, step)
  local prefix, account = step[1], step[2]
  local first, last = step[3], step[4]
  local bucket_s, now_ms = step[5], step[6]
  local bucket = math.floor(now_ms / 1000 / bucket_s)
  local now_text = string.format('%d', now_ms)
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

  local ids = step[7]
  local n_ids = #ids
  if n_ids > 0 then
    local dups = {}
    for b = bucket - 2, bucket do
      local dkey = prefix .. 'd:' .. b
      for s = 1, n_ids, CHUNK do
        local e = math.min(s + CHUNK - 1, n_ids)
        local seen = redis.call('SMISMEMBER', dkey, unpack(ids, s, e))
        for j = s, e do
          if seen[j - s + 1] == 1 then dups[#dups + 1] = ids[j] end
        end
      end
    end
    if #dups > 0 then
      return {3, dups}
    end
  end

  local open_key = prefix .. 'p'
  local indexed = {}
  local slots, entries = {}, {}
  for _, m in ipairs(step[9]) do
    if m[2] ~= '' then
      slots[#slots + 1] = m[1] .. ':' .. m[2]
      entries[#entries + 1] = m
    end
  end
  if #slots > 0 then
    local closed = {}
    local horizon = nil
    for s = 1, #slots, CHUNK do
      local e = math.min(s + CHUNK - 1, #slots)
      local found = redis.call('HMGET', open_key, unpack(slots, s, e))
      for j = s, e do
        if found[j - s + 1] then
          indexed[slots[j]] = true
        elseif entries[j][3] ~= 'g' then -- gauge month shadows: see metering/core/gauge_months.py
          local m = entries[j]
          if horizon == nil then
            horizon = tonumber(redis.call('GET', prefix .. 'ct') or '0')
          end
          if (m[6] > 0 and m[6] <= horizon)
              or redis.call('HEXISTS', prefix .. 'r:' .. m[1], m[2]) == 1 then
            closed[#closed + 1] = m[1]
            closed[#closed + 1] = m[2]
          end
        end
      end
    end
    if #closed > 0 then
      return {4, closed}
    end
  end

  local sup_key = prefix .. 'sup'
  for _, pair in ipairs(step[8]) do
    local member, ms = pair[1], pair[2]
    local known = redis.call('HGET', sup_key, member)
    if (not known) or ms < tonumber(known) then
      redis.call('HSET', sup_key, member, string.format('%d', ms))
    end
  end


  local result = {0, 0}
  local updates = {}
  local opens = {}
  for _, m in ipairs(step[9]) do
    local meter, period, agg, amount = m[1], m[2], m[3], m[4]
    local period_start, period_end, expire_at, limit = m[5], m[6], m[7], m[8]
    local scope, thresholds, members, event_ms = m[9], m[10], m[11], m[12] or 0
    local slot = meter .. ':' .. period
    local before, after, key
    local reserved = false -- distinct members admission may have added before this step

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
      local counted = members
      if period_start > 0 and redis.call('EXISTS', sup_key) == 1 then
        counted = {}
        for s = 1, #members, CHUNK do
          local e = math.min(s + CHUNK - 1, #members)
          local sup = redis.call('HMGET', sup_key, unpack(members, s, e))
          for j = s, e do
            local at = sup[j - s + 1]
            if not (at and tonumber(at) < period_start) then
              counted[#counted + 1] = members[j]
            end
          end
        end
      end
      if #counted > 0 then each_chunk('SADD', key, counted) end
      after = redis.call('SCARD', key)
      reserved = #counted > 0
    else -- 'g': a gauge of known members: present (1) or gone (0) after the batch
      key = prefix .. 'g:' .. meter
      before = redis.call('SCARD', key)
      local adds, rems = {}, {}
      for _, pair in ipairs(members) do
        if pair[2] == 1 then adds[#adds + 1] = pair[1] else rems[#rems + 1] = pair[1] end
      end
      if #adds > 0 then each_chunk('SADD', key, adds) end
      if #rems > 0 then each_chunk('SREM', key, rems) end
      after = redis.call('SCARD', key)
    end

    if expire_at > 0 and before == 0 then
      -- Set once, when this step created the key (count and sum amounts are >= 1, an empty
      -- set does not exist): every redis.call costs several microseconds of script time per
      -- step, and steady loads bring about one step per event. The admission script sets the
      -- same expiry on the sets it creates.
      redis.call('EXPIREAT', key, expire_at)
    end
    updates[#updates + 1] = slot
    updates[#updates + 1] = now_text
    if period ~= '' and not indexed[slot] then
      opens[#opens + 1] = slot
      opens[#opens + 1] = string.format('%d', period_end)
    end

    -- A crossing is decided when this step raised the usage to or past a threshold; on a
    -- distinct meter also when the step counted members the usage already held, because
    -- admission (admit_members.lua) reserves new members before their events arrive: the
    -- rise happened at admission, and the crossing is decided with the first of those events
    -- (then `before` equals `used`, docs/asyncapi.yaml). A gauge or counter that did not rise
    -- decides nothing (a limit lowered under the usage is reported at the next rise).
    if limit >= 0 and after > 0 and (after > before or reserved) then
      for _, t in ipairs(thresholds) do
        local name, num, den, strict, id = t[1], t[2], t[3], t[4], t[5]
        local lhs, rhs = after * den, limit * num
        local is_reached
        if strict == 1 then is_reached = lhs > rhs else is_reached = lhs >= rhs end
        if is_reached then
          local mark = prefix .. 'x:' .. meter .. ':' .. scope .. ':' .. name
          if redis.call('SET', mark, now_text, 'NX') then
            if expire_at > 0 then redis.call('EXPIREAT', mark, expire_at) end
            redis.call('XADD', outbox, '*', 'id', id, 'account', account, 'meter', meter,
              'period', period, 'scope', scope, 'threshold', name, 'num', num, 'den', den,
              'strict', strict, 'limit', limit, 'used', after, 'before', before,
              'at_ms', now_text, 'event_ms', string.format('%d', event_ms))
            result[#result + 1] = id
          end
        end
      end
    end
  end
  if #updates > 0 then redis.call('HSET', prefix .. 'u', unpack(updates)) end
  if #opens > 0 then redis.call('HSET', open_key, unpack(opens)) end

  local captures = step[10]
  if captures then
    -- Holds captured by events carrying their id (only steps that have some pay for this):
    -- the event's units replace held ones, here, in the step that counted them.
    local hx, hd, ht = prefix .. 'hx', prefix .. 'hd', prefix .. 'ht'
    for _, c in ipairs(captures) do
      local id, slot, units = c[1], c[2], c[3]
      local rec = redis.call('HGET', hd, id)
      if rec then
        rec = cjson.decode(rec)
        local ends = tonumber(redis.call('ZSCORE', hx, id) or '0')
        local gone = true
        if ends > now_ms then
          local held = rec[slot]
          if held then
            local take = math.min(held, units)
            if redis.call('HINCRBY', ht, slot, -take) <= 0 then redis.call('HDEL', ht, slot) end
            if held > take then rec[slot] = held - take else rec[slot] = nil end
          end
          for _ in pairs(rec) do gone = false end
        end
        if gone then -- captured in full, or expired: free what it still holds
          for s, u in pairs(rec) do
            if redis.call('HINCRBY', ht, s, -u) <= 0 then redis.call('HDEL', ht, s) end
          end
          redis.call('HDEL', hd, id)
          redis.call('ZREM', hx, id)
        else
          redis.call('HSET', hd, id, cjson.encode(rec))
        end
      end
    end
  end

  if n_ids > 0 then
    local dkey = prefix .. 'd:' .. bucket
    each_chunk('SADD', dkey, ids)
    redis.call('EXPIREAT', dkey, (bucket + 3) * bucket_s + 1)
  end
  redis.call('SET', fence_key, string.format('%d', last))
  if #result > 2 then
    -- Only a step that added crossings reports the outbox (the caller then indexes and
    -- publishes it); an earlier step's entries were reported by that step, and a replay after
    -- a crash reports them through status 1 above.
    result[2] = redis.call('XLEN', outbox)
  end
  return result
end

local steps = cjson.decode(ARGV[1])
local replies = {}
for i, step in ipairs(steps) do
  replies[i] = apply_step(KEYS[i], step)
end
return replies
