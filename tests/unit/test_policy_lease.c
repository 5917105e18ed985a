/* modelgate — unit tests: budget lease arithmetic (chunk sizes, denial) and
 * mg_policy_describe (what /auth/me shows) before and after a request.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "policy/lease.h"
#include "policy/policy.h"

#include <cjson/cJSON.h>

T_TEST(lease_chunk_sizes)
{
    /* one instance: a quarter of the limit, or what parked requests want */
    T_EQ_INT(mg_policy_lease_chunk(1000, 1000, 100, 100, 1), 250);
    T_EQ_INT(mg_policy_lease_chunk(1000, 1000, 100, 600, 1), 600);
    /* four instances share: a sixteenth each */
    T_EQ_INT(mg_policy_lease_chunk(1600, 1600, 50, 50, 4), 100);
    /* never below what one request needs, never above what is left */
    T_EQ_INT(mg_policy_lease_chunk(1600, 1600, 300, 300, 4), 300);
    T_EQ_INT(mg_policy_lease_chunk(1000, 120, 100, 900, 1), 120);
    /* no room for the smallest need: denied */
    T_EQ_INT(mg_policy_lease_chunk(1000, 99, 100, 100, 1), 0);
    T_EQ_INT(mg_policy_lease_chunk(1000, 0, 1, 1, 1), 0);
    /* need 0 counts as 1 (a refill ahead of need) */
    T_EQ_INT(mg_policy_lease_chunk(4, 4, 0, 0, 8), 1);
}

T_TEST(leases_off_without_database)
{
    T_CHECK(!mg_policy_lease_enabled());
    mg_policy_lease_set ls = {0};
    mg_policy_budgets b = {0};
    ls.budgets = &b;
    ls.scope = "u:test";
    mg_policy_limits lim;
    mg_policy_limits_none(&lim);
    lim.v[MG_POLICY_LIM_TOKENS_DAY] = 1000;
    mg_policy_budget_hold h;
    mg_policy_limit which = MG_POLICY_LIM_RPM;
    int64_t ra = 0;
    /* no lease thread has ever succeeded: nothing is covered and there is
     * nobody to wait for, so the request is refused (fail closed) */
    T_EQ_INT(mg_policy_lease_reserve(&ls, &b, &lim, 1700000000, 10, 0, false, &h, &which, &ra),
             MG_POLICY_LEASE_REFUSED);
    T_EQ_INT(which, MG_POLICY_LIM_TOKENS_DAY);
    T_CHECK(ra >= 1);
    /* over the limit itself is refused whatever the lease */
    T_EQ_INT(mg_policy_lease_reserve(&ls, &b, &lim, 1700000000, 2000, 0, true, &h, &which, &ra),
             MG_POLICY_LEASE_REFUSED);
}

static const char *POLICY =
    "{\"roles\":{\"dev\":{\"models\":[\"gpt-*\"],\"filters\":[\"pii\"],"
    "\"limits\":{\"requests_per_minute\":10,\"tokens_per_day\":5000,\"max_tokens\":100},"
    "\"team_limits\":{\"usd_per_month\":25}}},"
    "\"filters\":{\"pii\":{\"detectors\":[\"email\"],\"action\":\"redact\",\"direction\":\"both\"}}}";

static const cJSON *limit_entry(const cJSON *limits, const char *scope, const char *name)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, limits) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "scope");
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(e, "limit");
        if (cJSON_IsString(s) && cJSON_IsString(l) && strcmp(s->valuestring, scope) == 0 &&
            strcmp(l->valuestring, name) == 0)
            return e;
    }
    return NULL;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static cJSON *describe(mg_req *req)
{
    mg_buf b = {0};
    mg_buf_append_str(&b, "{\"sub\":\"x\"}");
    if (mg_policy_describe(req, &b) != MG_OK) {
        mg_buf_free(&b);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(b.p, b.len);
    mg_buf_free(&b);
    return j;
}

T_TEST(describe_shows_policy_and_what_is_left)
{
    mg_buf errs = {0};
    mg_policy *p = mg_policy_load(POLICY, strlen(POLICY), &errs);
    T_CHECK(p != NULL);
    const char *roles[] = {"dev"};
    mg_policy_effective *e = mg_policy_effective_new(p, roles, 1, NULL);
    mg_policy_unref(p);
    T_CHECK(e != NULL);
    mg_cfg_model model = {.name = "gpt-test", .has_price = true, .input_per_mtok = 1, .output_per_mtok = 2};
    mg_req req = {0};
    req.pool = mg_pool_new(4096);
    req.policy = e;
    req.principal.subject = "describe-user";
    req.api = MG_API_CHAT;
    req.model = &model;
    req.json = cJSON_Parse("{\"model\":\"gpt-test\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");

    cJSON *d = describe(&req);
    T_CHECK(d != NULL);
    T_EQ_STR(cJSON_GetObjectItemCaseSensitive(d, "sub")->valuestring, "x");
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(d, "policy");
    T_EQ_STR(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pol, "models"), 0)->valuestring, "gpt-*");
    const cJSON *f = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pol, "filters"), 0);
    T_EQ_STR(cJSON_GetObjectItemCaseSensitive(f, "name")->valuestring, "pii");
    T_EQ_STR(cJSON_GetObjectItemCaseSensitive(f, "action")->valuestring, "redact");
    T_EQ_STR(cJSON_GetObjectItemCaseSensitive(f, "direction")->valuestring, "both");
    const cJSON *limits = cJSON_GetObjectItemCaseSensitive(pol, "limits");
    const cJSON *rpm = limit_entry(limits, "user", "requests_per_minute");
    const cJSON *tday = limit_entry(limits, "user", "tokens_per_day");
    const cJSON *team = limit_entry(limits, "role:dev", "usd_per_month");
    T_CHECK(rpm && tday && team && limit_entry(limits, "user", "max_tokens"));
    T_EQ_INT((int)num(rpm, "used"), 0);
    T_EQ_INT((int)num(rpm, "left"), 10);
    T_EQ_INT((int)num(tday, "left"), 5000);
    T_CHECK(num(tday, "resets_in_s") >= 1 && num(tday, "resets_in_s") <= 86400);
    T_CHECK(num(team, "value") == 25.0);
    cJSON_Delete(d);

    /* one request through the limits stage, settled with real usage */
    T_EQ_INT(mg_policy_limits_stage(&req), MG_STAGE_NEXT);
    req.usage.prompt_tokens = 30;
    req.usage.completion_tokens = 70;
    mg_policy_settle(&req);

    d = describe(&req);
    T_CHECK(d != NULL);
    limits = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d, "policy"), "limits");
    rpm = limit_entry(limits, "user", "requests_per_minute");
    tday = limit_entry(limits, "user", "tokens_per_day");
    team = limit_entry(limits, "role:dev", "usd_per_month");
    T_EQ_INT((int)num(rpm, "used"), 1);
    T_EQ_INT((int)num(rpm, "left"), 9);
    T_EQ_INT((int)num(tday, "used"), 100);
    T_EQ_INT((int)num(tday, "reserved"), 0);
    T_EQ_INT((int)num(tday, "left"), 4900);
    /* 30 * $1 + 70 * $2 per million tokens = $0.000170 */
    T_CHECK(num(team, "used") > 0.000169 && num(team, "used") < 0.000171);
    cJSON_Delete(d);

    /* master and unresolved principals */
    mg_req m = {0};
    m.principal.master = true;
    d = describe(&m);
    T_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d, "policy"), "master")));
    cJSON_Delete(d);
    mg_req none = {0};
    d = describe(&none);
    T_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(d, "policy")));
    cJSON_Delete(d);
    mg_buf bad = {0};
    mg_buf_append_str(&bad, "[1]");
    T_EQ_INT(mg_policy_describe(&none, &bad), MG_ERR);
    mg_buf_free(&bad);

    mg_pool_free(req.pool);   /* frees req.json's cleanup too, if registered */
    cJSON_Delete(req.json);
    mg_policy_effective_free(e);
    mg_buf_free(&errs);
}

T_MAIN("policy_lease", T_CASE(lease_chunk_sizes), T_CASE(leases_off_without_database),
       T_CASE(describe_shows_policy_and_what_is_left))
