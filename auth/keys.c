/* modelgate — API key format and stored form.
 *
 *   mgk_<id: 16 hex>_<secret: 43 base64url = 256 random bits>
 *
 * The prefix makes leaked keys recognisable to secret scanners and lets the
 * gateway tell a key from a JWT without a lookup; the id is the database
 * key, so a lookup never needs the secret. Only SHA-256 of the whole key is
 * stored: with 256 random bits a slow password hash adds nothing, and a
 * fast hash keeps the (cached) check cheap.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth_int.h"
#include "jwt.h"

#include <openssl/rand.h>

mg_rc mg_auth_key_generate(char *out, char *id_out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char idb[MG_KEY_ID_LEN / 2], sec[32];
    if (RAND_bytes(idb, sizeof(idb)) != 1 || RAND_bytes(sec, sizeof(sec)) != 1)
        return MG_ERR;
    for (size_t i = 0; i < sizeof(idb); i++) {
        id_out[2 * i] = hex[idb[i] >> 4];
        id_out[2 * i + 1] = hex[idb[i] & 15];
    }
    id_out[MG_KEY_ID_LEN] = '\0';
    char secret[MG_KEY_SECRET_LEN + 2];
    mg_auth_b64url_encode(sec, sizeof(sec), secret);
    memcpy(out, MG_KEY_PREFIX, 4);
    memcpy(out + 4, id_out, MG_KEY_ID_LEN);
    out[4 + MG_KEY_ID_LEN] = '_';
    memcpy(out + 5 + MG_KEY_ID_LEN, secret, MG_KEY_SECRET_LEN + 1);
    OPENSSL_cleanse(sec, sizeof(sec));
    OPENSSL_cleanse(secret, sizeof(secret));
    return MG_OK;
}

bool mg_auth_key_parse(const char *s, size_t n, char id_out[MG_KEY_ID_LEN + 1])
{
    if (n != MG_KEY_LEN || memcmp(s, MG_KEY_PREFIX, 4) != 0 || s[4 + MG_KEY_ID_LEN] != '_')
        return false;
    for (size_t i = 4; i < 4 + MG_KEY_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    for (size_t i = 5 + MG_KEY_ID_LEN; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    memcpy(id_out, s + 4, MG_KEY_ID_LEN);
    id_out[MG_KEY_ID_LEN] = '\0';
    return true;
}

void mg_auth_key_hash_hex(const char *key, size_t n, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[32];
    mg_auth_sha256(key, n, d);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}
