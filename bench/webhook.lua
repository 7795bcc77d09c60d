-- wrk script: POST unique TradingView alerts to /api/webhooks/tradingview.
--   wrk -t1 -c32 -d15s -s bench/webhook.lua URL -- TOKEN TAG
-- The mix (the same as bench/alerts.py `exit_mix`): long_exit and short_exit alternating over
-- 12 symbols, each alert with its own alert_id (TAG-thread-counter) so none is a duplicate.
-- `done` prints one line "WRK_JSON {...}" with exact percentiles for bench/run.py to read.

local symbols = {
  "BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT",
  "ADAUSDT", "AVAXUSDT", "LINKUSDT", "DOTUSDT", "LTCUSDT", "NEARUSDT",
}
local prices = {
  "65000", "3500", "150", "600", "0.6", "0.15", "0.45", "35", "15", "7", "80", "5",
}
local threads = 0
local token, tag
local counter = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  token = args[1]
  tag = args[2] .. "-" .. tostring(thread_id or 0)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local i = counter
  local k = (i % #symbols) + 1
  local action = (i % 2 == 0) and "long_exit" or "short_exit"
  local body = '{"token":"' .. token .. '","action":"' .. action .. '","symbol":"' ..
    symbols[k] .. '","price":"' .. prices[k] .. '","alert_id":"' .. tag .. "-" .. i .. '"}'
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"non_2xx":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.duration, summary.requests, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
