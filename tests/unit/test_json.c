/* Unit tests: gateway/json.c (UTF-8 validation, duplicate member detection).
 * SPDX-License-Identifier: Apache-2.0
 */
#include "json.h"
#include "t.h"

#include <stdlib.h>
#include <string.h>

#define U8(s) mg_utf8_valid((s), sizeof(s) - 1)

T_TEST(utf8_accepts_valid_text)
{
    T_CHECK(U8("plain ascii"));
    T_CHECK(U8("caf\xc3\xa9"));                 /* é */
    T_CHECK(U8("\xe2\x82\xac"));                 /* € */
    T_CHECK(U8("\xf0\x9f\x98\x80"));             /* U+1F600 */
    T_CHECK(U8("\xf4\x8f\xbf\xbf"));             /* U+10FFFF */
    T_CHECK(mg_utf8_valid("", 0));
}

T_TEST(utf8_rejects_malformed_text)
{
    T_CHECK(!U8("\xc0\xaf"));                    /* overlong '/' */
    T_CHECK(!U8("\xe0\x80\xaf"));                /* overlong, 3 bytes */
    T_CHECK(!U8("\xed\xa0\x80"));                /* surrogate U+D800 */
    T_CHECK(!U8("\xf4\x90\x80\x80"));            /* above U+10FFFF */
    T_CHECK(!U8("\xc3"));                        /* truncated */
    T_CHECK(!U8("\x80"));                        /* lone continuation */
    T_CHECK(!U8("\xff"));
    T_CHECK(!U8("ok\xe2\x82"));
}

static const char *dup_of(const char *json)
{
    static char name[64];
    cJSON *j = cJSON_Parse(json);
    const char *d = mg_json_find_duplicate(j);
    snprintf(name, sizeof(name), "%s", d ? d : "");
    cJSON_Delete(j);
    return name;
}

T_TEST(duplicate_members_found_at_any_depth)
{
    T_EQ_STR(dup_of("{\"model\":\"a\",\"model\":\"b\"}"), "model");
    T_EQ_STR(dup_of("{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"content\":\"y\"}]}"), "content");
    T_EQ_STR(dup_of("{\"a\":{\"b\":{\"c\":1,\"c\":2}}}"), "c");
    T_EQ_STR(dup_of("{\"a\":1,\"b\":{\"a\":2},\"c\":[{\"a\":3},{\"a\":4}]}"), "");
    T_EQ_STR(dup_of("[1,1,1]"), "");
}

/* The ASCII fast paths (32 and 8 bytes per step) must hand every non-ASCII
 * byte, wherever it falls, to the full check: a stray continuation byte or
 * a cut sequence at each position of texts of every length up to 100, in
 * heap blocks of exactly that length (so ASan sees any read past the end). */
T_TEST(utf8_every_position_and_length)
{
    static const struct { const char *seq; size_t n; bool ok; } cases[] = {
        { "\xc3\xa9", 2, true }, { "\xe2\x82\xac", 3, true }, { "\xf0\x9f\x99\x82", 4, true },
        { "\x80", 1, false }, { "\xff", 1, false }, { "\xc3", 1, false }, { "\xe2\x82", 2, false },
        { "\xed\xa0\x80", 3, false },   /* surrogate */
        { "\xc0\xaf", 2, false },         /* overlong */
    };
    int bad = 0;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
        for (size_t len = cases[c].n; len <= 100; len++)
            for (size_t at = 0; at + cases[c].n <= len; at++) {
                char *t = malloc(len);
                T_CHECK(t != NULL);
                if (t == NULL)
                    return;
                memset(t, 'a', len);
                memcpy(t + at, cases[c].seq, cases[c].n);
                if (mg_utf8_valid(t, len) != cases[c].ok)
                    bad++;
                free(t);
            }
    T_EQ_INT(bad, 0);
}

T_MAIN("json", T_CASE(utf8_accepts_valid_text), T_CASE(utf8_rejects_malformed_text),
       T_CASE(utf8_every_position_and_length), T_CASE(duplicate_members_found_at_any_depth))
