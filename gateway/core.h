/* modelgate — common types every module uses.
 *
 * One result convention (curl's CURLcode + `goto out`): functions that can
 * fail return mg_rc; MG_OK is 0, failures are negative, MG_AGAIN asks the
 * caller to come back when more data or an async answer is there.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_CORE_H
#define MG_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MG_VERSION "0.1.0"

typedef enum mg_rc {
    MG_OK = 0,
    MG_AGAIN = 1,    /* not done yet: more input or an async answer needed */
    MG_DONE = 2,     /* finished (e.g. a stage wrote the response itself) */
    MG_ERR = -1,     /* generic failure, details logged or in an errbuf */
    MG_ENOMEM = -2,  /* allocation failed */
} mg_rc;

/* A slice of bytes owned by someone else; never NUL-terminated by contract. */
typedef struct mg_str {
    const char *p;
    size_t n;
} mg_str;

#define MG_STR_NULL ((mg_str){NULL, 0})
#define MG_STR_LIT(s) ((mg_str){(s), sizeof(s) - 1})

static inline mg_str mg_str_make(const char *p, size_t n) { return (mg_str){p, n}; }
static inline mg_str mg_str_c(const char *s) { return (mg_str){s, s ? strlen(s) : 0}; }
static inline bool mg_str_eq(mg_str a, mg_str b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}
bool mg_str_ieq(mg_str a, mg_str b);          /* ASCII case-insensitive */
bool mg_str_ieq_c(mg_str a, const char *b);

#define MG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MG_UNUSED(x) ((void)(x))

/* Growable byte buffer. Owns its storage; free with mg_buf_free. */
typedef struct mg_buf {
    char *p;
    size_t len;
    size_t cap;
} mg_buf;

mg_rc mg_buf_reserve(mg_buf *b, size_t extra);
mg_rc mg_buf_append(mg_buf *b, const void *p, size_t n);
mg_rc mg_buf_append_str(mg_buf *b, const char *s);
mg_rc mg_buf_printf(mg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included, escaping as needed. */
mg_rc mg_buf_append_json_str(mg_buf *b, const char *s, size_t n);
void mg_buf_consume(mg_buf *b, size_t n);     /* drop n bytes from the front */
void mg_buf_reset(mg_buf *b);
void mg_buf_free(mg_buf *b);

/* Constant-time comparison of two byte strings; the length difference is
 * folded in without an early exit. */
bool mg_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Monotonic clock in milliseconds / microseconds. */
uint64_t mg_now_ms(void);
uint64_t mg_now_us(void);

/* Per-request arena (nginx pools, h2o's mem pool): allocations live until
 * mg_pool_free; cleanup callbacks run in reverse order of registration. */
typedef struct mg_pool mg_pool;
mg_pool *mg_pool_new(size_t block_size);
void *mg_pool_alloc(mg_pool *pool, size_t n);          /* 16-byte aligned, NULL on OOM */
void *mg_pool_calloc(mg_pool *pool, size_t n);
char *mg_pool_strndup(mg_pool *pool, const char *s, size_t n);
mg_rc mg_pool_cleanup_add(mg_pool *pool, void (*fn)(void *), void *arg);
void mg_pool_free(mg_pool *pool);

#endif
