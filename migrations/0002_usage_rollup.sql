-- modelgate — daily usage rollup: the sums the month-wide reports need,
-- kept exact by the shipper (same transaction as the usage_events insert,
-- only for rows actually inserted) so a month's report reads ~10^5 rollup
-- rows instead of ~10^7 events. Documented in docs/ledger.md.
-- SPDX-License-Identifier: Apache-2.0

-- One row per UTC day and combination of the report dimensions. NULL is a
-- value here (NULLS NOT DISTINCT), as it is for GROUP BY, so the shipper's
-- upsert finds the row of a caller without key_id or cost_center.
CREATE TABLE IF NOT EXISTS usage_rollup_daily (
    day               date           NOT NULL,   -- (ts AT TIME ZONE 'UTC')::date
    subject           text,
    email             text,
    roles             text,
    key_id            text,
    cost_center       text,
    model             text,
    provider          text,
    requests          bigint         NOT NULL,
    prompt_tokens     bigint         NOT NULL,
    completion_tokens bigint         NOT NULL,
    cost_usd          numeric        NOT NULL    -- exact sum of usage_events.cost_usd
);

CREATE UNIQUE INDEX IF NOT EXISTS usage_rollup_daily_key ON usage_rollup_daily
    (day, subject, email, roles, key_id, cost_center, model, provider) NULLS NOT DISTINCT;

-- Recomputes the rollup of days [p_from, p_to) (NULL = unbounded) from
-- usage_events. Used by this migration's backfill, by the benchmark's bulk
-- load, and by hand after editing usage_events directly (e.g. re-inserting
-- a fixed dead letter). The lock waits for shippers in flight and holds new
-- ones back, so no insert falls between the delete and the recount.
CREATE OR REPLACE FUNCTION usage_rollup_rebuild(p_from date, p_to date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    LOCK TABLE usage_request_ids IN EXCLUSIVE MODE;
    DELETE FROM usage_rollup_daily
    WHERE (p_from IS NULL OR day >= p_from) AND (p_to IS NULL OR day < p_to);
    INSERT INTO usage_rollup_daily (day, subject, email, roles, key_id, cost_center, model, provider,
                                    requests, prompt_tokens, completion_tokens, cost_usd)
    SELECT (ts AT TIME ZONE 'UTC')::date, subject, email, roles, key_id, cost_center, model, provider,
           count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)
    FROM usage_events
    WHERE (p_from IS NULL OR ts >= (p_from::timestamp AT TIME ZONE 'UTC'))
      AND (p_to IS NULL OR ts < (p_to::timestamp AT TIME ZONE 'UTC'))
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Backfill from every row already in the ledger (a full recount, so running
-- it again gives the same table).
SELECT usage_rollup_rebuild(NULL, NULL);
