/* modelgate — building and sharing configuration snapshots.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "snapshot.h"

#include "adapters/adapter.h"
#include "log.h"
#include "route.h"

#include <openssl/err.h>
#include <stdlib.h>

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    /* We speak HTTP/1.1 to clients; pick it if offered, else no ALPN. */
    MG_UNUSED(ssl);
    MG_UNUSED(arg);
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *tls_context(const mg_cfg_listen *l, mg_buf *errs)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle connections give their TLS buffers back (10k idle connections). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20") != 1)
        goto fail;
    if (SSL_CTX_use_certificate_chain_file(ctx, l->tls_cert) != 1) {
        mg_buf_printf(errs, "%s: cannot load certificate chain %s\n", l->address, l->tls_cert);
        goto fail_quiet;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, l->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        mg_buf_printf(errs, "%s: cannot load private key %s or it does not match the certificate\n",
                      l->address, l->tls_key);
        goto fail_quiet;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    return ctx;
fail:
    mg_buf_printf(errs, "%s: TLS set-up failed\n", l->address);
fail_quiet:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static void snapshot_free(mg_snapshot *s)
{
    if (s->tls) {
        for (size_t i = 0; i < s->cfg->nlisten; i++)
            SSL_CTX_free(s->tls[i]);
        free(s->tls);
    }
    free(s->provider_ops);
    mg_route_free(s);
    mg_config_free(s->cfg);
    free(s);
}

mg_snapshot *mg_snapshot_build(mg_config *cfg, mg_buf *errs)
{
    mg_snapshot *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->cfg = cfg;
    s->generation = 1;
    atomic_init(&s->refs, 1);
    s->tls = calloc(cfg->nlisten ? cfg->nlisten : 1, sizeof(*s->tls));
    s->provider_ops = calloc(cfg->nproviders ? cfg->nproviders : 1, sizeof(*s->provider_ops));
    bool ok = s->tls && s->provider_ops && mg_route_init(s) == MG_OK;
    for (size_t i = 0; ok && i < cfg->nlisten; i++) {
        if (cfg->listen[i].tls_cert) {
            s->tls[i] = tls_context(&cfg->listen[i], errs);
            ok = s->tls[i] != NULL;
        }
    }
    for (size_t i = 0; ok && i < cfg->nproviders; i++) {
        s->provider_ops[i] = mg_adapter_find(cfg->providers[i].type);
        if (s->provider_ops[i] == NULL) {
            mg_buf_printf(errs, "%s: provider \"%s\": type \"%s\" is not available in this build\n",
                          cfg->path, cfg->providers[i].name, cfg->providers[i].type);
            ok = false;
        }
    }
    if (!ok) {
        /* The caller keeps cfg on failure. */
        if (s->tls) {
            for (size_t i = 0; i < cfg->nlisten; i++)
                SSL_CTX_free(s->tls[i]);
            free(s->tls);
        }
        free(s->provider_ops);
        mg_route_free(s);
        free(s);
        return NULL;
    }
    return s;
}

mg_snapshot *mg_snapshot_ref(mg_snapshot *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void mg_snapshot_unref(mg_snapshot *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snapshot_free(s);
}

const mg_adapter_ops *mg_snapshot_provider_ops(const mg_snapshot *s, const mg_cfg_provider *p)
{
    size_t i = (size_t)(p - s->cfg->providers);
    return i < s->cfg->nproviders ? s->provider_ops[i] : NULL;
}
