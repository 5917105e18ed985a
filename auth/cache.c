/* modelgate — auth caches: digest-keyed, refcounted values, absolute expiry.
 *
 * Requests that present the same token or key again (the common case: an SDK
 * reuses one credential) are answered from here without a signature check, a
 * database query or a pool round trip. Striped mutexes keep worker threads
 * from contending on one lock.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth_int.h"

#include <pthread.h>
#include <stdlib.h>

#define STRIPES 64
#define BUCKETS_PER_STRIPE 256

typedef struct centry {
    struct centry *next;
    uint8_t key[32];
    void *val;
    int64_t expires_at;
    uint64_t seq;                  /* insertion order, for eviction */
} centry;

typedef struct stripe {
    pthread_mutex_t mu;
    centry *b[BUCKETS_PER_STRIPE];
    size_t n;
    uint64_t seq;
} stripe;

struct mg_auth_cache {
    stripe s[STRIPES];
    size_t max_per_stripe;
    const mg_auth_cache_ops *ops;
};

mg_auth_cache *mg_auth_cache_new(size_t max, const mg_auth_cache_ops *ops)
{
    mg_auth_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->s[i].mu, NULL);
    c->max_per_stripe = max / STRIPES ? max / STRIPES : 1;
    c->ops = ops;
    return c;
}

/* Keys are already uniform digests: their bytes pick stripe and bucket. */
static stripe *stripe_of(mg_auth_cache *c, const uint8_t *key) { return &c->s[key[0] % STRIPES]; }
static size_t bucket_of(const uint8_t *key) { return ((size_t)key[1] << 8 | key[2]) % BUCKETS_PER_STRIPE; }

static void drop(mg_auth_cache *c, stripe *s, centry **pp)
{
    centry *e = *pp;
    *pp = e->next;
    s->n--;
    c->ops->unref(e->val);
    free(e);
}

void *mg_auth_cache_get(mg_auth_cache *c, const uint8_t key[32], int64_t now)
{
    stripe *s = stripe_of(c, key);
    void *v = NULL;
    pthread_mutex_lock(&s->mu);
    for (centry **pp = &s->b[bucket_of(key)]; *pp; pp = &(*pp)->next) {
        if (memcmp((*pp)->key, key, 32) != 0)
            continue;
        if ((*pp)->expires_at > now)
            v = c->ops->ref((*pp)->val);
        else
            drop(c, s, pp);
        break;
    }
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* Makes room in a full stripe: every expired entry goes; if none had, the
 * oldest entry does. */
static void evict(mg_auth_cache *c, stripe *s, int64_t now)
{
    centry **oldest = NULL;
    for (size_t i = 0; i < BUCKETS_PER_STRIPE; i++) {
        for (centry **pp = &s->b[i]; *pp;) {
            if ((*pp)->expires_at <= now) {
                drop(c, s, pp);
                continue;
            }
            if (oldest == NULL || (*pp)->seq < (*oldest)->seq)
                oldest = pp;
            pp = &(*pp)->next;
        }
    }
    if (s->n >= c->max_per_stripe && oldest)
        drop(c, s, oldest);
}

void mg_auth_cache_put(mg_auth_cache *c, const uint8_t key[32], void *v, int64_t expires_at)
{
    stripe *s = stripe_of(c, key);
    centry *ne = malloc(sizeof(*ne));
    if (ne == NULL)
        return;   /* a cache that cannot grow just misses */
    memcpy(ne->key, key, 32);
    ne->val = c->ops->ref(v);
    ne->expires_at = expires_at;
    pthread_mutex_lock(&s->mu);
    size_t b = bucket_of(key);
    for (centry **pp = &s->b[b]; *pp; pp = &(*pp)->next) {
        if (memcmp((*pp)->key, key, 32) == 0) {
            drop(c, s, pp);
            break;
        }
    }
    if (s->n >= c->max_per_stripe)
        evict(c, s, mg_auth_wall_s());
    ne->seq = ++s->seq;
    ne->next = s->b[b];
    s->b[b] = ne;
    s->n++;
    pthread_mutex_unlock(&s->mu);
}

void mg_auth_cache_del(mg_auth_cache *c, const uint8_t key[32])
{
    stripe *s = stripe_of(c, key);
    pthread_mutex_lock(&s->mu);
    for (centry **pp = &s->b[bucket_of(key)]; *pp; pp = &(*pp)->next) {
        if (memcmp((*pp)->key, key, 32) == 0) {
            drop(c, s, pp);
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

void mg_auth_cache_clear(mg_auth_cache *c)
{
    for (int i = 0; i < STRIPES; i++) {
        stripe *s = &c->s[i];
        pthread_mutex_lock(&s->mu);
        for (size_t b = 0; b < BUCKETS_PER_STRIPE; b++)
            while (s->b[b])
                drop(c, s, &s->b[b]);
        pthread_mutex_unlock(&s->mu);
    }
}

size_t mg_auth_cache_size(mg_auth_cache *c)
{
    size_t n = 0;
    for (int i = 0; i < STRIPES; i++) {
        pthread_mutex_lock(&c->s[i].mu);
        n += c->s[i].n;
        pthread_mutex_unlock(&c->s[i].mu);
    }
    return n;
}

void mg_auth_cache_free(mg_auth_cache *c)
{
    if (c == NULL)
        return;
    mg_auth_cache_clear(c);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->s[i].mu);
    free(c);
}
