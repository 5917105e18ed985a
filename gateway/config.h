/* modelgate — configuration file (YAML, SPEC §3).
 *
 * Parse -> check -> commit: mg_config_load reads the whole file into a fresh
 * mg_config or fails with every problem reported as "file:line:col: message"
 * (nginx -t / haproxy -c style). Unknown keys and bad values are errors, never
 * silently defaulted. `${NAME}` inside any scalar is replaced by the
 * environment variable NAME; a missing variable is an error ("$$" is a
 * literal "$"). A loaded config is immutable and owned by its snapshot.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_CONFIG_H
#define MG_CONFIG_H

#include "core.h"
#include <netinet/in.h>
#include <sys/socket.h>

typedef struct mg_cfg_listen {
    char *address;                 /* as written, e.g. "0.0.0.0:8443", "[::1]:8080" */
    struct sockaddr_storage addr;  /* resolved numeric address (no DNS) */
    socklen_t addrlen;
    char *tls_cert;                /* NULL for plain HTTP */
    char *tls_key;
    char *serve;                   /* "all" (NULL) or "ops": only /healthz, /readyz,
                                      /metrics, with its own connection cap */
    bool ops;                      /* serve == "ops" */
} mg_cfg_listen;

typedef struct mg_cfg_cidr {
    int family;                    /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int prefix;
} mg_cfg_cidr;

typedef struct mg_cfg_provider {
    char *name;                    /* the key under providers: */
    char *type;                    /* adapter type: openai, azure, anthropic, ... */
    char *base_url;                /* http(s)://host[:port][/path], no trailing '/' */
    char *api_key;                 /* NULL if none (local models) */
    char *api_version;             /* azure; NULL otherwise */
    char *region;                  /* bedrock; NULL otherwise */
    char *aws_access_key_id;       /* bedrock SigV4 credentials (secrets); NULL if unset */
    char *aws_secret_access_key;
    char *aws_session_token;       /* temporary credentials only */
    char *tls_ca;                  /* extra CA bundle file for this upstream, or NULL */
    char *upstream_client;         /* "auto" (or NULL): built-in HTTP/1.1 client where
                                    * eligible (docs/routing.md); "curl": always libcurl */
    int max_concurrency;           /* 0 = unlimited */
} mg_cfg_provider;

typedef struct mg_cfg_deployment {
    char *provider;                /* name of an entry in providers (checked) */
    char *model;                   /* model name sent upstream */
    int weight;                    /* >= 1, default 1 */
} mg_cfg_deployment;

typedef struct mg_cfg_model {
    char *name;                    /* model name clients ask for (unique) */
    mg_cfg_deployment *deployments;
    size_t ndeployments;           /* >= 1 */
    char **fallbacks;              /* names of other models (checked) */
    size_t nfallbacks;
    bool has_price;
    double input_per_mtok;         /* USD per million input tokens */
    double output_per_mtok;
} mg_cfg_model;

typedef struct mg_cfg_limits {
    size_t max_body;               /* "8MiB"; default 8 MiB */
    size_t max_header_bytes;       /* default 16 KiB */
    size_t max_headers;            /* default 100 */
    size_t max_request_line;       /* default 8 KiB */
    uint32_t header_timeout_ms;    /* "10s"; default 10 s: whole head must arrive */
    uint32_t body_timeout_ms;      /* default 30 s: whole body must arrive */
    uint32_t idle_timeout_ms;      /* default 60 s: keep-alive idle */
    uint32_t write_timeout_ms;     /* default 60 s: client makes no read progress */
    uint32_t tls_handshake_timeout_ms; /* default 10 s */
    uint32_t upstream_connect_timeout_ms; /* default 10 s */
    uint32_t upstream_first_byte_timeout_ms; /* default 120 s */
    uint32_t upstream_idle_timeout_ms;    /* between stream chunks; default 60 s */
    uint32_t upstream_timeout_ms;  /* whole upstream exchange; default 300 s */
    uint32_t drain_timeout_ms;     /* SIGTERM drain deadline; default 30 s */
    uint32_t max_connections;      /* per process; default 20000 */
} mg_cfg_limits;

typedef struct mg_cfg_oidc {
    bool present;
    char *issuer;
    char *client_id;
    char *client_secret;
    char **scopes; size_t nscopes;
    char **audiences; size_t naudiences;
    char *claim_groups;            /* default "groups" */
    char *claim_email;             /* default "email" */
    char *claim_name;              /* default "name" */
    char *claim_cost_center;       /* default NULL (none) */
} mg_cfg_oidc;

typedef struct mg_cfg_session {
    bool present;
    char *secret;                  /* >= 32 bytes */
    uint32_t lifetime_s;           /* "8h"; default 8 h */
    uint32_t login_timeout_s;      /* "5m"; default 300 s: /auth/login to
                                    * /auth/callback; 2 s..1 h (< 30 s: tests) */
} mg_cfg_session;

typedef struct mg_cfg_log {
    char *level;                   /* error|warn|info|debug; default info */
    char *access_log;              /* path, "stderr", "stdout" or "off"; default stdout */
} mg_cfg_log;

typedef struct mg_config {
    char *path;                    /* file it came from */
    mg_cfg_listen *listen; size_t nlisten;   /* >= 1 */
    char *public_url;              /* NULL if unset; no trailing '/' */
    mg_cfg_cidr *trusted_proxies; size_t ntrusted_proxies;
    char *database_url;            /* NULL if no database section */
    mg_cfg_oidc oidc;
    mg_cfg_session session;
    char *master_key;              /* auth.master_key; NULL if unset; >= 16 chars */
    mg_cfg_provider *providers; size_t nproviders;
    mg_cfg_model *models; size_t nmodels;
    mg_cfg_limits limits;
    char *journal_dir;             /* usage.journal_dir; NULL if unset */
    int workers;                   /* 0 = one per core */
    mg_cfg_log log;
} mg_config;

/* Loads and validates path. On success returns a new config (caller frees with
 * mg_config_free). On failure returns NULL and writes all error lines, each
 * "file:line:col: message\n", into errs (caller frees errs). */
mg_config *mg_config_load(const char *path, mg_buf *errs);
void mg_config_free(mg_config *cfg);

/* Lookups (linear; configs are small and lookups happen at compile time). */
const mg_cfg_provider *mg_config_provider(const mg_config *cfg, const char *name);
const mg_cfg_model *mg_config_model(const mg_config *cfg, const char *name, size_t n);

/* Parsers shared with tests: "8MiB", "512k", "1024" -> bytes; "10s", "250ms",
 * "5m", "8h", "90d" -> milliseconds. Return MG_ERR on bad syntax or overflow. */
mg_rc mg_config_parse_size(const char *s, size_t *out);
mg_rc mg_config_parse_duration_ms(const char *s, uint64_t *out);
/* "10.0.0.0/8", "::1/128", "127.0.0.1" (host route). */
mg_rc mg_config_parse_cidr(const char *s, mg_cfg_cidr *out);
bool mg_cidr_match(const mg_cfg_cidr *c, const struct sockaddr *sa);

#endif
