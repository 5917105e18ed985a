/* Unit tests: gateway/core.c (buffers, slices, constant-time compare, arenas).
 * SPDX-License-Identifier: Apache-2.0
 */
#include "core.h"
#include "t.h"

T_TEST(buf_append_and_consume)
{
    mg_buf b = {0};
    T_EQ_INT(mg_buf_append_str(&b, "hello "), MG_OK);
    T_EQ_INT(mg_buf_printf(&b, "%s %d", "world", 42), MG_OK);
    T_EQ_INT(b.len, 14);
    T_CHECK(memcmp(b.p, "hello world 42", 14) == 0);
    mg_buf_consume(&b, 6);
    T_EQ_INT(b.len, 8);
    T_CHECK(memcmp(b.p, "world 42", 8) == 0);
    mg_buf_consume(&b, 100);
    T_EQ_INT(b.len, 0);
    mg_buf_free(&b);
    T_CHECK(b.p == NULL && b.cap == 0);
}

T_TEST(buf_grows_past_initial_capacity)
{
    mg_buf b = {0};
    for (int i = 0; i < 10000; i++)
        T_EQ_INT(mg_buf_append(&b, "x", 1), MG_OK);
    T_EQ_INT(b.len, 10000);
    T_CHECK(b.cap >= 10000);
    mg_buf_free(&b);
}

T_TEST(json_string_escaping)
{
    mg_buf b = {0};
    const char in[] = "a\"b\\c\nd\x01" "e\x7f";
    mg_buf_append_json_str(&b, in, sizeof(in) - 1);
    mg_buf_append(&b, "", 1);
    T_EQ_STR(b.p, "\"a\\\"b\\\\c\\nd\\u0001e\\u007f\"");
    mg_buf_free(&b);
}

T_TEST(str_case_insensitive)
{
    T_CHECK(mg_str_ieq(MG_STR_LIT("Content-Type"), MG_STR_LIT("content-type")));
    T_CHECK(!mg_str_ieq(MG_STR_LIT("Content-Type"), MG_STR_LIT("content-typ")));
    T_CHECK(mg_str_ieq_c(MG_STR_LIT("X-API-KEY"), "x-api-key"));
    T_CHECK(mg_str_eq(MG_STR_LIT("a"), MG_STR_LIT("a")));
    T_CHECK(!mg_str_eq(MG_STR_LIT("a"), MG_STR_LIT("b")));
}

T_TEST(constant_time_equal)
{
    T_CHECK(mg_ct_equal("secret-key", 10, "secret-key", 10));
    T_CHECK(!mg_ct_equal("secret-kez", 10, "secret-key", 10));
    T_CHECK(!mg_ct_equal("secret", 6, "secret-key", 10));
    T_CHECK(!mg_ct_equal("secret-key-longer", 17, "secret-key", 10));
    T_CHECK(!mg_ct_equal("", 0, "x", 1));
}

static int cleanup_order[4];
static int cleanup_n;
static void record_cleanup(void *arg) { cleanup_order[cleanup_n++] = *(int *)arg; }

T_TEST(pool_alloc_alignment_and_cleanups)
{
    static int one = 1, two = 2;
    mg_pool *pool = mg_pool_new(64);
    T_CHECK(pool != NULL);
    for (int i = 0; i < 100; i++) {
        void *p = mg_pool_alloc(pool, (size_t)(i % 7) + 1);
        T_CHECK(p != NULL && ((uintptr_t)p & 15) == 0);
    }
    char *big = mg_pool_alloc(pool, 100000);   /* bigger than a block */
    T_CHECK(big != NULL);
    memset(big, 1, 100000);
    char *s = mg_pool_strndup(pool, "abcdef", 3);
    T_EQ_STR(s, "abc");
    unsigned char *z = mg_pool_calloc(pool, 32);
    T_CHECK(z[0] == 0 && z[31] == 0);
    cleanup_n = 0;
    mg_pool_cleanup_add(pool, record_cleanup, &one);
    mg_pool_cleanup_add(pool, record_cleanup, &two);
    mg_pool_free(pool);
    T_EQ_INT(cleanup_n, 2);
    T_EQ_INT(cleanup_order[0], 2);   /* reverse order of registration */
    T_EQ_INT(cleanup_order[1], 1);
}

T_MAIN("core",
       T_CASE(buf_append_and_consume), T_CASE(buf_grows_past_initial_capacity),
       T_CASE(json_string_escaping), T_CASE(str_case_insensitive),
       T_CASE(constant_time_equal), T_CASE(pool_alloc_alignment_and_cleanups))
