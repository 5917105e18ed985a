/* modelgate — checks on request bodies before anyone reads them.
 *
 * A body is parsed once; these checks make sure the one reading is the only
 * possible one: valid UTF-8 (no overlong forms, no surrogates) and no JSON
 * object with two members of the same name.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_JSON_H
#define MG_JSON_H

#include "core.h"

#include <cjson/cJSON.h>

bool mg_utf8_valid(const char *s, size_t n);
/* The first member name that occurs twice in one object anywhere in the
 * tree, or NULL. */
const char *mg_json_find_duplicate(const cJSON *node);

#endif
