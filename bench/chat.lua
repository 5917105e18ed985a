-- bench/chat.lua: wrk script for `make bench`. POSTs one small chat completion.
-- SPDX-License-Identifier: Apache-2.0
--
-- Per-target headers come from the environment so one script serves every target:
--   BENCH_HEADERS  "Name: value" pairs separated by "|" (values must not contain "|")
--   BENCH_BODY     request body (default: a small chat completion for bench-model)
-- done() prints one machine-readable line, "BENCH_RESULT key=value ...", with the
-- latency percentiles in microseconds taken from wrk's own histogram.
-- No response() callback on purpose: defining one makes wrk parse every response
-- in Lua and would slow the load generator down. Non-2xx answers are taken from
-- wrk's status error counter (it counts any status >= 400; our upstream never sends 3xx).

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or
    '{"model":"bench-model","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"

local hdrs = os.getenv("BENCH_HEADERS") or ""
for pair in string.gmatch(hdrs, "[^|]+") do
    local name, value = string.match(pair, "^%s*([^:]+):%s*(.-)%s*$")
    if name then
        wrk.headers[name] = value
    end
end

function done(summary, latency, requests)
    local secs = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format(
        "BENCH_RESULT requests=%d duration_s=%.3f rps=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f " ..
        "non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d\n",
        summary.requests, secs, summary.requests / secs,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
        e.status, e.connect, e.read, e.write, e.timeout))
end
