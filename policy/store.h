/* modelgate — policy storage: versions in PostgreSQL, the running policy,
 * the admin policy API, the audit chain and the policy/audit commands.
 *
 *   admin API / CLI ──mg_policy_store_put & co──▶ policy_versions + audit_log
 *        (blocking, one transaction: new version, audit row, NOTIFY policy_changed)
 *                                                     │
 *   store thread (own libpq connection) ◀─LISTEN + 1 s poll─┘
 *        │ load, validate, compile
 *        ▼
 *   atomic pointer ──mg_policy_current()──▶ workers (a new reference, never blocks)
 *
 * The empty policy (no version stored yet, or no database configured) has no
 * roles, no mappings and no filters: no principal holds a role, so nobody but
 * the master key can use any model or admin route. See docs/policy.md.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_POLICY_STORE_H
#define MG_POLICY_STORE_H

#include "gateway/config.h"
#include "gateway/core.h"
#include "policy/policy.h"

/* ------------------------------------------------------------------ */
/* The running policy (store.c)                                        */

/* Publishes the empty policy, then loads the newest stored version (one
 * attempt, bounded by a 5 s connect timeout) and starts the store thread,
 * which LISTENs on policy_changed and also checks the newest version every
 * second. A database that is down or a stored version that does not
 * validate is not fatal: the last good policy (at first the empty one) stays
 * in force, a warning is logged and the thread keeps trying. Without
 * cfg->database_url the empty policy stays and no thread runs. Copies what it
 * needs from cfg. MG_ERR (message in errs) only if the thread cannot start.
 * Call once per process, before the workers start. */
mg_rc mg_policy_store_start(const mg_config *cfg, mg_buf *errs);

/* Stops the thread and drops the published policy (references held by
 * callers stay valid). */
void mg_policy_store_stop(void);

/* A new reference to the policy in force (caller unrefs). Lock-free and wait-
 * free for callers: safe on an event loop. NULL only before start or after
 * stop. */
mg_policy *mg_policy_current(void);

/* Version number of the policy in force (0 = the empty policy, nothing
 * stored or nothing loaded yet). */
int64_t mg_policy_store_version(void);

/* True while the store thread's connection is up (for /readyz, metrics). */
bool mg_policy_store_connected(void);

/* ------------------------------------------------------------------ */
/* Writes and reads (store_db.c). All blocking: call them from the CLI or
 * a pool thread, never from an event loop. Each opens its own connection to
 * conninfo (a URL or key=value string).
 *
 * Result convention for writes: MG_OK and *http_status 200 when a new version
 * was stored, or 200 with nothing stored when the new document equals the
 * current one (no version, no audit row: nothing changed); MG_ERR otherwise,
 * with *http_status and one line per problem in errs:
 *   400  the body is not JSON
 *   422  the document does not validate: "json.path: message" lines
 *   404  role / filter to change or delete does not exist
 *   412  if_match does not match the current ETag
 *   503  database unreachable or failed
 * new_etag (may be NULL) receives a malloc'd copy of the ETag in force after
 * the call (quoted, as sent in the ETag header). */

#define MG_POLICY_ETAG_LEN 35   /* '"' + 32 hex + '"' + NUL */

/* The whole document. action names the audit action ("policy.put",
 * "policy.import"); NULL means "policy.put". */
mg_rc mg_policy_store_put(const char *conninfo, const char *doc_json, const char *actor,
                          const char *if_match, char **new_etag, mg_buf *errs,
                          int *http_status);
mg_rc mg_policy_store_put_action(const char *conninfo, const char *doc_json, size_t len,
                                 const char *actor, const char *action, const char *if_match,
                                 char **new_etag, mg_buf *errs, int *http_status);

/* One part of the document, replaced inside a new whole-document version
 * (validated as a whole, so errors name full paths like
 * "roles.eng.limits.usd_per_day"). json is the role / filter object, or the
 * role_mappings array; NULL json with kind ROLE deletes the role. The audit
 * row carries the part's before/after and target "roles.<name>",
 * "filters.<name>" or "role_mappings". */
typedef enum mg_policy_part { MG_POLICY_PART_ROLE, MG_POLICY_PART_FILTER, MG_POLICY_PART_MAPPINGS } mg_policy_part;
mg_rc mg_policy_store_put_part(const char *conninfo, mg_policy_part kind, const char *name,
                               const char *json, size_t len, const char *actor,
                               const char *if_match, char **new_etag, mg_buf *errs,
                               int *http_status);

/* The newest stored version: canonical export (the empty document when
 * nothing is stored) appended to out, its ETag in etag, its number in
 * *version (0 = nothing stored). MG_OK, or MG_AGAIN when the database is
 * unreachable or failed (message in errs). */
mg_rc mg_policy_store_get(const char *conninfo, mg_buf *out, char etag[MG_POLICY_ETAG_LEN],
                          int64_t *version, mg_buf *errs);

/* ------------------------------------------------------------------ */
/* ETags and the audit chain: pure functions (store_db.c)              */

/* ETag of a canonical export: '"' + first 16 bytes of its SHA-256 in hex + '"'. */
void mg_policy_etag(const char *canonical, size_t len, char out[MG_POLICY_ETAG_LEN]);

/* Does an If-Match header value allow a write over current (RFC 9110
 * 13.1.1: "*" matches any current representation, else a comma-separated
 * list of entity tags compared strongly, so W/ tags never match). NULL or
 * empty if_match: no precondition, true. */
bool mg_policy_etag_matches(const char *if_match, const char *current);

/* One audit row as hashed. Text fields are exactly what PostgreSQL returns
 * (ts as "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" in UTC, before/after as jsonb::text);
 * NULL means SQL NULL. */
typedef struct mg_policy_audit_row {
    int64_t id;
    const char *ts, *actor, *action, *target, *before, *after;
    int64_t policy_version;      /* < 0: NULL */
    const char *prev_hash;       /* 64 hex */
} mg_policy_audit_row;

#define MG_POLICY_AUDIT_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

/* hex SHA-256 over prev_hash and the row's fields, each length-prefixed so
 * no two different rows share an input (layout in docs/policy.md). */
void mg_policy_audit_hash(const mg_policy_audit_row *r, char out[65]);

/* Recomputes the whole chain. MG_OK: intact, *n_rows rows, head hash in
 * head (may be NULL). MG_ERR: tampering, *bad_id = the first bad row and a
 * line in errs saying how. MG_AGAIN: database unreachable (errs). */
mg_rc mg_policy_audit_verify(const char *conninfo, int64_t *n_rows, int64_t *bad_id,
                             char head[65], mg_buf *errs);

/* Appends {"entries":[...]} for rows with from <= ts < to (each bound
 * optional: a timestamp PostgreSQL accepts; a bare date YYYY-MM-DD in `to`
 * includes that whole day), oldest first, at most limit rows (1..10000).
 * MG_OK; MG_ERR bad bound (errs); MG_AGAIN database trouble (errs). */
mg_rc mg_policy_audit_list(const char *conninfo, const char *from, const char *to,
                           long limit, mg_buf *out, mg_buf *errs);

/* ------------------------------------------------------------------ */
/* Admin API handlers (admin.c)                                        */

typedef struct mg_policy_admin_reply {
    int status;
    const char *content_type;   /* static string */
    mg_buf body;                /* caller frees (mg_buf_free) */
    char etag[MG_POLICY_ETAG_LEN]; /* "" = no ETag header */
    const char *allow;          /* static; set with 405 */
} mg_policy_admin_reply;

/* Answers one admin request under /admin/v1/{policy,roles,filters,
 * role-mappings,audit} (path normalised, no query; query without '?', may
 * be NULL). Blocking (database): run it on a pool thread. Permissions are
 * checked before anything is read: policy:write for writes, policy:read or
 * policy:write for reads, audit:read for the audit log. Errors are in the
 * OpenAI shape {"error":{"message","type","code","param"}}, param naming the
 * first JSON path at fault. Returns MG_OK with out filled (any status, out
 * zero-initialised by the caller); MG_ENOMEM if even an error reply could
 * not be built. A path this module does not serve gets 404. */
mg_rc mg_policy_admin_handle(const char *conninfo, const char *method, const char *path,
                             const char *query, const char *body, size_t body_len,
                             const char *if_match, const char *actor,
                             const char *const *permissions, size_t npermissions,
                             mg_policy_admin_reply *out);

/* ------------------------------------------------------------------ */
/* Command line (cli.c): argv[0] is "policy" / "audit"; -c already taken
 * out. Exit codes 0 ok, 1 user error (bad file, validation, tampering),
 * 2 environment (database). */
int mg_cli_policy(int argc, char **argv, const mg_config *cfg);
int mg_cli_audit(int argc, char **argv, const mg_config *cfg);

#endif
