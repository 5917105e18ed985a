-- modelgate — policy versions and the hash-chained audit log (policy/store*.c).
-- How it works and why: docs/policy.md.
-- SPDX-License-Identifier: Apache-2.0

-- One row per policy change; the newest row is the policy in force. `doc` is
-- the validated document, `etag` the quoted hex SHA-256 prefix of its
-- canonical export (what GET /admin/v1/policy returns and If-Match compares).
CREATE TABLE policy_versions (
    version    bigserial   PRIMARY KEY,
    doc        jsonb       NOT NULL,
    etag       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text        NOT NULL
);

-- Who changed what, when, before/after. Each row's hash is the SHA-256 of the
-- previous row's hash and this row's content (docs/policy.md gives the exact
-- byte layout), so editing or removing a row breaks the chain at that row and
-- `modelgate audit verify` names it. The first row's prev_hash is 64 zeros.
CREATE TABLE audit_log (
    id             bigserial   PRIMARY KEY,
    ts             timestamptz NOT NULL DEFAULT now(),
    actor          text        NOT NULL,
    action         text        NOT NULL,
    target         text        NOT NULL,
    before         jsonb,
    after          jsonb,
    policy_version bigint,
    prev_hash      text        NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash           text        NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$')
);
CREATE INDEX audit_log_ts ON audit_log (ts);

-- Both tables are append-only. A trigger rather than REVOKE, because the
-- gateway usually connects as the tables' owner, and owners keep their
-- privileges; a superuser can still disable the trigger, which is what the
-- hash chain is for.
CREATE FUNCTION mg_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER policy_versions_append_only BEFORE UPDATE OR DELETE ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION mg_append_only();
CREATE TRIGGER policy_versions_no_truncate BEFORE TRUNCATE ON policy_versions
    FOR EACH STATEMENT EXECUTE FUNCTION mg_append_only();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION mg_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION mg_append_only();
