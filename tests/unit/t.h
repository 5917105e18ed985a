/* modelgate — a tiny unit-test harness.
 *
 * Each tests/unit/test_*.c file defines test functions with T_TEST(name) and
 * lists them in T_MAIN(...). A failed check records the file:line and the
 * test goes on; the binary prints "name: N passed, N failed" and exits 1 if
 * anything failed. tests/run-unit.sh adds the files up.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef MG_T_H
#define MG_T_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_checks_failed;

#define T_TEST(name) static void name(void)

#define T_CHECK(cond) do { \
    if (!(cond)) { \
        fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        t_checks_failed++; \
    } } while (0)

#define T_EQ_INT(a, b) do { \
    long long t_a_ = (long long)(a), t_b_ = (long long)(b); \
    if (t_a_ != t_b_) { \
        fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, t_a_, t_b_); \
        t_checks_failed++; \
    } } while (0)

#define T_EQ_STR(a, b) do { \
    const char *t_a_ = (a), *t_b_ = (b); \
    if (t_a_ == NULL || t_b_ == NULL || strcmp(t_a_, t_b_) != 0) { \
        fprintf(stderr, "  %s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, #b, \
                t_a_ ? t_a_ : "(null)", t_b_ ? t_b_ : "(null)"); \
        t_checks_failed++; \
    } } while (0)

typedef struct { const char *name; void (*fn)(void); } t_case;

static inline int t_run(const char *suite, const t_case *cases, size_t n)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        int before = t_checks_failed;
        cases[i].fn();
        if (t_checks_failed == before) {
            passed++;
        } else {
            failed++;
            fprintf(stderr, "FAIL %s.%s\n", suite, cases[i].name);
        }
    }
    printf("%s: %d passed, %d failed\n", suite, passed, failed);
    return failed ? 1 : 0;
}

#define T_CASE(fn) { #fn, fn }
#define T_MAIN(suite, ...) \
    int main(void) { \
        static const t_case t_cases_[] = { __VA_ARGS__ }; \
        return t_run(suite, t_cases_, sizeof(t_cases_) / sizeof(t_cases_[0])); \
    }

#endif
