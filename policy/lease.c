/* modelgate — budget leases (see policy/lease.h and docs/policy.md).
 *
 * Why a thread of its own and not the admin job pool or the policy store's
 * thread: lease work belongs to no request (a refill serves whoever comes
 * next, settlements are batched per round), so the job pools' job-per-request
 * shape does not fit, and its 4 threads are shared with reports that may
 * take seconds. The store thread must apply a new policy within a second;
 * a slow budget query on its connection would delay that. So: one thread,
 * one connection, rounds of at most one statement per active counter.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/lease.h"

#include "policy/store_int.h"
#include "gateway/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static const char *const slot_names[MG_POLICY_LEASE_SLOTS] = {"tokens_day", "tokens_month", "usd_day",
                                                              "usd_month"};
static const mg_policy_limit slot_limits[MG_POLICY_LEASE_SLOTS] = {
    MG_POLICY_LIM_TOKENS_DAY, MG_POLICY_LIM_TOKENS_MONTH, MG_POLICY_LIM_USD_DAY, MG_POLICY_LIM_USD_MONTH};

typedef struct waiter {
    struct waiter *next;
    void (*fn)(void *);
    void *arg;
} waiter;

static struct {
    atomic_bool enabled;
    atomic_bool stopping;
    char *conninfo;
    char instance[40];
    pthread_t thr;
    int wake[2];
    atomic_bool wake_pending;
    _Atomic int64_t last_ok_ms;     /* last successful round (monotonic ms), 0 never */
    pthread_mutex_t mu;             /* registry head and waiters */
    mg_policy_lease_set *head;
    waiter *waiters;
    PGconn *c;
    int64_t last_sweep_ms;
} L = {.wake = {-1, -1}, .mu = PTHREAD_MUTEX_INITIALIZER};

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

bool mg_policy_lease_enabled(void) { return atomic_load(&L.enabled); }

int64_t mg_policy_lease_chunk(int64_t limit, int64_t avail, int64_t need, int64_t want, int64_t instances)
{
    if (need < 1)
        need = 1;
    if (avail < need)
        return 0;
    if (instances < 1)
        instances = 1;
    int64_t share = limit / (4 * instances);
    int64_t c = want > share ? want : share;
    if (c > avail)
        c = avail;
    return c > need ? c : need;
}

static void wake_thread(void)
{
    if (atomic_exchange(&L.wake_pending, true))
        return;
    ssize_t w = write(L.wake[1], "x", 1);
    MG_UNUSED(w);   /* a full pipe already means "wake up" */
}

static void register_set(mg_policy_lease_set *ls)
{
    if (atomic_load_explicit(&ls->registered, memory_order_acquire))
        return;
    pthread_mutex_lock(&L.mu);
    if (!atomic_load(&ls->registered)) {
        ls->next = L.head;
        L.head = ls;
        atomic_store(&ls->registered, true);
    }
    pthread_mutex_unlock(&L.mu);
}

static mg_policy_budget *slot_budget(mg_policy_budgets *b, int i)
{
    mg_policy_budget *v[] = {&b->tokens_day, &b->tokens_month, &b->usd_day, &b->usd_month};
    return v[i];
}

static int64_t slot_period(int i, int64_t unix_s)
{
    return (i % 2 == 0) ? mg_policy_day_id(unix_s) : mg_policy_month_id(unix_s);
}

/* What the local lease lets this instance admit in slot i for period. */
static int64_t lease_cap(const mg_policy_lease *l, int64_t period)
{
    if (atomic_load_explicit(&l->period, memory_order_acquire) != period)
        return 0;
    return atomic_load_explicit(&l->granted, memory_order_acquire);
}

static void want_refill(mg_policy_lease *l, int64_t amount)
{
    atomic_fetch_add(&l->want, amount);
    int64_t n = atomic_load(&l->need);
    while ((n == 0 || amount < n) && !atomic_compare_exchange_weak(&l->need, &n, amount))
        ;
}

mg_policy_lease_rc mg_policy_lease_reserve(mg_policy_lease_set *ls, mg_policy_budgets *b,
                                           const mg_policy_limits *lim, int64_t unix_s,
                                           int64_t tokens, int64_t micro_usd, bool may_wait,
                                           mg_policy_budget_hold *h, mg_policy_limit *which,
                                           int64_t *retry_after_s)
{
    register_set(ls);
    int64_t t = now_ms(), last_ok = atomic_load(&L.last_ok_ms);
    bool fresh = last_ok != 0 && t - last_ok < MG_POLICY_LEASE_TTL_S * 1000 / 2;
    mg_policy_limits capped = *lim;
    int64_t amount[MG_POLICY_LEASE_SLOTS] = {tokens, tokens, micro_usd, micro_usd};
    for (int i = 0; i < MG_POLICY_LEASE_SLOTS; i++) {
        int64_t limit = lim->v[slot_limits[i]];
        atomic_store_explicit(&ls->slot[i].limit, limit, memory_order_relaxed);
        if (limit < 0)
            continue;
        int64_t cap = fresh ? lease_cap(&ls->slot[i], slot_period(i, unix_s)) : 0;
        capped.v[slot_limits[i]] = cap < limit ? cap : limit;
        atomic_store_explicit(&ls->slot[i].last_use_ms, t, memory_order_relaxed);
    }
    mg_policy_limit w = MG_POLICY_LIM_TOKENS_DAY;
    int64_t ra = 0;
    if (mg_policy_budgets_reserve(b, &capped, unix_s, tokens, micro_usd, h, &w, &ra)) {
        /* Refill ahead: when what is left would not cover two more such
         * requests, ask now so the next ones do not wait. */
        for (int i = 0; i < MG_POLICY_LEASE_SLOTS; i++) {
            mg_policy_lease *l = &ls->slot[i];
            if (lim->v[slot_limits[i]] < 0 || atomic_load(&l->denied_until_ms) > t)
                continue;
            int64_t left = lease_cap(l, slot_period(i, unix_s)) -
                           atomic_load(&slot_budget(b, i)->committed);
            if (left < 2 * amount[i] && !atomic_exchange(&l->ahead, true))
                wake_thread();
        }
        return MG_POLICY_LEASE_OK;
    }
    if (which)
        *which = w;
    if (retry_after_s)
        *retry_after_s = ra;
    /* Which slots fall short only because of the lease, and which are over
     * the limit itself (this instance alone already used it up)? */
    bool over_limit = false, denied = false, short_lease = false;
    for (int i = 0; i < MG_POLICY_LEASE_SLOTS; i++) {
        int64_t limit = lim->v[slot_limits[i]];
        if (limit < 0)
            continue;
        mg_policy_budget *bb = slot_budget(b, i);
        int64_t period = slot_period(i, unix_s);
        int64_t committed = atomic_load(&bb->period) == period ? atomic_load(&bb->committed) : 0;
        if (committed + amount[i] > limit) {
            over_limit = true;
            if (which)
                *which = slot_limits[i];
            if (retry_after_s)
                *retry_after_s = i % 2 == 0 ? mg_policy_seconds_to_next_day(unix_s)
                                            : mg_policy_seconds_to_next_month(unix_s);
            break;
        }
        if (committed + amount[i] > capped.v[slot_limits[i]]) {
            if (atomic_load(&ls->slot[i].denied_until_ms) > t) {
                denied = true;
                if (which)
                    *which = slot_limits[i];
                if (retry_after_s)
                    *retry_after_s = i % 2 == 0 ? mg_policy_seconds_to_next_day(unix_s)
                                                : mg_policy_seconds_to_next_month(unix_s);
            } else {
                short_lease = true;
            }
        }
    }
    if (over_limit || denied)
        return MG_POLICY_LEASE_REFUSED;
    if (!fresh && last_ok != 0 && t - last_ok >= MG_POLICY_LEASE_TTL_S * 1000 / 2) {
        /* The database has been away too long to trust any lease. */
        if (retry_after_s)
            *retry_after_s = 5;
        return MG_POLICY_LEASE_REFUSED;
    }
    if (!short_lease || !may_wait || atomic_load(&L.stopping)) {
        if (!short_lease)
            return MG_POLICY_LEASE_REFUSED;
        if (retry_after_s)
            *retry_after_s = fresh ? 1 : 5;
        return MG_POLICY_LEASE_REFUSED;
    }
    for (int i = 0; i < MG_POLICY_LEASE_SLOTS; i++) {
        int64_t limit = lim->v[slot_limits[i]];
        if (limit < 0)
            continue;
        mg_policy_budget *bb = slot_budget(b, i);
        int64_t period = slot_period(i, unix_s);
        int64_t committed = atomic_load(&bb->period) == period ? atomic_load(&bb->committed) : 0;
        int64_t cap = fresh ? lease_cap(&ls->slot[i], period) : 0;
        if (committed + amount[i] > cap)
            want_refill(&ls->slot[i], committed + amount[i] - cap);
    }
    wake_thread();
    return MG_POLICY_LEASE_WAIT;
}

mg_rc mg_policy_lease_park(void (*fn)(void *), void *arg)
{
    if (!mg_policy_lease_enabled() || atomic_load(&L.stopping))
        return MG_ERR;
    waiter *wt = malloc(sizeof(*wt));
    if (wt == NULL)
        return MG_ENOMEM;
    *wt = (waiter){.fn = fn, .arg = arg};
    pthread_mutex_lock(&L.mu);
    wt->next = L.waiters;
    L.waiters = wt;
    pthread_mutex_unlock(&L.mu);
    wake_thread();
    return MG_OK;
}

static void wake_waiters(void)
{
    pthread_mutex_lock(&L.mu);
    waiter *wt = L.waiters;
    L.waiters = NULL;
    pthread_mutex_unlock(&L.mu);
    while (wt) {
        waiter *next = wt->next;
        wt->fn(wt->arg);
        free(wt);
        wt = next;
    }
}

/* ---------------------------------------------------------------- database */

static bool db_ok(PGresult *r, ExecStatusType want, const char *what)
{
    if (r && PQresultStatus(r) == want)
        return true;
    mg_log_warn("budget leases: %s failed: %s", what, L.c ? PQerrorMessage(L.c) : "no connection");
    return false;
}

static bool exec_params(const char *sql, int n, const char *const *p, ExecStatusType want,
                        const char *what, PGresult **out)
{
    PGresult *r = PQexecParams(L.c, sql, n, NULL, p, NULL, NULL, 0);
    bool ok = db_ok(r, want, what);
    if (out && ok)
        *out = r;
    else
        PQclear(r);
    return ok;
}

static void i64s(char *buf, size_t n, int64_t v) { snprintf(buf, n, "%" PRId64, v); }

/* Usage into spent and the lease shrinks by what it covered (spent_add), plus
 * unused lease given back (give_back). One statement, so atomic. */
static bool db_move(const char *scope, int slot, int64_t period, int64_t spent_add, int64_t leased_sub)
{
    char per[24], sa[24], ls[24];
    i64s(per, sizeof(per), period);
    i64s(sa, sizeof(sa), spent_add);
    i64s(ls, sizeof(ls), leased_sub);
    const char *p[] = {scope, slot_names[slot], per, L.instance, sa, ls};
    return exec_params(
        "WITH h AS (UPDATE budget_leases SET amount = GREATEST(amount - $6::bigint, 0)"
        " WHERE scope = $1 AND slot = $2 AND period = $3 AND instance = $4 RETURNING 1)"
        " INSERT INTO budget_counters (scope, slot, period, spent, leased) VALUES ($1, $2, $3, $5, 0)"
        " ON CONFLICT (scope, slot, period) DO UPDATE SET spent = budget_counters.spent + $5::bigint,"
        " leased = GREATEST(budget_counters.leased - $6::bigint, 0)",
        6, p, PGRES_COMMAND_OK, "settle", NULL);
}

static void rollback(void)
{
    PGresult *r = PQexec(L.c, "ROLLBACK");
    PQclear(r);
}

/* Leases a chunk for (scope, slot, period). Returns the chunk (> 0), 0 when
 * the budget has no room for need, -1 on a database error. */
static int64_t db_acquire(mg_policy_lease *l, const char *scope, int slot, int64_t period, int64_t limit,
                          int64_t need, int64_t want)
{
    char per[24], lim[24], ch[24];
    i64s(per, sizeof(per), period);
    i64s(lim, sizeof(lim), limit);
    const char *p4[] = {scope, slot_names[slot], per, L.instance};
    PGresult *r = PQexec(L.c, "BEGIN");
    bool ok = db_ok(r, PGRES_COMMAND_OK, "begin");
    PQclear(r);
    if (!ok)
        return -1;
    r = NULL;
    if (!exec_params("INSERT INTO budget_counters (scope, slot, period) VALUES ($1, $2, $3)"
                     " ON CONFLICT DO NOTHING", 3, p4, PGRES_COMMAND_OK, "counter insert", NULL) ||
        !exec_params("SELECT spent, leased, (SELECT count(*) FROM budget_leases WHERE scope = $1 AND slot = $2"
                     " AND period = $3 AND instance <> $4 AND amount > 0 AND expires_at > now())"
                     " FROM budget_counters WHERE scope = $1 AND slot = $2 AND period = $3",
                     4, p4, PGRES_TUPLES_OK, "counter read", &r) || PQntuples(r) != 1) {
        PQclear(r);
        rollback();
        return -1;
    }
    int64_t spent = strtoll(PQgetvalue(r, 0, 0), NULL, 10), leased = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    int64_t others = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    PQclear(r);
    int64_t chunk = mg_policy_lease_chunk(limit, limit - spent - leased, need, want, others + 1);
    atomic_store(&l->cluster_spent, spent);
    atomic_store(&l->cluster_leased, leased);
    if (chunk == 0) {
        rollback();
        return 0;
    }
    i64s(ch, sizeof(ch), chunk);
    const char *p[] = {scope, slot_names[slot], per, ch, lim};
    r = NULL;
    /* The guard that makes the cap hold across instances: another instance
     * may have leased since the read above; then nothing is updated. */
    if (!exec_params("UPDATE budget_counters SET leased = leased + $4::bigint WHERE scope = $1 AND slot = $2"
                     " AND period = $3 AND spent + leased + $4::bigint <= $5::bigint RETURNING spent, leased",
                     5, p, PGRES_TUPLES_OK, "lease", &r)) {
        rollback();
        return -1;
    }
    bool granted = PQntuples(r) == 1;
    if (granted) {
        atomic_store(&l->cluster_spent, strtoll(PQgetvalue(r, 0, 0), NULL, 10));
        atomic_store(&l->cluster_leased, strtoll(PQgetvalue(r, 0, 1), NULL, 10));
    }
    PQclear(r);
    if (!granted) {
        rollback();
        return 0;   /* lost a race: the next round tries again */
    }
    char ttl[24];
    i64s(ttl, sizeof(ttl), MG_POLICY_LEASE_TTL_S);
    const char *ph[] = {scope, slot_names[slot], per, L.instance, ch, ttl};
    if (!exec_params("INSERT INTO budget_leases (scope, slot, period, instance, amount, expires_at)"
                     " VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::int))"
                     " ON CONFLICT (scope, slot, period, instance) DO UPDATE SET"
                     " amount = budget_leases.amount + EXCLUDED.amount, expires_at = EXCLUDED.expires_at",
                     6, ph, PGRES_COMMAND_OK, "lease holder", NULL)) {
        rollback();
        return -1;
    }
    r = PQexec(L.c, "COMMIT");
    ok = db_ok(r, PGRES_COMMAND_OK, "commit");
    PQclear(r);
    return ok ? chunk : -1;
}

/* Renews this instance's leases and, every few seconds, sweeps expired ones
 * (any instance may sweep: the DELETE decides who returns what). */
static bool db_housekeeping(int64_t t)
{
    char ttl[24];
    i64s(ttl, sizeof(ttl), MG_POLICY_LEASE_TTL_S);
    const char *p[] = {L.instance, ttl};
    if (!exec_params("UPDATE budget_leases SET expires_at = now() + make_interval(secs => $2::int)"
                     " WHERE instance = $1", 2, p, PGRES_COMMAND_OK, "renew", NULL))
        return false;
    if (t - L.last_sweep_ms < 5000)
        return true;
    L.last_sweep_ms = t;
    PGresult *r = PQexec(L.c,
        "WITH gone AS (DELETE FROM budget_leases WHERE expires_at < now() RETURNING scope, slot, period, amount),"
        " s AS (SELECT scope, slot, period, sum(amount) AS amount FROM gone GROUP BY 1, 2, 3)"
        " UPDATE budget_counters c SET leased = GREATEST(c.leased - s.amount, 0) FROM s"
        " WHERE c.scope = s.scope AND c.slot = s.slot AND c.period = s.period");
    bool ok = db_ok(r, PGRES_COMMAND_OK, "sweep");
    PQclear(r);
    return ok;
}

/* ---------------------------------------------------------------- rounds */

/* Takes back up to r of the free local lease: reserving it first means no
 * request can be admitted against it while granted shrinks. */
static int64_t take_free(mg_policy_lease *l, mg_policy_budget *b, int64_t period)
{
    int64_t granted = lease_cap(l, period);
    if (atomic_load(&b->period) != period)
        return 0;
    int64_t free_ = granted - atomic_load(&b->committed);
    if (free_ <= 0)
        return 0;
    mg_policy_reservation res;
    if (!mg_policy_budget_reserve(b, period, granted, free_, &res))
        return 0;
    atomic_fetch_sub(&l->granted, free_);
    mg_policy_budget_release(b, &res);
    return free_;
}

/* One slot of one set. False on a database error. */
static bool round_slot(mg_policy_lease_set *ls, int i, int64_t unix_s, int64_t t, bool final, bool reset)
{
    mg_policy_lease *l = &ls->slot[i];
    mg_policy_budget *b = slot_budget(ls->budgets, i);
    int64_t period = slot_period(i, unix_s);
    if (reset) {
        /* Away longer than the TTL: our rows may have been swept, so what we
         * held is gone; keep only what is already committed. */
        l->held = 0;
        if (atomic_load(&l->period) == period)
            atomic_store(&l->granted, atomic_load(&b->committed));
    }
    /* Usage of the period the holder row belongs to goes into spent. */
    if (l->held_period != 0 && atomic_load(&b->period) == l->held_period) {
        int64_t used = atomic_load(&b->used), d = used - l->synced;
        if (d > 0) {
            int64_t dec = d < l->held ? d : l->held;
            if (!db_move(ls->scope, i, l->held_period, d, dec))
                return false;
            l->held -= dec;
            l->synced = used;
        }
    }
    if (l->held_period != period) {
        /* A new period: whatever is left of the old lease goes back. */
        if (l->held_period != 0 && l->held > 0 && !db_move(ls->scope, i, l->held_period, 0, l->held))
            return false;
        l->held = 0;
        l->synced = 0;
        l->held_period = period;
    }
    int64_t limit = atomic_load(&l->limit);
    int64_t want = atomic_exchange(&l->want, 0), need = atomic_exchange(&l->need, 0);
    bool ahead = atomic_exchange(&l->ahead, false);
    if (!final && limit >= 0 && (want > 0 || ahead) && atomic_load(&l->denied_until_ms) <= t) {
        int64_t chunk = db_acquire(l, ls->scope, i, period, limit, need, want);
        if (chunk < 0) {
            atomic_fetch_add(&l->want, want);
            return false;
        }
        if (chunk == 0) {
            /* No room in the database: refuse locally for a second rather
             * than asking again for every request. */
            atomic_store(&l->denied_until_ms, t + 1000);
        } else {
            if (atomic_load(&l->period) != period) {
                atomic_store(&l->granted, 0);
                atomic_store(&l->period, period);
            }
            atomic_fetch_add(&l->granted, chunk);
            l->held += chunk;
        }
    }
    /* Unused lease goes back at shutdown, and when idle for 10 s so one
     * quiet instance does not sit on a small budget. */
    int64_t last = atomic_load(&l->last_use_ms);
    if (l->held > 0 && (final || (last != 0 && t - last > 10000))) {
        int64_t r = take_free(l, b, period);
        if (r > l->held)
            r = l->held;
        if (r > 0) {
            if (!db_move(ls->scope, i, period, 0, r)) {
                atomic_fetch_add(&l->granted, r);
                return false;
            }
            l->held -= r;
        }
    }
    return true;
}

static bool run_round(bool final)
{
    if (L.c == NULL || PQstatus(L.c) != CONNECTION_OK) {
        char err[300];
        if (L.c)
            PQfinish(L.c);
        L.c = mg_policy_db_connect(L.conninfo, "modelgate-leases", err, sizeof(err));
        if (L.c == NULL) {
            mg_log_warn("budget leases: %s", err);
            return false;
        }
    }
    int64_t t = now_ms(), prev = atomic_load(&L.last_ok_ms);
    bool reset = prev != 0 && t - prev > MG_POLICY_LEASE_TTL_S * 1000;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    pthread_mutex_lock(&L.mu);
    mg_policy_lease_set *ls = L.head;   /* the list only grows at the head */
    pthread_mutex_unlock(&L.mu);
    bool ok = true;
    for (; ls && ok; ls = ls->next)
        for (int i = 0; i < MG_POLICY_LEASE_SLOTS && ok; i++)
            ok = round_slot(ls, i, wall.tv_sec, t, final, reset);
    if (ok)
        ok = db_housekeeping(t);
    if (ok)
        atomic_store(&L.last_ok_ms, t);
    else {
        PQfinish(L.c);
        L.c = NULL;
    }
    return ok;
}

static void *lease_main(void *arg)
{
    MG_UNUSED(arg);
    while (!atomic_load(&L.stopping)) {
        struct pollfd pf = {.fd = L.wake[0], .events = POLLIN};
        int n = poll(&pf, 1, 1000);
        if (n > 0) {
            char buf[64];
            while (read(L.wake[0], buf, sizeof(buf)) > 0)
                ;
        }
        atomic_store(&L.wake_pending, false);
        if (atomic_load(&L.stopping))
            break;
        if (!run_round(false)) {
            /* Parked requests must not wait for the database: mark every
             * wanted slot denied for a second, they re-run and refuse. */
            int64_t t = now_ms();
            pthread_mutex_lock(&L.mu);
            mg_policy_lease_set *ls = L.head;
            pthread_mutex_unlock(&L.mu);
            for (; ls; ls = ls->next)
                for (int i = 0; i < MG_POLICY_LEASE_SLOTS; i++)
                    if (atomic_exchange(&ls->slot[i].want, 0) > 0) {
                        atomic_store(&ls->slot[i].need, 0);
                        atomic_store(&ls->slot[i].denied_until_ms, t + 1000);
                    }
        }
        wake_waiters();
    }
    run_round(true);
    wake_waiters();
    if (L.c)
        PQfinish(L.c);
    L.c = NULL;
    return NULL;
}

mg_rc mg_policy_lease_start(const char *conninfo)
{
    if (atomic_load(&L.enabled))
        return MG_OK;
    L.conninfo = strdup(conninfo);
    if (L.conninfo == NULL || pipe2(L.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(L.conninfo);
        L.conninfo = NULL;
        return MG_ERR;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned char rnd[4] = {0};
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        size_t got = fread(rnd, 1, sizeof(rnd), f);
        MG_UNUSED(got);
        fclose(f);
    }
    snprintf(L.instance, sizeof(L.instance), "%ld-%lld-%02x%02x%02x%02x", (long)getpid(), (long long)ts.tv_sec,
             rnd[0], rnd[1], rnd[2], rnd[3]);
    atomic_store(&L.stopping, false);
    /* First round before serving, so budgets work from the first request
     * when the database is up. */
    run_round(false);
    if (pthread_create(&L.thr, NULL, lease_main, NULL) != 0) {
        if (L.c)
            PQfinish(L.c);
        L.c = NULL;
        close(L.wake[0]);
        close(L.wake[1]);
        L.wake[0] = L.wake[1] = -1;
        free(L.conninfo);
        L.conninfo = NULL;
        return MG_ERR;
    }
    atomic_store(&L.enabled, true);
    return MG_OK;
}

void mg_policy_lease_stop(void)
{
    if (!atomic_load(&L.enabled))
        return;
    atomic_store(&L.stopping, true);
    ssize_t w = write(L.wake[1], "x", 1);
    MG_UNUSED(w);
    pthread_join(L.thr, NULL);
    close(L.wake[0]);
    close(L.wake[1]);
    L.wake[0] = L.wake[1] = -1;
    free(L.conninfo);
    L.conninfo = NULL;
    atomic_store(&L.enabled, false);
}
