/* The example programs (examples/<name>.c) run as a user would run them: each
 * test starts the release build of one with popen and checks everything
 * it prints and its exit status. The examples are built by `make
 * examples` into build/release/examples/, found from this program's own
 * path (build/<variant>/test/), so every variant runs the same binaries. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* The path of examples/<name>.c's program; fails the test if it is not
 * there. */
static void example_path(const char *name, char *path, size_t size) {
    char self[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert_msg(length > 0, "readlink /proc/self/exe failed");
    self[length] = '\0';
    /* .../build/<variant>/test/test_examples -> .../build */
    for (int up = 0; up < 3; up++) {
        char *slash = strrchr(self, '/');
        ck_assert_ptr_nonnull(slash);
        *slash = '\0';
    }
    int written = snprintf(path, size, "%s/release/examples/%s", self, name);
    ck_assert_msg(written > 0 && (size_t)written < size, "path too long");
    ck_assert_msg(access(path, X_OK) == 0, "%s is missing: run `make examples` first", path);
}

typedef struct {
    char output[4096]; /* everything it wrote to stdout */
    int exit_status;   /* -1 if it did not exit normally */
} run_result;

/* Run examples/<name> with arguments (a string for the shell, may be
 * empty) and collect its stdout and exit status. */
static run_result run_example(const char *name, const char *arguments) {
    char path[PATH_MAX];
    example_path(name, path, sizeof path);
    char command[PATH_MAX + 256];
    int written = snprintf(command, sizeof command, "'%s' %s", path, arguments);
    ck_assert_msg(written > 0 && (size_t)written < sizeof command, "command too long");
    fflush(NULL);
    FILE *pipe = popen(command, "r");
    ck_assert_msg(pipe != NULL, "popen %s failed", command);
    run_result result;
    size_t length = fread(result.output, 1, sizeof result.output - 1, pipe);
    result.output[length] = '\0';
    int status = pclose(pipe);
    result.exit_status = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

START_TEST(test_numbers_prints_one_to_five) {
    run_result result = run_example("numbers", "");
    ck_assert_int_eq(result.exit_status, 0);
    ck_assert_str_eq(result.output, "1\n2\n3\n4\n5\n");
}
END_TEST

static const char worker_loop_output[] = "working...\n"
                                         "working...\n"
                                         "working...\n"
                                         "worker stopped: deadline passed\n";

/* Ticks at 100, 200 and 300 ms, stopped at 350: the last tick has 50 ms to
 * arrive, the proportions of the default 200 and 700. */
START_TEST(test_worker_loop_works_three_times_then_stops_at_the_deadline) {
    run_result result = run_example("worker_loop", "100 350");
    ck_assert_int_eq(result.exit_status, 0);
    ck_assert_str_eq(result.output, worker_loop_output);
}
END_TEST

START_TEST(test_worker_loop_default_times_give_the_same_output) {
    run_result result = run_example("worker_loop", "");
    ck_assert_int_eq(result.exit_status, 0);
    ck_assert_str_eq(result.output, worker_loop_output);
}
END_TEST

START_TEST(test_worker_loop_rejects_bad_arguments) {
    static const char *const bad[] = {"0 100", "100 -5", "100", "1x 100", "100 200 300"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char arguments[64];
        snprintf(arguments, sizeof arguments, "%s 2>&1", bad[i]); /* the usage line: stderr */
        run_result result = run_example("worker_loop", arguments);
        ck_assert_msg(result.exit_status == 2, "\"%s\": exit status %d, not 2", bad[i],
                      result.exit_status);
        ck_assert_msg(strncmp(result.output, "usage: ", 7) == 0, "\"%s\": printed %s", bad[i],
                      result.output);
    }
}
END_TEST

static Suite *examples_suite(void) {
    Suite *suite = suite_create("examples");
    TCase *tc;

    tc = new_case(suite, "numbers");
    tcase_add_test(tc, test_numbers_prints_one_to_five);

    tc = new_case(suite, "worker_loop");
    tcase_add_test(tc, test_worker_loop_works_three_times_then_stops_at_the_deadline);
    tcase_add_test(tc, test_worker_loop_default_times_give_the_same_output);
    tcase_add_test(tc, test_worker_loop_rejects_bad_arguments);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(examples_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
