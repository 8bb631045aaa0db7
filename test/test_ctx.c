/* Context tests, written from the contract in include/weft/ctx.h and
 * DESIGN.md ("Contexts"), not from the implementation. The behaviours are
 * those of Go's context tests (go1.21: causes, AfterFunc, WithoutCancel),
 * said again in C.
 *
 * "Open" and "closed" are read off the done channel with
 * weft_chan_try_recv: WEFT_EAGAIN while the context is live, WEFT_ECLOSED
 * once it ended. Timing is asserted only as "never early" (a context seen
 * ended at time t had its deadline at or before t) and as generous upper
 * bounds. Every test that starts goroutines (weft_go, after-functions)
 * waits for weft_goroutines() to return to 0 before it ends.
 *
 * Memory: the suite runs under AddressSanitizer's leak check (make asan),
 * which catches a context never freed and a child freed while its parent
 * still points at it. The "do not accumulate" tests also measure the heap
 * in use (the sanitizer's counter, else glibc's mallinfo2) across 100,000
 * short-lived children of one parent. Heavy tests honour WEFT_TEST_SCALE. */
#include <check.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/error.h"
#include "weft/go.h"
#include "weft/select.h"
#include "weft/time.h"

#include "alloc.h"
#include "timer.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------- */

enum { WAIT_MS = 10000 }; /* bound on any wait; far above what a healthy run needs */

#define HOUR WEFT_SEC(3600)

/* Keys are addresses of static objects. */
static int key_one, key_two;
static int value_a, value_b, value_c;

/* ctx is live: no error, no cause, its done channel exists and is open. */
#define assert_live(ctx)                                                               \
    do {                                                                               \
        weft_ctx *live_ = (ctx);                                                       \
        ck_assert_int_eq(weft_ctx_err(live_), 0);                                      \
        ck_assert_int_eq(weft_ctx_cause(live_), 0);                                    \
        ck_assert_ptr_nonnull(weft_ctx_done(live_));                                   \
        ck_assert_int_eq(weft_chan_try_recv(weft_ctx_done(live_), NULL), WEFT_EAGAIN); \
    } while (0)

/* ctx ended with error: its done channel exists and is closed. */
#define assert_ended(ctx, error)                                                         \
    do {                                                                                 \
        weft_ctx *ended_ = (ctx);                                                        \
        ck_assert_int_eq(weft_ctx_err(ended_), (error));                                 \
        ck_assert_ptr_nonnull(weft_ctx_done(ended_));                                    \
        ck_assert_int_eq(weft_chan_try_recv(weft_ctx_done(ended_), NULL), WEFT_ECLOSED); \
    } while (0)

/* ctx can never be canceled: no error, no cause, no done channel. */
#define assert_uncancelable(ctx)                     \
    do {                                             \
        weft_ctx *never_ = (ctx);                    \
        ck_assert_int_eq(weft_ctx_err(never_), 0);   \
        ck_assert_int_eq(weft_ctx_cause(never_), 0); \
        ck_assert_ptr_null(weft_ctx_done(never_));   \
    } while (0)

/* For threads that must not ck_assert: has ctx ended with error? */
static bool ended_with(weft_ctx *ctx, int error) {
    weft_chan *done = weft_ctx_done(ctx);
    return weft_ctx_err(ctx) == error && done && weft_chan_try_recv(done, NULL) == WEFT_ECLOSED;
}

/* Block until ctx's done channel closes, at most WAIT_MS; the receive's
 * result (WEFT_ECLOSED when it closed). */
static int wait_done(weft_ctx *ctx) {
    return weft_chan_recv_until(weft_ctx_done(ctx), NULL, weft_deadline(WEFT_MS(WAIT_MS)));
}

/* Fisher-Yates over order[0..count). */
static void shuffle(int *order, int count, uint64_t *seed) {
    for (int i = count - 1; i > 0; i--) {
        int j = (int)(test_random(seed) % (uint64_t)(i + 1));
        int swap = order[i];
        order[i] = order[j];
        order[j] = swap;
    }
}

/* Bytes of heap in use: the sanitizer's own count under ASan/TSan (its
 * allocator replaces malloc), glibc's otherwise. Only differences count. */
size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

static long long heap_in_use(void) {
    if (__sanitizer_get_current_allocated_bytes)
        return (long long)__sanitizer_get_current_allocated_bytes();
    struct mallinfo2 info = mallinfo2();
    return (long long)(info.uordblks + info.hblkhd);
}

/* ==== background ======================================================== */

START_TEST(test_background_is_never_done) {
    weft_ctx *background = weft_ctx_background();
    ck_assert_ptr_nonnull(background);
    ck_assert_ptr_eq(weft_ctx_background(), background); /* one static root */
    assert_uncancelable(background);
    ck_assert(weft_ctx_deadline(background) == WEFT_FOREVER);
    ck_assert_ptr_null(weft_ctx_value(background, &key_one));
}
END_TEST

START_TEST(test_background_ignores_retain_release_and_cancel) {
    weft_ctx *background = weft_ctx_background();
    for (int i = 0; i < 3; i++) weft_ctx_retain(background);
    for (int i = 0; i < 10; i++) weft_ctx_release(background); /* more than retained */
    weft_ctx_cancel(background);
    weft_ctx_cancel_cause(background, 42);
    assert_uncancelable(background);
    ck_assert(weft_ctx_deadline(background) == WEFT_FOREVER);
    /* still usable as a parent */
    weft_ctx *child = weft_ctx_with_cancel(background);
    ck_assert_ptr_nonnull(child);
    assert_live(child);
    weft_ctx_cancel(child);
    weft_ctx_release(child);
    assert_uncancelable(background);
}
END_TEST

START_TEST(test_null_context_means_background) {
    weft_ctx_retain(NULL);
    weft_ctx_release(NULL);
    weft_ctx_cancel(NULL);
    weft_ctx_cancel_cause(NULL, 42);
    assert_uncancelable(NULL);
    ck_assert(weft_ctx_deadline(NULL) == WEFT_FOREVER);
    ck_assert_ptr_null(weft_ctx_value(NULL, &key_one));
    assert_uncancelable(weft_ctx_background()); /* the cancels above did not reach it */
}
END_TEST

START_TEST(test_null_parent_means_background) {
    weft_ctx *cancelable = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(cancelable);
    assert_live(cancelable);
    ck_assert(weft_ctx_deadline(cancelable) == WEFT_FOREVER);
    weft_ctx_cancel(cancelable);
    assert_ended(cancelable, WEFT_ECANCELED);
    weft_ctx_release(cancelable);

    weft_ctx *valued = weft_ctx_with_value(NULL, &key_one, &value_a);
    ck_assert_ptr_nonnull(valued);
    ck_assert_ptr_eq(weft_ctx_value(valued, &key_one), &value_a);
    assert_uncancelable(valued); /* a value over background, like background */
    ck_assert(weft_ctx_deadline(valued) == WEFT_FOREVER);
    weft_ctx_release(valued);

    weft_time deadline = weft_deadline(HOUR);
    weft_ctx *timed = weft_ctx_with_deadline(NULL, deadline);
    ck_assert_ptr_nonnull(timed);
    assert_live(timed);
    ck_assert(weft_ctx_deadline(timed) == deadline);
    weft_ctx_cancel(timed);
    weft_ctx_release(timed);
}
END_TEST

START_TEST(test_value_over_background_cannot_be_canceled) {
    weft_ctx *valued = weft_ctx_with_value(weft_ctx_background(), &key_one, &value_a);
    ck_assert_ptr_nonnull(valued);
    weft_ctx_cancel(valued);
    weft_ctx_cancel_cause(valued, 7);
    assert_uncancelable(valued);
    ck_assert(weft_ctx_deadline(valued) == WEFT_FOREVER);
    ck_assert_ptr_eq(weft_ctx_value(valued, &key_one), &value_a);
    weft_ctx_release(valued);
}
END_TEST

/* ==== with_cancel ======================================================= */

START_TEST(test_with_cancel_is_live_until_canceled) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    assert_live(ctx);
    ck_assert(weft_ctx_deadline(ctx) == WEFT_FOREVER);
    weft_ctx_cancel(ctx);
    assert_ended(ctx, WEFT_ECANCELED);
    ck_assert(weft_ctx_deadline(ctx) == WEFT_FOREVER);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_done_is_one_signal_channel_per_context) {
    weft_ctx *first = weft_ctx_with_cancel(NULL);
    weft_ctx *second = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_nonnull(second);
    weft_chan *done = weft_ctx_done(first);
    ck_assert_ptr_nonnull(done);
    ck_assert_ptr_eq(weft_ctx_done(first), done);
    ck_assert_uint_eq(weft_chan_elem_size(done), 0);
    ck_assert_ptr_ne(weft_ctx_done(second), done);
    weft_ctx_cancel(first);
    ck_assert_ptr_eq(weft_ctx_done(first), done); /* the same channel, now closed */
    ck_assert_int_eq(weft_chan_try_recv(done, NULL), WEFT_ECLOSED);
    assert_live(second);
    weft_ctx_release(first);
    weft_ctx_release(second);
}
END_TEST

START_TEST(test_cancel_is_idempotent) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    weft_ctx_cancel(ctx);
    weft_ctx_cancel(ctx);
    weft_ctx_cancel_cause(ctx, 5); /* too late: the first end stays */
    weft_ctx_cancel(ctx);
    assert_ended(ctx, WEFT_ECANCELED);
    ck_assert_int_eq(weft_ctx_cause(ctx), WEFT_ECANCELED);
    weft_ctx_release(ctx);
}
END_TEST

typedef struct {
    weft_ctx *ctx; /* borrowed: the test holds it until finished */
    atomic_int arrived;
    atomic_int finished;
    int result;    /* what weft_chan_recv on done returned */
    int err_after; /* weft_ctx_err after it returned */
} done_waiter;

static void wait_on_done(void *arg) {
    done_waiter *waiter = arg;
    atomic_store(&waiter->arrived, 1);
    waiter->result = weft_chan_recv(weft_ctx_done(waiter->ctx), NULL);
    waiter->err_after = weft_ctx_err(waiter->ctx);
    atomic_store(&waiter->finished, 1);
}

START_TEST(test_cancel_wakes_goroutine_blocked_on_done) {
    done_waiter waiter = {.ctx = weft_ctx_with_cancel(NULL)};
    ck_assert_ptr_nonnull(waiter.ctx);
    ck_assert_int_eq(weft_go(wait_on_done, &waiter), 0);
    wait_for_count(&waiter.arrived, 1);
    ck_assert_int_eq(atomic_load(&waiter.finished), 0); /* done is open: it waits */
    weft_ctx_cancel(waiter.ctx);
    ck_assert_msg(int_becomes(&waiter.finished, 1), "cancel did not wake the receiver on done");
    ck_assert_int_eq(waiter.result, WEFT_ECLOSED);
    ck_assert_int_eq(waiter.err_after, WEFT_ECANCELED);
    weft_ctx_release(waiter.ctx);
    ck_assert(goroutines_become(0));
}
END_TEST

typedef struct {
    weft_ctx *ctx;
    weft_chan *other; /* never sent on */
    atomic_int arrived;
    atomic_int finished;
    int chosen;   /* weft_select's result */
    int case_err; /* the chosen case's err */
} select_waiter;

static void *select_on_done_main(void *arg) {
    select_waiter *waiter = arg;
    int value = 0;
    weft_case cases[2] = {WEFT_RECV_CASE(waiter->other, &value),
                          WEFT_RECV_CASE(weft_ctx_done(waiter->ctx), NULL)};
    atomic_store(&waiter->arrived, 1);
    waiter->chosen = weft_select(cases, 2, weft_deadline(WEFT_MS(WAIT_MS)));
    waiter->case_err = waiter->chosen >= 0 ? cases[waiter->chosen].err : 0;
    atomic_store(&waiter->finished, 1);
    return NULL;
}

START_TEST(test_cancel_wakes_select_on_done) {
    select_waiter waiter = {.ctx = weft_ctx_with_cancel(NULL),
                            .other = weft_chan_make(sizeof(int), 0)};
    ck_assert_ptr_nonnull(waiter.ctx);
    ck_assert_ptr_nonnull(waiter.other);
    pthread_t thread;
    start_thread(&thread, select_on_done_main, &waiter);
    wait_for_count(&waiter.arrived, 1);
    ck_assert_int_eq(atomic_load(&waiter.finished), 0);
    weft_ctx_cancel(waiter.ctx);
    join_thread(thread);
    ck_assert_int_eq(waiter.chosen, 1); /* the done case, not a timeout */
    ck_assert_int_eq(waiter.case_err, WEFT_ECLOSED);
    weft_chan_release(waiter.other);
    weft_ctx_release(waiter.ctx);
}
END_TEST

/* ==== propagation ======================================================= */

START_TEST(test_cancel_reaches_cancel_child) {
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    weft_ctx *child = weft_ctx_with_cancel(parent);
    ck_assert_ptr_nonnull(child);
    assert_live(child);
    ck_assert_ptr_ne(weft_ctx_done(child), weft_ctx_done(parent)); /* its own channel */
    weft_ctx_cancel(parent);
    assert_ended(child, WEFT_ECANCELED);
    weft_ctx_release(child);
    weft_ctx_release(parent);
}
END_TEST

START_TEST(test_value_child_shares_parent_done_error_and_deadline) {
    weft_time deadline = weft_deadline(HOUR);
    weft_ctx *parent = weft_ctx_with_deadline(NULL, deadline);
    weft_ctx *child = weft_ctx_with_value(parent, &key_one, &value_a);
    ck_assert_ptr_nonnull(child);
    ck_assert_ptr_eq(weft_ctx_done(child), weft_ctx_done(parent));
    ck_assert(weft_ctx_deadline(child) == deadline);
    assert_live(child);
    weft_ctx_cancel(parent);
    assert_ended(child, WEFT_ECANCELED);
    ck_assert_ptr_eq(weft_ctx_done(child), weft_ctx_done(parent));
    weft_ctx_release(child);
    weft_ctx_release(parent);
}
END_TEST

START_TEST(test_cancel_reaches_deadline_child) {
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    weft_ctx *child = weft_ctx_with_timeout(parent, HOUR);
    ck_assert_ptr_nonnull(child);
    assert_live(child);
    weft_ctx_cancel(parent);
    assert_ended(child, WEFT_ECANCELED); /* canceled, not timed out */
    weft_ctx_release(child);
    weft_ctx_release(parent);
}
END_TEST

START_TEST(test_cancel_reaches_through_value_cancel_value_chain) {
    weft_ctx *root = weft_ctx_with_cancel(NULL);
    weft_ctx *upper_value = weft_ctx_with_value(root, &key_one, &value_a);
    weft_ctx *middle = weft_ctx_with_cancel(upper_value);
    weft_ctx *lower_value = weft_ctx_with_value(middle, &key_two, &value_b);
    weft_ctx *leaf = weft_ctx_with_cancel(lower_value);
    ck_assert_ptr_nonnull(leaf);
    weft_ctx *chain[] = {upper_value, middle, lower_value, leaf};
    for (int i = 0; i < 4; i++) assert_live(chain[i]);
    weft_ctx_cancel(root);
    for (int i = 0; i < 4; i++) assert_ended(chain[i], WEFT_ECANCELED);
    for (int i = 3; i >= 0; i--) weft_ctx_release(chain[i]);
    weft_ctx_release(root);
}
END_TEST

START_TEST(test_cancel_reaches_grandchild) {
    weft_ctx *root = weft_ctx_with_cancel(NULL);
    weft_ctx *child = weft_ctx_with_cancel(root);
    weft_ctx *grandchild = weft_ctx_with_cancel(child);
    weft_ctx *great_grandchild = weft_ctx_with_timeout(grandchild, HOUR);
    ck_assert_ptr_nonnull(great_grandchild);
    weft_ctx_cancel(root);
    assert_ended(child, WEFT_ECANCELED);
    assert_ended(grandchild, WEFT_ECANCELED);
    assert_ended(great_grandchild, WEFT_ECANCELED);
    weft_ctx_release(great_grandchild);
    weft_ctx_release(grandchild);
    weft_ctx_release(child);
    weft_ctx_release(root);
}
END_TEST

START_TEST(test_without_cancel_child_is_not_canceled_but_sees_values) {
    weft_ctx *root = weft_ctx_with_cancel(NULL);
    weft_ctx *valued = weft_ctx_with_value(root, &key_one, &value_a);
    weft_ctx *parent = weft_ctx_with_timeout(valued, HOUR);
    weft_ctx *detached = weft_ctx_without_cancel(parent);
    ck_assert_ptr_nonnull(detached);
    assert_uncancelable(detached);
    ck_assert(weft_ctx_deadline(detached) == WEFT_FOREVER); /* no deadline either */
    ck_assert_ptr_eq(weft_ctx_value(detached, &key_one), &value_a);
    weft_ctx *below = weft_ctx_with_cancel(detached); /* cancelable below it */
    ck_assert_ptr_nonnull(below);

    weft_ctx_cancel_cause(root, 42);
    assert_ended(parent, WEFT_ECANCELED);
    assert_uncancelable(detached);
    ck_assert_ptr_eq(weft_ctx_value(detached, &key_one), &value_a);
    assert_live(below);
    weft_ctx_cancel(detached); /* ignored */
    assert_uncancelable(detached);
    assert_live(below);

    weft_ctx_cancel(below);
    weft_ctx_release(below);
    weft_ctx_release(detached);
    weft_ctx_release(parent);
    weft_ctx_release(valued);
    weft_ctx_release(root);
}
END_TEST

START_TEST(test_child_cancel_leaves_parent_live) {
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    weft_ctx *child = weft_ctx_with_cancel(parent);
    weft_ctx *sibling = weft_ctx_with_cancel(parent);
    weft_ctx *timed_child = weft_ctx_with_timeout(parent, HOUR);
    ck_assert_ptr_nonnull(timed_child);
    weft_ctx_cancel(child);
    weft_ctx_cancel(timed_child);
    assert_ended(child, WEFT_ECANCELED);
    assert_ended(timed_child, WEFT_ECANCELED);
    assert_live(parent);
    assert_live(sibling);
    /* the parent still works after losing two children */
    weft_ctx_cancel(parent);
    assert_ended(sibling, WEFT_ECANCELED);
    weft_ctx_release(timed_child);
    weft_ctx_release(sibling);
    weft_ctx_release(child);
    weft_ctx_release(parent);
}
END_TEST

START_TEST(test_child_of_canceled_parent_is_born_canceled) {
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    weft_ctx_cancel(parent);
    weft_ctx *children[4] = {
        weft_ctx_with_cancel(parent),
        weft_ctx_with_timeout(parent, HOUR),
        weft_ctx_with_value(parent, &key_one, &value_a),
    };
    ck_assert_ptr_nonnull(children[2]);
    children[3] = weft_ctx_with_cancel(children[2]); /* a grandchild */
    for (int i = 0; i < 4; i++) {
        ck_assert_ptr_nonnull(children[i]);
        assert_ended(children[i], WEFT_ECANCELED);
        ck_assert_int_eq(weft_ctx_cause(children[i]), WEFT_ECANCELED);
    }
    for (int i = 3; i >= 0; i--) weft_ctx_release(children[i]);
    weft_ctx_release(parent);
}
END_TEST

START_TEST(test_child_of_timed_out_parent_is_born_timed_out) {
    weft_ctx *parent = weft_ctx_with_timeout(NULL, WEFT_MS(1));
    ck_assert_ptr_nonnull(parent);
    ck_assert_int_eq(wait_done(parent), WEFT_ECLOSED);
    ck_assert_int_eq(weft_ctx_err(parent), WEFT_ETIMEDOUT);
    weft_ctx *children[4] = {
        weft_ctx_with_cancel(parent),
        weft_ctx_with_timeout(parent, HOUR),
        weft_ctx_with_value(parent, &key_one, &value_a),
    };
    ck_assert_ptr_nonnull(children[0]);
    children[3] = weft_ctx_with_cancel(children[0]);
    for (int i = 0; i < 4; i++) {
        ck_assert_ptr_nonnull(children[i]);
        assert_ended(children[i], WEFT_ETIMEDOUT);
        ck_assert_int_eq(weft_ctx_cause(children[i]), WEFT_ETIMEDOUT);
    }
    for (int i = 3; i >= 0; i--) weft_ctx_release(children[i]);
    weft_ctx_release(parent);
}
END_TEST

/* Go's TestInterlockedCancels: a goroutine that wakes on the parent's done
 * cancels the child while the parent's cancel may still be walking its
 * children. No deadlock, and the child ends. */
typedef struct {
    weft_ctx *parent, *child; /* borrowed until finished */
    atomic_int finished;
} interlocked;

static void cancel_child_when_parent_done(void *arg) {
    interlocked *pair = arg;
    weft_chan_recv(weft_ctx_done(pair->parent), NULL);
    weft_ctx_cancel(pair->child);
    atomic_store(&pair->finished, 1);
}

START_TEST(test_parent_waiter_canceling_child_does_not_deadlock) {
    long rounds = scaled(200);
    for (long round = 0; round < rounds; round++) {
        interlocked pair = {.parent = weft_ctx_with_cancel(NULL)};
        pair.child = weft_ctx_with_cancel(pair.parent);
        ck_assert_ptr_nonnull(pair.child);
        ck_assert_int_eq(weft_go(cancel_child_when_parent_done, &pair), 0);
        weft_ctx_cancel(pair.parent);
        ck_assert_int_eq(wait_done(pair.child), WEFT_ECLOSED);
        ck_assert_int_eq(weft_ctx_err(pair.child), WEFT_ECANCELED);
        ck_assert_msg(int_becomes(&pair.finished, 1), "round %ld: the goroutine is stuck", round);
        weft_ctx_release(pair.child);
        weft_ctx_release(pair.parent);
    }
    ck_assert(goroutines_become(0));
}
END_TEST

/* ==== deadlines ========================================================= */

START_TEST(test_timeout_ends_with_etimedout_never_early) {
    weft_time before = weft_now();
    weft_ctx *ctx = weft_ctx_with_timeout(NULL, WEFT_MS(20));
    weft_time after = weft_now();
    ck_assert_ptr_nonnull(ctx);
    weft_time deadline = weft_ctx_deadline(ctx);
    ck_assert(deadline >= before + WEFT_MS(20) && deadline <= after + WEFT_MS(20));
    int early_err = weft_ctx_err(ctx);
    if (weft_now() < deadline) ck_assert_int_eq(early_err, 0); /* not before its time */
    ck_assert_int_eq(wait_done(ctx), WEFT_ECLOSED);
    ck_assert_msg(weft_now() >= deadline, "done closed %lld ns before the deadline",
                  (long long)(deadline - weft_now()));
    assert_ended(ctx, WEFT_ETIMEDOUT);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_deadline_is_reported_as_given) {
    weft_time deadline = weft_now() + HOUR + 12345;
    weft_ctx *ctx = weft_ctx_with_deadline(NULL, deadline);
    ck_assert_ptr_nonnull(ctx);
    ck_assert(weft_ctx_deadline(ctx) == deadline);
    weft_ctx *child = weft_ctx_with_cancel(ctx);
    ck_assert_ptr_nonnull(child);
    ck_assert(weft_ctx_deadline(child) == deadline); /* inherited */
    weft_ctx_cancel(ctx);
    ck_assert(weft_ctx_deadline(ctx) == deadline); /* ending does not change it */
    weft_ctx_release(child);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_cancel_before_deadline_gives_ecanceled_forever) {
    /* The cancel must come before the deadline; on a machine too slow for
     * that (sanitizers, load), try again with a longer timeout. */
    for (weft_time timeout = WEFT_MS(30);; timeout *= 10) {
        ck_assert_msg(timeout <= WEFT_SEC(3), "never canceled before the deadline");
        weft_ctx *ctx = weft_ctx_with_timeout(NULL, timeout);
        weft_ctx *child = weft_ctx_with_cancel(ctx);
        ck_assert_ptr_nonnull(child);
        weft_time deadline = weft_ctx_deadline(ctx);
        weft_ctx_cancel(ctx);
        bool in_time = weft_now() < deadline;
        if (in_time) {
            assert_ended(ctx, WEFT_ECANCELED);
            assert_ended(child, WEFT_ECANCELED);
            while (weft_now() < deadline + WEFT_MS(30)) sleep_ms(5); /* the deadline passes */
            assert_ended(ctx, WEFT_ECANCELED);
            assert_ended(child, WEFT_ECANCELED);
            ck_assert_int_eq(weft_ctx_cause(ctx), WEFT_ECANCELED);
            ck_assert_int_eq(weft_ctx_cause(child), WEFT_ECANCELED);
        }
        weft_ctx_release(child);
        weft_ctx_release(ctx);
        if (in_time) break;
    }
}
END_TEST

START_TEST(test_cancel_after_deadline_keeps_etimedout) {
    weft_ctx *ctx = weft_ctx_with_timeout(NULL, WEFT_MS(5));
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(wait_done(ctx), WEFT_ECLOSED);
    weft_ctx_cancel(ctx);
    weft_ctx_cancel_cause(ctx, 9);
    assert_ended(ctx, WEFT_ETIMEDOUT);
    ck_assert_int_eq(weft_ctx_cause(ctx), WEFT_ETIMEDOUT);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_past_deadline_gives_child_born_timed_out) {
    weft_time now = weft_now();
    weft_ctx *ctxs[] = {
        weft_ctx_with_deadline(NULL, now - 1),     weft_ctx_with_deadline(NULL, now),
        weft_ctx_with_deadline(NULL, WEFT_NOWAIT), weft_ctx_with_timeout(NULL, 0),
        weft_ctx_with_timeout(NULL, -WEFT_MS(5)),
    };
    for (size_t i = 0; i < sizeof ctxs / sizeof ctxs[0]; i++) {
        ck_assert_ptr_nonnull(ctxs[i]);
        assert_ended(ctxs[i], WEFT_ETIMEDOUT); /* at once: no waiting for the timer */
        ck_assert_int_eq(weft_ctx_cause(ctxs[i]), WEFT_ETIMEDOUT);
    }
    ck_assert(weft_ctx_deadline(ctxs[0]) == now - 1);
    for (size_t i = 0; i < sizeof ctxs / sizeof ctxs[0]; i++) weft_ctx_release(ctxs[i]);
}
END_TEST

START_TEST(test_deadline_is_earliest_in_chain) {
    weft_time parent_deadline = weft_deadline(HOUR);
    weft_ctx *parent = weft_ctx_with_deadline(NULL, parent_deadline);
    weft_ctx *later = weft_ctx_with_deadline(parent, parent_deadline + HOUR);
    weft_ctx *earlier = weft_ctx_with_deadline(parent, parent_deadline - WEFT_SEC(60));
    weft_ctx *valued = weft_ctx_with_value(earlier, &key_one, &value_a);
    weft_ctx *below_valued = weft_ctx_with_deadline(valued, parent_deadline);
    weft_ctx *detached = weft_ctx_without_cancel(parent);
    weft_ctx *below_detached = weft_ctx_with_deadline(detached, parent_deadline + HOUR);
    ck_assert_ptr_nonnull(below_detached);
    ck_assert_ptr_nonnull(below_valued);
    ck_assert(weft_ctx_deadline(later) == parent_deadline);
    ck_assert(weft_ctx_deadline(earlier) == parent_deadline - WEFT_SEC(60));
    ck_assert(weft_ctx_deadline(valued) == parent_deadline - WEFT_SEC(60));
    ck_assert(weft_ctx_deadline(below_valued) == parent_deadline - WEFT_SEC(60));
    ck_assert(weft_ctx_deadline(detached) == WEFT_FOREVER);
    ck_assert(weft_ctx_deadline(below_detached) == parent_deadline + HOUR);
    weft_ctx *all[] = {below_detached, detached, below_valued, valued, earlier, later, parent};
    for (int i = 0; i < 7; i++) weft_ctx_release(all[i]);
}
END_TEST

START_TEST(test_child_with_later_deadline_ends_with_parent) {
    weft_ctx *parent = weft_ctx_with_timeout(NULL, WEFT_MS(20));
    ck_assert_ptr_nonnull(parent);
    weft_time parent_deadline = weft_ctx_deadline(parent);
    weft_ctx *child = weft_ctx_with_deadline(parent, parent_deadline + HOUR);
    ck_assert_ptr_nonnull(child);
    ck_assert(weft_ctx_deadline(child) == parent_deadline);
    ck_assert_int_eq(wait_done(child), WEFT_ECLOSED);
    ck_assert(weft_now() >= parent_deadline);
    assert_ended(child, WEFT_ETIMEDOUT);
    ck_assert_int_eq(weft_ctx_cause(child), WEFT_ETIMEDOUT);
    assert_ended(parent, WEFT_ETIMEDOUT);
    weft_ctx_release(child);
    weft_ctx_release(parent);
}
END_TEST

START_TEST(test_child_with_earlier_deadline_ends_alone) {
    weft_ctx *parent = weft_ctx_with_timeout(NULL, HOUR);
    weft_ctx *child = weft_ctx_with_timeout(parent, WEFT_MS(10));
    ck_assert_ptr_nonnull(child);
    weft_time deadline = weft_ctx_deadline(child);
    ck_assert_int_eq(wait_done(child), WEFT_ECLOSED);
    ck_assert(weft_now() >= deadline);
    assert_ended(child, WEFT_ETIMEDOUT);
    assert_live(parent);
    weft_ctx_cancel(parent);
    assert_ended(child, WEFT_ETIMEDOUT); /* keeps its first error */
    weft_ctx_release(child);
    weft_ctx_release(parent);
}
END_TEST

/* 1000 deadlines spread over 50 ms, created in a shuffled order, observed
 * in deadline order: each ends with WEFT_ETIMEDOUT, none before its time. */
enum { SPREAD_COUNT = 1000 };

START_TEST(test_many_deadlines_end_in_time_never_early) {
    static weft_ctx *ctxs[SPREAD_COUNT];
    static int order[SPREAD_COUNT];
    uint64_t seed = 20240611;
    size_t pending_before = weft__timer_pending();
    weft_time base = weft_now() + WEFT_MS(20);
    for (int i = 0; i < SPREAD_COUNT; i++) order[i] = i;
    shuffle(order, SPREAD_COUNT, &seed);
    for (int j = 0; j < SPREAD_COUNT; j++) {
        int i = order[j];
        ctxs[i] = weft_ctx_with_deadline(NULL, base + WEFT_MS(50) * i / SPREAD_COUNT);
        ck_assert_ptr_nonnull(ctxs[i]);
    }
    for (int i = 0; i < SPREAD_COUNT; i++) {
        weft_time deadline = base + WEFT_MS(50) * i / SPREAD_COUNT;
        ck_assert(weft_ctx_deadline(ctxs[i]) == deadline);
        ck_assert_msg(wait_done(ctxs[i]) == WEFT_ECLOSED, "context %d never ended", i);
        weft_time seen = weft_now();
        ck_assert_msg(seen >= deadline, "context %d ended %lld ns early", i,
                      (long long)(deadline - seen));
        ck_assert_int_eq(weft_ctx_err(ctxs[i]), WEFT_ETIMEDOUT);
    }
    for (int i = 0; i < SPREAD_COUNT; i++) weft_ctx_release(ctxs[i]);
    ck_assert_uint_eq(weft__timer_pending(), pending_before);
}
END_TEST

/* ==== values ============================================================ */

START_TEST(test_value_nearest_wins_when_key_is_shadowed) {
    weft_ctx *outer = weft_ctx_with_value(NULL, &key_one, &value_a);
    weft_ctx *middle = weft_ctx_with_value(outer, &key_two, &value_b);
    weft_ctx *inner = weft_ctx_with_value(middle, &key_one, &value_c);
    ck_assert_ptr_nonnull(inner);
    ck_assert_ptr_eq(weft_ctx_value(inner, &key_one), &value_c);
    ck_assert_ptr_eq(weft_ctx_value(inner, &key_two), &value_b);
    ck_assert_ptr_eq(weft_ctx_value(middle, &key_one), &value_a); /* outer ones unchanged */
    ck_assert_ptr_eq(weft_ctx_value(outer, &key_one), &value_a);
    ck_assert_ptr_null(weft_ctx_value(outer, &key_two));
    weft_ctx_release(inner);
    weft_ctx_release(middle);
    weft_ctx_release(outer);
}
END_TEST

START_TEST(test_value_unknown_key_is_null) {
    weft_ctx *cancelable = weft_ctx_with_cancel(NULL);
    weft_ctx *valued = weft_ctx_with_value(cancelable, &key_one, &value_a);
    ck_assert_ptr_nonnull(valued);
    ck_assert_ptr_null(weft_ctx_value(valued, &key_two));
    ck_assert_ptr_null(weft_ctx_value(valued, &value_a)); /* a value is not a key */
    ck_assert_ptr_null(weft_ctx_value(valued, NULL));
    ck_assert_ptr_null(weft_ctx_value(cancelable, &key_one));
    weft_ctx_release(valued);
    weft_ctx_release(cancelable);
}
END_TEST

START_TEST(test_value_keys_compare_by_pointer) {
    static const char name_key[] = "user";
    static const char same_text_key[] = "user"; /* equal contents, another object */
    static const int number_key = 1, same_number_key = 1;
    weft_ctx *first = weft_ctx_with_value(NULL, name_key, &value_a);
    weft_ctx *second = weft_ctx_with_value(first, &number_key, &value_b);
    ck_assert_ptr_nonnull(second);
    ck_assert_ptr_eq(weft_ctx_value(second, name_key), &value_a);
    ck_assert_ptr_null(weft_ctx_value(second, same_text_key));
    ck_assert_ptr_eq(weft_ctx_value(second, &number_key), &value_b);
    ck_assert_ptr_null(weft_ctx_value(second, &same_number_key));
    weft_ctx_release(second);
    weft_ctx_release(first);
}
END_TEST

START_TEST(test_value_null_shadows_outer_value) {
    weft_ctx *outer = weft_ctx_with_value(NULL, &key_one, &value_a);
    weft_ctx *inner = weft_ctx_with_value(outer, &key_one, NULL);
    ck_assert_ptr_nonnull(inner);
    ck_assert_ptr_null(weft_ctx_value(inner, &key_one)); /* nearest wins, even NULL */
    ck_assert_ptr_eq(weft_ctx_value(outer, &key_one), &value_a);
    weft_ctx_release(inner);
    weft_ctx_release(outer);
}
END_TEST

START_TEST(test_values_visible_through_every_kind_of_child) {
    weft_ctx *valued = weft_ctx_with_value(NULL, &key_one, &value_a);
    weft_ctx *cancel_child = weft_ctx_with_cancel(valued);
    weft_ctx *deadline_child = weft_ctx_with_timeout(cancel_child, HOUR);
    weft_ctx *detached = weft_ctx_without_cancel(deadline_child);
    weft_ctx *value_child = weft_ctx_with_value(detached, &key_two, &value_b);
    ck_assert_ptr_nonnull(value_child);
    weft_ctx *chain[] = {cancel_child, deadline_child, detached, value_child};
    for (int i = 0; i < 4; i++) ck_assert_ptr_eq(weft_ctx_value(chain[i], &key_one), &value_a);
    ck_assert_ptr_eq(weft_ctx_value(value_child, &key_two), &value_b);
    ck_assert_ptr_null(weft_ctx_value(detached, &key_two));
    for (int i = 3; i >= 0; i--) weft_ctx_release(chain[i]);
    weft_ctx_release(valued);
}
END_TEST

START_TEST(test_values_readable_after_cancel) {
    weft_ctx *root = weft_ctx_with_cancel(NULL);
    weft_ctx *valued = weft_ctx_with_value(root, &key_one, &value_a);
    weft_ctx *child = weft_ctx_with_cancel(valued);
    ck_assert_ptr_nonnull(child);
    weft_ctx_cancel(root);
    ck_assert_ptr_eq(weft_ctx_value(child, &key_one), &value_a);
    ck_assert_ptr_eq(weft_ctx_value(valued, &key_one), &value_a);
    weft_ctx_release(child);
    weft_ctx_release(valued);
    weft_ctx_release(root);
}
END_TEST

/* Go's testLayers: a random chain of at least 30 value, cancel and
 * timeout layers over background; the leaf sees every value before and
 * after it ends. */
enum { LAYERS_MIN = 30, LAYERS_MAX = 256 };
enum { LAYER_VALUE, LAYER_CANCEL, LAYER_TIMEOUT };

typedef struct {
    weft_ctx *ctx[LAYERS_MAX];
    int kind[LAYERS_MAX];
    int keys[LAYERS_MAX]; /* &keys[i] is layer i's key and value */
    int count;
} layers;

static void build_layers(layers *chain, uint64_t seed, weft_time timeout) {
    int values = 0, cancels = 0, timers = 0;
    weft_ctx *ctx = NULL;
    chain->count = 0;
    for (int i = 0; i < LAYERS_MIN || values == 0 || cancels == 0 || timers == 0; i++) {
        ck_assert_int_lt(i, LAYERS_MAX);
        int kind = (int)(test_random(&seed) % 3);
        if (kind == LAYER_VALUE) {
            ctx = weft_ctx_with_value(ctx, &chain->keys[i], &chain->keys[i]);
            values++;
        } else if (kind == LAYER_CANCEL) {
            ctx = weft_ctx_with_cancel(ctx);
            cancels++;
        } else {
            ctx = weft_ctx_with_timeout(ctx, timeout);
            timers++;
        }
        ck_assert_ptr_nonnull(ctx);
        chain->ctx[i] = ctx;
        chain->kind[i] = kind;
        chain->count = i + 1;
    }
}

static void check_layer_values(layers *chain, weft_ctx *leaf) {
    for (int i = 0; i < chain->count; i++)
        if (chain->kind[i] == LAYER_VALUE)
            ck_assert_msg(weft_ctx_value(leaf, &chain->keys[i]) == &chain->keys[i],
                          "layer %d's value lost", i);
}

static void release_layers(layers *chain) {
    for (int i = chain->count - 1; i >= 0; i--) weft_ctx_release(chain->ctx[i]);
}

static const uint64_t layer_seeds[] = {1, 7, 2024, 99991, 31337};

START_TEST(test_random_layers_keep_values_after_cancel) {
    static layers chain;
    uint64_t seed = layer_seeds[_i];
    build_layers(&chain, seed, HOUR);
    weft_ctx *leaf = chain.ctx[chain.count - 1];
    assert_live(leaf);
    check_layer_values(&chain, leaf);
    int target;
    do target = (int)(test_random(&seed) % (uint64_t)chain.count);
    while (chain.kind[target] == LAYER_VALUE);
    weft_ctx_cancel(chain.ctx[target]);
    assert_ended(leaf, WEFT_ECANCELED);
    for (int i = 0; i < target; i++)
        if (chain.kind[i] != LAYER_VALUE) assert_live(chain.ctx[i]); /* above the cut */
    check_layer_values(&chain, leaf);
    release_layers(&chain);
}
END_TEST

START_TEST(test_random_layers_time_out_at_earliest_deadline) {
    static layers chain;
    build_layers(&chain, layer_seeds[_i], WEFT_MS(50));
    weft_ctx *leaf = chain.ctx[chain.count - 1];
    weft_time deadline = weft_ctx_deadline(leaf);
    for (int i = 0; i < chain.count; i++)
        if (chain.kind[i] == LAYER_TIMEOUT) {
            ck_assert(weft_ctx_deadline(chain.ctx[i]) == deadline); /* the first timer's */
            break;
        }
    check_layer_values(&chain, leaf);
    ck_assert_int_eq(wait_done(leaf), WEFT_ECLOSED);
    ck_assert(weft_now() >= deadline);
    assert_ended(leaf, WEFT_ETIMEDOUT);
    check_layer_values(&chain, leaf);
    release_layers(&chain);
}
END_TEST

/* ==== causes ============================================================ */

START_TEST(test_cause_is_zero_while_live) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    weft_ctx *timed = weft_ctx_with_timeout(ctx, HOUR);
    weft_ctx *valued = weft_ctx_with_value(timed, &key_one, &value_a);
    ck_assert_ptr_nonnull(valued);
    ck_assert_int_eq(weft_ctx_cause(ctx), 0);
    ck_assert_int_eq(weft_ctx_cause(timed), 0);
    ck_assert_int_eq(weft_ctx_cause(valued), 0);
    ck_assert_int_eq(weft_ctx_cause(weft_ctx_background()), 0);
    weft_ctx_release(valued);
    weft_ctx_release(timed);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_cancel_cause_sets_cause_and_ecanceled) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    weft_ctx_cancel_cause(ctx, 42);
    assert_ended(ctx, WEFT_ECANCELED);
    ck_assert_int_eq(weft_ctx_cause(ctx), 42);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_cancel_cause_reaches_existing_descendants) {
    weft_ctx *root = weft_ctx_with_cancel(NULL);
    weft_ctx *child = weft_ctx_with_cancel(root);
    weft_ctx *valued = weft_ctx_with_value(child, &key_one, &value_a);
    weft_ctx *timed = weft_ctx_with_timeout(valued, HOUR);
    ck_assert_ptr_nonnull(timed);
    weft_ctx_cancel_cause(root, 42);
    weft_ctx *below[] = {child, valued, timed};
    for (int i = 0; i < 3; i++) {
        assert_ended(below[i], WEFT_ECANCELED);
        ck_assert_int_eq(weft_ctx_cause(below[i]), 42);
    }
    for (int i = 2; i >= 0; i--) weft_ctx_release(below[i]);
    weft_ctx_release(root);
}
END_TEST

START_TEST(test_child_of_parent_canceled_with_cause_is_born_with_cause) {
    weft_ctx *root = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(root);
    weft_ctx_cancel_cause(root, 42);
    weft_ctx *children[] = {weft_ctx_with_cancel(root), weft_ctx_with_timeout(root, HOUR),
                            weft_ctx_with_value(root, &key_one, &value_a)};
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_nonnull(children[i]);
        assert_ended(children[i], WEFT_ECANCELED);
        ck_assert_int_eq(weft_ctx_cause(children[i]), 42);
    }
    for (int i = 2; i >= 0; i--) weft_ctx_release(children[i]);
    weft_ctx_release(root);
}
END_TEST

START_TEST(test_plain_cancel_cause_is_ecanceled) {
    weft_ctx *root = weft_ctx_with_cancel(NULL);
    weft_ctx *child = weft_ctx_with_cancel(root);
    ck_assert_ptr_nonnull(child);
    weft_ctx_cancel(root);
    ck_assert_int_eq(weft_ctx_cause(root), WEFT_ECANCELED);
    ck_assert_int_eq(weft_ctx_cause(child), WEFT_ECANCELED);
    weft_ctx_release(child);
    weft_ctx_release(root);
}
END_TEST

START_TEST(test_cancel_cause_zero_means_the_error) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    weft_ctx_cancel_cause(ctx, 0);
    assert_ended(ctx, WEFT_ECANCELED);
    ck_assert_int_eq(weft_ctx_cause(ctx), WEFT_ECANCELED);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_deadline_cause_is_etimedout) {
    weft_ctx *ctx = weft_ctx_with_timeout(NULL, WEFT_MS(5));
    weft_ctx *child = weft_ctx_with_value(ctx, &key_one, &value_a);
    ck_assert_ptr_nonnull(child);
    ck_assert_int_eq(wait_done(ctx), WEFT_ECLOSED);
    ck_assert_int_eq(weft_ctx_cause(ctx), WEFT_ETIMEDOUT);
    ck_assert_int_eq(weft_ctx_cause(child), WEFT_ETIMEDOUT);
    weft_ctx_release(child);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_first_cause_wins) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    weft_ctx_cancel_cause(ctx, 7);
    weft_ctx_cancel_cause(ctx, 8);
    weft_ctx_cancel(ctx);
    ck_assert_int_eq(weft_ctx_cause(ctx), 7);
    ck_assert_int_eq(weft_ctx_err(ctx), WEFT_ECANCELED);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_child_canceled_first_keeps_its_own_cause) {
    weft_ctx *root = weft_ctx_with_cancel(NULL);
    weft_ctx *child = weft_ctx_with_cancel(root);
    weft_ctx *grandchild = weft_ctx_with_cancel(child);
    ck_assert_ptr_nonnull(grandchild);
    weft_ctx_cancel_cause(child, 5);
    weft_ctx_cancel_cause(root, 6);
    ck_assert_int_eq(weft_ctx_cause(root), 6);
    ck_assert_int_eq(weft_ctx_cause(child), 5);
    ck_assert_int_eq(weft_ctx_cause(grandchild), 5);
    weft_ctx_release(grandchild);
    weft_ctx_release(child);
    weft_ctx_release(root);
}
END_TEST

/* Readers race one cancel_cause: once a reader sees the error, the cause
 * it reads next is the final one, and a cause is never seen without the
 * error (Go's TestCauseRace). */
typedef struct {
    weft_ctx *ctx, *child;
    atomic_int *start;
} cause_reader;

static void *cause_reader_main(void *arg) {
    cause_reader *reader = arg;
    while (!atomic_load(reader->start)) sched_yield();
    weft_time give_up = weft_deadline(WEFT_MS(WAIT_MS));
    for (;;) {
        int cause = weft_ctx_cause(reader->child);
        int err = weft_ctx_err(reader->child);
        WORKER_EXPECT(cause == 0 || cause == 42);
        if (cause != 0) WORKER_EXPECT(err == WEFT_ECANCELED);
        err = weft_ctx_err(reader->ctx);
        cause = weft_ctx_cause(reader->ctx);
        if (err != 0) {
            WORKER_EXPECT(err == WEFT_ECANCELED);
            WORKER_EXPECT(cause == 42);
            break;
        }
        if (weft_now() >= give_up) {
            worker_fail(__FILE__, __LINE__, "the cancel was never seen");
            break;
        }
    }
    return NULL;
}

START_TEST(test_cause_is_never_seen_without_error) {
    long rounds = scaled(100);
    for (long round = 0; round < rounds; round++) {
        atomic_int start = 0;
        weft_ctx *ctx = weft_ctx_with_cancel(NULL);
        cause_reader reader = {ctx, weft_ctx_with_cancel(ctx), &start};
        ck_assert_ptr_nonnull(reader.child);
        pthread_t threads[2];
        for (int i = 0; i < 2; i++) start_thread(&threads[i], cause_reader_main, &reader);
        atomic_store(&start, 1);
        weft_ctx_cancel_cause(ctx, 42);
        for (int i = 0; i < 2; i++) join_thread(threads[i]);
        check_worker_failures();
        weft_ctx_release(reader.child);
        weft_ctx_release(ctx);
    }
}
END_TEST

/* ==== after_func ======================================================== */

typedef struct {
    weft_ctx *ctx;      /* checked by fn when not NULL (the test holds it) */
    atomic_int started; /* fn calls begun */
    atomic_int runs;    /* fn calls finished */
    atomic_int err_at_run;
    atomic_llong ran_at; /* weft_now() when fn began */
    atomic_int hold;     /* while 1, fn waits (bounded) before it finishes */
    pthread_t thread;    /* the thread fn ran on */
} after_probe;

static void after_probe_fn(void *arg) {
    after_probe *probe = arg;
    probe->thread = pthread_self();
    atomic_store(&probe->ran_at, weft_now());
    if (probe->ctx) atomic_store(&probe->err_at_run, weft_ctx_err(probe->ctx));
    atomic_fetch_add(&probe->started, 1);
    weft_time give_up = weft_deadline(WEFT_MS(WAIT_MS));
    while (atomic_load(&probe->hold)) {
        if (weft_now() >= give_up) {
            worker_fail(__FILE__, __LINE__, "after-function held too long");
            break;
        }
        sleep_ms(1);
    }
    atomic_fetch_add(&probe->runs, 1);
}

START_TEST(test_after_func_runs_once_after_cancel) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    after_probe probe = {.ctx = ctx};
    weft_ctx_after *after = weft_ctx_after_func(ctx, after_probe_fn, &probe);
    ck_assert_ptr_nonnull(after);
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&probe.started), 0); /* not before the cancel */
    weft_ctx_cancel(ctx);
    ck_assert_msg(int_becomes(&probe.runs, 1), "the after-function never ran");
    ck_assert_int_eq(atomic_load(&probe.err_at_run), WEFT_ECANCELED);
    weft_ctx_cancel(ctx);
    weft_ctx_cancel_cause(ctx, 3);
    ck_assert(goroutines_become(0));
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&probe.started), 1); /* exactly once */
    ck_assert(!weft_ctx_after_stop(after));
    weft_ctx_release(ctx);
    check_worker_failures();
}
END_TEST

/* fn blocks on a lock the canceller holds across weft_ctx_cancel: if the
 * canceller ran fn, or waited for it, fn could never take the lock. */
static pthread_mutex_t canceller_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    atomic_int started, finished;
    pthread_t thread;
} async_probe;

static void lock_blocked_fn(void *arg) {
    async_probe *probe = arg;
    probe->thread = pthread_self();
    atomic_store(&probe->started, 1);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    if (pthread_mutex_timedlock(&canceller_lock, &until) == 0)
        pthread_mutex_unlock(&canceller_lock);
    else
        worker_fail(__FILE__, __LINE__, "the canceller kept its lock: cancel waited for fn");
    atomic_store(&probe->finished, 1);
}

START_TEST(test_after_func_runs_asynchronously_on_another_thread) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    async_probe probe = {0};
    weft_ctx_after *after = weft_ctx_after_func(ctx, lock_blocked_fn, &probe);
    ck_assert_ptr_nonnull(after);
    pthread_mutex_lock(&canceller_lock);
    weft_ctx_cancel(ctx); /* returns without running or awaiting fn */
    bool started = int_becomes(&probe.started, 1);
    int finished_while_held = atomic_load(&probe.finished);
    pthread_mutex_unlock(&canceller_lock);
    ck_assert_msg(started, "the after-function did not start while the canceller held its lock");
    ck_assert_int_eq(finished_while_held, 0); /* it was waiting for our lock */
    ck_assert(int_becomes(&probe.finished, 1));
    check_worker_failures();
    ck_assert(!pthread_equal(probe.thread, pthread_self()));
    ck_assert(!weft_ctx_after_stop(after));
    weft_ctx_release(ctx);
    ck_assert(goroutines_become(0));
}
END_TEST

START_TEST(test_after_func_stopped_before_cancel_never_runs) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    after_probe probe = {0};
    weft_ctx_after *after = weft_ctx_after_func(ctx, after_probe_fn, &probe);
    ck_assert_ptr_nonnull(after);
    ck_assert(weft_ctx_after_stop(after));
    weft_ctx_cancel(ctx);
    sleep_ms(50);
    ck_assert(goroutines_become(0));
    ck_assert_int_eq(atomic_load(&probe.started), 0);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_after_func_stop_after_start_returns_false) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    after_probe probe = {.hold = 1};
    weft_ctx_after *after = weft_ctx_after_func(ctx, after_probe_fn, &probe);
    ck_assert_ptr_nonnull(after);
    weft_ctx_cancel(ctx);
    ck_assert(int_becomes(&probe.started, 1));
    ck_assert(!weft_ctx_after_stop(after)); /* fn is running: too late */
    atomic_store(&probe.hold, 0);
    ck_assert(int_becomes(&probe.runs, 1));
    ck_assert(goroutines_become(0));
    weft_ctx_release(ctx);
    check_worker_failures();
}
END_TEST

START_TEST(test_after_func_on_finished_context_runs_soon) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    weft_ctx_cancel(ctx);
    after_probe probe = {.ctx = ctx};
    weft_time registered = weft_now();
    weft_ctx_after *after = weft_ctx_after_func(ctx, after_probe_fn, &probe);
    ck_assert_ptr_nonnull(after);
    ck_assert_msg(int_becomes(&probe.runs, 1), "no run for an already-canceled context");
    ck_assert_msg(atomic_load(&probe.ran_at) - registered < WEFT_SEC(2), "ran %lld ms late",
                  (long long)((atomic_load(&probe.ran_at) - registered) / 1000000));
    ck_assert_int_eq(atomic_load(&probe.err_at_run), WEFT_ECANCELED);
    ck_assert(!weft_ctx_after_stop(after));
    ck_assert(goroutines_become(0));
    ck_assert_int_eq(atomic_load(&probe.started), 1);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_after_func_runs_when_deadline_passes) {
    weft_ctx *ctx = weft_ctx_with_timeout(NULL, WEFT_MS(20));
    ck_assert_ptr_nonnull(ctx);
    weft_time deadline = weft_ctx_deadline(ctx);
    after_probe probe = {.ctx = ctx};
    weft_ctx_after *after = weft_ctx_after_func(ctx, after_probe_fn, &probe);
    ck_assert_ptr_nonnull(after);
    ck_assert(int_becomes(&probe.runs, 1));
    ck_assert(atomic_load(&probe.ran_at) >= deadline);
    ck_assert_int_eq(atomic_load(&probe.err_at_run), WEFT_ETIMEDOUT);
    ck_assert(!weft_ctx_after_stop(after));
    ck_assert(goroutines_become(0));
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_after_func_on_uncancelable_context_never_runs) {
    weft_ctx *cancelable = weft_ctx_with_cancel(NULL);
    weft_ctx *valued = weft_ctx_with_value(NULL, &key_one, &value_a);
    weft_ctx *detached = weft_ctx_without_cancel(cancelable);
    ck_assert_ptr_nonnull(detached);
    weft_ctx *never[] = {NULL, weft_ctx_background(), valued, detached};
    after_probe probe = {0};
    weft_ctx_after *afters[4];
    for (int i = 0; i < 4; i++) {
        afters[i] = weft_ctx_after_func(never[i], after_probe_fn, &probe);
        ck_assert_ptr_nonnull(afters[i]);
    }
    weft_ctx_cancel(cancelable); /* not detached's: it stays uncanceled */
    sleep_ms(50);
    ck_assert(goroutines_become(0));
    ck_assert_int_eq(atomic_load(&probe.started), 0);
    for (int i = 0; i < 4; i++) ck_assert(weft_ctx_after_stop(afters[i]));
    weft_ctx_release(detached);
    weft_ctx_release(valued);
    weft_ctx_release(cancelable);
}
END_TEST

enum { MANY_AFTERS = 100 };

typedef struct {
    weft_ctx *ctx;
    atomic_int *start;
} racing_canceller;

static void *racing_cancel_main(void *arg) {
    racing_canceller *canceller = arg;
    while (!atomic_load(canceller->start)) sched_yield();
    weft_ctx_cancel(canceller->ctx);
    return NULL;
}

START_TEST(test_many_after_funcs_each_run_once) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    static after_probe probes[MANY_AFTERS];
    weft_ctx_after *afters[MANY_AFTERS];
    memset(probes, 0, sizeof probes);
    for (int i = 0; i < MANY_AFTERS; i++) {
        afters[i] = weft_ctx_after_func(ctx, after_probe_fn, &probes[i]);
        ck_assert_ptr_nonnull(afters[i]);
    }
    /* two cancels at once: still one run each */
    atomic_int start = 0;
    racing_canceller canceller = {ctx, &start};
    pthread_t thread;
    start_thread(&thread, racing_cancel_main, &canceller);
    atomic_store(&start, 1);
    weft_ctx_cancel(ctx);
    join_thread(thread);
    for (int i = 0; i < MANY_AFTERS; i++)
        ck_assert_msg(int_becomes(&probes[i].runs, 1), "after-function %d never ran", i);
    ck_assert(goroutines_become(0));
    sleep_ms(SETTLE_MS);
    for (int i = 0; i < MANY_AFTERS; i++) {
        ck_assert_int_eq(atomic_load(&probes[i].started), 1);
        ck_assert(!weft_ctx_after_stop(afters[i]));
    }
    weft_ctx_release(ctx);
}
END_TEST

/* stop and cancel race: fn runs exactly when stop reports it did not
 * prevent it. */
static atomic_int raced_runs;

static void count_raced_run(void *arg) {
    (void)arg;
    atomic_fetch_add(&raced_runs, 1);
}

START_TEST(test_after_func_stop_racing_cancel_runs_fn_iff_stop_fails) {
    long rounds = scaled(300);
    int expected = 0;
    uint64_t seed = 77;
    atomic_store(&raced_runs, 0);
    for (long round = 0; round < rounds; round++) {
        /* a random head start for the canceller, so that either side wins */
        int jitter = (int)(test_random(&seed) % 20000);
        atomic_int start = 0;
        racing_canceller canceller = {weft_ctx_with_cancel(NULL), &start};
        ck_assert_ptr_nonnull(canceller.ctx);
        weft_ctx_after *after = weft_ctx_after_func(canceller.ctx, count_raced_run, NULL);
        ck_assert_ptr_nonnull(after);
        pthread_t thread;
        start_thread(&thread, racing_cancel_main, &canceller);
        atomic_store(&start, 1);
        for (volatile int spin = 0; spin < jitter; spin++) {}
        if (!weft_ctx_after_stop(after)) expected++;
        join_thread(thread);
        weft_ctx_release(canceller.ctx);
    }
    ck_assert_msg(int_becomes(&raced_runs, expected), "%d runs for %d failed stops",
                  atomic_load(&raced_runs), expected);
    ck_assert(goroutines_become(0));
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&raced_runs), expected);
}
END_TEST

START_TEST(test_after_func_registration_keeps_released_context_linked) {
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    weft_ctx *ctx = weft_ctx_with_cancel(parent);
    ck_assert_ptr_nonnull(ctx);
    after_probe probe = {0}; /* fn must not touch ctx: it may be gone once fn starts */
    weft_ctx_after *after = weft_ctx_after_func(ctx, after_probe_fn, &probe);
    ck_assert_ptr_nonnull(after);
    weft_ctx_release(ctx); /* the owner's only reference; the registration holds one */
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&probe.started), 0); /* release is not cancel */
    weft_ctx_cancel(parent);                          /* still reaches ctx */
    ck_assert_msg(int_becomes(&probe.runs, 1), "the parent's cancel did not reach ctx");
    ck_assert(goroutines_become(0));        /* fn's goroutine is gone, and with it ctx */
    ck_assert(!weft_ctx_after_stop(after)); /* still owed, and must not touch ctx */
    weft_ctx_release(parent);
}
END_TEST

START_TEST(test_after_func_stop_releases_the_context) {
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    weft_ctx *ctx = weft_ctx_with_timeout(parent, HOUR);
    ck_assert_ptr_nonnull(ctx);
    size_t pending = weft__timer_pending();
    after_probe probe = {0};
    weft_ctx_after *after = weft_ctx_after_func(ctx, after_probe_fn, &probe);
    ck_assert_ptr_nonnull(after);
    weft_ctx_release(ctx);
    ck_assert(weft_ctx_after_stop(after)); /* the last reference: ctx is freed */
    ck_assert_uint_eq(weft__timer_pending(), pending - 1);
    weft_ctx_cancel(parent);
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&probe.started), 0);
    weft_ctx_release(parent);
}
END_TEST

/* ==== lifetime ========================================================== */

typedef struct {
    weft_ctx *ctx;      /* retained for the goroutine, released by it */
    atomic_int stage;   /* 1: owner released; 2: checked live; 3: saw the cancel */
    atomic_int release; /* 1: the goroutine may drop its reference */
} holder;

static void hold_context(void *arg) {
    holder *held = arg;
    weft_time give_up = weft_deadline(WEFT_MS(WAIT_MS));
    while (atomic_load(&held->stage) < 1 && weft_now() < give_up) sleep_ms(1);
    /* the owner has released its reference; ours keeps ctx whole */
    WORKER_EXPECT(weft_ctx_err(held->ctx) == 0);
    WORKER_EXPECT(weft_chan_try_recv(weft_ctx_done(held->ctx), NULL) == WEFT_EAGAIN);
    WORKER_EXPECT(weft_ctx_value(held->ctx, &key_one) == &value_a);
    atomic_store(&held->stage, 2);
    WORKER_EXPECT(weft_chan_recv_until(weft_ctx_done(held->ctx), NULL,
                                       weft_deadline(WEFT_MS(WAIT_MS))) == WEFT_ECLOSED);
    WORKER_EXPECT(weft_ctx_err(held->ctx) == WEFT_ECANCELED);
    WORKER_EXPECT(weft_ctx_value(held->ctx, &key_one) == &value_a);
    atomic_store(&held->stage, 3);
    weft_ctx_release(held->ctx);
}

START_TEST(test_retained_context_outlives_owner_release) {
    weft_ctx *root = weft_ctx_with_cancel(NULL);
    weft_ctx *valued = weft_ctx_with_value(root, &key_one, &value_a);
    holder held = {.ctx = weft_ctx_with_cancel(valued)};
    ck_assert_ptr_nonnull(held.ctx);
    weft_ctx_release(valued);  /* the child keeps it */
    weft_ctx_retain(held.ctx); /* the goroutine's reference */
    ck_assert_int_eq(weft_go(hold_context, &held), 0);
    weft_ctx_release(held.ctx); /* the owner's, without cancel */
    atomic_store(&held.stage, 1);
    ck_assert(int_becomes(&held.stage, 2));
    weft_ctx_cancel(root); /* still linked under root */
    ck_assert(int_becomes(&held.stage, 3));
    ck_assert(goroutines_become(0));
    check_worker_failures();
    weft_ctx_release(root);
}
END_TEST

START_TEST(test_release_does_not_cancel_context_others_hold) {
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    weft_ctx *ctx = weft_ctx_with_timeout(parent, HOUR);
    ck_assert_ptr_nonnull(ctx);
    weft_ctx_retain(ctx);
    weft_ctx_retain(ctx);
    weft_ctx_release(ctx);
    weft_ctx_release(ctx);
    assert_live(ctx); /* one reference left */
    weft_ctx_cancel(parent);
    assert_ended(ctx, WEFT_ECANCELED);
    weft_ctx_release(ctx);
    weft_ctx_release(parent);
}
END_TEST

START_TEST(test_children_keep_released_parents_alive) {
    weft_ctx *root = weft_ctx_with_cancel(NULL);
    weft_ctx *valued = weft_ctx_with_value(root, &key_one, &value_a);
    weft_ctx *timed = weft_ctx_with_timeout(valued, HOUR);
    weft_ctx *leaf = weft_ctx_with_cancel(timed);
    ck_assert_ptr_nonnull(leaf);
    weft_time deadline = weft_ctx_deadline(timed);
    weft_ctx_release(timed);
    weft_ctx_release(valued);
    weft_ctx_release(root); /* only leaf's references hold the chain now */
    assert_live(leaf);
    ck_assert_ptr_eq(weft_ctx_value(leaf, &key_one), &value_a);
    ck_assert(weft_ctx_deadline(leaf) == deadline);
    weft_ctx_cancel(leaf);
    assert_ended(leaf, WEFT_ECANCELED);
    ck_assert_ptr_eq(weft_ctx_value(leaf, &key_one), &value_a);
    weft_ctx_release(leaf); /* frees the whole chain (the leak check sees it) */
}
END_TEST

START_TEST(test_released_child_is_unlinked_before_parent_cancel) {
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    weft_ctx *valued = weft_ctx_with_value(parent, &key_one, &value_a);
    weft_ctx *released[] = {weft_ctx_with_cancel(parent), weft_ctx_with_timeout(parent, HOUR),
                            weft_ctx_with_cancel(valued) /* a cancelable under a value */, valued};
    weft_ctx *kept = weft_ctx_with_cancel(parent);
    ck_assert_ptr_nonnull(kept);
    for (int i = 0; i < 4; i++) ck_assert_ptr_nonnull(released[i]);
    for (int i = 0; i < 4; i++) weft_ctx_release(released[i]);
    /* the parent's cancel must not touch them (AddressSanitizer watches) */
    weft_ctx_cancel(parent);
    assert_ended(parent, WEFT_ECANCELED);
    assert_ended(kept, WEFT_ECANCELED);
    weft_ctx_release(kept);
    weft_ctx_release(parent);
}
END_TEST

/* A long-lived parent and many short-lived children: the heap in use and
 * the timer heap end where they began, and the parent still cancels
 * quickly. */
enum short_lived_kind {
    CHILD_RELEASED,
    CHILD_CANCELED,
    CHILD_DEADLINE_RELEASED,
    CHILD_VALUE_AND_DETACHED,
    AFTER_FUNC_STOPPED,
};

static atomic_int short_lived_runs;

static void count_short_lived_run(void *arg) {
    (void)arg;
    atomic_fetch_add(&short_lived_runs, 1);
}

/* One short-lived child of parent, made and dropped. Returns false if a
 * step failed. No ck_assert here: in Check's fork mode every passing
 * assertion writes to a pipe, which would dominate a loop this hot. */
static bool make_and_drop(weft_ctx *parent, enum short_lived_kind kind) {
    weft_ctx *child = NULL;
    switch (kind) {
    case CHILD_RELEASED: child = weft_ctx_with_cancel(parent); break;
    case CHILD_CANCELED:
        child = weft_ctx_with_cancel(parent);
        weft_ctx_cancel(child);
        break;
    case CHILD_DEADLINE_RELEASED: child = weft_ctx_with_timeout(parent, HOUR); break;
    case CHILD_VALUE_AND_DETACHED: {
        weft_ctx *valued = weft_ctx_with_value(parent, &key_one, &value_a);
        if (!valued) return false;
        child = weft_ctx_without_cancel(valued);
        weft_ctx_release(valued);
        break;
    }
    case AFTER_FUNC_STOPPED: {
        weft_ctx_after *after = weft_ctx_after_func(parent, count_short_lived_run, NULL);
        return after && weft_ctx_after_stop(after);
    }
    }
    if (!child) return false;
    weft_ctx_release(child);
    return true;
}

static void check_short_lived_do_not_accumulate(enum short_lived_kind kind) {
    long count = scaled(100000);
    atomic_store(&short_lived_runs, 0);
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(parent);
    long failed = 0;
    for (int i = 0; i < 1000; i++) failed += !make_and_drop(parent, kind); /* warm up caches */
    long long heap_before = heap_in_use();
    size_t timers_before = weft__timer_pending();
    for (long i = 0; i < count; i++) failed += !make_and_drop(parent, kind);
    long long growth = heap_in_use() - heap_before;
    ck_assert_msg(failed == 0, "%ld children could not be made (or stopped)", failed);
    ck_assert_msg(growth <= count * 8 + 256 * 1024,
                  "the heap grew by %lld bytes over %ld short-lived children", growth, count);
    ck_assert_uint_eq(weft__timer_pending(), timers_before);
    assert_live(parent);
    weft_time started = weft_now();
    weft_ctx_cancel(parent);
    weft_time took = weft_now() - started;
    assert_ended(parent, WEFT_ECANCELED);
    ck_assert_msg(took < WEFT_SEC(1), "cancel took %lld ms", (long long)(took / 1000000));
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&short_lived_runs), 0);
    weft_ctx_release(parent);
}

START_TEST(test_released_children_do_not_accumulate) {
    check_short_lived_do_not_accumulate(CHILD_RELEASED);
}
END_TEST

START_TEST(test_canceled_children_do_not_accumulate) {
    check_short_lived_do_not_accumulate(CHILD_CANCELED);
}
END_TEST

START_TEST(test_released_deadline_children_leave_parent_and_timer_heap) {
    check_short_lived_do_not_accumulate(CHILD_DEADLINE_RELEASED);
}
END_TEST

START_TEST(test_released_value_and_without_cancel_children_do_not_accumulate) {
    check_short_lived_do_not_accumulate(CHILD_VALUE_AND_DETACHED);
}
END_TEST

START_TEST(test_stopped_after_funcs_do_not_accumulate) {
    check_short_lived_do_not_accumulate(AFTER_FUNC_STOPPED);
}
END_TEST

/* ==== concurrent trees ================================================== */

enum { TREE_NODES = 100, TREE_THREADS = 4 };
enum node_action { NODE_KEEP, NODE_CANCEL, NODE_RELEASE, NODE_CANCEL_RELEASE };

typedef struct {
    weft_ctx *ctx;
    bool cancelable;
    enum node_action action; /* what a worker does to it */
} tree_node;

static int tree_key;

/* A random tree rooted at nodes[0] (a cancel context over background):
 * each node hangs under a random earlier node, or under the one just
 * made, so both bushy and deep shapes appear. */
static void build_tree(tree_node *nodes, uint64_t *seed) {
    nodes[0] = (tree_node){weft_ctx_with_cancel(NULL), true, NODE_KEEP};
    ck_assert_ptr_nonnull(nodes[0].ctx);
    for (int i = 1; i < TREE_NODES; i++) {
        int parent = test_random(seed) % 2 ? (int)(test_random(seed) % (uint64_t)i) : i - 1;
        weft_ctx *above = nodes[parent].ctx;
        switch (test_random(seed) % 4) {
        case 0:
        case 1: nodes[i] = (tree_node){weft_ctx_with_cancel(above), true, NODE_KEEP}; break;
        case 2: nodes[i] = (tree_node){weft_ctx_with_timeout(above, HOUR), true, NODE_KEEP}; break;
        default:
            nodes[i] =
                (tree_node){weft_ctx_with_value(above, &tree_key, &nodes[i]), false, NODE_KEEP};
            break;
        }
        ck_assert_ptr_nonnull(nodes[i].ctx);
    }
}

typedef struct {
    tree_node *nodes;
    const int *order; /* this worker's share of a shuffled order */
    int count;
    pthread_barrier_t *start;
} tree_worker;

static void *tree_worker_main(void *arg) {
    tree_worker *worker = arg;
    pthread_barrier_wait(worker->start);
    for (int j = 0; j < worker->count; j++) {
        tree_node *node = &worker->nodes[worker->order[j]];
        if (node->action == NODE_CANCEL || node->action == NODE_CANCEL_RELEASE)
            weft_ctx_cancel(node->ctx);
        if (node->action == NODE_RELEASE || node->action == NODE_CANCEL_RELEASE)
            weft_ctx_release(node->ctx);
    }
    return NULL;
}

/* Run TREE_THREADS workers over a shuffled order of all nodes; the test
 * thread passes the start barrier too and then calls between(). */
static void run_tree_workers(tree_node *nodes, uint64_t *seed, void (*between)(tree_node *)) {
    int order[TREE_NODES];
    for (int i = 0; i < TREE_NODES; i++) order[i] = i;
    shuffle(order, TREE_NODES, seed);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, TREE_THREADS + 1);
    tree_worker workers[TREE_THREADS];
    pthread_t threads[TREE_THREADS];
    int share = TREE_NODES / TREE_THREADS;
    for (int t = 0; t < TREE_THREADS; t++) {
        int begin = t * share, end = t == TREE_THREADS - 1 ? TREE_NODES : begin + share;
        workers[t] = (tree_worker){nodes, order + begin, end - begin, &start};
        start_thread(&threads[t], tree_worker_main, &workers[t]);
    }
    pthread_barrier_wait(&start);
    if (between) between(nodes);
    for (int t = 0; t < TREE_THREADS; t++) join_thread(threads[t]);
    pthread_barrier_destroy(&start);
}

static void release_kept_nodes(tree_node *nodes, uint64_t *seed) {
    int order[TREE_NODES];
    for (int i = 0; i < TREE_NODES; i++) order[i] = i;
    shuffle(order, TREE_NODES, seed);
    for (int j = 0; j < TREE_NODES; j++) {
        tree_node *node = &nodes[order[j]];
        if (node->action == NODE_KEEP || node->action == NODE_CANCEL) weft_ctx_release(node->ctx);
    }
}

START_TEST(test_concurrent_cancels_of_random_tree_end_every_node) {
    uint64_t seed = 0xC0FFEE;
    long rounds = scaled(40);
    for (long round = 0; round < rounds; round++) {
        tree_node nodes[TREE_NODES];
        build_tree(nodes, &seed);
        for (int i = 0; i < TREE_NODES; i++)
            if (nodes[i].cancelable) nodes[i].action = NODE_CANCEL;
        run_tree_workers(nodes, &seed, NULL);
        for (int i = 0; i < TREE_NODES; i++) {
            ck_assert_msg(ended_with(nodes[i].ctx, WEFT_ECANCELED),
                          "round %ld: node %d err %d, not ended", round, i,
                          weft_ctx_err(nodes[i].ctx));
            ck_assert_int_eq(weft_ctx_cause(nodes[i].ctx), WEFT_ECANCELED);
        }
        release_kept_nodes(nodes, &seed);
    }
}
END_TEST

static void cancel_root(tree_node *nodes) { weft_ctx_cancel(nodes[0].ctx); }

START_TEST(test_root_cancel_racing_leaf_cancel_and_release_ends_kept_nodes) {
    uint64_t seed = 0xBADC0DE;
    long rounds = scaled(40);
    for (long round = 0; round < rounds; round++) {
        tree_node nodes[TREE_NODES];
        build_tree(nodes, &seed);
        for (int i = 1; i < TREE_NODES; i++) {
            enum node_action action = (enum node_action)(test_random(&seed) % 4);
            if (!nodes[i].cancelable && action == NODE_CANCEL) action = NODE_KEEP;
            if (!nodes[i].cancelable && action == NODE_CANCEL_RELEASE) action = NODE_RELEASE;
            nodes[i].action = action;
        }
        run_tree_workers(nodes, &seed, cancel_root);
        for (int i = 0; i < TREE_NODES; i++) {
            if (nodes[i].action != NODE_KEEP && nodes[i].action != NODE_CANCEL) continue;
            ck_assert_msg(ended_with(nodes[i].ctx, WEFT_ECANCELED),
                          "round %ld: kept node %d err %d, not ended", round, i,
                          weft_ctx_err(nodes[i].ctx));
        }
        release_kept_nodes(nodes, &seed);
    }
}
END_TEST

/* ==== allocation failure ================================================ */

enum { CONSTRUCT_CANCEL, CONSTRUCT_TIMEOUT, CONSTRUCT_VALUE, CONSTRUCT_KINDS };

static weft_ctx *construct(int kind, weft_ctx *parent) {
    switch (kind) {
    case CONSTRUCT_CANCEL: return weft_ctx_with_cancel(parent);
    case CONSTRUCT_TIMEOUT: return weft_ctx_with_timeout(parent, HOUR);
    default: return weft_ctx_with_value(parent, &key_one, &value_a);
    }
}

START_TEST(test_constructors_report_enomem_and_leave_parent_usable) {
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(parent);
    size_t pending = weft__timer_pending();
    for (int kind = 0; kind < CONSTRUCT_KINDS; kind++) {
        weft_ctx *child = NULL;
        long failures = 0;
        for (long k = 1; k <= 64 && !child; k++) {
            weft__alloc_fail_from(k);
            errno = 0;
            child = construct(kind, parent);
            int saved = errno;
            weft__alloc_fail_from(0);
            if (!child) {
                failures++;
                /* a timer thread that cannot start for want of memory may say EAGAIN */
                bool expected = saved == ENOMEM || (kind == CONSTRUCT_TIMEOUT && saved == EAGAIN);
                ck_assert_msg(expected, "kind %d, allocation %ld failing: errno %d", kind, k,
                              saved);
            }
        }
        ck_assert_msg(child, "kind %d never succeeded", kind);
        ck_assert_msg(failures > 0, "kind %d allocated nothing", kind);
        ck_assert_uint_eq(weft__timer_pending(), pending + (kind == CONSTRUCT_TIMEOUT));
        assert_live(child);
        weft_ctx_release(child);
        ck_assert_uint_eq(weft__timer_pending(), pending);
    }
    assert_live(parent);
    weft_ctx *child = weft_ctx_with_cancel(parent);
    ck_assert_ptr_nonnull(child);
    weft_ctx_cancel(parent);
    assert_ended(child, WEFT_ECANCELED);
    weft_ctx_release(child);
    weft_ctx_release(parent);
}
END_TEST

START_TEST(test_after_func_reports_enomem) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    after_probe probe = {0};
    weft__alloc_fail_from(1);
    errno = 0;
    weft_ctx_after *after = weft_ctx_after_func(ctx, after_probe_fn, &probe);
    int saved = errno;
    weft__alloc_fail_from(0);
    ck_assert_ptr_null(after);
    ck_assert_int_eq(saved, ENOMEM);
    after = weft_ctx_after_func(ctx, after_probe_fn, &probe);
    ck_assert_ptr_nonnull(after);
    weft_ctx_cancel(ctx);
    ck_assert(int_becomes(&probe.runs, 1));
    ck_assert(goroutines_become(0));
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&probe.started), 1); /* the failed one never runs */
    ck_assert(!weft_ctx_after_stop(after));
    weft_ctx_release(ctx);
}
END_TEST

/* ==== runner ============================================================ */

static Suite *ctx_suite(void) {
    Suite *suite = suite_create("ctx");
    TCase *tc;

    tc = new_case(suite, "background");
    tcase_add_test(tc, test_background_is_never_done);
    tcase_add_test(tc, test_background_ignores_retain_release_and_cancel);
    tcase_add_test(tc, test_null_context_means_background);
    tcase_add_test(tc, test_null_parent_means_background);
    tcase_add_test(tc, test_value_over_background_cannot_be_canceled);

    tc = new_case(suite, "cancel");
    tcase_add_test(tc, test_with_cancel_is_live_until_canceled);
    tcase_add_test(tc, test_done_is_one_signal_channel_per_context);
    tcase_add_test(tc, test_cancel_is_idempotent);
    tcase_add_test(tc, test_cancel_wakes_goroutine_blocked_on_done);
    tcase_add_test(tc, test_cancel_wakes_select_on_done);

    tc = new_case(suite, "propagation");
    tcase_add_test(tc, test_cancel_reaches_cancel_child);
    tcase_add_test(tc, test_value_child_shares_parent_done_error_and_deadline);
    tcase_add_test(tc, test_cancel_reaches_deadline_child);
    tcase_add_test(tc, test_cancel_reaches_through_value_cancel_value_chain);
    tcase_add_test(tc, test_cancel_reaches_grandchild);
    tcase_add_test(tc, test_without_cancel_child_is_not_canceled_but_sees_values);
    tcase_add_test(tc, test_child_cancel_leaves_parent_live);
    tcase_add_test(tc, test_child_of_canceled_parent_is_born_canceled);
    tcase_add_test(tc, test_child_of_timed_out_parent_is_born_timed_out);
    tcase_add_test(tc, test_parent_waiter_canceling_child_does_not_deadlock);

    tc = new_case(suite, "deadline");
    tcase_add_test(tc, test_timeout_ends_with_etimedout_never_early);
    tcase_add_test(tc, test_deadline_is_reported_as_given);
    tcase_add_test(tc, test_cancel_before_deadline_gives_ecanceled_forever);
    tcase_add_test(tc, test_cancel_after_deadline_keeps_etimedout);
    tcase_add_test(tc, test_past_deadline_gives_child_born_timed_out);
    tcase_add_test(tc, test_deadline_is_earliest_in_chain);
    tcase_add_test(tc, test_child_with_later_deadline_ends_with_parent);
    tcase_add_test(tc, test_child_with_earlier_deadline_ends_alone);
    tcase_add_test(tc, test_many_deadlines_end_in_time_never_early);

    tc = new_case(suite, "values");
    tcase_add_test(tc, test_value_nearest_wins_when_key_is_shadowed);
    tcase_add_test(tc, test_value_unknown_key_is_null);
    tcase_add_test(tc, test_value_keys_compare_by_pointer);
    tcase_add_test(tc, test_value_null_shadows_outer_value);
    tcase_add_test(tc, test_values_visible_through_every_kind_of_child);
    tcase_add_test(tc, test_values_readable_after_cancel);
    tcase_add_loop_test(tc, test_random_layers_keep_values_after_cancel, 0, 5);
    tcase_add_loop_test(tc, test_random_layers_time_out_at_earliest_deadline, 0, 2);

    tc = new_case(suite, "causes");
    tcase_add_test(tc, test_cause_is_zero_while_live);
    tcase_add_test(tc, test_cancel_cause_sets_cause_and_ecanceled);
    tcase_add_test(tc, test_cancel_cause_reaches_existing_descendants);
    tcase_add_test(tc, test_child_of_parent_canceled_with_cause_is_born_with_cause);
    tcase_add_test(tc, test_plain_cancel_cause_is_ecanceled);
    tcase_add_test(tc, test_cancel_cause_zero_means_the_error);
    tcase_add_test(tc, test_deadline_cause_is_etimedout);
    tcase_add_test(tc, test_first_cause_wins);
    tcase_add_test(tc, test_child_canceled_first_keeps_its_own_cause);
    tcase_add_test(tc, test_cause_is_never_seen_without_error);

    tc = new_case(suite, "after_func");
    tcase_add_test(tc, test_after_func_runs_once_after_cancel);
    tcase_add_test(tc, test_after_func_runs_asynchronously_on_another_thread);
    tcase_add_test(tc, test_after_func_stopped_before_cancel_never_runs);
    tcase_add_test(tc, test_after_func_stop_after_start_returns_false);
    tcase_add_test(tc, test_after_func_on_finished_context_runs_soon);
    tcase_add_test(tc, test_after_func_runs_when_deadline_passes);
    tcase_add_test(tc, test_after_func_on_uncancelable_context_never_runs);
    tcase_add_test(tc, test_many_after_funcs_each_run_once);
    tcase_add_test(tc, test_after_func_stop_racing_cancel_runs_fn_iff_stop_fails);
    tcase_add_test(tc, test_after_func_registration_keeps_released_context_linked);
    tcase_add_test(tc, test_after_func_stop_releases_the_context);

    tc = new_case(suite, "lifetime");
    tcase_add_test(tc, test_retained_context_outlives_owner_release);
    tcase_add_test(tc, test_release_does_not_cancel_context_others_hold);
    tcase_add_test(tc, test_children_keep_released_parents_alive);
    tcase_add_test(tc, test_released_child_is_unlinked_before_parent_cancel);
    tcase_add_test(tc, test_released_children_do_not_accumulate);
    tcase_add_test(tc, test_canceled_children_do_not_accumulate);
    tcase_add_test(tc, test_released_deadline_children_leave_parent_and_timer_heap);
    tcase_add_test(tc, test_released_value_and_without_cancel_children_do_not_accumulate);
    tcase_add_test(tc, test_stopped_after_funcs_do_not_accumulate);

    tc = new_case(suite, "tree");
    tcase_add_test(tc, test_concurrent_cancels_of_random_tree_end_every_node);
    tcase_add_test(tc, test_root_cancel_racing_leaf_cancel_and_release_ends_kept_nodes);

    tc = new_case(suite, "alloc");
    tcase_add_test(tc, test_constructors_report_enomem_and_leave_parent_usable);
    tcase_add_test(tc, test_after_func_reports_enomem);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(ctx_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
