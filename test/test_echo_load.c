/* The echo benchmark's load generator (bench/echo/echo_load.c) run for a
 * moment against the release echo server and the pthread reference
 * server, as `make bench` runs it for long: it must finish, exit 0 (so
 * every echo was right and each server's summary agreed) and print its
 * tables. A few hundred requests; nothing here asserts on speed. The Go
 * server is `make bench`'s business. */
#include <fcntl.h>
#include <sys/wait.h>

#include "testutil.h"

/* Run echo_load with a small load and return what it printed. */
static void run_load(char *output, size_t size, int *status) {
    char load[PATH_MAX], server[PATH_MAX], threads[PATH_MAX];
    built_program_path("build/release/bench/echo/echo_load", load, sizeof load);
    built_program_path("build/release/examples/echo_server", server, sizeof server);
    built_program_path("build/release/bench/echo/echo_server_threads", threads, sizeof threads);
    const char *argv[] = {load,   "--weft", server, "--threads", threads, "--connections",
                          "1,10", "--reps", "1",    "--seconds", "0.5",   "--requests",
                          "300",  "--idle", "50",   NULL};
    int pipe_fds[2];
    ck_assert_int_eq(pipe2(pipe_fds, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        dup2(pipe_fds[1], STDOUT_FILENO);
        execv(load, (char *const *)argv);
        _exit(127);
    }
    close(pipe_fds[1]);
    size_t length = 0;
    ssize_t got;
    while ((got = read(pipe_fds[0], output + length, size - 1 - length)) != 0) {
        if (got < 0 && errno == EINTR) continue;
        ck_assert_int_gt(got, 0);
        length += (size_t)got;
        ck_assert_uint_lt(length, size - 1);
    }
    output[length] = '\0';
    close(pipe_fds[0]);
    while (waitpid(child, status, 0) < 0) ck_assert_int_eq(errno, EINTR);
}

START_TEST(test_short_load_run_checks_every_echo_and_reports) {
    static char output[16384];
    int status;
    run_load(output, sizeof output, &status);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x; printed:\n%s", status,
                  output);
    ck_assert_ptr_nonnull(strstr(output, "\n1 connection, 1 reps"));
    ck_assert_ptr_nonnull(strstr(output, "\n10 connections, 1 reps"));
    ck_assert_ptr_nonnull(strstr(output, "50 idle: VmRSS"));
    ck_assert_ptr_nonnull(strstr(output, "weft server: accepted 61 connections, closed 61"));
    ck_assert_ptr_nonnull(strstr(output, "thr  server: accepted 61 connections, closed 61"));
}
END_TEST

static Suite *echo_load_suite(void) {
    Suite *suite = suite_create("echo_load");
    TCase *tc = new_case(suite, "echo_load");
    tcase_add_test(tc, test_short_load_run_checks_every_echo_and_reports);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(echo_load_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
