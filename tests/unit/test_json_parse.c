/* modelgate — unit tests: gateway/json_parse.c (mg_json_parse).
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"

#include "json.h"

#include <math.h>

static cJSON *parse(const char *s, const char **why) { return mg_json_parse(s, strlen(s), why); }

/* Parses s with both parsers and compares the printed trees. */
static int same_as_cjson(const char *s)
{
    cJSON *a = parse(s, NULL), *b = cJSON_Parse(s);
    char *pa = a ? cJSON_PrintUnformatted(a) : NULL, *pb = b ? cJSON_PrintUnformatted(b) : NULL;
    int ok = pa && pb && strcmp(pa, pb) == 0;
    cJSON_free(pa);
    cJSON_free(pb);
    cJSON_Delete(a);
    cJSON_Delete(b);
    return ok;
}

T_TEST(test_values)
{
    cJSON *j = parse(" {\"s\":\"x\\u00e9\\ud83d\\ude00\\n\",\"i\":42,\"f\":-2.5e-3,\"t\":true,\"n\":null,\"a\":[1,2,3]} ",
                     NULL);
    T_CHECK(cJSON_IsObject(j));
    T_EQ_STR(cJSON_GetObjectItemCaseSensitive(j, "s")->valuestring, "x\xc3\xa9\xf0\x9f\x98\x80\n");
    T_EQ_INT(cJSON_GetObjectItemCaseSensitive(j, "i")->valueint, 42);
    T_CHECK(cJSON_GetObjectItemCaseSensitive(j, "f")->valuedouble == -2.5e-3);
    T_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "t")));
    T_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "n")));
    cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "a");
    T_EQ_INT(cJSON_GetArraySize(a), 3);
    /* cJSON's append relies on child->prev being the last element. */
    T_CHECK(cJSON_AddItemToArray(a, cJSON_CreateNumber(4)));
    T_EQ_INT(cJSON_GetArrayItem(a, 3)->valueint, 4);
    char *p = cJSON_PrintUnformatted(a);
    T_EQ_STR(p, "[1,2,3,4]");
    cJSON_free(p);
    cJSON_Delete(j);
}

T_TEST(test_numbers_match_strtod)
{
    static const char *nums[] = {"0", "-0", "0.1", "0.001", "123456789", "1e5", "1E-5", "2.5e+10",
                                 "9007199254740993", "12345678901234567890", "1.7976931348623157e308",
                                 "4.9e-324", "3.14159265358979323846", "100000000000000000000000", "-7.25"};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        cJSON *j = parse(nums[i], NULL);
        T_CHECK(cJSON_IsNumber(j));
        if (j)
            T_CHECK(j->valuedouble == strtod(nums[i], NULL));
        T_CHECK(same_as_cjson(nums[i]));
        cJSON_Delete(j);
    }
    cJSON *big = parse("[3000000000,-3000000000,2.9]", NULL);
    T_EQ_INT(cJSON_GetArrayItem(big, 0)->valueint, 2147483647);
    T_EQ_INT(cJSON_GetArrayItem(big, 1)->valueint, -2147483647 - 1);
    T_EQ_INT(cJSON_GetArrayItem(big, 2)->valueint, 2);
    cJSON_Delete(big);
    cJSON *neg0 = parse("-0", NULL);
    T_CHECK(neg0 && signbit(neg0->valuedouble));
    cJSON_Delete(neg0);
}

T_TEST(test_refusals)
{
    static const char *bad[] = {"", " ", "{", "[1,]", "{\"a\":1,}", "[01]", "[1.]", "[-]", "[.5]", "[+1]",
                                "{\"a\" 1}", "{a:1}", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"",
                                "\"\\udc00\"", "\"\\ud800\\u0041\"", "tru", "nul", "[1] x", "{\"a\":1}{}",
                                "[1e]", "\"\\", "[\f1]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        cJSON *j = parse(bad[i], &why);
        if (j)
            fprintf(stderr, "  accepted: %s\n", bad[i]);
        T_CHECK(j == NULL);
        T_CHECK(why != NULL);
        cJSON_Delete(j);
    }
}

T_TEST(test_nul_escape_refused)
{
    /* cJSON would end the string at the NUL: a filter reading the tree
     * would see "hi" while the upstream reads the rest of the bytes. */
    const char *why = NULL;
    cJSON *j = parse("{\"content\":\"hi\\u0000 my SSN is 123-45-6789\"}", &why);
    T_CHECK(j == NULL);
    T_CHECK(why && strstr(why, "u0000") != NULL);
    /* The same with a raw NUL byte inside the string. */
    static const char raw[] = "{\"content\":\"hi\0 my SSN is 123-45-6789\"}";
    T_CHECK(mg_json_parse(raw, sizeof raw - 1, &why) == NULL);
    T_CHECK(why && strstr(why, "NUL") != NULL);
    /* Upstream data keeps cJSON's reading: the string ends there. */
    cJSON *u = mg_json_parse_upstream("[\"a\\u0000b\"]", 12);
    T_CHECK(u && strcmp(cJSON_GetArrayItem(u, 0)->valuestring, "a") == 0);
    cJSON_Delete(u);
}

T_TEST(test_depth_limit)
{
    char deep[2101];
    for (int i = 0; i < 1050; i++) { deep[i] = '['; deep[2099 - i] = ']'; }
    deep[2100] = '\0';
    const char *why = NULL;
    T_CHECK(parse(deep, &why) == NULL);
    T_CHECK(why && strstr(why, "deep") != NULL);
    char ok[2001];
    for (int i = 0; i < 1000; i++) { ok[i] = '['; ok[1999 - i] = ']'; }
    ok[2000] = '\0';
    cJSON *j = parse(ok, NULL);
    T_CHECK(j != NULL);
    cJSON_Delete(j);
}

T_TEST(test_same_tree_as_cjson)
{
    T_CHECK(same_as_cjson("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\\"b\\\\c\\/d\\t\"}],"
                          "\"n\":1,\"x\":[true,false,null,{},[]],\"u\":\"\\u20ac\"}"));
    T_CHECK(same_as_cjson("[\"raw\ttab\"]"));   /* raw control bytes pass, as with cJSON */
}

typedef struct { char seen[256]; size_t len; int calls; int stop_at; } collect;

static bool on_string(void *arg, const char *s, size_t n)
{
    collect *c = arg;
    c->calls++;
    if (c->len + n + 1 < sizeof c->seen) {
        memcpy(c->seen + c->len, s, n);
        c->len += n;
        c->seen[c->len++] = '|';
        c->seen[c->len] = '\0';
    }
    return c->calls != c->stop_at;
}

T_TEST(test_each_string)
{
    mg_buf scratch = {0};
    collect c = {0};
    const char *doc = "{\"id\":\"x1\",\"choices\":[{\"message\":{\"content\":\"a\\nb \\u00e9\"}}],\"n\":[1,true,null]}";
    T_CHECK(mg_json_each_string(doc, strlen(doc), &scratch, on_string, &c));
    T_EQ_STR(c.seen, "x1|a\nb \xc3\xa9|");   /* values only, decoded, in order */
    /* it accepts exactly what mg_json_parse accepts */
    static const char *bad[] = {"[01]", "{\"a\":1} x", "\"\\u0000\"", "[1,]", "{\"a\\x\":1}", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        collect z = {0};
        T_CHECK(!mg_json_each_string(bad[i], strlen(bad[i]), &scratch, on_string, &z));
    }
    collect stop = {.stop_at = 1};
    T_CHECK(!mg_json_each_string(doc, strlen(doc), &scratch, on_string, &stop));
    T_EQ_INT(stop.calls, 1);
    mg_buf_free(&scratch);
}

T_MAIN("json_parse", T_CASE(test_each_string), T_CASE(test_values), T_CASE(test_numbers_match_strtod), T_CASE(test_refusals),
       T_CASE(test_nul_escape_refused), T_CASE(test_depth_limit), T_CASE(test_same_tree_as_cjson))
