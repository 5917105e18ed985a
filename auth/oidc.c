/* modelgate — the OpenID provider: discovery document and signing keys.
 *
 * modelgate fetches `<issuer>/.well-known/openid-configuration` itself (at
 * start and on reload; liboauth2 1.4.5.4 has no discovery URL resolver) and
 * the JWKS from its `jwks_uri`. Keys are held as ready EVP_PKEYs so a token
 * with a known `kid` is verified on the worker loop without I/O. A token
 * naming an unknown `kid` (key rotation) triggers at most one JWKS refetch
 * per 30 s for the issuer: a flood of forged kids cannot turn into a flood
 * of requests to the IdP.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth_int.h"
#include "jwt.h"

#include "gateway/log.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define JWKS_REFETCH_MS 30000
#define FETCH_TIMEOUT_MS 5000
#define MAX_META_BYTES (1 << 20)
#define MAX_KEYS 64

typedef struct jwk_entry {
    char kid[128];
    EVP_PKEY *key;
} jwk_entry;

static struct {
    pthread_mutex_t mu;            /* guards everything below */
    pthread_mutex_t fetch_mu;      /* one fetch at a time */
    char *issuer;
    cJSON *discovery;
    char *discovery_raw;
    jwk_entry keys[MAX_KEYS];
    size_t nkeys;
    bool jwks_loaded;
    uint64_t last_fetch_ms;        /* monotonic; 0 = never */
    uint64_t fetches;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .fetch_mu = PTHREAD_MUTEX_INITIALIZER};

/* ------------------------------------------------------------ HTTP */

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    mg_buf *b = arg;
    if (b->len + sz * n > MAX_META_BYTES)
        return 0;
    return mg_buf_append(b, p, sz * n) == MG_OK ? sz * n : 0;
}

int mg_auth_http_get(const char *url, mg_buf *out, long timeout_ms)
{
    CURL *h = curl_easy_init();
    if (h == NULL)
        return 0;
    long status = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "modelgate/" MG_VERSION);
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    return (int)status;
}

static cJSON *get_json(const char *url, char *err, size_t errsz)
{
    mg_buf b = {0};
    int st = mg_auth_http_get(url, &b, FETCH_TIMEOUT_MS);
    cJSON *j = NULL;
    if (st != 200)
        snprintf(err, errsz, "GET %s: %s %d", url, st ? "HTTP status" : "transport failure", st);
    else if ((j = cJSON_ParseWithLength(b.p ? b.p : "", b.len)) == NULL || !cJSON_IsObject(j))
        snprintf(err, errsz, "GET %s: not a JSON object", url);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
    }
    mg_buf_free(&b);
    return j;
}

/* ------------------------------------------------------------ state */

static void keys_clear(void)
{
    for (size_t i = 0; i < g.nkeys; i++)
        EVP_PKEY_free(g.keys[i].key);
    g.nkeys = 0;
    g.jwks_loaded = false;
}

void mg_auth_oidc_reset(void)
{
    pthread_mutex_lock(&g.mu);
    keys_clear();
    cJSON_Delete(g.discovery);
    g.discovery = NULL;
    free(g.discovery_raw);
    g.discovery_raw = NULL;
    free(g.issuer);
    g.issuer = NULL;
    g.last_fetch_ms = 0;
    pthread_mutex_unlock(&g.mu);
}

static char *issuer_copy(void)
{
    pthread_mutex_lock(&g.mu);
    char *s = g.issuer ? strdup(g.issuer) : NULL;
    pthread_mutex_unlock(&g.mu);
    return s;
}

/* Fetches discovery (when missing or forced) and the JWKS; installs both.
 * Caller holds fetch_mu. */
static mg_rc fetch_all(bool refetch_discovery, char *err, size_t errsz)
{
    char *issuer = issuer_copy();
    if (issuer == NULL) {
        snprintf(err, errsz, "no OIDC issuer configured");
        return MG_ERR;
    }
    pthread_mutex_lock(&g.mu);
    g.last_fetch_ms = mg_now_ms();
    g.fetches++;
    char *jwks_uri = NULL;
    if (!refetch_discovery && g.discovery) {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(g.discovery, "jwks_uri");
        jwks_uri = cJSON_IsString(u) ? strdup(u->valuestring) : NULL;
    }
    pthread_mutex_unlock(&g.mu);

    cJSON *disc = NULL;
    mg_rc rc = MG_ERR;
    if (jwks_uri == NULL) {
        char url[1024];
        size_t il = strlen(issuer);
        snprintf(url, sizeof(url), "%.*s/.well-known/openid-configuration",
                 (int)(il && issuer[il - 1] == '/' ? il - 1 : il), issuer);
        if ((disc = get_json(url, err, errsz)) == NULL)
            goto out;
        const cJSON *iss = cJSON_GetObjectItemCaseSensitive(disc, "issuer");
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(disc, "jwks_uri");
        /* OpenID Discovery 4.3: the document must name exactly our issuer. */
        if (!cJSON_IsString(iss) || strcmp(iss->valuestring, issuer) != 0) {
            snprintf(err, errsz, "discovery document issuer does not match %s", issuer);
            goto out;
        }
        if (!cJSON_IsString(u)) {
            snprintf(err, errsz, "discovery document has no jwks_uri");
            goto out;
        }
        jwks_uri = strdup(u->valuestring);
    }
    cJSON *jwks = jwks_uri ? get_json(jwks_uri, err, errsz) : NULL;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(jwks, "keys");
    if (!cJSON_IsArray(arr)) {
        if (jwks)
            snprintf(err, errsz, "JWKS has no keys array");
        cJSON_Delete(jwks);
        goto out;
    }
    jwk_entry fresh[MAX_KEYS];
    size_t n = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, arr) {
        if (n == MAX_KEYS)
            break;
        EVP_PKEY *pk = mg_auth_jwk_to_pkey(k);
        if (pk == NULL)
            continue;
        const cJSON *kid = cJSON_GetObjectItemCaseSensitive(k, "kid");
        snprintf(fresh[n].kid, sizeof(fresh[n].kid), "%s", cJSON_IsString(kid) ? kid->valuestring : "");
        fresh[n++].key = pk;
    }
    cJSON_Delete(jwks);
    pthread_mutex_lock(&g.mu);
    keys_clear();
    memcpy(g.keys, fresh, n * sizeof(fresh[0]));
    g.nkeys = n;
    g.jwks_loaded = true;
    if (disc) {
        cJSON_Delete(g.discovery);
        free(g.discovery_raw);
        g.discovery = disc;
        g.discovery_raw = cJSON_PrintUnformatted(disc);
        disc = NULL;
    }
    pthread_mutex_unlock(&g.mu);
    rc = MG_OK;
out:
    cJSON_Delete(disc);
    free(jwks_uri);
    free(issuer);
    return rc;
}

mg_rc mg_auth_oidc_load(const mg_config *cfg, mg_buf *errs)
{
    if (!cfg->oidc.present)
        return MG_OK;
    pthread_mutex_lock(&g.fetch_mu);
    mg_auth_oidc_ensure_issuer(cfg->oidc.issuer);
    char err[512] = "";
    mg_rc rc = fetch_all(true, err, sizeof(err));
    pthread_mutex_unlock(&g.fetch_mu);
    if (rc != MG_OK) {
        mg_log_warn("auth: OIDC provider metadata not loaded: %s", err);
        if (errs)
            mg_buf_printf(errs, "oidc: %s\n", err);
    }
    return rc;
}

void mg_auth_oidc_ensure_issuer(const char *issuer);

static mg_auth_key_rc lookup_locked(const char *kid, EVP_PKEY **key)
{
    if (!g.jwks_loaded)
        return MG_KEY_UNAVAILABLE;
    for (size_t i = 0; i < g.nkeys; i++) {
        /* Without a kid the first key is tried; the type check in verify
         * still ties it to the algorithm. */
        if (kid[0] == '\0' || strcmp(g.keys[i].kid, kid) == 0) {
            EVP_PKEY_up_ref(g.keys[i].key);
            *key = g.keys[i].key;
            return MG_KEY_FOUND;
        }
    }
    return MG_KEY_UNKNOWN;
}

mg_auth_key_rc mg_auth_oidc_key(const char *kid, int alg, EVP_PKEY **key)
{
    MG_UNUSED(alg);
    pthread_mutex_lock(&g.mu);
    mg_auth_key_rc rc = lookup_locked(kid, key);
    pthread_mutex_unlock(&g.mu);
    return rc;
}

mg_auth_key_rc mg_auth_oidc_key_refresh(const char *kid, int alg, EVP_PKEY **key)
{
    pthread_mutex_lock(&g.fetch_mu);
    /* Someone may have refetched while we waited for the lock. */
    mg_auth_key_rc rc = mg_auth_oidc_key(kid, alg, key);
    if (rc != MG_KEY_FOUND) {
        pthread_mutex_lock(&g.mu);
        bool throttled = g.last_fetch_ms && mg_now_ms() - g.last_fetch_ms < JWKS_REFETCH_MS;
        bool have_disc = g.discovery != NULL;
        pthread_mutex_unlock(&g.mu);
        if (!throttled) {
            char err[512] = "";
            if (fetch_all(!have_disc, err, sizeof(err)) != MG_OK)
                mg_log_warn("auth: JWKS refresh failed: %s", err);
            rc = mg_auth_oidc_key(kid, alg, key);
        }
    }
    pthread_mutex_unlock(&g.fetch_mu);
    return rc;
}

bool mg_auth_oidc_meta(const char *name, char *out, size_t outsz)
{
    pthread_mutex_lock(&g.mu);
    const cJSON *v = g.discovery ? cJSON_GetObjectItemCaseSensitive(g.discovery, name) : NULL;
    bool ok = cJSON_IsString(v) && strlen(v->valuestring) < outsz;
    if (ok)
        memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    pthread_mutex_unlock(&g.mu);
    return ok;
}

char *mg_auth_oidc_discovery_json(void)
{
    pthread_mutex_lock(&g.mu);
    char *s = g.discovery_raw ? strdup(g.discovery_raw) : NULL;
    pthread_mutex_unlock(&g.mu);
    return s;
}

bool mg_auth_idp_ready(void)
{
    pthread_mutex_lock(&g.mu);
    bool ok = g.discovery != NULL && g.jwks_loaded;
    pthread_mutex_unlock(&g.mu);
    return ok;
}

uint64_t mg_auth_oidc_jwks_fetches(void)
{
    pthread_mutex_lock(&g.mu);
    uint64_t n = g.fetches;
    pthread_mutex_unlock(&g.mu);
    return n;
}

void mg_auth_oidc_ensure_issuer(const char *issuer)
{
    pthread_mutex_lock(&g.mu);
    if (g.issuer == NULL || strcmp(g.issuer, issuer) != 0) {
        /* Another issuer (reload): its keys and metadata are not ours. */
        keys_clear();
        cJSON_Delete(g.discovery);
        g.discovery = NULL;
        free(g.discovery_raw);
        g.discovery_raw = NULL;
        g.last_fetch_ms = 0;
        free(g.issuer);
        g.issuer = strdup(issuer);
    }
    pthread_mutex_unlock(&g.mu);
}
