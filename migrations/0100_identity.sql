-- modelgate — identity: API keys and browser sessions (auth/).
-- SPDX-License-Identifier: Apache-2.0

-- API keys. The raw key (mgk_<id>_<secret>) is shown once by
-- `modelgate keys create` and never stored: `hash` is the hex SHA-256 of the
-- whole key. `prefix` ("mgk_<id>") is what lists and logs show.
CREATE TABLE api_keys (
    id            text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    prefix        text        NOT NULL,
    hash          text        NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    owner_subject text        NOT NULL,
    owner_email   text,
    role          text        NOT NULL,
    name          text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX api_keys_owner ON api_keys (owner_email);

-- Browser sessions after SSO login. The cookie carries a random 256-bit id;
-- only its SHA-256 is stored, so a database dump cannot be replayed as
-- cookies. Logout sets revoked_at, which every instance sees on its next
-- lookup (cached for a few seconds at most).
CREATE TABLE auth_sessions (
    id_hash       text        PRIMARY KEY CHECK (id_hash ~ '^[0-9a-f]{64}$'),
    subject       text        NOT NULL,
    email         text,
    claims        jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX auth_sessions_expires ON auth_sessions (expires_at);
