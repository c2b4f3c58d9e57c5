--[==[
remind.lua: decide one reminder of a threshold still reached, atomically (docs/plans.md,
"Reminders"; metering/core/reminders.py decides which reminder is due, this step re-checks it
against the store, so a crash or two schedulers at once never lose or fork one).

KEYS[1] = crossing mark  mtr:{A}:x:<meter>:<scope>:<threshold> (value: ms the crossing was decided)
KEYS[2] = reminder state mtr:{A}:rm:<meter>:<scope>:<threshold> (value: last reminder number sent)
KEYS[3] = the usage      counter/balance (GET) or distinct/gauge set (SCARD)
KEYS[4] = the account's outbox stream mtr:{A}:o
ARGV = number, crossed_at_ms, read ('get' | 'scard'), num, den, strict (0|1), limit,
       reminder id, account, body (JSON object without `used`), now_ms

Replies {status, value}:
  {0, outbox length}  sent: XADDed kind=reminder with the body plus `used`; state = number
  {1, last sent}      this number (or a later one) was sent already: nothing written
  {2, used}           the threshold is not reached now: nothing written (held, not skipped)
  {3, 0}              the crossing mark is gone or differs (expired, or another crossing)
]==]
local mark = redis.call('GET', KEYS[1])
if (not mark) or mark ~= ARGV[2] then
  return {3, 0}
end
local number = tonumber(ARGV[1])
local sent = tonumber(redis.call('GET', KEYS[2]) or '0')
if sent >= number then
  return {1, sent}
end
local used
if ARGV[3] == 'get' then
  used = tonumber(redis.call('GET', KEYS[3]) or '0')
else
  used = redis.call('SCARD', KEYS[3])
end
local num, den, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[7])
local reached = false
if used > 0 then
  if ARGV[6] == '1' then reached = used * den > limit * num else reached = used * den >= limit * num end
end
if not reached then
  return {2, used}
end
local body = ARGV[10]
body = string.sub(body, 1, -2) .. ',"used":' .. string.format('%d', used) .. '}'
redis.call('XADD', KEYS[4], '*', 'kind', 'reminder', 'id', ARGV[8], 'account', ARGV[9],
  'body', body, 'at_ms', ARGV[11])
redis.call('SET', KEYS[2], string.format('%d', number))
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return {0, redis.call('XLEN', KEYS[4])}
