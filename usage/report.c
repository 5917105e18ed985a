/* modelgate — usage reports, reconciliation and retention (SPEC §2, §6).
 *
 *   modelgate usage --from DATE --to DATE [--group-by K,...] [--filter K=V ...]
 *                   [--format table|csv|json]
 *   modelgate usage reconcile [--ids FILE] [--from DATE --to DATE]
 *   modelgate usage export --month YYYY-MM -o FILE.csv
 *   modelgate usage drop --month YYYY-MM --confirm
 *
 * A report is one GROUP BY over usage_rollup_daily (daily sums kept exact by
 * the shipper) when it groups and filters only on the rollup's dimensions,
 * else over usage_events (one scan); the totals row is
 * the exact sum of the groups, computed in C with integers (cost in units of
 * 1e-10 USD), so rows and totals always agree. Sums are PostgreSQL numeric
 * printed as PostgreSQL prints them: nothing passes through a double.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "usage/usage_int.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct gkey {
    const char *name;
    const char *expr;  /* grouped / filtered on in usage_events (cheap per row) */
    const char *roll;  /* the same over usage_rollup_daily; NULL: not a rollup dimension */
    bool group;        /* usable in --group-by (all are usable in --filter) */
    const char *fmt;   /* printf format turning the grouped value g into text, once per group */
} gkey;

static const gkey KEYS[] = {
    {"user", "coalesce(email, subject)", "coalesce(email, subject)", true, NULL},
    {"role", "roles", "roles", true, NULL},
    {"model", "model", "model", true, NULL},
    {"provider", "provider", "provider", true, NULL},
    {"day", "(ts AT TIME ZONE 'UTC')::date", "day", true, "%s::text"},
    {"month", "date_trunc('month', ts AT TIME ZONE 'UTC')", "date_trunc('month', day::timestamp)", true,
     "to_char(%s, 'YYYY-MM')"},
    {"cost_center", "cost_center", "cost_center", true, NULL},
    {"key", "key_id", "key_id", true, NULL},
    {"served_model", "served_model", NULL, false, NULL},
    {"upstream_model", "upstream_model", NULL, false, NULL},
    {"status", "status::text", NULL, false, NULL},
    {"email", "email", "email", false, NULL},
    {"subject", "subject", "subject", false, NULL},
};

static const gkey *find_key(const char *name, bool group)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(KEYS); i++)
        if (strcmp(KEYS[i].name, name) == 0 && (KEYS[i].group || !group))
            return &KEYS[i];
    return NULL;
}

static void days_to_date(int64_t z, char out[16])
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    snprintf(out, 16, "%04d-%02d-%02d", (int)(y + (m <= 2)), (int)m, (int)d);
}

/* ---- output ------------------------------------------------------------- */

/* One CSV cell (RFC 4180 quoting). Text cells (group-by values: user
 * emails, cost centers, key names — all from outside) that a spreadsheet
 * would run as a formula (leading = + - @, tab or CR) get a leading ' so
 * finance opening the file runs nothing (OWASP "CSV injection"); the
 * metric columns are numbers and are written as they are. */
static void csv_field(mg_buf *b, const char *s, bool text)
{
    bool formula = text && s[0] != '\0' && strchr("=+-@\t\r", s[0]) != NULL;
    bool quote = s[0] == '\0' ? false : formula || strpbrk(s, ",\"\r\n") != NULL || s[0] == ' ' ||
                                         s[strlen(s) - 1] == ' ';
    if (!quote) {
        mg_buf_append_str(b, s);
        return;
    }
    mg_buf_append(b, "\"", 1);
    if (formula)
        mg_buf_append(b, "'", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"') mg_buf_append(b, "\"", 1);
        mg_buf_append(b, p, 1);
    }
    mg_buf_append(b, "\"", 1);
}

static const char *const METRICS[] = {"requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd"};

static void out_csv(mg_buf *b, const mg_usage_report_params *p, PGresult *rows)
{
    int nf = PQnfields(rows);
    for (int f = 0; f < nf; f++) {
        if (f) mg_buf_append(b, ",", 1);
        mg_buf_append_str(b, f < (int)p->ngroup ? p->group_by[f] : METRICS[f - (int)p->ngroup]);
    }
    mg_buf_append(b, "\n", 1);
    for (int r = 0; r < PQntuples(rows); r++) {
        for (int f = 0; f < nf; f++) {
            if (f) mg_buf_append(b, ",", 1);
            csv_field(b, PQgetvalue(rows, r, f), f < (int)p->ngroup);
        }
        mg_buf_append(b, "\n", 1);
    }
}

typedef char totals[5][64];

static void json_metrics(mg_buf *b, PGresult *res, int row, int first, const totals *tot)
{
    for (int k = 0; k < 5; k++)
        mg_buf_printf(b, "%s\"%s\":%s", k ? "," : "", METRICS[k], tot ? (*tot)[k] : PQgetvalue(res, row, first + k));
}

/* Exact sums of the rows: integers, and cost as an integer count of 1e-10
 * USD (the query returns numeric(30,10), always with 10 decimals). */
static bool sum_rows(PGresult *rows, int first, totals *out)
{
    int64_t n[4] = {0, 0, 0, 0};
    __int128 cost = 0;
    for (int r = 0; r < PQntuples(rows); r++) {
        for (int k = 0; k < 4; k++)
            n[k] += strtoll(PQgetvalue(rows, r, first + k), NULL, 10);
        const char *c = PQgetvalue(rows, r, first + 4);
        __int128 v = 0;
        int frac = -1;
        for (; *c; c++) {
            if (*c == '.') { frac = 0; continue; }
            if (*c < '0' || *c > '9') return false;
            v = v * 10 + (*c - '0');
            if (frac >= 0) frac++;
        }
        if (frac != 10) return false;
        cost += v;
    }
    for (int k = 0; k < 4; k++)
        snprintf((*out)[k], sizeof (*out)[k], "%lld", (long long)n[k]);
    char digits[64];
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + (int)(cost % 10));
        cost /= 10;
    } while (cost > 0 || nd < 11);
    char *o = (*out)[4];
    int pos = 0;
    for (int i = nd - 1; i >= 0; i--) {
        o[pos++] = digits[i];
        if (i == 10) o[pos++] = '.';
    }
    o[pos] = '\0';
    return true;
}

static void out_json(mg_buf *b, const mg_usage_report_params *p, const char *from, const char *to,
                     PGresult *rows, const totals *tot)
{
    mg_buf_printf(b, "{\"from\":\"%s\",\"to\":\"%s\",\"group_by\":[", from, to);
    for (size_t g = 0; g < p->ngroup; g++)
        mg_buf_printf(b, "%s\"%s\"", g ? "," : "", p->group_by[g]);
    mg_buf_append_str(b, "],\"rows\":[");
    int ng = (int)p->ngroup;
    for (int r = 0; r < PQntuples(rows); r++) {
        mg_buf_append_str(b, r ? ",{" : "{");
        for (int g = 0; g < ng; g++) {
            mg_buf_printf(b, "\"%s\":", p->group_by[g]);
            if (PQgetisnull(rows, r, g)) {
                mg_buf_append_str(b, "null");
            } else {
                const char *v = PQgetvalue(rows, r, g);
                mg_buf_append_json_str(b, v, strlen(v));
            }
            mg_buf_append(b, ",", 1);
        }
        json_metrics(b, rows, r, ng, NULL);
        mg_buf_append(b, "}", 1);
    }
    mg_buf_append_str(b, "],\"totals\":{");
    json_metrics(b, NULL, 0, 0, tot);
    mg_buf_append_str(b, "}}\n");
}

static void pad(mg_buf *b, const char *s, size_t w, bool right)
{
    size_t n = strlen(s);
    if (right) for (size_t i = n; i < w; i++) mg_buf_append(b, " ", 1);
    mg_buf_append_str(b, s);
    if (!right) for (size_t i = n; i < w; i++) mg_buf_append(b, " ", 1);
}

static void out_table(mg_buf *b, const mg_usage_report_params *p, PGresult *rows, const totals *tot)
{
    int nf = PQnfields(rows), ng = (int)p->ngroup, nr = PQntuples(rows);
    size_t w[MG_USAGE_MAX_GROUP + 5];
    for (int f = 0; f < nf; f++) {
        const char *h = f < ng ? p->group_by[f] : METRICS[f - ng];
        w[f] = strlen(h);
        for (int r = 0; r < nr; r++)
            if (strlen(PQgetvalue(rows, r, f)) > w[f]) w[f] = strlen(PQgetvalue(rows, r, f));
        if (f >= ng && strlen((*tot)[f - ng]) > w[f]) w[f] = strlen((*tot)[f - ng]);
        if (f == 0 && ng > 0 && w[f] < 5) w[f] = 5;
    }
    for (int f = 0; f < nf; f++) {
        if (f) mg_buf_append_str(b, "  ");
        pad(b, f < ng ? p->group_by[f] : METRICS[f - ng], w[f], f >= ng);
    }
    mg_buf_append(b, "\n", 1);
    for (int r = 0; r < nr; r++) {
        for (int f = 0; f < nf; f++) {
            if (f) mg_buf_append_str(b, "  ");
            pad(b, PQgetisnull(rows, r, f) ? "-" : PQgetvalue(rows, r, f), w[f], f >= ng);
        }
        mg_buf_append(b, "\n", 1);
    }
    if (ng == 0)
        return;
    for (int f = 0; f < nf; f++) {
        if (f) mg_buf_append_str(b, "  ");
        pad(b, f == 0 ? "TOTAL" : f < ng ? "" : (*tot)[f - ng], w[f], f >= ng);
    }
    mg_buf_append(b, "\n", 1);
}

/* ---- the report --------------------------------------------------------- */

static const char METRIC_SQL[] =
    "count(*) AS n, coalesce(sum(prompt_tokens), 0) AS pt, coalesce(sum(completion_tokens), 0) AS ct,"
    " coalesce(sum(prompt_tokens + completion_tokens), 0) AS tt, coalesce(sum(cost_usd), 0) AS cost";
static const char ROLL_METRIC_SQL[] =
    "coalesce(sum(requests), 0) AS n, coalesce(sum(prompt_tokens), 0) AS pt,"
    " coalesce(sum(completion_tokens), 0) AS ct,"
    " coalesce(sum(prompt_tokens + completion_tokens), 0) AS tt, coalesce(sum(cost_usd), 0) AS cost";

/* The daily rollup answers a report when every group-by and filter key is
 * one of its dimensions: the date range is whole UTC days, so summing the
 * days' rows gives exactly what summing the events would. Anything else
 * scans usage_events. MODELGATE_USAGE_NO_ROLLUP=1 forces the scan (for
 * checking one against the other). */
static bool use_rollup(const mg_usage_report_params *p)
{
    const char *off = getenv("MODELGATE_USAGE_NO_ROLLUP");
    if (off && *off && strcmp(off, "0") != 0)
        return false;
    for (size_t g = 0; g < p->ngroup; g++) {
        const gkey *k = find_key(p->group_by[g], true);
        if (k == NULL || k->roll == NULL)
            return false;
    }
    for (size_t i = 0; i < p->nfilter; i++) {
        const gkey *k = find_key(p->filter_field[i], false);
        if (k == NULL || k->roll == NULL)
            return false;
    }
    return true;
}

static PGresult *run(PGconn *c, const char *sql, int n, const char *const *v, char *err, size_t errsz)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK)
        return r;
    const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
    snprintf(err, errsz, "%.*s", (int)strcspn(m, "\n"), m);
    PQclear(r);
    return NULL;
}

mg_rc mg_usage_report_query(const char *conninfo, const mg_usage_report_params *p,
                            mg_buf *out, char *err, size_t errsz)
{
    int64_t dfrom, dto;
    if (mg_usage_parse_date(p->from, &dfrom) != MG_OK || mg_usage_parse_date(p->to, &dto) != MG_OK) {
        snprintf(err, errsz, "--from and --to must be dates YYYY-MM-DD");
        return MG_ERR;
    }
    if (dto < dfrom) {
        snprintf(err, errsz, "--to is before --from");
        return MG_ERR;
    }
    if (p->ngroup > MG_USAGE_MAX_GROUP || p->nfilter > MG_USAGE_MAX_FILTER) {
        snprintf(err, errsz, "too many --group-by or --filter terms");
        return MG_ERR;
    }
    mg_buf sql = {0}, where = {0};
    const char *params[2 + MG_USAGE_MAX_FILTER];
    char from[16], to_excl[16];
    days_to_date(dfrom, from);
    days_to_date(dto + 1, to_excl);
    params[0] = from;
    params[1] = to_excl;
    bool roll = use_rollup(p);
    if (roll)
        mg_buf_append_str(&where, " FROM usage_rollup_daily WHERE day >= $1::date AND day < $2::date");
    else
        mg_buf_append_str(&where, " FROM usage_events WHERE ts >= ($1::date::timestamp AT TIME ZONE 'UTC')"
                                  " AND ts < ($2::date::timestamp AT TIME ZONE 'UTC')");
    for (size_t i = 0; i < p->nfilter; i++) {
        const gkey *k = find_key(p->filter_field[i], false);
        if (k == NULL) {
            snprintf(err, errsz, "unknown filter field \"%s\"", p->filter_field[i]);
            goto bad;
        }
        const char *expr = roll ? k->roll : k->expr;
        mg_buf_append_str(&where, " AND ");
        if (k->fmt) mg_buf_printf(&where, k->fmt, expr);   /* compare as displayed */
        else mg_buf_append_str(&where, expr);
        mg_buf_printf(&where, " = $%zu", i + 3);
        params[i + 2] = p->filter_value[i];
    }
    /* Group on cheap raw expressions in an inner query; format the few
     * result groups (dates) in the outer one. One scan; totals are summed
     * exactly from the groups in C. */
    mg_buf outer = {0};
    mg_buf_append_str(&sql, "SELECT ");
    mg_buf_append_str(&outer, "SELECT ");
    for (size_t g = 0; g < p->ngroup; g++) {
        const gkey *k = find_key(p->group_by[g], true);
        if (k == NULL) {
            snprintf(err, errsz, "unknown group-by key \"%s\" (user, role, model, provider, day, month, cost_center, key)",
                     p->group_by[g]);
            mg_buf_free(&outer);
            goto bad;
        }
        for (size_t h = 0; h < g; h++)
            if (strcmp(p->group_by[h], p->group_by[g]) == 0) {
                snprintf(err, errsz, "group-by key \"%s\" given twice", p->group_by[g]);
                mg_buf_free(&outer);
                goto bad;
            }
        mg_buf_printf(&sql, "%s AS g%zu, ", roll ? k->roll : k->expr, g);
        char col[32];   /* "g" + any size_t */
        snprintf(col, sizeof col, "g%zu", g);
        if (k->fmt) mg_buf_printf(&outer, k->fmt, col);
        else mg_buf_append_str(&outer, col);
        mg_buf_append_str(&outer, ", ");
    }
    mg_buf_append_str(&sql, roll ? ROLL_METRIC_SQL : METRIC_SQL);
    mg_buf_append(&sql, where.p, where.len);
    if (p->ngroup) {
        mg_buf_append_str(&sql, " GROUP BY ");
        for (size_t g = 0; g < p->ngroup; g++) mg_buf_printf(&sql, "%s%zu", g ? ", " : "", g + 1);
    }
    mg_buf_append_str(&outer, "n, pt, ct, tt, cost::numeric(30,10) FROM (");
    mg_buf_append(&outer, sql.p, sql.len);
    mg_buf_append_str(&outer, ") q");
    for (size_t g = 0; g < p->ngroup; g++) mg_buf_printf(&outer, "%sg%zu", g ? ", " : " ORDER BY ", g);
    mg_buf_append(&outer, "", 1);

    mg_rc rc = MG_AGAIN;
    PGresult *rows = NULL;
    PGconn *c = mg_usage_cli_connect(conninfo, err, errsz);
    if (c == NULL)
        goto out;
    rows = run(c, outer.p, (int)p->nfilter + 2, params, err, errsz);
    totals tot;
    if (rows && !sum_rows(rows, (int)p->ngroup, &tot)) {
        snprintf(err, errsz, "unexpected cost format from the database");
        PQclear(rows);
        rows = NULL;
    }
    if (rows) {
        char to_incl[16];
        days_to_date(dto, to_incl);
        if (p->format == MG_USAGE_CSV) out_csv(out, p, rows);
        else if (p->format == MG_USAGE_JSON) out_json(out, p, from, to_incl, rows, &tot);
        else out_table(out, p, rows, &tot);
        rc = MG_OK;
    }
out:
    PQclear(rows);
    PQfinish(c);
    mg_buf_free(&outer);
    mg_buf_free(&sql);
    mg_buf_free(&where);
    return rc;
bad:
    mg_buf_free(&sql);
    mg_buf_free(&where);
    return MG_ERR;
}

/* ---- CLI: report ------------------------------------------------------- */

static const char USAGE_HELP[] =
    "usage: modelgate usage --from YYYY-MM-DD --to YYYY-MM-DD [--group-by K[,K...]]\n"
    "                       [--filter K=VALUE ...] [--format table|csv|json] [-c FILE]\n"
    "       modelgate usage reconcile [--ids FILE] [--from DATE --to DATE]\n"
    "       modelgate usage export --month YYYY-MM -o FILE.csv\n"
    "       modelgate usage drop --month YYYY-MM --confirm\n"
    "group-by keys: user, role, model, provider, day, month, cost_center, key\n"
    "filter keys: the group-by keys plus served_model, upstream_model, status, email, subject\n"
    "dates are UTC days, both inclusive. CSV columns: the group-by keys in order, then\n"
    "requests,prompt_tokens,completion_tokens,total_tokens,cost_usd\n"
    "exit codes: 0 ok, 1 user error (or reconcile found differences), 2 database error\n";

static int add_groups(mg_usage_report_params *p, char *list)
{
    for (char *t = list; t;) {
        char *comma = strchr(t, ',');
        if (comma) *comma = '\0';
        if (*t) {
            if (p->ngroup == MG_USAGE_MAX_GROUP) return 1;
            p->group_by[p->ngroup++] = t;
        }
        t = comma ? comma + 1 : NULL;
    }
    return 0;
}

static int cli_report(int argc, char **argv, const mg_config *cfg)
{
    mg_usage_report_params p = {0};
    for (int i = 1; i < argc; i++) {
        int skip = mg_usage_cli_skip_config(argc, argv, i);
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (skip) { i += skip - 1; continue; }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { fputs(USAGE_HELP, stdout); return 0; }
        if (v == NULL) { fprintf(stderr, "modelgate usage: %s needs a value\n", a); return 1; }
        i++;
        if (strcmp(a, "--from") == 0) p.from = v;
        else if (strcmp(a, "--to") == 0) p.to = v;
        else if (strcmp(a, "--group-by") == 0) {
            if (add_groups(&p, argv[i])) { fprintf(stderr, "modelgate usage: too many group-by keys\n"); return 1; }
        } else if (strcmp(a, "--filter") == 0) {
            char *eq = strchr(argv[i], '=');
            if (eq == NULL || eq == argv[i] || p.nfilter == MG_USAGE_MAX_FILTER) {
                fprintf(stderr, "modelgate usage: --filter takes FIELD=VALUE\n");
                return 1;
            }
            *eq = '\0';
            p.filter_field[p.nfilter] = argv[i];
            p.filter_value[p.nfilter++] = eq + 1;
        } else if (strcmp(a, "--format") == 0) {
            if (strcmp(v, "table") == 0) p.format = MG_USAGE_TABLE;
            else if (strcmp(v, "csv") == 0) p.format = MG_USAGE_CSV;
            else if (strcmp(v, "json") == 0) p.format = MG_USAGE_JSON;
            else { fprintf(stderr, "modelgate usage: --format is table, csv or json\n"); return 1; }
        } else {
            fprintf(stderr, "modelgate usage: unexpected argument \"%s\" (see modelgate usage --help)\n", a);
            return 1;
        }
    }
    if (p.from == NULL || p.to == NULL) {
        fprintf(stderr, "modelgate usage: --from and --to are required\n");
        return 1;
    }
    mg_buf out = {0};
    char err[512] = "";
    mg_rc rc = mg_usage_report_query(cfg ? cfg->database_url : NULL, &p, &out, err, sizeof err);
    if (rc == MG_OK)
        fwrite(out.p, 1, out.len, stdout);
    else
        fprintf(stderr, "modelgate usage: %s\n", err);
    mg_buf_free(&out);
    return rc == MG_OK ? 0 : rc == MG_ERR ? 1 : (cfg && cfg->database_url ? 2 : 1);
}

/* ---- CLI: reconcile ---------------------------------------------------- */

static void add_id(mg_buf *copy, const char *id, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (c == '\\') mg_buf_append(copy, "\\\\", 2);
        else if (c == '\t' || c == '\n' || c == '\r') continue;
        else mg_buf_append(copy, &c, 1);
    }
    mg_buf_append(copy, "\n", 1);
}

/* Request ids of every record still in the journal (shipped or not). */
static size_t journal_ids(const char *dir, mg_buf *copy)
{
    size_t count = 0;
    DIR *d = dir ? opendir(dir) : NULL;
    if (d == NULL)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (mg_usage_seg_seq(de->d_name) == 0)
            continue;
        char path[4096 + 512];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path)
            continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) { if (fd >= 0) close(fd); continue; }
        size_t n = (size_t)st.st_size;
        uint8_t *buf = malloc(n ? n : 1);
        bool ok = buf && pread(fd, buf, n, 0) == (ssize_t)n;
        close(fd);
        for (size_t pos = 0; ok && pos < n;) {
            const uint8_t *pl;
            size_t plen, used;
            mg_jdec r = mg_usage_decode(buf + pos, n - pos, true, &pl, &plen, &used);
            if (r == MG_JDEC_NEED_MORE) break;
            if (r == MG_JDEC_OK) {
                cJSON *j = cJSON_ParseWithLength((const char *)pl, plen);
                const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "request_id");
                if (cJSON_IsString(id)) {
                    add_id(copy, id->valuestring, strlen(id->valuestring));
                    /* start records (incomplete) are satisfied by any row; a
                     * final only by a final row */
                    copy->len--;
                    mg_buf_append_str(copy, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "incomplete"))
                                                ? "\tt\n" : "\tf\n");
                    count++;
                }
                cJSON_Delete(j);
            }
            pos += used;
        }
        free(buf);
    }
    closedir(d);
    return count;
}

static bool copy_in(PGconn *c, const char *sql, const mg_buf *data, char *err, size_t errsz)
{
    PGresult *r = PQexec(c, sql);
    bool ok = r && PQresultStatus(r) == PGRES_COPY_IN;
    PQclear(r);
    if (ok) {
        ok = (data->len == 0 || PQputCopyData(c, data->p, (int)data->len) == 1) && PQputCopyEnd(c, NULL) == 1;
        r = PQgetResult(c);
        ok = ok && r && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        while ((r = PQgetResult(c)) != NULL) PQclear(r);
    }
    if (!ok)
        snprintf(err, errsz, "%.*s", (int)strcspn(PQerrorMessage(c), "\n"), PQerrorMessage(c));
    return ok;
}

static int print_ids(PGconn *c, const char *label, const char *sql, int n, const char *const *v, long *count)
{
    char err[512];
    PGresult *r = run(c, sql, n, v, err, sizeof err);
    if (r == NULL) {
        fprintf(stderr, "modelgate usage reconcile: %s\n", err);
        return 2;
    }
    *count = PQntuples(r);
    for (int i = 0; i < PQntuples(r); i++)
        printf("%s %s\n", label, PQgetvalue(r, i, 0));
    PQclear(r);
    return 0;
}

static int cli_reconcile(int argc, char **argv, const mg_config *cfg)
{
    const char *ids = NULL, *from = NULL, *to = NULL;
    for (int i = 2; i < argc; i++) {
        int skip = mg_usage_cli_skip_config(argc, argv, i);
        if (skip) { i += skip - 1; continue; }
        if (strcmp(argv[i], "--ids") == 0 && i + 1 < argc) ids = argv[++i];
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) from = argv[++i];
        else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) to = argv[++i];
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) { fputs(USAGE_HELP, stdout); return 0; }
        else { fprintf(stderr, "modelgate usage reconcile: unexpected argument \"%s\"\n", argv[i]); return 1; }
    }
    int64_t df = 0, dt = 0;
    if ((from || to) && (mg_usage_parse_date(from, &df) != MG_OK || mg_usage_parse_date(to, &dt) != MG_OK)) {
        fprintf(stderr, "modelgate usage reconcile: --from and --to must both be dates YYYY-MM-DD\n");
        return 1;
    }
    mg_buf jr = {0}, cl = {0};
    size_t njournal = journal_ids(cfg ? cfg->journal_dir : NULL, &jr), nclient = 0;
    if (ids) {
        FILE *f = fopen(ids, "r");
        if (f == NULL) {
            fprintf(stderr, "modelgate usage reconcile: cannot read %s: %s\n", ids, strerror(errno));
            mg_buf_free(&jr);
            return 1;
        }
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            size_t n = strcspn(line, "\r\n");
            if (n == 0) continue;
            add_id(&cl, line, n);
            nclient++;
        }
        fclose(f);
    }
    char err[512];
    int rc = 0;
    long jmiss = 0, miss = 0, extra = 0;
    PGconn *c = mg_usage_cli_connect(cfg ? cfg->database_url : NULL, err, sizeof err);
    if (c == NULL) {
        fprintf(stderr, "modelgate usage reconcile: %s\n", err);
        rc = 2;
        goto out;
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    PQclear(PQexec(c, "CREATE TEMP TABLE rc_journal (request_id text, incomplete boolean);"
                      " CREATE TEMP TABLE rc_client (request_id text)"));
    if (!copy_in(c, "COPY rc_journal FROM STDIN", &jr, err, sizeof err) ||
        !copy_in(c, "COPY rc_client FROM STDIN", &cl, err, sizeof err)) {
        fprintf(stderr, "modelgate usage reconcile: %s\n", err);
        rc = 2;
        goto out;
    }
    rc = print_ids(c, "unshipped", "SELECT DISTINCT j.request_id FROM rc_journal j WHERE NOT EXISTS"
                   " (SELECT 1 FROM usage_request_ids u WHERE u.request_id = j.request_id"
                   "  AND (j.incomplete OR NOT u.incomplete)) ORDER BY 1", 0, NULL, &jmiss);
    /* Rows that are still a start record: the gateway died before the
     * request ended; billed at the estimate (docs/ledger.md). Reported, not
     * an error: the request is in the ledger. */
    long inc = 0;
    if (rc == 0 && ids)
        rc = print_ids(c, "incomplete", "SELECT DISTINCT c.request_id FROM rc_client c JOIN usage_request_ids u"
                       " ON u.request_id = c.request_id WHERE u.incomplete ORDER BY 1", 0, NULL, &inc);
    if (rc == 0 && ids)
        rc = print_ids(c, "missing", "SELECT DISTINCT c.request_id FROM rc_client c WHERE NOT EXISTS"
                       " (SELECT 1 FROM usage_request_ids u WHERE u.request_id = c.request_id) ORDER BY 1", 0, NULL, &miss);
    if (rc == 0 && ids && from) {
        char f[16], t[16];
        days_to_date(df, f);
        days_to_date(dt + 1, t);
        const char *v[2] = {f, t};
        rc = print_ids(c, "extra", "SELECT u.request_id FROM usage_events u WHERE"
                       " u.ts >= ($1::date::timestamp AT TIME ZONE 'UTC') AND u.ts < ($2::date::timestamp AT TIME ZONE 'UTC')"
                       " AND NOT EXISTS (SELECT 1 FROM rc_client c WHERE c.request_id = u.request_id) ORDER BY 1", 2, v, &extra);
    }
    if (rc == 0) {
        printf("reconcile: journal %zu records, %ld not yet in the ledger", njournal, jmiss);
        if (ids)
            printf("; client ids %zu, missing %ld", nclient, miss);
        if (ids && from)
            printf(", extra %ld", extra);
        if (ids)
            printf(", incomplete %ld", inc);
        printf("\n");
        rc = (miss || extra) ? 1 : 0;
    }
out:
    PQfinish(c);
    mg_buf_free(&jr);
    mg_buf_free(&cl);
    return rc;
}

/* ---- CLI: retention ------------------------------------------------------ */

/* "YYYY-MM" -> month start and next month start as YYYY-MM-DD. */
static bool parse_month(const char *s, char from[32], char to[32], char part[48])
{
    if (s == NULL || strlen(s) != 7 || s[4] != '-')
        return false;
    char d[16];
    snprintf(d, sizeof d, "%s-01", s);
    int64_t days;
    if (mg_usage_parse_date(d, &days) != MG_OK)
        return false;
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int m = (s[5] - '0') * 10 + (s[6] - '0');
    snprintf(from, 32, "%04d-%02d-01", y, m);
    snprintf(to, 32, "%04d-%02d-01", m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1);
    snprintf(part, 48, "usage_events_%04d_%02d", y, m);
    return true;
}

static int cli_export(int argc, char **argv, const mg_config *cfg)
{
    const char *month = NULL, *path = NULL;
    for (int i = 2; i < argc; i++) {
        int skip = mg_usage_cli_skip_config(argc, argv, i);
        if (skip) { i += skip - 1; continue; }
        if (strcmp(argv[i], "--month") == 0 && i + 1 < argc) month = argv[++i];
        else if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc) path = argv[++i];
        else { fprintf(stderr, "modelgate usage export: unexpected argument \"%s\"\n", argv[i]); return 1; }
    }
    char from[32], to[32], part[48];
    if (!parse_month(month, from, to, part) || path == NULL) {
        fprintf(stderr, "modelgate usage export: needs --month YYYY-MM and -o FILE\n");
        return 1;
    }
    char tmp[4096], err[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    PGconn *c = mg_usage_cli_connect(cfg ? cfg->database_url : NULL, err, sizeof err);
    if (c == NULL) {
        fprintf(stderr, "modelgate usage export: %s\n", err);
        return 2;
    }
    int rc = 2;
    FILE *f = NULL;
    char sql[1024];
    /* COPY takes no parameters; from/to are digits we formatted ourselves. */
    snprintf(sql, sizeof sql,
             "COPY (SELECT * FROM usage_events WHERE ts >= ('%s'::timestamp AT TIME ZONE 'UTC')"
             " AND ts < ('%s'::timestamp AT TIME ZONE 'UTC') ORDER BY ts, request_id)"
             " TO STDOUT WITH (FORMAT csv, HEADER)", from, to);
    PQclear(PQexec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
    PGresult *r = PQexec(c, sql);
    if (r == NULL || PQresultStatus(r) != PGRES_COPY_OUT) {
        fprintf(stderr, "modelgate usage export: %s", PQerrorMessage(c));
        PQclear(r);
        goto out;
    }
    PQclear(r);
    if ((f = fopen(tmp, "w")) == NULL) {
        fprintf(stderr, "modelgate usage export: cannot write %s: %s\n", tmp, strerror(errno));
        rc = 1;
    }
    long lines = -1;
    char *row;
    int n;
    while ((n = PQgetCopyData(c, &row, 0)) > 0) {
        if (f && fwrite(row, 1, (size_t)n, f) != (size_t)n) rc = 2;
        lines++;
        PQfreemem(row);
    }
    r = PQgetResult(c);
    bool ok = n == -1 && r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (f) {
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
        ok = fclose(f) == 0 && ok;
        f = NULL;
        if (ok && rc != 1 && rename(tmp, path) == 0) {
            fprintf(stderr, "exported %ld rows of %s to %s\n", lines < 0 ? 0 : lines, month, path);
            rc = 0;
        } else {
            unlink(tmp);
            if (rc != 1) fprintf(stderr, "modelgate usage export: failed: %s", PQerrorMessage(c));
        }
    }
out:
    PQfinish(c);
    return rc;
}

static int cli_drop(int argc, char **argv, const mg_config *cfg)
{
    const char *month = NULL;
    bool confirm = false;
    for (int i = 2; i < argc; i++) {
        int skip = mg_usage_cli_skip_config(argc, argv, i);
        if (skip) { i += skip - 1; continue; }
        if (strcmp(argv[i], "--month") == 0 && i + 1 < argc) month = argv[++i];
        else if (strcmp(argv[i], "--confirm") == 0) confirm = true;
        else { fprintf(stderr, "modelgate usage drop: unexpected argument \"%s\"\n", argv[i]); return 1; }
    }
    char from[32], to[32], part[48];
    if (!parse_month(month, from, to, part)) {
        fprintf(stderr, "modelgate usage drop: needs --month YYYY-MM\n");
        return 1;
    }
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char cur[40];
    snprintf(cur, sizeof cur, "%04d-%02d-01", tm.tm_year + 1900, tm.tm_mon + 1);
    if (strcmp(from, cur) >= 0) {
        fprintf(stderr, "modelgate usage drop: refusing to drop the current or a future month\n");
        return 1;
    }
    char err[512];
    PGconn *c = mg_usage_cli_connect(cfg ? cfg->database_url : NULL, err, sizeof err);
    if (c == NULL) {
        fprintf(stderr, "modelgate usage drop: %s\n", err);
        return 2;
    }
    int rc = 2;
    const char *v[1] = {part};
    PGresult *r = run(c, "SELECT to_regclass($1) IS NOT NULL", 1, v, err, sizeof err);
    if (r == NULL || strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        fprintf(stderr, "modelgate usage drop: %s\n", r ? "no such month in the ledger" : err);
        rc = r ? 1 : 2;
        PQclear(r);
        goto out;
    }
    PQclear(r);
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*), coalesce(sum(cost_usd), 0) FROM %s", part);
    if ((r = run(c, sql, 0, NULL, err, sizeof err)) == NULL) {
        fprintf(stderr, "modelgate usage drop: %s\n", err);
        goto out;
    }
    fprintf(stderr, "%s: %s rows, cost_usd %s\n", month, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
    PQclear(r);
    if (!confirm) {
        fprintf(stderr, "not dropped: export it first (usage export --month %s -o FILE.csv), then add --confirm\n", month);
        rc = 1;
        goto out;
    }
    const char *dv[2] = {from, to};
    snprintf(sql, sizeof sql, "ALTER TABLE usage_events DETACH PARTITION %s; DROP TABLE %s", part, part);
    r = PQexec(c, "BEGIN");
    PQclear(r);
    r = PQexec(c, sql);
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (ok) {
        r = PQexecParams(c, "DELETE FROM usage_request_ids WHERE ts >= ($1::timestamp AT TIME ZONE 'UTC')"
                            " AND ts < ($2::timestamp AT TIME ZONE 'UTC')", 2, NULL, dv, NULL, NULL, 0);
        ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    if (ok) {   /* the month's report must now say 0, as the events do */
        r = PQexecParams(c, "DELETE FROM usage_rollup_daily WHERE day >= $1::date AND day < $2::date",
                         2, NULL, dv, NULL, NULL, 0);
        ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    r = PQexec(c, ok ? "COMMIT" : "ROLLBACK");
    ok = ok && r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (ok) {
        fprintf(stderr, "dropped %s\n", month);
        rc = 0;
    } else {
        fprintf(stderr, "modelgate usage drop: %s", PQerrorMessage(c));
    }
out:
    PQfinish(c);
    return rc;
}

int mg_cli_usage(int argc, char **argv, const mg_config *cfg)
{
    if (argc >= 2 && strcmp(argv[1], "reconcile") == 0) return cli_reconcile(argc, argv, cfg);
    if (argc >= 2 && strcmp(argv[1], "export") == 0) return cli_export(argc, argv, cfg);
    if (argc >= 2 && strcmp(argv[1], "drop") == 0) return cli_drop(argc, argv, cfg);
    return cli_report(argc, argv, cfg);
}
