-- Read the level of each counter, changing nothing (the usage read-out; safe for EVALSHA_RO).
--
-- KEYS[i]   the counter of line i (a string counter, or a sorted set of concurrency leases)
-- KEYS[n+1] the state marker: missing while the counters are lost and not yet restored ({-1})
-- ARGV[1]   now (epoch seconds, from the gateway)
-- ARGV[1+i] the kind of line i ('t', 'r', 'm' or 'c')
--
-- A concurrency line counts the leases that have not expired (reserve.lua drops the expired
-- ones when it next runs; here they are only left out of the count).
-- Returns {1, level of line 1, level of line 2, ...}.
local n = #KEYS - 1
if redis.call('EXISTS', KEYS[n + 1]) == 0 then
  return {-1}
end
local now = ARGV[1]
local out = {1}
for i = 1, n do
  if ARGV[1 + i] == 'c' then
    out[i + 1] = redis.call('ZCOUNT', KEYS[i], '(' .. now, '+inf')
  else
    out[i + 1] = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
end
return out
