/* modelgate — deployment choice, circuit breakers, concurrency, retry budget.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "route.h"

#include <stdlib.h>

mg_rc mg_route_init(mg_snapshot *s)
{
    const mg_config *cfg = s->cfg;
    size_t total = 0;
    s->route_base = calloc(cfg->nmodels ? cfg->nmodels : 1, sizeof(*s->route_base));
    if (s->route_base == NULL)
        return MG_ENOMEM;
    for (size_t i = 0; i < cfg->nmodels; i++) {
        s->route_base[i] = total;
        total += cfg->models[i].ndeployments;
    }
    s->route = calloc(total ? total : 1, sizeof(*s->route));
    s->provider_inflight = calloc(cfg->nproviders ? cfg->nproviders : 1, sizeof(*s->provider_inflight));
    return s->route && s->provider_inflight ? MG_OK : MG_ENOMEM;
}

void mg_route_free(mg_snapshot *s)
{
    free(s->route_base);
    free(s->route);
    free(s->provider_inflight);
}

static mg_route_state *state_of(const mg_snapshot *s, const mg_cfg_model *m, size_t idx)
{
    size_t mi = (size_t)(m - s->cfg->models);
    return &s->route[s->route_base[mi] + idx];
}

static size_t provider_index(const mg_snapshot *s, const mg_cfg_deployment *d)
{
    const mg_cfg_provider *p = mg_config_provider(s->cfg, d->provider);
    return p ? (size_t)(p - s->cfg->providers) : SIZE_MAX;
}

bool mg_route_any_usable(const mg_snapshot *s)
{
    uint64_t now = mg_now_ms();
    for (size_t mi = 0; mi < s->cfg->nmodels; mi++) {
        const mg_cfg_model *m = &s->cfg->models[mi];
        for (size_t i = 0; i < m->ndeployments; i++) {
            uint64_t until = atomic_load_explicit(&state_of(s, m, i)->open_until_ms, memory_order_relaxed);
            if (until == 0 || now >= until)
                return true;
        }
    }
    return false;
}

/* Whether the breaker lets a request through now; claims the half-open
 * probe when the cooldown is over. */
static bool breaker_admits(mg_route_state *st, uint64_t now)
{
    uint64_t until = atomic_load_explicit(&st->open_until_ms, memory_order_relaxed);
    if (until == 0)
        return true;
    if (now < until)
        return false;
    bool expected = false;
    return atomic_compare_exchange_strong(&st->probing, &expected, true);
}

static bool slot_take(const mg_snapshot *s, const mg_cfg_deployment *d)
{
    size_t pi = provider_index(s, d);
    if (pi == SIZE_MAX)
        return false;
    int max = s->cfg->providers[pi].max_concurrency;
    unsigned prev = atomic_fetch_add_explicit(&s->provider_inflight[pi], 1, memory_order_relaxed);
    if (max > 0 && prev >= (unsigned)max) {
        atomic_fetch_sub_explicit(&s->provider_inflight[pi], 1, memory_order_relaxed);
        return false;
    }
    return true;
}

mg_route_pick_rc mg_route_pick(const mg_snapshot *s, const mg_cfg_model *m, uint64_t tried,
                               uint64_t rnd, size_t *idx)
{
    uint64_t now = mg_now_ms();
    size_t n = m->ndeployments < MG_ROUTE_MAX_DEPLOYMENTS ? m->ndeployments : MG_ROUTE_MAX_DEPLOYMENTS;
    bool saw_open = false, saw_busy = false;
    /* Weighted choice among the untried; if the chosen one refuses, mark it
     * and choose again among the rest. */
    for (size_t round = 0; round < n; round++) {
        uint32_t total = 0;
        for (size_t i = 0; i < n; i++)
            if (!(tried & (1ull << i)))
                total += (uint32_t)m->deployments[i].weight;
        if (total == 0)
            break;
        uint32_t r = (uint32_t)((rnd >> 11) % total);
        rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
        size_t pick = n;
        for (size_t i = 0; i < n; i++) {
            if (tried & (1ull << i))
                continue;
            if (r < (uint32_t)m->deployments[i].weight) {
                pick = i;
                break;
            }
            r -= (uint32_t)m->deployments[i].weight;
        }
        if (pick == n)
            break;
        tried |= 1ull << pick;
        mg_route_state *st = state_of(s, m, pick);
        if (!breaker_admits(st, now)) {
            saw_open = true;
            continue;
        }
        if (!slot_take(s, &m->deployments[pick])) {
            if (atomic_load(&st->open_until_ms) != 0)
                atomic_store(&st->probing, false);   /* give the probe back */
            saw_busy = true;
            continue;
        }
        *idx = pick;
        return MG_ROUTE_OK;
    }
    return saw_open ? MG_ROUTE_OPEN : saw_busy ? MG_ROUTE_BUSY : MG_ROUTE_NONE_LEFT;
}

void mg_route_done(const mg_snapshot *s, const mg_cfg_model *m, size_t idx, mg_route_outcome o)
{
    size_t pi = provider_index(s, &m->deployments[idx]);
    if (pi != SIZE_MAX)
        atomic_fetch_sub_explicit(&s->provider_inflight[pi], 1, memory_order_relaxed);
    mg_route_state *st = state_of(s, m, idx);
    if (o == MG_ROUTE_NEUTRAL) {
        atomic_store_explicit(&st->probing, false, memory_order_relaxed);
        return;
    }
    if (o == MG_ROUTE_HEALTHY) {
        atomic_store_explicit(&st->failures, 0, memory_order_relaxed);
        atomic_store_explicit(&st->open_until_ms, 0, memory_order_relaxed);
        atomic_store_explicit(&st->probing, false, memory_order_relaxed);
        return;
    }
    unsigned f = atomic_fetch_add_explicit(&st->failures, 1, memory_order_relaxed) + 1;
    bool was_probe = atomic_load(&st->probing);
    if (f >= MG_ROUTE_BREAKER_FAILURES || was_probe) {
        atomic_store_explicit(&st->open_until_ms, mg_now_ms() + MG_ROUTE_BREAKER_COOLDOWN_MS,
                              memory_order_relaxed);
        atomic_store_explicit(&st->probing, false, memory_order_relaxed);
    }
}

bool mg_route_retry_budget_take(double *bank)
{
    if (*bank < 1.0)
        return false;
    *bank -= 1.0;
    return true;
}

void mg_route_retry_budget_earn(double *bank)
{
    *bank += 0.2;
    if (*bank > 10.0)
        *bank = 10.0;
}
