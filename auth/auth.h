/* modelgate — authentication.
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_AUTH_H
#define MG_AUTH_H

#include "gateway/pipeline.h"

/* The secret the client presented: `Authorization: Bearer <secret>` (scheme
 * case-insensitive), else `x-api-key: <secret>`. False when there is none or
 * Authorization uses another scheme. out points into the request head. */
bool mg_auth_credential(const mg_http_request *http, mg_str *out);

#endif
