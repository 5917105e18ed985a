/* modelgate — the running policy: a store thread that follows the newest
 * stored version, and the pointer workers read it through.
 *
 * Publication without a lock on the read side. A plain atomic pointer plus
 * a reference count has a window: a reader loads the pointer, the writer
 * swaps it and drops the last reference, the reader's ref comes too late.
 * So readers announce themselves in one of two counters (chosen by an epoch)
 * for the few instructions between loading the pointer and taking their
 * reference; the writer swaps the pointer, flips the epoch, and waits for the
 * old epoch's counter to drain before it unrefs the old policy. Readers never
 * wait; the writer waits only for readers already inside that window
 * (nanoseconds), because newcomers count in the other slot.
 *
 * The thread: LISTEN policy_changed on its own connection; wake on a notify
 * or after one second; compare the newest version number with the one in
 * force and load when they differ (a lost notify costs at most a second).
 * Any database trouble: drop the connection, keep the policy, retry every
 * second.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "policy/store_int.h"

#include "gateway/log.h"
#include "policy/lease.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static _Atomic(mg_policy *) g_cur;
static _Atomic int64_t g_version;
static atomic_bool g_connected;

static struct {
    char *conninfo;
    pthread_t thr;
    bool running;
    int wake[2];                 /* self-pipe: stop */
    PGconn *c;
    pthread_mutex_t publish_mu;  /* one writer at a time */
} S = {.wake = {-1, -1}, .publish_mu = PTHREAD_MUTEX_INITIALIZER};

/* A plain mutex: one uncontended lock per request is cheaper than being
 * clever, and an epoch scheme with two reader counters let a reader that
 * registered under an old epoch take a reference to a policy already freed
 * by the second of two quick publishes. */
static pthread_mutex_t cur_mu = PTHREAD_MUTEX_INITIALIZER;

mg_policy *mg_policy_current(void)
{
    pthread_mutex_lock(&cur_mu);
    mg_policy *p = atomic_load(&g_cur);
    if (p)
        mg_policy_ref(p);
    pthread_mutex_unlock(&cur_mu);
    return p;
}

/* Takes ownership of p (may be NULL: unpublish). */
static void publish(mg_policy *p, int64_t version)
{
    pthread_mutex_lock(&cur_mu);
    mg_policy *old = atomic_exchange(&g_cur, p);
    atomic_store(&g_version, version);
    pthread_mutex_unlock(&cur_mu);
    if (old)
        mg_policy_unref(old);
}

int64_t mg_policy_store_version(void) { return atomic_load(&g_version); }
bool mg_policy_store_connected(void) { return atomic_load(&g_connected); }

static mg_policy *empty_policy(void)
{
    mg_buf errs = {0};
    mg_policy *p = mg_policy_load("{}", 2, &errs);
    mg_buf_free(&errs);
    return p;
}

static void disconnect(void)
{
    if (S.c)
        PQfinish(S.c);
    S.c = NULL;
    atomic_store(&g_connected, false);
}

static bool connect_listen(void)
{
    char err[300];
    S.c = mg_policy_db_connect(S.conninfo, "modelgate-policy", err, sizeof(err));
    if (S.c == NULL) {
        mg_log_warn("policy store: %s; keeping policy version %lld", err, (long long)mg_policy_store_version());
        return false;
    }
    PGresult *r = PQexec(S.c, "SET statement_timeout = '5s'; LISTEN policy_changed");
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        mg_log_warn("policy store: LISTEN failed: %s", PQerrorMessage(S.c));
        disconnect();
        return false;
    }
    atomic_store(&g_connected, true);
    return true;
}

/* Loads and publishes the newest version if it differs from the one in
 * force. False on a database error (the caller reconnects). */
static bool refresh(void)
{
    PGresult *r = PQexec(S.c, "SELECT coalesce(max(version), 0) FROM policy_versions");
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
        mg_log_warn("policy store: version check failed: %s", PQerrorMessage(S.c));
        PQclear(r);
        return false;
    }
    int64_t newest = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (newest == mg_policy_store_version())
        return true;
    mg_buf errs = {0};
    mg_policy_stored st;
    mg_rc rc = mg_policy_stored_load(S.c, &st, &errs);
    if (rc == MG_AGAIN) {
        mg_log_warn("policy store: %.*s", (int)strcspn(errs.p ? errs.p : "", "\n"), errs.p ? errs.p : "");
        mg_buf_free(&errs);
        return false;
    }
    if (rc == MG_ERR) {
        /* Written through the store it validated; this means a newer engine
         * is stricter or someone wrote the table by hand. Keep the last good
         * one, and say so once per version. */
        static int64_t reported = -1;
        if (reported != newest)
            mg_log_error("policy store: %.*s; keeping version %lld", (int)strcspn(errs.p, "\n"), errs.p,
                         (long long)mg_policy_store_version());
        reported = newest;
        mg_buf_free(&errs);
        return true;
    }
    mg_policy *p = mg_policy_compile(st.doc, &errs);
    if (p == NULL) {
        mg_log_error("policy store: version %lld does not compile: %.*s", (long long)st.version,
                     (int)errs.len, errs.p ? errs.p : "");
    } else {
        st.doc = NULL;           /* owned by p now */
        mg_policy_ref(p);
        publish(p, st.version);
        mg_log_info("policy store: version %lld in force", (long long)st.version);
        mg_policy_prefilter_attach(p);   /* after: in force now, faster soon */
        mg_policy_unref(p);
    }
    mg_policy_stored_free(&st);
    mg_buf_free(&errs);
    return true;
}

/* Waits up to ms for a notify or the stop signal. -1 stop, 0 timeout or
 * notify, 1 connection trouble. */
static int wait_event(int ms)
{
    struct pollfd pf[2] = {{.fd = S.wake[0], .events = POLLIN}, {.fd = -1, .events = POLLIN}};
    if (S.c)
        pf[1].fd = PQsocket(S.c);
    int n = poll(pf, 2, ms);
    if (n < 0 && errno != EINTR)
        return 1;
    if (pf[0].revents)
        return -1;
    if (S.c && pf[1].revents) {
        if (!PQconsumeInput(S.c))
            return 1;
        PGnotify *nt;
        while ((nt = PQnotifies(S.c)) != NULL)
            PQfreemem(nt);       /* the version check below is what counts */
    }
    return 0;
}

static void *store_main(void *arg)
{
    MG_UNUSED(arg);
    for (;;) {
        if (S.c == NULL && !connect_listen()) {
            if (wait_event(1000) < 0)
                break;
            continue;
        }
        if (!refresh() || PQstatus(S.c) != CONNECTION_OK) {
            disconnect();
            continue;
        }
        int ev = wait_event(1000);
        if (ev < 0)
            break;
        if (ev > 0)
            disconnect();
    }
    disconnect();
    return NULL;
}

mg_rc mg_policy_store_start(const mg_config *cfg, mg_buf *errs)
{
    mg_policy *empty = empty_policy();
    if (empty == NULL) {
        mg_buf_append_str(errs, "policy store: out of memory\n");
        return MG_ERR;
    }
    publish(empty, 0);
    if (cfg == NULL || cfg->database_url == NULL) {
        mg_log_warn("policy store: no database configured: the empty policy is in force (master key only)");
        return MG_OK;
    }
    S.conninfo = strdup(cfg->database_url);
    if (S.conninfo == NULL || pipe2(S.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        mg_buf_append_str(errs, "policy store: cannot set up (out of memory or file descriptors)\n");
        free(S.conninfo);
        S.conninfo = NULL;
        return MG_ERR;
    }
    /* First load here, so serve starts under the stored policy when the
     * database is up; otherwise the thread keeps trying. */
    if (connect_listen() && !refresh())
        disconnect();
    if (pthread_create(&S.thr, NULL, store_main, NULL) != 0) {
        disconnect();
        close(S.wake[0]);
        close(S.wake[1]);
        S.wake[0] = S.wake[1] = -1;
        free(S.conninfo);
        S.conninfo = NULL;
        mg_buf_append_str(errs, "policy store: cannot start its thread\n");
        return MG_ERR;
    }
    S.running = true;
    /* Budgets shared by every instance ride on the same database. */
    if (mg_policy_lease_start(cfg->database_url) != MG_OK)
        mg_log_error("budget leases: cannot start; budgets stay per instance");
    return MG_OK;
}

void mg_policy_store_stop(void)
{
    mg_policy_lease_stop();
    if (S.running) {
        ssize_t w = write(S.wake[1], "x", 1);
        MG_UNUSED(w);
        pthread_join(S.thr, NULL);
        S.running = false;
    }
    if (S.wake[0] >= 0) {
        close(S.wake[0]);
        close(S.wake[1]);
        S.wake[0] = S.wake[1] = -1;
    }
    free(S.conninfo);
    S.conninfo = NULL;
    publish(NULL, 0);
}
