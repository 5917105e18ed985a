/* modelgate — fuzz target: the request body checks (gateway/json.c).
 *
 * The input is a request body, checked the way the router's parse stage
 * does (gateway/router.c parse_body, which answers through the connection
 * and so cannot be called here): valid UTF-8, exactly one JSON document
 * with only whitespace after it, an object, no duplicate member name
 * anywhere, "model" a non-empty string, "stream" a boolean or null.
 *
 * Invariants (abort() on violation):
 *  - mg_utf8_valid agrees with a byte-by-byte reference validator written
 *    here, on the whole input and on slices starting at offsets 1..7 (the
 *    8-byte ASCII fast path sees other alignments) and ending early;
 *  - mg_json_find_duplicate agrees with a sort-based reference check on
 *    every object of the tree, and a name it reports really occurs twice
 *    in one object;
 *  - in an accepted body every member name and string value is valid UTF-8
 *    (policy and adapters read them as text), and printing the tree and
 *    parsing it again passes the same checks.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "json.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reference UTF-8 validator (RFC 3629 table 3-7, one byte at a time): the
 * allowed range of the second byte depends on the lead byte, which rules
 * out overlong forms, surrogates and code points above U+10FFFF. */
static bool ref_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c <= 0x7f) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c == 0xe0) {
            need = 2, lo = 0xa0;
        } else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) {
            need = 2;
        } else if (c == 0xed) {
            need = 2, hi = 0x9f;
        } else if (c == 0xf0) {
            need = 3, lo = 0x90;
        } else if (c >= 0xf1 && c <= 0xf3) {
            need = 3;
        } else if (c == 0xf4) {
            need = 3, hi = 0x8f;
        } else {
            return false;   /* 0x80..0xc1, 0xf5..0xff never lead */
        }
        if (n - i - 1 < need)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return false;
        i += need + 1;
    }
    return true;
}

static void check_utf8(const uint8_t *data, size_t size)
{
    if (mg_utf8_valid((const char *)data, size) != ref_utf8_valid(data, size))
        abort();
    for (size_t off = 1; off < 8 && off <= size; off++) {
        const uint8_t *p = data + off;
        size_t n = size - off;
        if (mg_utf8_valid((const char *)p, n) != ref_utf8_valid(p, n))
            abort();
        if (mg_utf8_valid((const char *)data, n) != ref_utf8_valid(data, n))
            abort();
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* True if some object in the tree has two members of one name (found by
 * sorting the names, unlike the pairwise scan under test). */
static bool ref_has_duplicate(const cJSON *node)
{
    if (node == NULL)
        return false;
    if (cJSON_IsObject(node)) {
        size_t n = 0;
        for (const cJSON *c = node->child; c; c = c->next)
            n++;
        if (n > 1) {
            const char **names = malloc(n * sizeof(*names));
            if (names == NULL)
                abort();
            size_t k = 0;
            for (const cJSON *c = node->child; c; c = c->next)
                names[k++] = c->string ? c->string : "";
            qsort(names, n, sizeof(*names), cmp_str);
            bool dup = false;
            for (size_t i = 1; i < n && !dup; i++)
                dup = strcmp(names[i - 1], names[i]) == 0;
            free(names);
            if (dup)
                return true;
        }
    }
    for (const cJSON *c = node->child; c; c = c->next)
        if (ref_has_duplicate(c))
            return true;
    return false;
}

/* Whether some object in the tree has name twice. */
static bool name_twice(const cJSON *node, const char *name)
{
    if (node == NULL)
        return false;
    if (cJSON_IsObject(node)) {
        int seen = 0;
        for (const cJSON *c = node->child; c; c = c->next)
            if (c->string && strcmp(c->string, name) == 0 && ++seen == 2)
                return true;
    }
    for (const cJSON *c = node->child; c; c = c->next)
        if (name_twice(c, name))
            return true;
    return false;
}

static void check_duplicates(const cJSON *root, const char *dup)
{
    if ((dup != NULL) != ref_has_duplicate(root))
        abort();
    if (dup && !name_twice(root, dup))
        abort();
}

/* Every key and string value of an accepted body is valid UTF-8. */
static void check_strings_utf8(const cJSON *node)
{
    for (; node; node = node->next) {
        if (node->string && !ref_utf8_valid((const unsigned char *)node->string, strlen(node->string)))
            abort();
        if (cJSON_IsString(node) && node->valuestring &&
            !ref_utf8_valid((const unsigned char *)node->valuestring, strlen(node->valuestring)))
            abort();
        check_strings_utf8(node->child);
    }
}

/* The parse stage's checks; returns the tree of an accepted body (the
 * caller frees it) or NULL. */
static cJSON *accept_body(const char *body, size_t n)
{
    if (!mg_utf8_valid(body, n))
        return NULL;
    const char *why = NULL;
    cJSON *json = mg_json_parse(body, n, &why);   /* as the router parses */
    if (json == NULL) {
        if (why == NULL)
            abort();   /* a refusal always says why */
        return NULL;
    }
    const char *dup = cJSON_IsObject(json) ? mg_json_find_duplicate(json) : NULL;
    if (cJSON_IsObject(json))
        check_duplicates(json, dup);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(json, "model");
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(json, "stream");
    if (!cJSON_IsObject(json) || dup || !cJSON_IsString(model) || model->valuestring[0] == '\0' ||
        (stream && !cJSON_IsBool(stream) && !cJSON_IsNull(stream))) {
        cJSON_Delete(json);
        return NULL;
    }
    return json;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_utf8(data, size);
    /* Any tree (not only accepted bodies): the duplicate scan must agree
     * with the reference on arrays of objects, nested objects, ... */
    cJSON *any = cJSON_ParseWithLength((const char *)data, size);
    if (any)
        check_duplicates(any, mg_json_find_duplicate(any));
    cJSON_Delete(any);

    cJSON *json = accept_body((const char *)data, size);
    if (json == NULL)
        return 0;
    check_strings_utf8(json);
    /* What the gateway forwards after editing the tree is the printed
     * tree: it must pass the same checks. */
    char *printed = cJSON_PrintUnformatted(json);
    if (printed) {
        cJSON *again = accept_body(printed, strlen(printed));
        if (again == NULL)
            abort();
        cJSON_Delete(again);
        cJSON_free(printed);
    }
    cJSON_Delete(json);
    return 0;
}
