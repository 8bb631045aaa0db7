/* Helpers shared by the test suites (private to test/).
 *
 * Worker threads never call ck_assert: in CK_FORK=no mode a failed
 * assertion longjmps, which is undefined from any thread but the test's.
 * Workers record failures with WORKER_EXPECT instead, and the test thread
 * checks them with check_worker_failures() after joining.
 *
 * Where a test needs "thread X is now blocked", the thread bumps a counter
 * just before the blocking call and the test waits for the counter, then
 * sleeps a little more to give it time to block. No assertion depends on
 * that sleep being long enough: a short one only makes the test weaker. */
#ifndef WEFT_TEST_TESTUTIL_H
#define WEFT_TEST_TESTUTIL_H

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "sanitizers.h"
#include "weft/go.h"
#include "weft/time.h"

/* The per-test timeout in seconds: 120, or CK_DEFAULT_TIMEOUT when that is
 * longer (the sanitizer and valgrind runs set it). */
static inline double test_timeout(void) {
    const char *text = getenv("CK_DEFAULT_TIMEOUT");
    double timeout = text ? strtod(text, NULL) : 0;
    return timeout > 120 ? timeout : 120;
}

/* How long "give them time to block" waits after a thread announced it. */
#define SETTLE_MS 20

/* WEFT_TEST_SCALE=k divides the heavy tests' iteration counts by k
 * (for valgrind and ThreadSanitizer runs). */
static inline long test_scale(void) {
    const char *text = getenv("WEFT_TEST_SCALE");
    long scale = text ? strtol(text, NULL, 10) : 1;
    return scale > 0 ? scale : 1;
}

static inline long scaled(long count) {
    long result = count / test_scale();
    return result > 0 ? result : 1;
}

static inline void sleep_ms(long ms) {
    struct timespec duration = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&duration, &duration) != 0) {}
}

/* Failures seen by worker threads: a count and the first message. */
static atomic_int worker_failure_count;
static char worker_failure_text[256];

static inline void worker_fail(const char *file, int line, const char *what) {
    if (atomic_fetch_add(&worker_failure_count, 1) == 0)
        snprintf(worker_failure_text, sizeof worker_failure_text, "%s:%d: %s", file, line, what);
}

#define WORKER_EXPECT(condition)                                                   \
    do {                                                                           \
        if (!(condition)) worker_fail(__FILE__, __LINE__, "expected " #condition); \
    } while (0)

/* Call on the test thread after joining the workers. */
#define check_worker_failures()                                                          \
    do {                                                                                 \
        int failures_ = atomic_exchange(&worker_failure_count, 0);                       \
        ck_assert_msg(failures_ == 0, "%d worker check(s) failed; first: %s", failures_, \
                      worker_failure_text);                                              \
    } while (0)

static inline void start_thread(pthread_t *thread, void *(*body)(void *), void *arg) {
    int rc = pthread_create(thread, NULL, body, arg);
    ck_assert_msg(rc == 0, "pthread_create: %s", strerror(rc));
}

static inline void join_thread(pthread_t thread) {
    int rc = pthread_join(thread, NULL);
    ck_assert_msg(rc == 0, "pthread_join: %s", strerror(rc));
}

/* Wait (polling) until *counter >= target, then give the threads that
 * bumped it SETTLE_MS to reach their blocking call. */
static inline void wait_for_count(atomic_int *counter, int target) {
    weft_time give_up = weft_now() + WEFT_SEC(60);
    while (atomic_load(counter) < target) {
        ck_assert_msg(weft_now() < give_up, "threads never arrived (%d of %d)",
                      atomic_load(counter), target);
        sleep_ms(1);
    }
    sleep_ms(SETTLE_MS);
}

/* Wait (polling) until *counter >= target, with no settling sleep. */
static inline void wait_for_count_long(atomic_long *counter, long target) {
    weft_time give_up = weft_now() + WEFT_SEC(100);
    while (atomic_load(counter) < target) {
        ck_assert_msg(weft_now() < give_up, "progress stalled (%ld of %ld)", atomic_load(counter),
                      target);
        sleep_ms(1);
    }
}

/* The *_become helpers poll for at most this long: far above what a
 * healthy run needs, so that a missing wake-up fails the test instead of
 * hanging it. */
#define BECOME_LIMIT_MS 20000

/* Poll until *value == want; false if it has not after BECOME_LIMIT_MS. */
static inline bool int_becomes(atomic_int *value, int want) {
    weft_time give_up = weft_deadline(WEFT_MS(BECOME_LIMIT_MS));
    while (atomic_load(value) != want) {
        if (weft_now() >= give_up) return false;
        sleep_ms(1);
    }
    return true;
}

/* Poll until weft_goroutines() == want; false if it has not after
 * BECOME_LIMIT_MS. */
static inline bool goroutines_become(int want) {
    weft_time give_up = weft_deadline(WEFT_MS(BECOME_LIMIT_MS));
    while (weft_goroutines() != want) {
        if (weft_now() >= give_up) return false;
        sleep_ms(1);
    }
    return true;
}

/* Whether Check runs each test in a child process (CK_FORK). Suites that
 * build differently without fork need it before the suite exists, so a
 * throwaway runner is asked. */
static inline bool check_forks(void) {
    SRunner *probe = srunner_create(suite_create("probe"));
    bool forking = srunner_fork_status(probe) != CK_NOFORK;
    srunner_free(probe);
    return forking;
}

/* The path of a program built in this tree, `relative` to its top (say
 * "bench/weft-bench"), found from this test program's own path,
 * build/<variant>/test/<name>: every variant runs the same release
 * programs. Fails the test if the program is not there. */
static inline void built_program_path(const char *relative, char *path, size_t size) {
    char self[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert_msg(length > 0, "readlink /proc/self/exe failed");
    self[length] = '\0';
    for (int up = 0; up < 4; up++) {
        char *slash = strrchr(self, '/');
        ck_assert_ptr_nonnull(slash);
        *slash = '\0';
    }
    int written = snprintf(path, size, "%s/%s", self, relative);
    ck_assert_msg(written > 0 && (size_t)written < size, "path too long");
    ck_assert_msg(access(path, X_OK) == 0, "%s is missing: `make test` builds it", path);
}

/* Start argv[0] (searched in PATH) with argv, its stdout a pipe whose
 * read end is left in *output; returns its pid. The child dies with this
 * process (so a failed test leaves none behind) and starts with no signal
 * blocked and SIGTERM and SIGINT at their defaults. */
static inline pid_t spawn_with_output(const char *const *argv, int *output) {
    int pipe_fds[2];
    ck_assert_int_eq(pipe2(pipe_fds, O_CLOEXEC), 0);
    pid_t parent = getpid();
    fflush(NULL);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(126);
        dup2(pipe_fds[1], STDOUT_FILENO); /* the duplicate does not close on exec */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipe_fds[1]);
    *output = pipe_fds[0];
    return child;
}

/* A copy of this test program started by start_scenario. */
typedef struct {
    pid_t pid;
    int in, out, err; /* its stdin's write end, its stdout's and stderr's read ends */
} scenario_child;

/* Run this test program again as a child, with WEFT_TEST_SCENARIO set to
 * scenario and WEFT_DEBUG to debug (NULL: unset), whatever the caller's
 * environment says of either; its stdin, stdout and stderr are pipes to
 * the caller, and SIGABRT is at its default, so that a panic kills it.
 * The caller closes the three fds and waits for the pid. */
static inline scenario_child start_scenario(const char *scenario, const char *debug) {
    static char program[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", program, sizeof program - 1);
    ck_assert_int_gt(length, 0);
    program[length] = '\0';

    size_t inherited = 0;
    while (environ[inherited]) inherited++;
    char **environment = calloc(inherited + 3, sizeof *environment);
    ck_assert_ptr_nonnull(environment);
    size_t used = 0;
    for (size_t i = 0; i < inherited; i++)
        if (strncmp(environ[i], "WEFT_DEBUG=", 11) != 0 &&
            strncmp(environ[i], "WEFT_TEST_SCENARIO=", 19) != 0)
            environment[used++] = environ[i];
    char scenario_variable[128], debug_variable[128];
    snprintf(scenario_variable, sizeof scenario_variable, "WEFT_TEST_SCENARIO=%s", scenario);
    environment[used++] = scenario_variable;
    if (debug) {
        snprintf(debug_variable, sizeof debug_variable, "WEFT_DEBUG=%s", debug);
        environment[used++] = debug_variable;
    }

    int in[2], out[2], err[2];
    ck_assert_int_eq(pipe(in), 0);
    ck_assert_int_eq(pipe(out), 0);
    ck_assert_int_eq(pipe(err), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        for (int i = 0; i < 2; i++) close(in[i]), close(out[i]), close(err[i]);
        signal(SIGABRT, SIG_DFL);
        char *arguments[] = {program, NULL};
        execve(program, arguments, environment);
        _exit(127);
    }
    free(environment);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    return (scenario_child){pid, in[1], out[0], err[0]};
}

/* Read what a child process prints, from fd (the read end of its stdout),
 * onto text (size bytes, kept NUL-terminated; *length so far) until a
 * newline has come (until_eof false) or the pipe is closed; fails the
 * test after `seconds`. */
static inline void read_child_output(int fd, char *text, size_t size, size_t *length,
                                     bool until_eof, int seconds) {
    weft_time give_up = weft_now() + WEFT_SEC(seconds);
    while (until_eof || !strchr(text, '\n')) {
        ck_assert_msg(weft_now() < give_up, "the child printed only \"%s\"", text);
        struct pollfd ready = {fd, POLLIN, 0};
        if (poll(&ready, 1, 100) <= 0) continue;
        ck_assert_msg(*length < size - 1, "the child printed too much");
        ssize_t got = read(fd, text + *length, size - 1 - *length);
        if (got < 0 && errno == EINTR) continue;
        ck_assert_msg(got >= 0, "read: %s", strerror(errno));
        if (got == 0) break;
        *length += (size_t)got;
        text[*length] = '\0';
    }
}

/* A small deterministic generator for test data (xorshift64*). */
static inline uint64_t test_random(uint64_t *state) {
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ULL;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* Sort helper for logs of received values. */
static inline int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* A growable log of uint64 values, owned by one thread. */
typedef struct {
    uint64_t *values;
    size_t count, capacity;
} value_log;

static inline void log_append(value_log *log, uint64_t value) {
    if (log->count == log->capacity) {
        size_t capacity = log->capacity ? log->capacity * 2 : 1024;
        uint64_t *values = realloc(log->values, capacity * sizeof *values);
        if (!values) abort();
        log->values = values;
        log->capacity = capacity;
    }
    log->values[log->count++] = value;
}

static inline void log_free(value_log *log) {
    free(log->values);
    log->values = NULL;
    log->count = log->capacity = 0;
}

/* Runs after every test, even a failed one: no test leaves the
 * allocation-failure hook armed for the next. */
static inline void reset_alloc_hook(void) { weft__alloc_fail_from(0); }

/* A test case with the suite's timeout and the hook reset, added to suite. */
static inline TCase *new_case(Suite *suite, const char *name) {
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, test_timeout());
    tcase_add_checked_fixture(tc, NULL, reset_alloc_hook);
    suite_add_tcase(suite, tc);
    return tc;
}

/* Exactly-once delivery: every value below total was marked seen once. */
static inline void assert_each_seen_once(_Atomic unsigned char *seen, size_t total) {
    for (size_t v = 0; v < total; v++)
        ck_assert_msg(atomic_load(&seen[v]) == 1, "value %zu seen %d times", v,
                      (int)atomic_load(&seen[v]));
}

/* Run misuse() in a forked child whose stderr is a pipe; assert that the
 * child died of SIGABRT, and leave what it wrote in text (size bytes, NUL
 * terminated). */
static inline void abort_output(void (*misuse)(void), char *text, size_t size) {
    int pipe_fds[2];
    ck_assert_int_eq(pipe(pipe_fds), 0);
    fflush(NULL);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        close(pipe_fds[0]);
        dup2(pipe_fds[1], STDERR_FILENO);
        close(pipe_fds[1]);
        signal(SIGABRT, SIG_DFL);
        misuse();
        _exit(0); /* misuse did not abort */
    }
    close(pipe_fds[1]);
    size_t length = 0;
    for (;;) {
        ssize_t got = read(pipe_fds[0], text + length, size - 1 - length);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        length += (size_t)got;
        if (length == size - 1) break;
    }
    text[length] = '\0';
    close(pipe_fds[0]);
    int status;
    while (waitpid(child, &status, 0) < 0) ck_assert_int_eq(errno, EINTR);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
                  "child did not abort (status %#x), stderr: %s", status, text);
}

/* The child running misuse() must abort having written exactly `message`
 * and a newline: Go's panics become one "weft: ..." line. */
static inline void expect_abort(void (*misuse)(void), const char *message) {
    char text[512], expected[256];
    abort_output(misuse, text, sizeof text);
    snprintf(expected, sizeof expected, "%s\n", message);
    ck_assert_str_eq(text, expected);
}

#endif
