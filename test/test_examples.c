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
    char relative[PATH_MAX];
    int written = snprintf(relative, sizeof relative, "build/release/examples/%s", name);
    ck_assert_msg(written > 0 && (size_t)written < sizeof relative, "name too long");
    built_program_path(relative, path, size);
}

typedef struct {
    char output[16384]; /* everything it wrote to stdout */
    int exit_status;    /* -1 if it did not exit normally */
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

/* Each of bad, given to examples/<name>, makes it print a usage line to
 * stderr and exit with status 2. */
static void assert_usage_errors(const char *name, const char *const *bad, size_t count) {
    for (size_t i = 0; i < count; i++) {
        char arguments[64];
        snprintf(arguments, sizeof arguments, "%s 2>&1", bad[i]); /* the usage line: stderr */
        run_result result = run_example(name, arguments);
        ck_assert_msg(result.exit_status == 2, "%s \"%s\": exit status %d, not 2", name, bad[i],
                      result.exit_status);
        ck_assert_msg(strncmp(result.output, "usage: ", 7) == 0, "%s \"%s\": printed %s", name,
                      bad[i], result.output);
    }
}

START_TEST(test_worker_loop_rejects_bad_arguments) {
    static const char *const bad[] = {"0 100", "100 -5", "100", "1x 100", "100 200 300"};
    assert_usage_errors("worker_loop", bad, sizeof bad / sizeof bad[0]);
}
END_TEST

/* The line of text that starts at *cursor, without its newline, copied
 * into line (size bytes); *cursor moves to the next line. Fails the test
 * if no complete line is left. */
static void next_line(const char **cursor, char *line, size_t size) {
    const char *end = strchr(*cursor, '\n');
    ck_assert_msg(end != NULL, "expected another line, output ends with \"%s\"", *cursor);
    size_t length = (size_t)(end - *cursor);
    ck_assert_msg(length < size, "line too long: %.*s", (int)length, *cursor);
    memcpy(line, *cursor, length);
    line[length] = '\0';
    *cursor = end + 1;
}

START_TEST(test_send_email_sends_to_each_address_once) {
    run_result result = run_example("send_email", "");
    ck_assert_int_eq(result.exit_status, 0);
    ck_assert_str_eq(result.output, "sent to ada@example.com\n"
                                    "sent to grace@example.com\n"
                                    "sent to linus@example.com\n"
                                    "3 emails sent\n");
}
END_TEST

START_TEST(test_worker_pool_processes_each_job_once) {
    run_result result = run_example("worker_pool", "");
    ck_assert_int_eq(result.exit_status, 0);
    ck_assert_str_eq(result.output, "job 1 -> 1\n"
                                    "job 2 -> 4\n"
                                    "job 3 -> 9\n"
                                    "job 4 -> 16\n"
                                    "job 5 -> 25\n"
                                    "job 6 -> 36\n"
                                    "job 7 -> 49\n"
                                    "job 8 -> 64\n"
                                    "job 9 -> 81\n"
                                    "job 10 -> 100\n"
                                    "worker 1 stopped: channel closed\n"
                                    "worker 2 stopped: channel closed\n"
                                    "worker 3 stopped: channel closed\n"
                                    "sum: 385\n");
}
END_TEST

START_TEST(test_pipeline_merges_every_square_and_cancels_without_leaks) {
    run_result result = run_example("pipeline", "");
    ck_assert_int_eq(result.exit_status, 0);
    ck_assert_str_eq(result.output, "squares of 1..10: 1 4 9 16 25 36 49 64 81 100 (sum 385)\n"
                                    "goroutines running: 0\n"
                                    "took 3 squares of 1..1000, then canceled the rest\n"
                                    "goroutines running: 0\n");
}
END_TEST

/* Everything but the last line is fixed; the most fetches seen in flight
 * at once depends on scheduling, but never exceeds the limit. */
START_TEST(test_parallel_fetch_cancels_the_rest_at_the_first_error) {
    static const char fixed[] = "fetched 5 pages, at most 3 at once:\n"
                                "  /index.html: 200 OK\n"
                                "  /about.html: 200 OK\n"
                                "  /news.html: 200 OK\n"
                                "  /blog.html: 200 OK\n"
                                "  /faq.html: 200 OK\n"
                                "first error: none\n"
                                "fetched 5 pages, at most 3 at once:\n"
                                "  /missing.html: 404 not found\n"
                                "  /slow/1.html: context canceled\n"
                                "  /slow/2.html: context canceled\n"
                                "  /slow/3.html: context canceled\n"
                                "  /slow/4.html: context canceled\n"
                                "first error: 404 not found\n";
    run_result result = run_example("parallel_fetch", "");
    ck_assert_int_eq(result.exit_status, 0);
    ck_assert_msg(strncmp(result.output, fixed, strlen(fixed)) == 0, "printed:\n%s", result.output);
    const char *last = result.output + strlen(fixed);
    int most = 0;
    ck_assert_int_eq(sscanf(last, "most fetches in flight: %d", &most), 1);
    ck_assert_int_ge(most, 1);
    ck_assert_int_le(most, 3);
    char expected[64];
    snprintf(expected, sizeof expected, "most fetches in flight: %d (limit 3)\n", most);
    ck_assert_str_eq(last, expected);
}
END_TEST

/* The flushes, one line each, numbered from 1, add up to what the workers
 * counted; how many there are, and their sizes, depend on timing. */
START_TEST(test_metrics_flush_flushes_every_count_exactly_once) {
    run_result result = run_example("metrics_flush", "25");
    ck_assert_int_eq(result.exit_status, 0);
    const char *cursor = result.output;
    long flushes = 0, requests = 0, errors = 0;
    while (strncmp(cursor, "flush ", 6) == 0) {
        char line[128], expected[128];
        long number, flushed_requests, flushed_errors;
        next_line(&cursor, line, sizeof line);
        ck_assert_msg(sscanf(line, "flush %ld: %ld requests, %ld errors", &number,
                             &flushed_requests, &flushed_errors) == 3,
                      "bad line: %s", line);
        snprintf(expected, sizeof expected, "flush %ld: %ld requests, %ld errors", flushes + 1,
                 flushed_requests, flushed_errors);
        ck_assert_str_eq(line, expected);
        /* a request and its error are counted, and taken, under one lock */
        ck_assert(flushed_errors >= 0 && flushed_errors <= flushed_requests);
        flushes++;
        requests += flushed_requests;
        errors += flushed_errors;
    }
    ck_assert_int_ge(flushes, 1);
    ck_assert_int_eq(requests, 800);
    ck_assert_int_eq(errors, 80);
    char summary[128];
    snprintf(summary, sizeof summary,
             "counted 800 requests, 80 errors\n"
             "flushed 800 requests, 80 errors in %ld flushes\n",
             flushes);
    ck_assert_str_eq(cursor, summary);
}
END_TEST

START_TEST(test_metrics_flush_rejects_bad_arguments) {
    static const char *const bad[] = {"0", "-5", "1x", "''", "10 20"};
    assert_usage_errors("metrics_flush", bad, sizeof bad / sizeof bad[0]);
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

    tc = new_case(suite, "send_email");
    tcase_add_test(tc, test_send_email_sends_to_each_address_once);

    tc = new_case(suite, "worker_pool");
    tcase_add_test(tc, test_worker_pool_processes_each_job_once);

    tc = new_case(suite, "pipeline");
    tcase_add_test(tc, test_pipeline_merges_every_square_and_cancels_without_leaks);

    tc = new_case(suite, "parallel_fetch");
    tcase_add_test(tc, test_parallel_fetch_cancels_the_rest_at_the_first_error);

    tc = new_case(suite, "metrics_flush");
    tcase_add_test(tc, test_metrics_flush_flushes_every_count_exactly_once);
    tcase_add_test(tc, test_metrics_flush_rejects_bad_arguments);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(examples_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
