/* modelgate — model allowlist globs.
 *
 * Allowlist entries are exact model names or `*` globs ("llama3*", "*",
 * "gpt-4o-*"). Matching is case-sensitive like the model names themselves,
 * and linear-ish: the classic two-pointer matcher backtracks only to the
 * last star, so a hostile entry like "*a*a*a*b" cannot explode.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/policy_int.h"

bool mg_policy_glob_match(const char *pat, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s != '\0') {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat != '\0' && *pat == *s) {
            pat++;
            s++;
        } else if (star != NULL) {
            pat = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

bool mg_policy_effective_model_allowed(const mg_policy_effective *e, const char *model)
{
    if (e == NULL || model == NULL)
        return false;
    const mg_policy_doc *d = e->p->doc;
    for (size_t i = 0; i < e->n_roles; i++) {
        const mg_policy_role_def *r = &d->roles[e->roles[i]];
        for (size_t j = 0; j < r->n_models; j++)
            if (mg_policy_glob_match(r->models[j], model))
                return true;
    }
    return false;
}
