/* modelgate — job pools: bounded queue, fixed threads, posted completions.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "jobs.h"

#include "log.h"
#include "server.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct mg_job_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    mg_job *head, **tail;
    size_t queued, running, cap;
    bool stop;
    int nthreads;
    pthread_t *threads;
    void (*thread_exit)(void);
    char name[16];
};

void mg_job_init(mg_job *job, mg_req *req, mg_snapshot *snap)
{
    atomic_init(&job->refs, 1);
    job->cancelled = false;
    job->req = NULL;
    job->worker = req ? req->worker : NULL;
    job->snap = snap ? mg_snapshot_ref(snap) : NULL;
    job->next = NULL;
}

void mg_job_release(mg_job *job)
{
    if (atomic_fetch_sub(&job->refs, 1) != 1)
        return;
    if (job->snap)
        mg_snapshot_unref(job->snap);
    if (job->destroy)
        job->destroy(job);
}

static void job_cancel(void *arg)
{
    mg_job *job = arg;
    job->cancelled = true;
    job->req = NULL;
    mg_job_release(job);
}

mg_rc mg_job_attach(mg_job *job, mg_req *req)
{
    atomic_fetch_add(&job->refs, 1);
    if (mg_pool_cleanup_add(req->pool, job_cancel, job) != MG_OK) {
        atomic_fetch_sub(&job->refs, 1);
        return MG_ENOMEM;
    }
    job->req = req;
    job->worker = req->worker;
    return MG_OK;
}

/* On the worker loop: hand the result to the request if it still exists. */
static void job_complete(void *arg)
{
    mg_job *job = arg;
    if (!job->cancelled && job->req && job->done)
        job->done(job, job->req);
    mg_job_release(job);
}

static void *pool_main(void *arg)
{
    mg_job_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->head == NULL)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        mg_job *job = p->head;
        p->head = job->next;
        if (p->head == NULL)
            p->tail = &p->head;
        p->queued--;
        p->running++;
        pthread_mutex_unlock(&p->mu);

        job->run(job);
        if (job->worker == NULL || mg_worker_post(job->worker, job_complete, job) != MG_OK) {
            if (job->worker)
                mg_log_error("%s pool: cannot post a completion (out of memory)", p->name);
            mg_job_release(job);
        }

        pthread_mutex_lock(&p->mu);
        p->running--;
    }
    pthread_mutex_unlock(&p->mu);
    if (p->thread_exit)
        p->thread_exit();
    return NULL;
}

mg_job_pool *mg_job_pool_new(const char *name, int nthreads, size_t queue_cap, void (*thread_exit)(void))
{
    mg_job_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (p->threads == NULL) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->tail = &p->head;
    p->cap = queue_cap;
    p->thread_exit = thread_exit;
    snprintf(p->name, sizeof(p->name), "%s", name);
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_main, p) != 0)
            break;
        char tn[16];
        snprintf(tn, sizeof(tn), "mg-%.8s-%d", name, i % 100);   /* 15 chars at most */
        pthread_setname_np(p->threads[i], tn);
        p->nthreads++;
    }
    if (p->nthreads == 0) {
        mg_job_pool_free(p);
        return NULL;
    }
    return p;
}

void mg_job_pool_free(mg_job_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    mg_job *q = p->head;
    p->head = NULL;
    p->tail = &p->head;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    while (q) {
        mg_job *next = q->next;
        mg_job_release(q);
        q = next;
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

mg_rc mg_job_pool_submit(mg_job_pool *p, mg_job *job)
{
    pthread_mutex_lock(&p->mu);
    if (p->stop || p->queued >= p->cap) {
        pthread_mutex_unlock(&p->mu);
        return MG_AGAIN;
    }
    job->next = NULL;
    *p->tail = job;
    p->tail = &job->next;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return MG_OK;
}

size_t mg_job_pool_depth(mg_job_pool *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->queued + p->running;
    pthread_mutex_unlock(&p->mu);
    return n;
}
