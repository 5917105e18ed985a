/* modelgate — one epoll event loop per worker thread, with timers and a
 * cross-thread wake-up.
 *
 * A loop is owned by exactly one thread; only mg_loop_wake may be called from
 * other threads. Timers live in a binary min-heap; each mg_timer is embedded
 * in its owner, so arming/disarming never allocates.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_LOOP_H
#define MG_LOOP_H

#include "core.h"
#include <sys/epoll.h>

typedef struct mg_loop mg_loop;
typedef struct mg_io mg_io;

/* Called with the epoll event mask (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP). */
typedef void (*mg_io_cb)(mg_io *io, uint32_t events);

struct mg_io {
    int fd;
    uint32_t events;          /* currently registered mask, 0 if not registered */
    mg_io_cb cb;
    void *data;
};

typedef struct mg_timer mg_timer;
typedef void (*mg_timer_cb)(mg_timer *t);

struct mg_timer {
    uint64_t when_ms;         /* absolute, mg_now_ms() clock */
    size_t heap_idx;          /* position in the heap; SIZE_MAX when disarmed */
    mg_timer_cb cb;
    void *data;
};

mg_loop *mg_loop_new(void);
void mg_loop_free(mg_loop *loop);

/* Registers, changes or removes interest in io->fd. mg_loop_io_set with
 * events == 0 removes the fd from the set (it stays open). */
mg_rc mg_loop_io_set(mg_loop *loop, mg_io *io, uint32_t events);

static inline void mg_timer_init(mg_timer *t, mg_timer_cb cb, void *data)
{
    t->when_ms = 0;
    t->heap_idx = SIZE_MAX;
    t->cb = cb;
    t->data = data;
}
static inline bool mg_timer_armed(const mg_timer *t) { return t->heap_idx != SIZE_MAX; }
/* (Re)arms t to fire once after delay_ms. */
mg_rc mg_timer_arm(mg_loop *loop, mg_timer *t, uint64_t delay_ms);
void mg_timer_disarm(mg_loop *loop, mg_timer *t);

/* Runs until mg_loop_stop. Before each wait, the `idle` hook runs (used to
 * flush buffered log lines); `wake` runs in the loop thread after another
 * thread called mg_loop_wake. */
void mg_loop_run(mg_loop *loop, void (*idle)(void *), void (*wake)(void *), void *arg);
void mg_loop_stop(mg_loop *loop);
/* Thread-safe: interrupts the wait and makes the loop call its wake hook. */
void mg_loop_wake(mg_loop *loop);
uint64_t mg_loop_now(const mg_loop *loop);   /* cached per iteration */

/* Frees p (with free()) once the current batch of events has been
 * dispatched, so an event later in the same batch never touches freed
 * memory. Whoever defers must have unregistered the fd already. */
void mg_loop_defer_free(mg_loop *loop, void *p);

#endif
