/* modelgate — forwarding to model providers with libcurl's multi interface.
 *
 * Each worker drives one CURLM from its own event loop
 * (curl_multi_socket_action), so upstream I/O never blocks and connections
 * to a provider are reused. The provider's adapter builds the upstream
 * request and translates the reply; this module moves bytes, relays streams
 * event by event with backpressure, and enforces the upstream timeouts.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_PROXY_H
#define MG_PROXY_H

#include "server.h"

mg_rc mg_proxy_worker_init(mg_worker *w);
void mg_proxy_worker_free(mg_worker *w);

/* Flushes client output queued by upstream callbacks (run before the loop
 * sleeps; curl callbacks themselves never touch connections). */
void mg_proxy_flush_dirty(mg_worker *w);

/* Stops the request's upstream transfer, if any (client gone, shutdown). */
void mg_proxy_cancel(mg_req *req);

#endif
