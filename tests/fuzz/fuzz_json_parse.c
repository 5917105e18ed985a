/* modelgate — fuzz target: mg_json_parse against cJSON's own parser.
 *
 * Whatever mg_json_parse accepts, cJSON must accept too and both trees
 * must print the same (mg_json_parse is only ever stricter: JSON number
 * grammar, no \u0000). mg_json_each_string accepts exactly the same
 * inputs and hands over the tree's string values in order. Every array and object must keep cJSON's invariant
 * that the first child's prev points at the last child, which cJSON's own
 * append functions rely on. Inputs the strict grammar must refuse are
 * checked too: a document with a leading-zero number never parses.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "json.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_links(const cJSON *n)
{
    for (; n; n = n->next) {
        if (n->child) {
            const cJSON *last = n->child;
            while (last->next)
                last = last->next;
            if (n->child->prev != last)
                abort();
            check_links(n->child);
        }
    }
}

static bool json_ws_only(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return false;
    return true;
}

/* mg_json_each_string must see the tree's string values, in order. */
typedef struct { const cJSON *want[4096]; size_t n, at; bool bad; } walk;

static void collect(walk *w, const cJSON *n)
{
    for (; n; n = n->next) {
        if (cJSON_IsString(n) && w->n < 4096)
            w->want[w->n++] = n;
        collect(w, n->child);
    }
}

static bool on_string(void *arg, const char *s, size_t len)
{
    walk *w = arg;
    if (w->at >= w->n || strlen(w->want[w->at]->valuestring) != len ||
        memcmp(w->want[w->at]->valuestring, s, len) != 0)
        w->bad = true;
    w->at++;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *why = NULL;
    cJSON *ours = mg_json_parse(text, size, &why);
    static walk w;
    w.n = w.at = 0;
    w.bad = false;
    if (ours)
        collect(&w, ours);
    mg_buf scratch = {0};
    bool each = mg_json_each_string(text, size, &scratch, on_string, &w);
    mg_buf_free(&scratch);
    if (each != (ours != NULL))
        abort();   /* the tree-less walk accepts exactly what the parser accepts */
    if (ours && w.n < 4096 && (w.bad || w.at != w.n))
        abort();
    if (ours == NULL) {
        if (why == NULL)
            abort();   /* a refusal always says why */
        return 0;
    }
    check_links(ours);
    const char *end = NULL;
    cJSON *theirs = cJSON_ParseWithLengthOpts(text, size, &end, false);
    if (theirs == NULL || !json_ws_only(end, text + size))
        abort();       /* we accepted what cJSON refuses */
    char *a = cJSON_PrintUnformatted(ours), *b = cJSON_PrintUnformatted(theirs);
    if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
        abort();
    /* Appending through cJSON's API must land after the last child. */
    if (cJSON_IsArray(ours) && cJSON_AddItemToArray(ours, cJSON_CreateNull())) {
        const cJSON *last = ours->child;
        while (last->next)
            last = last->next;
        if (!cJSON_IsNull(last) || ours->child->prev != last)
            abort();
    }
    cJSON_free(a);
    cJSON_free(b);
    cJSON_Delete(ours);
    cJSON_Delete(theirs);
    return 0;
}
