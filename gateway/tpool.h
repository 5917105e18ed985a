/* modelgate — a small bounded thread pool for blocking work.
 *
 * Event loops never block; what must (a database report, an IdP call) is
 * submitted here. The job runs on a pool thread; its `done` callback then
 * runs on the submitting worker's loop (mg_worker_post), which is where the
 * request lives. The job must not touch the request: copy inputs into the
 * job's own struct, write outputs there. If the request goes away meanwhile,
 * the loop-side code marks the job orphaned and `done` just frees it.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_TPOOL_H
#define MG_TPOOL_H

#include "core.h"

typedef struct mg_worker mg_worker;
typedef struct mg_tpool mg_tpool;

/* Starts nthreads threads; at most max_queue jobs wait. NULL on failure. */
mg_tpool *mg_tpool_new(size_t nthreads, size_t max_queue);
/* Queues job(arg) and, after it, done(arg) on w's loop. MG_AGAIN if the
 * queue is full (answer 503: the pool is the bottleneck, not the client). */
mg_rc mg_tpool_submit(mg_tpool *p, mg_worker *w, void (*job)(void *), void (*done)(void *),
                      void *arg);
/* Finishes queued jobs, joins the threads, frees the pool. */
void mg_tpool_free(mg_tpool *p);

#endif
