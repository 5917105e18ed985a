/* modelgate — the policy stages: authorize, filter_input, limits, and the
 * output filter and settlement on the reply path.
 *
 * The policy in force comes from policy/store.c (mg_policy_current: the
 * newest version in PostgreSQL, swapped in within a second of a change).
 * A request takes its principal's effective policy once, in authorize, and
 * keeps it (and so the version it started with) to the end.
 *
 * The master key is the break-glass credential: every model, every
 * permission, no filters, no limits. Anyone else gets exactly what their
 * roles grant; with no policy loaded, nothing.
 *
 * Limits (requests/tokens per minute, token and USD budgets per day and
 * month, per user and per role) are counted in this process. With a
 * database, budgets are also shared by every instance through leases
 * (policy/lease.c): a request reserves against this instance's lease, and
 * one that the lease cannot cover parks until the lease thread's next round
 * (a refill) and tries again. Rate windows stay per instance. Bounds in
 * docs/policy.md.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "gateway/pipeline.h"

#include "gateway/json.h"
#include "gateway/log.h"
#include "gateway/server.h"
#include "policy/lease.h"
#include "policy/policy_int.h"
#include "adapters/adapter.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

mg_policy *mg_policy_current(void);   /* policy/store.c */
int64_t mg_policy_store_version(void); /* policy/store.c */

#define MG_POLICY_MAX_ROLES 32
#define MG_POLICY_MAX_TEAMS 8
#define MG_POLICY_STATE_MAX (1u << 20)   /* principals + roles tracked */

/* ---------------------------------------------------------------- counters */

typedef struct limit_state {
    struct limit_state *next;
    mg_policy_window rpm, tpm;
    mg_policy_budgets budgets;
    mg_policy_lease_set lease;  /* shares budgets across instances (with a database) */
    char key[];
} limit_state;

static pthread_mutex_t state_mu = PTHREAD_MUTEX_INITIALIZER;
static limit_state *state_tab[4096];
static size_t state_n;

/* The counters of one principal ("u:" + subject) or role ("t:" + name);
 * created on first use, never freed (one small struct per user). NULL when
 * the table is full or memory ran out: the caller fails closed. */
static limit_state *state_find(const char *prefix, const char *name, bool create)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *s = prefix; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    for (const char *s = name; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    size_t slot = h % MG_ARRAY_LEN(state_tab), plen = strlen(prefix), nlen = strlen(name);
    pthread_mutex_lock(&state_mu);
    limit_state *st = state_tab[slot];
    while (st && !(strncmp(st->key, prefix, plen) == 0 && strcmp(st->key + plen, name) == 0))
        st = st->next;
    if (st == NULL && create && state_n < MG_POLICY_STATE_MAX &&
        (st = calloc(1, sizeof(*st) + plen + nlen + 1))) {
        memcpy(st->key, prefix, plen);
        memcpy(st->key + plen, name, nlen + 1);
        st->lease.budgets = &st->budgets;
        st->lease.scope = st->key;
        st->next = state_tab[slot];
        state_tab[slot] = st;
        state_n++;
    }
    pthread_mutex_unlock(&state_mu);
    return st;
}

static limit_state *state_get(const char *prefix, const char *name) { return state_find(prefix, name, true); }

/* What a request holds until it is settled. */
typedef struct policy_hold {
    limit_state *user;
    mg_policy_budget_hold user_hold;
    int64_t tpm_reserved;
    limit_state *team[MG_POLICY_MAX_TEAMS];
    mg_policy_budget_hold team_hold[MG_POLICY_MAX_TEAMS];
    size_t nteam;
    bool settled;
} policy_hold;

/* ---------------------------------------------------------------- resolve */

static bool principal_claim(void *ctx, const char *name, const char *value)
{
    const mg_principal *p = ctx;
    if (strcmp(name, "groups") == 0) {
        for (size_t i = 0; i < p->ngroups; i++)
            if (strcmp(p->groups[i], value) == 0)
                return true;
        return false;
    }
    const char *v = strcmp(name, "email") == 0 ? p->email
                    : strcmp(name, "sub") == 0 ? p->subject
                    : strcmp(name, "cost_center") == 0 ? p->cost_center : NULL;
    return v && strcmp(v, value) == 0;
}

static void effective_free(void *e) { mg_policy_effective_free(e); }

mg_rc mg_policy_resolve(mg_req *req)
{
    if (req->principal.master || req->policy)
        return MG_OK;
    mg_policy *p = mg_policy_current();
    if (p == NULL)
        return MG_ERR;
    const char *roles[MG_POLICY_MAX_ROLES];
    size_t n = 0;
    for (size_t i = 0; i < req->principal.nroles && n < MG_POLICY_MAX_ROLES; i++)
        roles[n++] = req->principal.role_list[i];
    /* Claims-based principals (JWT, session) get their roles from the
     * policy's role mappings. */
    if (req->principal.ngroups || req->principal.email)
        n += mg_policy_map_roles(p, principal_claim, &req->principal, roles + n, MG_POLICY_MAX_ROLES - n);
    mg_policy_effective *e = mg_policy_effective_new(p, roles, n, NULL);
    mg_policy_unref(p);   /* e holds its own reference */
    if (e == NULL || mg_pool_cleanup_add(req->pool, effective_free, e) != MG_OK) {
        mg_policy_effective_free(e);
        return MG_ENOMEM;
    }
    req->policy = e;
    /* Permissions as names, for mg_principal_can. */
    unsigned bits = mg_policy_effective_permissions(e);
    const char **perms = mg_pool_calloc(req->pool, 8 * sizeof(*perms));
    size_t np = 0;
    for (unsigned b = 0; perms && b < 8; b++)
        if ((bits & (1u << b)) && mg_policy_permission_name(1u << b))
            perms[np++] = mg_policy_permission_name(1u << b);
    req->principal.permissions = perms;
    req->principal.npermissions = np;
    if (req->principal.roles == NULL && n > 0) {
        size_t len = 0;
        for (size_t i = 0; i < n; i++)
            len += strlen(roles[i]) + 1;
        char *s = mg_pool_alloc(req->pool, len);
        if (s) {
            s[0] = '\0';
            for (size_t i = 0, o = 0; i < n; i++) {
                size_t l = strlen(roles[i]);
                if (i)
                    s[o++] = ',';
                memcpy(s + o, roles[i], l + 1);
                o += l;
            }
            req->principal.roles = s;
        }
    }
    return MG_OK;
}

bool mg_policy_model_allowed(const mg_req *req, const mg_cfg_model *m)
{
    if (req->principal.master)
        return true;
    return req->policy && mg_policy_effective_model_allowed(req->policy, m->name);
}

/* ---------------------------------------------------------------- stages */

mg_stage_rc mg_policy_authorize_stage(mg_req *req)
{
    mg_rc rc = mg_policy_resolve(req);
    if (rc == MG_ENOMEM) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    if (rc != MG_OK) {
        mg_req_respond_error(req, 503, "server_error", "policy_unavailable",
                             "no role policy is loaded yet; try again shortly", 5);
        return MG_STAGE_RESPONDED;
    }
    if (req->api == MG_API_MODELS)
        return MG_STAGE_NEXT;
    const mg_config *cfg = req->snap->cfg;
    req->model = mg_config_model(cfg, req->model_name, strlen(req->model_name));
    if (req->model == NULL) {
        char msg[200];
        snprintf(msg, sizeof(msg), "model \"%.100s\" is not configured on this gateway",
                 req->model_name);
        mg_req_respond_error(req, 404, "invalid_request_error", "model_not_found", msg, 0);
        return MG_STAGE_RESPONDED;
    }
    if (!mg_policy_model_allowed(req, req->model)) {
        char msg[300];
        snprintf(msg, sizeof(msg), "model \"%.100s\" is not allowed for your roles (%.150s)",
                 req->model_name, req->principal.roles ? req->principal.roles : "none");
        mg_req_respond_error(req, 403, "permission_error", "model_not_allowed", msg, 0);
        return MG_STAGE_RESPONDED;
    }
    return MG_STAGE_NEXT;
}

static void set_decision(mg_req *req, const mg_policy_verdict *v)
{
    mg_buf d = {0};
    if (mg_policy_verdict_decision(v, &d) == MG_OK && d.len)
        req->decision = mg_pool_strndup(req->pool, d.p, d.len);
    mg_buf_free(&d);
}

static bool has_token(const char *list, const char *tok, size_t n)
{
    for (const char *p = list; *p;) {
        size_t m = strcspn(p, " ");
        if (m == n && memcmp(p, tok, n) == 0)
            return true;
        p += m + (p[m] == ' ');
    }
    return false;
}

/* The output filters' rules join the input's in the ledger's decision
 * column ("redacted:pii flagged:audit"), each once; an output that nothing
 * acted on leaves the input's decision as it was. */
static void set_output_decision(mg_req *req, const char *input, const mg_policy_verdict *v)
{
    req->decision = input;
    if (v->n_rules == 0)
        return;
    mg_buf out = {0}, d = {0};
    bool have_input = input && strcmp(input, "allowed") != 0;
    if (have_input)
        mg_buf_append_str(&out, input);
    if (mg_policy_verdict_decision(v, &d) == MG_OK && d.len && mg_buf_append(&d, "", 1) == MG_OK) {
        for (const char *t = d.p; *t;) {
            size_t n = strcspn(t, " ");
            if (!have_input || !has_token(input, t, n)) {
                if (out.len)
                    mg_buf_append(&out, " ", 1);
                mg_buf_append(&out, t, n);
            }
            t += n + (t[n] == ' ');
        }
    }
    if (out.len)
        req->decision = mg_pool_strndup(req->pool, out.p, out.len);
    mg_buf_free(&out);
    mg_buf_free(&d);
}

mg_stage_rc mg_policy_filter_input_stage(mg_req *req)
{
    if (req->policy == NULL || !mg_policy_effective_has_filters(req->policy, MG_POLICY_INPUT))
        return MG_STAGE_NEXT;
    mg_policy_verdict v;
    mg_policy_verdict_init(&v);
    mg_rc rc = mg_policy_filter_request(req->policy, req->json, req->api, &v);
    if (rc == MG_ENOMEM) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    set_decision(req, &v);
    if (v.blocked) {
        /* Name the rule, never the content. */
        char msg[200];
        snprintf(msg, sizeof(msg), "the request was blocked by content filter \"%.60s\" (%.40s)",
                 v.block_rule ? v.block_rule : "?", v.block_reason ? v.block_reason : "match");
        mg_req_respond_error(req, 403, "permission_error", "content_blocked", msg, 0);
        return MG_STAGE_RESPONDED;
    }
    if (v.redactions > 0)
        req->json_modified = true;   /* forward the redacted tree, not the client's bytes */
    return MG_STAGE_NEXT;
}

/* ---------------------------------------------------------------- budgets */

/* How many times one request may park waiting for a lease refill before it
 * is refused (each wait is one lease round, normally a few milliseconds). */
#define MG_POLICY_MAX_PARKS 6

/* Set by park_resume for the stage run it resumes: the loop thread runs
 * the stage right after, so a thread-local is enough. */
static _Thread_local int g_park_attempts;

/* 0 reserved, 1 refused (*which, *retry_after_s), 2 wait for a lease refill. */
static int reserve_budgets(limit_state *st, const mg_policy_limits *lim, int64_t unix_s, int64_t tokens,
                           int64_t usd, bool may_wait, mg_policy_budget_hold *h, mg_policy_limit *which,
                           int64_t *retry_after_s)
{
    if (!mg_policy_lease_enabled())
        return mg_policy_budgets_reserve(&st->budgets, lim, unix_s, tokens, usd, h, which, retry_after_s) ? 0 : 1;
    switch (mg_policy_lease_reserve(&st->lease, &st->budgets, lim, unix_s, tokens, usd, may_wait, h, which,
                                    retry_after_s)) {
    case MG_POLICY_LEASE_OK:
        return 0;
    case MG_POLICY_LEASE_WAIT:
        return 2;
    default:
        return 1;
    }
}

typedef struct lease_wait {
    mg_req *req;                /* NULL once the request went away (loop thread only) */
    mg_worker *worker;
    int attempts;
} lease_wait;

static void park_orphan(void *job) { ((lease_wait *)job)->req = NULL; }

/* On the request's loop, after a lease round: run the limits stage again. */
static void park_resume(void *arg)
{
    lease_wait *lw = arg;
    mg_req *req = lw->req;
    int attempts = lw->attempts;
    free(lw);
    if (req == NULL)
        return;
    req->job = NULL;
    req->next_stage--;          /* back to this stage */
    g_park_attempts = attempts;
    mg_pipeline_resume(req);
}

/* On the lease thread: back to the request's loop. */
static void park_wake(void *arg)
{
    lease_wait *lw = arg;
    if (mg_worker_post(lw->worker, park_resume, lw) != MG_OK)
        mg_log_error("budget leases: could not hand a parked request back to its worker");
}

static bool park(mg_req *req, int attempts)
{
    lease_wait *lw = malloc(sizeof(*lw));
    if (lw == NULL)
        return false;
    lw->req = req;
    lw->worker = req->worker;
    lw->attempts = attempts;
    if (mg_policy_lease_park(park_wake, lw) != MG_OK) {
        free(lw);
        return false;
    }
    req->job = lw;
    req->job_orphan = park_orphan;
    return true;
}

static const char *limit_code(mg_policy_limit l)
{
    return l == MG_POLICY_LIM_RPM || l == MG_POLICY_LIM_TPM ? "rate_limited" : "budget_exceeded";
}

mg_stage_rc mg_policy_limits_stage(mg_req *req)
{
    if (req->policy == NULL || req->api == MG_API_MODELS)
        return MG_STAGE_NEXT;
    mg_policy_limits lim;
    mg_policy_effective_limits(req->policy, req->model->name, &lim);
    int64_t effective_max = -1;
    bool clamped = false;
    if (mg_policy_clamp_max_tokens(req->json, lim.v[MG_POLICY_LIM_MAX_TOKENS], &effective_max, &clamped) != MG_OK) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "out of memory", 0);
        return MG_STAGE_RESPONDED;
    }
    if (clamped) {
        /* Clamping is silent in the body, so say it in the head: the client
         * learns why its reply may stop short. Also on a refusal below. */
        req->json_modified = true;
        char hdr[64];
        snprintf(hdr, sizeof(hdr), "X-Modelgate-Max-Tokens: %lld\r\n",
                 (long long)lim.v[MG_POLICY_LIM_MAX_TOKENS]);
        req->extra_headers = mg_pool_strndup(req->pool, hdr, strlen(hdr));
    }
    /* Worst case: the prompt estimate (deliberately high) plus the most the
     * model may generate (4096 when neither the client nor a role says),
     * once per completion asked for (`n`). */
    int64_t prompt = mg_policy_estimate_prompt_tokens(req->json, req->api);
    int64_t choices = req->api == MG_API_EMBEDDINGS ? 0 : mg_policy_completions(req->json);
    if (choices < 0) {
        mg_req_respond_error(req, 400, "invalid_request_error", "invalid_n",
                             "n (completions per request) may be at most 128", 0);
        return MG_STAGE_RESPONDED;
    }
    int64_t tokens = prompt + choices * (effective_max >= 0 ? effective_max : 4096);
    const mg_cfg_model *m = req->model;
    int64_t usd = m->has_price ? mg_policy_cost_micro_usd(prompt, tokens - prompt, m->input_per_mtok,
                                                          m->output_per_mtok) : 0;
    policy_hold *h = mg_pool_calloc(req->pool, sizeof(*h));
    const char *subject = req->principal.subject ? req->principal.subject : "?";
    if (h == NULL || (h->user = state_get("u:", subject)) == NULL) {
        mg_req_respond_error(req, 503, "server_error", "overloaded", "limit state unavailable", 0);
        return MG_STAGE_RESPONDED;
    }
    struct timespec mono, wall;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t now_s = (uint64_t)mono.tv_sec;
    int retry = mg_policy_window_admit(&h->user->rpm, now_s, 1, lim.v[MG_POLICY_LIM_RPM]);
    mg_policy_limit which = MG_POLICY_LIM_RPM;
    if (retry == 0) {
        retry = mg_policy_window_admit(&h->user->tpm, now_s, tokens, lim.v[MG_POLICY_LIM_TPM]);
        which = MG_POLICY_LIM_TPM;
        if (retry != 0)
            mg_policy_window_add(&h->user->rpm, now_s, -1);
        else
            h->tpm_reserved = lim.v[MG_POLICY_LIM_TPM] >= 0 ? tokens : 0;
    }
    bool windows_taken = retry == 0, user_taken = false, wait = false;
    const char *team_role = NULL;   /* the role whose team limit refused, for the message */
    int park_attempts = g_park_attempts;
    g_park_attempts = 0;
    bool may_wait = park_attempts < MG_POLICY_MAX_PARKS;
    if (retry == 0) {
        int64_t ra = 0;
        int rc = reserve_budgets(h->user, &lim, wall.tv_sec, tokens, usd, may_wait, &h->user_hold, &which, &ra);
        user_taken = rc == 0;
        wait = rc == 2;
        if (rc == 1)
            retry = (int)(ra > 0 ? ra : 1);
    }
    /* Team budgets: every role of the caller that grants this model and
     * sets team_limits is charged. */
    for (size_t i = 0; retry == 0 && !wait && i < mg_policy_effective_n_roles(req->policy) &&
                       h->nteam < MG_POLICY_MAX_TEAMS; i++) {
        const mg_policy_role_def *r = mg_policy_effective_role(req->policy, i);
        bool grants = false, any = false;
        for (size_t k = 0; k < r->n_models && !grants; k++)
            grants = mg_policy_glob_match(r->models[k], m->name);
        for (int l = 0; l < MG_POLICY_LIM__COUNT; l++)
            any |= r->team_limits.v[l] >= 0;
        if (!grants || !any)
            continue;
        limit_state *t = state_get("t:", r->name);
        int64_t ra = 0;
        int rc = t == NULL ? 1 : reserve_budgets(t, &r->team_limits, wall.tv_sec, tokens, usd, may_wait,
                                                 &h->team_hold[h->nteam], &which, &ra);
        if (rc == 2) {
            wait = true;
            break;
        }
        if (rc == 1) {
            retry = (int)(ra > 0 ? ra : 1);
            team_role = r->name;
            break;
        }
        h->team[h->nteam++] = t;
    }
    if (retry != 0 || wait) {
        /* Give back what this request had reserved so far. */
        if (user_taken)
            mg_policy_budgets_release(&h->user->budgets, &h->user_hold);
        if (windows_taken) {
            mg_policy_window_add(&h->user->rpm, now_s, -1);
            mg_policy_window_add(&h->user->tpm, now_s, -h->tpm_reserved);
        }
        for (size_t i = 0; i < h->nteam; i++)
            mg_policy_budgets_release(&h->team[i]->budgets, &h->team_hold[i]);
        if (wait) {
            if (park(req, park_attempts + 1))
                return MG_STAGE_PARKED;
            retry = 1;
        }
        /* Name the rule that decided: which limit, and whose (the
         * caller's own, or the team limit of one of their roles). */
        char msg[320];
        if (team_role)
            snprintf(msg, sizeof(msg), "budget limit reached (team_limits.%s of role %.150s, shared by its users); "
                     "retry after %d s", mg_policy_limit_name(which), team_role, retry);
        else
            snprintf(msg, sizeof(msg), "%s limit reached (limits.%s, per user); retry after %d s",
                     which == MG_POLICY_LIM_RPM || which == MG_POLICY_LIM_TPM ? "rate" : "budget",
                     mg_policy_limit_name(which), retry);
        mg_req_respond_error(req, 429, "rate_limit_error", limit_code(which), msg, retry);
        return MG_STAGE_RESPONDED;
    }
    req->policy_hold = h;
    return MG_STAGE_NEXT;
}

/* Settles the reservations with what the request really used (called once,
 * when the request ends however it ended). */
void mg_policy_settle(mg_req *req)
{
    policy_hold *h = req->policy_hold;
    if (h == NULL || h->settled)
        return;
    h->settled = true;
    int64_t pt = req->usage.prompt_tokens > 0 ? req->usage.prompt_tokens : 0;
    int64_t ct = req->usage.completion_tokens > 0 ? req->usage.completion_tokens : 0;
    const mg_cfg_model *m = req->model;
    int64_t usd = m && m->has_price ? mg_policy_cost_micro_usd(pt, ct, m->input_per_mtok, m->output_per_mtok) : 0;
    struct timespec mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    if (h->tpm_reserved)
        mg_policy_window_add(&h->user->tpm, (uint64_t)mono.tv_sec, pt + ct - h->tpm_reserved);
    mg_policy_budgets_settle(&h->user->budgets, &h->user_hold, pt + ct, usd);
    for (size_t i = 0; i < h->nteam; i++)
        mg_policy_budgets_settle(&h->team[i]->budgets, &h->team_hold[i], pt + ct, usd);
}

/* ---------------------------------------------------------------- describe */

static void json_name(mg_buf *b, const char *s) { mg_buf_append_json_str(b, s, strlen(s)); }

static void describe_value(mg_buf *b, const char *key, int64_t v, bool usd)
{
    if (usd)
        mg_buf_printf(b, ",\"%s\":%lld.%06lld", key, (long long)(v / 1000000), (long long)(v % 1000000));
    else
        mg_buf_printf(b, ",\"%s\":%lld", key, (long long)v);
}

/* One entry per limit the scope has. st may be NULL (nothing counted yet). */
static void describe_limits(mg_buf *b, bool *first, const char *scope, const mg_policy_limits *lim,
                            const limit_state *st, bool team)
{
    struct timespec mono, wall;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, &wall);
    for (int l = 0; l < MG_POLICY_LIM__COUNT; l++) {
        int64_t v = lim->v[l];
        if (v < 0 || (team && (l == MG_POLICY_LIM_RPM || l == MG_POLICY_LIM_TPM || l == MG_POLICY_LIM_MAX_TOKENS)))
            continue;
        mg_buf_append_str(b, *first ? "{" : ",{");
        *first = false;
        mg_buf_append_str(b, "\"scope\":");
        json_name(b, scope);
        mg_buf_append_str(b, ",\"limit\":");
        json_name(b, mg_policy_limit_name((mg_policy_limit)l));
        bool usd = l == MG_POLICY_LIM_USD_DAY || l == MG_POLICY_LIM_USD_MONTH;
        describe_value(b, "value", v, usd);
        if (l == MG_POLICY_LIM_MAX_TOKENS) {
            mg_buf_append_str(b, ",\"per\":\"request\",\"enforcement\":\"clamp\"}");
            continue;
        }
        if (l == MG_POLICY_LIM_RPM || l == MG_POLICY_LIM_TPM) {
            int64_t used = st ? mg_policy_window_sum(l == MG_POLICY_LIM_RPM ? &st->rpm : &st->tpm,
                                                     (uint64_t)mono.tv_sec) : 0;
            describe_value(b, "used", used, false);
            describe_value(b, "left", used < v ? v - used : 0, false);
            mg_buf_append_str(b, ",\"window\":\"sliding_60s\",\"resets_in_s\":60,\"counted\":\"this_instance\"}");
            continue;
        }
        const mg_policy_budget *bud = NULL;
        int slot = 0;
        if (st) {
            const mg_policy_budget *all[] = {&st->budgets.tokens_day, &st->budgets.tokens_month,
                                             &st->budgets.usd_day, &st->budgets.usd_month};
            slot = l == MG_POLICY_LIM_TOKENS_DAY ? 0 : l == MG_POLICY_LIM_TOKENS_MONTH ? 1
                 : l == MG_POLICY_LIM_USD_DAY ? 2 : 3;
            bud = all[slot];
        }
        bool monthly = l == MG_POLICY_LIM_TOKENS_MONTH || l == MG_POLICY_LIM_USD_MONTH;
        int64_t period = monthly ? mg_policy_month_id(wall.tv_sec) : mg_policy_day_id(wall.tv_sec);
        int64_t used = bud ? mg_policy_budget_used(bud, period) : 0;
        int64_t committed = bud && atomic_load(&bud->period) == period ? atomic_load(&bud->committed) : 0;
        int64_t left = v - committed;
        bool shared = mg_policy_lease_enabled();
        if (shared) {
            /* What this instance may still admit: its free lease plus what
             * the database had not handed out when last asked. */
            const mg_policy_lease *ls = st ? &st->lease.slot[slot] : NULL;
            int64_t granted = ls && atomic_load(&ls->period) == period ? atomic_load(&ls->granted) : 0;
            int64_t cluster = ls && atomic_load(&ls->period) == period
                                  ? atomic_load(&ls->cluster_spent) + atomic_load(&ls->cluster_leased) : 0;
            int64_t avail = (granted - committed) + (v - cluster);
            if (avail < left)
                left = avail;
            if (ls && atomic_load(&ls->period) == period)
                describe_value(b, "used_all_instances", atomic_load(&ls->cluster_spent), usd);
        }
        describe_value(b, "used", used, usd);
        describe_value(b, "reserved", committed - used > 0 ? committed - used : 0, usd);
        describe_value(b, "left", left > 0 ? left : 0, usd);
        mg_buf_printf(b, ",\"period\":\"%s\",\"resets_in_s\":%lld,\"counted\":\"%s\"}", monthly ? "month" : "day",
                      (long long)(monthly ? mg_policy_seconds_to_next_month(wall.tv_sec)
                                          : mg_policy_seconds_to_next_day(wall.tv_sec)),
                      shared ? "all_instances" : "this_instance");
    }
}

static const char *action_name(mg_policy_action a)
{
    return a == MG_POLICY_BLOCK ? "block" : a == MG_POLICY_REDACT ? "redact" : "flag";
}

static const char *direction_name(mg_policy_direction d)
{
    return d == MG_POLICY_INPUT ? "input" : d == MG_POLICY_OUTPUT ? "output" : "both";
}

mg_rc mg_policy_describe(const mg_req *req, mg_buf *out)
{
    if (out->len == 0 || out->p[out->len - 1] != '}')
        return MG_ERR;
    mg_buf b = {0};
    const mg_policy_effective *e = req->policy;
    if (req->principal.master) {
        mg_buf_append_str(&b, ",\"policy\":{\"master\":true,\"models\":[\"*\"],\"filters\":[],\"limits\":[]}");
    } else if (e == NULL) {
        mg_buf_append_str(&b, ",\"policy\":null");
    } else {
        const mg_policy_doc *doc = e->p->doc;
        mg_buf_printf(&b, ",\"policy\":{\"version\":%lld,\"roles\":[", (long long)mg_policy_store_version());
        for (size_t i = 0; i < e->n_roles; i++) {
            mg_buf_append_str(&b, i ? "," : "");
            json_name(&b, doc->roles[e->roles[i]].name);
        }
        mg_buf_append_str(&b, "],\"models\":[");
        bool first = true;
        for (size_t i = 0; i < e->n_roles; i++) {
            const mg_policy_role_def *r = &doc->roles[e->roles[i]];
            for (size_t k = 0; k < r->n_models; k++) {
                bool dup = false;   /* each pattern once */
                for (size_t j = 0; j < i && !dup; j++) {
                    const mg_policy_role_def *q = &doc->roles[e->roles[j]];
                    for (size_t x = 0; x < q->n_models && !dup; x++)
                        dup = strcmp(q->models[x], r->models[k]) == 0;
                }
                for (size_t x = 0; x < k && !dup; x++)
                    dup = strcmp(r->models[x], r->models[k]) == 0;
                if (dup)
                    continue;
                mg_buf_append_str(&b, first ? "" : ",");
                first = false;
                json_name(&b, r->models[k]);
            }
        }
        mg_buf_append_str(&b, "],\"filters\":[");
        for (size_t i = 0; i < e->n_filters; i++) {
            const mg_policy_filter_def *f = e->p->filters[e->filters[i]].def;
            mg_buf_append_str(&b, i ? ",{\"name\":" : "{\"name\":");
            json_name(&b, f->name);
            mg_buf_printf(&b, ",\"action\":\"%s\",\"direction\":\"%s\"}", action_name(f->action),
                          direction_name(f->direction));
        }
        mg_buf_append_str(&b, "],\"limits\":[");
        first = true;
        mg_policy_limits lim;
        mg_policy_effective_limits(e, NULL, &lim);
        const char *subject = req->principal.subject ? req->principal.subject : "?";
        describe_limits(&b, &first, "user", &lim, state_find("u:", subject, false), false);
        for (size_t i = 0; i < e->n_roles; i++) {
            const mg_policy_role_def *r = &doc->roles[e->roles[i]];
            char scope[160];
            snprintf(scope, sizeof(scope), "role:%.150s", r->name);
            describe_limits(&b, &first, scope, &r->team_limits, state_find("t:", r->name, false), true);
        }
        mg_buf_append_str(&b, "]}");
    }
    if (b.p == NULL) {
        mg_buf_free(&b);
        return MG_ENOMEM;
    }
    out->len--;   /* the object's closing brace; put back below */
    mg_rc rc = mg_buf_append(out, b.p, b.len);
    if (mg_buf_append(out, "}", 1) != MG_OK)
        rc = MG_ENOMEM;
    mg_buf_free(&b);
    return rc;
}

/* ---------------------------------------------------------------- output */

typedef struct out_state {
    mg_policy_stream *fs;          /* choice 0's text (n > 1 is refused upstream of here
                                      by most adapters; other choices pass through the
                                      same filter in order) */
    mg_policy_verdict v;
    bool flushed;
    const char *input_decision;    /* req->decision before any output */
} out_state;

static void out_state_free(void *p) { mg_policy_stream_free(((out_state *)p)->fs); }

static bool probe_string(void *arg, const char *s, size_t n)
{
    return mg_policy_text_clean(arg, MG_POLICY_OUTPUT, s, n);
}

static mg_rc filter_reply(mg_req *req, mg_buf *buf)
{
    /* Most replies carry nothing a filter acts on: when no string anywhere
     * in the reply would be touched, pass it on without building a tree.
     * The check reads exactly what mg_json_parse accepts; anything else
     * (a hit, or a reply it refuses) takes the full path below, which
     * decides. */
    const char *input_decision = req->decision;
    mg_buf scratch = {0};
    bool clean = mg_json_each_string(buf->p, buf->len, &scratch, probe_string, (void *)req->policy);
    mg_buf_free(&scratch);
    if (clean)
        return MG_OK;

    /* A reply the filters cannot read is not passed on unread: that would
     * let a reply through that they never saw (e.g. text after a \u0000,
     * which a cJSON tree cuts off but a client's parser reads). */
    cJSON *j = mg_json_parse(buf->p, buf->len, NULL);
    if (j == NULL) {
        req->error_code = "content_unverifiable";
        return MG_ERR;
    }
    mg_policy_verdict v;
    mg_policy_verdict_init(&v);
    size_t redactions = 0;
    const cJSON *ch;
    cJSON_ArrayForEach(ch, cJSON_GetObjectItemCaseSensitive(j, "choices")) {
        cJSON *msg = cJSON_GetObjectItemCaseSensitive(ch, "message");
        cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        if (!cJSON_IsString(content))
            continue;
        mg_buf safe = {0};
        mg_policy_filter_text(req->policy, MG_POLICY_OUTPUT, content->valuestring,
                              strlen(content->valuestring), &safe, &v);
        if (v.redactions > redactions) {
            redactions = v.redactions;
            mg_buf_append(&safe, "", 1);
            cJSON_SetValuestring(content, safe.p);
        }
        mg_buf_free(&safe);
        if (v.blocked)
            break;
    }
    set_output_decision(req, input_decision, &v);
    mg_rc rc = MG_OK;
    if (v.blocked) {
        req->error_code = "content_blocked";
        rc = MG_ERR;
    } else if (redactions) {
        char *s = cJSON_PrintUnformatted(j);
        if (s) {
            mg_buf_reset(buf);
            mg_buf_append(buf, s, strlen(s));
            cJSON_free(s);
        }
    }
    cJSON_Delete(j);
    return rc;
}

/* Rewrites one canonical chunk's delta text through the stream filter. */
static mg_rc filter_chunk(mg_req *req, out_state *st, const char *data, size_t n, mg_buf *out)
{
    if (n == 6 && memcmp(data, "[DONE]", 6) == 0) {
        mg_buf tail = {0};
        if (!st->flushed) {
            st->flushed = true;
            mg_policy_stream_flush(st->fs, &tail, &st->v);
        }
        if (st->v.blocked) {
            mg_buf_free(&tail);
            return MG_ERR;
        }
        if (tail.len) {
            /* The held-back text goes out in one more chunk before the end. */
            cJSON *c = cJSON_CreateObject();
            cJSON *choices = cJSON_AddArrayToObject(c, "choices");
            cJSON *c0 = cJSON_CreateObject();
            cJSON_AddNumberToObject(c0, "index", 0);
            cJSON *delta = cJSON_AddObjectToObject(c0, "delta");
            mg_buf_append(&tail, "", 1);
            cJSON_AddStringToObject(delta, "content", tail.p);
            cJSON_AddItemToArray(choices, c0);
            cJSON_AddStringToObject(c, "object", "chat.completion.chunk");
            char *s = cJSON_PrintUnformatted(c);
            if (s) {
                mg_buf_printf(out, "data: %s\n\n", s);
                cJSON_free(s);
            }
            cJSON_Delete(c);
        }
        mg_buf_free(&tail);
        mg_buf_append_str(out, "data: [DONE]\n\n");
        return MG_OK;
    }
    cJSON *j = mg_json_parse(data, n, NULL);
    if (j == NULL) {
        req->error_code = "content_unverifiable";   /* unread text never passes: see filter_reply */
        return MG_ERR;
    }
    bool changed = false;
    const cJSON *ch;
    cJSON_ArrayForEach(ch, cJSON_GetObjectItemCaseSensitive(j, "choices")) {
        cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
        cJSON *content = cJSON_GetObjectItemCaseSensitive(delta, "content");
        const cJSON *finish = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        mg_buf safe = {0};
        if (cJSON_IsString(content)) {
            mg_policy_stream_push(st->fs, content->valuestring, strlen(content->valuestring), &safe, &st->v);
            changed = true;
        }
        if (cJSON_IsString(finish) && !st->flushed) {
            /* The text ends here: release what was held back. */
            st->flushed = true;
            mg_policy_stream_flush(st->fs, &safe, &st->v);
            changed = true;
            if (!cJSON_IsString(content) && delta)
                content = cJSON_AddStringToObject(delta, "content", "");
        }
        if (changed && cJSON_IsString(content)) {
            mg_buf_append(&safe, "", 1);
            cJSON_SetValuestring(content, safe.p);
        }
        mg_buf_free(&safe);
    }
    if (st->v.blocked) {
        cJSON_Delete(j);
        return MG_ERR;
    }
    if (changed) {
        char *s = cJSON_PrintUnformatted(j);
        if (s) {
            mg_buf_printf(out, "data: %s\n\n", s);
            cJSON_free(s);
        }
    } else {
        mg_buf_printf(out, "data: %.*s\n\n", (int)n, data);
    }
    cJSON_Delete(j);
    return MG_OK;
}

mg_rc mg_policy_filter_output(mg_req *req, mg_buf *buf, bool is_stream_event)
{
    if (req->policy == NULL || !mg_policy_effective_has_filters(req->policy, MG_POLICY_OUTPUT))
        return MG_OK;
    if (!is_stream_event)
        return filter_reply(req, buf);
    out_state *st = req->policy_out;
    if (st == NULL) {
        st = mg_pool_calloc(req->pool, sizeof(*st));
        if (st == NULL || (st->fs = mg_policy_stream_new(req->policy, 0)) == NULL ||
            mg_pool_cleanup_add(req->pool, out_state_free, st) != MG_OK) {
            if (st)
                mg_policy_stream_free(st->fs);
            return MG_ERR;
        }
        mg_policy_verdict_init(&st->v);
        st->input_decision = req->decision;
        req->policy_out = st;
    }
    /* buf holds complete canonical SSE events: rewrite each one. */
    mg_buf out = {0};
    mg_rc rc = MG_OK;
    size_t i = 0;
    while (i < buf->len && rc == MG_OK) {
        mg_str ev;
        size_t used = mg_adapter_next_sse_event(buf->p + i, buf->len - i, &ev);
        if (used == 0)
            break;
        i += used;
        const char *d = ev.p;
        size_t dn = ev.n;
        if (dn >= 6 && memcmp(d, "data: ", 6) == 0) {
            rc = filter_chunk(req, st, d + 6, dn - 6, &out);
        } else {
            mg_buf_append(&out, ev.p, ev.n);
            mg_buf_append(&out, "\n\n", 2);
        }
    }
    set_output_decision(req, st->input_decision, &st->v);
    if (rc != MG_OK || st->v.blocked) {
        if (st->v.blocked || rc == MG_OK)
            req->error_code = "content_blocked";
        mg_buf_free(&out);
        return MG_ERR;
    }
    mg_buf_reset(buf);
    mg_buf_append(buf, out.p ? out.p : "", out.len);
    mg_buf_free(&out);
    return MG_OK;
}
