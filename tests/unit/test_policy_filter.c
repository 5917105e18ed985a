/* modelgate — unit tests: content filtering of requests (every message
 * role, content parts, tool calls and results, tools, embeddings input),
 * complete reply texts and streams (a match split at every byte boundary).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "policy/policy.h"

#include <cjson/cJSON.h>

static const char *POLICY =
    "{\"roles\":{"
    "  \"eng\":{\"models\":[\"*\"],\"filters\":[\"pii\",\"secrets\",\"codenames\",\"audit\",\"out\"]},"
    "  \"plain\":{\"models\":[\"*\"]},"
    "  \"pii_only\":{\"models\":[\"*\"],\"filters\":[\"pii\"]}},"
    " \"filters\":{"
    "  \"pii\":{\"detectors\":[\"email\",\"phone\",\"credit_card\",\"ssn\",\"iban\"],\"action\":\"redact\",\"direction\":\"input\"},"
    "  \"secrets\":{\"detectors\":[\"api_key\",\"private_key\"],\"action\":\"block\",\"direction\":\"both\"},"
    "  \"codenames\":{\"patterns\":[\"(?i)\\\\bproject\\\\s+bluebird\\\\b\"],\"action\":\"block\",\"direction\":\"input\"},"
    "  \"audit\":{\"patterns\":[\"\\\\bconfidential\\\\b\"],\"action\":\"flag\",\"direction\":\"both\"},"
    "  \"out\":{\"detectors\":[\"email\",\"credit_card\"],\"patterns\":[\"Zorblax\"],\"action\":\"redact\",\"direction\":\"output\"}}}";

static mg_policy *policy;

static mg_policy_effective *eff(const char *role)
{
    if (policy == NULL) {
        mg_buf errs = {0};
        policy = mg_policy_load(POLICY, strlen(POLICY), &errs);
        if (policy == NULL)
            fprintf(stderr, "%.*s", (int)errs.len, errs.p);
        mg_buf_free(&errs);
    }
    const char *roles[] = { role };
    return policy ? mg_policy_effective_new(policy, roles, 1, NULL) : NULL;
}

static const char *cstr(mg_buf *b)
{
    mg_buf_append(b, "", 1);
    b->len--;
    return b->p;
}

/* Filters a request body given as JSON; returns the body after filtering
 * (static buffer) and fills v. */
static char body_out[8192];
static const char *filter_body(const char *role, const char *json, mg_api api, mg_policy_verdict *v)
{
    mg_policy_effective *e = eff(role);
    cJSON *body = cJSON_Parse(json);
    mg_policy_verdict_init(v);
    body_out[0] = '\0';
    if (e == NULL || body == NULL) {
        snprintf(body_out, sizeof(body_out), "(setup failed)");
    } else if (mg_policy_filter_request(e, body, api, v) != MG_OK) {
        snprintf(body_out, sizeof(body_out), "(error)");
    } else {
        char *s = cJSON_PrintUnformatted(body);
        snprintf(body_out, sizeof(body_out), "%s", s ? s : "(oom)");
        cJSON_free(s);
    }
    cJSON_Delete(body);
    mg_policy_effective_free(e);
    return body_out;
}

static const char *decision(const mg_policy_verdict *v)
{
    static char d[512];
    mg_buf b = {0};
    mg_policy_verdict_decision(v, &b);
    snprintf(d, sizeof(d), "%s", cstr(&b));
    mg_buf_free(&b);
    return d;
}

T_TEST(redacts_every_message_role)
{
    mg_policy_verdict v;
    const char *out = filter_body("pii_only",
        "{\"model\":\"m\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"admin is root@example.com\"},"
        "{\"role\":\"developer\",\"content\":\"escalate to 415-555-2671\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"card 4111 1111 1111 1111\"},"
        "  {\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/a.png\"}}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
        "  \"function\":{\"name\":\"lookup\",\"arguments\":\"{\\\"ssn\\\":\\\"536-22-1234\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"IBAN DE89 3704 0044 0532 0130 00\"},"
        "{\"role\":\"user\",\"content\":\"thanks bob@example.org\"}]}", MG_API_CHAT, &v);
    T_CHECK(!v.blocked);
    T_EQ_INT(v.redactions, 6);
    T_CHECK(strstr(out, "\"admin is [EMAIL]\"") != NULL);
    T_CHECK(strstr(out, "\"escalate to [PHONE]\"") != NULL);
    T_CHECK(strstr(out, "\"card [CREDIT_CARD]\"") != NULL);
    T_CHECK(strstr(out, "{\\\"ssn\\\":\\\"[SSN]\\\"}") != NULL);
    T_CHECK(strstr(out, "\"IBAN [IBAN]\"") != NULL);
    T_CHECK(strstr(out, "\"thanks [EMAIL]\"") != NULL);
    T_CHECK(strstr(out, "https://x/a.png") != NULL);   /* untouched */
    T_CHECK(strstr(out, "example.com") == NULL && strstr(out, "4111") == NULL);
    T_EQ_STR(decision(&v), "redacted:pii");
}

T_TEST(blocks_anywhere_in_history)
{
    mg_policy_verdict v;
    /* the secret is in an old assistant turn, not the last message */
    const char *out = filter_body("eng",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
        "{\"role\":\"assistant\",\"content\":\"here: AKIAIOSFODNN7EXAMPLE\"},"
        "{\"role\":\"user\",\"content\":\"thanks\"}]}", MG_API_CHAT, &v);
    T_CHECK(v.blocked);
    T_EQ_STR(v.block_rule, "secrets");
    T_EQ_STR(v.block_reason, "detector");
    T_CHECK(strstr(decision(&v), "blocked:secrets") != NULL);
    T_CHECK(strstr(decision(&v), "AKIA") == NULL);    /* never the content */
    MG_UNUSED(out);

    filter_body("eng", "{\"messages\":[{\"role\":\"user\",\"content\":\"status of Project  Bluebird?\"}]}",
                MG_API_CHAT, &v);
    T_CHECK(v.blocked);
    T_EQ_STR(v.block_rule, "codenames");
    T_EQ_STR(v.block_reason, "pattern");

    /* a block wins over a redaction in the same text */
    filter_body("eng", "{\"messages\":[{\"role\":\"user\",\"content\":\"a@b.com sk_live_4eC39HqLyjWDarjtT1zdp7dc\"}]}",
                MG_API_CHAT, &v);
    T_CHECK(v.blocked);
    T_EQ_STR(v.block_rule, "secrets");
}

/* Every forwarded string is read, not only message content: what the
 * upstream receives in any member can reach the model or the provider. */
T_TEST(every_forwarded_field)
{
    static const char *const bodies[] = {
        "{\"messages\":[{\"role\":\"user\",\"name\":\"project bluebird\",\"content\":\"hi\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":{\"type\":\"json_schema\","
        "\"json_schema\":{\"name\":\"x\",\"schema\":{\"description\":\"about project bluebird\"}}}}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"prediction\":{\"type\":\"content\","
        "\"content\":\"Project Bluebird draft\"}}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"metadata\":{\"note\":\"project bluebird\"}}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":[\"project bluebird\"]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},"
        "{\"type\":\"unknown_future_part\",\"payload\":\"project bluebird\"}]}]}",
        /* \s and \b are Unicode-aware: a no-break space does not get around the pattern */
        "{\"messages\":[{\"role\":\"user\",\"content\":\"project\u00a0bluebird\"}]}",
    };
    mg_policy_verdict v;
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        filter_body("eng", bodies[i], MG_API_CHAT, &v);
        T_CHECK(v.blocked);
        if (!v.blocked)
            fprintf(stderr, "  not blocked: %s\n", bodies[i]);
        else
            T_EQ_STR(v.block_rule, "codenames");
    }
    /* structure is not text: a model or role name is not scanned, and an
     * image's bytes are not read for words */
    const char *out = filter_body("eng",
        "{\"model\":\"project bluebird\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"data:image/png;base64,project bluebird\"}},{\"type\":\"text\",\"text\":\"what is this?\"}]}]}",
        MG_API_CHAT, &v);
    T_CHECK(!v.blocked);
    T_CHECK(strstr(out, "base64,project bluebird") != NULL);
    /* redaction reaches those fields too */
    out = filter_body("eng", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"user\":\"alice@example.com\"}",
                      MG_API_CHAT, &v);
    T_CHECK(!v.blocked);
    T_CHECK(strstr(out, "alice@example.com") == NULL);
}

T_TEST(tools_and_tool_results)
{
    mg_policy_verdict v;
    const char *out = filter_body("pii_only",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"mail\","
        "\"description\":\"sends mail as ops@example.com\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"to\":{\"type\":\"string\","
        "\"description\":\"default 415-555-2671\"}}}}}]}", MG_API_CHAT, &v);
    T_EQ_INT(v.redactions, 2);
    T_CHECK(strstr(out, "\"sends mail as [EMAIL]\"") != NULL);
    T_CHECK(strstr(out, "\"default [PHONE]\"") != NULL);

    filter_body("eng",
        "{\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"x\",\"content\":[{\"type\":\"text\","
        "\"text\":\"-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\"}]}]}", MG_API_CHAT, &v);
    T_CHECK(v.blocked);
    T_EQ_STR(v.block_rule, "secrets");
}

T_TEST(embeddings_input)
{
    mg_policy_verdict v;
    const char *out = filter_body("pii_only", "{\"model\":\"e\",\"input\":\"mail a@example.com\"}",
                                  MG_API_EMBEDDINGS, &v);
    T_EQ_STR(out, "{\"model\":\"e\",\"input\":\"mail [EMAIL]\"}");
    out = filter_body("pii_only", "{\"input\":[\"ok\",\"call 415-555-2671\"]}", MG_API_EMBEDDINGS, &v);
    T_EQ_STR(out, "{\"input\":[\"ok\",\"call [PHONE]\"]}");
    /* token ids cannot be read: refused when filters apply */
    filter_body("pii_only", "{\"input\":[1234,5678]}", MG_API_EMBEDDINGS, &v);
    T_CHECK(v.blocked);
    T_EQ_STR(v.block_reason, "unfilterable input");
    /* ... and fine without input filters */
    filter_body("plain", "{\"input\":[1234,5678]}", MG_API_EMBEDDINGS, &v);
    T_CHECK(!v.blocked);
}

T_TEST(flag_records_without_changing)
{
    mg_policy_verdict v;
    const char *out = filter_body("eng", "{\"messages\":[{\"role\":\"user\",\"content\":\"this is confidential\"}]}",
                                  MG_API_CHAT, &v);
    T_CHECK(!v.blocked);
    T_EQ_INT(v.redactions, 0);
    T_CHECK(strstr(out, "this is confidential") != NULL);
    T_EQ_STR(decision(&v), "flagged:audit");
    filter_body("plain", "{\"messages\":[{\"role\":\"user\",\"content\":\"a@b.com confidential\"}]}",
                MG_API_CHAT, &v);
    T_EQ_STR(decision(&v), "allowed");
}

T_TEST(output_text)
{
    mg_policy_effective *e = eff("eng");
    mg_policy_verdict v;
    mg_buf out = {0};
    mg_policy_verdict_init(&v);
    const char *t = "write to a@example.com about Zorblax; phone 415-555-2671 stays";
    T_EQ_INT(mg_policy_filter_text(e, MG_POLICY_OUTPUT, t, strlen(t), &out, &v), MG_OK);
    /* output filter "out" redacts email + custom pattern; pii is input only */
    T_EQ_STR(cstr(&out), "write to [EMAIL] about [REDACTED:out]; phone 415-555-2671 stays");
    T_EQ_STR(decision(&v), "redacted:out");

    mg_buf_reset(&out);
    mg_policy_verdict_init(&v);
    t = "your key is ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    T_EQ_INT(mg_policy_filter_text(e, MG_POLICY_OUTPUT, t, strlen(t), &out, &v), MG_OK);
    T_CHECK(v.blocked);
    T_EQ_INT(out.len, 0);
    mg_buf_free(&out);
    mg_policy_effective_free(e);
}

/* Custom patterns need valid UTF-8; the check reads eight ASCII bytes at a
 * time, so a bad byte must be caught at every offset, in a full word and
 * in the tail, and valid multi-byte text after ASCII must still pass. */
T_TEST(utf8_check_every_offset)
{
    mg_policy_effective *e = eff("eng");
    for (size_t pad = 0; pad < 24; pad++) {
        char t[64];
        mg_buf out = {0};
        mg_policy_verdict v;
        int n = snprintf(t, sizeof(t), "%.*s", (int)pad, "abcdefghijklmnopqrstuvwxyz");
        snprintf(t + n, sizeof(t) - (size_t)n, "\xff ok, and more ASCII after");
        mg_policy_verdict_init(&v);
        T_EQ_INT(mg_policy_filter_text(e, MG_POLICY_OUTPUT, t, strlen(t), &out, &v), MG_ERR);
        T_CHECK(v.blocked);
        T_EQ_STR(v.block_reason ? v.block_reason : "", "invalid UTF-8");
        /* a truncated sequence at the very end */
        snprintf(t + n, sizeof(t) - (size_t)n, "\xc3");
        mg_policy_verdict_init(&v);
        T_EQ_INT(mg_policy_filter_text(e, MG_POLICY_OUTPUT, t, strlen(t), &out, &v), MG_ERR);
        T_CHECK(v.blocked);
        /* valid: é and a 4-byte emoji after the ASCII, and the pattern still runs */
        snprintf(t + n, sizeof(t) - (size_t)n, " caf\xc3\xa9 \xf0\x9f\x98\x80 confidential");
        mg_policy_verdict_init(&v);
        mg_buf_reset(&out);
        T_EQ_INT(mg_policy_filter_text(e, MG_POLICY_OUTPUT, t, strlen(t), &out, &v), MG_OK);
        T_CHECK(!v.blocked);
        T_EQ_STR(decision(&v), "flagged:audit");
        T_EQ_STR(cstr(&out), t);
        mg_buf_free(&out);
    }
    mg_policy_effective_free(e);
}

/* Feeds text to a stream filter cut at `cut` (and, with step > 0, in
 * pieces of step bytes after that); returns what the client would see. */
static const char *stream_run(const char *role, const char *text, size_t cut, size_t step,
                              size_t holdback, mg_policy_verdict *v)
{
    static char seen[8192];
    mg_policy_effective *e = eff(role);
    mg_policy_stream *s = mg_policy_stream_new(e, holdback);
    mg_buf out = {0};
    mg_policy_verdict_init(v);
    size_t len = strlen(text), at = 0;
    mg_policy_stream_push(s, text, cut, &out, v);
    at = cut;
    while (at < len) {
        size_t n = step ? step : len - at;
        if (n > len - at)
            n = len - at;
        mg_policy_stream_push(s, text + at, n, &out, v);
        at += n;
    }
    mg_policy_stream_flush(s, &out, v);
    snprintf(seen, sizeof(seen), "%s", out.len ? cstr(&out) : "");
    mg_buf_free(&out);
    mg_policy_stream_free(s);
    mg_policy_effective_free(e);
    return seen;
}

T_TEST(stream_split_at_every_boundary)
{
    const char *text = "Sure! Contact jane.doe@example.com or pay with 4111 1111 1111 1111, Zorblax says hi.";
    const char *want = "Sure! Contact [EMAIL] or pay with [CREDIT_CARD], [REDACTED:out] says hi.";
    size_t len = strlen(text);
    int bad = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        mg_policy_verdict v;
        /* small holdback so the cut really matters; then byte-by-byte */
        const char *got = stream_run("eng", text, cut, 0, 40, &v);
        if (strcmp(got, want) != 0 && bad++ < 3)
            fprintf(stderr, "  cut %zu: %s\n", cut, got);
        got = stream_run("eng", text, cut, 1, 40, &v);
        if (strcmp(got, want) != 0 && bad++ < 3)
            fprintf(stderr, "  cut %zu step 1: %s\n", cut, got);
    }
    T_EQ_INT(bad, 0);
}

T_TEST(stream_blocks_before_emitting)
{
    const char *text = "ok here is the token: sk_live_4eC39HqLyjWDarjtT1zdp7dc and more text after it, lots of it";
    size_t len = strlen(text);
    int leaks = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        mg_policy_verdict v;
        const char *got = stream_run("eng", text, cut, 3, 48, &v);
        if (!v.blocked || strstr(got, "sk_live") != NULL || strstr(got, "4eC39") != NULL)
            leaks++;
    }
    T_EQ_INT(leaks, 0);
}

T_TEST(stream_holdback_and_flush)
{
    mg_policy_effective *e = eff("eng");
    mg_policy_stream *s = mg_policy_stream_new(e, 16);
    mg_policy_verdict v;
    mg_policy_verdict_init(&v);
    mg_buf out = {0};
    mg_policy_stream_push(s, "0123456789", 10, &out, &v);
    T_EQ_INT(out.len, 0);                      /* within the holdback */
    mg_policy_stream_push(s, "abcdefghij", 10, &out, &v);
    T_EQ_INT(out.len, 4);                      /* 20 bytes - 16 held */
    mg_policy_stream_flush(s, &out, &v);
    T_EQ_STR(cstr(&out), "0123456789abcdefghij");
    mg_buf_free(&out);
    mg_policy_stream_free(s);

    /* a PEM key longer than the holdback is still held from its start */
    s = mg_policy_stream_new(e, 16);
    mg_policy_verdict_init(&v);
    mg_policy_stream_push(s, "intro text ", 11, &out, &v);
    mg_policy_stream_push(s, "-----BEGIN EC PRIVATE KEY-----\n", 31, &out, &v);
    for (int i = 0; i < 20; i++)
        mg_policy_stream_push(s, "MHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n", 65, &out, &v);
    T_CHECK(v.blocked);
    T_CHECK(strstr(out.len ? cstr(&out) : "", "BEGIN") == NULL);
    mg_buf_free(&out);
    mg_policy_stream_free(s);
    mg_policy_effective_free(e);
}

T_TEST(stream_utf8_not_split)
{
    /* multi-byte characters around the holdback cut come out whole */
    const char *text = "héllo wörld — ünïcödé text with émails x@example.com ok ✓✓✓✓✓✓";
    for (size_t cut = 0; cut <= strlen(text); cut++) {
        mg_policy_verdict v;
        const char *got = stream_run("eng", text, cut, 1, 16, &v);
        T_EQ_STR(got, "héllo wörld — ünïcödé text with émails [EMAIL] ok ✓✓✓✓✓✓");
    }
}

static void cleanup(void)
{
    mg_policy_unref(policy);
    policy = NULL;
}

/* Patterns and detectors skip texts shorter than their shortest match:
 * a text of exactly that length must still be caught, and
 * mg_policy_text_clean must agree with mg_policy_filter_text. */
T_TEST(shortest_matches_still_caught)
{
    mg_policy_effective *e = eff("eng");
    static const struct { const char *text; bool clean; } cases[] = {
        {"Zorblax", false},            /* custom pattern at its minimum length */
        {"Zorbla", true},
        {"confidential", false},
        {"a@b.co", false},             /* a short email */
        {"stop", true}, {"assistant", true}, {"", true},
        {"sk-proj-a1B2c3D4e5F6g7H8i9J0a1B2c3D4e5F6g7H8i9J0", false},
    };
    for (size_t i = 0; e && i < sizeof cases / sizeof cases[0]; i++) {
        const char *t = cases[i].text;
        mg_policy_verdict v;
        mg_policy_verdict_init(&v);
        mg_buf out = {0};
        T_CHECK(mg_policy_filter_text(e, MG_POLICY_OUTPUT, t, strlen(t), &out, &v) == MG_OK);
        bool acted = v.blocked || v.redactions || v.n_rules;
        if (acted == cases[i].clean)
            fprintf(stderr, "  case %zu (%s): acted=%d\n", i, t, acted);
        T_CHECK(acted != cases[i].clean);
        T_CHECK(mg_policy_text_clean(e, MG_POLICY_OUTPUT, t, strlen(t)) == cases[i].clean);
        mg_buf_free(&out);
    }
    mg_policy_effective_free(e);
}

T_TEST(zz_cleanup) { cleanup(); }

T_MAIN("policy_filter",
       T_CASE(redacts_every_message_role), T_CASE(blocks_anywhere_in_history), T_CASE(every_forwarded_field), T_CASE(tools_and_tool_results),
       T_CASE(embeddings_input), T_CASE(flag_records_without_changing), T_CASE(output_text), T_CASE(utf8_check_every_offset),
       T_CASE(stream_split_at_every_boundary), T_CASE(stream_blocks_before_emitting),
       T_CASE(stream_holdback_and_flush), T_CASE(stream_utf8_not_split), T_CASE(shortest_matches_still_caught),
       T_CASE(zz_cleanup))
