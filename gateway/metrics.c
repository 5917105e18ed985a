/* modelgate — Prometheus metrics, per worker, summed at scrape time.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "metrics.h"

#include "server.h"
#include "usage/usage.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MG_METRICS_SERIES 1024      /* distinct (route, model, status) per worker */
#define MG_METRICS_PROVIDERS 64

static const double buckets_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
#define NBUCKETS (sizeof(buckets_s) / sizeof(buckets_s[0]))

typedef struct histo {
    uint64_t counts[NBUCKETS + 1];  /* last = +Inf */
    uint64_t sum_us;
    uint64_t n;
} histo;

typedef struct series {
    char route[24];
    char model[96];
    int status;
    uint64_t count;
} series;

typedef struct route_histo {
    char route[24];
    histo h;
} route_histo;

typedef struct prov_histo {
    char provider[64];
    histo h;
    uint64_t errors;
} prov_histo;

struct mg_metrics {
    pthread_mutex_t mu;
    series s[MG_METRICS_SERIES];
    size_t ns;
    uint64_t dropped_series;
    route_histo rh[32];
    size_t nrh;
    prov_histo ph[MG_METRICS_PROVIDERS];
    size_t nph;
    uint64_t bytes_in, bytes_out;
    uint64_t conns_opened, conns_closed, conns_refused, tls_failures;
};

mg_metrics *mg_metrics_new(void)
{
    mg_metrics *m = calloc(1, sizeof(*m));
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

void mg_metrics_free(mg_metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void histo_add(histo *h, uint64_t us)
{
    double s = (double)us / 1e6;
    size_t i = 0;
    while (i < NBUCKETS && s > buckets_s[i])
        i++;
    h->counts[i]++;
    h->sum_us += us;
    h->n++;
}

void mg_metrics_request(mg_metrics *m, const char *route, const char *model, int status,
                        uint64_t duration_us)
{
    if (route == NULL)
        route = "unknown";
    if (model == NULL)
        model = "";
    pthread_mutex_lock(&m->mu);
    size_t i;
    for (i = 0; i < m->ns; i++)
        if (m->s[i].status == status && strcmp(m->s[i].route, route) == 0 &&
            strcmp(m->s[i].model, model) == 0)
            break;
    if (i == m->ns && m->ns < MG_METRICS_SERIES) {
        snprintf(m->s[i].route, sizeof(m->s[i].route), "%s", route);
        snprintf(m->s[i].model, sizeof(m->s[i].model), "%s", model);
        m->s[i].status = status;
        m->ns++;
    }
    if (i < m->ns)
        m->s[i].count++;
    else
        m->dropped_series++;
    for (i = 0; i < m->nrh; i++)
        if (strcmp(m->rh[i].route, route) == 0)
            break;
    if (i == m->nrh && m->nrh < MG_ARRAY_LEN(m->rh)) {
        snprintf(m->rh[i].route, sizeof(m->rh[i].route), "%s", route);
        m->nrh++;
    }
    if (i < m->nrh)
        histo_add(&m->rh[i].h, duration_us);
    pthread_mutex_unlock(&m->mu);
}

void mg_metrics_upstream(mg_metrics *m, const char *provider, int status, uint64_t first_byte_us)
{
    pthread_mutex_lock(&m->mu);
    size_t i;
    for (i = 0; i < m->nph; i++)
        if (strcmp(m->ph[i].provider, provider) == 0)
            break;
    if (i == m->nph && m->nph < MG_METRICS_PROVIDERS) {
        snprintf(m->ph[i].provider, sizeof(m->ph[i].provider), "%s", provider);
        m->nph++;
    }
    if (i < m->nph) {
        if (first_byte_us)
            histo_add(&m->ph[i].h, first_byte_us);
        if (status == 0 || status >= 500)
            m->ph[i].errors++;
    }
    pthread_mutex_unlock(&m->mu);
}

#define COUNTER_FN(name, field) \
    void name(mg_metrics *m) { pthread_mutex_lock(&m->mu); m->field++; pthread_mutex_unlock(&m->mu); }
COUNTER_FN(mg_metrics_conn_opened, conns_opened)
COUNTER_FN(mg_metrics_conn_closed, conns_closed)
COUNTER_FN(mg_metrics_conn_refused, conns_refused)
COUNTER_FN(mg_metrics_tls_failure, tls_failures)

void mg_metrics_bytes_in(mg_metrics *m, uint64_t n)
{
    pthread_mutex_lock(&m->mu);
    m->bytes_in += n;
    pthread_mutex_unlock(&m->mu);
}

void mg_metrics_bytes_out(mg_metrics *m, uint64_t n)
{
    pthread_mutex_lock(&m->mu);
    m->bytes_out += n;
    pthread_mutex_unlock(&m->mu);
}

/* Sums every worker's metrics into one struct (heap: it is large). */
static mg_metrics *collect(void)
{
    mg_metrics *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    for (size_t w = 0; w < mg_server_nworkers(); w++) {
        mg_metrics *m = mg_server_worker(w)->metrics;
        pthread_mutex_lock(&m->mu);
        for (size_t i = 0; i < m->ns; i++) {
            size_t j;
            for (j = 0; j < t->ns; j++)
                if (t->s[j].status == m->s[i].status && strcmp(t->s[j].route, m->s[i].route) == 0 &&
                    strcmp(t->s[j].model, m->s[i].model) == 0)
                    break;
            if (j == t->ns && t->ns < MG_METRICS_SERIES) {
                t->s[j] = m->s[i];
                t->s[j].count = 0;
                t->ns++;
            }
            if (j < t->ns)
                t->s[j].count += m->s[i].count;
        }
        for (size_t i = 0; i < m->nrh; i++) {
            size_t j;
            for (j = 0; j < t->nrh; j++)
                if (strcmp(t->rh[j].route, m->rh[i].route) == 0)
                    break;
            if (j == t->nrh && t->nrh < MG_ARRAY_LEN(t->rh))
                memcpy(t->rh[t->nrh++].route, m->rh[i].route, sizeof(m->rh[i].route));
            if (j < t->nrh) {
                for (size_t b = 0; b <= NBUCKETS; b++)
                    t->rh[j].h.counts[b] += m->rh[i].h.counts[b];
                t->rh[j].h.sum_us += m->rh[i].h.sum_us;
                t->rh[j].h.n += m->rh[i].h.n;
            }
        }
        for (size_t i = 0; i < m->nph; i++) {
            size_t j;
            for (j = 0; j < t->nph; j++)
                if (strcmp(t->ph[j].provider, m->ph[i].provider) == 0)
                    break;
            if (j == t->nph && t->nph < MG_METRICS_PROVIDERS)
                memcpy(t->ph[t->nph++].provider, m->ph[i].provider, sizeof(m->ph[i].provider));
            if (j < t->nph) {
                for (size_t b = 0; b <= NBUCKETS; b++)
                    t->ph[j].h.counts[b] += m->ph[i].h.counts[b];
                t->ph[j].h.sum_us += m->ph[i].h.sum_us;
                t->ph[j].h.n += m->ph[i].h.n;
                t->ph[j].errors += m->ph[i].errors;
            }
        }
        t->bytes_in += m->bytes_in;
        t->bytes_out += m->bytes_out;
        t->conns_opened += m->conns_opened;
        t->conns_closed += m->conns_closed;
        t->conns_refused += m->conns_refused;
        t->tls_failures += m->tls_failures;
        t->dropped_series += m->dropped_series;
        pthread_mutex_unlock(&m->mu);
    }
    return t;
}

static void render_histo(mg_buf *out, const char *name, const char *label, const char *value,
                         const histo *h)
{
    uint64_t cum = 0;
    for (size_t b = 0; b <= NBUCKETS; b++) {
        cum += h->counts[b];
        if (b < NBUCKETS)
            mg_buf_printf(out, "%s_bucket{%s=\"%s\",le=\"%g\"} %llu\n", name, label, value,
                          buckets_s[b], (unsigned long long)cum);
        else
            mg_buf_printf(out, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %llu\n", name, label, value,
                          (unsigned long long)cum);
    }
    mg_buf_printf(out, "%s_sum{%s=\"%s\"} %.6f\n", name, label, value, (double)h->sum_us / 1e6);
    mg_buf_printf(out, "%s_count{%s=\"%s\"} %llu\n", name, label, value, (unsigned long long)h->n);
}

/* Label values come from config (model and provider names) and fixed
 * strings; escape the three characters the exposition format reserves. */
static void label_escape(char *dst, size_t dsz, const char *src)
{
    size_t j = 0;
    for (size_t i = 0; src[i] && j + 2 < dsz; i++) {
        char ch = src[i];
        if (ch == '"' || ch == '\\' || ch == '\n') {
            dst[j++] = '\\';
            ch = ch == '\n' ? 'n' : ch;
        }
        dst[j++] = ch;
    }
    dst[j] = '\0';
}

mg_rc mg_metrics_render(mg_buf *out, uint64_t config_generation)
{
    mg_metrics *t = collect();
    if (t == NULL)
        return MG_ENOMEM;
    char model[200], prov[140];
    mg_buf_printf(out, "# HELP modelgate_build_info Build information.\n# TYPE modelgate_build_info gauge\n"
                       "modelgate_build_info{version=\"%s\"} 1\n", MG_VERSION);
    mg_buf_printf(out, "# HELP modelgate_config_generation Configuration generation in force.\n"
                       "# TYPE modelgate_config_generation gauge\nmodelgate_config_generation %llu\n",
                  (unsigned long long)config_generation);
    mg_buf_append_str(out, "# HELP modelgate_requests_total Requests answered, by route, model and status.\n"
                           "# TYPE modelgate_requests_total counter\n");
    for (size_t i = 0; i < t->ns; i++) {
        label_escape(model, sizeof(model), t->s[i].model);
        mg_buf_printf(out, "modelgate_requests_total{route=\"%s\",model=\"%s\",status=\"%d\"} %llu\n",
                      t->s[i].route, model, t->s[i].status, (unsigned long long)t->s[i].count);
    }
    mg_buf_append_str(out, "# HELP modelgate_request_duration_seconds Time from a complete request to its last byte queued.\n"
                           "# TYPE modelgate_request_duration_seconds histogram\n");
    for (size_t i = 0; i < t->nrh; i++)
        render_histo(out, "modelgate_request_duration_seconds", "route", t->rh[i].route, &t->rh[i].h);
    mg_buf_append_str(out, "# HELP modelgate_upstream_first_byte_seconds Time from forwarding to the provider's first response byte.\n"
                           "# TYPE modelgate_upstream_first_byte_seconds histogram\n");
    for (size_t i = 0; i < t->nph; i++) {
        label_escape(prov, sizeof(prov), t->ph[i].provider);
        render_histo(out, "modelgate_upstream_first_byte_seconds", "provider", prov, &t->ph[i].h);
    }
    mg_buf_append_str(out, "# HELP modelgate_upstream_errors_total Upstream exchanges that failed or answered 5xx.\n"
                           "# TYPE modelgate_upstream_errors_total counter\n");
    for (size_t i = 0; i < t->nph; i++) {
        label_escape(prov, sizeof(prov), t->ph[i].provider);
        mg_buf_printf(out, "modelgate_upstream_errors_total{provider=\"%s\"} %llu\n", prov,
                      (unsigned long long)t->ph[i].errors);
    }
    mg_buf_printf(out,
                  "# HELP modelgate_open_connections Client connections open now.\n"
                  "# TYPE modelgate_open_connections gauge\nmodelgate_open_connections %zu\n"
                  "# HELP modelgate_connections_total Client connections accepted.\n"
                  "# TYPE modelgate_connections_total counter\nmodelgate_connections_total %llu\n"
                  "# HELP modelgate_connections_refused_total Connections refused over max_connections or while draining.\n"
                  "# TYPE modelgate_connections_refused_total counter\nmodelgate_connections_refused_total %llu\n"
                  "# HELP modelgate_tls_handshake_failures_total Failed TLS handshakes.\n"
                  "# TYPE modelgate_tls_handshake_failures_total counter\nmodelgate_tls_handshake_failures_total %llu\n"
                  "# HELP modelgate_received_bytes_total Request bytes received from clients.\n"
                  "# TYPE modelgate_received_bytes_total counter\nmodelgate_received_bytes_total %llu\n"
                  "# HELP modelgate_sent_bytes_total Response bytes sent to clients.\n"
                  "# TYPE modelgate_sent_bytes_total counter\nmodelgate_sent_bytes_total %llu\n",
                  mg_server_open_connections(), (unsigned long long)t->conns_opened,
                  (unsigned long long)t->conns_refused, (unsigned long long)t->tls_failures,
                  (unsigned long long)t->bytes_in, (unsigned long long)t->bytes_out);
    free(t);
    struct mg_usage_stats u;
    mg_usage_stats(&u);
    mg_buf_printf(out,
                  "# HELP modelgate_usage_journal_bytes Bytes in usage journal segments on disk.\n"
                  "# TYPE modelgate_usage_journal_bytes gauge\nmodelgate_usage_journal_bytes %llu\n"
                  "# HELP modelgate_usage_pending_records Usage records written but not yet in the database.\n"
                  "# TYPE modelgate_usage_pending_records gauge\nmodelgate_usage_pending_records %llu\n"
                  "# HELP modelgate_usage_shipped_total Usage rows committed to the database.\n"
                  "# TYPE modelgate_usage_shipped_total counter\nmodelgate_usage_shipped_total %llu\n"
                  "# HELP modelgate_usage_dead_letters_total Usage rows the database rejected (kept in usage_dead_letter).\n"
                  "# TYPE modelgate_usage_dead_letters_total counter\nmodelgate_usage_dead_letters_total %llu\n"
                  "# HELP modelgate_usage_write_errors_total Failed journal writes.\n"
                  "# TYPE modelgate_usage_write_errors_total counter\nmodelgate_usage_write_errors_total %llu\n"
                  "# HELP modelgate_usage_last_ship_timestamp_seconds Wall-clock time of the last commit to the database.\n"
                  "# TYPE modelgate_usage_last_ship_timestamp_seconds gauge\nmodelgate_usage_last_ship_timestamp_seconds %.3f\n"
                  "# HELP modelgate_usage_db_connected Whether the ledger shipper is connected.\n"
                  "# TYPE modelgate_usage_db_connected gauge\nmodelgate_usage_db_connected %d\n"
                  "# HELP modelgate_usage_healthy Whether usage can be recorded (0: new requests get 503).\n"
                  "# TYPE modelgate_usage_healthy gauge\nmodelgate_usage_healthy %d\n",
                  (unsigned long long)u.journal_bytes, (unsigned long long)u.records_pending,
                  (unsigned long long)u.records_shipped, (unsigned long long)u.dead_letters,
                  (unsigned long long)u.write_errors, (double)u.last_ship_ms / 1000.0,
                  u.db_connected ? 1 : 0, u.healthy ? 1 : 0);
    return MG_OK;
}
