/* modelgate — limits arithmetic: sliding windows, budget reservations,
 * prices, estimates, the max_tokens cap.
 *
 * Pure functions over counters made of atomics, so the same code runs on
 * in-process counters now and on shared-memory or lease-backed counters
 * later. Nothing here reads a clock: callers pass the second they mean.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/policy_int.h"

#include <math.h>
#include <time.h>

/* ---- sliding window ---- */

static uint64_t pack(uint32_t sec, int32_t count)
{
    return (uint64_t)sec << 32 | (uint32_t)count;
}

static uint32_t bucket_sec(uint64_t b) { return (uint32_t)(b >> 32); }
static int32_t bucket_count(uint64_t b) { return (int32_t)(uint32_t)b; }

/* Whether a bucket stamped sec is inside the window ending at now. Works
 * across the 32-bit wrap of the second counter. */
static bool live(uint32_t sec, uint32_t now) { return (uint32_t)(now - sec) < MG_POLICY_WINDOW_SECONDS; }

int64_t mg_policy_window_sum(const mg_policy_window *w, uint64_t now_s)
{
    uint32_t now = (uint32_t)now_s;
    int64_t sum = 0;
    for (size_t i = 0; i < MG_POLICY_WINDOW_SECONDS; i++) {
        uint64_t b = atomic_load_explicit(&w->bucket[i], memory_order_relaxed);
        if (b != 0 && live(bucket_sec(b), now))
            sum += bucket_count(b);
    }
    /* a settle's negative correction may outlive the charge it corrects */
    return sum < 0 ? 0 : sum;
}

void mg_policy_window_add(mg_policy_window *w, uint64_t now_s, int64_t delta)
{
    uint32_t now = (uint32_t)now_s;
    _Atomic uint64_t *slot = &w->bucket[now_s % MG_POLICY_WINDOW_SECONDS];
    uint64_t old = atomic_load_explicit(slot, memory_order_relaxed), nv;
    do {
        int64_t c = (old != 0 && bucket_sec(old) == now) ? bucket_count(old) + delta : delta;
        if (c > INT32_MAX)
            c = INT32_MAX;
        if (c < INT32_MIN)
            c = INT32_MIN;
        nv = pack(now, (int32_t)c);
    } while (!atomic_compare_exchange_weak_explicit(slot, &old, nv, memory_order_relaxed,
                                                    memory_order_relaxed));
}

int mg_policy_window_admit(mg_policy_window *w, uint64_t now_s, int64_t n, int64_t limit)
{
    if (limit < 0) {
        mg_policy_window_add(w, now_s, n);
        return 0;
    }
    int64_t sum = mg_policy_window_sum(w, now_s);
    if (sum + n <= limit) {
        mg_policy_window_add(w, now_s, n);
        return 0;
    }
    if (n > limit)
        return MG_POLICY_WINDOW_SECONDS;
    /* walk from the oldest second: when have enough charges expired? */
    int64_t need = sum + n - limit, freed = 0;
    uint32_t now = (uint32_t)now_s;
    for (uint32_t age = MG_POLICY_WINDOW_SECONDS - 1; age > 0; age--) {
        uint32_t sec = now - age;
        uint64_t b = atomic_load_explicit(&w->bucket[(now_s - age) % MG_POLICY_WINDOW_SECONDS],
                                          memory_order_relaxed);
        if (b != 0 && bucket_sec(b) == sec)
            freed += bucket_count(b);
        if (freed >= need)
            return (int)(MG_POLICY_WINDOW_SECONDS - age);
    }
    return MG_POLICY_WINDOW_SECONDS;
}

/* ---- budgets ---- */

/* A new period id resets the counter. Whoever moves the id resets; a
 * reservation racing with the reset at the boundary may be forgotten
 * (the ledger still has it), which only ever errs toward the new period. */
static void budget_roll(mg_policy_budget *b, int64_t period)
{
    int64_t cur = atomic_load_explicit(&b->period, memory_order_acquire);
    while (period > cur) {
        if (atomic_compare_exchange_weak_explicit(&b->period, &cur, period, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            atomic_store_explicit(&b->committed, 0, memory_order_release);
            atomic_store_explicit(&b->used, 0, memory_order_release);
            return;
        }
    }
}

bool mg_policy_budget_reserve(mg_policy_budget *b, int64_t period, int64_t limit,
                              int64_t amount, mg_policy_reservation *res)
{
    budget_roll(b, period);
    if (amount < 0)
        amount = 0;
    int64_t c = atomic_load_explicit(&b->committed, memory_order_acquire);
    do {
        /* unlimited still counts, so a limit added mid-period sees the use */
        if (limit >= 0 && c + amount > limit) {
            res->held = false;
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(&b->committed, &c, c + amount,
                                                    memory_order_acq_rel, memory_order_acquire));
    res->amount = amount;
    res->period = atomic_load_explicit(&b->period, memory_order_acquire);
    res->held = true;
    return true;
}

void mg_policy_budget_settle(mg_policy_budget *b, mg_policy_reservation *res, int64_t actual)
{
    if (!res->held)
        return;
    res->held = false;
    if (actual < 0)
        actual = 0;
    if (atomic_load_explicit(&b->period, memory_order_acquire) != res->period)
        return;
    atomic_fetch_add_explicit(&b->committed, actual - res->amount, memory_order_acq_rel);
    atomic_fetch_add_explicit(&b->used, actual, memory_order_acq_rel);
}

void mg_policy_budget_release(mg_policy_budget *b, mg_policy_reservation *res)
{
    if (!res->held)
        return;
    res->held = false;
    if (atomic_load_explicit(&b->period, memory_order_acquire) == res->period)
        atomic_fetch_sub_explicit(&b->committed, res->amount, memory_order_acq_rel);
}

int64_t mg_policy_budget_used(const mg_policy_budget *b, int64_t period)
{
    if (atomic_load_explicit(&b->period, memory_order_acquire) != period)
        return 0;
    return atomic_load_explicit(&b->used, memory_order_acquire);
}

/* ---- periods (UTC) ---- */

int64_t mg_policy_day_id(int64_t unix_s)
{
    return unix_s >= 0 ? unix_s / 86400 : (unix_s - 86399) / 86400;
}

int64_t mg_policy_month_id(int64_t unix_s)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        return 0;
    return ((int64_t)tm.tm_year + 1900) * 12 + tm.tm_mon;
}

int64_t mg_policy_seconds_to_next_day(int64_t unix_s)
{
    return (mg_policy_day_id(unix_s) + 1) * 86400 - unix_s;
}

int64_t mg_policy_seconds_to_next_month(int64_t unix_s)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        return 86400;
    struct tm next = { .tm_year = tm.tm_year + (tm.tm_mon == 11), .tm_mon = (tm.tm_mon + 1) % 12,
                       .tm_mday = 1 };
    return (int64_t)timegm(&next) - unix_s;
}

/* ---- all budgets of a key ---- */

bool mg_policy_budgets_reserve(mg_policy_budgets *b, const mg_policy_limits *lim,
                               int64_t unix_s, int64_t tokens, int64_t micro_usd,
                               mg_policy_budget_hold *h, mg_policy_limit *which,
                               int64_t *retry_after_s)
{
    int64_t day = mg_policy_day_id(unix_s), month = mg_policy_month_id(unix_s);
    struct {
        mg_policy_budget *b;
        mg_policy_reservation *r;
        mg_policy_limit lim;
        int64_t period, amount;
        bool monthly;
    } steps[] = {
        { &b->tokens_day, &h->tokens_day, MG_POLICY_LIM_TOKENS_DAY, day, tokens, false },
        { &b->tokens_month, &h->tokens_month, MG_POLICY_LIM_TOKENS_MONTH, month, tokens, true },
        { &b->usd_day, &h->usd_day, MG_POLICY_LIM_USD_DAY, day, micro_usd, false },
        { &b->usd_month, &h->usd_month, MG_POLICY_LIM_USD_MONTH, month, micro_usd, true },
    };
    memset(h, 0, sizeof(*h));
    for (size_t i = 0; i < MG_ARRAY_LEN(steps); i++) {
        if (mg_policy_budget_reserve(steps[i].b, steps[i].period, lim->v[steps[i].lim],
                                     steps[i].amount, steps[i].r))
            continue;
        for (size_t j = 0; j < i; j++)
            mg_policy_budget_release(steps[j].b, steps[j].r);
        if (which != NULL)
            *which = steps[i].lim;
        if (retry_after_s != NULL)
            *retry_after_s = steps[i].monthly ? mg_policy_seconds_to_next_month(unix_s)
                                              : mg_policy_seconds_to_next_day(unix_s);
        return false;
    }
    return true;
}

void mg_policy_budgets_settle(mg_policy_budgets *b, mg_policy_budget_hold *h,
                              int64_t tokens, int64_t micro_usd)
{
    mg_policy_budget_settle(&b->tokens_day, &h->tokens_day, tokens);
    mg_policy_budget_settle(&b->tokens_month, &h->tokens_month, tokens);
    mg_policy_budget_settle(&b->usd_day, &h->usd_day, micro_usd);
    mg_policy_budget_settle(&b->usd_month, &h->usd_month, micro_usd);
}

void mg_policy_budgets_release(mg_policy_budgets *b, mg_policy_budget_hold *h)
{
    mg_policy_budget_release(&b->tokens_day, &h->tokens_day);
    mg_policy_budget_release(&b->tokens_month, &h->tokens_month);
    mg_policy_budget_release(&b->usd_day, &h->usd_day);
    mg_policy_budget_release(&b->usd_month, &h->usd_month);
}

/* ---- prices and estimates ---- */

int64_t mg_policy_cost_micro_usd(int64_t prompt_tokens, int64_t completion_tokens,
                                 double input_per_mtok, double output_per_mtok)
{
    double c = (double)(prompt_tokens > 0 ? prompt_tokens : 0) * input_per_mtok +
               (double)(completion_tokens > 0 ? completion_tokens : 0) * output_per_mtok;
    if (!(c > 0))
        return 0;
    /* 1e-9 absorbs binary noise (0.15 * 1e6 is not exact) before rounding up */
    c = ceil(c - 1e-9);
    return c >= 9.2e18 ? INT64_MAX : (int64_t)c;
}

#define EST_PER_MESSAGE 8
#define EST_PER_IMAGE 1500

static int64_t est_bytes(const cJSON *n)
{
    int64_t sum = 0;
    for (; n != NULL; n = n->next) {
        if (cJSON_IsString(n) && n->valuestring != NULL)
            sum += (int64_t)strlen(n->valuestring) + (n->string ? (int64_t)strlen(n->string) : 0);
        else if (cJSON_IsObject(n) || cJSON_IsArray(n)) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(n, "type");
            if (cJSON_IsString(type) && strcmp(type->valuestring, "image_url") == 0)
                sum += EST_PER_IMAGE * 2;
            else
                sum += est_bytes(n->child);
        } else if (cJSON_IsNumber(n) && n->string == NULL) {
            sum += 2;   /* token-id input: one token each */
        }
    }
    return sum;
}

int64_t mg_policy_estimate_prompt_tokens(const cJSON *body, mg_api api)
{
    static const char *const fields[] = { "messages", "tools", "functions", "system", "prompt", "input" };
    int64_t bytes = 0, items = 0;
    for (size_t i = 0; i < MG_ARRAY_LEN(fields); i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, fields[i]);
        if (f == NULL)
            continue;
        bytes += cJSON_IsArray(f) || cJSON_IsObject(f) ? est_bytes(f->child) : est_bytes(f);
        if (cJSON_IsArray(f))
            items += cJSON_GetArraySize(f);
    }
    MG_UNUSED(api);
    return (bytes + 1) / 2 + items * EST_PER_MESSAGE + EST_PER_MESSAGE;
}

int64_t mg_policy_completions(const cJSON *body)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "n");
    if (!cJSON_IsNumber(n) || !isfinite(n->valuedouble) || n->valuedouble <= 1)
        return 1;   /* absent, or a value the upstream refuses on its own */
    if (n->valuedouble > MG_POLICY_MAX_CHOICES)
        return -1;
    return (int64_t)ceil(n->valuedouble);
}

mg_rc mg_policy_clamp_max_tokens(cJSON *body, int64_t cap, int64_t *effective, bool *clamped)
{
    *clamped = false;
    *effective = -1;
    const char *field = cJSON_HasObjectItem(body, "max_completion_tokens") ? "max_completion_tokens"
                                                                            : "max_tokens";
    cJSON *item = cJSON_GetObjectItemCaseSensitive(body, field);
    bool has = cJSON_IsNumber(item) && item->valuedouble >= 0 && isfinite(item->valuedouble);
    if (has)
        *effective = (int64_t)item->valuedouble;
    if (cap < 0 || (has && *effective <= cap))
        return MG_OK;
    cJSON *n = cJSON_CreateNumber((double)cap);
    if (n == NULL)
        return MG_ENOMEM;
    if (item != NULL) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(body, field, n)) {
            cJSON_Delete(n);
            return MG_ENOMEM;
        }
    } else if (!cJSON_AddItemToObject(body, field, n)) {
        cJSON_Delete(n);
        return MG_ENOMEM;
    }
    *effective = cap;
    *clamped = true;
    return MG_OK;
}
