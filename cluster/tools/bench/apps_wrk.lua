-- Paced requests for `sc bench apps` (web): each connection waits an exponentially
-- distributed think time (mean in ms, first argument) before each request, so
-- arrivals over many connections are close to a Poisson stream at
-- connections / mean rate, and a slow response delays only its own connection.
-- At the end one line "SCJSON {...}" with the counts, errors and a grid of
-- latency percentiles in microseconds (wrk gives no raw latencies to Lua).
local mean_ms = 100

function init(args)
  mean_ms = tonumber(args[1]) or 100
  math.randomseed(tonumber(args[2]) or 1)
end

function delay()
  return math.floor(-math.log(1 - math.random()) * mean_ms)
end

local GRID = {}
for p = 1, 99 do GRID[#GRID + 1] = p end
for _, p in ipairs({99.5, 99.9, 99.95, 99.99, 100}) do GRID[#GRID + 1] = p end

function done(summary, latency, requests)
  local e = summary.errors
  local parts = {}
  for _, p in ipairs(GRID) do
    -- percentile(100) reads 0 in wrk 4.1: the maximum stands in for it.
    local v = p < 100 and latency:percentile(p) or latency.max
    parts[#parts + 1] = string.format('"%g": %d', p, v)
  end
  io.write(string.format(
    'SCJSON {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, '
      .. '"status": %d, "timeout": %d}, "latency_us": {"min": %d, "max": %d, "mean": %.1f, '
      .. '"percentiles": {%s}}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, table.concat(parts, ", ")))
end
