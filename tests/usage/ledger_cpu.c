/* modelgate — CPU cost of the usage ledger's per-record work, for callgrind
 * (instruction counts do not depend on how busy the machine is):
 *
 *   ledger_cpu encode N      encode N typical records (half start records,
 *                            half finals, like the gateway) into a reused buffer
 *   ledger_cpu copy N        the same N records turned into COPY lines, as
 *                            the shipper does for each batch
 *
 * bench/ledger_cpu.sh runs it under callgrind, counting only inside
 * mg_usage_encode, or mg_usage_decode + mg_usage_copy_line (the shipper's
 * per-record work in this process), and prints instructions per record. SPDX-License-Identifier: Apache-2.0
 */
#include "usage/usage_int.h"

#include <stdio.h>
#include <stdlib.h>

static void event(mg_usage_event *ev, char *id, size_t idsz, long i)
{
    snprintf(id, idsz, "01JD8Z5M3K7Q2W9XK4%08ld", i / 2);
    bool start = (i & 1) == 0;
    *ev = (mg_usage_event){
        .request_id = id, .ts_ms = 1767225600123LL + i * 7, .subject = "auth0|5f7c8e9d0a1b2c3d4e5f6a7b",
        .email = "jane.doe@example.com", .roles = "developer,ml-team", .key_id = "mgk_3f9a2c71",
        .cost_center = "cc-4711", .model = "gpt-4o-mini", .served_model = "gpt-4o-mini", .provider = "openai",
        .upstream_model = "gpt-4o-mini-2024-07-18", .status = start ? 0 : 200, .prompt_tokens = 512 + i % 100,
        .completion_tokens = start ? 0 : 128 + i % 50, .cost_usd = start ? 0.0000768 : 0.0001536 + (double)(i % 50) * 6e-7,
        .input_per_mtok = 0.15, .output_per_mtok = 0.6, .latency_ms = start ? 0 : 431 + i % 17,
        .stream = (i & 2) != 0, .estimated = start, .incomplete = start,
        .decision = start ? NULL : "[\"pii.email\",\"secrets.aws\"]",
    };
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ledger_cpu encode|copy N\n");
        return 2;
    }
    char *end;
    long n = strtol(argv[2], &end, 10);
    if (*end || n < 0) return 2;
    mg_buf rec = {0}, all = {0}, line = {0};
    char id[64];
    mg_usage_event ev;
    bool copy = strcmp(argv[1], "copy") == 0, enc = strcmp(argv[1], "encode") == 0;
    if (copy) {   /* the records, encoded beforehand (not counted: compare with `none`) */
        for (long i = 0; i < n; i++) {
            event(&ev, id, sizeof id, i);
            mg_usage_encode(&all, &ev);
        }
    }
    unsigned long long sum = 0;
    if (enc) {
        for (long i = 0; i < n; i++) {
            event(&ev, id, sizeof id, i);
            mg_buf_reset(&rec);
            if (mg_usage_encode(&rec, &ev) != MG_OK) return 1;
            sum += rec.len;
        }
    } else if (copy) {
        size_t pos = 0;
        while (pos < all.len) {
            const uint8_t *pl;
            size_t plen, used;
            if (mg_usage_decode((const uint8_t *)all.p + pos, all.len - pos, true, &pl, &plen, &used) != MG_JDEC_OK)
                return 1;
            if ((line.len > (4u << 20))) mg_buf_reset(&line);
            if (!mg_usage_copy_line(&line, pos, (const char *)pl, plen)) return 1;
            sum += plen;
            pos += used;
        }
    }
    printf("%s %ld records, %llu bytes\n", argv[1], n, sum);
    mg_buf_free(&rec); mg_buf_free(&all); mg_buf_free(&line);
    return 0;
}
