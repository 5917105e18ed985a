/* modelgate — the API-key admin API: GET/POST /admin/v1/keys,
 * DELETE /admin/v1/keys/{id}. Blocking (database): runs on a pool thread.
 * Creations and revocations are appended to the audit chain in the same
 * transaction as the change. The key is in the POST answer only, once.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth.h"
#include "auth_int.h"

#include "policy/store.h"
#include "policy/store_int.h"

#include <openssl/crypto.h>
#include <stdio.h>

static void reply_error(mg_policy_admin_reply *out, int status, const char *type, const char *code,
                        const char *msg)
{
    out->status = status;
    out->content_type = "application/json";
    mg_buf_reset(&out->body);
    mg_buf_append_str(&out->body, "{\"error\":{\"message\":");
    mg_buf_append_json_str(&out->body, msg, strlen(msg));
    mg_buf_printf(&out->body, ",\"type\":\"%s\",\"code\":\"%s\"}}", type, code);
}

static bool exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

static void list_keys(PGconn *c, mg_policy_admin_reply *out)
{
    PGresult *r = mg_auth_keys_list(c);
    if (r == NULL) {
        reply_error(out, 503, "server_error", "database_unavailable", "the key database is unavailable");
        return;
    }
    static const char *const f[] = {"id", "prefix", "user", "role", "name", "created_at", "expires_at",
                                    "state", "last_used_at"};
    out->status = 200;
    out->content_type = "application/json";
    mg_buf_append_str(&out->body, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < PQntuples(r); i++) {
        mg_buf_append_str(&out->body, i ? ",{" : "{");
        for (int k = 0; k < 9; k++) {
            const char *v = PQgetvalue(r, i, k);
            mg_buf_printf(&out->body, "%s\"%s\":", k ? "," : "", f[k]);
            if (v[0] == '\0' && k != 4)
                mg_buf_append_str(&out->body, "null");
            else
                mg_buf_append_json_str(&out->body, v, strlen(v));
        }
        mg_buf_append_str(&out->body, "}");
    }
    mg_buf_append_str(&out->body, "]}");
    PQclear(r);
}

static void create_key(PGconn *c, const char *body, size_t len, const char *actor, mg_policy_admin_reply *out)
{
    cJSON *j = cJSON_ParseWithLength(body ? body : "", len);
    const char *user = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "user"));
    const char *role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "role"));
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "name"));
    const char *expires = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "expires"));
    uint64_t exp_ms = 0;
    const char *bad = !cJSON_IsObject(j) ? "the body must be a JSON object"
                      : !mg_auth_keys_text_ok(user, 320) ? "user: required (the owner's email or subject)"
                      : !mg_auth_keys_role_ok(role) ? "role: required (letters, digits, _ - . :)"
                      : name && !mg_auth_keys_text_ok(name, 200) ? "name: 1-200 printable characters"
                      : expires && (mg_config_parse_duration_ms(expires, &exp_ms) != MG_OK || exp_ms < 1000 ||
                                    exp_ms > 20ULL * 366 * 86400 * 1000) ? "expires: a duration like 90d or 12h"
                      : NULL;
    if (bad) {
        reply_error(out, 400, "invalid_request_error", "invalid_key_request", bad);
        cJSON_Delete(j);
        return;
    }
    char key[MG_KEY_LEN + 1], id[MG_KEY_ID_LEN + 1], exp_at[40], err[300], after[512];
    if (mg_auth_keys_role_defined(c, role, err, sizeof(err)) == 0) {
        reply_error(out, 422, "invalid_request_error", "unknown_role",
                    "role: the policy in force has no such role (a key for it could do nothing)");
        cJSON_Delete(j);
        return;
    }
    mg_buf errs = {0};
    mg_rc rc = MG_AGAIN;
    if (exec_ok(c, "BEGIN")) {
        rc = mg_auth_keys_create(c, user, role, name, exp_ms, key, id, exp_at, sizeof(exp_at), err, sizeof(err));
        if (rc == MG_OK) {
            mg_buf a = {0};
            mg_buf_append_str(&a, "{\"id\":");
            mg_buf_append_json_str(&a, id, strlen(id));
            mg_buf_append_str(&a, ",\"user\":");
            mg_buf_append_json_str(&a, user, strlen(user));
            mg_buf_append_str(&a, ",\"role\":");
            mg_buf_append_json_str(&a, role, strlen(role));
            mg_buf_append_str(&a, "}");
            snprintf(after, sizeof(after), "%.*s", (int)a.len, a.p ? a.p : "{}");
            mg_buf_free(&a);
            if (mg_policy_audit_append(c, actor, "key.create", id, NULL, after, -1, &errs) != MG_OK ||
                !exec_ok(c, "COMMIT"))
                rc = MG_AGAIN;
        }
        if (rc != MG_OK)
            exec_ok(c, "ROLLBACK");
    }
    mg_buf_free(&errs);
    if (rc != MG_OK) {
        OPENSSL_cleanse(key, sizeof(key));
        reply_error(out, 503, "server_error", "database_unavailable", "the key could not be stored; try again");
        cJSON_Delete(j);
        return;
    }
    out->status = 201;
    out->content_type = "application/json";
    mg_buf_append_str(&out->body, "{\"id\":");
    mg_buf_append_json_str(&out->body, id, strlen(id));
    mg_buf_append_str(&out->body, ",\"key\":");
    mg_buf_append_json_str(&out->body, key, strlen(key));
    mg_buf_append_str(&out->body, ",\"user\":");
    mg_buf_append_json_str(&out->body, user, strlen(user));
    mg_buf_append_str(&out->body, ",\"role\":");
    mg_buf_append_json_str(&out->body, role, strlen(role));
    mg_buf_append_str(&out->body, ",\"expires_at\":");
    if (exp_at[0])
        mg_buf_append_json_str(&out->body, exp_at, strlen(exp_at));
    else
        mg_buf_append_str(&out->body, "null");
    mg_buf_append_str(&out->body, "}");
    OPENSSL_cleanse(key, sizeof(key));
    cJSON_Delete(j);
}

static void revoke_key(PGconn *c, const char *id, const char *actor, mg_policy_admin_reply *out)
{
    if (!mg_auth_keys_id_ok(&id)) {
        reply_error(out, 404, "invalid_request_error", "not_found", "no such key");
        return;
    }
    mg_buf errs = {0};
    int r = -1;
    if (exec_ok(c, "BEGIN")) {
        r = mg_auth_keys_revoke(c, id);
        if (r == 1 && (mg_policy_audit_append(c, actor, "key.revoke", id, NULL, NULL, -1, &errs) != MG_OK ||
                       !exec_ok(c, "COMMIT")))
            r = -1;
        if (r != 1)
            exec_ok(c, "ROLLBACK");
    }
    mg_buf_free(&errs);
    if (r < 0) {
        reply_error(out, 503, "server_error", "database_unavailable", "the key database is unavailable");
    } else if (r == 0) {
        reply_error(out, 404, "invalid_request_error", "not_found", "no such key");
    } else {
        out->status = 200;
        out->content_type = "application/json";
        mg_buf_printf(&out->body, "{\"id\":\"%s\",\"state\":\"revoked\"}", id);
    }
}

mg_rc mg_auth_keys_admin(const char *conninfo, const char *method, const char *path, const char *body,
                         size_t body_len, bool can_read, bool can_write, const char *actor,
                         mg_policy_admin_reply *out)
{
    static const char base[] = "/admin/v1/keys";
    const char *tail = path + sizeof(base) - 1;
    bool collection = *tail == '\0';
    bool item = *tail == '/' && tail[1] != '\0' && strchr(tail + 1, '/') == NULL;
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0,
         del = strcmp(method, "DELETE") == 0;
    if (!collection && !item) {
        reply_error(out, 404, "invalid_request_error", "not_found", "no such endpoint");
        return MG_OK;
    }
    if ((collection && !get && !post) || (item && !del)) {
        reply_error(out, 405, "invalid_request_error", "method_not_allowed", "method not allowed on this path");
        out->allow = collection ? "GET, POST" : "DELETE";
        return MG_OK;
    }
    if (get ? !(can_read || can_write) : !can_write) {
        reply_error(out, 403, "permission_error", "permission_denied",
                    get ? "this needs the keys:read or keys:write permission" : "this needs the keys:write permission");
        return MG_OK;
    }
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        reply_error(out, 503, "server_error", "database_unavailable", "the key database is unavailable");
        PQfinish(c);
        return MG_OK;
    }
    if (get)
        list_keys(c, out);
    else if (post)
        create_key(c, body, body_len, actor, out);
    else
        revoke_key(c, tail + 1, actor, out);
    PQfinish(c);
    return MG_OK;
}
