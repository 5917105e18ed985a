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

/* Parses exactly one JSON value (whitespace around it allowed) into a tree
 * the caller frees with cJSON_Delete. Stricter than cJSON_Parse (JSON number
 * grammar, no \u0000 in strings: see json_parse.c) and several times
 * faster. NULL on failure, with *why (if why is not NULL) set to a short
 * static reason. */
cJSON *mg_json_parse(const char *text, size_t n, const char **why);
/* For what an upstream sends (adapters): the same, except that a \u0000
 * ends its string as with cJSON; the text translated from it is what the
 * client and the output filters get, so nothing is read differently. */
cJSON *mg_json_parse_upstream(const char *text, size_t n);
/* mg_json_parse_upstream for a value at the start of text with anything
 * after it; *end (if not NULL) points just past the value. */
cJSON *mg_json_parse_prefix(const char *text, size_t n, const char **end);

/* Checks text exactly as mg_json_parse would, building no tree, and calls
 * fn with every string value (decoded, n bytes, not NUL-terminated; member names are
 * not passed) in document order; scratch holds decoded strings between
 * calls. False if the text is not what mg_json_parse accepts or fn
 * returned false (stop). */
typedef bool (*mg_json_string_fn)(void *arg, const char *s, size_t n);
bool mg_json_each_string(const char *text, size_t n, mg_buf *scratch, mg_json_string_fn fn, void *arg);

#endif
