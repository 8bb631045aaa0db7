/* fork(): a child process can use weft after its parent did, through the
 * pthread_atfork handlers of lib/fork.c. Each test forks its own child,
 * so it runs whether Check forks or not; the child reports through its
 * exit status (0: every step worked) and a watchdog alarm turns a hang
 * into a failure. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft.h"
#include "testutil.h"
#include "timer.h"

enum { CHILD_ALARM_SECONDS = 20, GOROUTINES = 8, RALLY_ROUNDS = 2000, TASK_ROUNDS = 200 };

/* A wake-up in the child that takes longer than this was lost: the owner
 * only noticed through a deadline (the pool's idle timeout is 10 s). */
#define WAKE_LIMIT WEFT_SEC(2)

/* Steps a child checks; its exit status names the first that failed. */
enum {
    CHILD_OK = 0,
    CHILD_GO = 10,
    CHILD_CHANNEL,
    CHILD_COUNT,
    CHILD_TIMER,
    CHILD_CTX,
    CHILD_POOL,
    CHILD_WAKE
};

static void send_one(void *arg) {
    int one = 1;
    weft_chan_send(arg, &one);
}

/* In the child: start goroutines and hear from each of them; then wait
 * until only `baseline` goroutines are running. Returns a CHILD_* code. */
static int goroutines_run_and_end(int baseline) {
    weft_chan *results = weft_chan_make(sizeof(int), 0);
    if (!results) return CHILD_CHANNEL;
    for (int i = 0; i < GOROUTINES; i++)
        if (weft_go(send_one, results) != 0) return CHILD_GO;
    int sum = 0, value;
    for (int i = 0; i < GOROUTINES; i++) {
        if (weft_chan_recv_until(results, &value, weft_deadline(WEFT_SEC(5))) != 0)
            return CHILD_CHANNEL;
        sum += value;
    }
    weft_chan_release(results);
    if (sum != GOROUTINES) return CHILD_CHANNEL;
    weft_time until = weft_deadline(WEFT_SEC(5));
    while (weft_goroutines() != baseline)
        if (weft_now() > until) return CHILD_COUNT;
    return CHILD_OK;
}

static int child_runs_goroutines(void) { return goroutines_run_and_end(0); }

/* In a child: die of SIGALRM if it hangs. Check's own SIGALRM handler,
 * inherited through two forks, would instead SIGKILL the test's whole
 * process group and hide which child hung ("Received signal 9"). */
static void start_child_watchdog(void) {
    signal(SIGALRM, SIG_DFL);
    alarm(CHILD_ALARM_SECONDS);
}

/* Fork, run body in the child, and return the child's exit status. */
static int in_child(int (*body)(void)) {
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        start_child_watchdog();
        _exit(body());
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "the child died of signal %d", WTERMSIG(status));
    return WEXITSTATUS(status);
}

/* A parent whose pool has idle threads, and goroutines blocked at the
 * fork: the child starts from an empty pool. */
static weft_chan *parked;

static void park_on_channel(void *arg) {
    (void)arg;
    int value;
    weft_chan_recv(parked, &value);
}

START_TEST(test_child_runs_goroutines_after_parent_used_the_pool) {
    ck_assert_int_eq(child_runs_goroutines(), CHILD_OK); /* the parent's pool has threads now */
    parked = weft_chan_make(sizeof(int), 0);
    ck_assert_ptr_nonnull(parked);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(weft_go(park_on_channel, NULL), 0);
    while (weft_goroutines() != 3) sleep_ms(1);

    ck_assert_int_eq(in_child(child_runs_goroutines), CHILD_OK);

    ck_assert_int_eq(weft_goroutines(), 3); /* the parent's own are untouched */
    weft_chan_close(parked);
    while (weft_goroutines() != 0) sleep_ms(1);
    weft_chan_release(parked);
}
END_TEST

/* The parent's pool threads asleep on their parkers' condition variables
 * at the fork: in the child, those parkers are recycled for its new
 * threads, and a condition variable that still counted its lost sleeper
 * would swallow their wake-ups. */

static void leave_pool_threads_asleep(void) {
    weft_chan *results = weft_chan_make(sizeof(int), 0);
    ck_assert_ptr_nonnull(results);
    for (int i = 0; i < GOROUTINES; i++) ck_assert_int_eq(weft_go(send_one, results), 0);
    int value;
    for (int i = 0; i < GOROUTINES; i++) ck_assert_int_eq(weft_chan_recv(results, &value), 0);
    weft_chan_release(results);
    ck_assert(goroutines_become(0));
    sleep_ms(50); /* past the parkers' spin and yield, into the condvar wait */
}

typedef struct {
    weft_chan *ping, *pong; /* the child sends on ping; the goroutine answers on pong */
} rally;

static void return_every_ball(void *arg) {
    rally *self = arg;
    int ball;
    while (weft_chan_recv(self->ping, &ball) == 0)
        if (weft_chan_send(self->pong, &ball) != 0) return;
}

static int child_rallies_with_goroutines(void) {
    rally rallies[GOROUTINES];
    for (int i = 0; i < GOROUTINES; i++) {
        rallies[i].ping = weft_chan_make(sizeof(int), 0);
        rallies[i].pong = weft_chan_make(sizeof(int), 0);
        if (!rallies[i].ping || !rallies[i].pong) return CHILD_CHANNEL;
        if (weft_go(return_every_ball, &rallies[i]) != 0) return CHILD_GO;
    }
    for (int round = 0; round < RALLY_ROUNDS; round++) {
        rally *each = &rallies[round % GOROUTINES];
        int ball;
        if (weft_chan_send_until(each->ping, &round, weft_deadline(WAKE_LIMIT)) != 0 ||
            weft_chan_recv_until(each->pong, &ball, weft_deadline(WAKE_LIMIT)) != 0 ||
            ball != round)
            return CHILD_WAKE;
    }
    for (int i = 0; i < GOROUTINES; i++) weft_chan_close(rallies[i].ping);
    if (!goroutines_become(0)) return CHILD_COUNT;
    for (int i = 0; i < GOROUTINES; i++) {
        weft_chan_release(rallies[i].ping);
        weft_chan_release(rallies[i].pong);
    }
    return CHILD_OK;
}

START_TEST(test_child_wakes_goroutines_on_parkers_of_threads_lost_in_the_fork) {
    leave_pool_threads_asleep();
    ck_assert_int_eq(in_child(child_rallies_with_goroutines), CHILD_OK);
}
END_TEST

/* The child's pool threads go idle on recycled parkers; each new task must
 * reach one at once, not when its idle deadline passes. */
static int child_hands_tasks_to_idle_threads(void) {
    weft_chan *results = weft_chan_make(sizeof(int), 0);
    if (!results) return CHILD_CHANNEL;
    for (int round = 0; round < TASK_ROUNDS; round++) {
        for (int i = 0; i < GOROUTINES; i++)
            if (weft_go(send_one, results) != 0) return CHILD_GO;
        int value;
        for (int i = 0; i < GOROUTINES; i++)
            if (weft_chan_recv_until(results, &value, weft_deadline(WAKE_LIMIT)) != 0)
                return CHILD_WAKE;
        if (!goroutines_become(0)) return CHILD_COUNT;
    }
    weft_chan_release(results);
    return CHILD_OK;
}

START_TEST(test_child_hands_tasks_at_once_to_threads_on_recycled_parkers) {
    leave_pool_threads_asleep();
    ck_assert_int_eq(in_child(child_hands_tasks_to_idle_threads), CHILD_OK);
}
END_TEST

/* A deadline pending in the parent still fires in the child (the timer
 * thread is started again), and new ones work. */
static weft_ctx *pending;

static int child_sees_deadlines(void) {
    weft_chan *done = weft_ctx_done(pending);
    if (weft_chan_recv_until(done, NULL, weft_deadline(WEFT_SEC(5))) != WEFT_ECLOSED)
        return CHILD_TIMER;
    if (weft_ctx_err(pending) != WEFT_ETIMEDOUT) return CHILD_CTX;
    weft_ctx *fresh = weft_ctx_with_timeout(NULL, WEFT_MS(10));
    if (!fresh) return CHILD_CTX;
    weft_chan *never = weft_chan_make(sizeof(int), 0);
    int value;
    int result = weft_chan_recv_ctx(never, &value, fresh);
    weft_chan_release(never);
    weft_ctx_release(fresh);
    return result == WEFT_ETIMEDOUT ? CHILD_OK : CHILD_CTX;
}

START_TEST(test_child_fires_deadlines_pending_at_the_fork) {
    pending = weft_ctx_with_timeout(NULL, WEFT_MS(100));
    ck_assert_ptr_nonnull(pending);
    ck_assert_int_eq(in_child(child_sees_deadlines), CHILD_OK);
    weft_ctx_cancel(pending);
    weft_ctx_release(pending);
}
END_TEST

/* A weft_timer made and stopped in the parent: in the child (which starts
 * a timer thread at once only for timers pending at the fork), its reset
 * starts one if need be and the timer fires; an after_func fires too. */
static weft_timer *stopped_timer;

static void note_after_func(void *arg) { atomic_store((atomic_int *)arg, 1); }

static int child_resets_a_stopped_timer(void) {
    weft_time fired_at;
    weft_timer_reset(stopped_timer, WEFT_MS(1));
    if (weft_chan_recv_until(weft_timer_chan(stopped_timer), &fired_at,
                             weft_deadline(WEFT_SEC(5))) != 0)
        return CHILD_TIMER;
    atomic_int ran = 0;
    weft_timer *func = weft_after_func(WEFT_MS(1), note_after_func, &ran);
    if (!func) return CHILD_TIMER;
    bool seen = int_becomes(&ran, 1);
    weft_timer_free(func);
    return seen ? CHILD_OK : CHILD_TIMER;
}

START_TEST(test_child_resets_a_timer_stopped_before_the_fork) {
    stopped_timer = weft_timer_new(WEFT_SEC(3600));
    ck_assert_ptr_nonnull(stopped_timer);
    ck_assert(weft_timer_stop(stopped_timer));
    ck_assert_int_eq(in_child(child_resets_a_stopped_timer), CHILD_OK);
    weft_timer_free(stopped_timer);
}
END_TEST

/* An explicit pool made before the fork takes new work in the child and
 * closes there. */
static weft_pool *explicit_pool;

static int child_uses_explicit_pool(void) {
    weft_chan *results = weft_chan_make(sizeof(int), 0);
    if (!results) return CHILD_CHANNEL;
    for (int i = 0; i < GOROUTINES; i++)
        if (weft_pool_go(explicit_pool, send_one, results) != 0) return CHILD_GO;
    int value;
    for (int i = 0; i < GOROUTINES; i++)
        if (weft_chan_recv_until(results, &value, weft_deadline(WEFT_SEC(5))) != 0)
            return CHILD_CHANNEL;
    weft_chan_release(results);
    return weft_pool_close(explicit_pool) == 0 ? CHILD_OK : CHILD_POOL;
}

START_TEST(test_child_uses_and_closes_a_pool_made_before_the_fork) {
    weft_pool_opts options = {.min_threads = 2, .max_threads = 16};
    explicit_pool = weft_pool_new(&options);
    ck_assert_ptr_nonnull(explicit_pool);
    weft_chan *results = weft_chan_make(sizeof(int), 0);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(weft_pool_go(explicit_pool, send_one, results), 0);
    int value;
    for (int i = 0; i < 4; i++) ck_assert_int_eq(weft_chan_recv(results, &value), 0);
    weft_chan_release(results);

    ck_assert_int_eq(in_child(child_uses_explicit_pool), CHILD_OK);

    ck_assert_int_eq(weft_pool_close(explicit_pool), 0);
}
END_TEST

/* fork from inside a goroutine: the child's copy of that goroutine still
 * finishes normally and the child's pool keeps working. */
typedef struct {
    atomic_int status; /* the child's exit status, -1 until known */
} fork_from_goroutine;

static void fork_inside(void *arg) {
    fork_from_goroutine *self = arg;
    pid_t pid = fork();
    if (pid == 0) {
        start_child_watchdog();
        /* This thread is a pooled worker in the child too; other
         * goroutines must still get threads of their own. */
        _exit(goroutines_run_and_end(1)); /* 1: this goroutine */
    }
    int status = -1;
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status))
        status = WEXITSTATUS(status);
    else
        status = 99;
    atomic_store(&self->status, status);
}

START_TEST(test_child_forked_inside_a_goroutine_runs_goroutines) {
    fork_from_goroutine job = {.status = -1};
    fflush(NULL);
    ck_assert_int_eq(weft_go(fork_inside, &job), 0);
    weft_time until = weft_deadline(WEFT_SEC(CHILD_ALARM_SECONDS + 5));
    while (atomic_load(&job.status) == -1 && weft_now() < until) sleep_ms(5);
    ck_assert_int_eq(atomic_load(&job.status), 0);
}
END_TEST

static Suite *fork_suite(void) {
    Suite *suite = suite_create("fork");
    TCase *tc = new_case(suite, "child");
    tcase_add_test(tc, test_child_runs_goroutines_after_parent_used_the_pool);
#ifndef UNDER_ASAN
    /* gcc 12's ASan allocator is not fork-safe: a parent thread inside it
     * at the fork leaves its lock held, and the child's new timer thread
     * blocks on it (about 3% of runs under load). */
    tcase_add_test(tc, test_child_fires_deadlines_pending_at_the_fork);
    tcase_add_test(tc, test_child_resets_a_timer_stopped_before_the_fork);
#else
    (void)test_child_fires_deadlines_pending_at_the_fork;
    (void)test_child_resets_a_timer_stopped_before_the_fork;
#endif
    tcase_add_test(tc, test_child_uses_and_closes_a_pool_made_before_the_fork);
    tcase_add_test(tc, test_child_forked_inside_a_goroutine_runs_goroutines);
    tcase_add_test(tc, test_child_wakes_goroutines_on_parkers_of_threads_lost_in_the_fork);
    tcase_add_test(tc, test_child_hands_tasks_at_once_to_threads_on_recycled_parkers);
    return suite;
}

int main(void) {
#ifdef UNDER_TSAN
    /* ThreadSanitizer refuses to start threads in the child of a
     * multi-threaded process, which is exactly what these tests do. */
    puts("test_fork: skipped under ThreadSanitizer (no threads after a multi-threaded fork)");
    return EXIT_SUCCESS;
#endif
    SRunner *runner = srunner_create(fork_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
