/* modelgate — the adapter registry and helpers shared by adapters.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "adapter.h"

extern const mg_adapter_ops mg_adapter_openai;
extern const mg_adapter_ops mg_adapter_azure;
extern const mg_adapter_ops mg_adapter_anthropic;
extern const mg_adapter_ops mg_adapter_ollama;
extern const mg_adapter_ops mg_adapter_gemini;
extern const mg_adapter_ops mg_adapter_bedrock;

static const mg_adapter_ops *const adapters[] = {
    &mg_adapter_openai,
    &mg_adapter_azure,
    &mg_adapter_anthropic,
    &mg_adapter_ollama,
    &mg_adapter_gemini,
    &mg_adapter_bedrock,
};

const mg_adapter_ops *mg_adapter_find(const char *type)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(adapters); i++)
        if (strcmp(adapters[i]->type, type) == 0)
            return adapters[i];
    return NULL;
}

mg_rc mg_adapter_sse_data(mg_buf *out, const char *json, size_t n)
{
    if (mg_buf_append(out, "data: ", 6) != MG_OK || mg_buf_append(out, json, n) != MG_OK)
        return MG_ENOMEM;
    return mg_buf_append(out, "\n\n", 2);
}

int64_t mg_adapter_estimate_tokens(size_t bytes)
{
    return bytes == 0 ? 0 : (int64_t)((bytes + 3) / 4);
}

size_t mg_adapter_next_sse_event(const char *p, size_t n, mg_str *ev)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] == '\n' && p[i + 1] == '\n') {
            *ev = mg_str_make(p, i);
            return i + 2;
        }
        if (p[i] == '\r' && i + 3 < n && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') {
            *ev = mg_str_make(p, i);
            return i + 4;
        }
    }
    return 0;
}

size_t mg_adapter_next_line(const char *p, size_t n, mg_str *ev)
{
    const char *nl = memchr(p, '\n', n);
    if (nl == NULL)
        return 0;
    size_t len = (size_t)(nl - p);
    *ev = mg_str_make(p, len > 0 && p[len - 1] == '\r' ? len - 1 : len);
    return len + 1;
}
