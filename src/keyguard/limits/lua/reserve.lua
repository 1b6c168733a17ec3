-- Reserve one request against every limit that applies to it, atomically, or nothing at all.
--
-- KEYS[i]   the counter of line i (a string counter, or a sorted set of concurrency leases)
-- KEYS[n+1] the reservation's marker (exists while the reservation is unsettled)
-- KEYS[n+2] the state marker: set once the counters were restored after Redis lost them (a
--           restart without persistence); while it is missing nothing is reserved: {-1}
-- ARGV[1]   now (epoch seconds, from the gateway)
-- ARGV[2]   the reservation id
-- ARGV[3]   lease expiry for concurrency slots (epoch seconds)
-- ARGV[3+i] the amount of line i
-- then, per line i: kind ('t' tokens, 'r' requests, 'm' money, 'c' concurrency),
--                   limit, counter expiry (epoch seconds)
-- then the journal stream key ('' = no journal) and the journal's max length
-- (What changes per request comes first, what a caller's lines share last: the gateway
-- sends the shared part as bytes it prepared once.)
--
-- Returns {allowed (1|0), level of line 1 before, level of line 2 before, ...}.
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local lease_until = tonumber(ARGV[3])
local n = #KEYS - 2
if redis.call('EXISTS', KEYS[n + 2]) == 0 then
  return {-1}
end
local journal, journal_len = ARGV[3 + 4 * n + 1], ARGV[3 + 4 * n + 2]
local kinds, limits, amounts, expiries, levels = {}, {}, {}, {}, {}
local allowed = 1
for i = 1, n do
  local base = 3 + n + (i - 1) * 3
  amounts[i] = tonumber(ARGV[3 + i])
  kinds[i] = ARGV[base + 1]
  limits[i] = tonumber(ARGV[base + 2])
  expiries[i] = tonumber(ARGV[base + 3])
  local level
  if kinds[i] == 'c' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    level = redis.call('ZCARD', KEYS[i])
  else
    level = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  levels[i] = level
  if level + amounts[i] > limits[i] then
    allowed = 0
  end
end
if allowed == 1 then
  redis.call('SET', KEYS[n + 1], 1, 'EX', 86400)
  for i = 1, n do
    if kinds[i] == 'c' then
      redis.call('ZADD', KEYS[i], lease_until, rid)
      redis.call('EXPIREAT', KEYS[i], math.ceil(lease_until) + 60)
    else
      redis.call('INCRBY', KEYS[i], amounts[i])
      redis.call('EXPIREAT', KEYS[i], math.ceil(expiries[i]))
    end
  end
end
if journal ~= '' then
  redis.call('XADD', journal, 'MAXLEN', '~', journal_len, '*', 'd', cjson.encode({
    op = allowed == 1 and 'reserve' or 'refuse', rid = rid, t = now, keys = {unpack(KEYS, 1, n)},
    limits = limits, amounts = amounts, levels = levels}))
end
local out = {allowed}
for i = 1, n do
  out[i + 1] = levels[i]
end
return out
