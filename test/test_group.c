/* Check suite for weft/group.h (errgroup), written from the header's
 * contract and from the behaviours golang.org/x/sync/errgroup's own tests
 * check: the zero group, the first error, the context and its cause, the
 * limit and TryGo. One behaviour per test.
 *
 * Tasks run on goroutines, so they never call ck_assert: they record
 * failures with WORKER_EXPECT (testutil.h), and the test thread checks
 * them after weft_group_wait. A task that must stay busy blocks on a
 * gate, a signal channel the test closes; "the task is running now" is
 * a counter it bumps first (wait_for_count). Every wait is bounded, and
 * timing is never asserted.
 * The tests that need a default pool without threads (a forced weft_go
 * failure, a child process that starts goroutines) skip themselves when
 * Check does not fork each test. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/go.h"
#include "weft/group.h"
#include "alloc.h"
#include "go_internal.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------- */

/* Wait for channel c to be closed: WEFT_ECLOSED, or WEFT_ETIMEDOUT after
 * 20 s, so that a missing wake-up fails the test instead of hanging it. */
static int wait_closed(weft_chan *c) {
    return weft_chan_recv_until(c, NULL, weft_deadline(WEFT_SEC(20)));
}

/* What the tasks of one test share. */
typedef struct {
    atomic_int started;      /* tasks that began */
    atomic_int finished;     /* tasks about to return */
    atomic_int running;      /* tasks between their start and their return */
    atomic_int most_running; /* the largest `running` any task saw */
    weft_chan *gate;         /* signal channel: closing it releases gate tasks */
    weft_ctx *expected_ctx;  /* what tasks must be given (checked when set) */
} tally;

static void tally_init(tally *t) {
    atomic_init(&t->started, 0);
    atomic_init(&t->finished, 0);
    atomic_init(&t->running, 0);
    atomic_init(&t->most_running, 0);
    t->gate = weft_chan_make(0, 0);
    ck_assert_ptr_nonnull(t->gate);
    t->expected_ctx = NULL;
}

static void tally_open_gate(tally *t) { ck_assert_int_eq(weft_chan_close(t->gate), 0); }

static void tally_destroy(tally *t) { weft_chan_release(t->gate); }

/* Task: count itself, return 0. */
static int count_task(weft_ctx *ctx, void *arg) {
    tally *t = arg;
    if (t->expected_ctx) WORKER_EXPECT(ctx == t->expected_ctx);
    atomic_fetch_add(&t->started, 1);
    atomic_fetch_add(&t->finished, 1);
    return 0;
}

/* Task: count itself, wait for the gate to open, return 0. */
static int gate_task(weft_ctx *ctx, void *arg) {
    (void)ctx;
    tally *t = arg;
    atomic_fetch_add(&t->started, 1);
    WORKER_EXPECT(wait_closed(t->gate) == WEFT_ECLOSED);
    atomic_fetch_add(&t->finished, 1);
    return 0;
}

/* Task: count itself, wait for the group's context to end, return 0. */
static int await_done_task(weft_ctx *ctx, void *arg) {
    tally *t = arg;
    atomic_fetch_add(&t->started, 1);
    WORKER_EXPECT(wait_closed(weft_ctx_done(ctx)) == WEFT_ECLOSED);
    atomic_fetch_add(&t->finished, 1);
    return 0;
}

/* Task: count itself as running for 2 ms, recording the most at once. */
static int overlap_task(weft_ctx *ctx, void *arg) {
    (void)ctx;
    tally *t = arg;
    atomic_fetch_add(&t->started, 1);
    int now = atomic_fetch_add(&t->running, 1) + 1;
    int most = atomic_load(&t->most_running);
    while (now > most && !atomic_compare_exchange_weak(&t->most_running, &most, now)) {}
    sleep_ms(2);
    atomic_fetch_sub(&t->running, 1);
    atomic_fetch_add(&t->finished, 1);
    return 0;
}

/* Task: return *(int *)arg. */
static int return_value_task(weft_ctx *ctx, void *arg) {
    (void)ctx;
    return *(const int *)arg;
}

/* Task: must never run. */
static atomic_int unexpected_runs;
static int never_task(weft_ctx *ctx, void *arg) {
    (void)ctx;
    (void)arg;
    atomic_fetch_add(&unexpected_runs, 1);
    return 0;
}

/* Does the default pool have no threads, so that weft_go must start one
 * (and a forced thread-start failure reaches weft_group_go)? True in every
 * test when Check forks each one; rarely otherwise. */
static bool default_pool_has_no_threads(void) {
    return weft__pool_threads(weft__pool_default()) == 0;
}

/* Run misuse() in a forked child with stderr on a pipe; the child must be
 * killed by SIGABRT after writing one line that starts with "weft: ". */
static void expect_abort_with_weft_line(void (*misuse)(void)) {
    char text[512];
    abort_output(misuse, text, sizeof text);
    ck_assert_msg(strncmp(text, "weft: ", 6) == 0, "stderr does not start with \"weft: \": %s",
                  text);
    char *newline = strchr(text, '\n');
    ck_assert_msg(newline && newline[1] == '\0', "stderr is not one line: %s", text);
}

/* ---- wait and the first error ----------------------------------------- */

START_TEST(test_wait_with_no_tasks_returns_zero) {
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    ck_assert_int_eq(weft_group_wait(group), 0);
    weft_group_free(group);
}
END_TEST

/* errgroup's TestZeroGroup: tasks started one at a time, each waited for
 * before the next starts; every wait returns the first error so far. */
START_TEST(test_wait_returns_first_error_of_tasks_waited_one_by_one) {
    static const int sequences[][3] = {{0}, {5}, {5, 0}, {5, 0, 6}, {0, 6, 5}};
    static const int lengths[] = {1, 1, 2, 3, 3};
    for (size_t s = 0; s < sizeof lengths / sizeof lengths[0]; s++) {
        weft_group *group = weft_group_new(NULL);
        ck_assert_ptr_nonnull(group);
        int first = 0;
        for (int i = 0; i < lengths[s]; i++) {
            ck_assert_int_eq(weft_group_go(group, return_value_task, (void *)&sequences[s][i]), 0);
            if (first == 0) first = sequences[s][i];
            ck_assert_int_eq(weft_group_wait(group), first);
        }
        weft_group_free(group);
    }
}
END_TEST

/* Task: the error it returns and the tally it counts itself in. */
typedef struct {
    tally *tally;
    int error;
    int delay_ms; /* < 0: return at once; else wait for the context, then sleep */
} erring;

static int erring_task(weft_ctx *ctx, void *arg) {
    erring *job = arg;
    atomic_fetch_add(&job->tally->started, 1);
    if (job->delay_ms >= 0) {
        WORKER_EXPECT(wait_closed(weft_ctx_done(ctx)) == WEFT_ECLOSED);
        sleep_ms(job->delay_ms);
    }
    atomic_fetch_add(&job->tally->finished, 1);
    return job->error;
}

START_TEST(test_first_error_wins_and_every_task_runs) {
    enum { TASKS = 8 };
    tally t;
    tally_init(&t);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    /* Tasks 1..7 return their errors at different times after the context
     * ends, which is after task 0's error has been recorded. */
    erring jobs[TASKS];
    for (int i = TASKS - 1; i >= 0; i--) {
        jobs[i] = (erring){&t, 100 + i, i == 0 ? -1 : (i * 3) % 7};
        ck_assert_int_eq(weft_group_go(group, erring_task, &jobs[i]), 0);
    }
    ck_assert_int_eq(weft_group_wait(group), 100);
    ck_assert_int_eq(atomic_load(&t.finished), TASKS);
    check_worker_failures();
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

START_TEST(test_first_error_cancels_context_with_it_as_cause) {
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    weft_ctx *ctx = weft_group_ctx(group);
    ck_assert_int_eq(weft_ctx_err(ctx), 0);
    static const int error = 42;
    ck_assert_int_eq(weft_group_go(group, return_value_task, (void *)&error), 0);
    /* Canceled by the task, before and without weft_group_wait. */
    ck_assert_int_eq(wait_closed(weft_ctx_done(ctx)), WEFT_ECLOSED);
    ck_assert_int_eq(weft_ctx_err(ctx), WEFT_ECANCELED);
    ck_assert_int_eq(weft_ctx_cause(ctx), 42);
    ck_assert_int_eq(weft_group_wait(group), 42);
    ck_assert_int_eq(weft_ctx_cause(ctx), 42); /* wait's cancel does not overwrite it */
    weft_group_free(group);
}
END_TEST

START_TEST(test_first_error_wakes_tasks_blocked_on_context_done) {
    enum { WAITERS = 4 };
    tally t;
    tally_init(&t);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    for (int i = 0; i < WAITERS; i++)
        ck_assert_int_eq(weft_group_go(group, await_done_task, &t), 0);
    wait_for_count(&t.started, WAITERS);
    ck_assert_int_eq(atomic_load(&t.finished), 0);
    static const int error = -77;
    ck_assert_int_eq(weft_group_go(group, return_value_task, (void *)&error), 0);
    ck_assert_int_eq(weft_group_wait(group), -77);
    ck_assert_int_eq(atomic_load(&t.finished), WAITERS);
    check_worker_failures();
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

START_TEST(test_wait_cancels_context_when_no_task_failed) {
    tally t;
    tally_init(&t);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    weft_ctx *ctx = weft_group_ctx(group);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(weft_group_go(group, count_task, &t), 0);
    ck_assert_int_eq(weft_ctx_err(ctx), 0); /* tasks that succeed cancel nothing */
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(weft_ctx_err(ctx), WEFT_ECANCELED);
    ck_assert_int_eq(weft_ctx_cause(ctx), WEFT_ECANCELED);
    ck_assert_int_eq(weft_chan_try_recv(weft_ctx_done(ctx), NULL), WEFT_ECLOSED);
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

/* ---- the context ------------------------------------------------------- */

START_TEST(test_tasks_get_the_group_context) {
    tally t;
    tally_init(&t);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    t.expected_ctx = weft_group_ctx(group);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(weft_group_go(group, count_task, &t), 0);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&t.finished), 4);
    check_worker_failures();
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

/* Task: wait for the context to end, return its error. */
static int return_ctx_err_task(weft_ctx *ctx, void *arg) {
    tally *t = arg;
    atomic_fetch_add(&t->started, 1);
    WORKER_EXPECT(wait_closed(weft_ctx_done(ctx)) == WEFT_ECLOSED);
    return weft_ctx_err(ctx);
}

START_TEST(test_parent_cancel_reaches_group_context) {
    tally t;
    tally_init(&t);
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(parent);
    weft_group *group = weft_group_new(parent);
    ck_assert_ptr_nonnull(group);
    ck_assert_int_eq(weft_group_go(group, return_ctx_err_task, &t), 0);
    wait_for_count(&t.started, 1);
    weft_ctx_cancel_cause(parent, 9);
    ck_assert_int_eq(weft_group_wait(group), WEFT_ECANCELED);
    ck_assert_int_eq(weft_ctx_err(weft_group_ctx(group)), WEFT_ECANCELED);
    ck_assert_int_eq(weft_ctx_cause(weft_group_ctx(group)), 9);
    check_worker_failures();
    weft_group_free(group);
    weft_ctx_release(parent);
    tally_destroy(&t);
}
END_TEST

START_TEST(test_group_over_canceled_parent_starts_canceled_and_still_runs_tasks) {
    tally t;
    tally_init(&t);
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(parent);
    weft_ctx_cancel(parent);
    weft_group *group = weft_group_new(parent);
    ck_assert_ptr_nonnull(group);
    ck_assert_int_eq(weft_ctx_err(weft_group_ctx(group)), WEFT_ECANCELED);
    ck_assert_int_eq(weft_group_go(group, count_task, &t), 0);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&t.finished), 1);
    weft_group_free(group);
    weft_ctx_release(parent);
    tally_destroy(&t);
}
END_TEST

/* ---- the limit --------------------------------------------------------- */

START_TEST(test_limit_bounds_concurrently_running_tasks) {
    enum { LIMIT = 3 };
    int tasks = (int)scaled(48) < 8 ? 8 : (int)scaled(48);
    tally t;
    tally_init(&t);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    weft_group_set_limit(group, LIMIT);
    for (int i = 0; i < tasks; i++) ck_assert_int_eq(weft_group_go(group, overlap_task, &t), 0);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&t.finished), tasks);
    ck_assert_int_ge(atomic_load(&t.most_running), 1);
    ck_assert_int_le(atomic_load(&t.most_running), LIMIT);
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

/* A thread that calls weft_group_go and records when it returned. */
typedef struct {
    weft_group *group;
    tally *tally;
    atomic_int calling;  /* bumped just before the call */
    atomic_int returned; /* set once the call returned */
    int result;
} go_caller;

static void *go_caller_main(void *arg) {
    go_caller *caller = arg;
    atomic_fetch_add(&caller->calling, 1);
    caller->result = weft_group_go(caller->group, count_task, caller->tally);
    atomic_store(&caller->returned, 1);
    return NULL;
}

START_TEST(test_go_at_limit_blocks_until_a_slot_frees) {
    tally busy, late;
    tally_init(&busy);
    tally_init(&late);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    weft_group_set_limit(group, 1);
    ck_assert_int_eq(weft_group_go(group, gate_task, &busy), 0);
    wait_for_count(&busy.started, 1);
    go_caller caller = {.group = group, .tally = &late, .result = 12345};
    pthread_t thread;
    start_thread(&thread, go_caller_main, &caller);
    wait_for_count(&caller.calling, 1);
    ck_assert_int_eq(atomic_load(&caller.returned), 0); /* blocked at the limit */
    ck_assert_int_eq(atomic_load(&late.started), 0);
    tally_open_gate(&busy); /* the busy task returns: its slot frees */
    join_thread(thread);
    ck_assert_int_eq(caller.result, 0);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&late.finished), 1);
    check_worker_failures();
    weft_group_free(group);
    tally_destroy(&busy);
    tally_destroy(&late);
}
END_TEST

START_TEST(test_try_go_at_limit_gives_eagain) {
    tally t;
    tally_init(&t);
    atomic_store(&unexpected_runs, 0);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    weft_group_set_limit(group, 2);
    ck_assert_int_eq(weft_group_try_go(group, gate_task, &t), 0);
    ck_assert_int_eq(weft_group_try_go(group, gate_task, &t), 0);
    ck_assert_int_eq(weft_group_try_go(group, never_task, NULL), WEFT_EAGAIN);
    tally_open_gate(&t);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&t.finished), 2);
    ck_assert_int_eq(atomic_load(&unexpected_runs), 0);
    check_worker_failures();
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

/* errgroup's TestTryGo: once the task holding the only slot has finished,
 * TryGo succeeds again. */
START_TEST(test_try_go_with_a_free_slot_starts_the_task) {
    tally t;
    tally_init(&t);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    weft_group_set_limit(group, 1);
    for (int round = 1; round <= 3; round++) {
        ck_assert_int_eq(weft_group_try_go(group, count_task, &t), 0);
        ck_assert_int_eq(weft_group_wait(group), 0);
        ck_assert_int_eq(atomic_load(&t.finished), round);
    }
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

START_TEST(test_limit_zero_makes_try_go_give_eagain) {
    atomic_store(&unexpected_runs, 0);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    weft_group_set_limit(group, 0);
    ck_assert_int_eq(weft_group_try_go(group, never_task, NULL), WEFT_EAGAIN);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&unexpected_runs), 0);
    weft_group_free(group);
}
END_TEST

START_TEST(test_limit_zero_makes_go_give_einval) {
    atomic_store(&unexpected_runs, 0);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    weft_group_set_limit(group, 0);
    ck_assert_int_eq(weft_group_go(group, never_task, NULL), WEFT_EINVAL); /* not a hang */
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&unexpected_runs), 0);
    weft_group_free(group);
}
END_TEST

/* Task: count itself, then wait (bounded) until every task of the tally
 * has started; only possible if they all run at once. */
enum { BARRIER_TASKS = 8 };
static int barrier_task(weft_ctx *ctx, void *arg) {
    (void)ctx;
    tally *t = arg;
    atomic_fetch_add(&t->started, 1);
    weft_time give_up = weft_deadline(WEFT_SEC(10));
    while (atomic_load(&t->started) < BARRIER_TASKS && weft_now() < give_up) sleep_ms(1);
    WORKER_EXPECT(atomic_load(&t->started) == BARRIER_TASKS);
    atomic_fetch_add(&t->finished, 1);
    return 0;
}

START_TEST(test_negative_limit_removes_the_limit) {
    tally t;
    tally_init(&t);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    weft_group_set_limit(group, 1);
    weft_group_set_limit(group, -3);
    for (int i = 0; i < BARRIER_TASKS; i++)
        ck_assert_int_eq(weft_group_try_go(group, barrier_task, &t), 0);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&t.finished), BARRIER_TASKS);
    check_worker_failures();
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

/* In the child: a task that never returns, then a limit change. */
static void set_limit_while_running_misuse(void) {
    weft_group *group = weft_group_new(NULL);
    weft_chan *never_closed = weft_chan_make(0, 0);
    if (!group || !never_closed) _exit(3);
    tally t = {.gate = never_closed};
    if (weft_group_go(group, gate_task, &t) != 0) _exit(4);
    weft_group_set_limit(group, 2);
}

START_TEST(test_set_limit_while_tasks_run_aborts) {
    /* The child starts a goroutine: the pool must not have had threads
     * before the fork (go.h). */
    if (!default_pool_has_no_threads()) {
        fprintf(stderr, "test_set_limit_while_tasks_run_aborts: skipped (CK_FORK=no)\n");
        return;
    }
    expect_abort_with_weft_line(set_limit_while_running_misuse);
}
END_TEST

/* ---- misuse and failures that leave the group usable ------------------- */

START_TEST(test_null_fn_gives_einval) {
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    ck_assert_int_eq(weft_group_go(group, NULL, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_group_try_go(group, NULL, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_group_wait(group), 0);
    weft_group_free(group);
}
END_TEST

START_TEST(test_failed_weft_go_returns_its_error_and_leaves_group_usable) {
    if (!default_pool_has_no_threads()) {
        fprintf(stderr, "test_failed_weft_go_returns_its_error_and_leaves_group_usable: "
                        "skipped (the default pool has idle threads)\n");
        return;
    }
    tally t;
    tally_init(&t);
    atomic_store(&unexpected_runs, 0);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    weft_group_set_limit(group, 1);
    weft__pool_fail_thread_create(1);
    int result = weft_group_go(group, never_task, NULL);
    weft__pool_fail_thread_create(0);
    ck_assert_int_eq(result, WEFT_ENOMEM);
    ck_assert_int_eq(weft_ctx_err(weft_group_ctx(group)), 0);      /* not a task error */
    ck_assert_int_eq(weft_group_try_go(group, count_task, &t), 0); /* the slot was given back */
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&t.finished), 1);
    ck_assert_int_eq(atomic_load(&unexpected_runs), 0);
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

/* Forked tests only: the default pool starts in this test, with
 * WEFT_MAX_THREADS=2. */
START_TEST(test_weft_go_at_max_threads_gives_eagain_and_leaves_group_usable) {
    setenv("WEFT_MAX_THREADS", "2", 1);
    tally t;
    tally_init(&t);
    atomic_store(&unexpected_runs, 0);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    ck_assert_int_eq(weft_group_go(group, gate_task, &t), 0);
    ck_assert_int_eq(weft_group_go(group, gate_task, &t), 0);
    wait_for_count(&t.started, 2);
    ck_assert_int_eq(weft_group_go(group, never_task, NULL), WEFT_EAGAIN);
    tally_open_gate(&t);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert(goroutines_become(0));
    ck_assert_int_eq(weft_group_go(group, count_task, &t), 0);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&t.finished), 3);
    ck_assert_int_eq(atomic_load(&unexpected_runs), 0);
    check_worker_failures();
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

START_TEST(test_task_record_allocation_failure_gives_enomem) {
    tally t;
    tally_init(&t);
    atomic_store(&unexpected_runs, 0);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    weft__alloc_fail_from(1);
    int result = weft_group_go(group, never_task, NULL);
    weft__alloc_fail_from(0);
    ck_assert_int_eq(result, WEFT_ENOMEM);
    ck_assert_int_eq(weft_group_go(group, count_task, &t), 0);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&t.finished), 1);
    ck_assert_int_eq(atomic_load(&unexpected_runs), 0);
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

START_TEST(test_new_without_memory_returns_null_with_enomem) {
    weft_group *group = NULL;
    long k;
    for (k = 1; k < 50 && !group; k++) {
        weft__alloc_fail_from(k);
        errno = 0;
        group = weft_group_new(NULL);
        int saved_errno = errno;
        weft__alloc_fail_from(0);
        if (!group) ck_assert_int_eq(saved_errno, ENOMEM);
    }
    ck_assert_ptr_nonnull(group); /* k allocations were enough */
    ck_assert_int_gt(k, 2);       /* the group and its context: at least two */
    weft_group_free(group);
}
END_TEST

/* ---- lifetime and goroutines ------------------------------------------- */

/* Task: sleep, then count itself. */
static int slow_count_task(weft_ctx *ctx, void *arg) {
    (void)ctx;
    sleep_ms(20);
    atomic_fetch_add(&((tally *)arg)->finished, 1);
    return 0;
}

START_TEST(test_free_without_wait_waits_for_tasks) {
    tally t;
    tally_init(&t);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(weft_group_go(group, slow_count_task, &t), 0);
    weft_group_free(group);
    ck_assert_int_eq(atomic_load(&t.finished), 4);
    tally_destroy(&t);
}
END_TEST

START_TEST(test_free_null_is_ignored) { weft_group_free(NULL); }
END_TEST

START_TEST(test_tasks_are_goroutines_and_none_remain_after_wait) {
    enum { TASKS = 6 };
    ck_assert(goroutines_become(0));
    tally t;
    tally_init(&t);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    for (int i = 0; i < TASKS; i++) ck_assert_int_eq(weft_group_go(group, gate_task, &t), 0);
    wait_for_count(&t.started, TASKS);
    ck_assert_int_eq(weft_goroutines(), TASKS);
    tally_open_gate(&t);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert(goroutines_become(0));
    check_worker_failures();
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

/* A thread that starts `count` tasks in the group. */
typedef struct {
    weft_group *group;
    tally *tally;
    int count;
} starter;

static void *starter_main(void *arg) {
    starter *s = arg;
    for (int i = 0; i < s->count; i++)
        WORKER_EXPECT(weft_group_go(s->group, count_task, s->tally) == 0);
    return NULL;
}

START_TEST(test_go_from_many_threads_runs_every_task) {
    enum { THREADS = 4 };
    int per_thread = (int)scaled(100);
    tally t;
    tally_init(&t);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    starter starters[THREADS];
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        starters[i] = (starter){group, &t, per_thread};
        start_thread(&threads[i], starter_main, &starters[i]);
    }
    for (int i = 0; i < THREADS; i++) join_thread(threads[i]);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&t.finished), THREADS * per_thread);
    check_worker_failures();
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

/* A binary tree of tasks: task i starts tasks 2i+1 and 2i+2 in the same
 * group before it returns. */
enum { TREE_TASKS = 15 };
typedef struct {
    weft_group *group;
    tally *tally;
    int index;
} tree_node;

static tree_node tree[TREE_TASKS];

static int tree_task(weft_ctx *ctx, void *arg) {
    (void)ctx;
    tree_node *node = arg;
    for (int child = 2 * node->index + 1; child <= 2 * node->index + 2; child++)
        if (child < TREE_TASKS)
            WORKER_EXPECT(weft_group_go(node->group, tree_task, &tree[child]) == 0);
    atomic_fetch_add(&node->tally->finished, 1);
    return 0;
}

START_TEST(test_wait_waits_for_tasks_started_by_tasks) {
    tally t;
    tally_init(&t);
    weft_group *group = weft_group_new(NULL);
    ck_assert_ptr_nonnull(group);
    for (int i = 0; i < TREE_TASKS; i++) tree[i] = (tree_node){group, &t, i};
    ck_assert_int_eq(weft_group_go(group, tree_task, &tree[0]), 0);
    ck_assert_int_eq(weft_group_wait(group), 0);
    ck_assert_int_eq(atomic_load(&t.finished), TREE_TASKS);
    check_worker_failures();
    weft_group_free(group);
    tally_destroy(&t);
}
END_TEST

/* ---- runner ------------------------------------------------------------ */

static Suite *group_suite(bool forking) {
    Suite *suite = suite_create("group");
    TCase *tc;

    tc = new_case(suite, "wait");
    tcase_add_test(tc, test_wait_with_no_tasks_returns_zero);
    tcase_add_test(tc, test_wait_returns_first_error_of_tasks_waited_one_by_one);
    tcase_add_test(tc, test_first_error_wins_and_every_task_runs);
    tcase_add_test(tc, test_first_error_cancels_context_with_it_as_cause);
    tcase_add_test(tc, test_first_error_wakes_tasks_blocked_on_context_done);
    tcase_add_test(tc, test_wait_cancels_context_when_no_task_failed);
    tcase_add_test(tc, test_wait_waits_for_tasks_started_by_tasks);

    tc = new_case(suite, "context");
    tcase_add_test(tc, test_tasks_get_the_group_context);
    tcase_add_test(tc, test_parent_cancel_reaches_group_context);
    tcase_add_test(tc, test_group_over_canceled_parent_starts_canceled_and_still_runs_tasks);

    tc = new_case(suite, "limit");
    tcase_add_test(tc, test_limit_bounds_concurrently_running_tasks);
    tcase_add_test(tc, test_go_at_limit_blocks_until_a_slot_frees);
    tcase_add_test(tc, test_try_go_at_limit_gives_eagain);
    tcase_add_test(tc, test_try_go_with_a_free_slot_starts_the_task);
    tcase_add_test(tc, test_limit_zero_makes_try_go_give_eagain);
    tcase_add_test(tc, test_limit_zero_makes_go_give_einval);
    tcase_add_test(tc, test_negative_limit_removes_the_limit);
    tcase_add_test(tc, test_set_limit_while_tasks_run_aborts);

    tc = new_case(suite, "errors");
    tcase_add_test(tc, test_null_fn_gives_einval);
    tcase_add_test(tc, test_failed_weft_go_returns_its_error_and_leaves_group_usable);
    if (forking)
        tcase_add_test(tc, test_weft_go_at_max_threads_gives_eagain_and_leaves_group_usable);
    tcase_add_test(tc, test_task_record_allocation_failure_gives_enomem);
    tcase_add_test(tc, test_new_without_memory_returns_null_with_enomem);

    tc = new_case(suite, "lifetime");
    tcase_add_test(tc, test_free_without_wait_waits_for_tasks);
    tcase_add_test(tc, test_free_null_is_ignored);
    tcase_add_test(tc, test_tasks_are_goroutines_and_none_remain_after_wait);
    tcase_add_test(tc, test_go_from_many_threads_runs_every_task);
    return suite;
}

int main(void) {
    /* The fork status must be known before the suite is built: ask a
     * throwaway runner, which reads CK_FORK. */
    bool forking = check_forks();

    /* Without fork every test shares one default pool. A short idle
     * timeout lets its threads leave before exit, so that valgrind finds
     * no live thread (whose glibc TLS block it would call "possibly
     * lost"); as test_go.c does. */
    if (!forking) setenv("WEFT_IDLE_TIMEOUT_MS", "50", 0);

    SRunner *runner = srunner_create(group_suite(forking));
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    if (!forking) {
        weft_time give_up = weft_deadline(WEFT_SEC(20));
        while (weft__pool_threads(weft__pool_default()) != 0 && weft_now() < give_up) sleep_ms(1);
        sleep_ms(50); /* the last thread has left the pool; let it finish exiting */
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
