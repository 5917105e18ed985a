/* modelgate — unit tests: policy documents (validation with JSON paths,
 * canonical export round trip, diff), globs, role mapping and the
 * "most generous role" rule for effective limits.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "policy/policy.h"

static const char *SPEC_DOC =
    "{\n"
    "  \"roles\": {\n"
    "    \"engineer\": {\n"
    "      \"models\": [\"gpt-4o-mini\", \"llama3*\"],\n"
    "      \"filters\": [\"pii\", \"secrets\"],\n"
    "      \"limits\": { \"requests_per_minute\": 60, \"tokens_per_minute\": 200000,\n"
    "                  \"tokens_per_day\": 2000000, \"usd_per_day\": 20, \"usd_per_month\": 300,\n"
    "                  \"max_tokens\": 4096 },\n"
    "      \"team_limits\": { \"usd_per_month\": 5000 },\n"
    "      \"permissions\": []\n"
    "    },\n"
    "    \"admin\":   { \"models\": [\"*\"], \"permissions\": [\"policy:write\", \"keys:write\", \"usage:read\", \"audit:read\"] },\n"
    "    \"finance\": { \"models\": [], \"permissions\": [\"usage:read\"] }\n"
    "  },\n"
    "  \"role_mappings\": [\n"
    "    { \"claim\": \"groups\", \"equals\": \"ai-users\", \"role\": \"engineer\" },\n"
    "    { \"claim\": \"groups\", \"equals\": \"admins\",   \"role\": \"admin\" }\n"
    "  ],\n"
    "  \"filters\": {\n"
    "    \"pii\":     { \"detectors\": [\"email\", \"phone\", \"credit_card\", \"ssn\", \"iban\"], \"action\": \"redact\", \"direction\": \"input\" },\n"
    "    \"secrets\": { \"detectors\": [\"api_key\", \"private_key\"], \"action\": \"block\", \"direction\": \"both\" },\n"
    "    \"codenames\": { \"patterns\": [\"(?i)\\\\bproject\\\\s+bluebird\\\\b\"], \"action\": \"block\", \"direction\": \"input\" }\n"
    "  }\n"
    "}\n";

static const char *cstr(mg_buf *b)
{
    mg_buf_append(b, "", 1);
    b->len--;
    return b->p;
}

/* Errors of a document that must fail, as one string. */
static char err_text[8192];
static const char *errors_of(const char *json)
{
    mg_buf errs = {0};
    mg_policy_doc *d = mg_policy_doc_parse(json, strlen(json), &errs);
    snprintf(err_text, sizeof(err_text), "%s", d != NULL ? "(accepted)" : errs.len ? cstr(&errs) : "(no message)");
    mg_policy_doc_free(d);
    mg_buf_free(&errs);
    return err_text;
}

static bool has_error(const char *json, const char *line)
{
    const char *all = errors_of(json);
    bool ok = strstr(all, line) != NULL;
    if (!ok)
        fprintf(stderr, "  expected \"%s\" in:\n%s\n", line, all);
    return ok;
}

T_TEST(spec_example_parses)
{
    mg_buf errs = {0};
    mg_policy_doc *d = mg_policy_doc_parse(SPEC_DOC, strlen(SPEC_DOC), &errs);
    T_CHECK(d != NULL);
    T_EQ_INT(errs.len, 0);
    if (d == NULL)
        return;
    T_EQ_INT(d->n_roles, 3);
    T_EQ_STR(d->roles[0].name, "admin");         /* sorted */
    T_EQ_STR(d->roles[1].name, "engineer");
    T_EQ_INT(d->roles[1].limits.v[MG_POLICY_LIM_USD_DAY], 20000000);
    T_EQ_INT(d->roles[1].limits.v[MG_POLICY_LIM_TOKENS_MONTH], MG_POLICY_UNLIMITED);
    T_EQ_INT(d->roles[1].team_limits.v[MG_POLICY_LIM_USD_MONTH], 5000000000LL);
    T_EQ_INT(d->roles[0].permissions, MG_POLICY_PERM_POLICY_WRITE | MG_POLICY_PERM_KEYS_WRITE |
                                          MG_POLICY_PERM_USAGE_READ | MG_POLICY_PERM_AUDIT_READ);
    T_EQ_INT(d->n_filters, 3);
    T_EQ_STR(d->filters[0].name, "codenames");
    T_EQ_INT(d->filters[2].detectors, (1u << MG_POLICY_DET_API_KEY) | (1u << MG_POLICY_DET_PRIVATE_KEY));
    T_EQ_INT(d->filters[2].direction, MG_POLICY_BOTH);
    T_EQ_INT(d->n_mappings, 2);
    T_EQ_STR(d->mappings[1].role, "admin");
    mg_policy_doc_free(d);
    mg_buf_free(&errs);
}

T_TEST(errors_name_json_paths)
{
    T_CHECK(has_error("{\"roles\":{\"engineer\":{\"limits\":{\"usd_per_day\":\"20\"}}}}",
                      "roles.engineer.limits.usd_per_day: must be a number\n"));
    T_CHECK(has_error("{\"roles\":{\"engineer\":{\"limits\":{\"requests_per_minute\":-1}}}}",
                      "roles.engineer.limits.requests_per_minute: must not be negative\n"));
    T_CHECK(has_error("{\"roles\":{\"e\":{\"limits\":{\"tokens_per_day\":1.5}}}}",
                      "roles.e.limits.tokens_per_day: must be a whole number\n"));
    T_CHECK(has_error("{\"roles\":{\"e\":{\"limits\":{\"rpm\":1}}}}", "roles.e.limits.rpm: unknown key\n"));
    T_CHECK(has_error("{\"roles\":{\"e\":{\"team_limits\":{\"max_tokens\":5}}}}",
                      "roles.e.team_limits.max_tokens: unknown key"));
    T_CHECK(has_error("{\"roles\":{\"e\":{\"modles\":[]}}}", "roles.e.modles: unknown key\n"));
    T_CHECK(has_error("{\"rolez\":{}}", "rolez: unknown key\n"));
    T_CHECK(has_error("{\"roles\":{\"e\":{\"models\":[\"a\",3]}}}", "roles.e.models[1]: must be a string\n"));
    T_CHECK(has_error("{\"roles\":{\"e\":{\"models\":\"*\"}}}", "roles.e.models: must be an array of strings\n"));
    T_CHECK(has_error("{\"roles\":{\"e\":{\"filters\":[\"nope\"]}}}",
                      "roles.e.filters[0]: filter \"nope\" is not defined\n"));
    T_CHECK(has_error("{\"roles\":{\"e\":{\"permissions\":[\"usage:read\",\"root\"]}}}",
                      "roles.e.permissions[1]: unknown permission \"root\""));
    T_CHECK(has_error("{\"roles\":{},\"role_mappings\":[{\"claim\":\"groups\",\"equals\":\"x\",\"role\":\"ghost\"}]}",
                      "role_mappings[0].role: role \"ghost\" is not defined\n"));
    T_CHECK(has_error("{\"role_mappings\":[{\"claim\":\"groups\",\"role\":\"x\"}]}",
                      "role_mappings[0].equals: required\n"));
    T_CHECK(has_error("{\"filters\":{\"f\":{\"detectors\":[\"dna\"],\"action\":\"block\",\"direction\":\"input\"}}}",
                      "filters.f.detectors[0]: unknown detector \"dna\""));
    T_CHECK(has_error("{\"filters\":{\"f\":{\"detectors\":[\"email\"],\"action\":\"drop\",\"direction\":\"input\"}}}",
                      "filters.f.action: unknown action \"drop\"\n"));
    T_CHECK(has_error("{\"filters\":{\"f\":{\"detectors\":[\"email\"],\"action\":\"flag\",\"direction\":\"sideways\"}}}",
                      "filters.f.direction: unknown direction \"sideways\"\n"));
    T_CHECK(has_error("{\"filters\":{\"f\":{\"detectors\":[\"email\"]}}}", "filters.f.action: required"));
    T_CHECK(has_error("{\"filters\":{\"f\":{\"action\":\"flag\",\"direction\":\"input\"}}}",
                      "filters.f: needs \"detectors\" or \"patterns\"\n"));
    T_CHECK(has_error("{\"filters\":{\"f\":{\"patterns\":[\"ok\",\"a(b\"],\"action\":\"flag\",\"direction\":\"input\"}}}",
                      "filters.f.patterns[1]: invalid regex at offset 3: missing closing parenthesis\n"));
    T_CHECK(has_error("{\"filters\":{\"f\":{\"patterns\":[\"x*\"],\"action\":\"flag\",\"direction\":\"input\"}}}",
                      "filters.f.patterns[0]: regex can match the empty string\n"));
    T_CHECK(has_error("{\"roles\":{\"a b\":{}}}", "roles.a b: invalid name"));
    T_CHECK(has_error("{\"roles\":{\"e\":{},\"e\":{}}}", "roles.e: duplicate key\n"));
    T_CHECK(has_error("[]", "(document): the policy document must be a JSON object\n"));
    T_CHECK(has_error("{\"roles\":", "(document): invalid JSON"));
    T_CHECK(has_error("{} {}", "(document): unexpected data after the JSON value"));
}

T_TEST(errors_are_all_collected)
{
    const char *all = errors_of("{\"roles\":{\"e\":{\"models\":[1],\"limits\":{\"usd_per_day\":-2},"
                                "\"filters\":[\"x\"]}},\"filters\":{\"f\":{\"action\":\"zap\"}}}");
    int lines = 0;
    for (const char *p = all; *p; p++)
        lines += *p == '\n';
    /* filters.f: needs detectors, action unknown, direction required;
     * roles.e: models[0], usd_per_day, filters[0] */
    T_EQ_INT(lines, 6);
    T_CHECK(strstr(all, "roles.e.models[0]: must be a string") != NULL);
    T_CHECK(strstr(all, "roles.e.limits.usd_per_day: must not be negative") != NULL);
    T_CHECK(strstr(all, "filters.f.direction: required") != NULL);
}

T_TEST(export_round_trip)
{
    mg_buf errs = {0}, a = {0}, b = {0};
    mg_policy_doc *d = mg_policy_doc_parse(SPEC_DOC, strlen(SPEC_DOC), &errs);
    T_CHECK(d != NULL);
    if (d == NULL)
        return;
    T_EQ_INT(mg_policy_doc_export(d, &a), MG_OK);
    mg_policy_doc *d2 = mg_policy_doc_parse(a.p, a.len, &errs);
    T_CHECK(d2 != NULL);
    if (d2 != NULL) {
        T_EQ_INT(mg_policy_doc_export(d2, &b), MG_OK);
        T_EQ_STR(cstr(&a), cstr(&b));       /* canonical: a fixed point */
        mg_buf diff = {0};
        T_EQ_INT(mg_policy_diff(d, d2, &diff), MG_OK);
        T_EQ_INT(diff.len, 0);
        mg_buf_free(&diff);
    }
    const char *s = cstr(&a);
    T_CHECK(strstr(s, "\"usd_per_day\": 20,") != NULL);
    T_CHECK(strstr(s, "\"team_limits\": { \"usd_per_month\": 5000 }") != NULL);
    /* roles in name order, mappings in document order */
    T_CHECK(strstr(s, "\"admin\"") < strstr(s, "\"engineer\"") && strstr(s, "\"engineer\"") < strstr(s, "\"finance\""));
    T_CHECK(strstr(s, "\"ai-users\"") < strstr(s, "\"admins\""));
    T_CHECK(strstr(s, "(?i)\\\\bproject\\\\s+bluebird\\\\b") != NULL);
    mg_policy_doc_free(d);
    mg_policy_doc_free(d2);
    mg_buf_free(&a);
    mg_buf_free(&b);
    mg_buf_free(&errs);
}

T_TEST(export_fractional_usd)
{
    const char *j = "{\"roles\":{\"r\":{\"limits\":{\"usd_per_day\":1.5,\"usd_per_month\":0.000001}}}}";
    mg_buf errs = {0}, out = {0};
    mg_policy_doc *d = mg_policy_doc_parse(j, strlen(j), &errs);
    T_CHECK(d != NULL);
    if (d == NULL)
        return;
    mg_policy_doc_export(d, &out);
    T_CHECK(strstr(cstr(&out), "{ \"usd_per_day\": 1.5, \"usd_per_month\": 0.000001 }") != NULL);
    mg_policy_doc_free(d);
    mg_buf_free(&out);
    mg_buf_free(&errs);
}

T_TEST(diff_lines)
{
    const char *a = "{\"roles\":{\"e\":{\"models\":[\"a\"],\"limits\":{\"usd_per_day\":20,\"max_tokens\":10}},"
                    "\"old\":{}},"
                    "\"role_mappings\":[{\"claim\":\"groups\",\"equals\":\"g1\",\"role\":\"e\"}],"
                    "\"filters\":{\"f\":{\"detectors\":[\"email\"],\"action\":\"redact\",\"direction\":\"input\"}}}";
    const char *b = "{\"roles\":{\"e\":{\"models\":[\"a\",\"b*\"],\"limits\":{\"usd_per_day\":25}},"
                    "\"new\":{\"permissions\":[\"usage:read\"]}},"
                    "\"role_mappings\":[{\"claim\":\"groups\",\"equals\":\"g2\",\"role\":\"e\"},"
                    "{\"claim\":\"groups\",\"equals\":\"g1\",\"role\":\"e\"}],"
                    "\"filters\":{\"f\":{\"detectors\":[\"email\"],\"action\":\"block\",\"direction\":\"input\"}}}";
    mg_buf errs = {0}, out = {0};
    mg_policy_doc *da = mg_policy_doc_parse(a, strlen(a), &errs);
    mg_policy_doc *db = mg_policy_doc_parse(b, strlen(b), &errs);
    T_CHECK(da != NULL && db != NULL);
    if (da != NULL && db != NULL) {
        T_EQ_INT(mg_policy_diff(da, db, &out), MG_OK);
        T_EQ_STR(cstr(&out),
                 "~ filters.f.action: \"redact\" -> \"block\"\n"
                 "+ role_mappings: {\"claim\":\"groups\",\"equals\":\"g2\",\"role\":\"e\"}\n"
                 "- roles.e.limits.max_tokens: 10\n"
                 "~ roles.e.limits.usd_per_day: 20 -> 25\n"
                 "~ roles.e.models: [\"a\"] -> [\"a\",\"b*\"]\n"
                 "+ roles.new.filters: []\n"
                 "+ roles.new.models: []\n"
                 "+ roles.new.permissions: [\"usage:read\"]\n"
                 "- roles.old.filters: []\n"
                 "- roles.old.models: []\n"
                 "- roles.old.permissions: []\n");
    }
    mg_policy_doc_free(da);
    mg_policy_doc_free(db);
    mg_buf_free(&out);
    mg_buf_free(&errs);
}

T_TEST(globs)
{
    static const struct { const char *pat, *s; bool want; } cases[] = {
        { "*", "gpt-4o", true },           { "*", "", true },
        { "llama3*", "llama3", true },     { "llama3*", "llama3.1:8b", true },
        { "llama3*", "llama2", false },    { "llama3*", "Llama3", false },
        { "gpt-4o-*", "gpt-4o-mini", true }, { "gpt-4o-*", "gpt-4o", false },
        { "gpt-4o", "gpt-4o", true },      { "gpt-4o", "gpt-4o-mini", false },
        { "gpt-4o", "GPT-4o", false },     { "*-mini", "gpt-4o-mini", true },
        { "a*b*c", "axxbyyc", true },      { "a*b*c", "axxbyy", false },
        { "*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false },
        { "", "", true },                  { "", "x", false },
        { "**", "x", true },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = mg_policy_glob_match(cases[i].pat, cases[i].s);
        if (got != cases[i].want)
            fprintf(stderr, "  glob \"%s\" vs \"%s\": got %d\n", cases[i].pat, cases[i].s, got);
        T_CHECK(got == cases[i].want);
    }
}

static bool groups_claim(void *ctx, const char *name, const char *value)
{
    const char *const *groups = ctx;
    if (strcmp(name, "groups") != 0)
        return false;
    for (; *groups; groups++)
        if (strcmp(*groups, value) == 0)
            return true;
    return false;
}

T_TEST(effective_policy)
{
    mg_buf errs = {0};
    mg_policy *p = mg_policy_load(SPEC_DOC, strlen(SPEC_DOC), &errs);
    T_CHECK(p != NULL);
    if (p == NULL)
        return;
    const char *groups[] = { "ai-users", "admins", "ai-users", NULL };
    const char *roles[8];
    size_t n = mg_policy_map_roles(p, groups_claim, groups, roles, 8);
    T_EQ_INT(n, 2);
    T_EQ_STR(roles[0], "engineer");
    T_EQ_STR(roles[1], "admin");

    const char *eng[] = { "engineer", "deleted-role" };
    size_t unknown = 9;
    mg_policy_effective *e = mg_policy_effective_new(p, eng, 2, &unknown);
    T_EQ_INT(unknown, 1);
    T_CHECK(mg_policy_effective_model_allowed(e, "gpt-4o-mini"));
    T_CHECK(mg_policy_effective_model_allowed(e, "llama3.1:8b"));
    T_CHECK(!mg_policy_effective_model_allowed(e, "gpt-4o"));
    T_EQ_INT(mg_policy_effective_permissions(e), 0);
    T_CHECK(mg_policy_effective_has_filters(e, MG_POLICY_INPUT));
    T_CHECK(mg_policy_effective_has_filters(e, MG_POLICY_OUTPUT));   /* secrets: both */
    mg_policy_limits l;
    mg_policy_effective_limits(e, "gpt-4o-mini", &l);
    T_EQ_INT(l.v[MG_POLICY_LIM_RPM], 60);
    T_EQ_INT(l.v[MG_POLICY_LIM_MAX_TOKENS], 4096);
    mg_policy_effective_limits(e, "gpt-4o", &l);       /* not granted: nothing */
    T_EQ_INT(l.v[MG_POLICY_LIM_RPM], 0);
    mg_policy_effective_free(e);

    /* engineer + finance: finance grants no model, so it loosens nothing */
    const char *ef[] = { "finance", "engineer" };
    e = mg_policy_effective_new(p, ef, 2, NULL);
    mg_policy_effective_limits(e, "llama3", &l);
    T_EQ_INT(l.v[MG_POLICY_LIM_USD_DAY], 20000000);
    T_EQ_INT(mg_policy_effective_permissions(e), MG_POLICY_PERM_USAGE_READ);
    mg_policy_effective_free(e);

    /* engineer + admin: admin has no limits = unlimited, which is most generous */
    const char *ea[] = { "engineer", "admin" };
    e = mg_policy_effective_new(p, ea, 2, NULL);
    mg_policy_effective_limits(e, "llama3", &l);
    T_EQ_INT(l.v[MG_POLICY_LIM_RPM], MG_POLICY_UNLIMITED);
    T_EQ_INT(l.v[MG_POLICY_LIM_MAX_TOKENS], MG_POLICY_UNLIMITED);
    T_CHECK(mg_policy_effective_model_allowed(e, "anything"));
    mg_policy_effective_free(e);
    mg_policy_unref(p);
    mg_buf_free(&errs);
}

T_TEST(most_generous_numbers)
{
    const char *j = "{\"roles\":{"
                    "\"a\":{\"models\":[\"m*\"],\"limits\":{\"requests_per_minute\":60,\"usd_per_day\":5,\"max_tokens\":100}},"
                    "\"b\":{\"models\":[\"m1\"],\"limits\":{\"requests_per_minute\":600,\"usd_per_day\":2}},"
                    "\"c\":{\"models\":[\"x\"],\"limits\":{\"requests_per_minute\":9999}}}}";
    mg_buf errs = {0};
    mg_policy *p = mg_policy_load(j, strlen(j), &errs);
    T_CHECK(p != NULL);
    if (p == NULL)
        return;
    const char *all[] = { "a", "b", "c" };
    mg_policy_effective *e = mg_policy_effective_new(p, all, 3, NULL);
    mg_policy_limits l;
    mg_policy_effective_limits(e, "m1", &l);
    T_EQ_INT(l.v[MG_POLICY_LIM_RPM], 600);            /* larger number */
    T_EQ_INT(l.v[MG_POLICY_LIM_USD_DAY], 5000000);
    T_EQ_INT(l.v[MG_POLICY_LIM_MAX_TOKENS], MG_POLICY_UNLIMITED); /* b sets none */
    mg_policy_effective_limits(e, "m2", &l);           /* only a grants m2 */
    T_EQ_INT(l.v[MG_POLICY_LIM_RPM], 60);
    T_EQ_INT(l.v[MG_POLICY_LIM_MAX_TOKENS], 100);
    mg_policy_effective_free(e);
    mg_policy_unref(p);
    mg_buf_free(&errs);
}

T_MAIN("policy_document",
       T_CASE(spec_example_parses), T_CASE(errors_name_json_paths), T_CASE(errors_are_all_collected),
       T_CASE(export_round_trip), T_CASE(export_fractional_usd), T_CASE(diff_lines), T_CASE(globs),
       T_CASE(effective_policy), T_CASE(most_generous_numbers))
