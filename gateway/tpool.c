/* modelgate — bounded thread pool for blocking work.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "tpool.h"

#include "log.h"
#include "server.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct mg_tjob {
    struct mg_tjob *next;
    mg_worker *w;
    void (*job)(void *);
    void (*done)(void *);
    void *arg;
} mg_tjob;

struct mg_tpool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    mg_tjob *head, **tail;
    size_t queued, max_queue;
    bool stopping;
    pthread_t *threads;
    size_t nthreads;
};

static void *tpool_main(void *arg)
{
    mg_tpool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->head == NULL && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        mg_tjob *j = p->head;
        if (j == NULL) {   /* stopping and nothing left */
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        p->head = j->next;
        if (p->head == NULL)
            p->tail = &p->head;
        p->queued--;
        pthread_mutex_unlock(&p->mu);
        j->job(j->arg);
        if (j->w == NULL || mg_worker_post(j->w, j->done, j->arg) != MG_OK) {
            /* No loop to return to (shutdown): finish on this thread. */
            j->done(j->arg);
        }
        free(j);
    }
}

mg_tpool *mg_tpool_new(size_t nthreads, size_t max_queue)
{
    mg_tpool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->tail = &p->head;
    p->max_queue = max_queue;
    p->threads = calloc(nthreads, sizeof(*p->threads));
    if (p->threads == NULL) {
        mg_tpool_free(p);
        return NULL;
    }
    for (; p->nthreads < nthreads; p->nthreads++) {
        if (pthread_create(&p->threads[p->nthreads], NULL, tpool_main, p) != 0) {
            mg_tpool_free(p);
            return NULL;
        }
    }
    return p;
}

mg_rc mg_tpool_submit(mg_tpool *p, mg_worker *w, void (*job)(void *), void (*done)(void *),
                      void *arg)
{
    mg_tjob *j = malloc(sizeof(*j));
    if (j == NULL)
        return MG_ENOMEM;
    *j = (mg_tjob){NULL, w, job, done, arg};
    pthread_mutex_lock(&p->mu);
    if (p->queued >= p->max_queue || p->stopping) {
        pthread_mutex_unlock(&p->mu);
        free(j);
        return MG_AGAIN;
    }
    *p->tail = j;
    p->tail = &j->next;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return MG_OK;
}

void mg_tpool_free(mg_tpool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
