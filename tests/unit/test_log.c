/* Unit tests: gateway/log.c (levels, timestamps, access log sink).
 * SPDX-License-Identifier: Apache-2.0
 */
#include "log.h"
#include "t.h"

#include <stdlib.h>
#include <unistd.h>

T_TEST(level_names)
{
    mg_log_level l;
    T_EQ_INT(mg_log_level_parse("debug", &l), MG_OK);
    T_EQ_INT(l, MG_LOG_DEBUG);
    T_EQ_INT(mg_log_level_parse("error", &l), MG_OK);
    T_EQ_INT(l, MG_LOG_ERROR);
    T_EQ_INT(mg_log_level_parse("verbose", &l), MG_ERR);
}

T_TEST(timestamp_is_iso8601_utc_with_millis)
{
    char ts[40];
    mg_log_timestamp(ts, sizeof(ts));
    T_EQ_INT(strlen(ts), 24);
    T_CHECK(ts[4] == '-' && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z');
}

T_TEST(access_log_to_file_and_off)
{
    char path[] = "/tmp/mg-test-access-XXXXXX";
    int fd = mkstemp(path);
    T_CHECK(fd >= 0);
    close(fd);
    T_EQ_INT(mg_access_log_open(path), MG_OK);
    T_CHECK(mg_access_log_enabled());
    mg_access_log_line("{\"a\":1}", 7);
    mg_access_log_line("{\"b\":2}", 7);
    mg_access_log_flush();
    FILE *f = fopen(path, "r");
    char buf[64] = "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    T_EQ_STR(buf, "{\"a\":1}\n{\"b\":2}\n");
    T_EQ_INT(mg_access_log_open("off"), MG_OK);
    T_CHECK(!mg_access_log_enabled());
    mg_access_log_line("{\"c\":3}", 7);
    mg_access_log_thread_done();
    f = fopen(path, "r");
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    T_EQ_INT(n, 16);   /* nothing written while off */
    unlink(path);
    T_EQ_INT(mg_access_log_open("stdout"), MG_OK);
}

T_MAIN("log", T_CASE(level_names), T_CASE(timestamp_is_iso8601_utc_with_millis),
       T_CASE(access_log_to_file_and_off))
