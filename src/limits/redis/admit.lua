-- sagegate admit: every throttle layer (GCRA) and the usage-plan quota of one request, decided and
-- written in one atomic step. No token or count is written unless everything passes, so a rejected
-- request consumes nothing (no refunds needed); the one other write, the `offset` marker, counts
-- nothing.
--
-- KEYS[1..n]  GCRA cells (value: theoretical arrival time, microseconds since the epoch)
-- KEYS[n+1]   (optional) quota base key; the period's counter is KEYS[n+1]..':'..P..':'..start
-- ARGV[1]     now in microseconds, or '' for the server's TIME (always '' in production: the
--             server is the one clock of every gateway task; tests pass a time)
-- ARGV[2]     n, the number of GCRA layers
-- ARGV[3..]   per layer: T (µs per token), tau (= T × (burst − 1), µs)
-- then, when KEYS[n+1] is given: limit, offset, period (D | W | M), retention (seconds)
--
-- Returns {0, 0, 0} admitted (and, with a quota, {0, 0, 0, used after, limit, start, end});
-- {1, wait µs, layer} throttled by layer (1-based); {2, wait µs, 0} quota exhausted.
-- Arithmetic is governor's GCRA: admit iff now >= tat − tau, then tat := max(tat, now) + T, so the
-- in-process limiter and this script give the same answers for the same inputs.

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local n = tonumber(ARGV[2])

-- Doubles hold integers exactly up to 2^53 µs (~285 years): TATs are written with %.0f, never
-- tostring (which would round to 14 significant digits).
local tats = {}
for i = 1, n do
  local t = tonumber(ARGV[1 + 2 * i])
  local tau = tonumber(ARGV[2 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if now < tat - tau then
    return {1, tat - tau - now, i}
  end
  if tat < now then tat = now end
  tats[i] = tat + t
end

-- Days since 1970-01-01 from a civil date, and back (Howard Hinnant's algorithms), for month
-- boundaries in UTC without a calendar library.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m > 2) and (m - 3) or (m + 9)
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = (mp < 10) and (mp + 3) or (mp - 9)
  if m <= 2 then y = y + 1 end
  return y, m
end

local result = {0, 0, 0}
local qbase = KEYS[n + 1]
if qbase then
  local q = 3 + 2 * n
  local limit = tonumber(ARGV[q])
  local offset = tonumber(ARGV[q + 1])
  local period = ARGV[q + 2]
  local retention = tonumber(ARGV[q + 3])
  local day = math.floor(now / 86400000000)
  local start_day, end_day
  if period == 'D' then
    start_day, end_day = day, day + 1
  elseif period == 'W' then
    -- 1970-01-01 was a Thursday: day 4 (1970-01-05) is the first Monday.
    start_day = day - ((day - 4) % 7)
    end_day = start_day + 7
  else
    local y, m = civil_from_days(day)
    start_day = days_from_civil(y, m, 1)
    if m == 12 then end_day = days_from_civil(y + 1, 1, 1) else end_day = days_from_civil(y, m + 1, 1) end
  end
  local start, stop = start_day * 86400, end_day * 86400
  local counter = qbase .. ':' .. period .. ':' .. string.format('%d', start)
  local used = tonumber(redis.call('GET', counter)) or 0
  local effective = limit
  local marker = qbase .. ':first'
  local first
  if offset > 0 then
    -- `offset` is charged in the first period this (plan, key) is counted in, across all tasks.
    first = tonumber(redis.call('GET', marker))
    if first == nil or first == start then
      effective = limit - offset
      if effective < 0 then effective = 0 end
    end
  end
  if offset > 0 and first == nil then
    -- Records which period is the first (consumes nothing), also when this request is refused:
    -- otherwise an offset >= limit would be charged again in every later period.
    redis.call('SET', marker, string.format('%d', start))
  end
  if used >= effective then
    return {2, stop * 1000000 - now, 0}
  end
  redis.call('INCR', counter)
  if used == 0 then
    -- Kept until the period ends plus the retention, so last period's usage can still be read
    -- (relative to `now`, so an injected test time sets the same lifetime).
    redis.call('EXPIRE', counter, stop + retention - math.floor(now / 1000000))
  end
  result = {0, 0, 0, used + 1, effective, start, stop}
end

for i = 1, n do
  if ARGV[1] == '' then
    -- The cell can go once its TAT has passed: a missing cell reads as a full bucket.
    local ttl_ms = math.ceil((tats[i] - now) / 1000)
    redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttl_ms)
  else
    -- An injected (test) time does not follow the server's expiry clock, which is real time.
    redis.call('SET', KEYS[i], string.format('%.0f', tats[i]))
  end
end
return result
