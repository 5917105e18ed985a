/* modelgate — immutable runtime snapshots of the configuration.
 *
 * A snapshot is built from a loaded config (TLS contexts made, models
 * resolved) and published to every worker. Requests hold a reference to the
 * snapshot they started with, so a SIGHUP reload never changes the rules under
 * an in-flight request; the old snapshot is freed when its last user lets go.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_SNAPSHOT_H
#define MG_SNAPSHOT_H

#include "config.h"
#include <openssl/ssl.h>
#include <stdatomic.h>

typedef struct mg_snapshot {
    atomic_int refs;
    uint64_t generation;           /* 1, 2, ... per successful load */
    mg_config *cfg;                /* owned */
    SSL_CTX **tls;                 /* per cfg->listen[i]; NULL for plain listeners */
    const struct mg_adapter_ops **provider_ops; /* per cfg->providers[i] */
    /* routing state (gateway/route.c): mutable atomics in an otherwise
     * immutable snapshot */
    size_t *route_base;            /* per model: index of its first deployment in route[] */
    struct mg_route_state *route;  /* per deployment: circuit breaker */
    atomic_uint *provider_inflight; /* per provider: requests in flight */
} mg_snapshot;

/* Builds a snapshot; takes ownership of cfg on success only. On failure
 * returns NULL and appends a message to errs. refs starts at 1. */
mg_snapshot *mg_snapshot_build(mg_config *cfg, mg_buf *errs);
mg_snapshot *mg_snapshot_ref(mg_snapshot *s);
void mg_snapshot_unref(mg_snapshot *s);

/* The provider ops for a deployment (never NULL after a successful build). */
const struct mg_adapter_ops *mg_snapshot_provider_ops(const mg_snapshot *s,
                                                      const mg_cfg_provider *p);

#endif
