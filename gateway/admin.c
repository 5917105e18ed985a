/* modelgate — the admin API (/admin/v1/...): permission checks, then the
 * work handed to the blocking pool, the answer back on the request's loop.
 *
 * Routes reach here through the admin stage list (authenticate → admin);
 * the route table in router.c names them.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "pipeline.h"

#include "router.h"
#include "server.h"
#include "jobs.h"
#include "usage/usage.h"
#include "policy/policy.h"
#include "policy/store.h"
#include "auth/auth.h"

#include <stdio.h>
#include <stdlib.h>

/* Copies the percent-decoded value of query parameter `name` into out.
 * False if absent, malformed or too long. */
static bool query_get(mg_str q, const char *name, char *out, size_t outsz)
{
    size_t nlen = strlen(name), i = 0;
    while (i < q.n) {
        size_t end = i;
        while (end < q.n && q.p[end] != '&')
            end++;
        if (end - i > nlen && memcmp(q.p + i, name, nlen) == 0 && q.p[i + nlen] == '=') {
            size_t o = 0;
            for (size_t k = i + nlen + 1; k < end; k++) {
                char c = q.p[k];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%') {
                    if (k + 2 >= end)
                        return false;
                    char hex[3] = {q.p[k + 1], q.p[k + 2], 0};
                    char *e;
                    long v = strtol(hex, &e, 16);
                    if (*e != '\0' || v <= 0)
                        return false;
                    c = (char)v;
                    k += 2;
                }
                if (o + 1 >= outsz)
                    return false;
                out[o++] = c;
            }
            out[o] = '\0';
            return true;
        }
        i = end + 1;
    }
    return false;
}

/* ---------------------------------------------------------------- jobs */

/* Every admin call is a job on the admin pool (gateway/jobs.h): `run` there,
 * then `done` back on the request's loop unless the client left first. The
 * job holds a snapshot reference, so its database URL stays valid. Hands
 * j to the pool and parks the request; on failure releases j and answers
 * 503 with busy_msg. */
static mg_stage_rc job_start(mg_req *req, mg_job *j, const char *busy_msg)
{
    if (mg_job_attach(j, req) != MG_OK) {
        mg_job_release(j);
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    if (mg_job_pool_submit(mg_server_admin_jobs(), j) != MG_OK) {
        mg_job_release(j);   /* the pool's reference; the request's goes with it */
        mg_req_respond_error(req, 503, "server_error", "overloaded", busy_msg, 1);
        return MG_STAGE_RESPONDED;
    }
    return MG_STAGE_PARKED;
}

/* ---------------------------------------------------------------- usage */

typedef struct usage_job {
    mg_job job;                    /* first: the pool sees an mg_job */
    char *conninfo;
    char from[16], to[16], group[256], fmt[8];
    char filters[6][128];
    mg_usage_report_params params;
    mg_buf out;
    char err[256];
    mg_rc rc;
} usage_job;

static const char *const usage_filter_keys[6] = {"user", "role", "model", "provider", "cost_center", "key"};

static void usage_job_free(mg_job *base)
{
    usage_job *j = (usage_job *)base;
    free(j->conninfo);
    mg_buf_free(&j->out);
    free(j);
}

static void usage_job_run(mg_job *base)
{
    usage_job *j = (usage_job *)base;
    j->rc = mg_usage_report_query(j->conninfo, &j->params, &j->out, j->err, sizeof(j->err));
}

static void usage_job_respond(mg_job *base, mg_req *req)
{
    usage_job *j = (usage_job *)base;
    if (j->rc == MG_OK) {
        bool csv = j->params.format == MG_USAGE_CSV;
        mg_req_respond(req, 200, csv ? "text/csv; charset=utf-8" : "application/json", j->out.p ? j->out.p : "",
                       j->out.len, csv ? "Content-Disposition: attachment; filename=\"usage.csv\"\r\n" : NULL);
    } else if (j->rc == MG_ERR) {
        mg_req_respond_error(req, 400, "invalid_request_error", "invalid_report", j->err, 0);
    } else {
        mg_req_respond_error(req, 503, "server_error", "database_unavailable",
                             "the usage database is unavailable; try again", 5);
    }
}

static mg_stage_rc admin_usage(mg_req *req)
{
    if (!mg_principal_can(&req->principal, "usage:read")) {
        mg_req_respond_error(req, 403, "permission_error", "permission_denied",
                             "this needs the usage:read permission", 0);
        return MG_STAGE_RESPONDED;
    }
    const char *db = req->snap->cfg->database_url;
    if (db == NULL) {
        mg_req_respond_error(req, 503, "server_error", "no_database",
                             "no database is configured, so there is no ledger to report from", 0);
        return MG_STAGE_RESPONDED;
    }
    usage_job *j = calloc(1, sizeof(*j));
    if (j == NULL || (j->conninfo = strdup(db)) == NULL) {
        free(j);
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    mg_str q = req->http->query;
    if (!query_get(q, "from", j->from, sizeof(j->from)) || !query_get(q, "to", j->to, sizeof(j->to))) {
        usage_job_free(&j->job);
        mg_req_respond_error(req, 400, "invalid_request_error", "invalid_report",
                             "from and to (YYYY-MM-DD) are required", 0);
        return MG_STAGE_RESPONDED;
    }
    j->params.from = j->from;
    j->params.to = j->to;
    j->params.format = MG_USAGE_JSON;
    if (query_get(q, "format", j->fmt, sizeof(j->fmt))) {
        if (strcmp(j->fmt, "csv") == 0)
            j->params.format = MG_USAGE_CSV;
        else if (strcmp(j->fmt, "json") != 0) {
            usage_job_free(&j->job);
            mg_req_respond_error(req, 400, "invalid_request_error", "invalid_report",
                                 "format must be json or csv", 0);
            return MG_STAGE_RESPONDED;
        }
    }
    if (query_get(q, "group_by", j->group, sizeof(j->group)) && j->group[0]) {
        /* Split in place at the commas; the report validates the names. */
        char *tok = j->group;
        while (tok && j->params.ngroup < MG_USAGE_MAX_GROUP) {
            char *comma = strchr(tok, ',');
            if (comma)
                *comma = '\0';
            if (*tok)
                j->params.group_by[j->params.ngroup++] = tok;
            tok = comma ? comma + 1 : NULL;
        }
    }
    for (size_t i = 0; i < MG_ARRAY_LEN(usage_filter_keys); i++) {
        if (query_get(q, usage_filter_keys[i], j->filters[i], sizeof(j->filters[i]))) {
            j->params.filter_field[j->params.nfilter] = usage_filter_keys[i];
            j->params.filter_value[j->params.nfilter++] = j->filters[i];
        }
    }
    mg_job_init(&j->job, req, req->snap);
    j->job.run = usage_job_run;
    j->job.done = usage_job_respond;
    j->job.destroy = usage_job_free;
    return job_start(req, &j->job, "too many reports are running; try again");
}

/* ---------------------------------------------------------------- policy */

/* Policy, roles, filters, role mappings and the audit log: the store module
 * answers (blocking, database) on a pool thread; permissions are checked
 * there from the list copied here. */
typedef struct policy_job {
    mg_job job;                    /* first: the pool sees an mg_job */
    char *conninfo, *method, *path, *query, *body, *if_match, *actor;
    size_t body_len;
    char *perms[8];
    size_t nperms;
    mg_policy_admin_reply reply;
    mg_rc rc;
} policy_job;

static void policy_job_free(mg_job *base)
{
    policy_job *j = (policy_job *)base;
    free(j->conninfo);
    free(j->method);
    free(j->path);
    free(j->query);
    free(j->body);
    free(j->if_match);
    free(j->actor);
    for (size_t i = 0; i < j->nperms; i++)
        free(j->perms[i]);
    mg_buf_free(&j->reply.body);
    free(j);
}

static bool job_can(const policy_job *j, const char *perm)
{
    for (size_t i = 0; i < j->nperms; i++)
        if (strcmp(j->perms[i], perm) == 0)
            return true;
    return false;
}

static void policy_job_run(mg_job *base)
{
    policy_job *j = (policy_job *)base;
    if (strncmp(j->path, "/admin/v1/keys", 14) == 0) {
        j->rc = mg_auth_keys_admin(j->conninfo, j->method, j->path, j->body, j->body_len,
                                   job_can(j, "keys:read"), job_can(j, "keys:write"), j->actor, &j->reply);
        return;
    }
    j->rc = mg_policy_admin_handle(j->conninfo, j->method, j->path, j->query, j->body, j->body_len,
                                   j->if_match, j->actor, (const char *const *)j->perms, j->nperms,
                                   &j->reply);
}

static void policy_job_respond(mg_job *base, mg_req *req)
{
    policy_job *j = (policy_job *)base;
    if (j->rc != MG_OK) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
    } else {
        char extra[160] = "";
        if (j->reply.etag[0])
            snprintf(extra, sizeof(extra), "ETag: %s\r\n", j->reply.etag);
        else if (j->reply.allow)
            snprintf(extra, sizeof(extra), "Allow: %s\r\n", j->reply.allow);
        if (j->reply.status >= 400)
            req->error_code = "admin_error";
        mg_req_respond(req, j->reply.status, j->reply.content_type ? j->reply.content_type : "application/json",
                       j->reply.body.p ? j->reply.body.p : "", j->reply.body.len, extra[0] ? extra : NULL);
    }
}

static char *dup_str(mg_str s) { return s.p ? strndup(s.p, s.n) : NULL; }

static mg_stage_rc admin_policy(mg_req *req)
{
    const char *db = req->snap->cfg->database_url;
    if (db == NULL) {
        mg_req_respond_error(req, 503, "server_error", "no_database",
                             "no database is configured, so policies cannot be stored", 0);
        return MG_STAGE_RESPONDED;
    }
    policy_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    const mg_http_header *im = mg_http_header_get(req->http, "if-match");
    const mg_principal *p = &req->principal;
    char actor[256];
    snprintf(actor, sizeof(actor), "%s:%s", p->kind ? p->kind : "?",
             p->email ? p->email : p->subject ? p->subject : "?");
    j->conninfo = strdup(db);
    j->method = dup_str(req->http->method_str);
    j->path = strdup(req->path);
    j->query = dup_str(req->http->query);
    j->body = req->body.n ? strndup(req->body.p, req->body.n) : NULL;
    j->body_len = req->body.n;
    j->if_match = im ? dup_str(im->value) : NULL;
    j->actor = strdup(actor);
    static const char *const all[] = {"policy:write", "policy:read", "keys:write", "keys:read",
                                      "usage:read", "audit:read"};
    const char *const *perms = p->master ? all : p->permissions;
    size_t np = p->master ? MG_ARRAY_LEN(all) : p->npermissions;
    for (size_t i = 0; i < np && i < MG_ARRAY_LEN(j->perms); i++)
        j->perms[j->nperms++] = strdup(perms[i]);
    if (j->conninfo == NULL || j->method == NULL || j->path == NULL || j->actor == NULL) {
        policy_job_free(&j->job);
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    mg_job_init(&j->job, req, req->snap);
    j->job.run = policy_job_run;
    j->job.done = policy_job_respond;
    j->job.destroy = policy_job_free;
    return job_start(req, &j->job, "the admin API is busy; try again");
}

/* ---------------------------------------------------------------- dispatch */

/* Browsers send the session cookie with any request to us, so a mutating
 * admin call authenticated by that cookie must come from our own origin
 * (CSRF). Bearer-token callers are not browsers riding on ambient
 * credentials and need no check. */
static bool csrf_ok(const mg_req *req)
{
    mg_http_method m = req->http->method;
    if (m == MG_HTTP_GET || m == MG_HTTP_HEAD || m == MG_HTTP_OPTIONS)
        return true;
    if (req->principal.kind == NULL || strcmp(req->principal.kind, "session") != 0)
        return true;
    const char *pub = req->snap->cfg->public_url;
    const mg_http_header *origin = mg_http_header_get(req->http, "origin");
    if (pub == NULL || origin == NULL)
        return false;
    /* public_url's origin: scheme://host[:port], without any path. */
    const char *p = strstr(pub, "://");
    size_t n = strlen(pub);
    if (p) {
        const char *slash = strchr(p + 3, '/');
        if (slash)
            n = (size_t)(slash - pub);
    }
    return origin->value.n == n && memcmp(origin->value.p, pub, n) == 0;
}

/* GET /auth/me: who the caller is, whatever the credential, and what the
 * policy lets them do (models, filters, each limit with what is left). */
static mg_stage_rc auth_me(mg_req *req)
{
    /* Without a loaded policy the identity is still worth showing. */
    mg_policy_resolve(req);
    mg_buf b = {0};
    if (mg_auth_principal_json(req, &b) != MG_OK || mg_policy_describe(req, &b) != MG_OK) {
        mg_buf_free(&b);
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    mg_req_respond(req, 200, "application/json", b.p, b.len, NULL);
    mg_buf_free(&b);
    return MG_STAGE_RESPONDED;
}

mg_stage_rc mg_admin_stage(mg_req *req)
{
    if (strcmp(req->route, "auth_me") == 0)
        return auth_me(req);
    if (!csrf_ok(req)) {
        mg_req_respond_error(req, 403, "permission_error", "csrf_rejected",
                             "cross-site request refused: admin changes from a browser must come from this gateway's own pages",
                             0);
        return MG_STAGE_RESPONDED;
    }
    /* Permissions come from the caller's roles in the policy in force. */
    mg_rc rc = mg_policy_resolve(req);
    if (rc != MG_OK) {
        mg_req_respond_error(req, 503, "server_error", "policy_unavailable",
                             "no role policy is loaded yet; try again shortly", 5);
        return MG_STAGE_RESPONDED;
    }
    if (strcmp(req->route, "admin_usage") == 0)
        return admin_usage(req);
    if (strcmp(req->route, "admin_policy") == 0)
        return admin_policy(req);
    mg_req_respond_error(req, 404, "invalid_request_error", "not_found", "no such endpoint", 0);
    return MG_STAGE_RESPONDED;
}
