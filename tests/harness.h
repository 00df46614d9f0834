/* harness.h: the one main() every Check test program uses.
 *
 * A test file defines its START_TEST(name) functions and ends with
 *     #define TESTS(X) X(first_test) X(second_test)
 *     DM_TEST_MAIN("suite", TESTS)
 * Each test gets a TCase of its own named after it, so ctest can run one test per process via
 * CK_RUN_CASE=<name> (tests/CMakeLists.txt registers every START_TEST it finds in the file).
 * A program made with DM_TEST_MAIN_SKIP exits 77 (ctest's "skipped") before running anything when
 * its skip function says so: GPU tests without a GPU. */
#ifndef DM_TEST_HARNESS_H
#define DM_TEST_HARNESS_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DM_TEST_SKIP_CODE 77

/* Asked once in main, before Check forks any test: non-zero = skip the whole program. */
typedef int (*dm_test_skip_fn)(void);

#define DM_TEST_ADD_(name) \
    do { \
        TCase *tc_ = tcase_create(#name); \
        tcase_set_timeout(tc_, 600); \
        tcase_add_test(tc_, name); \
        suite_add_tcase(s_, tc_); \
    } while (0);

/* skip_fn may be NULL; when it returns non-zero the whole program reports "skipped" (77). */
#define DM_TEST_MAIN_SKIP(suite_name, LIST, skip_fn) \
    int main(void) \
    { \
        dm_test_skip_fn skip_ = (skip_fn); \
        if (skip_ && skip_()) \
            return DM_TEST_SKIP_CODE; \
        Suite *s_ = suite_create(suite_name); \
        LIST(DM_TEST_ADD_) \
        SRunner *sr_ = srunner_create(s_); \
        srunner_run_all(sr_, CK_NORMAL); \
        int failed_ = srunner_ntests_failed(sr_); \
        int run_ = srunner_ntests_run(sr_); \
        srunner_free(sr_); \
        if (run_ == 0) { \
            fprintf(stderr, "%s: no test matched CK_RUN_CASE\n", suite_name); \
            return EXIT_FAILURE; \
        } \
        return failed_ == 0 ? EXIT_SUCCESS : EXIT_FAILURE; \
    }

#define DM_TEST_MAIN(suite_name, LIST) DM_TEST_MAIN_SKIP(suite_name, LIST, NULL)

#endif
