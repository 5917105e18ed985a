/* modelgate — the admin web console (/admin/): static files served from
 * memory, and the one JSON endpoint the console needs to draw itself.
 *
 * The console is plain HTML/CSS/ES modules in admin/ (no build step). The
 * files are read once when `serve` starts, so the event loops never touch
 * the disk; a SIGHUP does not re-read them (restart to pick up new files).
 * Every console URL sits behind authentication: a browser without a session
 * is sent to /auth/login?return_to=<path>. See docs/console.md.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_CONSOLE_H
#define MG_CONSOLE_H

#include "pipeline.h"

/* The Content-Security-Policy sent with every console file. */
#define MG_CONSOLE_CSP                                                                         \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

/* Main thread, before the workers start: finds the console directory
 * ($MODELGATE_CONSOLE_DIR, else ./admin, else <binary's dir>/../admin, else
 * <binary's dir>/../share/modelgate/admin) and reads its files into memory.
 * A missing directory is not an error: the console then answers 404 and a
 * line saying so is appended to notes. MG_ERR (reason in notes) when the
 * directory named by MODELGATE_CONSOLE_DIR is unusable or a file is too big;
 * MG_ENOMEM. Calling it again replaces what was loaded. */
mg_rc mg_console_load(mg_buf *notes);
/* After the workers stopped: frees the files. */
void mg_console_unload(void);
/* The directory loaded from, or NULL. */
const char *mg_console_dir(void);
/* Number of files loaded. */
size_t mg_console_nfiles(void);

/* Route handlers (gateway/router.c, "local" routes that run their own
 * authenticate → answer stage list). */
void mg_console_serve(mg_req *req);    /* GET /admin, /admin/, /admin/<file> */
void mg_console_context(mg_req *req);  /* GET /admin/v1/console */

/* ---- pieces exposed for unit tests ---- */

/* Content-Type for a file name by its extension; NULL when the console
 * does not serve that kind of file. */
const char *mg_console_content_type(const char *name);
/* Whether a request path names a console file, and which: "/admin/" is
 * index.html; "/admin/<name>" with a flat name of [A-Za-z0-9._-] not
 * starting with '.'. Writes the file name into out (NUL-terminated). */
bool mg_console_file_name(const char *path, char *out, size_t outsz);

#endif
