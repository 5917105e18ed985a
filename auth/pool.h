/* modelgate — the auth pool: a small bounded thread pool for blocking work.
 *
 * Worker loops never block. Whatever may wait on the network (JWKS and
 * discovery fetches, the code exchange, database lookups) runs here, and the
 * result goes back to the request's worker with mg_worker_post().
 *
 * A job is shared by two owners: the request that parked for it and the pool
 * thread running it. Both hold a reference; the request drops its reference
 * when it is freed (a cleanup on the request's arena), which also marks the
 * job cancelled, so a completion that arrives after the client went away
 * never touches the freed request. Completions run on the worker thread, the
 * same thread that frees requests, so `req` and `cancelled` need no lock.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_AUTH_POOL_H
#define MG_AUTH_POOL_H

#include "gateway/pipeline.h"

#include <stdatomic.h>

typedef struct mg_auth_pool mg_auth_pool;
typedef struct mg_auth_job mg_auth_job;

struct mg_auth_job {
    atomic_int refs;
    bool cancelled;              /* the request is gone (worker thread only) */
    mg_req *req;                 /* NULL once cancelled */
    mg_worker *worker;           /* where done() runs; NULL: no completion */
    mg_snapshot *snap;           /* reference held by the job */
    /* run on a pool thread; must not touch req */
    void (*run)(mg_auth_job *job);
    /* run on the worker loop with req still alive (never called if cancelled) */
    void (*done)(mg_auth_job *job, mg_req *req);
    void (*destroy)(mg_auth_job *job);  /* frees the job's own data (may be NULL) */
    struct mg_auth_job *next;    /* pool queue */
};

/* Starts nthreads threads with a queue of at most queue_cap jobs. NULL on
 * failure. */
mg_auth_pool *mg_auth_pool_new(const char *name, int nthreads, size_t queue_cap);
/* Stops the threads after the running jobs (queued jobs are dropped and
 * released) and frees the pool. */
void mg_auth_pool_free(mg_auth_pool *p);

/* Initialises a job for req (req may be NULL for background work; then
 * worker may be NULL too). The job starts with one reference for the pool;
 * attach it to the request with mg_auth_job_attach (adds the request's). */
void mg_auth_job_init(mg_auth_job *job, mg_req *req, mg_snapshot *snap);
/* Adds the request's reference and a cleanup on req->pool that cancels the
 * job when the request is freed. MG_ENOMEM if the cleanup could not be
 * registered (the job is then not attached). */
mg_rc mg_auth_job_attach(mg_auth_job *job, mg_req *req);
void mg_auth_job_release(mg_auth_job *job);

/* Queues job. MG_AGAIN when the queue is full (the caller answers 503 and
 * releases the job). On MG_OK the pool owns its reference. */
mg_rc mg_auth_pool_submit(mg_auth_pool *p, mg_auth_job *job);

/* Jobs queued or running (for tests and metrics). */
size_t mg_auth_pool_depth(mg_auth_pool *p);

#endif
