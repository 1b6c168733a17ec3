-- wrk script: POST a realistic ~1 KB Azure/OpenAI chat-completions body.
-- Configured through environment variables (set by harness/gwbench.py and bench/profile):
--   BENCH_PATH     request path incl. query string
--                  (default /openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21)
--   BENCH_HEADERS  extra headers, "Name: value" entries separated by "||"
--                  (e.g. "api-key: test" or "Authorization: Bearer sk-...")
--   BENCH_STREAM   "1" -> body has "stream": true and stream_options.include_usage
--   BENCH_MODEL    value of the "model" field (default gpt-4o)
-- No request()/response() callbacks are defined, so wrk pre-builds the request once
-- and never hands bodies to Lua (keeps the load generator cheap).
-- done() prints one machine-readable line starting with "WRKJSON ".

local path   = os.getenv("BENCH_PATH") or "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
local stream = os.getenv("BENCH_STREAM") == "1"
local model  = os.getenv("BENCH_MODEL") or "gpt-4o"

local system_msg = "You are a helpful assistant for the finance team of Contoso Ltd. " ..
  "Answer concisely, cite the document section you used, and never reveal internal " ..
  "account numbers or personal data. If you are unsure, say so and suggest who to ask."
local user_msg = "Please summarise the key points of the Q3 quarterly report below in two " ..
  "sentences for an executive audience.\n\nQ3 report excerpt: Revenue for the quarter " ..
  "was 4.2 billion, up 12 percent year over year, driven mainly by the cloud segment " ..
  "which grew 31 percent. Operating margin improved by two points to 24 percent as " ..
  "data-centre utilisation rose and marketing spend was held flat. Hardware revenue " ..
  "declined 6 percent on weaker consumer demand. Free cash flow was 1.1 billion. The " ..
  "company repurchased 300 million of shares and reiterated full-year guidance, while " ..
  "noting currency headwinds of roughly one point in the fourth quarter."

local function jstr(s)
  s = s:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub('\n', '\\n')
  return '"' .. s .. '"'
end

local body = '{"model":' .. jstr(model) ..
  ',"messages":[{"role":"system","content":' .. jstr(system_msg) .. '},' ..
  '{"role":"user","content":' .. jstr(user_msg) .. '}],' ..
  '"max_tokens":256,"temperature":0.2,"top_p":1,"n":1,"user":"bench-user-0001"'
if stream then
  body = body .. ',"stream":true,"stream_options":{"include_usage":true}'
else
  body = body .. ',"stream":false'
end
body = body .. '}'

wrk.method = "POST"
wrk.path = path
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = stream and "text/event-stream" or "application/json"

local extra = os.getenv("BENCH_HEADERS") or ""
for item in string.gmatch(extra, "([^|]+)") do
  local name, value = item:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then wrk.headers[name] = value end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"body_bytes_sent":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_mean_us":%.1f,"lat_stdev_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, #body,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
