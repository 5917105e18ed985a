/* modelgate — structured logging.
 *
 * The error log is JSON lines on stderr ({"ts","level","msg",...}); the access
 * log is one JSON line per request, buffered per worker thread and written
 * with one write() per loop iteration. Neither ever receives credentials or
 * prompt text: callers pass only identifiers, counts and rule names.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_LOG_H
#define MG_LOG_H

#include "core.h"

typedef enum mg_log_level { MG_LOG_ERROR = 0, MG_LOG_WARN, MG_LOG_INFO, MG_LOG_DEBUG } mg_log_level;

void mg_log_set_level(mg_log_level level);
mg_rc mg_log_level_parse(const char *s, mg_log_level *out);
void mg_log(mg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define mg_log_error(...) mg_log(MG_LOG_ERROR, __VA_ARGS__)
#define mg_log_warn(...) mg_log(MG_LOG_WARN, __VA_ARGS__)
#define mg_log_info(...) mg_log(MG_LOG_INFO, __VA_ARGS__)
#define mg_log_debug(...) mg_log(MG_LOG_DEBUG, __VA_ARGS__)

/* Access log destination: "stdout", "stderr", "off" or a file path (opened
 * O_APPEND; reopened on SIGHUP for log rotation). */
mg_rc mg_access_log_open(const char *dest);
/* Appends one complete line (without the trailing newline) to the calling
 * thread's buffer; mg_access_log_flush writes it out. */
void mg_access_log_line(const char *line, size_t n);
void mg_access_log_flush(void);
/* Flushes and frees the calling thread's buffer (thread exit). */
void mg_access_log_thread_done(void);
bool mg_access_log_enabled(void);

/* ISO-8601 UTC timestamp with milliseconds into out (>= 32 bytes). */
void mg_log_timestamp(char *out, size_t outsz);

#endif
