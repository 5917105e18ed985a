/* modelgate — policy storage internals shared by store.c, store_db.c,
 * admin.c and cli.c (not a public contract).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_POLICY_STORE_INT_H
#define MG_POLICY_STORE_INT_H

#include "policy/store.h"

#include <libpq-fe.h>

/* Blocking connection to conninfo (URL or key=value), with a connect timeout
 * and a statement timeout; NULL with a one-line message in err. */
PGconn *mg_policy_db_connect(const char *conninfo, const char *app, char *err, size_t errsz);

/* The newest version as read on connection c. */
typedef struct mg_policy_stored {
    int64_t version;            /* 0: nothing stored (the empty policy) */
    mg_buf canon;               /* canonical export */
    char etag[MG_POLICY_ETAG_LEN];
    mg_policy_doc *doc;         /* parsed; owned */
} mg_policy_stored;

/* MG_OK; MG_AGAIN on a database error; MG_ERR if the stored document no
 * longer validates (errs says why). Free with mg_policy_stored_free. */
mg_rc mg_policy_stored_load(PGconn *c, mg_policy_stored *st, mg_buf *errs);
void mg_policy_stored_free(mg_policy_stored *st);

/* Parses and validates json, and appends its canonical export to canon.
 * NULL with errs filled and *status 400 (not JSON) or 422 (invalid). */
mg_policy_doc *mg_policy_canonicalize(const char *json, size_t len, mg_buf *canon,
                                      mg_buf *errs, int *status);

/* Appends one row to the audit chain inside the caller's open transaction
 * (takes the chain's transaction-scoped advisory lock, so concurrent writers
 * append one after the other). before/after are JSON text or NULL;
 * policy_version < 0 for none. MG_AGAIN on a database error (errs). */
mg_rc mg_policy_audit_append(PGconn *c, const char *actor, const char *action,
                             const char *target, const char *before, const char *after,
                             int64_t policy_version, mg_buf *errs);

/* What a write did: changed false = the document equalled the current one
 * (version is then the current version, possibly 0). */
typedef struct mg_policy_write_result {
    int64_t version;
    bool changed;
    char etag[MG_POLICY_ETAG_LEN];
} mg_policy_write_result;

/* The one write path behind mg_policy_store_put*: kind -1 = the whole
 * document, else an mg_policy_part; json NULL deletes a role; action NULL
 * picks the default ("policy.put", "role.put", "role.delete", "filter.put",
 * "role_mappings.put"). Same conventions as mg_policy_store_put. */
mg_rc mg_policy_store_write(const char *conninfo, int kind, const char *name, const char *json,
                            size_t len, const char *actor, const char *action, const char *if_match,
                            mg_policy_write_result *res, mg_buf *errs, int *http_status);

/* The advisory lock key that serialises policy writes and audit appends. */
#define MG_POLICY_LOCK_KEY 0x6d67706fLL  /* "mgpo" */

#endif
