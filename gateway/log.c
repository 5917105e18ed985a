/* modelgate — structured logging.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = MG_LOG_INFO;
static _Atomic int access_fd = STDOUT_FILENO;   /* -1 = off */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void mg_log_set_level(mg_log_level level) { atomic_store(&log_level, (int)level); }

mg_rc mg_log_level_parse(const char *s, mg_log_level *out)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (mg_log_level)i;
            return MG_OK;
        }
    }
    return MG_ERR;
}

void mg_log_timestamp(char *out, size_t outsz)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, outsz, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outsz - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;   /* a log sink that fails must not take the gateway down */
        }
        p += w;
        n -= (size_t)w;
    }
}

void mg_log(mg_log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
        return;
    char msg[2048], ts[40];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t mlen = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
    mg_log_timestamp(ts, sizeof(ts));
    mg_buf b = {0};
    mg_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[level]);
    mg_buf_append_json_str(&b, msg, mlen);
    mg_buf_append(&b, "}\n", 2);
    if (b.p)
        write_all(STDERR_FILENO, b.p, b.len);
    mg_buf_free(&b);
}

mg_rc mg_access_log_open(const char *dest)
{
    int fd;
    if (dest == NULL || strcmp(dest, "stdout") == 0)
        fd = STDOUT_FILENO;
    else if (strcmp(dest, "stderr") == 0)
        fd = STDERR_FILENO;
    else if (strcmp(dest, "off") == 0)
        fd = -1;
    else {
        fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            mg_log_error("cannot open access log %s: %s", dest, strerror(errno));
            return MG_ERR;
        }
    }
    int old = atomic_exchange(&access_fd, fd);
    if (old > STDERR_FILENO && old != fd)
        close(old);
    return MG_OK;
}

bool mg_access_log_enabled(void) { return atomic_load_explicit(&access_fd, memory_order_relaxed) >= 0; }

static _Thread_local mg_buf access_buf;

void mg_access_log_line(const char *line, size_t n)
{
    if (!mg_access_log_enabled())
        return;
    if (mg_buf_append(&access_buf, line, n) == MG_OK)
        mg_buf_append(&access_buf, "\n", 1);
    if (access_buf.len > 64 * 1024)
        mg_access_log_flush();
}

void mg_access_log_thread_done(void)
{
    mg_access_log_flush();
    mg_buf_free(&access_buf);
}

void mg_access_log_flush(void)
{
    if (access_buf.len == 0)
        return;
    int fd = atomic_load(&access_fd);
    if (fd >= 0)
        write_all(fd, access_buf.p, access_buf.len);
    mg_buf_reset(&access_buf);
}
