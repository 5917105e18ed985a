/* modelgate — fuzz target: the policy document parser.
 *
 * Any input may be rejected; an accepted one must survive the round trip
 * (export, parse the export, export again: same bytes, empty diff) and
 * compile, and its filters must run over a sample text. A violated
 * property aborts, so the fuzzer reports it like a crash.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/policy.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char SAMPLE[] = "mail a@example.com, card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE";

static void exercise(mg_policy *p)
{
    const mg_policy_doc *d = mg_policy_document(p);
    for (size_t i = 0; i < d->n_roles; i++) {
        const char *role = d->roles[i].name;
        mg_policy_effective *e = mg_policy_effective_new(p, &role, 1, NULL);
        if (e == NULL)
            continue;
        mg_policy_verdict v;
        mg_policy_verdict_init(&v);
        mg_buf out = {0};
        mg_policy_filter_text(e, MG_POLICY_BOTH, SAMPLE, sizeof(SAMPLE) - 1, &out, &v);
        mg_policy_limits l;
        mg_policy_effective_limits(e, "gpt-4o-mini", &l);
        mg_buf_free(&out);
        mg_policy_effective_free(e);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mg_buf errs = {0}, a = {0}, b = {0}, diff = {0};
    mg_policy_doc *d = mg_policy_doc_parse((const char *)data, size, &errs);
    if (d != NULL) {
        if (mg_policy_doc_export(d, &a) != MG_OK)
            abort();
        mg_policy_doc *d2 = mg_policy_doc_parse(a.p, a.len, &errs);
        if (d2 == NULL)
            abort();   /* our own export must validate */
        if (mg_policy_doc_export(d2, &b) != MG_OK || a.len != b.len || memcmp(a.p, b.p, a.len) != 0)
            abort();
        if (mg_policy_diff(d, d2, &diff) != MG_OK || diff.len != 0)
            abort();
        mg_policy_doc_free(d2);
        mg_policy *p = mg_policy_compile(d, &errs);
        if (p == NULL)
            mg_policy_doc_free(d);
        else {
            exercise(p);
            mg_policy_unref(p);
        }
    }
    mg_buf_free(&errs);
    mg_buf_free(&a);
    mg_buf_free(&b);
    mg_buf_free(&diff);
    return 0;
}
