/* modelgate — usage ledger internals shared by journal.c, shipper.c,
 * report.c and the unit tests. Not part of the public API.
 *
 * Journal record (little-endian):
 *   magic  4 bytes  FF 'M' 'G' 'J'   (0xFF never occurs in UTF-8 text)
 *   length 4 bytes  payload length, 2 .. MG_JREC_MAX
 *   crc32  4 bytes  CRC-32 (IEEE) of the payload
 *   payload         one JSON object, UTF-8, no raw control characters,
 *                   starting with {"ts":"YYYY-MM-DDTHH:MM:SS.mmmZ"
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_USAGE_INT_H
#define MG_USAGE_INT_H

#include "usage/usage.h"

#include <pthread.h>
#include <stdatomic.h>

#define MG_JREC_HDR 12
#define MG_JREC_MAX (1u << 20)
#define MG_JSEG_NAME_LEN 32           /* "seg-%016llu-w%03u.mgj" + NUL, with room */

/* CRC-32 (IEEE, as zlib's crc32) of p[0..n). Uses PCLMULQDQ when the CPU
 * has it, else slice-by-8 tables; the value is the same either way.
 * _tables: always the table path; _accelerated: whether the CPU path is
 * used (both for the tests). */
uint32_t mg_usage_crc32(const void *p, size_t n);
uint32_t mg_usage_crc32_tables(const void *p, size_t n);
bool mg_usage_crc32_accelerated(void);

/* Appends one complete record (header + JSON payload) for ev to out.
 * MG_ERR if ev has no request_id or the payload would exceed MG_JREC_MAX. */
mg_rc mg_usage_encode(mg_buf *out, const mg_usage_event *ev);

/* Appends the COPY text line (seq, then the usage_events columns, tab
 * separated) for one journal payload. False if the payload is not a JSON
 * object (nothing appended): a dead letter. Records in the encoder's own
 * form are read directly; anything else goes through cJSON
 * (mg_usage_copy_line_slow), with the same line as the result. */
bool mg_usage_copy_line(mg_buf *b, size_t seq, const char *raw, size_t len);
bool mg_usage_copy_line_slow(mg_buf *b, size_t seq, const char *raw, size_t len);

/* One journal record in a shipper batch: its payload is data[pos, pos+len)
 * of the batch buffer; seq/off say where it was read (dead-letter source). */
typedef struct mg_usage_rec {
    uint64_t seq, off;
    size_t pos, len;
} mg_usage_rec;

/* Scratch memory for mg_usage_coalesce, reused from batch to batch (grown,
 * never shrunk). Zero-initialise; release with mg_usage_idset_free. */
struct mg_usage_idref;
struct mg_usage_walk;
typedef struct mg_usage_idset {
    uint32_t *slot;               /* open addressing: 1 + record index of a final, 0 = empty */
    size_t cap;                   /* slots allocated (a power of two) */
    struct mg_usage_idref *ref;   /* per record: where its id is, its hash, start/final */
    size_t nref;                  /* refs allocated */
    struct mg_usage_walk *walk;   /* per record: where each field's value is (encoder form) */
    size_t nwalk;                 /* walks allocated */
    size_t walked;                /* records of the last mg_usage_coalesce batch with walks; 0 none */
} mg_usage_idset;

/* Start-record coalescing for one batch of n records (payloads at
 * data + recs[i].pos). Sets drop[i] (caller's array of n) to true for each
 * start record ("incomplete":true) whose request id has a final record
 * ("incomplete":false) in the same batch, in either order, and to false
 * for every other record; returns how many it marked. Such a start can
 * never become the request's row (the final always wins), so the shipper
 * leaves it out of the COPY. Only records in mg_usage_encode's own form
 * are classified: ts, request_id, then the encoder's keys in its order up
 * to "incomplete", compact, and ids are compared as their raw JSON bytes;
 * a record of any other shape is kept and never causes a drop. Nothing is
 * parsed beyond "incomplete". On allocation failure, or n >= 2^30, marks
 * nothing (everything kept) and returns 0. */
size_t mg_usage_coalesce(const char *data, const mg_usage_rec *recs, size_t n, bool *drop, mg_usage_idset *set);
/* Appends the COPY lines (seq = record index) of every record not marked
 * in drop, the same bytes as mg_usage_copy_line record by record. set is
 * the one the last mg_usage_coalesce call filled for this very batch (same
 * data, recs and n): the positions it found while classifying a record in
 * the encoder's form are reused, so such a record is walked once. False as
 * soon as one record is not a JSON object (lines appended so far stay). */
bool mg_usage_copy_batch(mg_buf *b, const char *data, const mg_usage_rec *recs, size_t n, const bool *drop,
                         const mg_usage_idset *set);
void mg_usage_idset_free(mg_usage_idset *set);

typedef enum mg_jdec {
    MG_JDEC_OK,          /* a whole valid record: payload/plen set, used = record size */
    MG_JDEC_NEED_MORE,   /* buf ends inside a plausible record; used = 0 */
    MG_JDEC_CORRUPT,     /* garbage at buf[0]: skip `used` bytes (to the next magic) */
} mg_jdec;

/* Decodes the record at the start of buf[0..n). at_eof says no more bytes
 * will ever follow (a closed segment): an incomplete record there is
 * reported as corrupt instead of NEED_MORE. */
mg_jdec mg_usage_decode(const uint8_t *buf, size_t n, bool at_eof,
                        const uint8_t **payload, size_t *plen, size_t *used);

/* Segment file names: "seg-<16-digit seq>-w<worker>.mgj"; 0 if not one. */
uint64_t mg_usage_seg_seq(const char *name);
void mg_usage_seg_name(char out[MG_JSEG_NAME_LEN], uint64_t seq, size_t worker);

/* "YYYY-MM-DD" -> days since 1970-01-01; MG_ERR on bad syntax or date. */
mg_rc mg_usage_parse_date(const char *s, int64_t *days);

/* ---- process-wide ledger state ---- */

typedef struct mg_usage_worker {
    pthread_mutex_t mu;
    int fd;                  /* current segment, O_APPEND */
    uint64_t seq;            /* its sequence number */
    uint64_t size;           /* bytes of whole records written to it */
    uint64_t synced;         /* size at the last fdatasync (sync thread only) */
    int retired_fd;          /* previous segment awaiting fsync, or -1 */
    bool broken;             /* a torn write could not be undone: rotate first */
    mg_buf buf;              /* encode buffer, reused */
} mg_usage_worker;


typedef struct mg_usage_price {
    char *model;
    double in, out;
} mg_usage_price;

typedef struct mg_usage_ledger {
    char *dir;
    int dirfd, lockfd;
    char *conninfo;                  /* NULL: journal only */
    /* prices in force (guarded by mu): config at start, then each reload */
    mg_usage_price *prices; size_t nprices;
    uint64_t prices_gen;             /* bumped by every change; the shipper records up to it */
    uint64_t cfg_gen;                /* newest config generation seen */
    int64_t prices_eff_ms;           /* wall clock from which `prices` are in force */
    size_t nworkers;
    mg_usage_worker *w;
    uint64_t segment_max;
    uint64_t first_seq;              /* segments >= this were written by us */
    _Atomic uint64_t next_seq;
    atomic_bool dir_dirty;           /* a segment was created: fsync the dir */
    atomic_bool healthy;
    uint32_t db_timeout_ms;

    /* counters (mg_usage_stats) */
    _Atomic uint64_t journal_bytes, pending_bytes, written, acked_ours, shipped,
        duplicate, dead, corrupt, write_errors;
    _Atomic int64_t last_ship_ms;
    atomic_bool db_connected;

    /* thread control */
    pthread_t sync_thr, ship_thr;
    bool sync_started, ship_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop_ship, stop_sync;
    uint64_t drain_deadline_ms;      /* monotonic; set by mg_usage_stop */

    /* watchdog: the sync thread shuts the socket of a DB call overdue */
    pthread_mutex_t db_mu;
    int db_sock;
    uint64_t db_deadline_ms;
} mg_usage_ledger;

/* Is seq the current segment of a worker? If so *limit = its whole-record
 * size (the shipper must not read past it). */
bool mg_usage_seg_active(mg_usage_ledger *L, uint64_t seq, uint64_t *limit);

void *mg_usage_ship_main(void *arg);   /* shipper thread (shipper.c) */

int64_t mg_usage_wall_ms(void);

/* ---- command-line helpers (migrate.c) ---- */

struct pg_conn;
/* Blocking connection for CLI commands; NULL with a message in err. */
struct pg_conn *mg_usage_cli_connect(const char *conninfo, char *err, size_t errsz);
/* -c/--config FILE is the caller's; skip it. Returns how many argv slots
 * the option at argv[i] takes (0 if it is not -c). */
int mg_usage_cli_skip_config(int argc, char **argv, int i);

#endif
