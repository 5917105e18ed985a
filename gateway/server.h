/* modelgate — workers, listeners, TLS and client connections.
 *
 * One worker thread per core, each with its own event loop, its own
 * SO_REUSEPORT listening sockets (the kernel spreads connections), its own
 * libcurl multi handle, and its own metrics. A connection never changes
 * worker, so nothing on the request path takes a lock.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_SERVER_H
#define MG_SERVER_H

#include "loop.h"
#include "pipeline.h"

#include <curl/curl.h>
#include <pthread.h>

typedef struct mg_metrics mg_metrics;

typedef struct mg_listener {
    mg_io io;
    mg_worker *worker;
    size_t index;                  /* into snapshot->cfg->listen */
    bool tls;
} mg_listener;

struct mg_worker {
    int id;
    pthread_t thread;
    mg_loop *loop;
    mg_listener *listeners;
    size_t nlisteners;
    mg_snapshot *snap;             /* the worker's current snapshot (ref held) */

    pthread_mutex_t mu;            /* guards the mailbox below */
    mg_snapshot *pending_snap;
    bool drain_requested;
    bool stop_requested;
    struct mg_post *posts;         /* completions from other threads (FIFO) */
    struct mg_post **posts_tail;

    bool draining;
    mg_conn *conns;                /* doubly linked list of open connections */
    size_t nconns;

    CURLM *multi;
    struct mg_h1_pool *h1;         /* built-in client's keep-alive pool (gateway/h1client.h),
                                      or NULL: libcurl for every upstream */
    CURL *easy_pool[64];           /* idle easy handles for reuse */
    size_t neasy;
    double retry_bank;             /* retry budget (gateway/route.c) */
    mg_timer curl_timer;
    mg_metrics *metrics;
    mg_upstream *dirty;            /* upstreams that queued client output */
    uint64_t rng[2];
};

/* Starts the server with the given snapshot (takes the caller's reference)
 * and blocks until shutdown: SIGHUP reloads cfg_path, SIGTERM/SIGINT drain.
 * Returns the process exit code. */
int mg_server_run(const char *cfg_path, mg_snapshot *snap);

/* Runs fn(arg) on worker w's loop thread soon (thread-safe). This is how
 * work done elsewhere (auth pool, database thread) hands its result back to
 * the loop that owns the request. Returns MG_ENOMEM if it could not queue. */
mg_rc mg_worker_post(mg_worker *w, void (*fn)(void *), void *arg);

/* For /metrics: snapshot of process-wide gauges. */
size_t mg_server_open_connections(void);
mg_worker *mg_server_worker(size_t i);
size_t mg_server_nworkers(void);
bool mg_server_draining(void);
/* The job pool of the admin API (policy, keys, usage reports: all
 * blocking database work). */
struct mg_job_pool *mg_server_admin_jobs(void);

/* Connection hooks used by response.c and proxy.c. */
void mg_conn_send(mg_conn *c, const char *p, size_t n);
size_t mg_conn_pending(const mg_conn *c);
void mg_conn_request_finished(mg_conn *c);
/* Flushes queued output and updates interest (may close a dead connection). */
void mg_conn_kick(mg_conn *c);
/* Called by the proxy to learn when the client drained its output. */
void mg_conn_set_drain_hook(mg_conn *c, void (*fn)(mg_req *), mg_req *req);
bool mg_conn_peer_trusted(const mg_conn *c);
/* Accepted on a `serve: ops` listener: only /healthz, /readyz, /metrics. */
bool mg_conn_ops(const mg_conn *c);

#define MG_OUT_HIGH_WATER (256 * 1024)
#define MG_OUT_LOW_WATER (64 * 1024)

#endif
