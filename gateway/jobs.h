/* modelgate — job pools: small bounded thread pools for blocking work.
 *
 * Worker loops never block. Whatever may wait on the network (JWKS and
 * discovery fetches, the code exchange, credential lookups, admin API
 * calls and usage reports against PostgreSQL) runs on a pool thread, and the
 * result goes back to the request's worker with mg_worker_post(). Each
 * concern has a pool of its own (IdP, auth database, admin), so a hung IdP
 * never delays a key lookup and a long report never delays either.
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
#ifndef MG_JOBS_H
#define MG_JOBS_H

#include "pipeline.h"

#include <stdatomic.h>

typedef struct mg_job_pool mg_job_pool;
typedef struct mg_job mg_job;

struct mg_job {
    atomic_int refs;
    bool cancelled;              /* the request is gone (worker thread only) */
    mg_req *req;                 /* NULL once cancelled */
    mg_worker *worker;           /* where done() runs; NULL: no completion */
    mg_snapshot *snap;           /* reference held by the job */
    /* run on a pool thread; must not touch req */
    void (*run)(mg_job *job);
    /* run on the worker loop with req still alive (never called if cancelled) */
    void (*done)(mg_job *job, mg_req *req);
    void (*destroy)(mg_job *job);  /* frees the job's own data (may be NULL) */
    struct mg_job *next;         /* pool queue */
};

/* Starts nthreads threads (named "mg-<name>-<i>") with a queue of at most
 * queue_cap jobs; thread_exit (may be NULL) runs on each thread as it ends,
 * to close what the jobs kept per thread (database connections). NULL on
 * failure. */
mg_job_pool *mg_job_pool_new(const char *name, int nthreads, size_t queue_cap, void (*thread_exit)(void));
/* Stops the threads after the running jobs (queued jobs are dropped and
 * released) and frees the pool. */
void mg_job_pool_free(mg_job_pool *p);

/* Initialises a job for req (req may be NULL for background work; then
 * worker may be NULL too). The job starts with one reference for the pool;
 * attach it to the request with mg_job_attach (adds the request's). */
void mg_job_init(mg_job *job, mg_req *req, mg_snapshot *snap);
/* Adds the request's reference and a cleanup on req->pool that cancels the
 * job when the request is freed. MG_ENOMEM if the cleanup could not be
 * registered (the job is then not attached). */
mg_rc mg_job_attach(mg_job *job, mg_req *req);
void mg_job_release(mg_job *job);

/* Queues job. MG_AGAIN when the queue is full (the caller answers 503 and
 * releases the job). On MG_OK the pool owns its reference. */
mg_rc mg_job_pool_submit(mg_job_pool *p, mg_job *job);

/* Jobs queued or running (for tests and metrics). */
size_t mg_job_pool_depth(mg_job_pool *p);

#endif
