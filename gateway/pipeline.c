/* modelgate — the ordered request pipeline and the record stage.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "pipeline.h"

#include "adapters/adapter.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "usage/usage.h"

#include <stdio.h>

/* The order is the contract: nothing reaches "forward" without passing
 * every stage before it. */
const mg_stage mg_pipeline_api[] = {
    {"authenticate", mg_auth_stage},
    {"parse", mg_router_parse_stage},
    {"authorize", mg_policy_authorize_stage},
    {"filter_input", mg_policy_filter_input_stage},
    {"limits", mg_policy_limits_stage},
    {"forward", mg_proxy_forward_stage},
};
const size_t mg_pipeline_api_len = MG_ARRAY_LEN(mg_pipeline_api);

const mg_stage mg_pipeline_admin[] = {
    {"authenticate", mg_auth_stage},
    {"admin", mg_admin_stage},
};
const size_t mg_pipeline_admin_len = MG_ARRAY_LEN(mg_pipeline_admin);

bool mg_principal_can(const mg_principal *p, const char *permission)
{
    if (p->master)
        return true;
    for (size_t i = 0; i < p->npermissions; i++)
        if (strcmp(p->permissions[i], permission) == 0)
            return true;
    return false;
}

void mg_pipeline_run(mg_req *req)
{
    while ((size_t)req->next_stage < req->nstages) {
        const mg_stage *st = &req->stages[req->next_stage++];
        mg_stage_rc rc = st->run(req);
        /* After RESPONDED the request may already be freed: touch nothing. */
        if (rc != MG_STAGE_NEXT)
            return;
    }
}

void mg_pipeline_resume(mg_req *req) { mg_pipeline_run(req); }

mg_rc mg_pipeline_filter_output(mg_req *req, mg_buf *buf, bool is_stream_event)
{
    return mg_policy_filter_output(req, buf, is_stream_event);
}

static void json_field_str(mg_buf *b, const char *name, const char *v)
{
    mg_buf_printf(b, ",\"%s\":", name);
    if (v)
        mg_buf_append_json_str(b, v, strlen(v));
    else
        mg_buf_append_str(b, "null");
}

/* ---- usage ledger records (docs/ledger.md) ----
 * Each forwarded request journals a start record when it is first sent
 * upstream and a final record when its answer is about to complete (or,
 * if it ends any other way, in the record stage); the shipper lets the
 * final replace the start. A process killed mid-request leaves the start. */

static void fill_event(mg_req *req, mg_usage_event *ev, int status, uint64_t dur_us)
{
    const mg_cfg_model *m = req->model;
    int64_t pt = req->usage.prompt_tokens > 0 ? req->usage.prompt_tokens : 0;
    int64_t ct = req->usage.completion_tokens > 0 ? req->usage.completion_tokens : 0;
    double in = m && m->has_price ? m->input_per_mtok : 0, out = m && m->has_price ? m->output_per_mtok : 0;
    *ev = (mg_usage_event){
        .request_id = req->request_id,
        .ts_ms = req->t_start_wall_ms,
        .subject = req->principal.subject,
        .email = req->principal.email,
        .roles = req->principal.roles,
        .key_id = req->principal.key_id,
        .cost_center = req->principal.cost_center,
        .model = req->model_name,
        .served_model = m ? m->name : NULL,
        .provider = req->provider ? req->provider->name : NULL,
        .upstream_model = req->deployment ? req->deployment->model : NULL,
        .status = status,
        .prompt_tokens = pt,
        .completion_tokens = ct,
        /* the price of the snapshot the request started under: the price in force */
        .cost_usd = ((double)pt * in + (double)ct * out) / 1e6,
        .input_per_mtok = in,
        .output_per_mtok = out,
        .latency_ms = (int64_t)(dur_us / 1000),
        .stream = req->stream,
        .estimated = req->usage.estimated,
        .client_gone = req->client_gone,
        .decision = req->decision,
        .error_code = req->error_code,
    };
}

mg_rc mg_pipeline_forward_started(mg_req *req)
{
    if (req->t_upstream_us != 0 || req->provider == NULL)
        return MG_OK;   /* a retry or fallback: the start record is written */
    mg_usage_event ev;
    fill_event(req, &ev, 0, 0);
    ev.incomplete = true;
    ev.estimated = true;
    ev.prompt_tokens = mg_adapter_estimate_tokens(req->body.n);
    ev.completion_tokens = 0;
    ev.cost_usd = (double)ev.prompt_tokens * ev.input_per_mtok / 1e6;
    ev.error_code = NULL;
    if (mg_usage_record((size_t)req->worker->id, &ev) != MG_OK) {
        mg_log_error("usage journal write failed for request %s; not forwarding it", req->request_id);
        return MG_ERR;
    }
    return MG_OK;
}

void mg_pipeline_estimate_usage(mg_req *req)
{
    if (req->usage.prompt_tokens < 0) {
        req->usage.prompt_tokens = mg_adapter_estimate_tokens(req->body.n);
        req->usage.estimated = true;
    }
    if (req->usage.completion_tokens < 0) {
        req->usage.completion_tokens = mg_adapter_estimate_tokens(req->usage.output_chars);
        req->usage.estimated = true;
    }
}

mg_rc mg_pipeline_record_final(mg_req *req, int status)
{
    if (req->t_upstream_us == 0 || req->usage_final)
        return MG_OK;
    mg_pipeline_estimate_usage(req);
    mg_usage_event ev;
    fill_event(req, &ev, status, mg_now_us() - req->t_start_us);
    size_t w = (size_t)req->worker->id;
    if (mg_usage_record(w, &ev) != MG_OK) {
        mg_log_error("usage journal write failed for request %s; refusing its answer", req->request_id);
        return MG_ERR;
    }
    req->usage_final = true;
    return MG_OK;
}

/* The final record of a forwarded request that did not write it early
 * (errors, cut streams, client gone); requests refused before forwarding
 * have no ledger row. */
static void record_usage(mg_req *req, int status, uint64_t dur_us)
{
    if (req->t_upstream_us == 0 || req->provider == NULL)
        return;
    if (req->usage_final)
        return;   /* written before the last byte (mg_pipeline_record_final) */
    mg_usage_event ev;
    fill_event(req, &ev, status, dur_us);
    if (mg_usage_record((size_t)req->worker->id, &ev) != MG_OK)
        mg_log_error("usage journal write failed for request %s; refusing new requests until it recovers",
                     req->request_id);
}

void mg_pipeline_record(mg_req *req)
{
    uint64_t now = mg_now_us();
    uint64_t dur = now - req->t_start_us;
    int status = req->status ? req->status : (req->client_gone ? 499 : 500);
    const char *provider = req->provider ? req->provider->name : NULL;
    mg_metrics_request(req->worker->metrics, req->route, req->model ? req->model->name : NULL,
                       status, dur);
    mg_policy_settle(req);
    record_usage(req, status, dur);
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
