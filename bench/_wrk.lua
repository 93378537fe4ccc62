-- wrk script for the benchmarks: optional pacing, a hard request cap, and a
-- machine-readable result line.
--
--   wrk -t1 -cN -dDs -s _wrk.lua URL -- RATE MAX_REQUESTS
--
-- RATE > 0 paces the thread to RATE requests per second on an absolute schedule
-- (request k is due at start + k/RATE): a slow response does not lower the offered
-- rate as long as another connection is free. wrk's timers tick in whole
-- milliseconds, so requests leave in small bursts (RATE/1000 per tick); the mean
-- rate is exact. RATE = 0 sends as fast as the connections allow (saturation).
-- After MAX_REQUESTS requests, every connection waits out the run: the count is
-- bounded as well as the time (-d).
--
-- wrk measures a request's latency from its first byte written to its response, in
-- microseconds. done() prints one line, "BENCH_JSON {...}", with the summary and
-- the whole latency histogram (value in us, count), so runs can be merged exactly.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local rate = 0
local max_requests = 0
local interval_ms = 0
local next_at = nil
local claimed = 0
local PARK_MS = 3600000

function init(args)
  rate = tonumber(args[1]) or 0
  max_requests = tonumber(args[2]) or 0
  if rate > 0 then
    interval_ms = 1000 / rate
  end
end

function delay()
  claimed = claimed + 1
  if max_requests > 0 and claimed > max_requests then
    return PARK_MS
  end
  if rate <= 0 then
    return 0
  end
  local t = now_ms()
  if next_at == nil then
    next_at = t
  end
  local wait = next_at - t
  next_at = next_at + interval_ms
  if wait <= 0 then
    return 0
  end
  return math.floor(wait + 0.5)
end

function done(summary, latency, requests)
  local e = summary.errors
  local parts = {}
  for i = 1, #latency do
    local value, count = latency(i)
    parts[#parts + 1] = string.format("[%d,%d]", value, count)
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"max":%d,"mean":%.3f},"histogram":[%s]}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, table.concat(parts, ",")))
end
