/* modelgate — unit tests: built-in content detectors and their validators.
 *
 * Each detector is checked with real-looking true positives (the exact span
 * matters: it is what redaction replaces) and with near misses that must not
 * match: Luhn-invalid cards, bad IBAN check digits, never-issued SSNs, dates,
 * IPs, identifiers that merely look like secrets.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"
#include "policy/policy.h"

static char found_buf[4096];

static bool collect(void *ctx, mg_policy_span s)
{
    const char *text = ctx;
    size_t n = strlen(found_buf);
    snprintf(found_buf + n, sizeof(found_buf) - n, "%s%.*s", n ? "|" : "", (int)(s.end - s.start),
             text + s.start);
    return true;
}

/* The matched substrings joined by '|', "" when nothing matched. */
static const char *found(mg_policy_detector d, const char *text)
{
    found_buf[0] = '\0';
    if (mg_policy_detect(d, text, strlen(text), collect, (void *)text) != MG_OK)
        return "(error)";
    return found_buf;
}

T_TEST(email)
{
    T_EQ_STR(found(MG_POLICY_DET_EMAIL, "mail alice@example.com now"), "alice@example.com");
    T_EQ_STR(found(MG_POLICY_DET_EMAIL, "<bob.smith+tag@mail.example.co.uk>, x@y.io."),
             "bob.smith+tag@mail.example.co.uk|x@y.io");
    T_EQ_STR(found(MG_POLICY_DET_EMAIL, "user@localhost and @handle and a@b and foo@bar.c0m"), "");
    T_EQ_STR(found(MG_POLICY_DET_EMAIL, "no at sign here"), "");
}

T_TEST(phone)
{
    T_EQ_STR(found(MG_POLICY_DET_PHONE, "call +1 (415) 555-2671 today"), "+1 (415) 555-2671");
    T_EQ_STR(found(MG_POLICY_DET_PHONE, "London +44 20 7946 0958."), "+44 20 7946 0958");
    T_EQ_STR(found(MG_POLICY_DET_PHONE, "E.164 +14155552671"), "+14155552671");
    T_EQ_STR(found(MG_POLICY_DET_PHONE, "office (415) 555-2671"), "(415) 555-2671");
    T_EQ_STR(found(MG_POLICY_DET_PHONE, "office 415-555-2671 or 415.555.2672"),
             "415-555-2671|415.555.2672");
    T_EQ_STR(found(MG_POLICY_DET_PHONE, "1-800-555-0199"), "1-800-555-0199");
    /* not phones */
    T_EQ_STR(found(MG_POLICY_DET_PHONE, "on 2024-01-15 at 10:30"), "");
    T_EQ_STR(found(MG_POLICY_DET_PHONE, "host 192.168.100.200 port 8080"), "");
    T_EQ_STR(found(MG_POLICY_DET_PHONE, "order 5551234567 and 123456789012345"), "");
    T_EQ_STR(found(MG_POLICY_DET_PHONE, "area 115-555-2671 starts with 1"), "");
    T_EQ_STR(found(MG_POLICY_DET_PHONE, "1+2 = 3, +12 34"), "");
    T_EQ_STR(found(MG_POLICY_DET_PHONE, "version 1.415.555.2671.4"), "");
}

T_TEST(luhn)
{
    T_CHECK(mg_policy_luhn_ok("4111111111111111", 16));
    T_CHECK(mg_policy_luhn_ok("4111 1111 1111 1111", 19));
    T_CHECK(!mg_policy_luhn_ok("4111111111111112", 16));
    T_CHECK(!mg_policy_luhn_ok("", 0));
    T_CHECK(!mg_policy_luhn_ok("41x1", 4));
}

T_TEST(credit_card)
{
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "card 4111 1111 1111 1111 exp 12/27"), "4111 1111 1111 1111");
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "4111-1111-1111-1111"), "4111-1111-1111-1111");
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "mc 5500000000000004."), "5500000000000004");
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "amex 3782 822463 10005"), "3782 822463 10005");
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "discover 6011111111111117"), "6011111111111117");
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "x 12 4111111111111111"), "4111111111111111");
    /* Luhn-invalid, wrong issuer digit, mixed separators, too short/long */
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "card 4111 1111 1111 1112"), "");
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "id 1111111111111117"), "");
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "4111-1111 1111-1111"), "");
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "411111111111"), "");
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "41111111111111111111111"), "");
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "ts 1700000000000 and 3.4111111111111111"), "");
}

T_TEST(ssn)
{
    T_CHECK(mg_policy_ssn_ok("536-22-1234", 11));
    T_CHECK(mg_policy_ssn_ok("536 22 1234", 11));
    T_CHECK(!mg_policy_ssn_ok("536-22 1234", 11));
    T_CHECK(!mg_policy_ssn_ok("000-12-3456", 11));
    T_CHECK(!mg_policy_ssn_ok("666-12-3456", 11));
    T_CHECK(!mg_policy_ssn_ok("900-12-3456", 11));
    T_CHECK(!mg_policy_ssn_ok("999-12-3456", 11));
    T_CHECK(!mg_policy_ssn_ok("536-00-3456", 11));
    T_CHECK(!mg_policy_ssn_ok("536-22-0000", 11));
    T_CHECK(!mg_policy_ssn_ok("078-05-1120", 11));
    T_CHECK(!mg_policy_ssn_ok("123-45-6789", 11));
    T_EQ_STR(found(MG_POLICY_DET_SSN, "ssn: 536-22-1234."), "536-22-1234");
    T_EQ_STR(found(MG_POLICY_DET_SSN, "ssn 536 22 1234 ok"), "536 22 1234");
    T_EQ_STR(found(MG_POLICY_DET_SSN, "bad 666-12-3456 900-12-3456 536-00-1234 536-22-0000"), "");
    T_EQ_STR(found(MG_POLICY_DET_SSN, "part 1536-22-1234 and 536-22-12345"), "");
    T_EQ_STR(found(MG_POLICY_DET_SSN, "phone 415-555-2671"), "");
}

T_TEST(iban)
{
    T_CHECK(mg_policy_iban_ok("DE89370400440532013000", 22));
    T_CHECK(mg_policy_iban_ok("GB82 WEST 1234 5698 7654 32", 27));
    T_CHECK(!mg_policy_iban_ok("DE89370400440532013001", 22));
    T_CHECK(!mg_policy_iban_ok("DE8937040044053201300", 21));
    T_CHECK(!mg_policy_iban_ok("ZZ89370400440532013000", 22));
    T_EQ_STR(found(MG_POLICY_DET_IBAN, "pay to DE89 3704 0044 0532 0130 00 EUR"), "DE89 3704 0044 0532 0130 00");
    T_EQ_STR(found(MG_POLICY_DET_IBAN, "GB82WEST12345698765432, NL91ABNA0417164300"),
             "GB82WEST12345698765432|NL91ABNA0417164300");
    T_EQ_STR(found(MG_POLICY_DET_IBAN, "FR14 2004 1010 0505 0001 3M02 606"), "FR14 2004 1010 0505 0001 3M02 606");
    T_EQ_STR(found(MG_POLICY_DET_IBAN, "lower de89370400440532013000"), "de89370400440532013000");
    /* bad check digits, unknown country, glued to more text */
    T_EQ_STR(found(MG_POLICY_DET_IBAN, "DE89 3704 0044 0532 0130 01"), "");
    T_EQ_STR(found(MG_POLICY_DET_IBAN, "SKU AB12345678901234567"), "");
    T_EQ_STR(found(MG_POLICY_DET_IBAN, "DE89370400440532013000X"), "");
}

T_TEST(secrets)
{
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "key AKIAIOSFODNN7EXAMPLE here"), "AKIAIOSFODNN7EXAMPLE");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "ASIAY34FZKBOKMUTVV7A"), "ASIAY34FZKBOKMUTVV7A");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"),
             "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "use sk-proj-abc123DEF456ghi789JKL012mno345 please"),
             "sk-proj-abc123DEF456ghi789JKL012mno345");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "sk-ant-api03-abcdefGHIJKL0123456789xyz"),
             "sk-ant-api03-abcdefGHIJKL0123456789xyz");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
             "ghp_abcdefghijklmnopqrstuvwxyz0123456789");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "github_pat_11ABCDEFG0123456789_abcdefghijklmnop"),
             "github_pat_11ABCDEFG0123456789_abcdefghijklmnop");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "slack xoxb-1234567890-abcdefghij"), "xoxb-1234567890-abcdefghij");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
             "AIzaSyA1234567890abcdefghijklmnopqrstuv");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
             "sk_live_4eC39HqLyjWDarjtT1zdp7dc");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY,
                   "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
             "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "config api_key=\"abcd1234efgh5678\""), "abcd1234efgh5678");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "PASSWORD: hunter22hunter"), "hunter22hunter");
    /* look-alikes */
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "token = tokenizer.encode(text)"), "");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "pip install sk-learn-is-a-library-for-ml"), "");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "api_key = os.environ['KEY']"), "");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "AKIA short AKIAIOSFODNN7EXAMPL"), "");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "token_count: 123456789012"), "");
}

T_TEST(private_key)
{
    const char *pem = "here:\n-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
                      "-----END RSA PRIVATE KEY-----\nthanks";
    T_EQ_STR(found(MG_POLICY_DET_PRIVATE_KEY, pem),
             "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
             "-----END RSA PRIVATE KEY-----");
    T_EQ_STR(found(MG_POLICY_DET_PRIVATE_KEY, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk"),
             "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk");
    T_EQ_STR(found(MG_POLICY_DET_PRIVATE_KEY, "-----BEGIN PUBLIC KEY-----\nMFwwDQYJ\n-----END PUBLIC KEY-----"), "");
    T_EQ_STR(found(MG_POLICY_DET_PRIVATE_KEY, "-----BEGIN CERTIFICATE-----"), "");
}

/* The C pre-passes that decide where (or whether) the regexes run: the
 * digit search reads eight bytes at a time, so a number must be found at
 * every offset within those words, next to non-ASCII bytes (whose low seven
 * bits look like digits: 0xB0..0xB9) and at the very ends of the text; the
 * secret needles are looked for by their rarest byte, so each must be
 * found at the start and the end of a text too. */
T_TEST(prepass_finds_at_every_offset)
{
    static const char *const fill[] = { "", "x", "éé", "\xc2\xb0\xc2\xb9", "word ", "°±²³¹ text" };
    for (size_t f = 0; f < MG_ARRAY_LEN(fill); f++) {
        for (size_t pad = 0; pad < 17; pad++) {
            char text[256], want[64];
            int n = snprintf(text, sizeof(text), "%s %.*s", fill[f], (int)pad, "                ");
            /* each detector alone at the end of the text, then mid-text */
            snprintf(text + n, sizeof(text) - (size_t)n, "GB82WEST12345698765432");
            T_EQ_STR(found(MG_POLICY_DET_IBAN, text), "GB82WEST12345698765432");
            snprintf(text + n, sizeof(text) - (size_t)n, "4111 1111 1111 1111 ok");
            T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, text), "4111 1111 1111 1111");
            /* words holding only zeros or nines: both ends of the digit range */
            snprintf(text + n, sizeof(text) - (size_t)n, "5500 0000 0000 0004 and 4999 9999 9999 9996");
            T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, text), "5500 0000 0000 0004|4999 9999 9999 9996");
            snprintf(text + n, sizeof(text) - (size_t)n, "call (900) 900-9000 or (909) 999-0099 now");
            T_EQ_STR(found(MG_POLICY_DET_PHONE, text), "(900) 900-9000|(909) 999-0099");
            snprintf(text + n, sizeof(text) - (size_t)n, "ssn 219-09-9998");
            T_EQ_STR(found(MG_POLICY_DET_SSN, text), "219-09-9998");
            snprintf(text + n, sizeof(text) - (size_t)n, "(415) 555-2671\xc2\xb9");
            T_EQ_STR(found(MG_POLICY_DET_PHONE, text), "(415) 555-2671");
            snprintf(want, sizeof(want), "AKIAIOSFODNN7EXAMPLE");
            snprintf(text + n, sizeof(text) - (size_t)n, "%s", want);
            T_EQ_STR(found(MG_POLICY_DET_API_KEY, text), want);
        }
    }
    /* needles at offset 0 and ending at the last byte */
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "sk-proj-abc123def456ghi789jkl0"), "sk-proj-abc123def456ghi789jkl0");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "xoxb-1234567890-abcdefghij"), "xoxb-1234567890-abcdefghij");
    T_EQ_STR(found(MG_POLICY_DET_EMAIL, "a@example.org"), "a@example.org");
    const char *pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
    T_EQ_STR(found(MG_POLICY_DET_PRIVATE_KEY, pem), pem);
}

/* Texts without a pre-pass's trigger find nothing, whatever else they hold:
 * digits split into short runs, high bytes that mask to digits, needles
 * missing a byte. */
T_TEST(prepass_negatives)
{
    T_EQ_STR(found(MG_POLICY_DET_IBAN, "\xc2\xb0\xc2\xb1\xc2\xb2\xc2\xb3 GB\xc2\xb8\xc2\xb2WEST 1.2.3.4"), "");
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "release 3.1.7 of 4111 and 1111, in 2024"), "");
    T_EQ_STR(found(MG_POLICY_DET_CREDIT_CARD, "\xc2\xb4\xc2\xb1\xc2\xb1\xc2\xb1 \xc2\xb1\xc2\xb1\xc2\xb1\xc2\xb1 "
                                              "\xc2\xb1\xc2\xb1\xc2\xb1\xc2\xb1 \xc2\xb1\xc2\xb1\xc2\xb1\xc2\xb1"), "");
    T_EQ_STR(found(MG_POLICY_DET_API_KEY, "AKI AIOSFODNN7EXAMPLE, s k-proj-abc123def456ghi789jkl0, ghp abc"), "");
    T_EQ_STR(found(MG_POLICY_DET_PRIVATE_KEY, "----BEGIN PRIVATE KEY-----\nabc"), "");
    T_EQ_STR(found(MG_POLICY_DET_EMAIL, "alice at example.com"), "");
}

T_TEST(names_and_placeholders)
{
    T_EQ_STR(mg_policy_detector_placeholder(MG_POLICY_DET_EMAIL), "[EMAIL]");
    T_EQ_STR(mg_policy_detector_placeholder(MG_POLICY_DET_PHONE), "[PHONE]");
    T_EQ_STR(mg_policy_detector_placeholder(MG_POLICY_DET_CREDIT_CARD), "[CREDIT_CARD]");
    T_EQ_STR(mg_policy_detector_placeholder(MG_POLICY_DET_SSN), "[SSN]");
    T_EQ_STR(mg_policy_detector_placeholder(MG_POLICY_DET_IBAN), "[IBAN]");
    T_EQ_STR(mg_policy_detector_placeholder(MG_POLICY_DET_API_KEY), "[SECRET]");
    T_EQ_STR(mg_policy_detector_placeholder(MG_POLICY_DET_PRIVATE_KEY), "[PRIVATE_KEY]");
    T_EQ_INT(mg_policy_detector_from_name("credit_card"), MG_POLICY_DET_CREDIT_CARD);
    T_EQ_INT(mg_policy_detector_from_name("creditcard"), -1);
}

T_MAIN("policy_detectors",
       T_CASE(email), T_CASE(phone), T_CASE(luhn), T_CASE(credit_card), T_CASE(ssn), T_CASE(iban), T_CASE(prepass_finds_at_every_offset), T_CASE(prepass_negatives),
       T_CASE(secrets), T_CASE(private_key), T_CASE(names_and_placeholders))
