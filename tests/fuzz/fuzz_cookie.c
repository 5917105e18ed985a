/* modelgate — fuzz target: Cookie header parsing and return_to validation.
 *
 * Any byte string is a possible Cookie header or return_to value. A value
 * found must lie inside the input; an accepted return_to must start with a
 * single '/' (the open-redirect property).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth/auth.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    mg_str v;
    static const char *names[] = {"__Host-mg_session", "a", "mg_oidc_state"};
    for (size_t i = 0; i < 3; i++) {
        if (mg_auth_cookie_get(mg_str_make(p, size), names[i], &v) &&
            (v.p < p || v.p + v.n > p + size))
            abort();
    }
    if (mg_auth_return_to_ok(p, size) &&
        (size == 0 || p[0] != '/' || (size > 1 && (p[1] == '/' || p[1] == '\\'))))
        abort();
    return 0;
}
