/* modelgate — choosing where a request goes: weighted deployments, circuit
 * breakers, provider concurrency limits and the retry budget.
 *
 * State shared by all workers lives in the snapshot (atomics, no locks);
 * a reload starts every breaker closed.
 *
 *   breaker: closed --(N consecutive failures)--> open --(cooldown)-->
 *            half-open (one probe request) --success--> closed
 *                                          --failure--> open
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_ROUTE_H
#define MG_ROUTE_H

#include "snapshot.h"

#define MG_ROUTE_BREAKER_FAILURES 5      /* consecutive failures that open it */
#define MG_ROUTE_BREAKER_COOLDOWN_MS 30000
#define MG_ROUTE_RETRIES 2               /* extra attempts per model */
#define MG_ROUTE_BACKOFF_MS 100          /* doubled per attempt, with jitter */
#define MG_ROUTE_MAX_DEPLOYMENTS 64

typedef struct mg_route_state {
    atomic_uint failures;                /* consecutive */
    _Atomic uint64_t open_until_ms;      /* 0 = closed */
    atomic_bool probing;                 /* half-open probe in flight */
} mg_route_state;

typedef enum mg_route_pick_rc {
    MG_ROUTE_OK,
    MG_ROUTE_NONE_LEFT,      /* every deployment tried */
    MG_ROUTE_OPEN,           /* the rest are behind open breakers */
    MG_ROUTE_BUSY,           /* the rest are at their concurrency limit */
} mg_route_pick_rc;

/* Allocates the per-deployment state of s (called by mg_snapshot_build). */
mg_rc mg_route_init(mg_snapshot *s);
void mg_route_free(mg_snapshot *s);

/* Picks a deployment of model m, weighted, skipping those in `tried`
 * (bit i = deployment i), those whose breaker refuses, and those whose
 * provider is at max_concurrency. On MG_ROUTE_OK, *idx is the deployment and
 * a concurrency slot is held until mg_route_done. */
mg_route_pick_rc mg_route_pick(const mg_snapshot *s, const mg_cfg_model *m, uint64_t tried,
                               uint64_t rnd, size_t *idx);
typedef enum mg_route_outcome {
    MG_ROUTE_HEALTHY,        /* the deployment answered (any 2xx-4xx but 429) */
    MG_ROUTE_FAILED,         /* connect error, timeout, 429, 5xx, broken reply */
    MG_ROUTE_NEUTRAL,        /* cancelled by us or the client: says nothing */
} mg_route_outcome;

/* Ends an attempt: gives the concurrency slot back and feeds the breaker. */
void mg_route_done(const mg_snapshot *s, const mg_cfg_model *m, size_t idx, mg_route_outcome o);

/* Whether any deployment of any model could take a request now: its
 * breaker is closed, or open with the cooldown over (a probe may go). For
 * /readyz ("at least one upstream usable"). */
bool mg_route_any_usable(const mg_snapshot *s);

/* Retry budget (per worker): every request earns 0.2 of a retry, up to 10
 * banked; a retry spends one. Under an upstream error storm at most ~20%
 * extra upstream requests are made, never a multiple of the traffic. */
bool mg_route_retry_budget_take(double *bank);
void mg_route_retry_budget_earn(double *bank);

#endif
