-- Settle one reservation: correct each counter by (real - reserved), free concurrency slots.
-- Also cancels a reservation whose outcome the gateway never learnt (corrections = -amount).
--
-- KEYS[i]   the counter of line i
-- KEYS[n+1] the reservation's marker: settling twice, or a reservation that was never made,
--           changes nothing (returns {-2})
-- ARGV[1]   now (epoch seconds)
-- ARGV[2]   the reservation id
-- ARGV[3]   journal stream key ('' = no journal)
-- ARGV[4]   journal max length
-- ARGV[5]   the journal's name for this operation ('settle' or 'cancel')
-- then, per line i: kind ('t', 'r', 'm' or 'c'), correction (an integer; ignored for 'c')
--
-- A counter whose window has expired (the key is gone) is left alone: -1 is returned for it.
-- Returns {level of line 1 after, ...}.
local n = #KEYS - 1
if redis.call('DEL', KEYS[n + 1]) == 0 then
  return {-2}
end
local after, deltas = {}, {}
for i = 1, n do
  local kind = ARGV[6 + (i - 1) * 2]
  local delta = tonumber(ARGV[7 + (i - 1) * 2])
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
if ARGV[3] ~= '' then
  redis.call('XADD', ARGV[3], 'MAXLEN', '~', ARGV[4], '*', 'd', cjson.encode({
    op = ARGV[5], rid = ARGV[2], t = tonumber(ARGV[1]), keys = {unpack(KEYS, 1, n)},
    amounts = deltas,
    levels = after}))
end
return after
