-- modelgate — usage ledger schema: one row per forwarded request.
-- Documented for finance / BI in docs/ledger.md.
-- SPDX-License-Identifier: Apache-2.0

-- The ledger, partitioned by month on ts so old months can be exported and
-- dropped whole (`modelgate usage export` / `usage drop`).
CREATE TABLE usage_events (
    request_id        text           NOT NULL,
    ts                timestamptz    NOT NULL,
    subject           text,
    email             text,
    roles             text,
    key_id            text,
    cost_center       text,
    model             text,
    served_model      text,
    provider          text,
    upstream_model    text,
    status            integer        NOT NULL,
    prompt_tokens     bigint         NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens bigint         NOT NULL CHECK (completion_tokens >= 0),
    cost_usd          numeric(20,10) NOT NULL CHECK (cost_usd >= 0),
    input_per_mtok    numeric(20,10),
    output_per_mtok   numeric(20,10),
    latency_ms        bigint,
    stream            boolean        NOT NULL DEFAULT false,
    estimated         boolean        NOT NULL DEFAULT false,
    client_gone       boolean        NOT NULL DEFAULT false,
    decision          jsonb,
    error_code        text,
    ingested_at       timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, ts)
) PARTITION BY RANGE (ts);

CREATE INDEX usage_events_ts_brin ON usage_events USING brin (ts);
CREATE INDEX usage_events_email_ts ON usage_events (email, ts);

-- A partitioned table can only enforce uniqueness on keys that include the
-- partition key, so request_id alone is made unique here; the shipper
-- inserts into both in one statement (replays insert nothing).
CREATE TABLE usage_request_ids (
    request_id text        PRIMARY KEY,
    ts         timestamptz NOT NULL
);
CREATE INDEX usage_request_ids_ts ON usage_request_ids (ts);

-- Journal records PostgreSQL rejected (bad data), kept verbatim.
CREATE TABLE usage_dead_letter (
    id          bigserial   PRIMARY KEY,
    source      text        NOT NULL UNIQUE,   -- host:journal_dir/segment@offset
    received_at timestamptz NOT NULL DEFAULT now(),
    raw         bytea       NOT NULL,          -- the JSON record as journalled
    error       text        NOT NULL
);

-- Price history: one row per change; the price in force at time t is the
-- latest row with effective_from <= t.
CREATE TABLE prices (
    id              bigserial      PRIMARY KEY,
    model           text           NOT NULL,
    input_per_mtok  numeric(20,10) NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok numeric(20,10) NOT NULL CHECK (output_per_mtok >= 0),
    effective_from  timestamptz    NOT NULL DEFAULT now(),
    changed_by      text           NOT NULL,
    UNIQUE (model, effective_from)
);

-- Creates the month's partition if missing; safe when two sessions race.
CREATE FUNCTION usage_ensure_partition(p_month date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    m    date := date_trunc('month', p_month)::date;
    part text := format('usage_events_%s', to_char(m, 'YYYY_MM'));
BEGIN
    IF to_regclass(part) IS NULL THEN
        BEGIN
            EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
                           part, (m::timestamp AT TIME ZONE 'UTC'),
                           ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            NULL;  -- another session created it first
        END;
    END IF;
    RETURN part;
END $$;

SELECT usage_ensure_partition((date_trunc('month', now()) + make_interval(months => i))::date)
FROM generate_series(-1, 2) AS i;
