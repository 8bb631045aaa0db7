/* Check suite for deadlock detection (weft_debug_deadlock, WEFT_DEBUG).
 *
 * A deadlock report aborts, so every scenario runs in a child process: the
 * test forks and executes this same program again, with the scenario's
 * name in WEFT_TEST_SCENARIO, so that the child starts fresh (no threads
 * inherited, which ThreadSanitizer requires; WEFT_DEBUG read for the first
 * time). The child's stderr and stdout come back through pipes: stderr
 * holds the report, stdout the lines the child expects in it ("expect
 * ..."), since only the child knows its channels' addresses and thread
 * names. A scenario that must not be reported either ends by itself with
 * status 0 and silent stderr, or is still running after a time well past
 * the watchdog's grace period (half a second) and is killed. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft.h"
#include "testutil.h"

#define HEADER "weft: all goroutines are asleep - deadlock!\n"

/* Past the grace period by enough that a report would have come. */
enum { QUIET_MS = 800, OFF_MS = 1000, REPORT_LIMIT_MS = 20000 };

extern char **environ;

/* ==== The scenarios (run in the child) ================================ */

static char main_name[16];
static weft_chan *channel, *other_channel, *ticks;
static weft_wg group = WEFT_WG_INIT;
static weft_mutex lock = WEFT_MUTEX_INIT;
static weft_ctx *context;

/* Tell the parent one line the report must hold. */
__attribute__((format(printf, 1, 2))) static void expect(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    fputs("expect ", stdout);
    vprintf(format, arguments);
    fputs("\n", stdout);
    va_end(arguments);
    fflush(stdout);
}

static void send_forever(void *arg) {
    int value = 1;
    weft_chan_send(arg, &value);
    weft_wg_done(&group);
}

static void lock_forever(void *arg) {
    (void)arg;
    weft_mutex_lock(&lock);
    weft_wg_done(&group);
}

static void sleep_then_return(void *arg) {
    (void)arg;
    sleep_ms(200); /* forgets weft_wg_done */
}

static void sleep_then_send(void *arg) {
    sleep_ms(QUIET_MS);
    int value = 7;
    weft_chan_send(arg, &value);
}

/* Ping-pong over two unbuffered channels for QUIET_MS, then close. */
static void ping(void *arg) {
    (void)arg;
    weft_time end = weft_deadline(WEFT_MS(QUIET_MS));
    int value = 0;
    while (weft_now() < end) {
        weft_chan_send(channel, &value);
        weft_chan_recv(other_channel, &value);
    }
    weft_chan_close(channel);
    weft_wg_done(&group);
}

static void pong(void *arg) {
    (void)arg;
    int value;
    while (weft_chan_recv(channel, &value) == 0) {
        value++;
        weft_chan_send(other_channel, &value);
    }
    weft_wg_done(&group);
}

static int recv_forever(void) {
    channel = weft_chan_make(sizeof(int), 0);
    expect("  thread \"%s\" (main): weft_chan_recv on channel %p (unbuffered)", main_name,
           (void *)channel);
    int value;
    weft_chan_recv(channel, &value);
    return 1;
}

static int deadlock_recv_forever(void) {
    weft_debug_deadlock(true);
    return recv_forever();
}

static int deadlock_wg_two_senders(void) {
    weft_debug_deadlock(true);
    channel = weft_chan_make(sizeof(int), 0);
    weft_wg_add(&group, 2);
    for (int i = 1; i <= 2; i++) {
        expect("  thread \"weft/%d\" (goroutine): weft_chan_send on channel %p (unbuffered)", i,
               (void *)channel);
        if (weft_go(send_forever, channel) != 0) return 2;
    }
    expect("  thread \"%s\" (main): weft_wg_wait on %p", main_name, (void *)&group);
    weft_wg_wait(&group);
    return 1;
}

static int deadlock_after_goroutine_returns(void) {
    weft_debug_deadlock(true);
    channel = weft_chan_make(sizeof(int), 0);
    weft_wg_add(&group, 2);
    if (weft_go(send_forever, channel) != 0) return 2;
    if (weft_go(sleep_then_return, NULL) != 0) return 2;
    expect("  thread \"weft/1\" (goroutine): weft_chan_send on channel %p (unbuffered)",
           (void *)channel);
    expect("  thread \"%s\" (main): weft_wg_wait on %p", main_name, (void *)&group);
    weft_wg_wait(&group);
    return 1;
}

static int deadlock_after_timer_fired_unread(void) {
    weft_debug_deadlock(true);
    ticks = weft_after(WEFT_MS(200)); /* fires into a channel nobody reads */
    if (!ticks) return 2;
    return recv_forever();
}

static int deadlock_select(void) {
    weft_debug_deadlock(true);
    channel = weft_chan_make(sizeof(int), 0);
    other_channel = weft_chan_make(sizeof(int), 1);
    int value = 0;
    if (weft_chan_send(other_channel, &value) != 0) return 2; /* now full */
    weft_case cases[] = {WEFT_RECV_CASE(channel, &value), WEFT_SEND_CASE(other_channel, &value)};
    expect("  thread \"%s\" (main): weft_select on 2 channels: recv channel %p (unbuffered), "
           "send channel %p (buffered, 1 of 1)",
           main_name, (void *)channel, (void *)other_channel);
    weft_select(cases, 2, WEFT_FOREVER);
    return 1;
}

static int deadlock_ctx_without_deadline(void) {
    weft_debug_deadlock(true);
    channel = weft_chan_make(sizeof(int), 0);
    context = weft_ctx_with_cancel(weft_ctx_background());
    weft_chan *done = weft_ctx_done(context);
    expect("  thread \"%s\" (main): weft_select on 2 channels: recv channel %p (unbuffered), "
           "recv channel %p (unbuffered)",
           main_name, (void *)channel, (void *)done);
    int value;
    weft_chan_recv_ctx(channel, &value, context);
    return 1;
}

static int deadlock_mutex(void) {
    weft_debug_deadlock(true);
    weft_mutex_lock(&lock);
    weft_wg_add(&group, 1);
    if (weft_go(lock_forever, NULL) != 0) return 2;
    expect("  thread \"weft/1\" (goroutine): weft_mutex_lock on %p", (void *)&lock);
    expect("  thread \"%s\" (main): weft_wg_wait on %p", main_name, (void *)&group);
    weft_wg_wait(&group);
    return 1;
}

/* Started with WEFT_DEBUG=deadlock; no call turns detection on. */
static int deadlock_from_environment(void) { return recv_forever(); }

static int quiet_goroutine_sleeps_then_sends(void) {
    weft_debug_deadlock(true);
    channel = weft_chan_make(sizeof(int), 0);
    if (weft_go(sleep_then_send, channel) != 0) return 2;
    int value = 0;
    if (weft_chan_recv(channel, &value) != 0 || value != 7) return 3;
    return 0;
}

static int quiet_deadline_passes(void) {
    weft_debug_deadlock(true);
    channel = weft_chan_make(sizeof(int), 0);
    int value;
    return weft_chan_recv_until(channel, &value, weft_deadline(WEFT_MS(QUIET_MS))) == WEFT_ETIMEDOUT
               ? 0
               : 3;
}

static int quiet_timer_wakes_main(void) {
    weft_debug_deadlock(true);
    ticks = weft_after(WEFT_MS(QUIET_MS));
    weft_time fired;
    if (!ticks || weft_chan_recv(ticks, &fired) != 0) return 3;
    weft_chan_release(ticks);
    return 0;
}

static int quiet_ctx_deadline(void) {
    weft_debug_deadlock(true);
    channel = weft_chan_make(sizeof(int), 0);
    context = weft_ctx_with_timeout(weft_ctx_background(), WEFT_MS(QUIET_MS));
    int value;
    int result = weft_chan_recv_ctx(channel, &value, context);
    weft_ctx_cancel(context);
    weft_ctx_release(context);
    return result == WEFT_ETIMEDOUT ? 0 : 3;
}

/* A goroutine blocked forever, but no other thread waits in weft. */
static int quiet_main_outside_weft(void) {
    weft_debug_deadlock(true);
    channel = weft_chan_make(sizeof(int), 0);
    weft_wg_add(&group, 1);
    if (weft_go(send_forever, channel) != 0) return 2;
    sleep_ms(QUIET_MS);
    return 0;
}

/* Two goroutines busy handing values to each other, main waiting for
 * them: at no moment are both asleep (the one just woken is not). */
static int quiet_busy_goroutines(void) {
    weft_debug_deadlock(true);
    channel = weft_chan_make(sizeof(int), 0);
    other_channel = weft_chan_make(sizeof(int), 0);
    weft_wg_add(&group, 2);
    if (weft_go(ping, NULL) != 0 || weft_go(pong, NULL) != 0) return 2;
    weft_wg_wait(&group);
    return 0;
}

/* Detection off: left to the environment (the parent clears WEFT_DEBUG). */
static int off_recv_forever(void) { return recv_forever(); }

static int off_recv_deadline(void) {
    channel = weft_chan_make(sizeof(int), 0);
    int value;
    return weft_chan_recv_until(channel, &value, weft_deadline(WEFT_SEC(1))) == WEFT_ETIMEDOUT ? 0
                                                                                               : 3;
}

static int off_after_turned_on(void) {
    weft_debug_deadlock(true);
    weft_debug_deadlock(false);
    return recv_forever();
}

typedef struct {
    const char *name;
    int (*run)(void);
} scenario;

static const scenario scenarios[] = {
    {"deadlock_recv_forever", deadlock_recv_forever},
    {"deadlock_wg_two_senders", deadlock_wg_two_senders},
    {"deadlock_after_goroutine_returns", deadlock_after_goroutine_returns},
    {"deadlock_after_timer_fired_unread", deadlock_after_timer_fired_unread},
    {"deadlock_select", deadlock_select},
    {"deadlock_ctx_without_deadline", deadlock_ctx_without_deadline},
    {"deadlock_mutex", deadlock_mutex},
    {"deadlock_from_environment", deadlock_from_environment},
    {"quiet_goroutine_sleeps_then_sends", quiet_goroutine_sleeps_then_sends},
    {"quiet_deadline_passes", quiet_deadline_passes},
    {"quiet_timer_wakes_main", quiet_timer_wakes_main},
    {"quiet_ctx_deadline", quiet_ctx_deadline},
    {"quiet_main_outside_weft", quiet_main_outside_weft},
    {"quiet_busy_goroutines", quiet_busy_goroutines},
    {"off_recv_forever", off_recv_forever},
    {"off_recv_deadline", off_recv_deadline},
    {"off_after_turned_on", off_after_turned_on},
};

static int run_scenario(const char *name) {
    pthread_getname_np(pthread_self(), main_name, sizeof main_name);
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
        if (strcmp(scenarios[i].name, name) == 0) return scenarios[i].run();
    fprintf(stderr, "test_deadlock: no scenario %s\n", name);
    return 100;
}

/* ==== Running a child (in the test) =================================== */

typedef struct {
    pid_t pid;
    int out, err; /* read ends of its stdout and stderr */
    const char *scenario;
} child;

typedef struct {
    bool killed; /* still running at the time limit */
    int status;  /* waitpid's, when it ended by itself */
    char out[4096], err[8192];
} outcome;

/* Start scenario in a fresh copy of this program, with WEFT_DEBUG set to
 * debug (NULL: unset); the scenarios read no input. */
static child start(const char *scenario, const char *debug) {
    scenario_child process = start_scenario(scenario, debug);
    close(process.in);
    return (child){.pid = process.pid, .out = process.out, .err = process.err, .scenario = scenario};
}

/* Read the child's output until it ends, or until `until` (then kill it).
 * Several children may run at once: finish them one after the other with
 * the same `until`. */
static void finish(child *running, weft_time until, outcome *result) {
    memset(result, 0, sizeof *result);
    struct pollfd fds[2] = {{.fd = running->out, .events = POLLIN},
                            {.fd = running->err, .events = POLLIN}};
    char *buffers[2] = {result->out, result->err};
    size_t sizes[2] = {sizeof result->out, sizeof result->err}, lengths[2] = {0, 0};
    int open_pipes = 2;
    while (open_pipes > 0) {
        weft_time left = until - weft_now();
        if (left <= 0) break;
        int ready = poll(fds, 2, (int)((left + WEFT_MS(1) - 1) / WEFT_MS(1)));
        if (ready < 0 && errno == EINTR) continue;
        ck_assert_int_ge(ready, 0);
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char scratch[512];
            char *into = lengths[i] < sizes[i] - 1 ? buffers[i] + lengths[i] : scratch;
            size_t room = lengths[i] < sizes[i] - 1 ? sizes[i] - 1 - lengths[i] : sizeof scratch;
            ssize_t got = read(fds[i].fd, into, room);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                fds[i].fd = -1;
                open_pipes--;
            } else if (into != scratch) {
                lengths[i] += (size_t)got;
            }
        }
    }
    pid_t ended;
    while ((ended = waitpid(running->pid, &result->status, open_pipes > 0 ? WNOHANG : 0)) < 0)
        ck_assert_int_eq(errno, EINTR);
    if (ended == 0) {
        result->killed = true;
        kill(running->pid, SIGKILL);
        while (waitpid(running->pid, NULL, 0) < 0) ck_assert_int_eq(errno, EINTR);
    }
    close(running->out);
    close(running->err);
}

static outcome *run(const char *scenario, const char *debug, long limit_ms) {
    static outcome result;
    child running = start(scenario, debug);
    finish(&running, weft_deadline(WEFT_MS(limit_ms)), &result);
    return &result;
}

/* The child aborted with the report: the Go line first, then exactly the
 * lines the child announced, in any order. */
static void assert_reported(const char *scenario, const outcome *result) {
    ck_assert_msg(!result->killed, "%s: no report in time; stderr: %s", scenario, result->err);
    ck_assert_msg(WIFSIGNALED(result->status) && WTERMSIG(result->status) == SIGABRT,
                  "%s: child did not abort (status %#x); stderr: %s", scenario, result->status,
                  result->err);
    ck_assert_msg(strncmp(result->err, HEADER, strlen(HEADER)) == 0,
                  "%s: stderr does not start with the report: %s", scenario, result->err);
    int reported = 0;
    for (const char *line = result->err + strlen(HEADER); *line; reported++) {
        const char *end = strchr(line, '\n');
        ck_assert_msg(end, "%s: unterminated line in: %s", scenario, result->err);
        line = end + 1;
    }
    int expected = 0;
    for (const char *line = result->out; (line = strstr(line, "expect ")); expected++) {
        line += strlen("expect ");
        const char *end = strchr(line, '\n');
        ck_assert_ptr_nonnull(end);
        char wanted[600];
        snprintf(wanted, sizeof wanted, "\n%.*s\n", (int)(end - line), line);
        ck_assert_msg(strstr(result->err, wanted), "%s: no line%sin the report:\n%s", scenario,
                      wanted, result->err);
        line = end;
    }
    ck_assert_msg(expected > 0, "%s: the child announced nothing; stdout: %s", scenario,
                  result->out);
    ck_assert_msg(reported == expected, "%s: %d threads reported, %d expected: %s", scenario,
                  reported, expected, result->err);
}

/* The child ended by itself, successfully, and said nothing on stderr. */
static void assert_quiet(const char *scenario, const outcome *result) {
    ck_assert_msg(!result->killed, "%s: still running; stderr: %s", scenario, result->err);
    ck_assert_msg(WIFEXITED(result->status) && WEXITSTATUS(result->status) == 0,
                  "%s: child failed (status %#x); stderr: %s", scenario, result->status,
                  result->err);
    ck_assert_msg(result->err[0] == '\0', "%s: unexpected stderr: %s", scenario, result->err);
}

/* The child was still blocked at the limit (and was killed), silently. */
static void assert_still_blocked(const char *scenario, const outcome *result) {
    ck_assert_msg(result->killed, "%s: ended (status %#x); stderr: %s", scenario, result->status,
                  result->err);
    ck_assert_msg(result->err[0] == '\0', "%s: unexpected stderr: %s", scenario, result->err);
}

#define ASSERT_REPORTED(name, debug) assert_reported(name, run(name, debug, REPORT_LIMIT_MS))

/* ==== Tests =========================================================== */

START_TEST(test_main_blocked_on_unbuffered_recv_is_reported) {
    ASSERT_REPORTED("deadlock_recv_forever", NULL);
}
END_TEST

START_TEST(test_wg_wait_and_two_blocked_senders_are_reported) {
    ASSERT_REPORTED("deadlock_wg_two_senders", NULL);
}
END_TEST

START_TEST(test_deadlock_left_by_a_returning_goroutine_is_reported) {
    ASSERT_REPORTED("deadlock_after_goroutine_returns", NULL);
}
END_TEST

START_TEST(test_deadlock_after_a_timer_fired_unread_is_reported) {
    ASSERT_REPORTED("deadlock_after_timer_fired_unread", NULL);
}
END_TEST

START_TEST(test_select_lists_its_channels) { ASSERT_REPORTED("deadlock_select", NULL); }
END_TEST

START_TEST(test_ctx_wait_without_deadline_is_reported) {
    ASSERT_REPORTED("deadlock_ctx_without_deadline", NULL);
}
END_TEST

START_TEST(test_mutex_wait_is_reported) { ASSERT_REPORTED("deadlock_mutex", NULL); }
END_TEST

START_TEST(test_environment_turns_detection_on) {
    ASSERT_REPORTED("deadlock_from_environment", "verbose,deadlock");
}
END_TEST

/* Each of these has a thread that can still end the wait: they run at
 * once, for as long as a report would take and then some. */
START_TEST(test_no_report_while_something_can_still_wake_a_sleeper) {
    static const char *const quiet[] = {
        "quiet_goroutine_sleeps_then_sends", /* a goroutine outside weft, then sends */
        "quiet_deadline_passes",             /* main waits with a deadline */
        "quiet_timer_wakes_main",            /* a pending weft_after wakes main */
        "quiet_ctx_deadline",                /* a context's deadline wakes main */
        "quiet_main_outside_weft",           /* a goroutine blocked, main is not in weft */
        "quiet_busy_goroutines",             /* hand-offs back and forth, main waits */
    };
    enum { COUNT = sizeof quiet / sizeof quiet[0] };
    child children[COUNT];
    for (int i = 0; i < COUNT; i++) children[i] = start(quiet[i], NULL);
    weft_time until = weft_deadline(WEFT_MS(QUIET_MS + 4000));
    for (int i = 0; i < COUNT; i++) {
        outcome result;
        finish(&children[i], until, &result);
        assert_quiet(quiet[i], &result);
    }
}
END_TEST

START_TEST(test_off_by_default_and_when_turned_off) {
    child forever = start("off_recv_forever", NULL);
    child turned_off = start("off_after_turned_on", NULL);
    child deadline = start("off_recv_deadline", NULL);
    weft_time until = weft_deadline(WEFT_MS(OFF_MS));
    outcome result;
    finish(&forever, until, &result);
    assert_still_blocked("off_recv_forever", &result);
    finish(&turned_off, until, &result);
    assert_still_blocked("off_after_turned_on", &result);
    finish(&deadline, weft_deadline(WEFT_MS(4000)), &result);
    assert_quiet("off_recv_deadline", &result);
}
END_TEST

static Suite *deadlock_suite(void) {
    Suite *suite = suite_create("deadlock");
    TCase *reported = new_case(suite, "reported");
    tcase_add_test(reported, test_main_blocked_on_unbuffered_recv_is_reported);
    tcase_add_test(reported, test_wg_wait_and_two_blocked_senders_are_reported);
    tcase_add_test(reported, test_deadlock_left_by_a_returning_goroutine_is_reported);
    tcase_add_test(reported, test_deadlock_after_a_timer_fired_unread_is_reported);
    tcase_add_test(reported, test_select_lists_its_channels);
    tcase_add_test(reported, test_ctx_wait_without_deadline_is_reported);
    tcase_add_test(reported, test_mutex_wait_is_reported);
    tcase_add_test(reported, test_environment_turns_detection_on);
    TCase *quiet = new_case(suite, "not reported");
    tcase_add_test(quiet, test_no_report_while_something_can_still_wake_a_sleeper);
    tcase_add_test(quiet, test_off_by_default_and_when_turned_off);
    return suite;
}

int main(void) {
    const char *scenario = getenv("WEFT_TEST_SCENARIO");
    if (scenario) return run_scenario(scenario);
    SRunner *runner = srunner_create(deadlock_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
