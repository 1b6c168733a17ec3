-- Raise counters to the levels saved in the store (after Redis lost them), never lower them.
--
-- KEYS[i]        a counter
-- ARGV[2i-1]     its saved level
-- ARGV[2i]       its expiry (epoch seconds)
--
-- Several replicas may restore at once: taking the larger level makes that harmless.
for i = 1, #KEYS do
  local level = tonumber(ARGV[2 * i - 1])
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if level > current then
    redis.call('SET', KEYS[i], level)
    redis.call('EXPIREAT', KEYS[i], ARGV[2 * i])
  end
end
return #KEYS
