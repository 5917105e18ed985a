/* modelgate — unit tests: usage journal record codec (encode, CRC, decode,
 * torn and corrupt records, resync), the journal's append path, start
 * records and the set of requests whose final record is already written.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "usage/usage_int.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static mg_usage_event sample(const char *id)
{
    return (mg_usage_event){
        .request_id = id, .ts_ms = 1767225600123LL /* 2026-01-01T00:00:00.123Z */,
        .subject = "sub\"1", .email = "a@example.com", .roles = "dev,admin", .model = "gpt-test",
        .provider = "mock", .status = 200, .prompt_tokens = 12, .completion_tokens = 34,
        .cost_usd = 0.00042, .latency_ms = 7, .stream = true, .decision = "[\"pii\"]",
    };
}

T_TEST(crc32_known_vector)
{
    T_EQ_INT(mg_usage_crc32("123456789", 9), 0xCBF43926u);
    T_EQ_INT(mg_usage_crc32("", 0), 0);
}

T_TEST(encode_decode_roundtrip)
{
    mg_buf b = {0};
    mg_usage_event ev = sample("r-1");
    T_EQ_INT(mg_usage_encode(&b, &ev), MG_OK);
    const uint8_t *pl;
    size_t plen, used;
    T_EQ_INT(mg_usage_decode((uint8_t *)b.p, b.len, true, &pl, &plen, &used), MG_JDEC_OK);
    T_EQ_INT(used, b.len);
    T_EQ_INT(plen, b.len - MG_JREC_HDR);
    T_CHECK(plen > 7 && memcmp(pl, "{\"ts\":\"2026-01-01T00:00:00.123Z\"", 32) == 0);
    cJSON *j = cJSON_ParseWithLength((const char *)pl, plen);
    T_CHECK(j != NULL);
    T_EQ_STR(cJSON_GetObjectItem(j, "request_id")->valuestring, "r-1");
    T_EQ_STR(cJSON_GetObjectItem(j, "subject")->valuestring, "sub\"1");
    T_EQ_INT(cJSON_GetObjectItem(j, "prompt_tokens")->valueint, 12);
    T_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")));
    T_CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "key_id")));
    T_CHECK(cJSON_IsArray(cJSON_GetObjectItem(j, "decision")));
    cJSON_Delete(j);
    mg_buf_free(&b);
}

T_TEST(encode_rejects_missing_id_and_sanitises_utf8)
{
    mg_buf b = {0};
    mg_usage_event ev = sample(NULL);
    T_EQ_INT(mg_usage_encode(&b, &ev), MG_ERR);
    T_EQ_INT(b.len, 0);
    ev = sample("r-2");
    ev.email = "bad\xff\xfe" "byte\x01";
    ev.decision = "not json";   /* kept as a string, never raw */
    T_EQ_INT(mg_usage_encode(&b, &ev), MG_OK);
    const uint8_t *pl;
    size_t plen, used;
    T_EQ_INT(mg_usage_decode((uint8_t *)b.p, b.len, true, &pl, &plen, &used), MG_JDEC_OK);
    for (size_t i = 0; i < plen; i++)
        T_CHECK(pl[i] != 0xFF && pl[i] >= 0x20);
    cJSON *j = cJSON_ParseWithLength((const char *)pl, plen);
    T_CHECK(j != NULL);
    if (j) {
        T_EQ_STR(cJSON_GetObjectItem(j, "email")->valuestring, "bad\xef\xbf\xbd\xef\xbf\xbd" "byte\x01");
        T_EQ_STR(cJSON_GetObjectItem(j, "decision")->valuestring, "not json");
    }
    cJSON_Delete(j);
    mg_buf_free(&b);
}

T_TEST(truncated_record_needs_more_or_is_corrupt_at_eof)
{
    mg_buf b = {0};
    mg_usage_event ev = sample("r-3");
    mg_usage_encode(&b, &ev);
    const uint8_t *pl;
    size_t plen, used;
    for (size_t cut = 1; cut < b.len; cut += 7) {
        T_EQ_INT(mg_usage_decode((uint8_t *)b.p, cut, false, &pl, &plen, &used), MG_JDEC_NEED_MORE);
        T_EQ_INT(mg_usage_decode((uint8_t *)b.p, cut, true, &pl, &plen, &used), MG_JDEC_CORRUPT);
        T_EQ_INT(used, cut);  /* no later magic: the whole torn tail is skipped */
    }
    mg_buf_free(&b);
}

T_TEST(bit_flip_fails_crc_and_resyncs_to_next_record)
{
    mg_buf b = {0};
    mg_usage_event e1 = sample("r-4"), e2 = sample("r-5");
    mg_usage_encode(&b, &e1);
    size_t first = b.len;
    mg_usage_encode(&b, &e2);
    b.p[first / 2] ^= 0x01;
    const uint8_t *pl;
    size_t plen, used;
    T_EQ_INT(mg_usage_decode((uint8_t *)b.p, b.len, false, &pl, &plen, &used), MG_JDEC_CORRUPT);
    T_EQ_INT(used, first);
    T_EQ_INT(mg_usage_decode((uint8_t *)b.p + used, b.len - used, false, &pl, &plen, &used), MG_JDEC_OK);
    T_CHECK(memmem(pl, plen, "\"r-5\"", 5) != NULL);
    mg_buf_free(&b);
}

T_TEST(bad_length_and_garbage)
{
    uint8_t rec[MG_JREC_HDR + 4] = {0xFF, 'M', 'G', 'J', 0xFF, 0xFF, 0xFF, 0x7F};
    const uint8_t *pl;
    size_t plen, used;
    T_EQ_INT(mg_usage_decode(rec, sizeof rec, false, &pl, &plen, &used), MG_JDEC_CORRUPT);
    uint8_t junk[64];
    memset(junk, 'x', sizeof junk);
    T_EQ_INT(mg_usage_decode(junk, sizeof junk, false, &pl, &plen, &used), MG_JDEC_CORRUPT);
    T_EQ_INT(used, sizeof junk);
    /* a magic prefix cut by the buffer end is kept for the next read */
    junk[62] = 0xFF; junk[63] = 'M';
    T_EQ_INT(mg_usage_decode(junk, sizeof junk, false, &pl, &plen, &used), MG_JDEC_CORRUPT);
    T_EQ_INT(used, 62);
}

T_TEST(segment_names_and_dates)
{
    char name[MG_JSEG_NAME_LEN];
    mg_usage_seg_name(name, 42, 3);
    T_EQ_STR(name, "seg-0000000000000042-w003.mgj");
    T_EQ_INT(mg_usage_seg_seq(name), 42);
    T_EQ_INT(mg_usage_seg_seq("checkpoint"), 0);
    T_EQ_INT(mg_usage_seg_seq("seg-00000000000000x2-w003.mgj"), 0);
    int64_t d;
    T_EQ_INT(mg_usage_parse_date("1970-01-02", &d), MG_OK);
    T_EQ_INT(d, 1);
    T_EQ_INT(mg_usage_parse_date("2024-02-29", &d), MG_OK);
    T_EQ_INT(d, 19782);
    T_EQ_INT(mg_usage_parse_date("2023-02-29", &d), MG_ERR);
    T_EQ_INT(mg_usage_parse_date("2023-1-01", &d), MG_ERR);
}

/* The real append path: records written by mg_usage_record decode back one
 * by one from the worker's segment, and the healthy flag stays up. */
T_TEST(record_appends_whole_records)
{
    char dir[] = "/tmp/mgjournal-XXXXXX";
    T_CHECK(mkdtemp(dir) != NULL);
    mg_config cfg = {.journal_dir = dir};
    mg_buf errs = {0};
    T_EQ_INT(mg_usage_start(&cfg, 1, &errs), MG_OK);
    T_EQ_INT(mg_usage_start(&cfg, 1, &errs), MG_ERR);   /* once per process */
    char id[32];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "u-%d", i);
        mg_usage_event ev = sample(id);
        T_EQ_INT(mg_usage_record(0, &ev), MG_OK);
    }
    mg_usage_event ev = sample("x");
    T_EQ_INT(mg_usage_record(1, &ev), MG_ERR);           /* no such worker */
    T_CHECK(mg_usage_healthy());
    struct mg_usage_stats st;
    mg_usage_stats(&st);
    T_EQ_INT(st.records_written, 100);
    mg_usage_stop();
    char path[128];
    snprintf(path, sizeof path, "%s/seg-0000000000000001-w000.mgj", dir);
    int fd = open(path, O_RDONLY);
    T_CHECK(fd >= 0);
    static uint8_t buf[1 << 16];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    size_t pos = 0, nrec = 0;
    while (n > 0 && pos < (size_t)n) {
        const uint8_t *pl;
        size_t plen, used;
        if (mg_usage_decode(buf + pos, (size_t)n - pos, true, &pl, &plen, &used) != MG_JDEC_OK) break;
        pos += used;
        nrec++;
    }
    T_EQ_INT(nrec, 100);
    T_EQ_INT(pos, (size_t)n);
    mg_buf_free(&errs);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    T_EQ_INT(system(cmd), 0);
}

T_TEST(start_record_carries_incomplete)
{
    mg_buf b = {0};
    mg_usage_event ev = sample("s-1");
    T_EQ_INT(mg_usage_encode(&b, &ev), MG_OK);
    ev.incomplete = true;
    ev.status = 0;
    T_EQ_INT(mg_usage_encode(&b, &ev), MG_OK);
    const uint8_t *pl;
    size_t plen, used;
    T_EQ_INT(mg_usage_decode((uint8_t *)b.p, b.len, false, &pl, &plen, &used), MG_JDEC_OK);
    cJSON *j = cJSON_ParseWithLength((const char *)pl, plen);
    T_CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "incomplete")));
    cJSON_Delete(j);
    T_EQ_INT(mg_usage_decode((uint8_t *)b.p + used, b.len - used, true, &pl, &plen, &used), MG_JDEC_OK);
    j = cJSON_ParseWithLength((const char *)pl, plen);
    T_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "incomplete")));
    T_EQ_INT(cJSON_GetObjectItem(j, "status")->valueint, 0);
    cJSON_Delete(j);
    mg_buf_free(&b);
}

T_MAIN("usage_journal",
       T_CASE(crc32_known_vector), T_CASE(encode_decode_roundtrip),
       T_CASE(encode_rejects_missing_id_and_sanitises_utf8),
       T_CASE(truncated_record_needs_more_or_is_corrupt_at_eof),
       T_CASE(bit_flip_fails_crc_and_resyncs_to_next_record), T_CASE(bad_length_and_garbage),
       T_CASE(segment_names_and_dates), T_CASE(record_appends_whole_records),
       T_CASE(start_record_carries_incomplete))
