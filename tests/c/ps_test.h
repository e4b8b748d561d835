/* A minimal test harness for the C unit tests: CHECK records a failure with
 * its location and goes on; each test file's main returns the failure count. */
#ifndef PS_TEST_H
#define PS_TEST_H

#include <stdio.h>

static int ps_test_failures;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                      \
            ps_test_failures++;                                            \
        }                                                                  \
    } while (0)

#define RUN(test)                                                          \
    do {                                                                   \
        int before = ps_test_failures;                                     \
        test();                                                            \
        printf("%s %s\n", ps_test_failures == before ? "ok  " : "FAIL",    \
               #test);                                                     \
    } while (0)

#endif /* PS_TEST_H */
