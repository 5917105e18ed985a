/* modelgate — the request pipeline.
 *
 * Every API request walks the same ordered list of stages (nginx phases,
 * Envoy filters). A stage returns an explicit result:
 *   MG_STAGE_NEXT      go on with the next stage,
 *   MG_STAGE_RESPONDED the stage answered the request itself (an error, a
 *                      denial, a locally served route); the pipeline stops,
 *   MG_STAGE_PARKED    the stage waits for something asynchronous (upstream
 *                      reply, auth pool); whoever completes it calls
 *                      mg_pipeline_resume() or answers the request.
 * Request stages run in order up to "forward"; the response stages
 * ("filter_output", "record") run on the reply path: filter_output on each
 * complete reply or stream event, record once when the request ends, however
 * it ends (success, error, client gone).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_PIPELINE_H
#define MG_PIPELINE_H

#include "core.h"
#include "http.h"
#include "snapshot.h"

#include <cjson/cJSON.h>

typedef struct mg_conn mg_conn;
typedef struct mg_worker mg_worker;
typedef struct mg_req mg_req;
typedef struct mg_upstream mg_upstream;

typedef enum mg_stage_rc { MG_STAGE_NEXT, MG_STAGE_RESPONDED, MG_STAGE_PARKED } mg_stage_rc;

/* Client API surfaces, so policy and adapters know which shape a body has. */
typedef enum mg_api {
    MG_API_NONE = 0,
    MG_API_CHAT,          /* POST /v1/chat/completions (OpenAI) */
    MG_API_EMBEDDINGS,    /* POST /v1/embeddings (OpenAI) */
    MG_API_MODELS,        /* GET /v1/models */
    MG_API_MESSAGES,      /* POST /v1/messages (Anthropic surface, canonical chat inside) */
} mg_api;

/* Who is calling. Filled by the authenticate stage. */
typedef struct mg_principal {
    bool authenticated;
    bool master;          /* break-glass key: every permission, every model */
    const char *kind;     /* "master_key", "api_key", "jwt", "session" */
    const char *subject;
    const char *email;
    const char *cost_center;
    const char *key_id;
    const char *name;
    int64_t expires_at;   /* when the credential ends (unix s), 0: not known */
    const char *const *groups;        /* IdP groups (JWT / session), or none */
    size_t ngroups;
    const char *const *role_list;     /* roles: the API key's, or mapped from claims */
    size_t nroles;
    const char *roles;                /* the same, comma-separated (ledger), or NULL */
    const char *const *permissions;   /* admin permissions ("usage:read", ...) */
    size_t npermissions;
} mg_principal;

/* Whether the principal holds an admin permission (the master key holds all). */
bool mg_principal_can(const mg_principal *p, const char *permission);

typedef struct mg_usage {
    int64_t prompt_tokens;      /* -1 unknown */
    int64_t completion_tokens;  /* -1 unknown */
    bool estimated;
    uint64_t output_chars;      /* generated text seen, for estimates */
} mg_usage;

struct mg_req {
    mg_conn *conn;
    mg_worker *worker;
    mg_snapshot *snap;          /* reference held for the request's lifetime */
    mg_pool *pool;

    const mg_http_request *http;
    mg_str body;                /* complete request body */
    const char *path;           /* normalised path (pool) */
    char request_id[40];
    char client_ip[64];         /* real peer, or X-Forwarded-For from a trusted proxy */

    mg_api api;
    const char *route;          /* metrics/log label: "chat", "healthz", ... */
    int next_stage;
    const struct mg_stage *stages;  /* the route's stage list */
    size_t nstages;
    void *job;                  /* what a parked request waits on (a budget lease round), or NULL */
    void (*job_orphan)(void *job); /* called if the request goes away first */

    cJSON *json;                /* parsed body (owned; freed with the pool) */
    bool json_modified;         /* json no longer says what body says (redaction,
                                   surface translation): never forward body raw */
    bool reply_needs_parse;     /* output filters will read the reply text */
    const char *model_name;     /* as the client asked (pool) */
    const mg_cfg_model *model;
    const mg_cfg_deployment *deployment;
    const mg_cfg_provider *provider;
    bool stream;                /* client asked for a stream */
    bool client_wants_usage;    /* stream_options.include_usage was set by the client */

    mg_principal principal;
    mg_usage usage;

    /* reply state */
    int status;                 /* status sent (or about to be) */
    const char *error_code;     /* OpenAI error code when status >= 400 */
    bool head_sent;
    bool chunked;               /* response body uses chunked framing */
    bool finished;
    bool client_gone;
    uint64_t t_start_us, t_upstream_us, t_first_byte_us;
    int64_t t_start_wall_ms;    /* wall clock at the start, for the ledger */
    const char *decision;       /* policy rule names for the ledger, or NULL */
    bool usage_final;           /* the final ledger record is journalled (before the
                                   last byte); the record stage writes no other */
    const char *extra_headers;  /* more response headers, each "Name: value\r\n" (pool),
                                   or NULL; sent with any response head, errors included */
    struct mg_policy_effective *policy; /* the caller's effective policy (pool), NULL for master */
    void *policy_hold;          /* limits reserved by the limits stage (policy/policy.c) */
    void *policy_out;           /* output stream filter state (policy/policy.c) */
    uint64_t bytes_in, bytes_out;

    mg_upstream *up;            /* upstream transfer, when forwarding */

    const struct mg_surface_ops *surface; /* NULL: the client speaks OpenAI */
    void *surface_state;        /* the surface's stream state (pool) */
    struct cJSON *adapter_state; /* the adapter's stream state (pool; reset per attempt) */
};

typedef struct mg_stage {
    const char *name;
    mg_stage_rc (*run)(mg_req *req);
} mg_stage;

/* The stage lists: model API routes, and admin routes (authenticate, then
 * the admin handler). */
extern const mg_stage mg_pipeline_api[];
extern const size_t mg_pipeline_api_len;
extern const mg_stage mg_pipeline_admin[];
extern const size_t mg_pipeline_admin_len;

/* Ledger hooks of the forwarding code (docs/ledger.md). Called each time an
 * upstream transfer is about to start; the first time for a request it
 * journals the start record (status 0, incomplete, estimated prompt
 * tokens). MG_ERR if the record could not be written: the caller must not
 * forward (answer 503 usage_journal_unavailable). */
mg_rc mg_pipeline_forward_started(mg_req *req);
/* Journals the request's final record now, before its last bytes are queued
 * (status as the client will see it); the record stage at the end then
 * writes nothing more, and a second call writes nothing and returns MG_OK.
 * MG_ERR if the write failed: the caller refuses to deliver the rest
 * (non-streamed: 503 usage_journal_unavailable instead of the body; stream:
 * an error event instead of its end). Token counts the provider did not
 * report are estimated first, as at the end. */
mg_rc mg_pipeline_record_final(mg_req *req, int status);
/* Fills in token counts the provider did not report, from the request body
 * and the text relayed so far, and marks them estimated. */
void mg_pipeline_estimate_usage(mg_req *req);

/* Runs req->stages from req->next_stage on. */
void mg_pipeline_run(mg_req *req);
/* Continues a parked request with the stage after the one that parked. */
void mg_pipeline_resume(mg_req *req);
/* Response stages, called by the forwarding code. filter_output may rewrite
 * the bytes in buf (e.g. redaction) or refuse them (returns MG_ERR with
 * status/error set). */
mg_rc mg_pipeline_filter_output(mg_req *req, mg_buf *buf, bool is_stream_event);
void mg_pipeline_record(mg_req *req);

/* Stage implementations (each in its module). */
mg_stage_rc mg_auth_stage(mg_req *req);           /* auth/ */
mg_stage_rc mg_router_parse_stage(mg_req *req);   /* gateway/router.c: JSON body, surface */
mg_stage_rc mg_policy_authorize_stage(mg_req *req); /* policy/ */
mg_stage_rc mg_policy_filter_input_stage(mg_req *req);
mg_stage_rc mg_policy_limits_stage(mg_req *req);
mg_stage_rc mg_proxy_forward_stage(mg_req *req);  /* gateway/proxy.c */
mg_stage_rc mg_admin_stage(mg_req *req);           /* gateway/admin.c */

/* Whether the principal may use model m (fallbacks are checked too). */
bool mg_policy_model_allowed(const mg_req *req, const mg_cfg_model *m);
/* Resolves the principal's effective policy and permissions (policy/policy.c):
 * MG_OK, MG_ERR when no policy is loaded, MG_ENOMEM. */
mg_rc mg_policy_resolve(mg_req *req);
/* Settles the limits reservation with the real usage (once, at the end). */
void mg_policy_settle(mg_req *req);
/* Output content filters on a canonical reply or on canonical SSE events
 * (rewritten in place); MG_ERR with req->error_code set when blocked. */
mg_rc mg_policy_filter_output(mg_req *req, mg_buf *buf, bool is_stream_event);

/* ---- answering (gateway/response.c) ----
 * All of these queue bytes on the connection; the connection flushes them.
 * mg_req_respond* and mg_req_stream_end finish the request. */
void mg_req_respond(mg_req *req, int status, const char *content_type,
                    const char *body, size_t len, const char *extra_headers);
/* OpenAI error shape {"error":{"message","type","code"}}; retry_after_s > 0
 * adds Retry-After. The message must never contain secrets or prompt text. */
void mg_req_respond_error(mg_req *req, int status, const char *type, const char *code,
                          const char *message, int retry_after_s);
void mg_req_stream_begin(mg_req *req, int status, const char *content_type);
void mg_req_stream_write(mg_req *req, const char *data, size_t len);
void mg_req_stream_end(mg_req *req);
/* Bytes queued for the client and not yet written (backpressure). */
size_t mg_req_pending_out(const mg_req *req);

#endif
