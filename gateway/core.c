/* modelgate — buffers, slices, clocks, constant-time compare, request arenas.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

bool mg_str_ieq(mg_str a, mg_str b)
{
    if (a.n != b.n)
        return false;
    for (size_t i = 0; i < a.n; i++) {
        unsigned char x = (unsigned char)a.p[i], y = (unsigned char)b.p[i];
        if (x >= 'A' && x <= 'Z') x += 32;
        if (y >= 'A' && y <= 'Z') y += 32;
        if (x != y)
            return false;
    }
    return true;
}

bool mg_str_ieq_c(mg_str a, const char *b) { return mg_str_ieq(a, mg_str_c(b)); }

mg_rc mg_buf_reserve(mg_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return MG_OK;
    if (extra > SIZE_MAX / 2 - b->len)
        return MG_ENOMEM;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL)
        return MG_ENOMEM;
    b->p = p;
    b->cap = cap;
    return MG_OK;
}

mg_rc mg_buf_append(mg_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return MG_OK;
    if (mg_buf_reserve(b, n) != MG_OK)
        return MG_ENOMEM;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return MG_OK;
}

mg_rc mg_buf_append_str(mg_buf *b, const char *s) { return mg_buf_append(b, s, strlen(s)); }

mg_rc mg_buf_printf(mg_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || mg_buf_reserve(b, (size_t)n + 1) != MG_OK)
        return MG_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return MG_OK;
}

mg_rc mg_buf_append_json_str(mg_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (mg_buf_reserve(b, n + 2) != MG_OK)
        return MG_ENOMEM;
    b->p[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t elen = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\'; esc[1] = (char)c; elen = 2;
        } else if (c == '\n') {
            esc[0] = '\\'; esc[1] = 'n'; elen = 2;
        } else if (c == '\r') {
            esc[0] = '\\'; esc[1] = 'r'; elen = 2;
        } else if (c == '\t') {
            esc[0] = '\\'; esc[1] = 't'; elen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15]; elen = 6;
        }
        if (elen) {
            if (mg_buf_append(b, esc, elen) != MG_OK)
                return MG_ENOMEM;
        } else if (mg_buf_append(b, &s[i], 1) != MG_OK) {
            return MG_ENOMEM;
        }
    }
    return mg_buf_append(b, "\"", 1);
}

void mg_buf_consume(mg_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

void mg_buf_reset(mg_buf *b) { b->len = 0; }

void mg_buf_free(mg_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

bool mg_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    /* Compare over the expected length (b) whatever a's length is, so the time
     * depends only on the secret's length, never on where a mismatch is. */
    const unsigned char *x = a, *y = b;
    unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < blen; i++)
        diff |= (unsigned char)((i < alen ? x[i] : 0) ^ y[i]);
    return diff == 0;
}

uint64_t mg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t mg_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- arena ---- */

typedef struct mg_pool_block {
    struct mg_pool_block *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
} mg_pool_block;

typedef struct mg_pool_cleanup {
    struct mg_pool_cleanup *next;
    void (*fn)(void *);
    void *arg;
} mg_pool_cleanup;

struct mg_pool {
    mg_pool_block *blocks;
    mg_pool_cleanup *cleanups;
    size_t block_size;
};

mg_pool *mg_pool_new(size_t block_size)
{
    mg_pool *pool = calloc(1, sizeof(*pool));
    if (pool)
        pool->block_size = block_size ? block_size : 4096;
    return pool;
}

void *mg_pool_alloc(mg_pool *pool, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    mg_pool_block *b = pool->blocks;
    if (b == NULL || b->size - b->used < n) {
        size_t size = n > pool->block_size ? n : pool->block_size;
        b = malloc(sizeof(*b) + size);
        if (b == NULL)
            return NULL;
        b->size = size;
        b->used = 0;
        b->next = pool->blocks;
        pool->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void *mg_pool_calloc(mg_pool *pool, size_t n)
{
    void *p = mg_pool_alloc(pool, n);
    if (p)
        memset(p, 0, n);
    return p;
}

char *mg_pool_strndup(mg_pool *pool, const char *s, size_t n)
{
    char *p = mg_pool_alloc(pool, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

mg_rc mg_pool_cleanup_add(mg_pool *pool, void (*fn)(void *), void *arg)
{
    mg_pool_cleanup *c = mg_pool_alloc(pool, sizeof(*c));
    if (c == NULL)
        return MG_ENOMEM;
    c->fn = fn;
    c->arg = arg;
    c->next = pool->cleanups;
    pool->cleanups = c;
    return MG_OK;
}

void mg_pool_free(mg_pool *pool)
{
    if (pool == NULL)
        return;
    for (mg_pool_cleanup *c = pool->cleanups; c; c = c->next)
        c->fn(c->arg);
    mg_pool_block *b = pool->blocks;
    while (b) {
        mg_pool_block *next = b->next;
        free(b);
        b = next;
    }
    free(pool);
}
