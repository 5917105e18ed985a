/* modelgate — unit tests: policy storage parts that need no database:
 * ETags and If-Match, the audit hash chain (a known answer pinning the byte
 * layout documented in docs/policy.md, every field covered, no ambiguity
 * between fields), publication of the running policy under concurrent
 * readers, and the admin handlers' routing, permissions, error shape and
 * the filter "try it" endpoint with an inline definition.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "policy/store.h"
#include "gateway/log.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

T_TEST(etag_is_content_hash)
{
    char a[MG_POLICY_ETAG_LEN], b[MG_POLICY_ETAG_LEN], c[MG_POLICY_ETAG_LEN];
    mg_policy_etag("{}\n", 3, a);
    mg_policy_etag("{}\n", 3, b);
    mg_policy_etag("{ }\n", 4, c);
    /* first 16 bytes of SHA-256("{}\n"), computed independently */
    T_EQ_STR(a, "\"ca3d163bab055381827226140568f3be\"");
    T_EQ_STR(a, b);
    T_CHECK(strcmp(a, c) != 0);
    T_EQ_INT(strlen(a), MG_POLICY_ETAG_LEN - 1);
}

T_TEST(if_match_rules)
{
    const char *cur = "\"ca3d163bab055381827226140568f3be\"";
    T_CHECK(mg_policy_etag_matches(NULL, cur));
    T_CHECK(mg_policy_etag_matches("", cur));
    T_CHECK(mg_policy_etag_matches("  ", cur));
    T_CHECK(mg_policy_etag_matches("*", cur));
    T_CHECK(mg_policy_etag_matches(cur, cur));
    T_CHECK(mg_policy_etag_matches(" \"x\" , \"ca3d163bab055381827226140568f3be\" ", cur));
    T_CHECK(!mg_policy_etag_matches("\"x\"", cur));
    T_CHECK(!mg_policy_etag_matches("W/\"ca3d163bab055381827226140568f3be\"", cur));   /* weak: never */
    T_CHECK(!mg_policy_etag_matches("ca3d163bab055381827226140568f3be", cur));        /* unquoted */
    T_CHECK(!mg_policy_etag_matches("\"ca3d163bab055381827226140568f3be", cur));      /* unterminated */
    T_CHECK(!mg_policy_etag_matches("\"ca3d163bab055381827226140568f3b\"", cur));     /* prefix */
    T_CHECK(!mg_policy_etag_matches("\"a\"x, *", cur));                               /* junk */
}

static mg_policy_audit_row sample(void)
{
    return (mg_policy_audit_row){
        .id = 7, .ts = "2025-01-02T03:04:05.123456Z", .actor = "cli:alice", .action = "policy.import",
        .target = "policy", .before = NULL, .after = "{\"roles\": {}}", .policy_version = 3,
        .prev_hash = MG_POLICY_AUDIT_GENESIS,
    };
}

T_TEST(audit_hash_known_answer)
{
    /* computed with Python's hashlib over the layout in docs/policy.md */
    mg_policy_audit_row r = sample();
    char h[65];
    mg_policy_audit_hash(&r, h);
    T_EQ_STR(h, "edaca2227cfc395fe5f2cdffe072ea49fabc2c01b71197da0e122f43466eb9b2");
}

T_TEST(audit_hash_covers_every_field)
{
    mg_policy_audit_row base = sample();
    char h0[65], h[65];
    mg_policy_audit_hash(&base, h0);
    for (int field = 0; field < 9; field++) {
        mg_policy_audit_row r = base;
        switch (field) {
        case 0: r.id = 8; break;
        case 1: r.ts = "2025-01-02T03:04:05.123457Z"; break;
        case 2: r.actor = "cli:mallory"; break;
        case 3: r.action = "policy.put"; break;
        case 4: r.target = "roles.x"; break;
        case 5: r.before = "{}"; break;
        case 6: r.after = "{\"roles\": {\"x\": {}}}"; break;
        case 7: r.policy_version = -1; break;
        case 8: r.prev_hash = "1111111111111111111111111111111111111111111111111111111111111111"; break;
        }
        mg_policy_audit_hash(&r, h);
        if (strcmp(h, h0) == 0)
            fprintf(stderr, "  field %d not covered\n", field);
        T_CHECK(strcmp(h, h0) != 0);
    }
}

T_TEST(audit_hash_fields_do_not_run_together)
{
    mg_policy_audit_row a = sample(), b = sample();
    char ha[65], hb[65];
    a.actor = "ab";
    a.action = "c";
    b.actor = "a";
    b.action = "bc";
    mg_policy_audit_hash(&a, ha);
    mg_policy_audit_hash(&b, hb);
    T_CHECK(strcmp(ha, hb) != 0);
    /* NULL and "" are different values */
    a = sample();
    b = sample();
    b.before = "";
    mg_policy_audit_hash(&a, ha);
    mg_policy_audit_hash(&b, hb);
    T_CHECK(strcmp(ha, hb) != 0);
    /* a text that looks like a NULL marker is not one */
    b.before = "-";
    mg_policy_audit_hash(&b, hb);
    T_CHECK(strcmp(ha, hb) != 0);
}

T_TEST(audit_chain_links)
{
    /* a chain of three; changing the middle row breaks its own hash, and
     * rehashing it breaks the link of the row after it */
    mg_policy_audit_row r[3];
    char h[3][65];
    for (int i = 0; i < 3; i++) {
        r[i] = sample();
        r[i].id = i + 1;
        r[i].prev_hash = i ? h[i - 1] : MG_POLICY_AUDIT_GENESIS;
        mg_policy_audit_hash(&r[i], h[i]);
    }
    char again[65];
    r[1].actor = "cli:mallory";
    mg_policy_audit_hash(&r[1], again);
    T_CHECK(strcmp(again, h[1]) != 0);
    T_CHECK(strcmp(r[2].prev_hash, again) != 0);
}

/* ---- publication of the running policy ---- */

static atomic_bool stop_readers;
static atomic_long reads;

static void *reader(void *arg)
{
    MG_UNUSED(arg);
    while (!atomic_load(&stop_readers)) {
        mg_policy *p = mg_policy_current();
        if (p) {
            /* touch it: a freed policy shows up under ASan */
            const mg_policy_doc *d = mg_policy_document(p);
            if (d->n_roles != 0)
                abort();
            mg_policy_unref(p);
            atomic_fetch_add(&reads, 1);
        }
    }
    return NULL;
}

T_TEST(current_without_database_is_empty_policy)
{
    mg_config cfg = {0};
    mg_buf errs = {0};
    T_CHECK(mg_policy_current() == NULL);
    T_EQ_INT(mg_policy_store_start(&cfg, &errs), MG_OK);
    mg_policy *p = mg_policy_current();
    T_CHECK(p != NULL);
    if (p) {
        const mg_policy_doc *d = mg_policy_document(p);
        T_EQ_INT(d->n_roles + d->n_filters + d->n_mappings, 0);
        /* the empty policy grants nothing, whatever roles one claims */
        const char *roles[] = {"admin"};
        mg_policy_effective *e = mg_policy_effective_new(p, roles, 1, NULL);
        T_CHECK(e != NULL && !mg_policy_effective_model_allowed(e, "gpt-4o-mini"));
        T_EQ_INT(e ? mg_policy_effective_permissions(e) : 1, 0);
        mg_policy_effective_free(e);
        mg_policy_unref(p);
    }
    T_EQ_INT(mg_policy_store_version(), 0);
    T_CHECK(!mg_policy_store_connected());
    mg_policy_store_stop();
    T_CHECK(mg_policy_current() == NULL);
    mg_buf_free(&errs);
}

T_TEST(current_under_concurrent_swaps)
{
    pthread_t t[4];
    mg_config cfg = {0};
    mg_buf errs = {0};
    atomic_store(&stop_readers, false);
    mg_log_set_level(MG_LOG_ERROR);   /* each start says "no database" */
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, reader, NULL);
    mg_policy_store_start(&cfg, &errs);
    while (atomic_load(&reads) == 0)   /* the readers are really running */
        sched_yield();
    mg_policy_store_stop();
    /* every start publishes a new policy and every stop drops it while the
     * readers keep taking references */
    for (int i = 0; i < 2000; i++) {
        mg_policy_store_start(&cfg, &errs);
        mg_policy_store_stop();
    }
    atomic_store(&stop_readers, true);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    T_CHECK(atomic_load(&reads) > 0);
    mg_buf_free(&errs);
}

/* ---- admin handlers without a database ---- */

static cJSON *call(const char *method, const char *path, const char *body, const char *const *perms,
                   size_t nperms, mg_policy_admin_reply *out)
{
    memset(out, 0, sizeof(*out));
    mg_rc rc = mg_policy_admin_handle(NULL, method, path, NULL, body, body ? strlen(body) : 0, NULL,
                                      "test", perms, nperms, out);
    T_EQ_INT(rc, MG_OK);
    T_EQ_STR(out->content_type, "application/json");
    return cJSON_ParseWithLength(out->body.p, out->body.len);
}

static const char *errfield(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

T_TEST(admin_routes_methods_permissions)
{
    static const char *const none[] = {"usage:read"};
    static const char *const reader_perms[] = {"policy:read"};
    static const char *const writer[] = {"policy:write"};
    mg_policy_admin_reply out;
    cJSON *j;

    j = call("GET", "/admin/v1/policy", NULL, none, 1, &out);
    T_EQ_INT(out.status, 403);
    T_EQ_STR(errfield(j, "type"), "permission_error");
    T_EQ_STR(errfield(j, "code"), "permission_denied");
    cJSON_Delete(j);
    mg_buf_free(&out.body);

    j = call("PUT", "/admin/v1/roles/x", "{}", reader_perms, 1, &out);
    T_EQ_INT(out.status, 403);
    T_CHECK(strstr(errfield(j, "message") ? errfield(j, "message") : "", "policy:write") != NULL);
    cJSON_Delete(j);
    mg_buf_free(&out.body);

    j = call("GET", "/admin/v1/audit", NULL, writer, 1, &out);
    T_EQ_INT(out.status, 403);
    cJSON_Delete(j);
    mg_buf_free(&out.body);

    j = call("PATCH", "/admin/v1/roles/x", NULL, writer, 1, &out);
    T_EQ_INT(out.status, 405);
    T_EQ_STR(out.allow, "GET, PUT, DELETE");
    cJSON_Delete(j);
    mg_buf_free(&out.body);

    j = call("DELETE", "/admin/v1/filters/x", NULL, writer, 1, &out);
    T_EQ_INT(out.status, 405);
    T_EQ_STR(out.allow, "GET, PUT");
    cJSON_Delete(j);
    mg_buf_free(&out.body);

    static const char *const unknown[] = {"/admin/v1/", "/admin/v1/roles/", "/admin/v1/roles/a/b",
                                          "/admin/v1/filters/a/test/x", "/admin/v1/policies", "/v1/policy"};
    for (size_t i = 0; i < MG_ARRAY_LEN(unknown); i++) {
        j = call("GET", unknown[i], NULL, writer, 1, &out);
        T_EQ_INT(out.status, 404);
        cJSON_Delete(j);
        mg_buf_free(&out.body);
    }
    j = call("GET", "/admin/v1/roles/a.b", NULL, writer, 1, &out);
    T_EQ_INT(out.status, 400);
    cJSON_Delete(j);
    mg_buf_free(&out.body);

    /* permission passes, no database: 503 in the OpenAI error shape */
    j = call("GET", "/admin/v1/policy", NULL, reader_perms, 1, &out);
    T_EQ_INT(out.status, 503);
    T_EQ_STR(errfield(j, "type"), "server_error");
    T_EQ_STR(errfield(j, "code"), "database_unavailable");
    cJSON_Delete(j);
    mg_buf_free(&out.body);
}

T_TEST(admin_put_validates_before_the_database)
{
    static const char *const writer[] = {"policy:write"};
    mg_policy_admin_reply out;
    cJSON *j = call("PUT", "/admin/v1/policy",
                    "{\"roles\":{\"eng\":{\"models\":[],\"limits\":{\"usd_per_day\":\"x\"}}}}", writer, 1, &out);
    T_EQ_INT(out.status, 422);
    T_EQ_STR(errfield(j, "code"), "invalid_policy");
    T_EQ_STR(errfield(j, "param"), "roles.eng.limits.usd_per_day");
    cJSON_Delete(j);
    mg_buf_free(&out.body);

    j = call("PUT", "/admin/v1/policy", "{\"roles\":", writer, 1, &out);
    T_EQ_INT(out.status, 400);
    T_EQ_STR(errfield(j, "code"), "invalid_json");
    cJSON_Delete(j);
    mg_buf_free(&out.body);
}

T_TEST(admin_filter_test_inline_definition)
{
    static const char *const reader_perms[] = {"policy:read"};
    mg_policy_admin_reply out;
    cJSON *j = call("POST", "/admin/v1/filters/pii/test",
                    "{\"text\":\"mail jane@example.com or call\",\"filter\":{\"detectors\":[\"email\"],"
                    "\"action\":\"redact\",\"direction\":\"both\"}}",
                    reader_perms, 1, &out);
    T_EQ_INT(out.status, 200);
    T_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "text")), "mail [EMAIL] or call");
    T_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "direction")), "input");
    T_CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "blocked")));
    T_EQ_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "redactions")), 1);
    cJSON_Delete(j);
    mg_buf_free(&out.body);

    j = call("POST", "/admin/v1/filters/keys/test",
             "{\"text\":\"key AKIAIOSFODNN7EXAMPLE here\",\"direction\":\"output\",\"filter\":{\"detectors\":[\"api_key\"],"
             "\"action\":\"block\",\"direction\":\"both\"}}",
             reader_perms, 1, &out);
    T_EQ_INT(out.status, 200);
    T_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "blocked")));
    T_CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "text")));
    T_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "direction")), "output");
    cJSON_Delete(j);
    mg_buf_free(&out.body);

    /* an input-only filter tested on output does not apply */
    j = call("POST", "/admin/v1/filters/pii/test",
             "{\"text\":\"jane@example.com\",\"direction\":\"output\",\"filter\":{\"detectors\":[\"email\"],"
             "\"action\":\"redact\",\"direction\":\"input\"}}",
             reader_perms, 1, &out);
    T_CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "applies")));
    T_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "text")), "jane@example.com");
    cJSON_Delete(j);
    mg_buf_free(&out.body);

    j = call("POST", "/admin/v1/filters/pii/test", "{\"text\":1}", reader_perms, 1, &out);
    T_EQ_INT(out.status, 422);
    T_EQ_STR(errfield(j, "param"), "text");
    cJSON_Delete(j);
    mg_buf_free(&out.body);

    j = call("POST", "/admin/v1/filters/pii/test", "{\"text\":\"x\",\"filter\":{\"action\":\"nope\"}}",
             reader_perms, 1, &out);
    T_EQ_INT(out.status, 422);
    T_CHECK(strstr(errfield(j, "message") ? errfield(j, "message") : "", "filters.pii.action") != NULL);
    cJSON_Delete(j);
    mg_buf_free(&out.body);
}

T_MAIN("policy_store",
       T_CASE(etag_is_content_hash), T_CASE(if_match_rules), T_CASE(audit_hash_known_answer),
       T_CASE(audit_hash_covers_every_field), T_CASE(audit_hash_fields_do_not_run_together),
       T_CASE(audit_chain_links), T_CASE(current_without_database_is_empty_policy),
       T_CASE(current_under_concurrent_swaps), T_CASE(admin_routes_methods_permissions),
       T_CASE(admin_put_validates_before_the_database), T_CASE(admin_filter_test_inline_definition))
