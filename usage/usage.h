/* modelgate — the usage ledger: one event per request, never lost.
 *
 * The record stage calls mg_usage_record() once per forwarded request,
 * before the last byte of the response is queued. The event is appended to
 * the worker's local journal (length + CRC + JSON, fsync'd in groups) and a
 * shipper thread copies journal records to PostgreSQL in batches
 * (idempotent on request_id), advancing a checkpoint only after the commit.
 * How it works and why: docs/ledger.md.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_USAGE_H
#define MG_USAGE_H

#include "gateway/core.h"
#include "gateway/config.h"

typedef struct mg_usage_event {
    const char *request_id;        /* unique; required (NULL -> MG_ERR) */
    int64_t ts_ms;                 /* wall clock, ms since the epoch, request start */
    const char *subject;
    const char *email;
    const char *roles;             /* comma-separated role names, or NULL */
    const char *key_id;            /* API key id, or NULL */
    const char *cost_center;
    const char *model;             /* as the client asked */
    const char *served_model;      /* configured model that served it (fallbacks) */
    const char *provider;
    const char *upstream_model;
    int status;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    double cost_usd;               /* from the price in force at ts */
    double input_per_mtok, output_per_mtok;  /* the price applied */
    int64_t latency_ms;
    bool stream;
    bool estimated;                /* token counts estimated, not reported */
    bool client_gone;
    /* A start record: written when the request is first sent upstream, with
     * status 0 and the estimated prompt tokens; the request's final record
     * supersedes it in the ledger. Alone (the process died mid-request) it
     * stays as the request's row, incomplete = true, billed at the estimate. */
    bool incomplete;
    const char *decision;          /* JSON array of rule names, or NULL */
    const char *error_code;
} mg_usage_event;

/* ---- journal + shipper (journal.c, shipper.c) ---------------------------- */

/* Opens (creates, mode 0700) cfg->journal_dir, takes its lock file (one
 * process per journal directory), opens one fresh segment per worker and
 * starts the sync and shipper threads. Copies what it needs from cfg (the
 * config may be freed afterwards). Without cfg->database_url the journal
 * still works and nothing is shipped. On failure returns MG_ERR with a line
 * in errs and leaves nothing running. Call once per process. */
mg_rc mg_usage_start(const mg_config *cfg, size_t nworkers, mg_buf *errs);

/* Appends one record to worker's current segment with a single write().
 * Never blocks on the database; no fsync (the sync thread fsyncs every
 * 100 ms). Safe to call from any thread, but meant to be called only by the
 * worker that owns index `worker` (< nworkers; no contention then).
 * Returns MG_ERR if the record could not be written (disk full, I/O error,
 * bad event); mg_usage_healthy() is then false until the journal can write
 * again. Returns MG_OK without writing if the ledger was never started. */
mg_rc mg_usage_record(size_t worker, const mg_usage_event *ev);

/* How the ledger appends to the audit chain (policy/store_db.c's
 * mg_policy_audit_append, set by the gateway before mg_usage_start; the
 * ledger's own test driver leaves it unset). Unset, or without the audit
 * table, a price change is recorded by its append-only `prices` row alone. */
struct pg_conn;
typedef mg_rc (*mg_usage_audit_fn)(struct pg_conn *c, const char *actor, const char *action,
                                   const char *target, const char *before, const char *after,
                                   int64_t policy_version, mg_buf *errs);
void mg_usage_set_audit(mg_usage_audit_fn fn);

/* The configuration's prices changed (a reload): from effective_ms on
 * (wall clock) they are the prices in force. The shipper appends a row to
 * `prices` for each model whose price differs from the row in force then,
 * with an audit entry, and never updates or deletes a row. generation is
 * the config snapshot's; calls with a generation not newer than the last
 * one are ignored (several threads may notice the same reload). Thread-safe;
 * copies what it needs. No-op before mg_usage_start. */
void mg_usage_prices_update(const mg_config *cfg, uint64_t generation, int64_t effective_ms);

/* False after a failed journal write, until a probe shows the journal's
 * file system can take writes again (checked every second). The gateway
 * fails closed (503) while this is false. */
bool mg_usage_healthy(void);

/* Drains: ships what it can within 5 s, fsyncs every segment, joins the
 * threads and closes everything. Callers stop calling mg_usage_record first. */
void mg_usage_stop(void);

struct mg_usage_stats {
    uint64_t journal_bytes;        /* bytes in journal segments on disk */
    uint64_t pending_bytes;        /* of those, not yet committed to the DB */
    uint64_t records_written;      /* appended by this process */
    uint64_t records_pending;      /* written by this process, not yet in the DB */
    uint64_t records_shipped;      /* new rows committed (any segment) */
    uint64_t records_duplicate;    /* already in the DB (replays) */
    uint64_t dead_letters;         /* rows PostgreSQL rejected, in usage_dead_letter */
    uint64_t corrupt_bytes;        /* torn/corrupt journal bytes skipped */
    uint64_t write_errors;         /* failed mg_usage_record writes */
    int64_t last_ship_ms;          /* wall clock of the last commit; 0 = never */
    bool db_connected;
    bool healthy;
};
/* Snapshot of the counters (thread-safe, lock-free reads). */
void mg_usage_stats(struct mg_usage_stats *out);

/* ---- reports (report.c) -------------------------------------------------- */

typedef enum mg_usage_format { MG_USAGE_TABLE, MG_USAGE_CSV, MG_USAGE_JSON } mg_usage_format;

#define MG_USAGE_MAX_GROUP 8
#define MG_USAGE_MAX_FILTER 16

typedef struct mg_usage_report_params {
    const char *from;              /* "YYYY-MM-DD" (UTC, inclusive) */
    const char *to;                /* "YYYY-MM-DD" (UTC, inclusive: the whole day) */
    /* group-by keys in output order: user, role, model, provider, day,
     * month, cost_center, key */
    const char *group_by[MG_USAGE_MAX_GROUP];
    size_t ngroup;
    /* equality filters on the same keys (plus status, served_model) */
    const char *filter_field[MG_USAGE_MAX_FILTER];
    const char *filter_value[MG_USAGE_MAX_FILTER];
    size_t nfilter;
    mg_usage_format format;
} mg_usage_report_params;

/* Runs the report on its own short-lived connection (blocking; run it off
 * the event loop) and appends it to out (caller owns out). Returns MG_OK,
 * MG_ERR for bad parameters (message in err), or MG_AGAIN when the database
 * is unreachable or failed (message in err) -- the CLI maps these to exit 0,
 * 1 and 2. */
mg_rc mg_usage_report_query(const char *conninfo, const mg_usage_report_params *p,
                            mg_buf *out, char *err, size_t errsz);

/* ---- command line (migrate.c, report.c) ---------------------------------- */

/* `modelgate migrate [--dir DIR]`; argv[0] is "migrate". Exit code 0/1/2. */
int mg_cli_migrate(int argc, char **argv, const mg_config *cfg);

/* `modelgate usage ...` (report, reconcile, export, drop); argv[0] is
 * "usage". Exit code 0/1/2. */
int mg_cli_usage(int argc, char **argv, const mg_config *cfg);

#endif
