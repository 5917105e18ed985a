/* modelgate — the admin web console: files from admin/ served from memory,
 * and GET /admin/v1/console (who is signed in, what they may do, which
 * models are configured).
 * SPDX-License-Identifier: Apache-2.0
 */
#include "console.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONSOLE_MAX_FILES 64
#define CONSOLE_MAX_FILE (2u << 20)      /* one file */
#define CONSOLE_MAX_TOTAL (8u << 20)     /* all files together */

typedef struct console_file {
    char name[64];
    const char *content_type;
    char *data;
    size_t len;
} console_file;

/* Written only by the main thread before the workers start and after they
 * stopped; read-only while requests run, so no locking. */
static struct {
    char dir[PATH_MAX];
    console_file files[CONSOLE_MAX_FILES];
    size_t nfiles;
} g;

static const struct {
    const char *ext;
    const char *type;
} content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".json", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
};

const char *mg_console_content_type(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < MG_ARRAY_LEN(content_types); i++) {
        size_t e = strlen(content_types[i].ext);
        if (n > e && strcmp(name + n - e, content_types[i].ext) == 0)
            return content_types[i].type;
    }
    return NULL;
}

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool mg_console_file_name(const char *path, char *out, size_t outsz)
{
    static const char base[] = "/admin/";
    if (strncmp(path, base, sizeof(base) - 1) != 0)
        return false;
    const char *name = path + sizeof(base) - 1;
    if (*name == '\0')
        name = "index.html";
    size_t n = strlen(name);
    /* Flat directory only: anything with a '/' (or "..") is not a file of ours. */
    if (!name_ok(name, n) || n + 1 > outsz)
        return false;
    memcpy(out, name, n + 1);
    return true;
}

static void free_files(void)
{
    for (size_t i = 0; i < g.nfiles; i++)
        free(g.files[i].data);
    memset(g.files, 0, sizeof(g.files));
    g.nfiles = 0;
    g.dir[0] = '\0';
}

void mg_console_unload(void) { free_files(); }

const char *mg_console_dir(void) { return g.dir[0] ? g.dir : NULL; }

size_t mg_console_nfiles(void) { return g.nfiles; }

/* Reads one regular file whole. */
static mg_rc read_file(int dirfd, const char *name, char **data, size_t *len, mg_buf *notes)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return MG_AGAIN;   /* not a regular file: skipped */
    }
    if ((uint64_t)st.st_size > CONSOLE_MAX_FILE) {
        mg_buf_printf(notes, "console: %s is larger than %u bytes\n", name, CONSOLE_MAX_FILE);
        close(fd);
        return MG_ERR;
    }
    size_t n = (size_t)st.st_size;
    char *p = malloc(n ? n : 1);
    if (p == NULL) {
        close(fd);
        return MG_ENOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        free(p);
        mg_buf_printf(notes, "console: cannot read %s\n", name);
        return MG_ERR;
    }
    *data = p;
    *len = n;
    return MG_OK;
}

static mg_rc load_dir(const char *dir, mg_buf *notes)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return MG_AGAIN;
    size_t total = 0;
    mg_rc rc = MG_OK;
    struct dirent *e;
    while (rc == MG_OK && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        const char *type = mg_console_content_type(e->d_name);
        if (type == NULL || !name_ok(e->d_name, n) || n >= sizeof(g.files[0].name))
            continue;
        if (g.nfiles == CONSOLE_MAX_FILES) {
            mg_buf_printf(notes, "console: more than %d files in %s\n", CONSOLE_MAX_FILES, dir);
            rc = MG_ERR;
            break;
        }
        console_file *f = &g.files[g.nfiles];
        mg_rc r = read_file(dirfd(d), e->d_name, &f->data, &f->len, notes);
        if (r == MG_AGAIN)
            continue;
        if (r != MG_OK) {
            rc = r;
            break;
        }
        total += f->len;
        memcpy(f->name, e->d_name, n + 1);
        f->content_type = type;
        g.nfiles++;
        if (total > CONSOLE_MAX_TOTAL) {
            mg_buf_printf(notes, "console: the files in %s add up to more than %u bytes\n", dir,
                          CONSOLE_MAX_TOTAL);
            rc = MG_ERR;
        }
    }
    closedir(d);
    if (rc != MG_OK) {
        free_files();
        return rc;
    }
    snprintf(g.dir, sizeof(g.dir), "%s", dir);
    return MG_OK;
}

mg_rc mg_console_load(mg_buf *notes)
{
    free_files();
    const char *env = getenv("MODELGATE_CONSOLE_DIR");
    if (env && env[0]) {
        /* Named explicitly: not finding it is a mistake worth stopping for. */
        mg_rc rc = load_dir(env, notes);
        if (rc == MG_AGAIN)
            mg_buf_printf(notes, "console: MODELGATE_CONSOLE_DIR=%s is not a readable directory\n", env);
        return rc == MG_OK ? MG_OK : rc == MG_ENOMEM ? MG_ENOMEM : MG_ERR;
    }
    char cand[3][PATH_MAX];
    size_t ncand = 0;
    snprintf(cand[ncand++], PATH_MAX, "admin");
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(cand[ncand++], PATH_MAX, "%.*s/../admin", PATH_MAX - 16, exe);
            snprintf(cand[ncand++], PATH_MAX, "%.*s/../share/modelgate/admin", PATH_MAX - 32, exe);
        }
    }
    for (size_t i = 0; i < ncand; i++) {
        mg_rc rc = load_dir(cand[i], notes);
        if (rc != MG_AGAIN) {
            if (rc == MG_OK && g.nfiles == 0)
                continue;
            return rc;
        }
    }
    mg_buf_append_str(notes, "console: no admin/ directory found (set MODELGATE_CONSOLE_DIR); /admin/ answers 404\n");
    return MG_OK;
}

/* ---------------------------------------------------------------- serving */

static const console_file *find_file(const char *name)
{
    for (size_t i = 0; i < g.nfiles; i++)
        if (strcmp(g.files[i].name, name) == 0)
            return &g.files[i];
    return NULL;
}

/* No Cache-Control here: every response already says no-store
 * (gateway/response.c), which also keeps the pages of a signed-in admin
 * out of shared and disk caches. */
static const char security_headers[] =
    "Content-Security-Policy: " MG_CONSOLE_CSP "\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n";

static mg_stage_rc console_file_stage(mg_req *req)
{
    char name[64];
    const console_file *f = mg_console_file_name(req->path, name, sizeof(name)) ? find_file(name) : NULL;
    if (f == NULL) {
        req->error_code = "not_found";
        static const char body[] = "Not found\n";
        mg_req_respond(req, 404, "text/plain; charset=utf-8", body, sizeof(body) - 1, security_headers);
        return MG_STAGE_RESPONDED;
    }
    mg_req_respond(req, 200, f->content_type, f->data, f->len, security_headers);
    return MG_STAGE_RESPONDED;
}

static void json_str_field(mg_buf *b, const char *name, const char *v)
{
    mg_buf_printf(b, ",\"%s\":", name);
    if (v)
        mg_buf_append_json_str(b, v, strlen(v));
    else
        mg_buf_append_str(b, "null");
}

static void json_roles(mg_buf *b, const mg_principal *p)
{
    mg_buf_append_str(b, ",\"roles\":[");
    if (p->nroles) {
        for (size_t i = 0; i < p->nroles; i++) {
            if (i)
                mg_buf_append(b, ",", 1);
            mg_buf_append_json_str(b, p->role_list[i], strlen(p->role_list[i]));
        }
    } else if (p->roles) {
        /* Claims-mapped roles exist only as the comma-separated form. */
        const char *s = p->roles;
        for (bool first = true; *s; first = false) {
            const char *comma = strchr(s, ',');
            size_t n = comma ? (size_t)(comma - s) : strlen(s);
            if (!first)
                mg_buf_append(b, ",", 1);
            mg_buf_append_json_str(b, s, n);
            s += n + (comma ? 1 : 0);
        }
    }
    mg_buf_append_str(b, "]");
}

static const char *const all_permissions[] = {"policy:read", "policy:write", "keys:read", "keys:write",
                                              "usage:read", "audit:read"};

/* Who is signed in, their permissions (the console shows only what they may
 * use) and the configured models (for the role editor's model picker; only
 * to those who may read the policy). */
static mg_stage_rc console_context_stage(mg_req *req)
{
    bool have_policy = mg_policy_resolve(req) == MG_OK;
    const mg_principal *p = &req->principal;
    mg_buf b = {0};
    mg_buf_append_str(&b, "{\"kind\":");
    mg_buf_append_json_str(&b, p->kind ? p->kind : "unknown", strlen(p->kind ? p->kind : "unknown"));
    json_str_field(&b, "subject", p->subject);
    json_str_field(&b, "email", p->email);
    json_str_field(&b, "name", p->name);
    json_roles(&b, p);
    mg_buf_append_str(&b, ",\"permissions\":[");
    size_t k = 0;
    for (size_t i = 0; i < MG_ARRAY_LEN(all_permissions); i++) {
        bool can = mg_principal_can(p, all_permissions[i]) ||
                   (strcmp(all_permissions[i], "policy:read") == 0 && mg_principal_can(p, "policy:write")) ||
                   (strcmp(all_permissions[i], "keys:read") == 0 && mg_principal_can(p, "keys:write"));
        if (!can)
            continue;
        if (k++)
            mg_buf_append(&b, ",", 1);
        mg_buf_append_json_str(&b, all_permissions[i], strlen(all_permissions[i]));
    }
    mg_buf_printf(&b, "],\"policy_loaded\":%s,\"models\":[", have_policy ? "true" : "false");
    const mg_config *cfg = req->snap->cfg;
    if (mg_principal_can(p, "policy:read") || mg_principal_can(p, "policy:write")) {
        for (size_t i = 0; i < cfg->nmodels; i++) {
            const mg_cfg_model *m = &cfg->models[i];
            mg_buf_append_str(&b, i ? ",{\"name\":" : "{\"name\":");
            mg_buf_append_json_str(&b, m->name, strlen(m->name));
            if (m->has_price)
                mg_buf_printf(&b, ",\"input_per_mtok\":%.6g,\"output_per_mtok\":%.6g}", m->input_per_mtok,
                              m->output_per_mtok);
            else
                mg_buf_append_str(&b, "}");
        }
    }
    if (mg_buf_append_str(&b, "]}") != MG_OK) {
        mg_buf_free(&b);
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    mg_req_respond(req, 200, "application/json", b.p, b.len, NULL);
    mg_buf_free(&b);
    return MG_STAGE_RESPONDED;
}

/* Both routes authenticate first, with the same stage the API uses: a
 * browser without a (valid) session is redirected to sign in, anything
 * else without credentials gets 401. */
static const mg_stage file_stages[] = {
    {"authenticate", mg_auth_stage},
    {"console", console_file_stage},
};
static const mg_stage context_stages[] = {
    {"authenticate", mg_auth_stage},
    {"console", console_context_stage},
};

void mg_console_serve(mg_req *req)
{
    if (strcmp(req->path, "/admin") == 0) {
        static const char body[] = "see /admin/\n";
        mg_req_respond(req, 301, "text/plain; charset=utf-8", body, sizeof(body) - 1, "Location: /admin/\r\n");
        return;
    }
    req->stages = file_stages;
    req->nstages = MG_ARRAY_LEN(file_stages);
    req->next_stage = 0;
    mg_pipeline_run(req);
}

void mg_console_context(mg_req *req)
{
    req->stages = context_stages;
    req->nstages = MG_ARRAY_LEN(context_stages);
    req->next_stage = 0;
    mg_pipeline_run(req);
}
