/* modelgate — epoll event loop with a timer heap.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MG_LOOP_MAX_EVENTS 256

struct mg_loop {
    int epfd;
    mg_io wake_io;
    bool stopping;
    uint64_t now;
    bool due_now;          /* a timer was armed with no delay during this batch */
    mg_timer **heap;
    size_t nheap, capheap;
    void **graveyard;
    size_t ngrave, capgrave;
    void (*wake_cb)(void *);
    void *wake_arg;
};

static void loop_wake_read(mg_io *io, uint32_t events)
{
    mg_loop *loop = io->data;
    uint64_t v;
    MG_UNUSED(events);
    while (read(io->fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        ;
    if (loop->wake_cb)
        loop->wake_cb(loop->wake_arg);
}

mg_loop *mg_loop_new(void)
{
    mg_loop *loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->wake_io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    loop->wake_io.cb = loop_wake_read;
    loop->wake_io.data = loop;
    if (loop->epfd < 0 || loop->wake_io.fd < 0 ||
        mg_loop_io_set(loop, &loop->wake_io, EPOLLIN) != MG_OK) {
        mg_loop_free(loop);
        return NULL;
    }
    loop->now = mg_now_ms();
    return loop;
}

void mg_loop_free(mg_loop *loop)
{
    if (loop == NULL)
        return;
    if (loop->epfd >= 0)
        close(loop->epfd);
    if (loop->wake_io.fd >= 0)
        close(loop->wake_io.fd);
    for (size_t i = 0; i < loop->ngrave; i++)
        free(loop->graveyard[i]);
    free(loop->graveyard);
    free(loop->heap);
    free(loop);
}

mg_rc mg_loop_io_set(mg_loop *loop, mg_io *io, uint32_t events)
{
    if (events == io->events)
        return MG_OK;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    int op = io->events == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(loop->epfd, op, io->fd, &ev) != 0)
        return MG_ERR;
    io->events = events;
    return MG_OK;
}

/* ---- timer heap ---- */

static void heap_swap(mg_loop *loop, size_t a, size_t b)
{
    mg_timer *t = loop->heap[a];
    loop->heap[a] = loop->heap[b];
    loop->heap[b] = t;
    loop->heap[a]->heap_idx = a;
    loop->heap[b]->heap_idx = b;
}

static void heap_up(mg_loop *loop, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->when_ms <= loop->heap[i]->when_ms)
            break;
        heap_swap(loop, i, parent);
        i = parent;
    }
}

static void heap_down(mg_loop *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->nheap && loop->heap[l]->when_ms < loop->heap[m]->when_ms)
            m = l;
        if (r < loop->nheap && loop->heap[r]->when_ms < loop->heap[m]->when_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(loop, i, m);
        i = m;
    }
}

void mg_timer_disarm(mg_loop *loop, mg_timer *t)
{
    size_t i = t->heap_idx;
    if (i == SIZE_MAX)
        return;
    t->heap_idx = SIZE_MAX;
    loop->nheap--;
    if (i == loop->nheap)
        return;
    loop->heap[i] = loop->heap[loop->nheap];
    loop->heap[i]->heap_idx = i;
    heap_up(loop, i);
    heap_down(loop, loop->heap[i]->heap_idx);
}

mg_rc mg_timer_arm(mg_loop *loop, mg_timer *t, uint64_t delay_ms)
{
    uint64_t when = mg_now_ms() + delay_ms;
    if (delay_ms == 0)
        loop->due_now = true;
    if (t->heap_idx != SIZE_MAX) {
        uint64_t old = t->when_ms;
        t->when_ms = when;
        if (when < old)
            heap_up(loop, t->heap_idx);
        else
            heap_down(loop, t->heap_idx);
        return MG_OK;
    }
    if (loop->nheap == loop->capheap) {
        size_t cap = loop->capheap ? loop->capheap * 2 : 64;
        mg_timer **h = realloc(loop->heap, cap * sizeof(*h));
        if (h == NULL)
            return MG_ENOMEM;
        loop->heap = h;
        loop->capheap = cap;
    }
    t->when_ms = when;
    t->heap_idx = loop->nheap;
    loop->heap[loop->nheap++] = t;
    heap_up(loop, t->heap_idx);
    return MG_OK;
}

static void run_timers(mg_loop *loop)
{
    loop->due_now = false;
    loop->now = mg_now_ms();
    while (loop->nheap > 0 && loop->heap[0]->when_ms <= loop->now) {
        mg_timer *t = loop->heap[0];
        mg_timer_disarm(loop, t);
        t->cb(t);
    }
}

void mg_loop_run(mg_loop *loop, void (*idle)(void *), void (*wake)(void *), void *arg)
{
    struct epoll_event evs[MG_LOOP_MAX_EVENTS];
    loop->wake_cb = wake;
    loop->wake_arg = arg;
    while (!loop->stopping) {
        if (idle)
            idle(arg);
        int timeout = -1;
        if (loop->nheap > 0) {
            uint64_t now = mg_now_ms(), when = loop->heap[0]->when_ms;
            timeout = when <= now ? 0 : (int)(when - now > 60000 ? 60000 : when - now);
        }
        int n = epoll_wait(loop->epfd, evs, MG_LOOP_MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR)
            break;
        loop->now = mg_now_ms();
        for (int i = 0; i < n; i++) {
            mg_io *io = evs[i].data.ptr;
            io->cb(io, evs[i].events);
            /* A timer armed with no delay (libcurl asking to start a transfer
             * that a request just added) runs now, not after the rest of
             * the batch: otherwise the first request of a batch of N waits
             * for N-1 others to be parsed before its upstream send. Safe
             * because objects closed by a callback are freed only after the
             * batch (mg_loop_defer_free) and ignore their late events. */
            if (loop->due_now)
                run_timers(loop);
        }
        run_timers(loop);
        for (size_t i = 0; i < loop->ngrave; i++)
            free(loop->graveyard[i]);
        loop->ngrave = 0;
    }
}

void mg_loop_defer_free(mg_loop *loop, void *p)
{
    if (loop->ngrave == loop->capgrave) {
        size_t cap = loop->capgrave ? loop->capgrave * 2 : 64;
        void **g = realloc(loop->graveyard, cap * sizeof(*g));
        if (g == NULL) {
            /* Cannot defer: leaking one object beats a use-after-free. */
            return;
        }
        loop->graveyard = g;
        loop->capgrave = cap;
    }
    loop->graveyard[loop->ngrave++] = p;
}

void mg_loop_stop(mg_loop *loop) { loop->stopping = true; }

void mg_loop_wake(mg_loop *loop)
{
    uint64_t one = 1;
    ssize_t r = write(loop->wake_io.fd, &one, sizeof(one));
    MG_UNUSED(r);
}

uint64_t mg_loop_now(const mg_loop *loop) { return loop->now; }
