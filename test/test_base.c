/* Error codes, time and the version: weft_strerror names every code,
 * weft_now is monotonic, weft_deadline saturates, weft_version() is the
 * headers' WEFT_VERSION_*. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/error.h"
#include "weft/time.h"
#include "weft/version.h"

static const int codes[] = {WEFT_OK,        WEFT_ECLOSED, WEFT_EAGAIN, WEFT_ECANCELED,
                            WEFT_ETIMEDOUT, WEFT_ENOMEM,  WEFT_EINVAL};
enum { CODE_COUNT = sizeof codes / sizeof codes[0] };

START_TEST(test_strerror_names_every_code_distinctly) {
    for (int i = 0; i < CODE_COUNT; i++) {
        const char *text = weft_strerror(codes[i]);
        ck_assert_ptr_nonnull(text);
        ck_assert_str_ne(text, weft_strerror(12345));
        for (int j = 0; j < i; j++) ck_assert_str_ne(text, weft_strerror(codes[j]));
    }
}
END_TEST

START_TEST(test_strerror_of_unknown_code_is_not_null) {
    ck_assert_str_eq(weft_strerror(-999), "unknown weft error");
    ck_assert_str_eq(weft_strerror(7), "unknown weft error");
}
END_TEST

START_TEST(test_now_never_goes_backwards) {
    weft_time previous = weft_now();
    for (int i = 0; i < 100000; i++) {
        weft_time now = weft_now();
        ck_assert_int_ge(now, previous);
        previous = now;
    }
}
END_TEST

START_TEST(test_duration_macros_count_nanoseconds) {
    ck_assert_int_eq(WEFT_US(3), 3000);
    ck_assert_int_eq(WEFT_MS(3), 3000000);
    ck_assert_int_eq(WEFT_SEC(3), 3000000000LL);
}
END_TEST

START_TEST(test_deadline_adds_timeout_to_now) {
    weft_time before = weft_now();
    weft_time deadline = weft_deadline(WEFT_MS(50));
    weft_time after = weft_now();
    ck_assert_int_ge(deadline, before + WEFT_MS(50));
    ck_assert_int_le(deadline, after + WEFT_MS(50));
}
END_TEST

START_TEST(test_deadline_saturates_at_forever) {
    ck_assert_int_eq(weft_deadline(WEFT_FOREVER), WEFT_FOREVER);
    ck_assert_int_eq(weft_deadline(WEFT_FOREVER - 1), WEFT_FOREVER);
}
END_TEST

START_TEST(test_deadline_of_nonpositive_timeout_has_passed) {
    weft_time deadline = weft_deadline(-WEFT_SEC(1));
    ck_assert_int_le(deadline, weft_now());
    ck_assert_int_le(weft_deadline(0), weft_now());
}
END_TEST

START_TEST(test_version_string_is_major_minor_patch) {
    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR,
             WEFT_VERSION_PATCH);
    ck_assert_str_eq(WEFT_VERSION_STRING, expected);
    ck_assert_int_eq(WEFT_VERSION_NUMBER,
                     WEFT_VERSION_MAJOR * 10000 + WEFT_VERSION_MINOR * 100 + WEFT_VERSION_PATCH);
}
END_TEST

/* The library was built from these headers: its run-time answers are the
 * macros the test was compiled with. */
START_TEST(test_library_version_matches_headers) {
    ck_assert_ptr_nonnull(weft_version());
    ck_assert_str_eq(weft_version(), WEFT_VERSION_STRING);
    ck_assert_int_eq(weft_version_number(), WEFT_VERSION_NUMBER);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("base");
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, test_strerror_names_every_code_distinctly);
    tcase_add_test(errors, test_strerror_of_unknown_code_is_not_null);
    suite_add_tcase(suite, errors);
    TCase *time = tcase_create("time");
    tcase_add_test(time, test_now_never_goes_backwards);
    tcase_add_test(time, test_duration_macros_count_nanoseconds);
    tcase_add_test(time, test_deadline_adds_timeout_to_now);
    tcase_add_test(time, test_deadline_saturates_at_forever);
    tcase_add_test(time, test_deadline_of_nonpositive_timeout_has_passed);
    suite_add_tcase(suite, time);
    TCase *version = tcase_create("version");
    tcase_add_test(version, test_version_string_is_major_minor_patch);
    tcase_add_test(version, test_library_version_matches_headers);
    suite_add_tcase(suite, version);
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
