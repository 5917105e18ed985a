/* modelgate — Prometheus metrics.
 *
 * Each worker has its own mg_metrics: the hot path updates only its own,
 * under an uncontended mutex; GET /metrics walks every worker's set and adds
 * them up.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_METRICS_H
#define MG_METRICS_H

#include "core.h"

typedef struct mg_metrics mg_metrics;

mg_metrics *mg_metrics_new(void);
void mg_metrics_free(mg_metrics *m);

/* One finished request. model/provider may be NULL. */
void mg_metrics_request(mg_metrics *m, const char *route, const char *model, int status,
                        uint64_t duration_us);
/* Time from sending upstream to the first response byte. */
void mg_metrics_upstream(mg_metrics *m, const char *provider, int status, uint64_t first_byte_us);
void mg_metrics_bytes_in(mg_metrics *m, uint64_t n);
void mg_metrics_bytes_out(mg_metrics *m, uint64_t n);
void mg_metrics_conn_opened(mg_metrics *m);
void mg_metrics_conn_closed(mg_metrics *m);
void mg_metrics_conn_refused(mg_metrics *m);
void mg_metrics_tls_failure(mg_metrics *m);

/* Appends the Prometheus text exposition of all workers' metrics to out. */
mg_rc mg_metrics_render(mg_buf *out, uint64_t config_generation);

#endif
