/* modelgate — Azure OpenAI.
 *
 * Same bodies, replies and streams as OpenAI (shared through
 * openai_common.h); only the address and the credential differ: the
 * deployment name is part of the path, the API version a query parameter,
 * and the key travels in `api-key`. The body keeps `model` (set to the
 * deployment name): Azure ignores it, and keeping it makes a retry on an
 * OpenAI deployment see the same tree.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "adapters/openai_common.h"
#include "adapters/translate.h"

#include <stdio.h>

static mg_rc azure_build(mg_req *req, mg_upstream_request *out, char *err, size_t errsz)
{
    const mg_cfg_provider *p = req->provider;
    if (p->api_version == NULL) {
        snprintf(err, errsz, "the azure provider has no api_version configured");
        return MG_ERR;
    }
    mg_rc rc = mg_openai_build_body(req, out, err, errsz);
    if (rc != MG_OK)
        return rc;
    /* api_version comes from the operator's config; refuse anything that
     * would need encoding rather than guess. */
    if (strspn(p->api_version, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~") !=
        strlen(p->api_version)) {
        snprintf(err, errsz, "the azure provider's api_version has unexpected characters");
        return MG_ERR;
    }
    if (mg_buf_append_str(&out->url, p->base_url) != MG_OK ||
        mg_buf_append_str(&out->url, "/openai/deployments") != MG_OK ||
        mg_adapter_append_path_segment(&out->url, req->deployment->model) != MG_OK ||
        mg_buf_printf(&out->url, "%s?api-version=%s", mg_openai_path(req), p->api_version) != MG_OK)
        return MG_ENOMEM;
    if (rc == MG_OK)
        rc = mg_openai_common_headers(req, out);
    if (rc == MG_OK && p->api_key) {
        rc = mg_adapter_add_headerf(&out->headers, "api-key: %s", p->api_key);
        if (rc == MG_ERR)
            snprintf(err, errsz, "provider credential too long");
    }
    return rc;
}

const mg_adapter_ops mg_adapter_azure = {
    .type = "azure",
    .build = azure_build,
    .reply = mg_openai_reply,
    .stream_event = mg_openai_stream_event,
    .stream_content_type = "text/event-stream",
};
