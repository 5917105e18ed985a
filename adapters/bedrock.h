/* modelgate — Amazon Bedrock pieces exposed for tests: AWS Signature
 * Version 4 and the vnd.amazon.eventstream framing.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_ADAPTERS_BEDROCK_H
#define MG_ADAPTERS_BEDROCK_H

#include "adapters/adapter.h"

typedef struct mg_sigv4 {
    const char *method;              /* "POST" */
    const char *host;                /* Host header as sent, e.g. "h:8443" */
    const char *path;                /* request path as sent (percent-encoded once) */
    const char *region, *service;    /* "us-east-1", "bedrock" */
    const char *access_key_id, *secret_access_key;
    const char *session_token;       /* NULL unless temporary credentials */
    const char *amz_date;            /* "YYYYMMDDTHHMMSSZ" */
    const void *payload;
    size_t payload_len;
} mg_sigv4;

/* Signs a request without a query string. Writes the Authorization header
 * value to auth and the hex SHA-256 of the payload (x-amz-content-sha256)
 * to payload_hash. Signed headers: host;x-amz-content-sha256;x-amz-date
 * (;x-amz-security-token with a session token). */
mg_rc mg_bedrock_sigv4(const mg_sigv4 *in, char *auth, size_t authsz, char payload_hash[65]);

/* CRC-32 (IEEE 802.3), as the eventstream framing uses. */
uint32_t mg_bedrock_crc32(uint32_t crc, const void *p, size_t n);

/* next_event for application/vnd.amazon.eventstream: one whole message
 * (prelude, headers, payload, CRC) in *ev; (size_t)-1 on bad lengths or
 * CRCs. */
size_t mg_bedrock_next_event(const char *p, size_t n, mg_str *ev);

#endif
