/* modelgate — unit tests for the job pools (gateway/jobs.c): background
 * jobs run and are destroyed once, a full queue says MG_AGAIN, stopping a
 * pool drops what is still queued (destroyed, never run), the per-thread
 * exit hook runs on every thread, and a job's snapshot reference is held
 * until its last reference goes.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"

#include "jobs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static atomic_int ran, destroyed, exits;
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static atomic_int blocked;       /* jobs waiting at the gate */

typedef struct test_job {
    mg_job job;
    bool wait_at_gate;
} test_job;

static void job_run(mg_job *j)
{
    test_job *t = (test_job *)j;
    if (t->wait_at_gate) {
        pthread_mutex_lock(&gate_mu);
        atomic_fetch_add(&blocked, 1);
        while (!gate_open)
            pthread_cond_wait(&gate_cv, &gate_mu);
        pthread_mutex_unlock(&gate_mu);
    }
    atomic_fetch_add(&ran, 1);
}

static void job_destroy(mg_job *j)
{
    atomic_fetch_add(&destroyed, 1);
    free(j);
}

static void thread_exit(void) { atomic_fetch_add(&exits, 1); }

static test_job *new_job(bool wait_at_gate)
{
    test_job *t = calloc(1, sizeof(*t));
    mg_job_init(&t->job, NULL, NULL);
    t->job.run = job_run;
    t->job.destroy = job_destroy;
    t->wait_at_gate = wait_at_gate;
    return t;
}

static void reset(void)
{
    atomic_store(&ran, 0);
    atomic_store(&destroyed, 0);
    atomic_store(&exits, 0);
    atomic_store(&blocked, 0);
    gate_open = false;
}

static void open_gate(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static void *opener_main(void *arg)
{
    (void)arg;
    usleep(20000);   /* let mg_job_pool_free start waiting first */
    open_gate();
    return NULL;
}

static void wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < 5000 && atomic_load(v) < want; i++)
        usleep(1000);
}

T_TEST(background_jobs_run_and_are_destroyed_once)
{
    reset();
    mg_job_pool *p = mg_job_pool_new("t", 2, 16, thread_exit);
    T_CHECK(p != NULL);
    for (int i = 0; i < 10; i++)
        T_EQ_INT(mg_job_pool_submit(p, &new_job(false)->job), MG_OK);
    wait_for(&destroyed, 10);
    T_EQ_INT(atomic_load(&ran), 10);
    T_EQ_INT(atomic_load(&destroyed), 10);
    T_EQ_INT(mg_job_pool_depth(p), 0);
    mg_job_pool_free(p);
    T_EQ_INT(atomic_load(&exits), 2);   /* the hook ran on both threads */
}

T_TEST(full_queue_is_refused_and_stop_drops_the_queue)
{
    reset();
    mg_job_pool *p = mg_job_pool_new("t", 1, 2, NULL);
    T_CHECK(p != NULL);
    /* One job holds the only thread; two more fill the queue. */
    T_EQ_INT(mg_job_pool_submit(p, &new_job(true)->job), MG_OK);
    wait_for(&blocked, 1);
    T_EQ_INT(atomic_load(&blocked), 1);
    T_EQ_INT(mg_job_pool_submit(p, &new_job(false)->job), MG_OK);
    T_EQ_INT(mg_job_pool_submit(p, &new_job(false)->job), MG_OK);
    test_job *extra = new_job(false);
    T_EQ_INT(mg_job_pool_submit(p, &extra->job), MG_AGAIN);
    mg_job_release(&extra->job);       /* the caller still owns a refused job */
    T_EQ_INT(atomic_load(&destroyed), 1);
    T_EQ_INT(mg_job_pool_depth(p), 3);  /* one running, two queued */
    /* Stop while the queue is full: the running job finishes, the queued
     * ones are released without running. */
    pthread_t opener;
    pthread_create(&opener, NULL, opener_main, NULL);
    mg_job_pool_free(p);
    pthread_join(opener, NULL);
    T_EQ_INT(atomic_load(&ran), 1);
    T_EQ_INT(atomic_load(&destroyed), 4);
}

T_TEST(references_keep_the_job_alive)
{
    reset();
    test_job *t = new_job(false);
    atomic_fetch_add(&t->job.refs, 1);  /* a second owner, as a request would be */
    mg_job_release(&t->job);
    T_EQ_INT(atomic_load(&destroyed), 0);
    mg_job_release(&t->job);
    T_EQ_INT(atomic_load(&destroyed), 1);
}

T_MAIN("jobs", T_CASE(background_jobs_run_and_are_destroyed_once),
       T_CASE(full_queue_is_refused_and_stop_drops_the_queue), T_CASE(references_keep_the_job_alive))
