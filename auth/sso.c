/* modelgate — browser single sign-on with liboauth2 1.4.5.4.
 *
 * liboauth2 does the protocol core: the authorization request (PKCE S256,
 * state in an encrypted cookie), the code exchange and the id_token
 * signature. Its 1.4.5.4 defects (LIBOAUTH2.md) decide what is done here:
 *
 *  - its request object is built from the configured public_url only; the
 *    client's Host / X-Forwarded-* never reach it (`X-Forwarded-Proto: ,https`
 *    aborts the library), and the only client header passed is a Cookie
 *    header reduced to our state cookies;
 *  - the callback query is decoded here and handed over decoded (it does not
 *    URL-decode, so a code containing %2B would be exchanged wrongly);
 *  - it keeps no nonce: the nonce in the authorization request is replaced
 *    by HMAC(session secret, state), which the callback can recompute;
 *  - it checks neither iss, aud, nonce nor (by default) exp of the id_token:
 *    mg_auth_sso_check_id_token does;
 *  - its own session cookie never reaches the browser. modelgate issues its
 *    own session (random 256-bit id, only the SHA-256 stored) instead, which
 *    gives logout, server-side revocation and a real lifetime;
 *  - an IdP error or a missing state makes it return false without a
 *    response: the gateway renders an error page with a "sign in again" link.
 *
 * Every oauth2_openidc_handle call runs on the IdP pool, never on a worker
 * loop; session lookups and writes run on the database pool. Session
 * lookups are cached for SESSION_RECHECK_S, so a logout on another instance
 * is seen within that time.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "sso.h"

#include "auth_int.h"

#include "gateway/log.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <oauth2/cache.h>
#include <oauth2/cfg.h>
#include <oauth2/http.h>
#include <oauth2/jose.h>
#include <oauth2/log.h>
#include <oauth2/mem.h>
#include <oauth2/oauth2.h>
#include <oauth2/openidc.h>
#include <oauth2/session.h>
#include <oauth2/util.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define SKEW_S 60
#define SESSION_RECHECK_S 5        /* DB-backed sessions are re-read after this */
#define HTTP_TIMEOUT_S 5
#define QUERY_TIMEOUT_MS 3000
#define SESSION_ID_LEN 43          /* base64url of 32 random bytes */
#define TMP_SESSION_COOKIE "mg_oidc_tmp"
#define MAX_PARAM 4096

/* ------------------------------------------------------------ state */

typedef struct sso_ctx {
    atomic_int refs;
    oauth2_cfg_openidc_t *oidc;
    char *scheme, *host;
    unsigned long port;
    char *public_url;
    char *issuer, *client_id;
    char *end_session;             /* from the discovery document, or NULL */
    uint32_t lifetime_s;
    uint32_t login_timeout_s;      /* session.login_timeout: login start to callback */
    uint8_t key[32];               /* nonce HMAC key, derived from the session secret */
} sso_ctx;

static struct {
    pthread_mutex_t mu;            /* guards cur */
    sso_ctx *cur;
    oauth2_log_t *log;
    bool lib_ready;
    unsigned generation;
    mg_auth_cache *sessions;       /* SHA-256(session id) -> identity */
    mg_auth_cache *used_states;    /* SHA-256(state) -> marker: replay guard */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void ctx_unref(sso_ctx *c)
{
    if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    /* The named session config stays registered in liboauth2's global list;
     * one small leak per reload is the price of not racing that list. */
    oauth2_cfg_openidc_free(g.log, c->oidc);
    free(c->scheme);
    free(c->host);
    free(c->public_url);
    free(c->issuer);
    free(c->client_id);
    free(c->end_session);
    OPENSSL_cleanse(c->key, sizeof(c->key));
    free(c);
}

static sso_ctx *ctx_get(void)
{
    pthread_mutex_lock(&g.mu);
    sso_ctx *c = g.cur;
    if (c)
        atomic_fetch_add(&c->refs, 1);
    pthread_mutex_unlock(&g.mu);
    return c;
}

/* The marker value for used_states: any refcounted pointer will do. */
static int state_marker;
static void *marker_ref(void *v) { return v; }
static void marker_unref(void *v) { MG_UNUSED(v); }
static const mg_auth_cache_ops marker_ops = {marker_ref, marker_unref};

static void lib_log(oauth2_log_sink_t *sink, const char *file, unsigned long line, const char *fn,
                    oauth2_log_level_t level, const char *msg)
{
    /* Never below WARN (DEBUG logs tokens and the client secret). */
    if (level == OAUTH2_LOG_ERROR)
        mg_log_warn("liboauth2: %s", msg);
    else
        mg_log_info("liboauth2: %s", msg);
}

/* ------------------------------------------------------------ small helpers */

/* The buffer as a C string (mg_buf does not keep a NUL); "" when empty. */
static const char *cstr(mg_buf *b)
{
    if (mg_buf_append(b, "", 1) != MG_OK)
        return b->p ? "" : "";
    b->len--;
    return b->p;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool mg_auth_sso_url_decode(const char *s, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return false;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            c = hi << 4 | lo;
            i += 2;
        }
        if (c < 0x20 || c == 0x7f)
            return false;
        if (o + 1 >= outsz)
            return false;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return true;
}

bool mg_auth_sso_query_param(mg_str q, const char *name, mg_str *out)
{
    size_t nl = strlen(name), i = 0;
    while (i < q.n) {
        size_t start = i;
        while (i < q.n && q.p[i] != '&')
            i++;
        size_t end = i++;
        if (end - start > nl && memcmp(q.p + start, name, nl) == 0 && q.p[start + nl] == '=') {
            *out = mg_str_make(q.p + start + nl + 1, end - start - nl - 1);
            return true;
        }
    }
    return false;
}

/* Percent-encodes everything but unreserved characters (and '/' when
 * keep_slash). */
static void url_encode(mg_buf *b, const char *s, size_t n, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            mg_buf_append(b, &s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            mg_buf_append(b, e, 3);
        }
    }
}

static void b64url(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
    }
    out[o] = '\0';
}

void mg_auth_sso_nonce(const uint8_t key[32], const char *state, size_t n, char out[44])
{
    uint8_t mac[32];
    unsigned int len = sizeof(mac);
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)state, n, mac, &len);
    b64url(mac, 32, out);
}

static void hex32(const uint8_t h[32], char out[65])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[h[i] >> 4];
        out[2 * i + 1] = hex[h[i] & 15];
    }
    out[64] = '\0';
}

static bool session_id_ok(mg_str v)
{
    if (v.n != SESSION_ID_LEN)
        return false;
    for (size_t i = 0; i < v.n; i++) {
        char c = v.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

static bool num_claim(const cJSON *claims, const char *name, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);
    if (!cJSON_IsNumber(v))
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

const char *mg_auth_sso_check_id_token(const cJSON *claims, const char *issuer, const char *client_id,
                                       const char *nonce, int64_t now)
{
    if (!cJSON_IsObject(claims))
        return "no id_token claims";
    const cJSON *iss = cJSON_GetObjectItemCaseSensitive(claims, "iss");
    if (!cJSON_IsString(iss) || issuer == NULL || strcmp(iss->valuestring, issuer) != 0)
        return "id_token issuer does not match";
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");
    bool found = false;
    int naud = 0;
    if (cJSON_IsString(aud)) {
        naud = 1;
        found = strcmp(aud->valuestring, client_id) == 0;
    } else if (cJSON_IsArray(aud)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, aud) {
            naud++;
            if (cJSON_IsString(e) && strcmp(e->valuestring, client_id) == 0)
                found = true;
        }
    }
    if (!found)
        return "id_token audience is not this client";
    if (naud > 1) {
        const cJSON *azp = cJSON_GetObjectItemCaseSensitive(claims, "azp");
        if (!cJSON_IsString(azp) || strcmp(azp->valuestring, client_id) != 0)
            return "id_token has several audiences and azp is not this client";
    }
    const cJSON *nn = cJSON_GetObjectItemCaseSensitive(claims, "nonce");
    if (!cJSON_IsString(nn) || nonce == NULL ||
        !mg_ct_equal(nn->valuestring, strlen(nn->valuestring), nonce, strlen(nonce)))
        return "id_token nonce does not match this sign-in";
    int64_t exp, t;
    if (!num_claim(claims, "exp", &exp))
        return "id_token has no exp";
    if (now >= exp + SKEW_S)
        return "id_token has expired";
    if (num_claim(claims, "nbf", &t) && t > now + SKEW_S)
        return "id_token is not valid yet";
    if (num_claim(claims, "iat", &t) && t > now + SKEW_S)
        return "id_token was issued in the future";
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(claims, "sub")))
        return "id_token has no sub";
    return NULL;
}

/* ------------------------------------------------------------ setup */

static char *opt_append(mg_buf *b, const char *name, const char *value)
{
    if (b->len)
        mg_buf_append(b, "&", 1);
    mg_buf_append_str(b, name);
    mg_buf_append(b, "=", 1);
    url_encode(b, value, strlen(value), false);
    return (char *)cstr(b);
}

/* Splits "https://host[:port]" (config-validated, no trailing '/'). */
static bool parse_public_url(const char *u, sso_ctx *c)
{
    const char *p = strstr(u, "://");
    if (p == NULL)
        return false;
    c->scheme = strndup(u, (size_t)(p - u));
    p += 3;
    const char *slash = strchr(p, '/');
    if (slash && slash[1] != '\0')
        return false;             /* a path prefix is not supported */
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = NULL;
    if (p[0] == '[') {
        const char *rb = memchr(p, ']', hl);
        if (rb == NULL)
            return false;
        if ((size_t)(rb + 1 - p) < hl && rb[1] == ':')
            colon = rb + 1;
    } else {
        colon = memchr(p, ':', hl);
    }
    c->port = strcasecmp(c->scheme ? c->scheme : "", "https") == 0 ? 443 : 80;
    if (colon) {
        char num[8];
        size_t pl = hl - (size_t)(colon + 1 - p);
        if (pl == 0 || pl >= sizeof(num))
            return false;
        memcpy(num, colon + 1, pl);
        num[pl] = '\0';
        char *end = NULL;
        long v = strtol(num, &end, 10);
        if (*end != '\0' || v <= 0 || v > 65535)
            return false;
        c->port = (unsigned long)v;
        hl = (size_t)(colon - p);
    }
    c->host = strndup(p, hl);
    return c->scheme && c->host && hl > 0;
}

static sso_ctx *ctx_build(const mg_config *cfg, const char *discovery, mg_buf *errs)
{
    sso_ctx *c = calloc(1, sizeof(*c));
    mg_buf opt = {0}, client = {0};
    char *rv = NULL;
    if (c == NULL)
        return NULL;
    atomic_init(&c->refs, 1);
    if (!parse_public_url(cfg->public_url, c)) {
        mg_buf_append_str(errs, "sso: public_url must be scheme://host[:port] without a path\n");
        goto fail;
    }
    c->public_url = strdup(cfg->public_url);
    c->issuer = strdup(cfg->oidc.issuer);
    c->client_id = strdup(cfg->oidc.client_id);
    c->lifetime_s = cfg->session.lifetime_s;
    c->login_timeout_s = cfg->session.login_timeout_s ? cfg->session.login_timeout_s : 300;
    mg_auth_sha256(cfg->session.secret, strlen(cfg->session.secret), c->key);
    char es[1024];
    if (mg_auth_oidc_meta("end_session_endpoint", es, sizeof(es)))
        c->end_session = strdup(es);

    /* Session config: cookie type (never sent to the browser, see above);
     * inactivity = max duration = lifetime (1.4.5.4's inactivity timeout
     * is really an absolute one). A new name per generation: the list is
     * global and names cannot be re-registered safely. */
    char name[32], lt[16], st[16];
    snprintf(name, sizeof(name), "mg%u", ++g.generation);
    snprintf(lt, sizeof(lt), "%u", (unsigned)c->lifetime_s);
    opt_append(&opt, "name", name);
    opt_append(&opt, "cookie.name", TMP_SESSION_COOKIE);
    opt_append(&opt, "cookie.path", "/");
    opt_append(&opt, "inactivity_timeout", lt);
    opt_append(&opt, "max_duration", lt);
    rv = oauth2_cfg_session_set_options(g.log, NULL, "cookie", cstr(&opt));
    if (rv)
        goto libfail;

    c->oidc = oauth2_cfg_openidc_init(g.log);
    if (c->oidc == NULL)
        goto libfail;
    rv = oauth2_cfg_openidc_provider_resolver_set_options(g.log, c->oidc, "string", discovery, NULL);
    if (rv)
        goto libfail;

    char scope[512] = "";
    size_t sl = 0;
    for (size_t i = 0; i < cfg->oidc.nscopes; i++)
        sl += (size_t)snprintf(scope + sl, sl < sizeof(scope) ? sizeof(scope) - sl : 0, "%s%s",
                               i ? " " : "", cfg->oidc.scopes[i]);
    if (cfg->oidc.nscopes == 0)
        snprintf(scope, sizeof(scope), "openid email profile");
    opt_append(&client, "client_id", cfg->oidc.client_id);
    if (cfg->oidc.client_secret) {
        opt_append(&client, "client_secret", cfg->oidc.client_secret);
        opt_append(&client, "token_endpoint_auth_method", "client_secret_basic");
    } else {
        opt_append(&client, "token_endpoint_auth_method", "none");
    }
    opt_append(&client, "scope", scope);
    mg_buf copt = {0};
    opt_append(&copt, "session", name);
    rv = oauth2_openidc_client_set_options(g.log, c->oidc, "string", cstr(&client), cstr(&copt));
    mg_buf_free(&copt);
    if (rv)
        goto libfail;
    oauth2_openidc_client_http_timeout_set(g.log, oauth2_cfg_openidc_client_get(g.log, c->oidc),
                                           HTTP_TIMEOUT_S);

    mg_buf o2 = {0}, ru = {0};
    mg_buf_printf(&ru, "%s/auth/callback", cfg->public_url);
    opt_append(&o2, "redirect_uri", cstr(&ru));
    opt_append(&o2, "unauth_action", "auth");
    opt_append(&o2, "state.cookie.name.prefix", MG_SSO_STATE_PREFIX);
    /* liboauth2 refuses an older state too, and gives the state cookie
     * this Max-Age; cb_run checks first, to say why. */
    snprintf(st, sizeof(st), "%u", (unsigned)c->login_timeout_s);
    opt_append(&o2, "state.cookie.timeout", st);
    opt_append(&o2, "state.cookie.delete.oldest", "true");
    rv = oauth2_cfg_openidc_set_options(g.log, c->oidc, cstr(&o2));
    mg_buf_free(&o2);
    mg_buf_free(&ru);
    if (rv)
        goto libfail;
    mg_buf_free(&opt);
    if (client.p)
        OPENSSL_cleanse(client.p, client.len);
    mg_buf_free(&client);
    return c;
libfail:
    mg_buf_printf(errs, "sso: liboauth2 configuration failed: %s\n", rv ? rv : "out of memory");
    if (rv)
        oauth2_mem_free(rv);
fail:
    mg_buf_free(&opt);
    if (client.p)
        OPENSSL_cleanse(client.p, client.len);
    mg_buf_free(&client);
    ctx_unref(c);
    return NULL;
}

mg_rc mg_auth_sso_setup(const mg_config *cfg, mg_buf *errs)
{
    /* liboauth2 and its shared-memory cache only when SSO is configured:
     * the cache alone is several MiB of resident memory. */
    if (!g.lib_ready && cfg->oidc.present) {
        oauth2_log_sink_t *sink = oauth2_log_sink_create(OAUTH2_LOG_WARN, lib_log, NULL);
        g.log = oauth2_init(OAUTH2_LOG_WARN, sink);
        if (g.log == NULL)
            return MG_ENOMEM;
        /* The default (unnamed) cache: shm, with room for large group lists. */
        char *rv = oauth2_cfg_set_cache(g.log, NULL, "shm", "max_val_size=65536&max_entries=500");
        if (rv) {
            mg_buf_printf(errs, "sso: liboauth2 cache: %s\n", rv);
            oauth2_mem_free(rv);
        }
        g.sessions = mg_auth_cache_new(100000, &mg_auth_identity_cache_ops);
        g.used_states = mg_auth_cache_new(100000, &marker_ops);
        if (g.sessions == NULL || g.used_states == NULL)
            return MG_ENOMEM;
        g.lib_ready = true;
    }
    sso_ctx *next = NULL;
    if (cfg->oidc.present && cfg->session.present && cfg->session.secret) {
        /* The passphrase encrypts the state cookies; set before any use. */
        const char *prv = oauth2_crypto_passphrase_set(g.log, NULL, cfg->session.secret);
        if (prv)
            mg_buf_printf(errs, "sso: passphrase: %s\n", prv);
        char *disc = mg_auth_oidc_discovery_json();
        if (cfg->public_url == NULL)
            mg_buf_append_str(errs, "sso: browser sign-in needs public_url; it is off\n");
        else if (disc == NULL)
            mg_buf_append_str(errs, "sso: no discovery document from the IdP; browser sign-in is off until a reload\n");
        else
            next = ctx_build(cfg, disc, errs);
        free(disc);
    }
    if (cfg->oidc.present && next == NULL)
        mg_log_warn("sso: browser sign-in is off (see the identity provider errors above)");
    pthread_mutex_lock(&g.mu);
    sso_ctx *old = g.cur;
    g.cur = next;
    pthread_mutex_unlock(&g.mu);
    ctx_unref(old);
    if (g.sessions)
        mg_auth_cache_clear(g.sessions);
    return MG_OK;
}

void mg_auth_sso_teardown(void)
{
    pthread_mutex_lock(&g.mu);
    sso_ctx *old = g.cur;
    g.cur = NULL;
    pthread_mutex_unlock(&g.mu);
    ctx_unref(old);
    if (g.sessions)
        mg_auth_cache_clear(g.sessions);
    if (g.used_states)
        mg_auth_cache_clear(g.used_states);
}

/* ------------------------------------------------------------ responses */

static const char CLEAR_COOKIE[] =
    "Set-Cookie: " MG_SSO_COOKIE "=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0\r\n";

static void html_escape(mg_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': mg_buf_append_str(b, "&lt;"); break;
        case '>': mg_buf_append_str(b, "&gt;"); break;
        case '&': mg_buf_append_str(b, "&amp;"); break;
        case '"': mg_buf_append_str(b, "&quot;"); break;
        case '\'': mg_buf_append_str(b, "&#39;"); break;
        default: mg_buf_append(b, s, 1);
        }
    }
}

/* A sign-in error: HTML for people, with a way back in; never a cookie
 * except those clearing state (extra, may be NULL). */
static void error_page(mg_req *req, int status, const char *what, const char *extra)
{
    mg_buf b = {0}, h = {0};
    mg_buf_append_str(&b, "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign-in failed</title>"
                          "</head><body><h1>Sign-in failed</h1><p>");
    html_escape(&b, what);
    mg_buf_append_str(&b, "</p><p><a href=\"/auth/login?return_to=%2F\">Sign in again</a></p></body></html>\n");
    mg_buf_append_str(&h, "Content-Security-Policy: default-src 'none'\r\nX-Frame-Options: DENY\r\n");
    if (extra)
        mg_buf_append_str(&h, extra);
    req->error_code = "sso_error";
    mg_req_respond(req, status, "text/html; charset=utf-8", b.p ? b.p : "", b.len, cstr(&h));
    mg_buf_free(&b);
    mg_buf_free(&h);
}

static void respond_401(mg_req *req, bool clear)
{
    static const char body[] = "{\"error\":{\"message\":\"not signed in\",\"type\":\"authentication_error\","
                               "\"code\":\"missing_credentials\"}}";
    mg_buf h = {0};
    mg_buf_append_str(&h, "WWW-Authenticate: Bearer realm=\"modelgate\"\r\n");
    if (clear)
        mg_buf_append_str(&h, CLEAR_COOKIE);
    req->error_code = "missing_credentials";
    mg_req_respond(req, 401, "application/json", body, sizeof(body) - 1, cstr(&h));
    mg_buf_free(&h);
}

bool mg_auth_sso_wants_redirect(const mg_req *req)
{
    if (req->http->method != MG_HTTP_GET && req->http->method != MG_HTTP_HEAD)
        return false;
    if (!req->snap->cfg->oidc.present || req->snap->cfg->public_url == NULL)
        return false;
    const mg_http_header *a = mg_http_header_get(req->http, "accept");
    if (a == NULL)
        return false;
    for (size_t i = 0; i + 9 <= a->value.n; i++)
        if (mg_str_ieq(mg_str_make(a->value.p + i, 9), MG_STR_LIT("text/html")))
            return true;
    return false;
}

static void redirect_login(mg_req *req, bool clear)
{
    mg_str t = req->http->target;
    mg_buf h = {0};
    mg_buf_append_str(&h, "Location: /auth/login?return_to=");
    if (mg_auth_return_to_ok(t.p, t.n))
        url_encode(&h, t.p, t.n, false);
    else
        mg_buf_append_str(&h, "%2F");
    mg_buf_append_str(&h, "\r\n");
    if (clear)
        mg_buf_append_str(&h, CLEAR_COOKIE);
    static const char body[] = "sign-in required\n";
    mg_req_respond(req, 302, "text/plain; charset=utf-8", body, sizeof(body) - 1, cstr(&h));
    mg_buf_free(&h);
}

void mg_auth_sso_redirect_login(mg_req *req) { redirect_login(req, false); }

/* ------------------------------------------------------------ liboauth2 calls */

/* The client's Cookie header reduced to our state cookies: liboauth2 needs
 * them (callback; counting logins in flight) and nothing else. */
static char *state_cookies(const mg_req *req)
{
    const mg_http_header *h = mg_http_header_get(req->http, "cookie");
    if (h == NULL)
        return NULL;
    mg_buf b = {0};
    size_t pl = strlen(MG_SSO_STATE_PREFIX), i = 0;
    mg_str v = h->value;
    while (i < v.n) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == ';'))
            i++;
        size_t s = i;
        while (i < v.n && v.p[i] != ';')
            i++;
        size_t e = i;
        while (e > s && v.p[e - 1] == ' ')
            e--;
        if (e - s > pl && memcmp(v.p + s, MG_SSO_STATE_PREFIX, pl) == 0) {
            bool ok = true;
            for (size_t k = s; k < e && ok; k++)
                ok = (unsigned char)v.p[k] > 0x20 && v.p[k] != 0x7f;
            if (ok) {
                if (b.len)
                    mg_buf_append_str(&b, "; ");
                mg_buf_append(&b, v.p + s, e - s);
            }
        }
    }
    if (b.len == 0) {
        mg_buf_free(&b);
        return NULL;
    }
    mg_buf_append(&b, "", 1);
    return b.p;
}

static oauth2_http_request_t *lib_request(const sso_ctx *c, const char *path, const char *query,
                                          const char *cookies)
{
    oauth2_http_request_t *r = oauth2_http_request_init(g.log);
    if (r == NULL)
        return NULL;
    oauth2_http_request_scheme_set(g.log, r, c->scheme);
    oauth2_http_request_hostname_set(g.log, r, c->host);
    oauth2_http_request_port_set(g.log, r, c->port);
    oauth2_http_request_path_set(g.log, r, path);
    oauth2_http_request_method_set(g.log, r, OAUTH2_HTTP_METHOD_GET);
    if (query && query[0])
        oauth2_http_request_query_set(g.log, r, query);
    /* A fixed Accept: without text/html liboauth2 takes the request for
     * an XHR and answers 410 instead of starting the login. */
    oauth2_http_request_header_set(g.log, r, "Accept", "text/html");
    if (cookies)
        oauth2_http_request_header_set(g.log, r, "Cookie", cookies);
    return r;
}

typedef struct hdr_collect {
    mg_buf *out;                   /* "Set-Cookie: ...\r\n" lines we pass on */
    char *location;
    char *tmp_session;             /* liboauth2's session cookie value (never passed on) */
} hdr_collect;

static bool header_cb(oauth2_log_t *log, void *rec, const char *key, const char *value)
{
    hdr_collect *hc = rec;
    if (strcasecmp(key, "Location") == 0) {
        free(hc->location);
        hc->location = strdup(value);
    } else if (strcasecmp(key, "Set-Cookie") == 0) {
        size_t tl = strlen(TMP_SESSION_COOKIE);
        if (strncmp(value, TMP_SESSION_COOKIE "=", tl + 1) == 0) {
            const char *v = value + tl + 1, *end = strchr(v, ';');
            free(hc->tmp_session);
            hc->tmp_session = strndup(v, end ? (size_t)(end - v) : strlen(v));
        } else if (strncmp(value, MG_SSO_STATE_PREFIX, strlen(MG_SSO_STATE_PREFIX)) == 0 &&
                   strpbrk(value, "\r\n") == NULL) {
            mg_buf_printf(hc->out, "Set-Cookie: %s\r\n", value);
        }
    }
    return true;
}

static cJSON *to_cjson(json_t *j)
{
    if (j == NULL)
        return NULL;
    char *s = json_dumps(j, JSON_COMPACT);
    cJSON *c = s ? cJSON_Parse(s) : NULL;
    free(s);
    return c;
}

/* ------------------------------------------------------------ login */

typedef struct login_job {
    mg_job job;
    sso_ctx *ctx;
    char *path, *query, *cookies;
    int status;                    /* 302 ok, else failure */
    mg_buf headers;                /* Location + Set-Cookie lines */
} login_job;

static void login_destroy(mg_job *j)
{
    login_job *lj = (login_job *)j;
    ctx_unref(lj->ctx);
    free(lj->path);
    free(lj->query);
    free(lj->cookies);
    mg_buf_free(&lj->headers);
    free(lj);
}

/* Replaces liboauth2's nonce (which it forgets) with HMAC(key, state). */
static bool rewrite_nonce(const sso_ctx *c, const char *loc, mg_buf *out)
{
    const char *q = strchr(loc, '?');
    if (q == NULL)
        return false;
    mg_str query = mg_str_c(q + 1), state;
    if (!mg_auth_sso_query_param(query, "state", &state) || state.n == 0 || state.n > 256)
        return false;
    char nonce[44];
    mg_auth_sso_nonce(c->key, state.p, state.n, nonce);
    mg_buf_append(out, loc, (size_t)(q + 1 - loc));
    size_t i = 0;
    bool first = true, had = false;
    while (i < query.n) {
        size_t s = i;
        while (i < query.n && query.p[i] != '&')
            i++;
        size_t e = i++;
        if (!first)
            mg_buf_append(out, "&", 1);
        first = false;
        if (e - s >= 6 && memcmp(query.p + s, "nonce=", 6) == 0) {
            mg_buf_printf(out, "nonce=%s", nonce);
            had = true;
        } else {
            mg_buf_append(out, query.p + s, e - s);
        }
    }
    return had;
}

static void login_run(mg_job *j)
{
    login_job *lj = (login_job *)j;
    oauth2_http_request_t *r = lib_request(lj->ctx, lj->path, lj->query, lj->cookies);
    oauth2_http_response_t *resp = NULL;
    json_t *claims = NULL;
    if (r == NULL)
        return;
    bool ok = oauth2_openidc_handle(g.log, lj->ctx->oidc, r, &resp, &claims);
    if (ok && resp && oauth2_http_response_status_code_get(g.log, resp) == 302) {
        mg_buf cookies = {0};
        hdr_collect hc = {.out = &cookies};
        oauth2_http_response_headers_loop(g.log, resp, header_cb, &hc);
        mg_buf loc = {0};
        if (hc.location && strncmp(hc.location, "http", 4) == 0 && rewrite_nonce(lj->ctx, hc.location, &loc) &&
            strpbrk(cstr(&loc), "\r\n") == NULL) {
            mg_buf_printf(&lj->headers, "Location: %.*s\r\n", (int)loc.len, loc.p);
            if (cookies.len)
                mg_buf_append(&lj->headers, cookies.p, cookies.len);
            lj->status = 302;
        }
        mg_buf_free(&loc);
        mg_buf_free(&cookies);
        free(hc.location);
        free(hc.tmp_session);
    }
    if (claims)
        json_decref(claims);
    if (resp)
        oauth2_http_response_free(g.log, resp);
    oauth2_http_request_free(g.log, r);
}

static void login_done(mg_job *j, mg_req *req)
{
    login_job *lj = (login_job *)j;
    if (lj->status != 302) {
        error_page(req, 502, "The sign-in could not be started. Please try again.", NULL);
        return;
    }
    static const char body[] = "redirecting to the identity provider\n";
    mg_req_respond(req, 302, "text/plain; charset=utf-8", body, sizeof(body) - 1, cstr(&lj->headers));
}

static bool submit(mg_req *req, mg_job *job, mg_job_pool *pool)
{
    if (mg_job_attach(job, req) != MG_OK) {
        mg_job_release(job);
        error_page(req, 503, "The gateway is overloaded. Please try again.", NULL);
        return false;
    }
    if (pool == NULL || mg_job_pool_submit(pool, job) != MG_OK) {
        mg_job_release(job);
        error_page(req, 503, "Too many sign-ins are in progress. Please try again shortly.", NULL);
        return false;
    }
    return true;
}

void mg_auth_sso_login(mg_req *req)
{
    sso_ctx *c = ctx_get();
    if (c == NULL) {
        error_page(req, 503, "Browser sign-in is not available on this gateway right now.", NULL);
        return;
    }
    char target[2100] = "/";
    mg_str q = req->http->query, rt;
    if (mg_auth_sso_query_param(q, "return_to", &rt)) {
        char dec[2100];
        size_t dl;
        /* Decoded once; anything unsafe (other origin, our own /auth/
         * endpoints) becomes "/" rather than an error page. */
        if (mg_auth_sso_url_decode(rt.p, rt.n, dec, sizeof(dec)) && (dl = strlen(dec)) > 0 &&
            mg_auth_return_to_ok(dec, dl) && strncmp(dec, "/auth/", 6) != 0 && strchr(dec, '#') == NULL)
            memcpy(target, dec, dl + 1);
    }
    login_job *lj = calloc(1, sizeof(*lj));
    if (lj == NULL) {
        ctx_unref(c);
        error_page(req, 503, "The gateway is overloaded. Please try again.", NULL);
        return;
    }
    mg_job_init(&lj->job, req, req->snap);
    lj->job.run = login_run;
    lj->job.done = login_done;
    lj->job.destroy = login_destroy;
    lj->ctx = c;
    char *qm = strchr(target, '?');
    lj->path = strndup(target, qm ? (size_t)(qm - target) : strlen(target));
    lj->query = qm ? strdup(qm + 1) : NULL;
    lj->cookies = state_cookies(req);
    if (lj->path == NULL) {
        mg_job_release(&lj->job);
        error_page(req, 503, "The gateway is overloaded. Please try again.", NULL);
        return;
    }
    submit(req, &lj->job, mg_auth_idp_pool());
}

/* ------------------------------------------------------------ database */

static _Thread_local PGconn *tl_conn;

void mg_auth_sso_thread_done(void)
{
    PQfinish(tl_conn);
    tl_conn = NULL;
}

/* One statement with a deadline on a pool thread; NULL on any failure. */
static PGresult *db_query(const char *url, const char *sql, int n, const char *const *params)
{
    if (tl_conn == NULL && (tl_conn = mg_auth_db_connect(url, NULL, 0)) == NULL)
        return NULL;
    if (!PQsendQueryParams(tl_conn, sql, n, NULL, params, NULL, NULL, 0))
        goto fail;
    uint64_t deadline = mg_now_ms() + QUERY_TIMEOUT_MS;
    for (;;) {
        if (PQconsumeInput(tl_conn) == 0)
            goto fail;
        if (!PQisBusy(tl_conn))
            break;
        uint64_t now = mg_now_ms();
        if (now >= deadline)
            goto fail;
        struct pollfd pfd = {PQsocket(tl_conn), POLLIN, 0};
        if (poll(&pfd, 1, (int)(deadline - now)) < 0)
            goto fail;
    }
    PGresult *res = NULL, *r;
    while ((r = PQgetResult(tl_conn)) != NULL) {
        if (res == NULL)
            res = r;
        else
            PQclear(r);
    }
    if (res == NULL || (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)) {
        if (res)
            mg_log_warn("sso: database: %s", PQresultErrorMessage(res));
        PQclear(res);
        if (PQstatus(tl_conn) != CONNECTION_OK) {
            PQfinish(tl_conn);
            tl_conn = NULL;
        }
        return NULL;
    }
    return res;
fail:
    PQfinish(tl_conn);
    tl_conn = NULL;
    return NULL;
}

/* ------------------------------------------------------------ callback */

typedef struct cb_job {
    mg_job job;
    sso_ctx *ctx;
    char *query, *cookies, *state;
    /* results */
    const char *why;               /* failure shown to the user (static) */
    mg_buf clear;                  /* state-cookie clearing lines */
    char target[2100];
    char sid[SESSION_ID_LEN + 1];
} cb_job;

static void cb_destroy(mg_job *j)
{
    cb_job *cj = (cb_job *)j;
    ctx_unref(cj->ctx);
    free(cj->query);
    free(cj->cookies);
    free(cj->state);
    mg_buf_free(&cj->clear);
    OPENSSL_cleanse(cj->sid, sizeof(cj->sid));
    free(cj);
}

/* The claims a session keeps: only what the identity needs. */
static cJSON *session_claims(const cJSON *idc, const cJSON *ui, const mg_cfg_oidc *o)
{
    const char *names[] = {"sub", o->claim_email ? o->claim_email : "email", o->claim_name ? o->claim_name : "name",
                           o->claim_groups ? o->claim_groups : "groups", o->claim_cost_center};
    cJSON *out = cJSON_CreateObject();
    for (size_t i = 0; out && i < MG_ARRAY_LEN(names); i++) {
        if (names[i] == NULL || cJSON_GetObjectItemCaseSensitive(out, names[i]))
            continue;
        const cJSON *v = ui && i > 0 ? cJSON_GetObjectItemCaseSensitive(ui, names[i]) : NULL;
        if (v == NULL)
            v = cJSON_GetObjectItemCaseSensitive(idc, names[i]);
        if (v)
            cJSON_AddItemToObject(out, names[i], cJSON_Duplicate(v, true));
    }
    return out;
}

/* Blocking: stores the new session. False when the database failed. */
static bool session_store(const mg_config *cfg, const char *hash_hex, const mg_auth_identity *id,
                          const cJSON *claims, int64_t exp)
{
    if (cfg->database_url == NULL)
        return true;              /* memory-only sessions (single instance) */
    char *cj = cJSON_PrintUnformatted(claims);
    char expbuf[24];
    snprintf(expbuf, sizeof(expbuf), "%lld", (long long)exp);
    const char *p[] = {hash_hex, id->subject, id->email, cj, expbuf};
    PGresult *r = cj ? db_query(cfg->database_url,
                                "INSERT INTO auth_sessions (id_hash, subject, email, claims, expires_at)"
                                " VALUES ($1, $2, $3, $4::jsonb, to_timestamp($5::bigint))", 5, p)
                     : NULL;
    free(cj);
    bool ok = r != NULL;
    PQclear(r);
    return ok;
}

/* When the login that owns state began: liboauth2 (1.4.5.4) keeps it as
 * "t" in the encrypted state cookie. -1 if that cookie is missing or
 * unreadable (a forged value, a session secret changed since, another
 * liboauth2 format). */
static int64_t state_issued_at(const char *cookies, const char *state)
{
    if (cookies == NULL)
        return -1;
    size_t pl = strlen(MG_SSO_STATE_PREFIX), sl = strlen(state);
    const char *p = cookies, *val = NULL;
    size_t vl = 0;
    while (*p) {
        const char *e = strchr(p, ';');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > pl + sl && memcmp(p, MG_SSO_STATE_PREFIX, pl) == 0 && memcmp(p + pl, state, sl) == 0 &&
            p[pl + sl] == '=') {
            val = p + pl + sl + 1;
            vl = n - pl - sl - 1;
            break;
        }
        if (e == NULL)
            break;
        p = e + 1;
        while (*p == ' ')
            p++;
    }
    if (val == NULL || vl == 0)
        return -1;
    char *v = strndup(val, vl);
    json_t *js = NULL;
    int64_t t = -1;
    if (v && oauth2_jose_jwt_decrypt(g.log, oauth2_crypto_passphrase_get(g.log), v, &js) && js) {
        json_t *ts = json_object_get(js, "t");
        if (json_is_integer(ts) && json_integer_value(ts) > 0)
            t = (int64_t)json_integer_value(ts);
    }
    if (js)
        json_decref(js);
    free(v);
    return t;
}

static void cb_run(mg_job *j)
{
    cb_job *cj = (cb_job *)j;
    const sso_ctx *c = cj->ctx;
    const mg_config *cfg = j->snap->cfg;
    oauth2_http_request_t *r = lib_request(c, "/auth/callback", cj->query, cj->cookies);
    oauth2_http_response_t *resp = NULL;
    json_t *claims = NULL;
    oauth2_session_rec_t *srec = NULL;
    oauth2_http_request_t *r2 = NULL;
    cJSON *idc = NULL, *ui = NULL, *keep = NULL;
    mg_auth_identity *id = NULL;
    hdr_collect hc = {.out = &cj->clear};
    cj->why = "The sign-in could not be completed (the code exchange with the identity provider failed).";
    if (r == NULL)
        goto out;
    /* liboauth2 refuses a stale state as well, but its refusal looks like
     * any other failure; checked here first so the user is told why. A
     * state cookie we cannot read is left to liboauth2 to refuse (its
     * format is liboauth2's, not ours to depend on for the decision). */
    int64_t issued = state_issued_at(cj->cookies, cj->state);
    if (issued >= 0 && mg_auth_wall_s() > issued + (int64_t)c->login_timeout_s) {
        cj->why = "The sign-in took too long and has expired. Start the sign-in again.";
        mg_buf_printf(&cj->clear, "Set-Cookie: " MG_SSO_STATE_PREFIX "%s=; Path=/; Secure; HttpOnly; "
                      "SameSite=Lax; Max-Age=0\r\n", cj->state);
        goto out;
    }
    bool ok = oauth2_openidc_handle(g.log, c->oidc, r, &resp, &claims);
    if (resp)
        oauth2_http_response_headers_loop(g.log, resp, header_cb, &hc);
    if (!ok || resp == NULL || oauth2_http_response_status_code_get(g.log, resp) != 302 || hc.tmp_session == NULL)
        goto out;
    /* Read the id_token and userinfo claims back from liboauth2's own
     * session cookie (which never leaves this function). */
    mg_buf ck = {0};
    mg_buf_printf(&ck, "%s=%s", TMP_SESSION_COOKIE, hc.tmp_session);
    r2 = lib_request(c, "/auth/callback", NULL, cstr(&ck));
    mg_buf_free(&ck);
    if (r2 == NULL || !oauth2_session_load(g.log, oauth2_cfg_openidc_session_get(g.log, c->oidc), r2, &srec) ||
        srec == NULL)
        goto out;
    idc = to_cjson(oauth2_session_rec_id_token_claims_get(g.log, srec));
    ui = to_cjson(oauth2_session_rec_userinfo_claims_get(g.log, srec));
    char nonce[44];
    mg_auth_sso_nonce(c->key, cj->state, strlen(cj->state), nonce);
    int64_t now = mg_auth_wall_s();
    const char *why = mg_auth_sso_check_id_token(idc, c->issuer, c->client_id, nonce, now);
    if (why) {
        mg_log_warn("sso: id_token refused: %s", why);
        cj->why = "The identity provider's answer did not pass the gateway's checks.";
        goto out;
    }
    /* userinfo must describe the same subject (OIDC Core 5.3.2). */
    const cJSON *usub = ui ? cJSON_GetObjectItemCaseSensitive(ui, "sub") : NULL;
    if (usub && (!cJSON_IsString(usub) ||
                 strcmp(usub->valuestring, cJSON_GetObjectItemCaseSensitive(idc, "sub")->valuestring) != 0)) {
        cJSON_Delete(ui);
        ui = NULL;
    }
    keep = session_claims(idc, ui, &cfg->oidc);
    id = keep ? mg_auth_identity_from_claims(keep, &cfg->oidc, "session") : NULL;
    if (id == NULL)
        goto out;
    int64_t exp = now + (int64_t)c->lifetime_s;
    id->exp = exp;
    uint8_t raw[32], h[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        goto out;
    b64url(raw, sizeof(raw), cj->sid);
    OPENSSL_cleanse(raw, sizeof(raw));
    mg_auth_sha256(cj->sid, SESSION_ID_LEN, h);
    char hh[65];
    hex32(h, hh);
    if (!session_store(cfg, hh, id, keep, exp)) {
        cj->sid[0] = '\0';
        cj->why = "Your session could not be stored (database unavailable). Please try again shortly.";
        goto out;
    }
    int64_t until = cfg->database_url ? now + SESSION_RECHECK_S : exp;
    mg_auth_cache_put(g.sessions, h, id, until < exp ? until : exp);
    /* Where to go: liboauth2 kept our target in its state as an absolute
     * URL on public_url; anything else goes to "/". */
    snprintf(cj->target, sizeof(cj->target), "/");
    size_t pl = strlen(c->public_url);
    if (hc.location && strncmp(hc.location, c->public_url, pl) == 0) {
        const char *t = hc.location + pl;
        size_t tl = strlen(t);
        if (tl < sizeof(cj->target) && mg_auth_return_to_ok(t, tl) && strncmp(t, "/auth/", 6) != 0)
            memcpy(cj->target, t, tl + 1);
    }
    cj->why = NULL;
out:
    mg_auth_identity_unref(id);
    cJSON_Delete(keep);
    cJSON_Delete(idc);
    cJSON_Delete(ui);
    if (srec)
        oauth2_session_rec_free(g.log, srec);
    if (r2)
        oauth2_http_request_free(g.log, r2);
    if (claims)
        json_decref(claims);
    if (resp)
        oauth2_http_response_free(g.log, resp);
    if (r)
        oauth2_http_request_free(g.log, r);
    free(hc.location);
    if (hc.tmp_session) {
        OPENSSL_cleanse(hc.tmp_session, strlen(hc.tmp_session));
        free(hc.tmp_session);
    }
}

static void cb_done(mg_job *j, mg_req *req)
{
    cb_job *cj = (cb_job *)j;
    if (cj->why) {
        error_page(req, cj->sid[0] ? 503 : 400, cj->why, cstr(&cj->clear));
        return;
    }
    mg_buf h = {0};
    mg_buf_append_str(&h, "Location: ");
    mg_buf_append_str(&h, cj->target);
    mg_buf_printf(&h, "\r\nSet-Cookie: " MG_SSO_COOKIE "=%s; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=%u\r\n",
                  cj->sid, (unsigned)cj->ctx->lifetime_s);
    if (cj->clear.len)
        mg_buf_append(&h, cj->clear.p, cj->clear.len);
    static const char body[] = "signed in\n";
    mg_req_respond(req, 302, "text/plain; charset=utf-8", body, sizeof(body) - 1, cstr(&h));
    OPENSSL_cleanse(h.p, h.len);
    mg_buf_free(&h);
}

/* Keeps only the printable-ASCII "error" code of an IdP error answer. */
static void idp_error_text(mg_str v, char *out, size_t outsz)
{
    char dec[128];
    if (!mg_auth_sso_url_decode(v.p, v.n < 100 ? v.n : 100, dec, sizeof(dec)))
        snprintf(dec, sizeof(dec), "unknown_error");
    size_t o = 0;
    for (size_t i = 0; dec[i] && o + 1 < outsz; i++)
        if ((dec[i] >= 'a' && dec[i] <= 'z') || dec[i] == '_' || (dec[i] >= '0' && dec[i] <= '9'))
            out[o++] = dec[i];
    out[o] = '\0';
}

void mg_auth_sso_callback(mg_req *req)
{
    mg_str q = req->http->query, v;
    if (mg_auth_sso_query_param(q, "error", &v)) {
        char code[64], msg[200];
        idp_error_text(v, code, sizeof(code));
        snprintf(msg, sizeof(msg), "The identity provider did not sign you in (%s).", code[0] ? code : "error");
        error_page(req, 400, msg, NULL);
        return;
    }
    char code[MAX_PARAM], state[512];
    mg_str cv, sv;
    if (!mg_auth_sso_query_param(q, "state", &sv) || !mg_auth_sso_url_decode(sv.p, sv.n, state, sizeof(state)) ||
        state[0] == '\0' || strpbrk(state, "&=;, ") != NULL) {
        error_page(req, 400, "The sign-in response has no valid state. Start the sign-in again.", NULL);
        return;
    }
    if (!mg_auth_sso_query_param(q, "code", &cv) || !mg_auth_sso_url_decode(cv.p, cv.n, code, sizeof(code)) ||
        code[0] == '\0' || strpbrk(code, "&=#") != NULL) {
        error_page(req, 400, "The sign-in response has no valid code. Start the sign-in again.", NULL);
        return;
    }
    char *cookies = state_cookies(req);
    char want[600];
    snprintf(want, sizeof(want), MG_SSO_STATE_PREFIX "%s=", state);
    if (cookies == NULL || strstr(cookies, want) == NULL) {
        free(cookies);
        error_page(req, 400, "This sign-in was not started in this browser, or it expired. Start the sign-in again.", NULL);
        return;
    }
    /* A state is good for one callback: a replay (even with the cookie
     * still at hand) is refused before liboauth2 sees it. */
    uint8_t sh[32];
    mg_auth_sha256(state, strlen(state), sh);
    if (mg_auth_cache_get(g.used_states, sh, mg_auth_wall_s())) {
        free(cookies);
        error_page(req, 400, "This sign-in response was already used. Start the sign-in again.", NULL);
        return;
    }
    sso_ctx *c = ctx_get();
    if (c == NULL) {
        free(cookies);
        error_page(req, 503, "Browser sign-in is not available on this gateway right now.", NULL);
        return;
    }
    /* Kept as long as cb_run would still accept the state. */
    mg_auth_cache_put(g.used_states, sh, &state_marker, mg_auth_wall_s() + (int64_t)c->login_timeout_s + SKEW_S);
    cb_job *cj = calloc(1, sizeof(*cj));
    mg_buf qb = {0};
    /* Decoded values: liboauth2 does not decode query parameters. */
    mg_buf_printf(&qb, "code=%s&state=%s", code, state);
    if (cj == NULL || qb.p == NULL) {
        free(cj);
        mg_buf_free(&qb);
        free(cookies);
        ctx_unref(c);
        error_page(req, 503, "The gateway is overloaded. Please try again.", NULL);
        return;
    }
    mg_job_init(&cj->job, req, req->snap);
    cj->job.run = cb_run;
    cj->job.done = cb_done;
    cj->job.destroy = cb_destroy;
    cj->ctx = c;
    cj->query = (char *)cstr(&qb);
    cj->cookies = cookies;
    cj->state = strdup(state);
    if (cj->state == NULL) {
        mg_job_release(&cj->job);
        error_page(req, 503, "The gateway is overloaded. Please try again.", NULL);
        return;
    }
    submit(req, &cj->job, mg_auth_idp_pool());
}

/* ------------------------------------------------------------ session lookup */

typedef enum { USE_STAGE, USE_LOGOUT } sess_use;

typedef struct sess_job {
    mg_job job;
    sess_use use;
    uint8_t hash[32];
    mg_auth_identity *ident;       /* result; NULL: no live session */
    bool db_failed;
    char end_session[1200];        /* logout: where to go next */
} sess_job;

static void sess_destroy(mg_job *j)
{
    sess_job *sj = (sess_job *)j;
    mg_auth_identity_unref(sj->ident);
    free(sj);
}

static void lookup_run(mg_job *j)
{
    sess_job *sj = (sess_job *)j;
    const mg_config *cfg = j->snap->cfg;
    char hh[65];
    hex32(sj->hash, hh);
    const char *p[] = {hh};
    PGresult *r = db_query(cfg->database_url,
                           "SELECT claims::text, EXTRACT(EPOCH FROM expires_at)::bigint FROM auth_sessions"
                           " WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > now()", 1, p);
    if (r == NULL) {
        sj->db_failed = true;
        return;
    }
    if (PQntuples(r) == 1) {
        cJSON *claims = cJSON_Parse(PQgetvalue(r, 0, 0));
        char *end = NULL;
        long long exp = strtoll(PQgetvalue(r, 0, 1), &end, 10);
        if (claims && end && *end == '\0' && exp > 0) {
            sj->ident = mg_auth_identity_from_claims(claims, &cfg->oidc, "session");
            if (sj->ident) {
                sj->ident->exp = exp;
                int64_t until = mg_auth_wall_s() + SESSION_RECHECK_S;
                mg_auth_cache_put(g.sessions, sj->hash, sj->ident, until < exp ? until : exp);
            }
        }
        cJSON_Delete(claims);
    }
    PQclear(r);
}

/* A session cookie that names no live session. */
static void session_invalid(mg_req *req, sess_use use)
{
    if (use == USE_STAGE && mg_auth_sso_wants_redirect(req))
        redirect_login(req, true);
    else
        respond_401(req, true);
}

static void lookup_done(mg_job *j, mg_req *req)
{
    sess_job *sj = (sess_job *)j;
    if (sj->db_failed) {
        mg_req_respond_error(req, 503, "server_error", "credential_store_unavailable",
                             "sessions cannot be checked right now; try again shortly", 2);
        return;
    }
    if (sj->ident == NULL) {
        session_invalid(req, sj->use);
        return;
    }
    if (mg_auth_identity_apply(req, sj->ident) != MG_OK) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return;
    }
    mg_pipeline_resume(req);
}

/* The session cookie's hash, or false when there is none (or it is not
 * shaped like one of ours). *present tells the two apart. */
static bool session_hash(const mg_req *req, uint8_t h[32], bool *present)
{
    *present = false;
    const mg_http_header *ch = mg_http_header_get(req->http, "cookie");
    mg_str v;
    if (ch == NULL || !mg_auth_cookie_get(ch->value, MG_SSO_COOKIE, &v))
        return false;
    *present = true;
    if (!session_id_ok(v))
        return false;
    mg_auth_sha256(v.p, v.n, h);
    return true;
}

/* Resolves the session for use; returns the stage result. */
static mg_stage_rc session_resolve(mg_req *req, sess_use use, const uint8_t h[32])
{
    mg_auth_identity *id = g.sessions ? mg_auth_cache_get(g.sessions, h, mg_auth_wall_s()) : NULL;
    if (id) {
        mg_stage_rc rc = MG_STAGE_NEXT;
        if (mg_auth_identity_apply(req, id) != MG_OK) {
            mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
            rc = MG_STAGE_RESPONDED;
        }
        mg_auth_identity_unref(id);
        return rc;
    }
    if (req->snap->cfg->database_url == NULL || g.sessions == NULL) {
        session_invalid(req, use);
        return MG_STAGE_RESPONDED;
    }
    sess_job *sj = calloc(1, sizeof(*sj));
    if (sj == NULL) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    mg_job_init(&sj->job, req, req->snap);
    sj->job.run = lookup_run;
    sj->job.done = lookup_done;
    sj->job.destroy = sess_destroy;
    sj->use = use;
    memcpy(sj->hash, h, 32);
    if (mg_job_attach(&sj->job, req) != MG_OK) {
        mg_job_release(&sj->job);
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    if (mg_job_pool_submit(mg_auth_db_pool(), &sj->job) != MG_OK) {
        mg_job_release(&sj->job);
        mg_req_respond_error(req, 503, "server_error", "overloaded",
                             "too many session lookups in flight; try again shortly", 1);
        return MG_STAGE_RESPONDED;
    }
    return MG_STAGE_PARKED;
}

bool mg_auth_sso_session_stage(mg_req *req, mg_stage_rc *rc)
{
    uint8_t h[32];
    bool present;
    if (!session_hash(req, h, &present)) {
        if (!present)
            return false;
        session_invalid(req, USE_STAGE);
        *rc = MG_STAGE_RESPONDED;
        return true;
    }
    *rc = session_resolve(req, USE_STAGE, h);
    return true;
}

/* ------------------------------------------------------------ logout */

static void revoke_run(mg_job *j)
{
    sess_job *sj = (sess_job *)j;
    char hh[65];
    hex32(sj->hash, hh);
    const char *p[] = {hh};
    PGresult *r = db_query(j->snap->cfg->database_url,
                           "UPDATE auth_sessions SET revoked_at = now() WHERE id_hash = $1 AND revoked_at IS NULL",
                           1, p);
    sj->db_failed = r == NULL;
    PQclear(r);
    /* Another request may have cached it meanwhile. */
    mg_auth_cache_del(g.sessions, sj->hash);
}

static void logout_answer(mg_req *req, const char *end_session)
{
    mg_buf h = {0};
    mg_buf_append_str(&h, "Location: ");
    mg_buf_append_str(&h, end_session && end_session[0] ? end_session : "/");
    mg_buf_append_str(&h, "\r\n");
    mg_buf_append_str(&h, CLEAR_COOKIE);
    static const char body[] = "signed out\n";
    mg_req_respond(req, 302, "text/plain; charset=utf-8", body, sizeof(body) - 1, cstr(&h));
    mg_buf_free(&h);
}

static void revoke_done(mg_job *j, mg_req *req)
{
    sess_job *sj = (sess_job *)j;
    if (sj->db_failed) {
        /* Never pretend: the session may still be valid elsewhere. */
        error_page(req, 503, "Sign-out could not be completed (database unavailable). Please try again.", CLEAR_COOKIE);
        return;
    }
    logout_answer(req, sj->end_session);
}

/* end_session_endpoint?client_id=..&post_logout_redirect_uri=<public_url>/ */
static void end_session_url(char *out, size_t outsz)
{
    out[0] = '\0';
    sso_ctx *c = ctx_get();
    if (c == NULL)
        return;
    if (c->end_session) {
        mg_buf b = {0};
        mg_buf_append_str(&b, c->end_session);
        mg_buf_append_str(&b, strchr(c->end_session, '?') ? "&client_id=" : "?client_id=");
        url_encode(&b, c->client_id, strlen(c->client_id), false);
        mg_buf_append_str(&b, "&post_logout_redirect_uri=");
        char home[600];
        snprintf(home, sizeof(home), "%s/", c->public_url);
        url_encode(&b, home, strlen(home), false);
        if (b.p && b.len < outsz && strpbrk(cstr(&b), "\r\n") == NULL)
            memcpy(out, b.p, b.len + 1);
        mg_buf_free(&b);
    }
    ctx_unref(c);
}

void mg_auth_sso_logout(mg_req *req)
{
    uint8_t h[32];
    bool present;
    char es[1200];
    end_session_url(es, sizeof(es));
    if (!session_hash(req, h, &present) || g.sessions == NULL) {
        logout_answer(req, es);
        return;
    }
    mg_auth_cache_del(g.sessions, h);
    if (req->snap->cfg->database_url == NULL) {
        logout_answer(req, es);
        return;
    }
    sess_job *sj = calloc(1, sizeof(*sj));
    if (sj == NULL) {
        error_page(req, 503, "The gateway is overloaded. Please try again.", NULL);
        return;
    }
    mg_job_init(&sj->job, req, req->snap);
    sj->job.run = revoke_run;
    sj->job.done = revoke_done;
    sj->job.destroy = sess_destroy;
    sj->use = USE_LOGOUT;
    memcpy(sj->hash, h, 32);
    memcpy(sj->end_session, es, sizeof(es) < sizeof(sj->end_session) ? sizeof(es) : sizeof(sj->end_session));
    submit(req, &sj->job, mg_auth_db_pool());
}
