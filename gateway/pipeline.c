/* modelgate — the ordered request pipeline and the record stage.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "pipeline.h"

#include "log.h"
#include "metrics.h"
#include "server.h"

#include <stdio.h>

/* The order is the contract: nothing reaches "forward" without passing
 * every stage before it. */
static const mg_stage request_stages[] = {
    {"authenticate", mg_auth_stage},
    {"parse", mg_router_parse_stage},
    {"authorize", mg_policy_authorize_stage},
    {"filter_input", mg_policy_filter_input_stage},
    {"limits", mg_policy_limits_stage},
    {"forward", mg_proxy_forward_stage},
};

void mg_pipeline_run(mg_req *req)
{
    while ((size_t)req->next_stage < MG_ARRAY_LEN(request_stages)) {
        const mg_stage *st = &request_stages[req->next_stage++];
        mg_stage_rc rc = st->run(req);
        /* After RESPONDED the request may already be freed: touch nothing. */
        if (rc != MG_STAGE_NEXT)
            return;
    }
}

void mg_pipeline_resume(mg_req *req) { mg_pipeline_run(req); }

mg_rc mg_pipeline_filter_output(mg_req *req, mg_buf *buf, bool is_stream_event)
{
    /* Output content filters come with the policy engine; until a role's
     * policy names filters, replies pass unchanged. */
    MG_UNUSED(req);
    MG_UNUSED(buf);
    MG_UNUSED(is_stream_event);
    return MG_OK;
}

static void json_field_str(mg_buf *b, const char *name, const char *v)
{
    mg_buf_printf(b, ",\"%s\":", name);
    if (v)
        mg_buf_append_json_str(b, v, strlen(v));
    else
        mg_buf_append_str(b, "null");
}

void mg_pipeline_record(mg_req *req)
{
    uint64_t now = mg_now_us();
    uint64_t dur = now - req->t_start_us;
    int status = req->status ? req->status : (req->client_gone ? 499 : 500);
    const char *provider = req->provider ? req->provider->name : NULL;
    mg_metrics_request(req->worker->metrics, req->route, req->model ? req->model->name : NULL,
                       status, dur);
    if (!mg_access_log_enabled())
        return;
    char ts[40];
    mg_log_timestamp(ts, sizeof(ts));
    mg_buf b = {0};
    mg_buf_printf(&b, "{\"ts\":\"%s\",\"request_id\":\"%s\"", ts, req->request_id);
    json_field_str(&b, "client", req->client_ip);
    mg_buf_append_str(&b, ",\"method\":");
    mg_buf_append_json_str(&b, req->http->method_str.p, req->http->method_str.n);
    json_field_str(&b, "path", req->path);
    json_field_str(&b, "route", req->route);
    mg_buf_printf(&b, ",\"status\":%d", status);
    json_field_str(&b, "model", req->model_name);
    json_field_str(&b, "provider", provider);
    json_field_str(&b, "upstream_model", req->deployment ? req->deployment->model : NULL);
    mg_buf_printf(&b, ",\"stream\":%s", req->stream ? "true" : "false");
    json_field_str(&b, "auth", req->principal.kind);
    json_field_str(&b, "subject", req->principal.subject);
    if (req->usage.prompt_tokens >= 0)
        mg_buf_printf(&b, ",\"prompt_tokens\":%lld", (long long)req->usage.prompt_tokens);
    if (req->usage.completion_tokens >= 0)
        mg_buf_printf(&b, ",\"completion_tokens\":%lld", (long long)req->usage.completion_tokens);
    if (req->usage.estimated)
        mg_buf_append_str(&b, ",\"estimated\":true");
    mg_buf_printf(&b, ",\"latency_ms\":%.3f", (double)dur / 1000.0);
    if (req->t_first_byte_us && req->t_upstream_us)
        mg_buf_printf(&b, ",\"upstream_ms\":%.3f",
                      (double)(req->t_first_byte_us - req->t_upstream_us) / 1000.0);
    mg_buf_printf(&b, ",\"bytes_in\":%llu,\"bytes_out\":%llu", (unsigned long long)req->bytes_in,
                  (unsigned long long)req->bytes_out);
    if (req->error_code)
        json_field_str(&b, "error", req->error_code);
    if (req->client_gone)
        mg_buf_append_str(&b, ",\"client_gone\":true");
    mg_buf_append(&b, "}", 1);
    if (b.p)
        mg_access_log_line(b.p, b.len);
    mg_buf_free(&b);
}
