/* modelgate — unit tests: limits arithmetic (sliding windows and their
 * expiry, Retry-After, budget reserve/settle/release and period rollover,
 * hard caps under threads, prices, estimates, the max_tokens clamp).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "policy/policy.h"

#include <pthread.h>

T_TEST(window_counts_and_expires)
{
    mg_policy_window w = {0};
    uint64_t t0 = 1000000;
    mg_policy_window_add(&w, t0, 5);
    mg_policy_window_add(&w, t0 + 10, 3);
    mg_policy_window_add(&w, t0 + 10, 2);
    T_EQ_INT(mg_policy_window_sum(&w, t0 + 10), 10);
    T_EQ_INT(mg_policy_window_sum(&w, t0 + 59), 10);
    T_EQ_INT(mg_policy_window_sum(&w, t0 + 60), 5);    /* the first second left the window */
    T_EQ_INT(mg_policy_window_sum(&w, t0 + 70), 0);
    /* a bucket reused a minute later starts from zero */
    mg_policy_window_add(&w, t0 + 60, 1);
    T_EQ_INT(mg_policy_window_sum(&w, t0 + 60), 6);
    /* settling corrections may be negative */
    mg_policy_window_add(&w, t0 + 61, -4);
    T_EQ_INT(mg_policy_window_sum(&w, t0 + 61), 2);
    T_EQ_INT(mg_policy_window_sum(&w, t0 + 200), 0);
}

T_TEST(window_admit_and_retry_after)
{
    mg_policy_window w = {0};
    uint64_t t = 5000;
    for (int i = 0; i < 3; i++)
        T_EQ_INT(mg_policy_window_admit(&w, t, 1, 5), 0);      /* 3 at t */
    T_EQ_INT(mg_policy_window_admit(&w, t + 20, 2, 5), 0);      /* 2 at t+20 */
    T_EQ_INT(mg_policy_window_sum(&w, t + 30), 5);
    /* full: one more needs the 3 from t to expire, at t+60 → 30 s from t+30 */
    T_EQ_INT(mg_policy_window_admit(&w, t + 30, 1, 5), 30);
    T_EQ_INT(mg_policy_window_sum(&w, t + 30), 5);              /* refusal adds nothing */
    T_EQ_INT(mg_policy_window_admit(&w, t + 60, 1, 5), 0);
    /* needing more than the t+20 bucket frees: whole window */
    T_EQ_INT(mg_policy_window_admit(&w, t + 61, 4, 5), 19);
    T_EQ_INT(mg_policy_window_admit(&w, t + 61, 6, 5), 60);     /* never fits */
    T_EQ_INT(mg_policy_window_admit(&w, t + 61, 1000, -1), 0);  /* unlimited */
}

T_TEST(budget_reserve_settle_release)
{
    mg_policy_budget b = {0};
    mg_policy_reservation r1, r2, r3;
    T_CHECK(mg_policy_budget_reserve(&b, 7, 100, 60, &r1));
    T_CHECK(!mg_policy_budget_reserve(&b, 7, 100, 50, &r2));     /* 60 + 50 > 100 */
    T_CHECK(mg_policy_budget_reserve(&b, 7, 100, 40, &r2));      /* exactly at the cap */
    mg_policy_budget_settle(&b, &r1, 25);                         /* real use below the worst case */
    T_EQ_INT(mg_policy_budget_used(&b, 7), 25);
    T_CHECK(mg_policy_budget_reserve(&b, 7, 100, 35, &r3));      /* 25 + 40 + 35 = 100 */
    mg_policy_budget_release(&b, &r3);                            /* failed upstream */
    mg_policy_budget_release(&b, &r3);                            /* idempotent */
    mg_policy_budget_settle(&b, &r2, 40);
    T_EQ_INT(mg_policy_budget_used(&b, 7), 65);
    T_CHECK(mg_policy_budget_reserve(&b, 7, 100, 35, &r3));
    T_CHECK(!mg_policy_budget_reserve(&b, 7, 100, 1, &r1));
    /* next period: counters start again; the old reservation is dropped */
    T_CHECK(mg_policy_budget_reserve(&b, 8, 100, 100, &r1));
    mg_policy_budget_settle(&b, &r3, 35);
    T_EQ_INT(mg_policy_budget_used(&b, 8), 0);
    T_EQ_INT(mg_policy_budget_used(&b, 7), 0);
    mg_policy_budget_settle(&b, &r1, 10);
    T_EQ_INT(mg_policy_budget_used(&b, 8), 10);
}

typedef struct { mg_policy_budget *b; int admitted; } race_arg;

static void *racer(void *p)
{
    race_arg *a = p;
    for (int i = 0; i < 20000; i++) {
        mg_policy_reservation r;
        if (mg_policy_budget_reserve(a->b, 1, 1000, 3, &r)) {
            a->admitted++;
            if (i % 2)
                mg_policy_budget_release(a->b, &r);
            else
                mg_policy_budget_settle(a->b, &r, 3);
        }
    }
    return NULL;
}

T_TEST(budget_hard_cap_under_threads)
{
    mg_policy_budget b = {0};
    race_arg args[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (race_arg){ &b, 0 };
        pthread_create(&th[i], NULL, racer, &args[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    /* settled amounts never exceed the cap: at most 333 settles of 3 */
    T_CHECK(mg_policy_budget_used(&b, 1) <= 1000);
    T_CHECK(mg_policy_budget_used(&b, 1) >= 990);
    T_EQ_INT(atomic_load(&b.committed), mg_policy_budget_used(&b, 1));
}

T_TEST(budgets_all_or_nothing)
{
    mg_policy_budgets b;
    memset(&b, 0, sizeof(b));
    mg_policy_limits lim;
    mg_policy_limits_none(&lim);
    lim.v[MG_POLICY_LIM_TOKENS_DAY] = 1000;
    lim.v[MG_POLICY_LIM_USD_MONTH] = 5000000;      /* $5 */
    int64_t now = 1718000000;                      /* 2024-06-10 06:13:20 UTC */
    mg_policy_budget_hold h;
    mg_policy_limit which = MG_POLICY_LIM__COUNT;
    int64_t retry = 0;
    T_CHECK(mg_policy_budgets_reserve(&b, &lim, now, 800, 4000000, &h, &which, &retry));
    /* tokens fit (800+100), USD does not (4+2 > 5): nothing stays reserved */
    T_CHECK(!mg_policy_budgets_reserve(&b, &lim, now, 100, 2000000, &h, &which, &retry));
    T_EQ_INT(which, MG_POLICY_LIM_USD_MONTH);
    T_EQ_INT(retry, mg_policy_seconds_to_next_month(now));
    T_EQ_INT(atomic_load(&b.tokens_day.committed), 800);
    T_CHECK(!mg_policy_budgets_reserve(&b, &lim, now, 300, 1, &h, &which, &retry));
    T_EQ_INT(which, MG_POLICY_LIM_TOKENS_DAY);
    T_EQ_INT(retry, 86400 - (now % 86400));
}

T_TEST(periods)
{
    int64_t t = 1718000000;                        /* 2024-06-10 */
    T_EQ_INT(mg_policy_day_id(t), 19884);
    T_EQ_INT(mg_policy_month_id(t), 2024 * 12 + 5);
    T_EQ_INT(mg_policy_seconds_to_next_day(19884LL * 86400), 86400);
    /* 2024-07-01 00:00:00 UTC = 1719792000 */
    T_EQ_INT(mg_policy_seconds_to_next_month(t), 1719792000 - t);
    /* December rolls into January: 2024-12-31 23:59:59 */
    T_EQ_INT(mg_policy_seconds_to_next_month(1735689599), 1);
}

T_TEST(prices)
{
    /* gpt-4o-mini: $0.15 / $0.60 per Mtok = 0.15 / 0.60 micro-USD per token */
    T_EQ_INT(mg_policy_cost_micro_usd(1000, 500, 0.15, 0.60), 450);
    T_EQ_INT(mg_policy_cost_micro_usd(1, 1, 0.15, 0.60), 1);    /* rounds up */
    T_EQ_INT(mg_policy_cost_micro_usd(1000000, 0, 2.5, 10), 2500000);
    T_EQ_INT(mg_policy_cost_micro_usd(0, 0, 1, 1), 0);
    T_EQ_INT(mg_policy_cost_micro_usd(-5, 10, 1, 1), 10);
}

T_TEST(estimates_overcount)
{
    cJSON *b = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"0123456789012345678901234567890123456789\"},"
                           "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"abcdefghij\"}]}]}");
    int64_t est = mg_policy_estimate_prompt_tokens(b, MG_API_CHAT);
    /* ~ (40 + 10 + keys) / 2 + 8 per message: well above 50/4 real tokens */
    T_CHECK(est >= 25 + 16);
    T_CHECK(est < 200);
    cJSON_Delete(b);
    b = cJSON_Parse("{\"input\":[\"aaaa\",\"bbbb\"]}");
    T_CHECK(mg_policy_estimate_prompt_tokens(b, MG_API_EMBEDDINGS) >= 4);
    cJSON_Delete(b);
}

static int64_t num(const cJSON *b, const char *k)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(b, k);
    return cJSON_IsNumber(n) ? (int64_t)n->valuedouble : -1;
}

T_TEST(max_tokens_clamp)
{
    int64_t eff;
    bool clamped;
    cJSON *b = cJSON_Parse("{\"max_tokens\":10000}");
    T_EQ_INT(mg_policy_clamp_max_tokens(b, 4096, &eff, &clamped), MG_OK);
    T_CHECK(clamped);
    T_EQ_INT(eff, 4096);
    T_EQ_INT(num(b, "max_tokens"), 4096);
    cJSON_Delete(b);

    b = cJSON_Parse("{\"max_tokens\":100}");
    mg_policy_clamp_max_tokens(b, 4096, &eff, &clamped);
    T_CHECK(!clamped);
    T_EQ_INT(eff, 100);
    T_EQ_INT(num(b, "max_tokens"), 100);
    cJSON_Delete(b);

    b = cJSON_Parse("{\"model\":\"x\"}");              /* nothing asked: the cap is set */
    mg_policy_clamp_max_tokens(b, 512, &eff, &clamped);
    T_CHECK(clamped);
    T_EQ_INT(num(b, "max_tokens"), 512);
    cJSON_Delete(b);

    b = cJSON_Parse("{\"max_completion_tokens\":9000}"); /* the field the client used */
    mg_policy_clamp_max_tokens(b, 512, &eff, &clamped);
    T_CHECK(clamped);
    T_EQ_INT(num(b, "max_completion_tokens"), 512);
    T_EQ_INT(num(b, "max_tokens"), -1);
    cJSON_Delete(b);

    b = cJSON_Parse("{\"model\":\"x\"}");              /* no cap, nothing asked */
    mg_policy_clamp_max_tokens(b, -1, &eff, &clamped);
    T_CHECK(!clamped);
    T_EQ_INT(eff, -1);
    T_EQ_INT(num(b, "max_tokens"), -1);
    cJSON_Delete(b);
}

/* The worst case multiplies by the completions asked for. */
T_TEST(completions_count)
{
    static const struct { const char *json; long long want; } cases[] = {
        {"{}", 1}, {"{\"n\":1}", 1}, {"{\"n\":3}", 3}, {"{\"n\":2.5}", 3}, {"{\"n\":0}", 1},
        {"{\"n\":-4}", 1}, {"{\"n\":\"7\"}", 1}, {"{\"n\":128}", 128}, {"{\"n\":129}", -1},
        {"{\"n\":1e300}", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *b = cJSON_Parse(cases[i].json);
        T_CHECK(b != NULL);
        T_EQ_INT(mg_policy_completions(b), cases[i].want);
        cJSON_Delete(b);
    }
}

T_MAIN("policy_limits",
       T_CASE(window_counts_and_expires), T_CASE(window_admit_and_retry_after),
       T_CASE(budget_reserve_settle_release), T_CASE(budget_hard_cap_under_threads),
       T_CASE(budgets_all_or_nothing), T_CASE(periods), T_CASE(prices), T_CASE(estimates_overcount),
       T_CASE(max_tokens_clamp), T_CASE(completions_count))
