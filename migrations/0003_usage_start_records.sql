-- modelgate — start records and append-only prices (docs/ledger.md).
-- SPDX-License-Identifier: Apache-2.0

-- A request's start record (journalled when it is first sent upstream) lands
-- as a row with incomplete = true, status 0 and the estimated prompt tokens;
-- the request's final record replaces it (the shipper updates that one row
-- and moves the rollup by the difference). A row still incomplete means the
-- gateway died before the request ended: it is billed at the estimate.
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS incomplete boolean NOT NULL DEFAULT false;
-- The dedup table knows whether the stored row is final, so a final can
-- replace a start in one upsert and nothing ever replaces a final.
ALTER TABLE usage_request_ids ADD COLUMN IF NOT EXISTS incomplete boolean NOT NULL DEFAULT false;

-- Price history is never rewritten: a change is a new row (effective_from =
-- when it took effect). Also audited in audit_log (action price.change)
-- when the policy store's tables exist.
CREATE OR REPLACE FUNCTION usage_prices_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'prices is append-only (% refused): add a row with a later effective_from', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

DROP TRIGGER IF EXISTS prices_append_only ON prices;
CREATE TRIGGER prices_append_only BEFORE UPDATE OR DELETE ON prices
    FOR EACH ROW EXECUTE FUNCTION usage_prices_append_only();
DROP TRIGGER IF EXISTS prices_no_truncate ON prices;
CREATE TRIGGER prices_no_truncate BEFORE TRUNCATE ON prices
    FOR EACH STATEMENT EXECUTE FUNCTION usage_prices_append_only();
