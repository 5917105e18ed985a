/* Unit tests: gateway/route.c (weighted choice, breaker, concurrency, retry budget).
 * SPDX-License-Identifier: Apache-2.0
 */
#include "route.h"
#include "t.h"

#include <stdlib.h>

static mg_cfg_provider provs[2] = {
    {.name = "a", .type = "openai", .base_url = "http://127.0.0.1:1", .max_concurrency = 0},
    {.name = "b", .type = "openai", .base_url = "http://127.0.0.1:2", .max_concurrency = 2},
};
static mg_cfg_deployment deps[2] = {{.provider = "a", .model = "x", .weight = 3},
                                    {.provider = "b", .model = "y", .weight = 1}};
static mg_cfg_model models[1] = {{.name = "m", .deployments = deps, .ndeployments = 2}};

static mg_snapshot *snap_new(void)
{
    static mg_config cfg;
    cfg.providers = provs;
    cfg.nproviders = 2;
    cfg.models = models;
    cfg.nmodels = 1;
    mg_snapshot *s = calloc(1, sizeof(*s));
    s->cfg = &cfg;
    T_EQ_INT(mg_route_init(s), MG_OK);
    return s;
}

static void snap_free(mg_snapshot *s)
{
    mg_route_free(s);
    free(s);
}

T_TEST(weights_are_respected)
{
    mg_snapshot *s = snap_new();
    int count[2] = {0, 0};
    uint64_t rnd = 12345;
    for (int i = 0; i < 4000; i++) {
        size_t idx;
        rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
        T_EQ_INT(mg_route_pick(s, &models[0], 0, rnd, &idx), MG_ROUTE_OK);
        count[idx]++;
        mg_route_done(s, &models[0], idx, MG_ROUTE_HEALTHY);
    }
    /* 3:1 weights: expect ~3000 / ~1000 */
    T_CHECK(count[0] > 2700 && count[0] < 3300);
    T_CHECK(count[1] > 700 && count[1] < 1300);
    snap_free(s);
}

T_TEST(tried_deployments_are_skipped)
{
    mg_snapshot *s = snap_new();
    size_t idx = 99;
    T_EQ_INT(mg_route_pick(s, &models[0], 1u << 0, 7, &idx), MG_ROUTE_OK);
    T_EQ_INT(idx, 1);
    mg_route_done(s, &models[0], idx, MG_ROUTE_NEUTRAL);
    T_EQ_INT(mg_route_pick(s, &models[0], 3u, 7, &idx), MG_ROUTE_NONE_LEFT);
    snap_free(s);
}

T_TEST(breaker_opens_after_consecutive_failures_and_probes)
{
    mg_snapshot *s = snap_new();
    size_t idx;
    for (int i = 0; i < MG_ROUTE_BREAKER_FAILURES; i++) {
        T_EQ_INT(mg_route_pick(s, &models[0], 1u << 1, 1, &idx), MG_ROUTE_OK);
        T_EQ_INT(idx, 0);
        mg_route_done(s, &models[0], idx, MG_ROUTE_FAILED);
    }
    T_EQ_INT(mg_route_pick(s, &models[0], 1u << 1, 1, &idx), MG_ROUTE_OPEN);
    /* After the cooldown exactly one probe goes through. */
    atomic_store(&s->route[0].open_until_ms, mg_now_ms() - 1);
    T_EQ_INT(mg_route_pick(s, &models[0], 1u << 1, 1, &idx), MG_ROUTE_OK);
    T_EQ_INT(mg_route_pick(s, &models[0], 1u << 1, 1, &idx), MG_ROUTE_OPEN);
    mg_route_done(s, &models[0], 0, MG_ROUTE_FAILED);         /* probe failed: open again */
    T_EQ_INT(mg_route_pick(s, &models[0], 1u << 1, 1, &idx), MG_ROUTE_OPEN);
    atomic_store(&s->route[0].open_until_ms, mg_now_ms() - 1);
    T_EQ_INT(mg_route_pick(s, &models[0], 1u << 1, 1, &idx), MG_ROUTE_OK);
    mg_route_done(s, &models[0], 0, MG_ROUTE_HEALTHY);        /* probe ok: closed */
    T_EQ_INT(mg_route_pick(s, &models[0], 1u << 1, 1, &idx), MG_ROUTE_OK);
    mg_route_done(s, &models[0], 0, MG_ROUTE_HEALTHY);
    snap_free(s);
}

T_TEST(provider_concurrency_limit)
{
    mg_snapshot *s = snap_new();
    size_t a, b, c;
    T_EQ_INT(mg_route_pick(s, &models[0], 1u << 0, 1, &a), MG_ROUTE_OK);
    T_EQ_INT(mg_route_pick(s, &models[0], 1u << 0, 1, &b), MG_ROUTE_OK);
    T_EQ_INT(mg_route_pick(s, &models[0], 1u << 0, 1, &c), MG_ROUTE_BUSY);   /* b allows 2 */
    mg_route_done(s, &models[0], a, MG_ROUTE_HEALTHY);
    T_EQ_INT(mg_route_pick(s, &models[0], 1u << 0, 1, &c), MG_ROUTE_OK);
    mg_route_done(s, &models[0], b, MG_ROUTE_HEALTHY);
    mg_route_done(s, &models[0], c, MG_ROUTE_HEALTHY);
    snap_free(s);
}

T_TEST(retry_budget_bounds_amplification)
{
    double bank = 0;
    int retries = 0;
    for (int i = 0; i < 1000; i++) {
        mg_route_retry_budget_earn(&bank);
        if (mg_route_retry_budget_take(&bank))
            retries++;
    }
    T_CHECK(retries >= 190 && retries <= 201);   /* ~20% of requests */
}

T_MAIN("route", T_CASE(weights_are_respected), T_CASE(tried_deployments_are_skipped),
       T_CASE(breaker_opens_after_consecutive_failures_and_probes), T_CASE(provider_concurrency_limit),
       T_CASE(retry_budget_bounds_amplification))
