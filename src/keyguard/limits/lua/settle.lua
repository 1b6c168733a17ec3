-- Settle one reservation: correct each counter by (real - reserved), free concurrency slots.
-- Also cancels a reservation whose outcome the gateway never learnt (corrections = -amount).
--
-- KEYS[i]   the counter of line i
-- KEYS[n+1] the reservation's marker: settling twice, or a reservation that was never made,
--           changes nothing (returns {-2})
-- ARGV[1]   now (epoch seconds)
-- ARGV[2]   the reservation id
-- ARGV[3]   the journal's name for this operation ('settle' or 'cancel')
-- ARGV[3+i] the correction of line i (an integer; ignored for 'c')
-- ARGV[3+n+i] the kind of line i ('t', 'r', 'm' or 'c')
-- then the journal stream key ('' = no journal) and the journal's max length
--
-- A counter whose window has expired (the key is gone) is left alone: -1 is returned for it.
-- Returns {level of line 1 after, ...}.
local n = #KEYS - 1
local journal, journal_len = ARGV[3 + 2 * n + 1], ARGV[3 + 2 * n + 2]
if redis.call('DEL', KEYS[n + 1]) == 0 then
  return {-2}
end
local after, deltas = {}, {}
for i = 1, n do
  local delta = tonumber(ARGV[3 + i])
  local kind = ARGV[3 + n + i]
  deltas[i] = delta
  if kind == 'c' then
    redis.call('ZREM', KEYS[i], ARGV[2])
    after[i] = redis.call('ZCARD', KEYS[i])
  elseif redis.call('EXISTS', KEYS[i]) == 1 then
    local level = redis.call('INCRBY', KEYS[i], delta)
    if level < 0 then
      redis.call('SET', KEYS[i], 0, 'KEEPTTL')
      level = 0
    end
    after[i] = level
  else
    after[i] = -1
  end
end
if journal ~= '' then
  redis.call('XADD', journal, 'MAXLEN', '~', journal_len, '*', 'd', cjson.encode({
    op = ARGV[3], rid = ARGV[2], t = tonumber(ARGV[1]), keys = {unpack(KEYS, 1, n)},
    amounts = deltas,
    levels = after}))
end
return after
