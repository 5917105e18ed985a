/* modelgate — fuzz target: the bearer JWT pre-parser and claim rules.
 *
 * The input is a presented credential. Whatever it is, parsing must end in
 * MG_OK or MG_ERR with a reason, never a crash or leak; a parsed token then
 * goes through the claim checks (fixed clock) and a signature check with a
 * fixed Ed25519 key, which must fail for anything the fuzzer makes.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "auth/jwt.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static EVP_PKEY *key;
    static const unsigned char pub[32] = {1, 2, 3};
    if (key == NULL)
        key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, sizeof(pub));
    (void)mg_auth_jwt_looks_like((const char *)data, size);
    mg_auth_jwt jwt;
    const char *why = NULL;
    if (mg_auth_jwt_parse((const char *)data, size, &jwt, &why) != MG_OK) {
        if (why == NULL)
            abort();
        return 0;
    }
    static const char *aud[] = {"modelgate"};
    mg_auth_jwt_rules rules = {"https://idp.example/", aud, 1, "modelgate", true};
    (void)mg_auth_jwt_check(&jwt, &rules, 1700000000, &why);
    if (mg_auth_jwt_verify(&jwt, (const char *)data, key))
        abort();   /* nobody holds the private half of a made-up key */
    /* The JWK converter sees the header as if it were a key. */
    EVP_PKEY_free(mg_auth_jwk_to_pkey(jwt.header));
    mg_auth_jwt_free(&jwt);
    return 0;
}
