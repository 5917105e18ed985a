/* modelgate — fuzz target: the built-in upstream client's response parser.
 *
 * Any byte string is a possible upstream response. The input is fed twice:
 * whole, and in pieces whose sizes come from the first byte, with every
 * unconsumed byte handed back as the parser's contract says. Properties:
 * consumed never exceeds what was offered, body bytes delivered never
 * exceed the input, and both feeding patterns agree on the result and on
 * the body delivered.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "h1client.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct sink_state {
    size_t body_bytes;
    uint32_t body_hash;
} sink_state;

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
    (void)line;
    (void)arg;
    return size * n;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    sink_state *st = arg;
    for (size_t i = 0; i < size * n; i++)
        st->body_hash = st->body_hash * 31u + (unsigned char)p[i];
    st->body_bytes += size * n;
    return size * n;
}

/* Feeds data in pieces of at most `step` bytes (0: all at once), keeping
 * unconsumed bytes as a caller must. Returns the final result. */
static mg_h1_prc feed(const char *data, size_t size, size_t step, sink_state *st)
{
    mg_h1_parser p;
    mg_h1_parser_init(&p, false);
    mg_h1_sink s = {on_header, on_body, st};
    char *buf = malloc(size + 1);
    if (buf == NULL)
        abort();
    size_t have = 0, off = 0;
    mg_h1_prc rc = MG_H1_AGAIN;
    for (;;) {
        size_t take = step == 0 ? size - off : (size - off < step ? size - off : step);
        memcpy(buf + have, data + off, take);
        have += take;
        off += take;
        bool eof = off == size;
        size_t used = 0;
        rc = mg_h1_parse(&p, buf, have, eof, &used, &s);
        if (used > have)
            abort();
        memmove(buf, buf + used, have - used);
        have -= used;
        if (rc != MG_H1_AGAIN || eof)
            break;
    }
    free(buf);
    if (st->body_bytes > size)
        abort();
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = 1 + data[0] % 17;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    sink_state whole = {0}, pieces = {0};
    mg_h1_prc a = feed(in, n, 0, &whole);
    mg_h1_prc b = feed(in, n, step, &pieces);
    if (a != b || (a == MG_H1_DONE && (whole.body_bytes != pieces.body_bytes || whole.body_hash != pieces.body_hash)))
        abort();
    return 0;
}
