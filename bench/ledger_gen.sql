-- modelgate — ledger benchmark data: :rows rows (default 10 million) spread
-- over one month (:month, default 2025-01) for 2,000 users, 12 models,
-- 40 cost centers, plus their daily rollup. Run through psql after
-- `modelgate migrate`:
--   psql -v rows=10000000 -v month=2025-01 -f bench/ledger_gen.sql
-- SPDX-License-Identifier: Apache-2.0
\if :{?rows}
\else
\set rows 10000000
\endif
\if :{?month}
\else
\set month 2025-01
\endif
\set ON_ERROR_STOP 1
SELECT usage_ensure_partition((:'month' || '-01')::date);
SET synchronous_commit = off;
SET max_parallel_workers_per_gather = 2;
CREATE TEMP TABLE bench_params AS
SELECT (:'month' || '-01')::timestamp AT TIME ZONE 'UTC' AS t0,
       extract(epoch FROM ((:'month' || '-01')::date + interval '1 month') - (:'month' || '-01')::date) AS span_s,
       :rows::bigint AS n;
-- Rows arrive roughly in time order, as the shipper inserts them.
INSERT INTO usage_events (request_id, ts, subject, email, roles, key_id, cost_center, model, served_model,
                          provider, upstream_model, status, prompt_tokens, completion_tokens, cost_usd,
                          input_per_mtok, output_per_mtok, latency_ms, stream, estimated, client_gone, decision)
SELECT 'bench-' || :'month' || '-' || i,
       p.t0 + make_interval(secs => ((i - 1)::double precision * p.span_s / p.n)),
       'sub-' || (i * 7919 % 2000),
       'user' || (i * 7919 % 2000) || '@example.com',
       (ARRAY['dev', 'dev,admin', 'finance', 'support'])[1 + (i % 4)],
       CASE WHEN i % 3 = 0 THEN 'key-' || (i % 500) END,
       'cc-' || (i * 31 % 40),
       'model-' || (i % 12), 'model-' || (i % 12),
       (ARRAY['openai', 'azure', 'anthropic'])[1 + (i % 3)], 'up-' || (i % 12),
       CASE WHEN i % 50 = 0 THEN 429 ELSE 200 END,
       100 + (i * 13 % 2000), 20 + (i * 17 % 800),
       round(((100 + (i * 13 % 2000)) * 2.5 + (20 + (i * 17 % 800)) * 10.0) / 1e6, 10),
       2.5, 10.0, 50 + (i % 900), i % 4 = 0, false, false, '["allow"]'::jsonb
FROM generate_series(1::bigint, :rows::bigint) AS i, bench_params p;
INSERT INTO usage_request_ids (request_id, ts)
SELECT request_id, ts FROM usage_events
WHERE ts >= (SELECT t0 FROM bench_params) AND request_id LIKE 'bench-%'
ON CONFLICT DO NOTHING;
VACUUM ANALYZE usage_events;
-- The rows above bypassed the shipper, so build the month's daily rollup
-- from them (what migration 0002 does for rows that predate it).
SELECT usage_rollup_rebuild((:'month' || '-01')::date, ((:'month' || '-01')::date + interval '1 month')::date);
VACUUM ANALYZE usage_rollup_daily;
