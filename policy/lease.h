/* modelgate — budget leases: token and USD budgets shared by every instance
 * through PostgreSQL without a database round trip per request.
 *
 *   request (event loop)                      lease thread (own connection)
 *   reserve against the local lease ──wake──▶ refill: one conditional UPDATE
 *     (atomics only; never blocks)             settle usage into `spent`,
 *   not covered: park, re-run after the        return unused lease, renew,
 *     next round (or 429 when the database     sweep expired leases
 *     said no or is unreachable)            ──▶ wakes parked requests
 *
 * Each (scope, budget slot) has a lease: `granted` is how much of the limit
 * this instance holds for the current period. The local budget counter
 * (mg_policy_budget: committed = settled use + reservations) is admitted
 * against min(policy limit, granted), so every instance's admissions are
 * covered by what the database handed out, and the database hands out at
 * most the limit: `spent + leased + chunk <= limit`. Details and the
 * overshoot bound: docs/policy.md.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_POLICY_LEASE_H
#define MG_POLICY_LEASE_H

#include "policy/policy.h"

#include <stdatomic.h>

/* Lease TTL: a lease not renewed for this long is swept back. An instance
 * whose last successful round is older than half of it stops using its
 * leases (fail closed), so it never uses a lease that may have been swept. */
#define MG_POLICY_LEASE_TTL_S 60

/* Slots, in the order of mg_policy_budgets: tokens_day, tokens_month,
 * usd_day, usd_month. */
#define MG_POLICY_LEASE_SLOTS 4

typedef struct mg_policy_lease {
    _Atomic int64_t granted;    /* held for `period` (includes what is used) */
    _Atomic int64_t period;     /* period of granted; 0 none */
    _Atomic int64_t want;       /* sum of what parked requests need */
    _Atomic int64_t need;       /* the smallest single need among them (0 none) */
    _Atomic int64_t limit;      /* policy limit last seen by a request */
    _Atomic bool ahead;         /* refill before it runs out */
    _Atomic int64_t denied_until_ms; /* database had no room: refuse until (monotonic ms) */
    _Atomic int64_t last_use_ms;
    _Atomic int64_t cluster_spent;   /* last seen in budget_counters (for /auth/me) */
    _Atomic int64_t cluster_leased;
    /* lease thread only */
    int64_t synced;             /* local `used` already added to spent */
    int64_t held;               /* our budget_leases.amount */
    int64_t held_period;
} mg_policy_lease;

typedef struct mg_policy_lease_set {
    struct mg_policy_lease_set *next;   /* registry (lease thread walks it) */
    mg_policy_budgets *budgets;         /* the counters this set backs */
    const char *scope;                  /* "u:<subject>" / "t:<role>", lives as long */
    atomic_bool registered;
    mg_policy_lease slot[MG_POLICY_LEASE_SLOTS];
} mg_policy_lease_set;

/* Starts the lease thread on conninfo (called by mg_policy_store_start when a
 * database is configured). MG_ERR if the thread cannot start. */
mg_rc mg_policy_lease_start(const char *conninfo);
/* Settles usage, returns every unused lease, stops the thread. */
void mg_policy_lease_stop(void);
/* Whether budgets go through leases (a database is configured). */
bool mg_policy_lease_enabled(void);

typedef enum mg_policy_lease_rc {
    MG_POLICY_LEASE_OK,         /* reserved; h holds it */
    MG_POLICY_LEASE_REFUSED,    /* over the limit, or no lease to be had: 429 */
    MG_POLICY_LEASE_WAIT,       /* a refill is requested: park and try again */
} mg_policy_lease_rc;

/* Reserves tokens and micro-USD in all four budgets against the local leases
 * (the policy limits cap them too). Unlimited slots need no lease. On
 * REFUSED *which and *retry_after_s are set as by mg_policy_budgets_reserve
 * (5 s when the database is unreachable). may_wait false turns WAIT into
 * REFUSED (a request that already waited enough). Lock-free. */
mg_policy_lease_rc mg_policy_lease_reserve(mg_policy_lease_set *ls, mg_policy_budgets *b,
                                           const mg_policy_limits *lim, int64_t unix_s,
                                           int64_t tokens, int64_t micro_usd, bool may_wait,
                                           mg_policy_budget_hold *h, mg_policy_limit *which,
                                           int64_t *retry_after_s);

/* Calls fn(arg) on the lease thread after its next round (fn hands the
 * request back to its own loop, e.g. with mg_worker_post: this module does
 * not know about workers). MG_ERR if leases are off or the thread is
 * stopping (the caller answers at once), MG_ENOMEM. */
mg_rc mg_policy_lease_park(void (*fn)(void *), void *arg);

/* Pure: the chunk to lease. need = the smallest amount a waiting request
 * needs, want = all of them, avail = limit - spent - leased, instances =
 * instances holding a lease on this counter (this one included). Returns 0
 * when need does not fit (deny); else max(need, min(max(want, limit / (4 *
 * instances)), avail)). */
int64_t mg_policy_lease_chunk(int64_t limit, int64_t avail, int64_t need, int64_t want,
                              int64_t instances);

#endif
