/* modelgate — fuzz target: upstream stream splitting and translation.
 *
 * Drives the adapters' stream path the way gateway/proxy.c relay_events
 * does: upstream bytes are buffered, split into events with the adapter's
 * next_event (or SSE / NDJSON framing), each event goes to the adapter's
 * stream_event, and (optionally) the canonical output goes on through the
 * Anthropic surface's stream translator as relay_out does.
 *
 * Input: byte 0 picks the adapter (% 6: openai, azure, anthropic, ollama,
 * gemini, bedrock) and options (0x08 client wants usage, 0x10 through the
 * Anthropic surface, 0x20 for bedrock: build the eventstream frames from
 * text lines, see build_frames, so the CRCs are right and the translation
 * is reached); byte 1 is where the bytes are split in two deliveries; the
 * rest is the upstream stream.
 *
 * Invariants (abort() on violation):
 *  - a splitter never consumes more than it was given, and the event it
 *    returns lies inside what it consumed;
 *  - delivering the bytes whole or in two parts gives the same events and
 *    the same stream_event results;
 *  - stream_event returns MG_OK, MG_DONE or MG_ERR (nothing else without
 *    memory pressure), and what it appends is whole SSE events of one
 *    "data: " line each whose payload is [DONE] or exactly one JSON value
 *    (an object after the surface): the client, the output filters and
 *    the surfaces all read it that way;
 *  - the surface's output is whole SSE events ("event:" and one "data:"
 *    JSON object line);
 *  - no crash, leak or undefined behaviour (ASan/UBSan).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "adapters/adapter.h"
#include "adapters/bedrock.h"
#include "adapters/translate.h"
#include "gateway/surface.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const types[] = {"openai", "azure", "anthropic", "ollama", "gemini", "bedrock"};

static mg_cfg_provider provider = {.name = "p", .base_url = "https://upstream.test", .api_key = "k",
                                   .api_version = "2024-10-21", .region = "us-east-1"};
static mg_cfg_deployment deployment = {.provider = "p", .model = "upstream-model", .weight = 1};

typedef size_t (*splitter)(const char *, size_t, mg_str *);

/* What one run saw: the events (copied) and stream_event's results. */
typedef struct run_log {
    mg_buf events;    /* each: 8-byte length, then the bytes */
    mg_buf rcs;       /* one byte per event: rc + 8 */
    int64_t prompt, completion;
} run_log;

typedef struct run {
    const mg_adapter_ops *ops;
    splitter next;
    mg_req req;
    mg_buf buf;       /* undelivered upstream bytes (up->events) */
    mg_buf out;
    bool done;
    bool surface;
    run_log log;
} run;

static void log_event(run_log *l, mg_str ev, mg_rc rc)
{
    uint64_t n = ev.n;
    char b = (char)(rc + 8);
    if (mg_buf_append(&l->events, &n, sizeof(n)) != MG_OK || mg_buf_append(&l->events, ev.p, ev.n) != MG_OK ||
        mg_buf_append(&l->rcs, &b, 1) != MG_OK)
        abort();
}

static bool ws_only(const char *p, const char *end)
{
    for (; p && p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return false;
    return true;
}

/* Checks that p[0..n) is whole SSE events. surface: Anthropic events
 * ("event: name" line allowed); otherwise canonical ones. */
static void check_sse(const char *p, size_t n, bool surface)
{
    size_t off = 0;
    while (off < n) {
        mg_str ev;
        size_t used = mg_adapter_next_sse_event(p + off, n - off, &ev);
        if (used == 0 || used == (size_t)-1 || used > n - off)
            abort();   /* not a whole event */
        int data_lines = 0;
        size_t i = 0;
        while (i < ev.n) {
            const char *nl = memchr(ev.p + i, '\n', ev.n - i);
            size_t len = nl ? (size_t)(nl - (ev.p + i)) : ev.n - i;
            mg_str line = mg_str_make(ev.p + i, len);
            if (line.n >= 6 && memcmp(line.p, "data: ", 6) == 0) {
                data_lines++;
                mg_str d = mg_str_make(line.p + 6, line.n - 6);
                if (memchr(d.p, '\r', d.n))
                    abort();
                if (!(d.n == 6 && memcmp(d.p, "[DONE]", 6) == 0)) {
                    const char *end = NULL;
                    cJSON *j = cJSON_ParseWithLengthOpts(d.p, d.n, &end, false);
                    if (j == NULL || (surface && !cJSON_IsObject(j)) || !ws_only(end, d.p + d.n))
                        abort();   /* a data line the client cannot read */
                    cJSON_Delete(j);
                }
            } else if (!(surface && line.n >= 7 && memcmp(line.p, "event: ", 7) == 0)) {
                abort();           /* a line that is not part of the format */
            }
            i += len + 1;
        }
        if (data_lines != 1)
            abort();
        off += used;
    }
}

static void relay_out(run *r, const char *p, size_t n)
{
    if (!r->surface || n == 0)
        return;
    mg_buf client = {0};
    mg_rc rc = mg_surface_anthropic.stream(&r->req, p, n, &client);
    if (rc == MG_OK) {
        check_sse(client.p, client.len, true);
    } else {
        /* proxy: stream_error_event, which ends the stream */
        mg_buf_reset(&client);
        if (mg_surface_anthropic.stream_error(&r->req, "upstream_error", "broken", &client) == MG_OK)
            check_sse(client.p, client.len, true);
        r->done = true;
    }
    mg_buf_free(&client);
}

/* relay_events of gateway/proxy.c, without the connection. */
static void relay(run *r, bool at_end)
{
    size_t off = 0;
    while (!r->done && off < r->buf.len) {
        mg_str ev = MG_STR_NULL;
        size_t avail = r->buf.len - off;
        const char *base = r->buf.p + off;
        size_t used = r->next(base, avail, &ev);
        if (used == (size_t)-1) {
            r->done = true;
            log_event(&r->log, MG_STR_LIT("<broken framing>"), MG_ERR);
            break;
        }
        if (used > avail)
            abort();
        if (used == 0) {
            /* A text event cut off by the end is still an event; a partial
             * binary frame is not. */
            if (!at_end || (r->next != mg_adapter_next_line && r->next != mg_adapter_next_sse_event))
                break;
            ev = mg_str_make(base, avail);
            used = avail;
        }
        if (ev.n > used || ev.p < base || ev.p + ev.n > base + used)
            abort();
        off += used;
        mg_buf_reset(&r->out);
        mg_rc rc = r->ops->stream_event(&r->req, ev, &r->out);
        if (rc != MG_OK && rc != MG_DONE && rc != MG_ERR)
            abort();
        log_event(&r->log, ev, rc);
        if (rc == MG_ERR) {
            r->done = true;
            relay_out(r, NULL, 0);
            break;
        }
        check_sse(r->out.p, r->out.len, false);
        relay_out(r, r->out.p, r->out.len);
        if (rc == MG_DONE)
            r->done = true;
    }
    mg_buf_consume(&r->buf, off);
}

static void run_init(run *r, const mg_adapter_ops *ops, bool wants_usage, bool surface)
{
    memset(r, 0, sizeof(*r));
    r->ops = ops;
    r->next = ops->next_event ? ops->next_event
              : strstr(ops->stream_content_type, "ndjson") ? mg_adapter_next_line
                                                           : mg_adapter_next_sse_event;
    r->surface = surface;
    mg_req *req = &r->req;
    req->pool = mg_pool_new(4096);
    if (req->pool == NULL)
        abort();
    req->api = MG_API_CHAT;
    req->stream = true;
    req->client_wants_usage = wants_usage || surface;
    req->model_name = "client-model";
    req->provider = &provider;
    req->deployment = &deployment;
    req->usage.prompt_tokens = req->usage.completion_tokens = -1;
    memcpy(req->request_id, "req-fuzz", 9);
}

static void run_finish(run *r)
{
    /* stream_terminate: a stream closed without its final event */
    if (!r->done)
        relay_out(r, "data: [DONE]\n\n", 14);
    r->log.prompt = r->req.usage.prompt_tokens;
    r->log.completion = r->req.usage.completion_tokens;
    mg_buf_free(&r->buf);
    mg_buf_free(&r->out);
    mg_pool_free(r->req.pool);
}

static void put_be32(mg_buf *b, uint32_t v)
{
    unsigned char q[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    if (mg_buf_append(b, q, 4) != MG_OK)
        abort();
}

static void put_header(mg_buf *h, const char *name, mg_str value)
{
    unsigned char nl = (unsigned char)strlen(name), t = 7;
    unsigned char vl[2] = {(unsigned char)(value.n >> 8), (unsigned char)value.n};
    if (mg_buf_append(h, &nl, 1) != MG_OK || mg_buf_append(h, name, nl) != MG_OK || mg_buf_append(h, &t, 1) != MG_OK ||
        mg_buf_append(h, vl, 2) != MG_OK || mg_buf_append(h, value.p, value.n) != MG_OK)
        abort();
}

static void put_frame(mg_buf *out, mg_str headers, mg_str payload)
{
    size_t start = out->len;
    uint32_t total = (uint32_t)(12 + headers.n + payload.n + 4);
    put_be32(out, total);
    put_be32(out, (uint32_t)headers.n);
    put_be32(out, mg_bedrock_crc32(0, out->p + start, 8));
    if (mg_buf_append(out, headers.p, headers.n) != MG_OK || mg_buf_append(out, payload.p, payload.n) != MG_OK)
        abort();
    put_be32(out, mg_bedrock_crc32(0, out->p + start, out->len - start));
}

/* Bedrock frames with valid CRCs, one per input line:
 *   "<event-type> <json>"        an event message,
 *   "!<exception-type> <json>"   an exception message,
 *   "#<n><n header bytes><payload>"  raw header block, any bytes. */
static void build_frames(const char *p, size_t n, mg_buf *out)
{
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - (p + i)) : n - i;
        mg_str line = mg_str_make(p + i, len);
        i += len + 1;
        mg_buf h = {0};
        mg_str payload;
        if (line.n >= 2 && line.p[0] == '#') {
            size_t hl = (unsigned char)line.p[1];
            if (hl > line.n - 2)
                hl = line.n - 2;
            if (mg_buf_append(&h, line.p + 2, hl) != MG_OK)
                abort();
            payload = mg_str_make(line.p + 2 + hl, line.n - 2 - hl);
        } else {
            bool exc = line.n > 0 && line.p[0] == '!';
            mg_str rest = exc ? mg_str_make(line.p + 1, line.n - 1) : line;
            const char *sp = memchr(rest.p, ' ', rest.n);
            mg_str name = mg_str_make(rest.p, sp ? (size_t)(sp - rest.p) : rest.n);
            payload = sp ? mg_str_make(sp + 1, rest.n - name.n - 1) : MG_STR_NULL;
            put_header(&h, exc ? ":exception-type" : ":event-type", name);
            put_header(&h, ":content-type", MG_STR_LIT("application/json"));
            put_header(&h, ":message-type", exc ? MG_STR_LIT("exception") : MG_STR_LIT("event"));
        }
        put_frame(out, mg_str_make(h.p ? h.p : "", h.len), payload);
        mg_buf_free(&h);
    }
}

static bool logs_equal(const run_log *a, const run_log *b)
{
    return a->events.len == b->events.len && a->rcs.len == b->rcs.len &&
           (a->events.len == 0 || memcmp(a->events.p, b->events.p, a->events.len) == 0) &&
           (a->rcs.len == 0 || memcmp(a->rcs.p, b->rcs.p, a->rcs.len) == 0) && a->prompt == b->prompt &&
           a->completion == b->completion;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t sel = data[0], cut = data[1];
    const mg_adapter_ops *ops = mg_adapter_find(types[sel % 6]);
    if (ops == NULL)
        abort();
    bool wants_usage = sel & 0x08, surface = sel & 0x10;
    const char *in = (const char *)data + 2;
    size_t n = size - 2;

    mg_buf stream = {0};
    if (ops->next_event == mg_bedrock_next_event && (sel & 0x20))
        build_frames(in, n, &stream);
    else if (n && mg_buf_append(&stream, in, n) != MG_OK)
        abort();
    const char *s = stream.p ? stream.p : "";
    size_t len = stream.len;
    size_t split = len * cut / 255;

    run whole, parts;
    run_init(&whole, ops, wants_usage, surface);
    if (len && mg_buf_append(&whole.buf, s, len) != MG_OK)
        abort();
    relay(&whole, true);
    run_finish(&whole);

    run_init(&parts, ops, wants_usage, surface);
    if (split && mg_buf_append(&parts.buf, s, split) != MG_OK)
        abort();
    relay(&parts, false);
    if (len > split && mg_buf_append(&parts.buf, s + split, len - split) != MG_OK)
        abort();
    relay(&parts, true);
    run_finish(&parts);

    if (!logs_equal(&whole.log, &parts.log))
        abort();

    mg_buf_free(&whole.log.events);
    mg_buf_free(&whole.log.rcs);
    mg_buf_free(&parts.log.events);
    mg_buf_free(&parts.log.rcs);
    mg_buf_free(&stream);
    return 0;
}
