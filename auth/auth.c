/* modelgate — the authenticate stage.
 *
 * Credentials come from `Authorization: Bearer <secret>` or, for Anthropic
 * clients, `x-api-key: <secret>`. This build knows the break-glass master
 * key (auth.master_key); every other credential is refused with 401. There
 * is no unauthenticated mode.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth.h"

bool mg_auth_credential(const mg_http_request *http, mg_str *out)
{
    const mg_http_header *h = mg_http_header_get(http, "authorization");
    if (h) {
        mg_str v = h->value;
        if (v.n > 7 && mg_str_ieq(mg_str_make(v.p, 7), MG_STR_LIT("bearer "))) {
            size_t i = 7;
            while (i < v.n && v.p[i] == ' ')
                i++;
            *out = mg_str_make(v.p + i, v.n - i);
            return out->n > 0;
        }
        return false;
    }
    h = mg_http_header_get(http, "x-api-key");
    if (h && h->value.n > 0) {
        *out = h->value;
        return true;
    }
    return false;
}

mg_stage_rc mg_auth_stage(mg_req *req)
{
    mg_str secret;
    if (!mg_auth_credential(req->http, &secret)) {
        mg_req_respond_error(req, 401, "authentication_error", "missing_credentials",
                             "no credentials: send Authorization: Bearer <key>", 0);
        return MG_STAGE_RESPONDED;
    }
    const char *master = req->snap->cfg->master_key;
    if (master && mg_ct_equal(secret.p, secret.n, master, strlen(master))) {
        req->principal.authenticated = true;
        req->principal.master = true;
        req->principal.kind = "master_key";
        req->principal.subject = "master";
        return MG_STAGE_NEXT;
    }
    mg_req_respond_error(req, 401, "authentication_error", "invalid_credentials",
                         "the credentials are not valid", 0);
    return MG_STAGE_RESPONDED;
}
