-- modelgate — budgets shared by every instance: counters per (scope, budget
-- slot, period) and the leases instances hold against them (policy/lease.c).
-- How it works and the overshoot bound: docs/policy.md, "Budgets across instances".
-- SPDX-License-Identifier: Apache-2.0

-- One row per scope ("u:<subject>" or "t:<role>"), slot ("tokens_day",
-- "tokens_month", "usd_day", "usd_month") and period (day number since
-- 1970-01-01, or year*12 + month0). `spent` is settled real usage reported by
-- instances; `leased` is what instances hold and have not used yet. The limit
-- is not stored: it comes from the policy in force, and every lease is taken
-- with `WHERE spent + leased + chunk <= limit`.
CREATE TABLE budget_counters (
    scope  text   NOT NULL,
    slot   text   NOT NULL,
    period bigint NOT NULL,
    spent  bigint NOT NULL DEFAULT 0 CHECK (spent >= 0),
    leased bigint NOT NULL DEFAULT 0 CHECK (leased >= 0),
    PRIMARY KEY (scope, slot, period)
);

-- Which instance holds how much of `leased`. Instances renew expires_at every
-- round (about once a second); a lease not renewed for its TTL (an instance
-- that crashed or lost the database) is swept by any other instance and its
-- amount goes back to the counter.
CREATE TABLE budget_leases (
    scope      text        NOT NULL,
    slot       text        NOT NULL,
    period     bigint      NOT NULL,
    instance   text        NOT NULL,
    amount     bigint      NOT NULL CHECK (amount >= 0),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (scope, slot, period, instance)
);
CREATE INDEX budget_leases_expiry ON budget_leases (expires_at);
CREATE INDEX budget_leases_instance ON budget_leases (instance);
