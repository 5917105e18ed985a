/* modelgate — fuzz target: mg_json_parse against cJSON's own parser.
 *
 * Whatever mg_json_parse accepts, cJSON must accept too and both trees
 * must print the same (mg_json_parse is only ever stricter: JSON number
 * grammar, no \u0000). Every array and object must keep cJSON's invariant
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *why = NULL;
    cJSON *ours = mg_json_parse(text, size, &why);
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
