/* modelgate — small parsers for the browser flow: return_to and cookies.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Browsers strip tab/CR/LF from URLs and treat '\' like '/', so "/\evil"
 * and "/%09/evil" (after a decode somewhere along the way) both become
 * "//evil", a protocol-relative URL to another host. Refuse anything that
 * could turn into that, rather than trying to normalise it. */
bool mg_auth_return_to_ok(const char *s, size_t n)
{
    if (n == 0 || n > 2048 || s[0] != '/')
        return false;
    if (n > 1 && (s[1] == '/' || s[1] == '\\'))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            return false;
        if (c == '%') {
            if (i + 2 >= n)
                return false;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            int v = hi << 4 | lo;
            if (v < 0x20 || v == 0x7f || v == '/' || v == '\\' || v == '%')
                return false;
        }
    }
    return true;
}

bool mg_auth_cookie_get(mg_str h, const char *name, mg_str *out)
{
    size_t nl = strlen(name);
    size_t i = 0;
    while (i < h.n) {
        while (i < h.n && (h.p[i] == ' ' || h.p[i] == '\t' || h.p[i] == ';'))
            i++;
        size_t start = i;
        while (i < h.n && h.p[i] != ';')
            i++;
        size_t end = i;
        while (end > start && (h.p[end - 1] == ' ' || h.p[end - 1] == '\t'))
            end--;
        const char *eq = memchr(h.p + start, '=', end - start);
        if (eq == NULL)
            continue;
        size_t kend = (size_t)(eq - h.p);
        while (kend > start && (h.p[kend - 1] == ' ' || h.p[kend - 1] == '\t'))
            kend--;
        if (kend - start != nl || memcmp(h.p + start, name, nl) != 0)
            continue;
        size_t vs = (size_t)(eq - h.p) + 1;
        while (vs < end && (h.p[vs] == ' ' || h.p[vs] == '\t'))
            vs++;
        if (end - vs >= 2 && h.p[vs] == '"' && h.p[end - 1] == '"') {
            vs++;
            end--;
        }
        *out = mg_str_make(h.p + vs, end - vs);
        return true;
    }
    return false;
}
