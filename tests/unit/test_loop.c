/* Unit tests: gateway/loop.c (timer heap ordering, I/O dispatch, wake-ups).
 * SPDX-License-Identifier: Apache-2.0
 */
#include "loop.h"
#include "t.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

static int fired[16];
static int nfired;
static mg_loop *L;

static void on_timer(mg_timer *t)
{
    fired[nfired++] = (int)(intptr_t)t->data;
    if (nfired == 3)
        mg_loop_stop(L);
}

T_TEST(timers_fire_in_deadline_order_and_disarm_works)
{
    L = mg_loop_new();
    mg_timer t[5];
    nfired = 0;
    for (int i = 0; i < 5; i++)
        mg_timer_init(&t[i], on_timer, (void *)(intptr_t)i);
    mg_timer_arm(L, &t[0], 30);
    mg_timer_arm(L, &t[1], 10);
    mg_timer_arm(L, &t[2], 20);
    mg_timer_arm(L, &t[3], 5);
    mg_timer_arm(L, &t[4], 1);
    mg_timer_disarm(L, &t[3]);
    mg_timer_arm(L, &t[4], 25);    /* re-arming moves it later */
    T_CHECK(!mg_timer_armed(&t[3]));
    T_CHECK(mg_timer_armed(&t[4]));
    mg_loop_run(L, NULL, NULL, NULL);
    T_EQ_INT(nfired, 3);
    T_EQ_INT(fired[0], 1);
    T_EQ_INT(fired[1], 2);
    T_EQ_INT(fired[2], 4);
    mg_timer_disarm(L, &t[0]);
    mg_loop_free(L);
}

static int io_calls;
static void on_readable(mg_io *io, uint32_t ev)
{
    char buf[8];
    T_CHECK(ev & EPOLLIN);
    T_EQ_INT(read(io->fd, buf, sizeof(buf)), 3);
    io_calls++;
    mg_loop_stop(L);
}

T_TEST(io_dispatch)
{
    int p[2];
    T_EQ_INT(pipe(p), 0);
    L = mg_loop_new();
    mg_io io = {.fd = p[0], .cb = on_readable};
    T_EQ_INT(mg_loop_io_set(L, &io, EPOLLIN), MG_OK);
    T_EQ_INT(write(p[1], "abc", 3), 3);
    io_calls = 0;
    mg_loop_run(L, NULL, NULL, NULL);
    T_EQ_INT(io_calls, 1);
    T_EQ_INT(mg_loop_io_set(L, &io, 0), MG_OK);
    mg_loop_free(L);
    close(p[0]);
    close(p[1]);
}

static int woke;
static void on_wake(void *arg)
{
    woke++;
    mg_loop_stop(arg);
}
static void *waker(void *arg)
{
    usleep(20000);
    mg_loop_wake(arg);
    return NULL;
}

T_TEST(wake_from_another_thread)
{
    mg_loop *loop = mg_loop_new();
    pthread_t th;
    woke = 0;
    pthread_create(&th, NULL, waker, loop);
    mg_loop_run(loop, NULL, on_wake, loop);
    pthread_join(th, NULL);
    T_EQ_INT(woke, 1);
    mg_loop_free(loop);
}

static char order[8];
static int norder;
static mg_timer now_timer;
static void on_now_timer(mg_timer *t)
{
    MG_UNUSED(t);
    order[norder++] = 'T';
    if (norder >= 3)
        mg_loop_stop(L);
}
static void on_batch_io(mg_io *io, uint32_t ev)
{
    char buf[8];
    MG_UNUSED(ev);
    T_EQ_INT(read(io->fd, buf, sizeof(buf)), 1);
    order[norder++] = 'I';
    if (norder == 1)
        mg_timer_arm(L, &now_timer, 0);
    if (norder >= 3)
        mg_loop_stop(L);
}

/* Two connections readable in the same batch: a timer armed with no delay by
 * the first callback (libcurl starting an upstream transfer) must run before
 * the second callback, not after the whole batch. */
T_TEST(zero_delay_timer_runs_before_the_rest_of_the_batch)
{
    int a[2], b[2];
    T_EQ_INT(pipe(a), 0);
    T_EQ_INT(pipe(b), 0);
    L = mg_loop_new();
    mg_io ia = {.fd = a[0], .cb = on_batch_io}, ib = {.fd = b[0], .cb = on_batch_io};
    mg_timer_init(&now_timer, on_now_timer, NULL);
    T_EQ_INT(mg_loop_io_set(L, &ia, EPOLLIN), MG_OK);
    T_EQ_INT(mg_loop_io_set(L, &ib, EPOLLIN), MG_OK);
    T_EQ_INT(write(a[1], "x", 1), 1);
    T_EQ_INT(write(b[1], "y", 1), 1);
    norder = 0;
    memset(order, 0, sizeof(order));
    mg_loop_run(L, NULL, NULL, NULL);
    T_EQ_STR(order, "ITI");
    mg_loop_io_set(L, &ia, 0);
    mg_loop_io_set(L, &ib, 0);
    mg_loop_free(L);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

T_MAIN("loop", T_CASE(timers_fire_in_deadline_order_and_disarm_works), T_CASE(io_dispatch),
       T_CASE(wake_from_another_thread), T_CASE(zero_delay_timer_runs_before_the_rest_of_the_batch))
