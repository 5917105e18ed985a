/* Unit tests: gateway/metrics.c (counters, histograms, exposition format).
 * The render walks the server's workers; with none running it must still
 * produce a valid exposition of the process-wide gauges.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "metrics.h"
#include "t.h"

T_TEST(render_without_workers_is_valid)
{
    mg_buf out = {0};
    T_EQ_INT(mg_metrics_render(&out, 7), MG_OK);
    mg_buf_append(&out, "", 1);
    T_CHECK(strstr(out.p, "modelgate_config_generation 7\n") != NULL);
    T_CHECK(strstr(out.p, "# TYPE modelgate_requests_total counter\n") != NULL);
    T_CHECK(strstr(out.p, "modelgate_open_connections 0\n") != NULL);
    mg_buf_free(&out);
}

T_TEST(recording_does_not_fail)
{
    mg_metrics *m = mg_metrics_new();
    T_CHECK(m != NULL);
    for (int i = 0; i < 2000; i++)
        mg_metrics_request(m, "chat", i % 2 ? "a" : "b\"quoted", 200 + i % 3, (uint64_t)i * 100);
    mg_metrics_upstream(m, "p", 500, 1234);
    mg_metrics_bytes_in(m, 10);
    mg_metrics_bytes_out(m, 20);
    mg_metrics_conn_opened(m);
    mg_metrics_conn_closed(m);
    mg_metrics_free(m);
}

T_MAIN("metrics", T_CASE(render_without_workers_is_valid), T_CASE(recording_does_not_fail))
