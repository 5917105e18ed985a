/* modelgate — admin API handlers for the policy: request in, reply out.
 *
 * Pure functions over (method, path, query, body, If-Match, caller): the
 * gateway routes /admin/v1/{policy,roles,filters,role-mappings,audit} here
 * and runs the call on its blocking pool, since every answer needs the
 * database (each call opens its own short connection: the admin API is rare
 * traffic, and a fresh connection can never carry a stale transaction).
 *
 *   GET    /admin/v1/policy                 policy:read   ETag
 *   PUT    /admin/v1/policy                 policy:write  If-Match
 *   GET    /admin/v1/roles/{name}           policy:read   ETag of the whole policy
 *   PUT    /admin/v1/roles/{name}           policy:write  If-Match
 *   DELETE /admin/v1/roles/{name}           policy:write  If-Match
 *   GET    /admin/v1/filters/{name}         policy:read
 *   PUT    /admin/v1/filters/{name}         policy:write  If-Match
 *   POST   /admin/v1/filters/{name}/test    policy:read   {"text": ...}
 *   GET    /admin/v1/role-mappings          policy:read
 *   PUT    /admin/v1/role-mappings          policy:write  If-Match
 *   GET    /admin/v1/audit?from=&to=&limit= audit:read
 *
 * policy:write implies policy:read.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/store_int.h"

#include <stdio.h>
#include <stdlib.h>

#define JSON_TYPE "application/json"

typedef struct route {
    enum { R_POLICY, R_ROLE, R_FILTER, R_FILTER_TEST, R_MAPPINGS, R_AUDIT } kind;
    char name[65];
} route;

/* ------------------------------------------------------------------ */
/* Replies                                                              */

static const char *err_code(int status)
{
    switch (status) {
    case 400: return "invalid_json";
    case 403: return "permission_denied";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "stored_policy_invalid";
    case 412: return "precondition_failed";
    case 422: return "invalid_policy";
    case 503: return "database_unavailable";
    default: return "internal_error";
    }
}

/* errs holds "path: message" lines; the reply's message joins them with
 * "; " and param names the first line's path. */
static mg_rc reply_error(mg_policy_admin_reply *out, int status, const char *msg, size_t len)
{
    mg_buf_reset(&out->body);
    out->status = status;
    out->content_type = JSON_TYPE;
    out->etag[0] = '\0';
    while (len > 0 && msg[len - 1] == '\n')
        len--;
    mg_buf m = {0};
    mg_rc rc = MG_OK;
    for (size_t i = 0; i < len && rc == MG_OK; i++)
        rc = msg[i] == '\n' ? mg_buf_append_str(&m, "; ") : mg_buf_append(&m, msg + i, 1);
    /* a path is the text before ": " when it has no spaces (and is not "(document)") */
    size_t plen = 0;
    const char *colon = memchr(msg, ':', len);
    if (colon && colon + 1 < msg + len && colon[1] == ' ' && memchr(msg, ' ', (size_t)(colon - msg)) == NULL &&
        msg[0] != '(')
        plen = (size_t)(colon - msg);
    if (rc == MG_OK)
        rc = mg_buf_append_str(&out->body, "{\"error\":{\"message\":");
    if (rc == MG_OK)
        rc = mg_buf_append_json_str(&out->body, m.p ? m.p : "", m.len);
    if (rc == MG_OK)
        rc = mg_buf_printf(&out->body, ",\"type\":\"%s\",\"code\":\"%s\",\"param\":",
                           status >= 500 ? "server_error" : status == 403 ? "permission_error"
                                                                          : "invalid_request_error",
                           err_code(status));
    if (rc == MG_OK)
        rc = plen ? mg_buf_append_json_str(&out->body, msg, plen) : mg_buf_append_str(&out->body, "null");
    if (rc == MG_OK)
        rc = mg_buf_append_str(&out->body, "}}\n");
    mg_buf_free(&m);
    return rc;
}

static mg_rc reply_errs(mg_policy_admin_reply *out, int status, const mg_buf *errs)
{
    return reply_error(out, status, errs->p ? errs->p : "", errs->len);
}

static mg_rc reply_msg(mg_policy_admin_reply *out, int status, const char *msg)
{
    return reply_error(out, status, msg, strlen(msg));
}

static mg_rc reply_json(mg_policy_admin_reply *out, int status, const char *json, size_t len)
{
    mg_buf_reset(&out->body);
    out->status = status;
    out->content_type = JSON_TYPE;
    mg_rc rc = mg_buf_append(&out->body, json, len);
    if (rc == MG_OK && (len == 0 || json[len - 1] != '\n'))
        rc = mg_buf_append_str(&out->body, "\n");
    return rc;
}

static mg_rc reply_written(mg_policy_admin_reply *out, const mg_policy_write_result *res)
{
    mg_buf b = {0};
    mg_rc rc = mg_buf_printf(&b, "{\"version\":%lld,\"changed\":%s,\"etag\":", (long long)res->version,
                             res->changed ? "true" : "false");
    if (rc == MG_OK)
        rc = mg_buf_append_json_str(&b, res->etag, strlen(res->etag));
    if (rc == MG_OK)
        rc = mg_buf_append_str(&b, "}\n");
    if (rc == MG_OK)
        rc = reply_json(out, 200, b.p, b.len);
    memcpy(out->etag, res->etag, MG_POLICY_ETAG_LEN);
    mg_buf_free(&b);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Requests                                                             */

static bool has_perm(const char *const *perms, size_t n, const char *want)
{
    for (size_t i = 0; i < n; i++)
        if (perms[i] && strcmp(perms[i], want) == 0)
            return true;
    return false;
}

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* 0 matched, 404 unknown path, 400 bad name. */
static int parse_route(const char *path, route *r)
{
    static const char base[] = "/admin/v1/";
    memset(r, 0, sizeof(*r));
    if (strncmp(path, base, sizeof(base) - 1) != 0)
        return 404;
    const char *p = path + sizeof(base) - 1;
    if (strcmp(p, "policy") == 0) { r->kind = R_POLICY; return 0; }
    if (strcmp(p, "role-mappings") == 0) { r->kind = R_MAPPINGS; return 0; }
    if (strcmp(p, "audit") == 0) { r->kind = R_AUDIT; return 0; }
    const char *rest;
    if (strncmp(p, "roles/", 6) == 0) {
        r->kind = R_ROLE;
        rest = p + 6;
    } else if (strncmp(p, "filters/", 8) == 0) {
        r->kind = R_FILTER;
        rest = p + 8;
    } else {
        return 404;
    }
    size_t n = strcspn(rest, "/");
    if (rest[n] == '/') {
        if (r->kind != R_FILTER || strcmp(rest + n, "/test") != 0)
            return 404;
        r->kind = R_FILTER_TEST;
    }
    if (!name_ok(rest, n))
        return n == 0 ? 404 : 400;
    memcpy(r->name, rest, n);
    r->name[n] = '\0';
    return 0;
}

/* Percent-decoded value of a query parameter into out: 1 found, 0 absent,
 * -1 malformed or too long. */
static int query_param(const char *q, const char *name, char *out, size_t outsz)
{
    size_t nlen = strlen(name);
    for (const char *p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, name, nlen) != 0 || p[nlen] != '=')
            continue;
        size_t o = 0;
        for (const char *v = p + nlen + 1; *v && *v != '&'; v++) {
            char c = *v;
            if (c == '+') {
                c = ' ';
            } else if (c == '%') {
                char h[3] = {v[1], v[1] ? v[2] : 0, 0};
                char *end;
                long x = strtol(h, &end, 16);
                if (h[0] == 0 || h[1] == 0 || *end != '\0' || x <= 0)
                    return -1;
                c = (char)x;
                v += 2;
            }
            if (o + 1 >= outsz)
                return -1;
            out[o++] = c;
        }
        out[o] = '\0';
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Handlers                                                             */

/* The part of the stored policy a route names, printed; NULL if absent. */
static char *stored_part(const mg_buf *canon, const route *r)
{
    cJSON *root = cJSON_ParseWithLength(canon->p, canon->len);
    const cJSON *item = NULL;
    if (r->kind == R_MAPPINGS)
        item = cJSON_GetObjectItemCaseSensitive(root, "role_mappings");
    else
        item = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, r->kind == R_ROLE ? "roles" : "filters"),
                                                r->name);
    char *s = item ? cJSON_PrintUnformatted(item) : NULL;
    cJSON_Delete(root);
    return s;
}

static mg_rc handle_get(const char *conninfo, const route *r, mg_policy_admin_reply *out)
{
    mg_buf canon = {0}, errs = {0};
    char etag[MG_POLICY_ETAG_LEN];
    mg_rc rc = mg_policy_store_get(conninfo, &canon, etag, NULL, &errs);
    if (rc != MG_OK) {
        rc = reply_errs(out, rc == MG_AGAIN ? 503 : 409, &errs);
    } else if (r->kind == R_POLICY) {
        rc = reply_json(out, 200, canon.p, canon.len);
        memcpy(out->etag, etag, sizeof(etag));
    } else {
        char *part = stored_part(&canon, r);
        if (part == NULL) {
            char msg[128];
            snprintf(msg, sizeof(msg), "%s.%s: no such %s", r->kind == R_ROLE ? "roles" : "filters", r->name,
                     r->kind == R_ROLE ? "role" : "filter");
            rc = reply_msg(out, 404, msg);
        } else {
            rc = reply_json(out, 200, part, strlen(part));
            memcpy(out->etag, etag, sizeof(etag));
            cJSON_free(part);
        }
    }
    mg_buf_free(&canon);
    mg_buf_free(&errs);
    return rc;
}

static mg_rc handle_write(const char *conninfo, const route *r, const char *method, const char *body,
                          size_t len, const char *if_match, const char *actor,
                          mg_policy_admin_reply *out)
{
    int kind = r->kind == R_POLICY ? -1 : r->kind == R_ROLE ? MG_POLICY_PART_ROLE
             : r->kind == R_FILTER ? MG_POLICY_PART_FILTER : MG_POLICY_PART_MAPPINGS;
    bool del = strcmp(method, "DELETE") == 0;
    mg_buf errs = {0};
    mg_policy_write_result res;
    int status = 500;
    mg_rc rc = mg_policy_store_write(conninfo, kind, r->name[0] ? r->name : NULL, del ? NULL : (body ? body : ""),
                                     del ? 0 : len, actor, NULL, if_match, &res, &errs, &status);
    rc = rc == MG_OK ? reply_written(out, &res) : reply_errs(out, status, &errs);
    mg_buf_free(&errs);
    return rc;
}

static mg_rc handle_audit(const char *conninfo, const char *query, mg_policy_admin_reply *out)
{
    char from[80] = "", to[80] = "", lim[16] = "";
    long limit = 1000;
    if (query) {
        if (query_param(query, "from", from, sizeof(from)) < 0 || query_param(query, "to", to, sizeof(to)) < 0)
            return reply_msg(out, 400, "from/to: malformed");
        int has_limit = query_param(query, "limit", lim, sizeof(lim));
        if (has_limit < 0)
            return reply_msg(out, 400, "limit: must be a number between 1 and 10000");
        if (has_limit > 0) {
            char *end;
            limit = strtol(lim, &end, 10);
            if (*end != '\0' || end == lim)
                return reply_msg(out, 400, "limit: must be a number between 1 and 10000");
        }
    }
    mg_buf body = {0}, errs = {0};
    mg_rc rc = mg_policy_audit_list(conninfo, from, to, limit, &body, &errs);
    if (rc == MG_OK)
        rc = reply_json(out, 200, body.p, body.len);
    else
        rc = reply_errs(out, rc == MG_ERR ? 400 : 503, &errs);
    mg_buf_free(&body);
    mg_buf_free(&errs);
    return rc;
}

/* The test policy: the filter alone, held by one role. */
static mg_rc filter_test_policy(const char *name, const cJSON *def, mg_policy **out, mg_buf *errs)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *filters = cJSON_AddObjectToObject(doc, "filters");
    cJSON *roles = cJSON_AddObjectToObject(doc, "roles");
    cJSON *role = cJSON_AddObjectToObject(roles, "filter-test");
    cJSON *fl = cJSON_AddArrayToObject(role, "filters");
    cJSON *copy = cJSON_Duplicate(def, true);
    char *json = NULL;
    if (copy && fl && cJSON_AddItemToObject(filters, name, copy)) {
        copy = NULL;
        cJSON_AddItemToArray(fl, cJSON_CreateString(name));
        json = cJSON_PrintUnformatted(doc);
    }
    cJSON_Delete(copy);
    cJSON_Delete(doc);
    if (json == NULL) {
        mg_buf_append_str(errs, "out of memory\n");
        return MG_ENOMEM;
    }
    *out = mg_policy_load(json, strlen(json), errs);
    cJSON_free(json);
    return *out ? MG_OK : MG_ERR;
}

static mg_rc filter_verdict(const mg_policy *p, const char *text, size_t len, mg_policy_direction dir,
                            mg_buf *reply)
{
    const char *role = "filter-test";
    mg_policy_effective *e = mg_policy_effective_new((mg_policy *)p, &role, 1, NULL);
    if (e == NULL)
        return MG_ENOMEM;
    mg_policy_verdict v;
    mg_policy_verdict_init(&v);
    mg_buf filtered = {0}, decision = {0};
    bool applies = mg_policy_effective_has_filters(e, dir);
    mg_rc frc = mg_policy_filter_text(e, dir, text, len, &filtered, &v);
    mg_rc rc = frc == MG_ENOMEM ? MG_ENOMEM : mg_policy_verdict_decision(&v, &decision);
    if (rc == MG_OK)
        rc = mg_buf_printf(reply, "{\"direction\":\"%s\",\"applies\":%s,\"blocked\":%s,\"block_reason\":",
                           dir == MG_POLICY_INPUT ? "input" : "output", applies ? "true" : "false",
                           v.blocked ? "true" : "false");
    if (rc == MG_OK)
        rc = v.blocked && v.block_reason ? mg_buf_append_json_str(reply, v.block_reason, strlen(v.block_reason))
                                         : mg_buf_append_str(reply, "null");
    if (rc == MG_OK)
        rc = mg_buf_printf(reply, ",\"redactions\":%zu,\"decision\":", v.redactions);
    if (rc == MG_OK)
        rc = mg_buf_append_json_str(reply, decision.p ? decision.p : "", decision.len);
    /* what the upstream (input) or the client (output) would get; nothing
     * when blocked */
    if (rc == MG_OK)
        rc = mg_buf_append_str(reply, ",\"text\":");
    if (rc == MG_OK)
        rc = v.blocked ? mg_buf_append_str(reply, "null")
                       : mg_buf_append_json_str(reply, filtered.p ? filtered.p : "", filtered.len);
    if (rc == MG_OK)
        rc = mg_buf_append_str(reply, "}\n");
    mg_buf_free(&filtered);
    mg_buf_free(&decision);
    mg_policy_effective_free(e);
    return rc;
}

static mg_rc handle_filter_test(const char *conninfo, const route *r, const char *body, size_t len,
                                mg_policy_admin_reply *out)
{
    cJSON *req = body ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(req, "text");
    const cJSON *dirj = cJSON_GetObjectItemCaseSensitive(req, "direction");
    const cJSON *def = cJSON_GetObjectItemCaseSensitive(req, "filter");
    mg_buf errs = {0}, canon = {0}, reply = {0};
    cJSON *stored = NULL;
    mg_policy *p = NULL;
    mg_rc rc;
    if (req == NULL || !cJSON_IsObject(req)) {
        rc = reply_msg(out, 400, "(body): must be a JSON object {\"text\": ...}");
        goto out;
    }
    if (!cJSON_IsString(text)) {
        rc = reply_msg(out, 422, "text: must be a string");
        goto out;
    }
    if (dirj && (!cJSON_IsString(dirj) ||
                 (strcmp(dirj->valuestring, "input") != 0 && strcmp(dirj->valuestring, "output") != 0))) {
        rc = reply_msg(out, 422, "direction: must be \"input\" or \"output\"");
        goto out;
    }
    if (def == NULL) {
        /* no definition in the request: test the stored filter */
        char etag[MG_POLICY_ETAG_LEN];
        rc = mg_policy_store_get(conninfo, &canon, etag, NULL, &errs);
        if (rc != MG_OK) {
            rc = reply_errs(out, rc == MG_AGAIN ? 503 : 409, &errs);
            goto out;
        }
        route fr = *r;
        fr.kind = R_FILTER;
        char *s = stored_part(&canon, &fr);
        stored = s ? cJSON_Parse(s) : NULL;
        cJSON_free(s);
        if (stored == NULL) {
            char msg[128];
            snprintf(msg, sizeof(msg), "filters.%s: no such filter", r->name);
            rc = reply_msg(out, 404, msg);
            goto out;
        }
        def = stored;
    }
    rc = filter_test_policy(r->name, def, &p, &errs);
    if (rc != MG_OK) {
        rc = rc == MG_ENOMEM ? MG_ENOMEM : reply_errs(out, 422, &errs);
        goto out;
    }
    /* default direction: where the filter acts (input first) */
    mg_policy_direction dir = mg_policy_document(p)->filters[0].direction & MG_POLICY_INPUT ? MG_POLICY_INPUT
                                                                                          : MG_POLICY_OUTPUT;
    if (dirj)
        dir = strcmp(dirj->valuestring, "input") == 0 ? MG_POLICY_INPUT : MG_POLICY_OUTPUT;
    rc = filter_verdict(p, text->valuestring, strlen(text->valuestring), dir, &reply);
    if (rc == MG_OK)
        rc = reply_json(out, 200, reply.p, reply.len);
out:
    if (p)
        mg_policy_unref(p);
    cJSON_Delete(stored);
    cJSON_Delete(req);
    mg_buf_free(&errs);
    mg_buf_free(&canon);
    mg_buf_free(&reply);
    return rc;
}

mg_rc mg_policy_admin_handle(const char *conninfo, const char *method, const char *path,
                             const char *query, const char *body, size_t body_len,
                             const char *if_match, const char *actor,
                             const char *const *permissions, size_t npermissions,
                             mg_policy_admin_reply *out)
{
    route r;
    out->etag[0] = '\0';
    out->allow = NULL;
    int st = parse_route(path ? path : "", &r);
    if (st == 404)
        return reply_msg(out, 404, "no such admin resource");
    if (st == 400)
        return reply_msg(out, 400, "invalid name (1-64 letters, digits, '_' or '-')");

    static const char *const allow[] = {
        [R_POLICY] = "GET, PUT", [R_ROLE] = "GET, PUT, DELETE", [R_FILTER] = "GET, PUT",
        [R_FILTER_TEST] = "POST", [R_MAPPINGS] = "GET, PUT", [R_AUDIT] = "GET",
    };
    bool get = strcmp(method, "GET") == 0, put = strcmp(method, "PUT") == 0;
    bool del = strcmp(method, "DELETE") == 0, post = strcmp(method, "POST") == 0;
    bool ok = r.kind == R_FILTER_TEST ? post : r.kind == R_AUDIT ? get : r.kind == R_ROLE ? (get || put || del)
                                                                                       : (get || put);
    if (!ok) {
        mg_rc rc = reply_msg(out, 405, "method not allowed");
        out->allow = allow[r.kind];
        return rc;
    }

    bool can_write = has_perm(permissions, npermissions, "policy:write");
    bool can_read = can_write || has_perm(permissions, npermissions, "policy:read");
    const char *need = r.kind == R_AUDIT ? "audit:read" : (put || del) ? "policy:write" : "policy:read";
    bool allowed = r.kind == R_AUDIT ? has_perm(permissions, npermissions, "audit:read")
                 : (put || del) ? can_write : can_read;
    if (!allowed) {
        char msg[96];
        snprintf(msg, sizeof(msg), "this needs the %s permission", need);
        return reply_msg(out, 403, msg);
    }

    if (r.kind == R_AUDIT)
        return handle_audit(conninfo, query, out);
    if (r.kind == R_FILTER_TEST)
        return handle_filter_test(conninfo, &r, body, body_len, out);
    if (get)
        return handle_get(conninfo, &r, out);
    return handle_write(conninfo, &r, method, body, body_len, if_match, actor ? actor : "unknown", out);
}
