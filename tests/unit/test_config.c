/* Unit tests: gateway/config.c (YAML loading, validation, error locations,
 * ${VAR} substitution, size/duration/CIDR helpers).
 *
 * Each test writes a small YAML file into a private temp directory (the
 * process works from there) and loads it; error output is compared line by
 * line, positions included.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "config.h"
#include "t.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_root[4096];          /* the directory the test was started in */
static char g_dir[] = "/tmp/mg_test_config_XXXXXX";

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(name, "w");
    if (f == NULL) {
        perror(name);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

/* Creates the temp dir with the files configs refer to, once. */
static void setup(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    if (getcwd(g_root, sizeof(g_root)) == NULL || mkdtemp(g_dir) == NULL || chdir(g_dir) != 0) {
        perror("setup");
        exit(2);
    }
    write_file("tls.crt", "not really a certificate\n");
    write_file("tls.key", "not really a key\n");
    write_file("ca.pem", "not really a CA\n");
}

/* Loads yaml from t.yaml; on failure errs holds the NUL-terminated report. */
static mg_config *load(const char *yaml, mg_buf *errs)
{
    setup();
    write_file("t.yaml", yaml);
    mg_config *cfg = mg_config_load("t.yaml", errs);
    return cfg;
}

/* Expects yaml to be rejected with exactly the report want. */
static void expect_errors(const char *yaml, const char *want, int line)
{
    mg_buf errs = {0};
    mg_config *cfg = load(yaml, &errs);
    if (cfg != NULL) {
        fprintf(stderr, "  test_config.c:%d: config unexpectedly loaded\n", line);
        t_checks_failed++;
        mg_config_free(cfg);
    } else if (errs.p == NULL || strcmp(errs.p, want) != 0) {
        fprintf(stderr, "  test_config.c:%d: errors differ\n--- want\n%s--- got\n%s---\n", line, want,
                errs.p ? errs.p : "(none)\n");
        t_checks_failed++;
    }
    mg_buf_free(&errs);
}
#define EXPECT_ERRORS(yaml, want) expect_errors(yaml, want, __LINE__)

#define MINIMAL "listen:\n  - address: 127.0.0.1:8080\n"

static int port_of(const mg_cfg_listen *l)
{
    if (l->addr.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&l->addr)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port);
}

static const char full_yaml[] =
    "# every section\n"
    "listen:\n"
    "  - address: 0.0.0.0:8443\n"
    "    tls: { cert: tls.crt, key: tls.key }\n"
    "  - address: \"[::1]:8080\"\n"
    "  - address: localhost:9090\n"
    "public_url: https://ai.example.com/\n"
    "trusted_proxies: [10.0.0.0/8, \"fd00::/8\", 192.0.2.7]\n"
    "database: { url: \"postgresql:///modelgate?host=/run/postgresql\" }\n"
    "oidc:\n"
    "  issuer: https://login.example.com/\n"
    "  client_id: modelgate\n"
    "  client_secret: s3cret\n"
    "  scopes: [openid, email, groups]\n"
    "  audiences: [modelgate, api]\n"
    "  claims: { groups: roles, email: mail, name: display_name, cost_center: department }\n"
    "session: { secret: 0123456789abcdef0123456789abcdef, lifetime: 12h, login_timeout: 90s }\n"
    "auth: { master_key: master-key-0123456789 }\n"
    "providers:\n"
    "  openai:\n"
    "    type: openai\n"
    "    base_url: https://api.openai.com/v1/\n"
    "    api_key: sk-test\n"
    "    tls_ca: ca.pem\n"
    "    max_concurrency: 16\n"
    "  az: { type: azure, base_url: \"https://x.openai.azure.com\", api_key: k, api_version: 2024-10-21 }\n"
    "  br: { type: bedrock, base_url: \"https://bedrock-runtime.us-east-1.amazonaws.com\", region: us-east-1,\n"
    "        aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: s3cr3t }\n"
    "  local: { type: ollama, base_url: \"http://127.0.0.1:11434\" }\n"
    "models:\n"
    "  - name: gpt-4o-mini\n"
    "    deployments: [ { provider: openai, model: gpt-4o-mini-2024 }, { provider: az, weight: 3 } ]\n"
    "    price: { input_per_mtok: 0.15, output_per_mtok: 0.6 }\n"
    "  - name: llama3\n"
    "    deployments:\n"
    "      - provider: local\n"
    "        model: \"llama3.1:8b\"\n"
    "    fallbacks: [gpt-4o-mini, claude]\n"
    "  - name: claude\n"
    "    deployments: [ { provider: br, model: anthropic.claude-3 } ]\n"
    "limits:\n"
    "  max_body: 1MiB\n"
    "  max_header_bytes: 32k\n"
    "  max_headers: 50\n"
    "  max_request_line: 4096\n"
    "  header_timeout: 5s\n"
    "  body_timeout: 20s\n"
    "  idle_timeout: 2m\n"
    "  write_timeout: 45s\n"
    "  tls_handshake_timeout: 3s\n"
    "  upstream_connect_timeout: 2500ms\n"
    "  upstream_first_byte_timeout: 1m30s\n"
    "  upstream_idle_timeout: 40s\n"
    "  upstream_timeout: 10m\n"
    "  drain_timeout: 0\n"
    "  max_connections: 5000\n"
    "usage: { journal_dir: /var/lib/modelgate/journal }\n"
    "workers: 4\n"
    "log: { level: debug, access_log: \"off\" }\n";

T_TEST(full_config_loads_every_section)
{
    mg_buf errs = {0};
    mg_config *cfg = load(full_yaml, &errs);
    T_CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "%s", errs.p ? errs.p : "");
        mg_buf_free(&errs);
        return;
    }
    T_EQ_STR(cfg->path, "t.yaml");
    T_EQ_INT(cfg->nlisten, 3);
    T_EQ_STR(cfg->listen[0].address, "0.0.0.0:8443");
    T_EQ_INT(cfg->listen[0].addr.ss_family, AF_INET);
    T_EQ_INT(cfg->listen[0].addrlen, sizeof(struct sockaddr_in));
    T_EQ_INT(port_of(&cfg->listen[0]), 8443);
    T_EQ_STR(cfg->listen[0].tls_cert, "tls.crt");
    T_EQ_STR(cfg->listen[0].tls_key, "tls.key");
    T_EQ_INT(cfg->listen[1].addr.ss_family, AF_INET6);
    T_EQ_INT(port_of(&cfg->listen[1]), 8080);
    T_CHECK(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&cfg->listen[1].addr)->sin6_addr));
    T_CHECK(cfg->listen[1].tls_cert == NULL && cfg->listen[1].tls_key == NULL);
    T_EQ_INT(cfg->listen[2].addr.ss_family, AF_INET);
    T_EQ_INT(ntohl(((struct sockaddr_in *)&cfg->listen[2].addr)->sin_addr.s_addr), INADDR_LOOPBACK);
    T_EQ_INT(port_of(&cfg->listen[2]), 9090);

    T_EQ_STR(cfg->public_url, "https://ai.example.com");
    T_EQ_INT(cfg->ntrusted_proxies, 3);
    T_EQ_INT(cfg->trusted_proxies[0].family, AF_INET);
    T_EQ_INT(cfg->trusted_proxies[0].prefix, 8);
    T_EQ_INT(cfg->trusted_proxies[1].family, AF_INET6);
    T_EQ_INT(cfg->trusted_proxies[1].prefix, 8);
    T_EQ_INT(cfg->trusted_proxies[2].prefix, 32);
    T_EQ_STR(cfg->database_url, "postgresql:///modelgate?host=/run/postgresql");

    T_CHECK(cfg->oidc.present);
    T_EQ_STR(cfg->oidc.issuer, "https://login.example.com/");   /* verbatim: must equal `iss` */
    T_EQ_STR(cfg->oidc.client_id, "modelgate");
    T_EQ_STR(cfg->oidc.client_secret, "s3cret");
    T_EQ_INT(cfg->oidc.nscopes, 3);
    T_EQ_STR(cfg->oidc.scopes[2], "groups");
    T_EQ_INT(cfg->oidc.naudiences, 2);
    T_EQ_STR(cfg->oidc.audiences[1], "api");
    T_EQ_STR(cfg->oidc.claim_groups, "roles");
    T_EQ_STR(cfg->oidc.claim_email, "mail");
    T_EQ_STR(cfg->oidc.claim_name, "display_name");
    T_EQ_STR(cfg->oidc.claim_cost_center, "department");
    T_CHECK(cfg->session.present);
    T_EQ_STR(cfg->session.secret, "0123456789abcdef0123456789abcdef");
    T_EQ_INT(cfg->session.lifetime_s, 12 * 3600);
    T_EQ_INT(cfg->session.login_timeout_s, 90);
    T_EQ_STR(cfg->master_key, "master-key-0123456789");

    T_EQ_INT(cfg->nproviders, 4);
    const mg_cfg_provider *p = mg_config_provider(cfg, "openai");
    T_CHECK(p == &cfg->providers[0]);
    if (p) {
        T_EQ_STR(p->name, "openai");
        T_EQ_STR(p->type, "openai");
        T_EQ_STR(p->base_url, "https://api.openai.com/v1");
        T_EQ_STR(p->api_key, "sk-test");
        T_EQ_STR(p->tls_ca, "ca.pem");
        T_EQ_INT(p->max_concurrency, 16);
        T_CHECK(p->api_version == NULL && p->region == NULL);
    }
    p = mg_config_provider(cfg, "az");
    T_CHECK(p && strcmp(p->api_version, "2024-10-21") == 0);
    p = mg_config_provider(cfg, "br");
    T_CHECK(p && strcmp(p->region, "us-east-1") == 0 && p->api_key == NULL);
    T_CHECK(p && p->aws_access_key_id && strcmp(p->aws_access_key_id, "AKIDEXAMPLE") == 0 &&
            p->aws_secret_access_key && strcmp(p->aws_secret_access_key, "s3cr3t") == 0 &&
            p->aws_session_token == NULL);
    T_CHECK(mg_config_provider(cfg, "nope") == NULL);

    T_EQ_INT(cfg->nmodels, 3);
    const mg_cfg_model *m = mg_config_model(cfg, "gpt-4o-mini-and-more", 11);
    T_CHECK(m == &cfg->models[0]);
    if (m) {
        T_EQ_INT(m->ndeployments, 2);
        T_EQ_STR(m->deployments[0].provider, "openai");
        T_EQ_STR(m->deployments[0].model, "gpt-4o-mini-2024");
        T_EQ_INT(m->deployments[0].weight, 1);
        T_EQ_STR(m->deployments[1].model, "gpt-4o-mini");   /* defaults to the model's name */
        T_EQ_INT(m->deployments[1].weight, 3);
        T_CHECK(m->has_price);
        T_CHECK(m->input_per_mtok > 0.1499 && m->input_per_mtok < 0.1501);
        T_CHECK(m->output_per_mtok > 0.5999 && m->output_per_mtok < 0.6001);
        T_EQ_INT(m->nfallbacks, 0);
    }
    m = mg_config_model(cfg, "llama3", 6);
    T_CHECK(m && m->nfallbacks == 2 && !m->has_price);
    if (m && m->nfallbacks == 2) {
        T_EQ_STR(m->fallbacks[0], "gpt-4o-mini");
        T_EQ_STR(m->fallbacks[1], "claude");
        T_EQ_STR(m->deployments[0].model, "llama3.1:8b");
    }
    T_CHECK(mg_config_model(cfg, "llama", 5) == NULL);

    const mg_cfg_limits *l = &cfg->limits;
    T_EQ_INT(l->max_body, 1 << 20);
    T_EQ_INT(l->max_header_bytes, 32 << 10);
    T_EQ_INT(l->max_headers, 50);
    T_EQ_INT(l->max_request_line, 4096);
    T_EQ_INT(l->header_timeout_ms, 5000);
    T_EQ_INT(l->body_timeout_ms, 20000);
    T_EQ_INT(l->idle_timeout_ms, 120000);
    T_EQ_INT(l->write_timeout_ms, 45000);
    T_EQ_INT(l->tls_handshake_timeout_ms, 3000);
    T_EQ_INT(l->upstream_connect_timeout_ms, 2500);
    T_EQ_INT(l->upstream_first_byte_timeout_ms, 90000);
    T_EQ_INT(l->upstream_idle_timeout_ms, 40000);
    T_EQ_INT(l->upstream_timeout_ms, 600000);
    T_EQ_INT(l->drain_timeout_ms, 0);
    T_EQ_INT(l->max_connections, 5000);
    T_EQ_STR(cfg->journal_dir, "/var/lib/modelgate/journal");
    T_EQ_INT(cfg->workers, 4);
    T_EQ_STR(cfg->log.level, "debug");
    T_EQ_STR(cfg->log.access_log, "off");
    T_EQ_INT(errs.len, 0);
    mg_config_free(cfg);
    mg_buf_free(&errs);
}

T_TEST(defaults_for_unset_keys)
{
    mg_buf errs = {0};
    mg_config *cfg = load(MINIMAL, &errs);
    T_CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    const mg_cfg_limits *l = &cfg->limits;
    T_EQ_INT(l->max_body, 8 << 20);
    T_EQ_INT(l->max_header_bytes, 16 << 10);
    T_EQ_INT(l->max_headers, 100);
    T_EQ_INT(l->max_request_line, 8 << 10);
    T_EQ_INT(l->header_timeout_ms, 10000);
    T_EQ_INT(l->body_timeout_ms, 30000);
    T_EQ_INT(l->idle_timeout_ms, 60000);
    T_EQ_INT(l->write_timeout_ms, 60000);
    T_EQ_INT(l->tls_handshake_timeout_ms, 10000);
    T_EQ_INT(l->upstream_connect_timeout_ms, 10000);
    T_EQ_INT(l->upstream_first_byte_timeout_ms, 120000);
    T_EQ_INT(l->upstream_idle_timeout_ms, 60000);
    T_EQ_INT(l->upstream_timeout_ms, 300000);
    T_EQ_INT(l->drain_timeout_ms, 30000);
    T_EQ_INT(l->max_connections, 20000);
    T_EQ_STR(cfg->log.level, "info");
    T_EQ_STR(cfg->log.access_log, "stdout");
    T_EQ_INT(cfg->workers, 0);
    T_CHECK(!cfg->oidc.present && !cfg->session.present);
    T_CHECK(cfg->oidc.issuer == NULL && cfg->oidc.scopes == NULL);
    T_CHECK(cfg->public_url == NULL && cfg->database_url == NULL && cfg->master_key == NULL);
    T_CHECK(cfg->journal_dir == NULL);
    T_EQ_INT(cfg->nproviders + cfg->nmodels + cfg->ntrusted_proxies, 0);
    T_EQ_INT(cfg->listen[0].addrlen, sizeof(struct sockaddr_in));
    mg_config_free(cfg);
    mg_buf_free(&errs);
}

T_TEST(oidc_defaults_and_loopback_http_issuer)
{
    mg_buf errs = {0};
    mg_config *cfg = load(MINIMAL
                          "oidc: { issuer: \"http://127.0.0.1:5556/dex\", client_id: gw }\n"
                          "session: { secret: 0123456789abcdef0123456789abcdef }\n",
                          &errs);
    T_CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "%s", errs.p);
        mg_buf_free(&errs);
        return;
    }
    T_EQ_INT(cfg->oidc.nscopes, 3);
    T_EQ_STR(cfg->oidc.scopes[0], "openid");
    T_EQ_STR(cfg->oidc.scopes[1], "email");
    T_EQ_STR(cfg->oidc.scopes[2], "profile");
    T_EQ_INT(cfg->oidc.naudiences, 1);
    T_EQ_STR(cfg->oidc.audiences[0], "gw");
    T_EQ_STR(cfg->oidc.claim_groups, "groups");
    T_EQ_STR(cfg->oidc.claim_email, "email");
    T_EQ_STR(cfg->oidc.claim_name, "name");
    T_CHECK(cfg->oidc.claim_cost_center == NULL);
    T_CHECK(cfg->oidc.client_secret == NULL);
    T_EQ_INT(cfg->session.lifetime_s, 8 * 3600);
    T_EQ_INT(cfg->session.login_timeout_s, 300);
    mg_config_free(cfg);
    cfg = load(MINIMAL
               "oidc: { issuer: \"http://[::1]:8000\", client_id: gw }\n"
               "session: { secret: 0123456789abcdef0123456789abcdef }\n",
               &errs);
    T_CHECK(cfg != NULL);
    mg_config_free(cfg);
    cfg = load(MINIMAL
               "oidc: { issuer: \"http://LOCALHOST:8000/\", client_id: gw }\n"
               "session: { secret: 0123456789abcdef0123456789abcdef }\n",
               &errs);
    T_CHECK(cfg != NULL);
    mg_config_free(cfg);
    mg_buf_free(&errs);
}

T_TEST(example_file_loads)
{
    setup();
    char path[4200];
    snprintf(path, sizeof(path), "%s/modelgate.example.yaml", g_root);
    FILE *f = fopen(path, "r");
    T_CHECK(f != NULL);
    if (f == NULL)
        return;
    /* Point the certificate paths at files that exist. */
    mg_buf text = {0};
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        char *at = strstr(line, "/etc/modelgate/");
        if (at) {
            mg_buf_append(&text, line, (size_t)(at - line));
            mg_buf_printf(&text, "%s/%s", g_dir, at + strlen("/etc/modelgate/"));
        } else {
            mg_buf_append_str(&text, line);
        }
    }
    fclose(f);
    mg_buf_append(&text, "", 1);
    setenv("OIDC_CLIENT_SECRET", "oidc-secret", 1);
    setenv("SESSION_SECRET", "0123456789abcdef0123456789abcdef0123", 1);
    setenv("MODELGATE_MASTER_KEY", "mk-0123456789abcdef", 1);
    setenv("OPENAI_API_KEY", "sk-openai", 1);
    setenv("ANTHROPIC_API_KEY", "sk-ant", 1);
    mg_buf errs = {0};
    write_file("example.yaml", text.p);
    mg_config *cfg = mg_config_load("example.yaml", &errs);
    T_CHECK(cfg != NULL);
    if (cfg == NULL)
        fprintf(stderr, "%s", errs.p);
    if (cfg) {
        T_EQ_INT(cfg->nlisten, 2);
        T_EQ_STR(cfg->oidc.client_secret, "oidc-secret");
        T_EQ_STR(mg_config_provider(cfg, "anthropic")->api_key, "sk-ant");
        T_EQ_INT(cfg->nmodels, 3);
        T_EQ_INT(cfg->limits.max_body, 8 << 20);
    }
    mg_config_free(cfg);
    mg_buf_free(&errs);
    mg_buf_free(&text);
    unsetenv("OIDC_CLIENT_SECRET");
    unsetenv("SESSION_SECRET");
    unsetenv("MODELGATE_MASTER_KEY");
    unsetenv("OPENAI_API_KEY");
    unsetenv("ANTHROPIC_API_KEY");
}

T_TEST(env_substitution)
{
    setenv("MG_T_HOST", "127.0.0.1", 1);
    setenv("MG_T_PORT", "8181", 1);
    setenv("MG_T_KEY", "sk-from-env", 1);
    setenv("MG_T_EMPTY", "", 1);
    mg_buf errs = {0};
    mg_config *cfg = load("listen:\n  - address: ${MG_T_HOST}:${MG_T_PORT}\n"
                          "providers:\n"
                          "  p: { type: openai, base_url: \"http://h/$${x}$$\", api_key: \"${MG_T_KEY}\" }\n"
                          "usage: { journal_dir: \"/j/${MG_T_EMPTY}x$y\" }\n",
                          &errs);
    T_CHECK(cfg != NULL);
    if (cfg) {
        T_EQ_STR(cfg->listen[0].address, "127.0.0.1:8181");
        T_EQ_INT(port_of(&cfg->listen[0]), 8181);
        T_EQ_STR(cfg->providers[0].base_url, "http://h/${x}$");
        T_EQ_STR(cfg->providers[0].api_key, "sk-from-env");
        T_EQ_STR(cfg->journal_dir, "/j/x$y");     /* a lone '$' stays as written */
    }
    mg_config_free(cfg);
    mg_buf_free(&errs);
    unsetenv("MG_T_HOST");
    unsetenv("MG_T_PORT");
    unsetenv("MG_T_KEY");
    unsetenv("MG_T_EMPTY");
}

/* The configuration sketch's shape: ${NAME} unquoted inside YAML flow
 * mappings, where '{' and '}' are syntax. */
T_TEST(env_substitution_in_flow_style)
{
    setenv("MG_T_SECRET", "0123456789abcdef0123456789abcdef-s", 1);
    setenv("MG_T_MK", "mk-0123456789abcdef", 1);
    setenv("MG_T_KEY", "sk-from-env", 1);
    mg_buf errs = {0};
    mg_config *cfg = load("listen:\n  - address: 127.0.0.1:8181\n"
                          "session: { secret: ${MG_T_SECRET}, lifetime: 8h }\n"
                          "auth: { master_key: ${MG_T_MK} }\n"
                          "providers:\n"
                          "  p: { type: openai, base_url: http://h/v1, api_key: ${MG_T_KEY} }\n"
                          "usage: { journal_dir: /j/a$(b)c$$(d) }\n",
                          &errs);
    T_CHECK(cfg != NULL);
    if (cfg == NULL)
        fprintf(stderr, "%s", errs.p ? errs.p : "");
    if (cfg) {
        T_EQ_STR(cfg->session.secret, "0123456789abcdef0123456789abcdef-s");
        T_EQ_STR(cfg->master_key, "mk-0123456789abcdef");
        T_EQ_STR(cfg->providers[0].api_key, "sk-from-env");
        T_EQ_STR(cfg->journal_dir, "/j/a$(b)c$(d)");   /* a literal "$(" stays literal */
    }
    mg_config_free(cfg);
    mg_buf_free(&errs);
    /* Positions after a reference still point at the file. */
    EXPECT_ERRORS(MINIMAL "auth: { master_key: ${MG_T_MK}, nope: 1 }\n",
                  "t.yaml:3:33: auth: unknown key \"nope\" (known keys: master_key)\n");
    unsetenv("MG_T_SECRET");
    unsetenv("MG_T_MK");
    unsetenv("MG_T_KEY");
}

T_TEST(env_missing_and_bad_references)
{
    unsetenv("MG_T_MISSING");
    unsetenv("MG_T_OTHER");
    EXPECT_ERRORS(MINIMAL
                  "auth:\n"
                  "  master_key: ${MG_T_MISSING}\n"
                  "database: { url: \"x${MG_T_OTHER}y${MG_T_MISSING}\" }\n"
                  "public_url: \"https://${bad-name}\"\n"
                  "usage: { journal_dir: \"${UNTERMINATED\" }\n",
                  "t.yaml:4:15: auth.master_key: environment variable \"MG_T_MISSING\" is not set\n"
                  "t.yaml:5:18: database.url: environment variable \"MG_T_OTHER\" is not set\n"
                  "t.yaml:5:18: database.url: environment variable \"MG_T_MISSING\" is not set\n"
                  "t.yaml:6:13: public_url: bad variable reference (write ${NAME}, or $$ for a literal '$')\n"
                  "t.yaml:7:23: usage.journal_dir: bad variable reference (write ${NAME}, or $$ for a literal '$')\n");
}

T_TEST(secrets_never_in_messages)
{
    setenv("MG_T_SHORT", "hunter2hunter", 1);
    setenv("MG_T_WORKERS", "many-hunter3", 1);
    mg_buf errs = {0};
    mg_config *cfg = load(MINIMAL
                          "auth: { master_key: \"${MG_T_SHORT}\" }\n"
                          "session: { secret: tooshort-hunter4 }\n"
                          "database: { url: \"not a url with hunter5\" }\n"
                          "workers: ${MG_T_WORKERS}\n",
                          &errs);
    T_CHECK(cfg == NULL);
    T_CHECK(errs.p != NULL);
    if (errs.p) {
        T_CHECK(strstr(errs.p, "hunter") == NULL);
        T_CHECK(strstr(errs.p, "t.yaml:3:21: auth.master_key: must be at least 16 bytes long\n") != NULL);
        T_CHECK(strstr(errs.p, "t.yaml:4:20: session.secret: must be at least 32 bytes long\n") != NULL);
        /* A value that came from the environment is named, not shown. */
        T_CHECK(strstr(errs.p, "t.yaml:6:10: workers: expected an integer, got (the value of ${MG_T_WORKERS})\n")
                != NULL);
    }
    mg_config_free(cfg);
    mg_buf_free(&errs);
    unsetenv("MG_T_SHORT");
    unsetenv("MG_T_WORKERS");
}

T_TEST(unknown_and_duplicate_keys)
{
    EXPECT_ERRORS("listn:\n"
                  "  - address: 127.0.0.1:8080\n"
                  "listen:\n"
                  "  - address: 127.0.0.1:8080\n"
                  "    adress: 127.0.0.1:9090\n"
                  "limits: { max_body: 1MiB, max_body: 2MiB, frobnicate: 1 }\n"
                  "listen: []\n",
                  "t.yaml:1:1: unknown key \"listn\" (did you mean \"listen\"?)\n"
                  "t.yaml:5:5: listen[0]: unknown key \"adress\" (did you mean \"address\"?)\n"
                  "t.yaml:6:27: limits: duplicate key \"max_body\" (first at line 6)\n"
                  "t.yaml:6:43: limits: unknown key \"frobnicate\" (known keys: max_body, max_header_bytes, "
                  "max_headers, max_request_line, header_timeout, body_timeout, idle_timeout, write_timeout, "
                  "tls_handshake_timeout, upstream_connect_timeout, upstream_first_byte_timeout, "
                  "upstream_idle_timeout, upstream_timeout, drain_timeout, max_connections)\n"
                  "t.yaml:7:1: duplicate key \"listen\" (first at line 3)\n");
}

T_TEST(listen_required_and_addresses_checked)
{
    EXPECT_ERRORS("workers: 2\n", "t.yaml:1:1: missing required key \"listen\"\n");
    EXPECT_ERRORS("listen: []\n", "t.yaml:1:9: listen: needs at least 1 entry\n");
    EXPECT_ERRORS("", "t.yaml:1:1: the file is empty (at least one listen entry is required)\n");
    EXPECT_ERRORS("listen:\n"
                  "  - address: 127.0.0.1:0\n"
                  "  - address: \"::1:8080\"\n"
                  "  - address: example.com:80\n"
                  "  - address: 127.0.0.1\n"
                  "  - { address: \"[::1]:8080\" }\n"
                  "  - address: \"[::1]:8080\"\n"
                  "  - tls: { cert: tls.crt, key: missing.key }\n",
                  "t.yaml:2:14: listen[0].address: \"127.0.0.1:0\": port must be a number from 1 to 65535\n"
                  "t.yaml:3:14: listen[1].address: \"::1:8080\": IPv6 addresses need brackets, e.g. [::]:8443\n"
                  "t.yaml:4:14: listen[2].address: \"example.com:80\": host must be a numeric IPv4 address, "
                  "[IPv6] or localhost (no DNS names)\n"
                  "t.yaml:5:14: listen[3].address: \"127.0.0.1\": expected host:port, e.g. 0.0.0.0:8443\n"
                  "t.yaml:7:14: listen[5].address: \"[::1]:8080\" is already listed\n"
                  "t.yaml:8:5: listen[6]: missing required key \"address\"\n"
                  "t.yaml:8:32: listen[6].tls.key: cannot read file \"missing.key\": No such file or directory\n");
    EXPECT_ERRORS("listen:\n  - address: 127.0.0.1:8443\n    tls: { cert: tls.crt }\n",
                  "t.yaml:3:10: listen[0].tls: missing required key \"key\"\n");
}

T_TEST(wrong_types_name_the_expected_type)
{
    EXPECT_ERRORS("listen: 127.0.0.1:8080\n"
                  "trusted_proxies: 10.0.0.0/8\n"
                  "limits: [1]\n"
                  "workers: [1, 2]\n"
                  "public_url:\n"
                  "providers: [a]\n"
                  "oidc: { issuer: { a: b }, client_id: x, scopes: openid }\n",
                  "t.yaml:1:9: listen: expected a list, got a scalar\n"
                  "t.yaml:2:18: trusted_proxies: expected a list, got a scalar\n"
                  "t.yaml:3:9: limits: expected a mapping, got a list\n"
                  "t.yaml:4:10: workers: expected an integer, got a list\n"
                  "t.yaml:5:12: public_url: expected a string, got an empty value\n"
                  "t.yaml:6:12: providers: expected a mapping of names to entries, got a list\n"
                  "t.yaml:7:1: oidc: a session section (secret, lifetime) is required when oidc is configured\n"
                  "t.yaml:7:17: oidc.issuer: expected a string, got a mapping\n"
                  "t.yaml:7:49: oidc.scopes: expected a list, got a scalar\n");
}

T_TEST(bad_sizes_durations_and_numbers)
{
    EXPECT_ERRORS(MINIMAL
                  "limits:\n"
                  "  max_body: 8MB\n"
                  "  max_header_bytes: 2GiB\n"
                  "  header_timeout: 10\n"
                  "  body_timeout: 10x\n"
                  "  idle_timeout: 0\n"
                  "  upstream_timeout: 2d\n"
                  "  max_connections: -1\n"
                  "  max_headers: 1e3\n"
                  "workers: 257\n"
                  "session: { secret: 0123456789abcdef0123456789abcdef, lifetime: 30s }\n",
                  "t.yaml:4:13: limits.max_body: invalid size \"8MB\" (write e.g. 8MiB, 512KiB, 16k or 1024)\n"
                  "t.yaml:5:21: limits.max_header_bytes: must be from 1KiB to 1MiB\n"
                  "t.yaml:6:19: limits.header_timeout: invalid duration \"10\" (write e.g. 250ms, 10s, 5m, 8h, 90d)\n"
                  "t.yaml:7:17: limits.body_timeout: invalid duration \"10x\" (write e.g. 250ms, 10s, 5m, 8h, 90d)\n"
                  "t.yaml:8:17: limits.idle_timeout: must be from 1ms to 1d\n"
                  "t.yaml:9:21: limits.upstream_timeout: must be from 1ms to 1d\n"
                  "t.yaml:10:20: limits.max_connections: must be from 1 to 10000000\n"
                  "t.yaml:11:16: limits.max_headers: expected an integer, got \"1e3\"\n"
                  "t.yaml:12:10: workers: must be from 0 to 256\n"
                  "t.yaml:13:64: session.lifetime: must be from 1m to 365d\n");
}

T_TEST(bad_cidrs_and_urls)
{
    EXPECT_ERRORS(MINIMAL
                  "trusted_proxies:\n"
                  "  - 10.1.2.3/8\n"
                  "  - 10.0.0.0/33\n"
                  "  - not-an-ip\n"
                  "  - \"::1/129\"\n"
                  "public_url: \"ai.example.com\"\n"
                  "providers:\n"
                  "  a: { type: openai, base_url: \"https://user:pw@h/v1\" }\n"
                  "  b: { type: openai, base_url: \"https://h:0/v1\" }\n"
                  "  c: { type: openai, base_url: \"https://h/v1?x=1\" }\n",
                  "t.yaml:4:5: trusted_proxies[0]: \"10.1.2.3/8\" has bits set after the /prefix "
                  "(write the network address)\n"
                  "t.yaml:5:5: trusted_proxies[1]: invalid CIDR \"10.0.0.0/33\" "
                  "(write e.g. 10.0.0.0/8, fd00::/8 or 192.0.2.7)\n"
                  "t.yaml:6:5: trusted_proxies[2]: invalid CIDR \"not-an-ip\" "
                  "(write e.g. 10.0.0.0/8, fd00::/8 or 192.0.2.7)\n"
                  "t.yaml:7:5: trusted_proxies[3]: invalid CIDR \"::1/129\" "
                  "(write e.g. 10.0.0.0/8, fd00::/8 or 192.0.2.7)\n"
                  "t.yaml:8:13: public_url: URL \"ai.example.com\" must start with http:// or https://\n"
                  "t.yaml:10:32: providers.a.base_url: URL \"https://user:pw@h/v1\" must not contain "
                  "credentials (user@host); use the api_key field\n"
                  "t.yaml:11:32: providers.b.base_url: URL \"https://h:0/v1\" has a bad port (1-65535)\n"
                  "t.yaml:12:32: providers.c.base_url: URL \"https://h/v1?x=1\" must not contain a query or "
                  "fragment\n");
}

T_TEST(provider_checks)
{
    EXPECT_ERRORS(MINIMAL
                  "providers:\n"
                  "  a: { type: opena, base_url: \"http://h\" }\n"
                  "  b: { type: azure, base_url: \"https://h\" }\n"
                  "  c: { type: bedrock, base_url: \"https://h\" }\n"
                  "  d: { type: openai, base_url: \"https://h\", tls_ca: nope.pem, max_concurrency: -1 }\n"
                  "  e: { base_url: \"https://h\" }\n",
                  "t.yaml:4:14: providers.a.type: \"opena\" is not one of: openai, azure, anthropic, gemini, "
                  "bedrock, ollama\n"
                  "t.yaml:5:14: providers.b.type: azure needs api_version (e.g. 2024-10-21)\n"
                  "t.yaml:6:14: providers.c.type: bedrock needs region (e.g. us-east-1)\n"
                  "t.yaml:6:14: providers.c.type: bedrock needs aws_access_key_id and aws_secret_access_key, "
                  "or api_key (a Bedrock API key)\n"
                  "t.yaml:7:53: providers.d.tls_ca: cannot read file \"nope.pem\": No such file or directory\n"
                  "t.yaml:7:80: providers.d.max_concurrency: must be from 0 to 1000000\n"
                  "t.yaml:8:6: providers.e: missing required key \"type\"\n");
}

T_TEST(model_references_checked)
{
    EXPECT_ERRORS(MINIMAL
                  "models:\n"
                  "  - name: a\n"
                  "    deployments: [ { provider: loca, model: x } ]\n"
                  "    fallbacks: [b, a, zzz, b]\n"
                  "  - name: b\n"
                  "    deployments: [ { provider: local, weight: 0 } ]\n"
                  "  - name: a\n"
                  "    deployments: []\n"
                  "  - deployments: [ { model: y } ]\n"
                  "providers:\n"
                  "  local: { type: ollama, base_url: \"http://127.0.0.1:11434\" }\n",
                  "t.yaml:5:32: models[0].deployments[0].provider: unknown provider \"loca\" "
                  "(did you mean \"local\"?)\n"
                  "t.yaml:6:20: models[0].fallbacks[1]: a model cannot fall back to itself\n"
                  "t.yaml:6:23: models[0].fallbacks[2]: unknown model \"zzz\" (not defined under models)\n"
                  "t.yaml:6:28: models[0].fallbacks[3]: \"b\" is listed twice\n"
                  "t.yaml:8:47: models[1].deployments[0].weight: must be from 1 to 10000\n"
                  "t.yaml:9:11: models[2].name: model \"a\" is already defined\n"
                  "t.yaml:10:18: models[2].deployments: needs at least 1 entry\n"
                  "t.yaml:11:5: models[3]: missing required key \"name\"\n"
                  "t.yaml:11:20: models[3].deployments[0]: missing required key \"provider\"\n");
}

T_TEST(oidc_and_session_checks)
{
    EXPECT_ERRORS(MINIMAL
                  "oidc:\n"
                  "  issuer: http://login.example.com\n"
                  "  scopes: [email]\n"
                  "session: { lifetime: 1h }\n",
                  "t.yaml:4:3: oidc: missing required key \"client_id\"\n"
                  "t.yaml:4:11: oidc.issuer: must be https:// (http:// is accepted only for 127.0.0.1, [::1] and "
                  "localhost)\n"
                  "t.yaml:5:11: oidc.scopes: must include \"openid\"\n"
                  "t.yaml:6:10: session: missing required key \"secret\"\n");
}

/* 2 s is allowed (tests), 1 h is the most; whole seconds are kept. */
T_TEST(session_login_timeout_bounds)
{
    static const struct {
        const char *v;
        int want;                  /* seconds, or -1: rejected */
    } cases[] = {
        {"2s", 2}, {"2500ms", 2}, {"30s", 30}, {"5m", 300}, {"1h", 3600},
        {"1999ms", -1}, {"1s", -1}, {"0s", -1}, {"3601s", -1}, {"2h", -1},
    };
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        char yaml[256];
        snprintf(yaml, sizeof(yaml), MINIMAL "session: { secret: 0123456789abcdef0123456789abcdef, login_timeout: %s }\n",
                 cases[i].v);
        mg_buf errs = {0};
        mg_config *cfg = load(yaml, &errs);
        if (cases[i].want < 0) {
            T_CHECK(cfg == NULL);
            T_EQ_STR(errs.p ? errs.p : "", "t.yaml:3:69: session.login_timeout: must be from 2s to 1h\n");
        } else {
            T_CHECK(cfg != NULL);
            if (cfg)
                T_EQ_INT(cfg->session.login_timeout_s, cases[i].want);
            else
                fprintf(stderr, "  %s: %s", cases[i].v, errs.p ? errs.p : "?\n");
        }
        mg_config_free(cfg);
        mg_buf_free(&errs);
    }
    EXPECT_ERRORS(MINIMAL "session: { secret: 0123456789abcdef0123456789abcdef, login_timeout: soon }\n",
                  "t.yaml:3:69: session.login_timeout: invalid duration \"soon\" (write e.g. 250ms, 10s, 5m, 8h, "
                  "90d)\n");
}

T_TEST(yaml_syntax_errors_have_positions)
{
    EXPECT_ERRORS("listen:\n  - address: [127.0.0.1:8080\n",
                  "t.yaml:3:1: YAML syntax error: did not find expected ',' or ']' while parsing a flow sequence "
                  "started at line 2\n");
    EXPECT_ERRORS("listen:\n  - address: 127.0.0.1:8080\n bad\n",
                  "t.yaml:3:2: YAML syntax error: did not find expected key while parsing a block mapping "
                  "started at line 1\n");
    EXPECT_ERRORS(MINIMAL "---\nworkers: 1\n", "t.yaml:3:1: only one YAML document is allowed\n");
    EXPECT_ERRORS("- a\n- b\n", "t.yaml:1:1: the top level must be a mapping of keys, got a list\n");
    EXPECT_ERRORS("listen:\n  - address: \"\xff\"\n", "t.yaml:2:15: YAML syntax error: invalid leading UTF-8 octet\n");
}

T_TEST(missing_file_is_reported)
{
    setup();
    mg_buf errs = {0};
    T_CHECK(mg_config_load("does-not-exist.yaml", &errs) == NULL);
    T_EQ_STR(errs.p, "does-not-exist.yaml: cannot read configuration: No such file or directory\n");
    mg_buf_free(&errs);
    /* errs is optional */
    T_CHECK(mg_config_load("does-not-exist.yaml", NULL) == NULL);
    write_file("t.yaml", "workers: x\n");
    T_CHECK(mg_config_load("t.yaml", NULL) == NULL);
}

T_TEST(relative_paths_follow_the_config_file)
{
    setup();
    mkdir("sub", 0700);
    write_file("sub/c.pem", "x\n");
    write_file("sub/k.pem", "x\n");
    write_file("sub/t.yaml", "listen:\n  - address: 127.0.0.1:8443\n    tls: { cert: c.pem, key: k.pem }\n"
                             "usage: { journal_dir: journal }\n"
                             "log: { access_log: access.log }\n");
    mg_buf errs = {0};
    mg_config *cfg = mg_config_load("sub/t.yaml", &errs);
    T_CHECK(cfg != NULL);
    if (cfg) {
        T_EQ_STR(cfg->listen[0].tls_cert, "sub/c.pem");
        T_EQ_STR(cfg->listen[0].tls_key, "sub/k.pem");
        T_EQ_STR(cfg->journal_dir, "sub/journal");
        T_EQ_STR(cfg->log.access_log, "sub/access.log");
    }
    mg_config_free(cfg);
    mg_buf_free(&errs);
    /* A missing file is reported under the path that was tried. */
    write_file("sub/t.yaml", "listen:\n  - address: 127.0.0.1:8443\n    tls: { cert: c.pem, key: gone.pem }\n");
    T_CHECK(mg_config_load("sub/t.yaml", &errs) == NULL);
    T_EQ_STR(errs.p, "sub/t.yaml:3:30: listen[0].tls.key: cannot read file \"sub/gone.pem\": "
                     "No such file or directory\n");
    mg_buf_free(&errs);
}

T_TEST(many_errors_are_capped)
{
    mg_buf y = {0}, errs = {0};
    mg_buf_append_str(&y, MINIMAL "trusted_proxies:\n");
    for (int i = 0; i < 150; i++)
        mg_buf_append_str(&y, "  - x\n");
    mg_buf_append(&y, "", 1);
    T_CHECK(load(y.p, &errs) == NULL);
    size_t lines = 0;
    for (size_t i = 0; i < errs.len; i++)
        lines += errs.p[i] == '\n';
    T_EQ_INT(lines, 101);
    T_CHECK(strstr(errs.p, "t.yaml: 50 more errors not shown\n") != NULL);
    mg_buf_free(&y);
    mg_buf_free(&errs);
}

T_TEST(parse_size)
{
    size_t v = 0;
    T_EQ_INT(mg_config_parse_size("1024", &v), MG_OK);
    T_EQ_INT(v, 1024);
    T_EQ_INT(mg_config_parse_size("16k", &v), MG_OK);
    T_EQ_INT(v, 16384);
    T_EQ_INT(mg_config_parse_size("512KiB", &v), MG_OK);
    T_EQ_INT(v, 512 * 1024);
    T_EQ_INT(mg_config_parse_size("8MiB", &v), MG_OK);
    T_EQ_INT(v, 8 << 20);
    T_EQ_INT(mg_config_parse_size("2M", &v), MG_OK);
    T_EQ_INT(v, 2 << 20);
    T_EQ_INT(mg_config_parse_size("1GiB", &v), MG_OK);
    T_EQ_INT(v, 1 << 30);
    T_EQ_INT(mg_config_parse_size("0", &v), MG_OK);
    T_EQ_INT(v, 0);
    const char *bad[] = {"", "k", "8MB", "8 MiB", "-1", "+1", "1.5M", "0x10", "99999999999999999999",
                         "17179869184GiB", "8mib"};
    for (size_t i = 0; i < MG_ARRAY_LEN(bad); i++)
        T_EQ_INT(mg_config_parse_size(bad[i], &v), MG_ERR);
    T_EQ_INT(mg_config_parse_size(NULL, &v), MG_ERR);
}

T_TEST(parse_duration)
{
    uint64_t v = 0;
    T_EQ_INT(mg_config_parse_duration_ms("10s", &v), MG_OK);
    T_EQ_INT(v, 10000);
    T_EQ_INT(mg_config_parse_duration_ms("250ms", &v), MG_OK);
    T_EQ_INT(v, 250);
    T_EQ_INT(mg_config_parse_duration_ms("5m", &v), MG_OK);
    T_EQ_INT(v, 300000);
    T_EQ_INT(mg_config_parse_duration_ms("8h", &v), MG_OK);
    T_EQ_INT(v, 8ll * 3600 * 1000);
    T_EQ_INT(mg_config_parse_duration_ms("90d", &v), MG_OK);
    T_EQ_INT(v, 90ll * 86400 * 1000);
    T_EQ_INT(mg_config_parse_duration_ms("1h30m", &v), MG_OK);
    T_EQ_INT(v, 5400000);
    T_EQ_INT(mg_config_parse_duration_ms("1m500ms", &v), MG_OK);
    T_EQ_INT(v, 60500);
    T_EQ_INT(mg_config_parse_duration_ms("0", &v), MG_OK);
    T_EQ_INT(v, 0);
    const char *bad[] = {"", "10", "s", "10x", "10 s", "-5s", "1.5s", "10S", "5mm", "1h30", "99999999999999999999d",
                         "999999999999999d"};
    for (size_t i = 0; i < MG_ARRAY_LEN(bad); i++)
        T_EQ_INT(mg_config_parse_duration_ms(bad[i], &v), MG_ERR);
}

static struct sockaddr_storage sa4(const char *ip)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a->sin_addr);
    return ss;
}

static struct sockaddr_storage sa6(const char *ip)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &a->sin6_addr);
    return ss;
}

static bool match(const char *cidr, struct sockaddr_storage ss)
{
    mg_cfg_cidr c;
    if (mg_config_parse_cidr(cidr, &c) != MG_OK)
        return false;
    return mg_cidr_match(&c, (struct sockaddr *)&ss);
}

T_TEST(cidr_parse_and_match)
{
    mg_cfg_cidr c;
    T_EQ_INT(mg_config_parse_cidr("10.0.0.0/8", &c), MG_OK);
    T_EQ_INT(c.family, AF_INET);
    T_EQ_INT(c.prefix, 8);
    T_EQ_INT(mg_config_parse_cidr("::1", &c), MG_OK);
    T_EQ_INT(c.family, AF_INET6);
    T_EQ_INT(c.prefix, 128);
    T_EQ_INT(mg_config_parse_cidr("0.0.0.0/0", &c), MG_OK);
    const char *bad[] = {"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "10.1.0.0/8",
                         "fe80::1/10", "10.0.0/8", "300.0.0.0/8", "10.0.0.0/8/8", "10.0.0.0/0008", "host/8"};
    for (size_t i = 0; i < MG_ARRAY_LEN(bad); i++)
        T_EQ_INT(mg_config_parse_cidr(bad[i], &c), MG_ERR);

    /* IPv4 */
    T_CHECK(match("10.0.0.0/8", sa4("10.255.1.2")));
    T_CHECK(!match("10.0.0.0/8", sa4("11.0.0.1")));
    T_CHECK(match("192.168.1.0/25", sa4("192.168.1.127")));
    T_CHECK(!match("192.168.1.0/25", sa4("192.168.1.128")));
    T_CHECK(match("192.0.2.7", sa4("192.0.2.7")));
    T_CHECK(!match("192.0.2.7", sa4("192.0.2.8")));
    T_CHECK(match("0.0.0.0/0", sa4("203.0.113.9")));
    /* IPv6 */
    T_CHECK(match("fd00::/8", sa6("fd12:3456::1")));
    T_CHECK(!match("fd00::/8", sa6("fe80::1")));
    T_CHECK(match("2001:db8::/33", sa6("2001:db8:7fff::1")));
    T_CHECK(!match("2001:db8::/33", sa6("2001:db8:8000::1")));
    T_CHECK(match("::1", sa6("::1")));
    T_CHECK(!match("::1", sa4("127.0.0.1")));
    T_CHECK(!match("10.0.0.0/8", sa6("::a00:1")));     /* IPv4-compatible is not mapped */
    /* IPv4-mapped peers of a dual-stack socket match IPv4 CIDRs, and the
     * other way round. */
    T_CHECK(match("10.0.0.0/8", sa6("::ffff:10.1.2.3")));
    T_CHECK(!match("10.0.0.0/8", sa6("::ffff:11.1.2.3")));
    T_CHECK(match("::ffff:10.0.0.0/104", sa4("10.9.9.9")));
    T_CHECK(!match("::ffff:10.0.0.0/104", sa4("11.9.9.9")));
    /* Other families never match. */
    struct sockaddr_storage un = {0};
    un.ss_family = AF_UNIX;
    T_CHECK(!match("0.0.0.0/0", un));
    T_CHECK(!mg_cidr_match(NULL, (struct sockaddr *)&un));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    MG_UNUSED(st);
    MG_UNUSED(flag);
    MG_UNUSED(ftw);
    return remove(path);
}

T_TEST(zz_cleanup)
{
    setup();
    T_EQ_INT(chdir(g_root), 0);
    T_EQ_INT(nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

T_MAIN("test_config",
       T_CASE(full_config_loads_every_section),
       T_CASE(defaults_for_unset_keys),
       T_CASE(oidc_defaults_and_loopback_http_issuer),
       T_CASE(example_file_loads),
       T_CASE(env_substitution), T_CASE(env_substitution_in_flow_style),
       T_CASE(env_missing_and_bad_references),
       T_CASE(secrets_never_in_messages),
       T_CASE(unknown_and_duplicate_keys),
       T_CASE(listen_required_and_addresses_checked),
       T_CASE(wrong_types_name_the_expected_type),
       T_CASE(bad_sizes_durations_and_numbers),
       T_CASE(bad_cidrs_and_urls),
       T_CASE(provider_checks),
       T_CASE(model_references_checked),
       T_CASE(oidc_and_session_checks),
       T_CASE(session_login_timeout_bounds),
       T_CASE(yaml_syntax_errors_have_positions),
       T_CASE(missing_file_is_reported),
       T_CASE(relative_paths_follow_the_config_file),
       T_CASE(many_errors_are_capped),
       T_CASE(parse_size),
       T_CASE(parse_duration),
       T_CASE(cidr_parse_and_match),
       T_CASE(zz_cleanup))
