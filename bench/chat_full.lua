-- bench/chat_full.lua: wrk script for the full-path row of `make bench`.
-- SPDX-License-Identifier: Apache-2.0
--
-- Same as chat.lua (headers from BENCH_HEADERS, one BENCH_RESULT line at the end)
-- but the body is a ~2 KB multi-turn chat request read from BENCH_BODY_FILE
-- (default bench/prompt-2k.json), so the policy's filters have real text to scan.
-- The file is read here rather than passed in the environment so that run.sh can
-- hand the very same bytes to bench/rateload.

dofile("bench/chat.lua")

local path = os.getenv("BENCH_BODY_FILE") or "bench/prompt-2k.json"
local f = assert(io.open(path, "rb"))
wrk.body = (f:read("*a"):gsub("%s+$", ""))
f:close()
