/* Select tests, written from the contract in include/weft/select.h and
 * DESIGN.md ("Select"). The behaviours ported from Go's runtime/chan_test.go
 * and crossbeam-channel's tests/select.rs are named after their originals
 * in the comments. Threads are plain pthreads; heavy tests honour
 * WEFT_TEST_SCALE (see testutil.h). */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/error.h"
#include "weft/select.h"
#include "weft/time.h"

#include "alloc.h"
#include "testutil.h"

static const size_t stress_caps[] = {0, 1, 64};
#define STRESS_CAP_COUNT 3

static weft_chan *make_int_chan(size_t cap) {
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    return c;
}

static void put_int(weft_chan *c, int v) { ck_assert_int_eq(weft_chan_try_send(c, &v), 0); }

/* ---------------------------------------------------------------------
 * One select on its own thread. */

typedef struct {
    weft_case *cases;
    size_t n;
    weft_time deadline;
    bool biased;
    int result;
    atomic_int *arrived; /* bumped just before the call (may be NULL) */
    atomic_int done;
    /* Optional follow-up: after the select, block again in a plain receive
     * on then_chan. The thread's parker is re-armed, so a waiter the select
     * failed to withdraw would now be claimable: probes of the select's
     * channels made meanwhile must not reach this thread. */
    weft_chan *then_chan;
    atomic_int then_arrived;
    atomic_int then_done;
    int then_result, then_value;
} select_op;

static void *select_op_main(void *arg) {
    select_op *op = arg;
    if (op->arrived) atomic_fetch_add(op->arrived, 1);
    op->result = op->biased ? weft_select_biased(op->cases, op->n, op->deadline)
                            : weft_select(op->cases, op->n, op->deadline);
    atomic_store(&op->done, 1);
    if (op->then_chan) {
        atomic_fetch_add(&op->then_arrived, 1);
        op->then_result = weft_chan_recv(op->then_chan, &op->then_value);
        atomic_store(&op->then_done, 1);
    }
    return NULL;
}

/* With the select done and its thread blocked in the follow-up receive:
 * offer a value to every channel but the chosen one. An unbuffered one
 * must find no receiver; a buffered one takes the value into its buffer
 * and keeps it; and the follow-up receive must still be blocked. Then
 * release the follow-up and join. */
static void probe_for_stale_waiters(select_op *op, weft_chan **chans, int count, int chosen,
                                    pthread_t thread) {
    wait_for_count(&op->then_arrived, 1);
    for (int k = 0; k < count; k++) {
        if (k == chosen || !chans[k]) continue;
        int probe = 4000 + k;
        int rc = weft_chan_try_send(chans[k], &probe);
        if (weft_chan_cap(chans[k]) == 0) {
            ck_assert_msg(rc == WEFT_EAGAIN,
                          "channel %d: a receiver remained after the select (%d)", k, rc);
            int taken = -1;
            rc = weft_chan_try_recv(chans[k], &taken);
            ck_assert_msg(rc == WEFT_EAGAIN, "channel %d: a sender remained after the select (%d)",
                          k, rc);
        } else if (rc == 0) {
            int back = -1;
            ck_assert_int_eq(weft_chan_try_recv(chans[k], &back), 0);
            ck_assert_msg(back == probe, "channel %d: probe came back as %d", k, back);
        }
    }
    sleep_ms(SETTLE_MS);
    ck_assert_msg(!atomic_load(&op->then_done), "a probe woke the thread's next wait (%d)",
                  op->then_result);
    int release = 9999;
    ck_assert_int_eq(weft_chan_send(op->then_chan, &release), 0);
    join_thread(thread);
    ck_assert_int_eq(op->then_result, 0);
    ck_assert_int_eq(op->then_value, 9999);
}

static void select_op_init(select_op *op, weft_case *cases, size_t n, weft_time deadline,
                           atomic_int *arrived) {
    op->cases = cases;
    op->n = n;
    op->deadline = deadline;
    op->biased = false;
    op->result = 12345;
    op->arrived = arrived;
    atomic_init(&op->done, 0);
    op->then_chan = NULL;
    atomic_init(&op->then_arrived, 0);
    atomic_init(&op->then_done, 0);
    op->then_result = op->then_value = 12345;
}

/* ---------------------------------------------------------------------
 * Nothing ready (Go's default:) and empty selects */

START_TEST(test_select_with_nothing_ready_and_nowait_is_eagain) {
    weft_chan *unbuffered = make_int_chan(0), *empty = make_int_chan(1), *full = make_int_chan(1);
    put_int(full, 1);
    int received0 = -1, received1 = -1, out0 = 10, out1 = 11;
    weft_case cases[4] = {WEFT_RECV_CASE(unbuffered, &received0), WEFT_SEND_CASE(unbuffered, &out0),
                          WEFT_RECV_CASE(empty, &received1), WEFT_SEND_CASE(full, &out1)};
    ck_assert_int_eq(weft_select(cases, 4, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(weft_select(cases, 4, weft_now()), WEFT_EAGAIN);
    ck_assert_int_eq(weft_select(cases, 4, weft_now() - WEFT_SEC(1)), WEFT_EAGAIN);
    ck_assert_int_eq(weft_select_biased(cases, 4, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(received0, -1);
    ck_assert_int_eq(received1, -1);
    /* Nothing moved. */
    int v = -1;
    ck_assert_int_eq(weft_chan_try_recv(unbuffered, &v), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_try_recv(empty, &v), WEFT_EAGAIN);
    ck_assert_uint_eq(weft_chan_len(full), 1);
    ck_assert_int_eq(weft_chan_try_recv(full, &v), 0);
    ck_assert_int_eq(v, 1);
    weft_chan_release(unbuffered);
    weft_chan_release(empty);
    weft_chan_release(full);
}
END_TEST

START_TEST(test_select_with_no_cases_times_out_never_early) {
    weft_case unused[1] = {WEFT_RECV_CASE(NULL, NULL)};
    weft_time deadline = weft_now() + WEFT_MS(30);
    ck_assert_int_eq(weft_select(unused, 0, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    deadline = weft_now() + WEFT_MS(10);
    ck_assert_int_eq(weft_select(NULL, 0, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    deadline = weft_now() + WEFT_MS(10);
    ck_assert_int_eq(weft_select_biased(unused, 0, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
}
END_TEST

/* Go's `select {}` in a goroutine that a context stops: weft_select_ctx
 * with no cases waits for the context, and for nothing else. */
typedef struct {
    weft_ctx *ctx;
    int result;
    atomic_bool returned;
} empty_select;

static void *empty_select_main(void *arg) {
    empty_select *op = arg;
    op->result = weft_select_ctx(NULL, 0, op->ctx);
    atomic_store(&op->returned, true);
    return NULL;
}

START_TEST(test_select_ctx_with_no_cases_waits_for_the_cancel) {
    empty_select op = {.ctx = weft_ctx_with_cancel(NULL)};
    ck_assert_ptr_nonnull(op.ctx);
    pthread_t thread;
    start_thread(&thread, empty_select_main, &op);
    weft_time until = weft_now() + WEFT_MS(30);
    while (weft_now() < until) ck_assert(!atomic_load(&op.returned));
    weft_ctx_cancel(op.ctx);
    join_thread(thread);
    ck_assert_int_eq(op.result, WEFT_ECANCELED);
    weft_ctx_release(op.ctx);
}
END_TEST

START_TEST(test_select_ctx_with_only_null_channels_ends_at_the_deadline) {
    weft_ctx *ctx = weft_ctx_with_timeout(NULL, WEFT_MS(20));
    ck_assert_ptr_nonnull(ctx);
    int v = 0;
    weft_case cases[2] = {WEFT_RECV_CASE(NULL, &v), WEFT_SEND_CASE(NULL, &v)};
    ck_assert_int_eq(weft_select_ctx(cases, 2, ctx), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= weft_ctx_deadline(ctx));
    ck_assert_int_eq(weft_select_ctx(NULL, 0, ctx), WEFT_ETIMEDOUT); /* at once, now */
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_select_with_no_cases_and_nowait_is_eagain) {
    weft_case unused[1] = {WEFT_RECV_CASE(NULL, NULL)};
    ck_assert_int_eq(weft_select(unused, 0, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(weft_select(NULL, 0, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(weft_select_biased(unused, 0, WEFT_NOWAIT), WEFT_EAGAIN);
}
END_TEST

START_TEST(test_select_with_only_null_channels_times_out_never_early) {
    int a = 1, b = 2;
    weft_case cases[3] = {WEFT_RECV_CASE(NULL, &a), WEFT_SEND_CASE(NULL, &b),
                          WEFT_RECV_CASE(NULL, NULL)};
    weft_time deadline = weft_now() + WEFT_MS(30);
    ck_assert_int_eq(weft_select(cases, 3, deadline), WEFT_ETIMEDOUT);
    weft_time now = weft_now();
    ck_assert_msg(now >= deadline, "returned %lld ns early", (long long)(deadline - now));
    ck_assert_int_eq(weft_select(cases, 3, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(weft_select_biased(cases, 3, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(a, 1);
}
END_TEST

/* ---------------------------------------------------------------------
 * Ready cases */

START_TEST(test_select_takes_the_ready_recv_case) {
    weft_chan *empty = make_int_chan(0), *ready = make_int_chan(1), *full = make_int_chan(1);
    put_int(ready, 5);
    put_int(full, 6);
    int v0 = -1, v1 = -1, out = 7;
    weft_case cases[3] = {WEFT_RECV_CASE(empty, &v0), WEFT_RECV_CASE(ready, &v1),
                          WEFT_SEND_CASE(full, &out)};
    for (int k = 0; k < 3; k++) cases[k].err = 12345;
    ck_assert_int_eq(weft_select(cases, 3, WEFT_FOREVER), 1);
    ck_assert_int_eq(cases[1].err, 0);
    ck_assert_int_eq(v1, 5);
    ck_assert_int_eq(v0, -1);
    ck_assert_uint_eq(weft_chan_len(ready), 0);
    ck_assert_uint_eq(weft_chan_len(full), 1);
    weft_chan_release(empty);
    weft_chan_release(ready);
    weft_chan_release(full);
}
END_TEST

START_TEST(test_select_takes_the_ready_send_case) {
    weft_chan *empty = make_int_chan(0), *room = make_int_chan(1);
    int v0 = -1, out = 8;
    weft_case cases[2] = {WEFT_RECV_CASE(empty, &v0), WEFT_SEND_CASE(room, &out)};
    cases[0].err = cases[1].err = 12345;
    ck_assert_int_eq(weft_select(cases, 2, WEFT_FOREVER), 1);
    ck_assert_int_eq(cases[1].err, 0);
    int v = -1;
    ck_assert_int_eq(weft_chan_try_recv(room, &v), 0);
    ck_assert_int_eq(v, 8);
    ck_assert_int_eq(v0, -1);
    weft_chan_release(empty);
    weft_chan_release(room);
}
END_TEST

/* Go's default: is only taken when nothing is ready; a deadline that has
 * passed (or WEFT_NOWAIT) still takes a ready case. */
START_TEST(test_select_with_nowait_takes_a_ready_case) {
    weft_chan *empty = make_int_chan(1), *ready = make_int_chan(1);
    int v = -1, w = -1;
    weft_case cases[2] = {WEFT_RECV_CASE(empty, &w), WEFT_RECV_CASE(ready, &v)};
    put_int(ready, 21);
    ck_assert_int_eq(weft_select(cases, 2, WEFT_NOWAIT), 1);
    ck_assert_int_eq(v, 21);
    put_int(ready, 22);
    ck_assert_int_eq(weft_select(cases, 2, weft_now() - WEFT_SEC(1)), 1);
    ck_assert_int_eq(v, 22);
    put_int(ready, 23);
    ck_assert_int_eq(weft_select_biased(cases, 2, WEFT_NOWAIT), 1);
    ck_assert_int_eq(v, 23);
    ck_assert_int_eq(w, -1);
    weft_chan_release(empty);
    weft_chan_release(ready);
}
END_TEST

START_TEST(test_select_recv_case_with_null_elem_discards_the_value) {
    weft_chan *c = make_int_chan(2);
    put_int(c, 1);
    put_int(c, 2);
    weft_case cases[1] = {WEFT_RECV_CASE(c, NULL)};
    ck_assert_int_eq(weft_select(cases, 1, WEFT_NOWAIT), 0);
    ck_assert_int_eq(cases[0].err, 0);
    int v = -1;
    ck_assert_int_eq(weft_chan_try_recv(c, &v), 0);
    ck_assert_int_eq(v, 2);
    weft_chan_release(c);
}
END_TEST

/* The chosen case's err is written whatever the outcome. */
START_TEST(test_select_always_writes_the_chosen_case_err) {
    weft_chan *value = make_int_chan(1), *room = make_int_chan(1), *closed = make_int_chan(1);
    put_int(value, 1);
    ck_assert_int_eq(weft_chan_close(closed), 0);
    int in = -1, out = 2;
    struct {
        weft_case only;
        int expected;
    } trials[4] = {
        {WEFT_RECV_CASE(value, &in), 0},
        {WEFT_SEND_CASE(room, &out), 0},
        {WEFT_RECV_CASE(closed, &in), WEFT_ECLOSED},
        {WEFT_SEND_CASE(closed, &out), WEFT_ECLOSED},
    };
    for (int t = 0; t < 4; t++) {
        weft_case cases[1] = {trials[t].only};
        cases[0].err = 12345;
        ck_assert_int_eq(weft_select(cases, 1, WEFT_NOWAIT), 0);
        ck_assert_msg(cases[0].err == trials[t].expected, "trial %d: err %d", t, cases[0].err);
    }
    weft_chan_release(value);
    weft_chan_release(room);
    weft_chan_release(closed);
}
END_TEST

/* ---------------------------------------------------------------------
 * Closed channels */

START_TEST(test_select_recv_on_closed_channel_reports_closed) {
    weft_chan *never = make_int_chan(0), *closed = make_int_chan(stress_caps[_i]);
    ck_assert_int_eq(weft_chan_close(closed), 0);
    int v0 = -1, v1 = 0xdead;
    weft_case cases[2] = {WEFT_RECV_CASE(never, &v0), WEFT_RECV_CASE(closed, &v1)};
    for (int round = 0; round < 3; round++) {
        cases[0].err = cases[1].err = 12345;
        weft_time deadline = round == 0 ? WEFT_NOWAIT : WEFT_FOREVER;
        ck_assert_int_eq(weft_select(cases, 2, deadline), 1);
        ck_assert_int_eq(cases[1].err, WEFT_ECLOSED);
        ck_assert_int_eq(v1, 0xdead); /* elem untouched */
    }
    ck_assert_int_eq(v0, -1);
    weft_chan_release(never);
    weft_chan_release(closed);
}
END_TEST

START_TEST(test_select_recv_on_closed_channel_gets_buffered_values_first) {
    weft_chan *c = make_int_chan(2);
    put_int(c, 1);
    put_int(c, 2);
    ck_assert_int_eq(weft_chan_close(c), 0);
    int v = -1;
    weft_case cases[1] = {WEFT_RECV_CASE(c, &v)};
    for (int expected = 1; expected <= 2; expected++) {
        cases[0].err = 12345;
        ck_assert_int_eq(weft_select(cases, 1, WEFT_NOWAIT), 0);
        ck_assert_int_eq(cases[0].err, 0);
        ck_assert_int_eq(v, expected);
    }
    v = -1;
    ck_assert_int_eq(weft_select(cases, 1, WEFT_NOWAIT), 0);
    ck_assert_int_eq(cases[0].err, WEFT_ECLOSED);
    ck_assert_int_eq(v, -1);
    weft_chan_release(c);
}
END_TEST

START_TEST(test_select_send_on_closed_channel_reports_closed) {
    size_t cap = stress_caps[_i];
    weft_chan *never = make_int_chan(0), *closed = make_int_chan(cap);
    ck_assert_int_eq(weft_chan_close(closed), 0);
    int v0 = -1, out = 77;
    weft_case cases[2] = {WEFT_RECV_CASE(never, &v0), WEFT_SEND_CASE(closed, &out)};
    for (int round = 0; round < 3; round++) {
        cases[0].err = cases[1].err = 12345;
        weft_time deadline = round == 0 ? WEFT_NOWAIT : WEFT_FOREVER;
        ck_assert_int_eq(weft_select(cases, 2, deadline), 1);
        ck_assert_int_eq(cases[1].err, WEFT_ECLOSED);
    }
    /* Nothing was delivered. */
    ck_assert_uint_eq(weft_chan_len(closed), 0);
    int v = -1;
    ck_assert_int_eq(weft_chan_recv(closed, &v), WEFT_ECLOSED);
    ck_assert_int_eq(v, -1);
    weft_chan_release(never);
    weft_chan_release(closed);
}
END_TEST

/* ---------------------------------------------------------------------
 * NULL channels (Go's nil channel) */

START_TEST(test_select_never_chooses_a_null_channel_case) {
    weft_chan *ready = make_int_chan(1);
    int in = -1, out = 3, v = -1;
    weft_case cases[4] = {WEFT_RECV_CASE(NULL, &in), WEFT_RECV_CASE(ready, &v),
                          WEFT_SEND_CASE(NULL, &out), WEFT_RECV_CASE(NULL, NULL)};
    for (int round = 0; round < 1000; round++) {
        put_int(ready, round);
        weft_time deadline = round % 2 ? WEFT_NOWAIT : WEFT_FOREVER;
        int rc = round % 3 == 2 ? weft_select_biased(cases, 4, deadline)
                                : weft_select(cases, 4, deadline);
        ck_assert_msg(rc == 1, "round %d: chose %d", round, rc);
        ck_assert_int_eq(v, round);
    }
    ck_assert_int_eq(in, -1);
    ck_assert_int_eq(weft_select(cases, 4, WEFT_NOWAIT), WEFT_EAGAIN);
    weft_chan_release(ready);
}
END_TEST

/* ---------------------------------------------------------------------
 * Fairness */

/* Two always-ready cases among four (one NULL, one never ready): each is
 * chosen 5000 +- 5 sigma times out of 10000. */
START_TEST(test_select_is_fair_between_two_ready_cases) {
    enum { TRIALS = 10000 };
    weft_chan *a = make_int_chan(1), *never = make_int_chan(0), *b = make_int_chan(1);
    put_int(a, 1);
    put_int(b, 2);
    int va = -1, vn = -1, vb = -1;
    weft_case cases[4] = {WEFT_RECV_CASE(NULL, NULL), WEFT_RECV_CASE(a, &va),
                          WEFT_RECV_CASE(never, &vn), WEFT_RECV_CASE(b, &vb)};
    int counts[4] = {0};
    for (int t = 0; t < TRIALS; t++) {
        int rc = weft_select(cases, 4, WEFT_NOWAIT);
        ck_assert_msg(rc == 1 || rc == 3, "trial %d: chose %d", t, rc);
        counts[rc]++;
        put_int(rc == 1 ? a : b, rc); /* make it ready again */
    }
    double sigma = sqrt(TRIALS * 0.25);
    for (int k = 1; k <= 3; k += 2)
        ck_assert_msg(fabs(counts[k] - TRIALS / 2.0) <= 5 * sigma, "case %d chosen %d of %d times",
                      k, counts[k], TRIALS);
    weft_chan_release(a);
    weft_chan_release(never);
    weft_chan_release(b);
}
END_TEST

/* Four ready cases, two receives and two sends: each chosen 2500 +- 5 sigma. */
START_TEST(test_select_is_fair_among_four_ready_cases) {
    enum { TRIALS = 10000 };
    weft_chan *r0 = make_int_chan(1), *r1 = make_int_chan(1), *s0 = make_int_chan(1),
              *s1 = make_int_chan(1);
    put_int(r0, 0);
    put_int(r1, 1);
    int v0, v1, out0 = 10, out1 = 11;
    weft_case cases[4] = {WEFT_RECV_CASE(r0, &v0), WEFT_SEND_CASE(s0, &out0),
                          WEFT_RECV_CASE(r1, &v1), WEFT_SEND_CASE(s1, &out1)};
    weft_chan *chans[4] = {r0, s0, r1, s1};
    int counts[4] = {0};
    for (int t = 0; t < TRIALS; t++) {
        int rc = weft_select(cases, 4, WEFT_NOWAIT);
        ck_assert_msg(rc >= 0 && rc < 4, "trial %d: %d", t, rc);
        counts[rc]++;
        if (rc % 2 == 0)
            put_int(chans[rc], rc);
        else
            ck_assert_int_eq(weft_chan_try_recv(chans[rc], NULL), 0);
    }
    double sigma = sqrt(TRIALS * 0.25 * 0.75);
    for (int k = 0; k < 4; k++)
        ck_assert_msg(fabs(counts[k] - TRIALS / 4.0) <= 5 * sigma, "case %d chosen %d of %d times",
                      k, counts[k], TRIALS);
    for (int k = 0; k < 4; k++) weft_chan_release(chans[k]);
}
END_TEST

/* ---------------------------------------------------------------------
 * Biased select */

START_TEST(test_biased_select_takes_the_first_ready_case) {
    weft_chan *never = make_int_chan(0), *a = make_int_chan(1), *b = make_int_chan(1),
              *room = make_int_chan(1);
    int vn = -1, va = -1, vb = -1, out = 5;
    weft_case cases[4] = {WEFT_RECV_CASE(never, &vn), WEFT_RECV_CASE(a, &va),
                          WEFT_RECV_CASE(b, &vb), WEFT_SEND_CASE(room, &out)};
    put_int(b, 2);
    for (int round = 0; round < 1000; round++) {
        put_int(a, round);
        ck_assert_int_eq(weft_select_biased(cases, 4, WEFT_NOWAIT), 1);
        ck_assert_int_eq(va, round);
    }
    /* a empty: b comes next, then the send. */
    ck_assert_int_eq(weft_select_biased(cases, 4, WEFT_NOWAIT), 2);
    ck_assert_int_eq(vb, 2);
    ck_assert_int_eq(weft_select_biased(cases, 4, WEFT_NOWAIT), 3);
    ck_assert_int_eq(weft_select_biased(cases, 4, WEFT_NOWAIT), WEFT_EAGAIN);
    /* A closed channel in front is ready too. */
    ck_assert_int_eq(weft_chan_close(never), 0);
    put_int(a, 9);
    cases[0].err = 12345;
    ck_assert_int_eq(weft_select_biased(cases, 4, WEFT_NOWAIT), 0);
    ck_assert_int_eq(cases[0].err, WEFT_ECLOSED);
    ck_assert_int_eq(vn, -1);
    weft_chan_release(never);
    weft_chan_release(a);
    weft_chan_release(b);
    weft_chan_release(room);
}
END_TEST

START_TEST(test_blocked_biased_select_takes_the_case_that_completes) {
    weft_chan *chans[3] = {make_int_chan(0), make_int_chan(1), make_int_chan(0)};
    int values[3] = {-1, -1, -1};
    weft_case cases[3];
    for (int k = 0; k < 3; k++) cases[k] = (weft_case)WEFT_RECV_CASE(chans[k], &values[k]);
    atomic_int arrived = 0;
    select_op op;
    select_op_init(&op, cases, 3, WEFT_FOREVER, &arrived);
    op.biased = true;
    pthread_t thread;
    start_thread(&thread, select_op_main, &op);
    wait_for_count(&arrived, 1);
    int v = 88;
    ck_assert_int_eq(weft_chan_send(chans[2], &v), 0);
    join_thread(thread);
    ck_assert_int_eq(op.result, 2);
    ck_assert_int_eq(values[2], 88);
    ck_assert_int_eq(values[0], -1);
    for (int k = 0; k < 3; k++) weft_chan_release(chans[k]);
}
END_TEST

/* ---------------------------------------------------------------------
 * Go's TestNonblockSelectRace and TestNonblockSelectRace2: at every
 * moment one of the cases is ready, so default: is never taken. */

typedef struct {
    pthread_barrier_t start, finish;
    weft_chan *c1, *c2;
    int iterations;
    int *results;
} nonblock_race;

static void *nonblock_race_main(void *arg) {
    nonblock_race *race = arg;
    for (int it = 0; it < race->iterations; it++) {
        pthread_barrier_wait(&race->start);
        weft_case cases[2] = {WEFT_RECV_CASE(race->c1, NULL), WEFT_RECV_CASE(race->c2, NULL)};
        race->results[it] = weft_select(cases, 2, WEFT_NOWAIT);
        pthread_barrier_wait(&race->finish);
    }
    return NULL;
}

static void run_nonblock_race(bool close_second) {
    nonblock_race race;
    race.iterations = (int)scaled(20000);
    race.results = calloc((size_t)race.iterations, sizeof *race.results);
    ck_assert_ptr_nonnull(race.results);
    pthread_barrier_init(&race.start, NULL, 2);
    pthread_barrier_init(&race.finish, NULL, 2);
    pthread_t thread;
    start_thread(&thread, nonblock_race_main, &race);
    for (int it = 0; it < race.iterations; it++) {
        race.c1 = make_int_chan(1);
        race.c2 = make_int_chan(close_second ? 0 : 1);
        put_int(race.c1, 1);
        pthread_barrier_wait(&race.start);
        if (close_second)
            ck_assert_int_eq(weft_chan_close(race.c2), 0); /* c2 ready for good */
        else
            put_int(race.c2, 1); /* c2 ready before c1 can be emptied */
        int taken = weft_chan_try_recv(race.c1, NULL);
        ck_assert(taken == 0 || taken == WEFT_EAGAIN);
        pthread_barrier_wait(&race.finish);
        ck_assert_msg(race.results[it] == 0 || race.results[it] == 1,
                      "iteration %d: select returned %d with a case ready", it, race.results[it]);
        weft_chan_release(race.c1);
        weft_chan_release(race.c2);
    }
    join_thread(thread);
    pthread_barrier_destroy(&race.start);
    pthread_barrier_destroy(&race.finish);
    free(race.results);
}

START_TEST(test_nonblocking_select_never_defaults_while_a_value_moves) { run_nonblock_race(false); }
END_TEST

START_TEST(test_nonblocking_select_never_defaults_while_a_channel_closes) {
    run_nonblock_race(true);
}
END_TEST

/* ---------------------------------------------------------------------
 * A select with a send and a receive on one channel (Go's TestSelfSelect) */

typedef struct {
    weft_chan *chan;
    int id, iterations;
    int *outcomes; /* per iteration: 0 sent, 1 received */
    int *received; /* per iteration: the value received */
    int biased;
} pair_selector;

static void *pair_selector_main(void *arg) {
    pair_selector *s = arg;
    for (int it = 0; it < s->iterations; it++) {
        int out = s->id * 1000000 + it, in = -1;
        /* Vary the order of the cases, as Go's test does. */
        weft_case cases[2];
        int send_index = it % 2;
        cases[send_index] = (weft_case)WEFT_SEND_CASE(s->chan, &out);
        cases[1 - send_index] = (weft_case)WEFT_RECV_CASE(s->chan, &in);
        int rc = s->biased ? weft_select_biased(cases, 2, WEFT_FOREVER)
                           : weft_select(cases, 2, WEFT_FOREVER);
        WORKER_EXPECT(rc == 0 || rc == 1);
        if (rc != 0 && rc != 1) return NULL;
        WORKER_EXPECT(cases[rc].err == 0);
        s->outcomes[it] = rc == send_index ? 0 : 1;
        s->received[it] = in;
    }
    return NULL;
}

START_TEST(test_select_send_and_recv_on_one_channel_pairs_two_threads) {
    int iterations = (int)scaled(2000);
    weft_chan *c = make_int_chan(0);
    pair_selector selectors[2];
    pthread_t threads[2];
    for (int s = 0; s < 2; s++) {
        selectors[s] = (pair_selector){c,
                                       s + 1,
                                       iterations,
                                       calloc((size_t)iterations, sizeof(int)),
                                       calloc((size_t)iterations, sizeof(int)),
                                       _i};
        ck_assert_ptr_nonnull(selectors[s].outcomes);
        ck_assert_ptr_nonnull(selectors[s].received);
        start_thread(&threads[s], pair_selector_main, &selectors[s]);
    }
    for (int s = 0; s < 2; s++) join_thread(threads[s]);
    check_worker_failures();
    /* Unbuffered, two threads: the k-th select of one pairs with the k-th
     * select of the other. */
    for (int it = 0; it < iterations; it++) {
        int o0 = selectors[0].outcomes[it], o1 = selectors[1].outcomes[it];
        ck_assert_msg(o0 != o1, "iteration %d: both threads %s", it, o0 ? "received" : "sent");
        int receiver = o0 == 1 ? 0 : 1, sender = 1 - receiver;
        ck_assert_msg(selectors[receiver].received[it] == selectors[sender].id * 1000000 + it,
                      "iteration %d: thread %d received %d", it, receiver,
                      selectors[receiver].received[it]);
    }
    for (int s = 0; s < 2; s++) {
        free(selectors[s].outcomes);
        free(selectors[s].received);
    }
    weft_chan_release(c);
}
END_TEST

START_TEST(test_select_never_pairs_with_itself) {
    weft_chan *c = make_int_chan(0);
    int out = 1, in = -1;
    weft_case cases[4] = {WEFT_SEND_CASE(c, &out), WEFT_RECV_CASE(c, &in), WEFT_SEND_CASE(c, &out),
                          WEFT_RECV_CASE(c, &in)};
    ck_assert_int_eq(weft_select(cases, 2, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(weft_select_biased(cases, 2, WEFT_NOWAIT), WEFT_EAGAIN);
    weft_time deadline = weft_now() + WEFT_MS(30);
    ck_assert_int_eq(weft_select(cases, 2, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    deadline = weft_now() + WEFT_MS(20);
    ck_assert_int_eq(weft_select(cases, 4, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    deadline = weft_now() + WEFT_MS(20);
    ck_assert_int_eq(weft_select_biased(cases, 4, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    ck_assert_int_eq(in, -1);
    /* Nothing left behind on the channel. */
    ck_assert_int_eq(weft_chan_try_recv(c, &in), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_try_send(c, &out), WEFT_EAGAIN);
    weft_chan_release(c);
}
END_TEST

/* 44 threads select {send c, recv c} on one channel until every thread has
 * completed M selects (on the unbuffered channel, threads that are done
 * keep partnering until a quit channel closes; on the buffered one they
 * stop). Every completed send is received exactly once, and on the
 * unbuffered channel never by its own thread. */
enum { SELF_THREADS = 44 };

typedef struct {
    weft_chan *chan, *quit;
    uint64_t id;
    int target;
    bool unbuffered;
    atomic_int *finished;
    uint64_t sent;
    int self_received;
    value_log received;
} self_selector;

static void *self_selector_main(void *arg) {
    self_selector *s = arg;
    int completed = 0;
    for (;;) {
        uint64_t out = s->id << 32 | s->sent, in = UINT64_MAX;
        weft_case cases[3] = {WEFT_SEND_CASE(s->chan, &out), WEFT_RECV_CASE(s->chan, &in),
                              WEFT_RECV_CASE(s->quit, NULL)};
        if (completed % 2) { /* vary the order */
            weft_case first = cases[0];
            cases[0] = cases[1];
            cases[1] = first;
        }
        int rc = weft_select(cases, 3, WEFT_FOREVER);
        WORKER_EXPECT(rc >= 0 && rc < 3);
        if (rc < 0 || rc == 2) break;
        WORKER_EXPECT(cases[rc].err == 0);
        if (cases[rc].dir == WEFT_SEND) {
            s->sent++;
        } else {
            if (s->unbuffered && in >> 32 == s->id) s->self_received++;
            log_append(&s->received, in);
        }
        if (++completed == s->target) {
            atomic_fetch_add(s->finished, 1);
            /* Buffered: nobody needs this thread as a partner any more. */
            if (!s->unbuffered) break;
        }
    }
    return NULL;
}

START_TEST(test_many_threads_selecting_send_and_recv_on_one_channel) {
    size_t cap = _i == 0 ? 0 : 10;
    int target = (int)scaled(300);
    weft_chan *c = weft_chan_make(sizeof(uint64_t), cap), *quit = weft_chan_make(0, 0);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(quit);
    atomic_int finished = 0;
    self_selector *selectors = calloc(SELF_THREADS, sizeof *selectors);
    pthread_t threads[SELF_THREADS];
    ck_assert_ptr_nonnull(selectors);
    for (int t = 0; t < SELF_THREADS; t++) {
        selectors[t] =
            (self_selector){c, quit, (uint64_t)t, target, cap == 0, &finished, 0, 0, {0}};
        start_thread(&threads[t], self_selector_main, &selectors[t]);
    }
    weft_time give_up = weft_now() + WEFT_SEC(100);
    while (atomic_load(&finished) < SELF_THREADS) {
        ck_assert_msg(weft_now() < give_up, "only %d of %d threads finished",
                      atomic_load(&finished), SELF_THREADS);
        sleep_ms(1);
    }
    ck_assert_int_eq(weft_chan_close(quit), 0);
    for (int t = 0; t < SELF_THREADS; t++) join_thread(threads[t]);
    check_worker_failures();

    value_log all = {0};
    uint64_t leftover;
    while (weft_chan_try_recv(c, &leftover) == 0) log_append(&all, leftover); /* buffered */
    uint64_t expected_count = 0;
    for (int t = 0; t < SELF_THREADS; t++) {
        ck_assert_msg(selectors[t].self_received == 0, "thread %d received its own value %d times",
                      t, selectors[t].self_received);
        for (size_t k = 0; k < selectors[t].received.count; k++)
            log_append(&all, selectors[t].received.values[k]);
        log_free(&selectors[t].received);
        expected_count += selectors[t].sent;
    }
    qsort(all.values, all.count, sizeof *all.values, compare_u64);
    size_t k = 0;
    for (int t = 0; t < SELF_THREADS; t++)
        for (uint64_t seq = 0; seq < selectors[t].sent; seq++, k++) {
            uint64_t expected = (uint64_t)t << 32 | seq;
            ck_assert_msg(k < all.count && all.values[k] == expected,
                          "thread %d: sent value %llu not received exactly once", t,
                          (unsigned long long)seq);
        }
    ck_assert_msg(all.count == expected_count, "received %zu values, sent %llu", all.count,
                  (unsigned long long)expected_count);
    log_free(&all);
    free(selectors);
    weft_chan_release(c);
    weft_chan_release(quit);
}
END_TEST

/* ---------------------------------------------------------------------
 * A channel duplicated in one select (Go's TestSelectDuplicateChannel) */

typedef struct {
    weft_chan *chan;
    value_log log;
} plain_receiver;

/* Receive until the channel closes, logging 1 << 32 | value. */
static void *plain_receiver_main(void *arg) {
    plain_receiver *r = arg;
    for (;;) {
        int v;
        int rc = weft_chan_recv(r->chan, &v);
        if (rc == WEFT_ECLOSED) return NULL;
        WORKER_EXPECT(rc == 0);
        if (rc != 0) return NULL;
        log_append(&r->log, (uint64_t)1 << 32 | (uint32_t)v);
    }
}

typedef struct {
    weft_chan *chan;
    atomic_int *arrived;
    int value, result;
} single_receiver;

static void *single_receiver_main(void *arg) {
    single_receiver *r = arg;
    atomic_fetch_add(r->arrived, 1);
    r->result = weft_chan_recv(r->chan, &r->value);
    return NULL;
}

START_TEST(test_select_with_duplicate_channel_keeps_the_wait_queue_intact) {
    weft_chan *c = make_int_chan(0), *d = make_int_chan(0);
    int x = -1, y = -1;
    weft_case cases[3] = {WEFT_RECV_CASE(c, &x), WEFT_RECV_CASE(c, &x), WEFT_RECV_CASE(d, &y)};
    atomic_int select_arrived = 0, receiver_arrived = 0;
    select_op op;
    select_op_init(&op, cases, 3, WEFT_FOREVER, &select_arrived);
    pthread_t select_thread, receiver_thread;
    start_thread(&select_thread, select_op_main, &op);
    wait_for_count(&select_arrived, 1); /* the select queues on c first (twice) */
    single_receiver receiver = {c, &receiver_arrived, -1, 12345};
    start_thread(&receiver_thread, single_receiver_main, &receiver);
    wait_for_count(&receiver_arrived, 1); /* a plain receiver queues behind it */
    int seven = 7;
    ck_assert_int_eq(weft_chan_send_until(d, &seven, weft_now() + WEFT_SEC(30)), 0);
    join_thread(select_thread);
    ck_assert_int_eq(op.result, 2);
    ck_assert_int_eq(y, 7);
    ck_assert_int_eq(x, -1);
    /* The select withdrew both its waiters on c: 8 goes to the receiver. */
    int eight = 8;
    ck_assert_int_eq(weft_chan_send_until(c, &eight, weft_now() + WEFT_SEC(30)), 0);
    join_thread(receiver_thread);
    ck_assert_int_eq(receiver.result, 0);
    ck_assert_int_eq(receiver.value, 8);
    ck_assert_int_eq(x, -1);
    weft_chan_release(c);
    weft_chan_release(d);
}
END_TEST

/* Select threads with c1 twice (plus c2) and a plain receiver on c1:
 * every value sent on either channel is received exactly once. */
typedef struct {
    weft_chan *c1, *c2;
    value_log log; /* channel << 32 | value */
} duplicate_selector;

static void *duplicate_selector_main(void *arg) {
    duplicate_selector *s = arg;
    int v = -1;
    weft_case cases[3] = {WEFT_RECV_CASE(s->c1, &v), WEFT_RECV_CASE(s->c2, &v),
                          WEFT_RECV_CASE(s->c1, &v)};
    int open = 2;
    while (open > 0) {
        int rc = weft_select(cases, 3, WEFT_FOREVER);
        WORKER_EXPECT(rc >= 0 && rc < 3);
        if (rc < 0) return NULL;
        if (cases[rc].err == WEFT_ECLOSED) {
            weft_chan *closed = cases[rc].ch;
            for (int k = 0; k < 3; k++)
                if (cases[k].ch == closed) cases[k].ch = NULL;
            open--;
            continue;
        }
        WORKER_EXPECT(cases[rc].err == 0);
        log_append(&s->log, (uint64_t)(cases[rc].ch == s->c1 ? 1 : 2) << 32 | (uint32_t)v);
    }
    return NULL;
}

START_TEST(test_values_on_a_duplicated_channel_are_received_once) {
    enum { SELECTORS = 2 };
    int count = (int)scaled(20000);
    weft_chan *c1 = make_int_chan(stress_caps[_i]), *c2 = make_int_chan(stress_caps[_i]);
    duplicate_selector selectors[SELECTORS];
    plain_receiver receiver = {c1, {0}};
    pthread_t threads[SELECTORS], receiver_thread;
    for (int s = 0; s < SELECTORS; s++) {
        selectors[s] = (duplicate_selector){c1, c2, {0}};
        start_thread(&threads[s], duplicate_selector_main, &selectors[s]);
    }
    start_thread(&receiver_thread, plain_receiver_main, &receiver);
    int sent2 = 0;
    for (int i = 0; i < count; i++) {
        ck_assert_int_eq(weft_chan_send(c1, &i), 0);
        if (i % 16 == 0) {
            ck_assert_int_eq(weft_chan_send(c2, &i), 0);
            sent2++;
        }
    }
    ck_assert_int_eq(weft_chan_close(c1), 0);
    ck_assert_int_eq(weft_chan_close(c2), 0);
    for (int s = 0; s < SELECTORS; s++) join_thread(threads[s]);
    join_thread(receiver_thread);
    check_worker_failures();

    value_log all = {0};
    for (int s = 0; s < SELECTORS; s++) {
        for (size_t k = 0; k < selectors[s].log.count; k++)
            log_append(&all, selectors[s].log.values[k]);
        log_free(&selectors[s].log);
    }
    for (size_t k = 0; k < receiver.log.count; k++) log_append(&all, receiver.log.values[k]);
    log_free(&receiver.log);
    qsort(all.values, all.count, sizeof *all.values, compare_u64);
    ck_assert_uint_eq(all.count, (size_t)count + (size_t)sent2);
    size_t k = 0;
    for (int i = 0; i < count; i++, k++)
        ck_assert_msg(all.values[k] == ((uint64_t)1 << 32 | (uint32_t)i),
                      "c1 value %d not received once", i);
    for (int i = 0; i < count; i += 16, k++)
        ck_assert_msg(all.values[k] == ((uint64_t)2 << 32 | (uint32_t)i),
                      "c2 value %d not received once", i);
    log_free(&all);
    weft_chan_release(c1);
    weft_chan_release(c2);
}
END_TEST

/* ---------------------------------------------------------------------
 * Mixed stress: plain and select senders and receivers over channels of
 * capacity 0, 1 and 16. Select loops drop finished cases by setting their
 * channel to NULL. Values: channel << 28 | sender slot << 20 | seq. */
enum { MIX_CHANNELS = 3, MIX_SELECT_SENDERS = 2, MIX_SELECT_RECEIVERS = 2 };

static uint32_t mix_value(int channel, int slot, int seq) {
    return (uint32_t)channel << 28 | (uint32_t)slot << 20 | (uint32_t)seq;
}

typedef struct {
    weft_chan *chan;
    int channel, count;
} mix_plain_sender;

static void *mix_plain_sender_main(void *arg) {
    mix_plain_sender *s = arg;
    for (int i = 0; i < s->count; i++) {
        uint32_t v = mix_value(s->channel, 0, i);
        WORKER_EXPECT(weft_chan_send(s->chan, &v) == 0);
    }
    return NULL;
}

typedef struct {
    weft_chan **chans;
    int slot, quota;
} mix_select_sender;

static void *mix_select_sender_main(void *arg) {
    mix_select_sender *s = arg;
    uint32_t out[MIX_CHANNELS];
    int next[MIX_CHANNELS] = {0};
    weft_case cases[MIX_CHANNELS];
    for (int k = 0; k < MIX_CHANNELS; k++) {
        out[k] = mix_value(k, s->slot, 0);
        cases[k] = (weft_case)WEFT_SEND_CASE(s->quota > 0 ? s->chans[k] : NULL, &out[k]);
    }
    for (int left = MIX_CHANNELS * s->quota; left > 0; left--) {
        int rc = weft_select(cases, MIX_CHANNELS, WEFT_FOREVER);
        WORKER_EXPECT(rc >= 0 && rc < MIX_CHANNELS);
        if (rc < 0) return NULL;
        WORKER_EXPECT(cases[rc].err == 0);
        if (++next[rc] == s->quota)
            cases[rc].ch = NULL;
        else
            out[rc] = mix_value(rc, s->slot, next[rc]);
    }
    return NULL;
}

typedef struct {
    weft_chan *chan;
    int channel;
    value_log log; /* channel received on << 32 | value */
} mix_plain_receiver;

static void *mix_plain_receiver_main(void *arg) {
    mix_plain_receiver *r = arg;
    for (;;) {
        uint32_t v;
        int rc = weft_chan_recv(r->chan, &v);
        if (rc == WEFT_ECLOSED) return NULL;
        WORKER_EXPECT(rc == 0);
        if (rc != 0) return NULL;
        log_append(&r->log, (uint64_t)r->channel << 32 | v);
    }
}

typedef struct {
    weft_chan **chans;
    value_log log;
} mix_select_receiver;

static void *mix_select_receiver_main(void *arg) {
    mix_select_receiver *r = arg;
    uint32_t in = 0;
    weft_case cases[MIX_CHANNELS];
    for (int k = 0; k < MIX_CHANNELS; k++) cases[k] = (weft_case)WEFT_RECV_CASE(r->chans[k], &in);
    for (int open = MIX_CHANNELS; open > 0;) {
        int rc = weft_select(cases, MIX_CHANNELS, WEFT_FOREVER);
        WORKER_EXPECT(rc >= 0 && rc < MIX_CHANNELS);
        if (rc < 0) return NULL;
        if (cases[rc].err == WEFT_ECLOSED) {
            cases[rc].ch = NULL;
            open--;
            continue;
        }
        WORKER_EXPECT(cases[rc].err == 0);
        log_append(&r->log, (uint64_t)rc << 32 | in);
    }
    return NULL;
}

START_TEST(test_mixed_plain_and_select_traffic_adds_up) {
    static const size_t mix_caps[MIX_CHANNELS] = {0, 1, 16};
    int plain_count = (int)scaled(5000), quota = (int)scaled(5000);
    weft_chan *chans[MIX_CHANNELS];
    for (int k = 0; k < MIX_CHANNELS; k++) chans[k] = weft_chan_make(sizeof(uint32_t), mix_caps[k]);
    for (int k = 0; k < MIX_CHANNELS; k++) ck_assert_ptr_nonnull(chans[k]);
    mix_plain_sender plain_senders[MIX_CHANNELS];
    mix_plain_receiver plain_receivers[MIX_CHANNELS];
    mix_select_sender select_senders[MIX_SELECT_SENDERS];
    mix_select_receiver select_receivers[MIX_SELECT_RECEIVERS];
    pthread_t plain_sender_threads[MIX_CHANNELS], plain_receiver_threads[MIX_CHANNELS];
    pthread_t select_sender_threads[MIX_SELECT_SENDERS],
        select_receiver_threads[MIX_SELECT_RECEIVERS];
    for (int k = 0; k < MIX_CHANNELS; k++) {
        plain_receivers[k] = (mix_plain_receiver){chans[k], k, {0}};
        start_thread(&plain_receiver_threads[k], mix_plain_receiver_main, &plain_receivers[k]);
    }
    for (int r = 0; r < MIX_SELECT_RECEIVERS; r++) {
        select_receivers[r] = (mix_select_receiver){chans, {0}};
        start_thread(&select_receiver_threads[r], mix_select_receiver_main, &select_receivers[r]);
    }
    for (int k = 0; k < MIX_CHANNELS; k++) {
        plain_senders[k] = (mix_plain_sender){chans[k], k, plain_count};
        start_thread(&plain_sender_threads[k], mix_plain_sender_main, &plain_senders[k]);
    }
    for (int s = 0; s < MIX_SELECT_SENDERS; s++) {
        select_senders[s] = (mix_select_sender){chans, s + 1, quota};
        start_thread(&select_sender_threads[s], mix_select_sender_main, &select_senders[s]);
    }
    for (int k = 0; k < MIX_CHANNELS; k++) join_thread(plain_sender_threads[k]);
    for (int s = 0; s < MIX_SELECT_SENDERS; s++) join_thread(select_sender_threads[s]);
    for (int k = 0; k < MIX_CHANNELS; k++) ck_assert_int_eq(weft_chan_close(chans[k]), 0);
    for (int k = 0; k < MIX_CHANNELS; k++) join_thread(plain_receiver_threads[k]);
    for (int r = 0; r < MIX_SELECT_RECEIVERS; r++) join_thread(select_receiver_threads[r]);
    check_worker_failures();

    value_log all = {0}, expected = {0};
    for (int k = 0; k < MIX_CHANNELS; k++) {
        for (size_t i = 0; i < plain_receivers[k].log.count; i++)
            log_append(&all, plain_receivers[k].log.values[i]);
        log_free(&plain_receivers[k].log);
    }
    for (int r = 0; r < MIX_SELECT_RECEIVERS; r++) {
        for (size_t i = 0; i < select_receivers[r].log.count; i++)
            log_append(&all, select_receivers[r].log.values[i]);
        log_free(&select_receivers[r].log);
    }
    for (int k = 0; k < MIX_CHANNELS; k++) {
        for (int i = 0; i < plain_count; i++)
            log_append(&expected, (uint64_t)k << 32 | mix_value(k, 0, i));
        for (int s = 1; s <= MIX_SELECT_SENDERS; s++)
            for (int i = 0; i < quota; i++)
                log_append(&expected, (uint64_t)k << 32 | mix_value(k, s, i));
    }
    qsort(all.values, all.count, sizeof *all.values, compare_u64);
    qsort(expected.values, expected.count, sizeof *expected.values, compare_u64);
    uint64_t sum_all = 0, sum_expected = 0;
    for (size_t i = 0; i < all.count; i++) sum_all += all.values[i];
    for (size_t i = 0; i < expected.count; i++) sum_expected += expected.values[i];
    ck_assert_uint_eq(all.count, expected.count);
    ck_assert_uint_eq(sum_all, sum_expected);
    for (size_t i = 0; i < all.count; i++)
        ck_assert_msg(all.values[i] == expected.values[i],
                      "mismatch at %zu: received %#llx (on channel %llu), expected %#llx", i,
                      (unsigned long long)(uint32_t)all.values[i],
                      (unsigned long long)(all.values[i] >> 32),
                      (unsigned long long)(uint32_t)expected.values[i]);
    log_free(&all);
    log_free(&expected);
    for (int k = 0; k < MIX_CHANNELS; k++) weft_chan_release(chans[k]);
}
END_TEST

/* ---------------------------------------------------------------------
 * A blocked select wakes for ... */

/* ... a value on any of its cases (loop index: which case). */
START_TEST(test_blocked_select_wakes_for_a_value_on_any_case) {
    static const size_t wake_caps[4] = {0, 1, 0, 1};
    weft_chan *chans[4];
    int values[4] = {-1, -1, -1, -1};
    weft_case cases[4];
    for (int k = 0; k < 4; k++) {
        chans[k] = make_int_chan(wake_caps[k]);
        cases[k] = (weft_case)WEFT_RECV_CASE(chans[k], &values[k]);
        cases[k].err = 12345;
    }
    weft_chan *then = make_int_chan(0);
    atomic_int arrived = 0;
    select_op op;
    select_op_init(&op, cases, 4, WEFT_FOREVER, &arrived);
    op.then_chan = then;
    pthread_t thread;
    start_thread(&thread, select_op_main, &op);
    wait_for_count(&arrived, 1);
    ck_assert_msg(!atomic_load(&op.done), "select returned with nothing ready: %d", op.result);
    int v = 100 + _i;
    ck_assert_int_eq(weft_chan_send(chans[_i], &v), 0);
    probe_for_stale_waiters(&op, chans, 4, _i, thread);
    ck_assert_int_eq(op.result, _i);
    ck_assert_int_eq(cases[_i].err, 0);
    for (int k = 0; k < 4; k++) ck_assert_int_eq(values[k], k == _i ? 100 + _i : -1);
    for (int k = 0; k < 4; k++) weft_chan_release(chans[k]);
    weft_chan_release(then);
}
END_TEST

/* ... a receiver arriving for its send case (unbuffered, or full cap 1). */
START_TEST(test_blocked_select_wakes_for_a_receiver_on_its_send_case) {
    size_t cap = _i == 0 ? 0 : 1;
    weft_chan *never = make_int_chan(0), *target = make_int_chan(cap);
    if (cap) put_int(target, 1);
    int in = -1, out = 2;
    weft_case cases[2] = {WEFT_RECV_CASE(never, &in), WEFT_SEND_CASE(target, &out)};
    weft_chan *then = make_int_chan(0);
    atomic_int arrived = 0;
    select_op op;
    select_op_init(&op, cases, 2, WEFT_FOREVER, &arrived);
    op.then_chan = then;
    pthread_t thread;
    start_thread(&thread, select_op_main, &op);
    wait_for_count(&arrived, 1);
    ck_assert_msg(!atomic_load(&op.done), "select returned with nothing ready: %d", op.result);
    int v = -1;
    ck_assert_int_eq(weft_chan_recv(target, &v), 0);
    ck_assert_int_eq(v, cap ? 1 : 2);
    weft_chan *probed[2] = {never, target};
    probe_for_stale_waiters(&op, probed, 2, 1, thread);
    weft_chan_release(then);
    ck_assert_int_eq(op.result, 1);
    ck_assert_int_eq(cases[1].err, 0);
    if (cap) {
        ck_assert_int_eq(weft_chan_try_recv(target, &v), 0);
        ck_assert_int_eq(v, 2);
    }
    ck_assert_int_eq(weft_chan_try_recv(target, &v), WEFT_EAGAIN);
    ck_assert_int_eq(in, -1);
    weft_chan_release(never);
    weft_chan_release(target);
}
END_TEST

/* ... a close on any case (loop index: which case). */
START_TEST(test_blocked_select_wakes_for_a_close_on_any_case) {
    weft_chan *chans[4] = {make_int_chan(0), make_int_chan(0), make_int_chan(1), make_int_chan(1)};
    put_int(chans[3], 50); /* full: its send case blocks */
    int in0 = -1, in2 = -1, out1 = 61, out3 = 63;
    weft_case cases[4] = {WEFT_RECV_CASE(chans[0], &in0), WEFT_SEND_CASE(chans[1], &out1),
                          WEFT_RECV_CASE(chans[2], &in2), WEFT_SEND_CASE(chans[3], &out3)};
    for (int k = 0; k < 4; k++) cases[k].err = 12345;
    weft_chan *then = make_int_chan(0);
    atomic_int arrived = 0;
    select_op op;
    select_op_init(&op, cases, 4, WEFT_FOREVER, &arrived);
    op.then_chan = then;
    pthread_t thread;
    start_thread(&thread, select_op_main, &op);
    wait_for_count(&arrived, 1);
    ck_assert_msg(!atomic_load(&op.done), "select returned with nothing ready: %d", op.result);
    ck_assert_int_eq(weft_chan_close(chans[_i]), 0);
    /* chans[3] is full: its probe fails with EAGAIN and proves nothing. */
    probe_for_stale_waiters(&op, chans, 4, _i, thread);
    weft_chan_release(then);
    ck_assert_int_eq(op.result, _i);
    ck_assert_int_eq(cases[_i].err, WEFT_ECLOSED);
    ck_assert_int_eq(in0, -1);
    ck_assert_int_eq(in2, -1);
    /* A closed send case delivered nothing. */
    int v = -1;
    if (_i == 3) {
        ck_assert_int_eq(weft_chan_recv(chans[3], &v), 0);
        ck_assert_int_eq(v, 50);
    }
    if (_i == 1 || _i == 3) ck_assert_int_eq(weft_chan_try_recv(chans[_i], &v), WEFT_ECLOSED);
    for (int k = 0; k < 4; k++) weft_chan_release(chans[k]);
}
END_TEST

/* ... its deadline, never early, leaving nothing behind. */
START_TEST(test_blocked_select_times_out_never_early) {
    weft_chan *a = make_int_chan(0), *b = make_int_chan(0), *full = make_int_chan(1);
    put_int(full, 1);
    int in = -1, out = 2, out2 = 3;
    weft_case cases[3] = {WEFT_RECV_CASE(a, &in), WEFT_SEND_CASE(b, &out),
                          WEFT_SEND_CASE(full, &out2)};
    weft_time deadline = weft_now() + WEFT_MS(30);
    ck_assert_int_eq(weft_select(cases, 3, deadline), WEFT_ETIMEDOUT);
    weft_time now = weft_now();
    ck_assert_msg(now >= deadline, "returned %lld ns early", (long long)(deadline - now));
    deadline = weft_now() + WEFT_MS(20);
    ck_assert_int_eq(weft_select_biased(cases, 3, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    ck_assert_int_eq(in, -1);
    int v = -1, probe = 4;
    ck_assert_int_eq(weft_chan_try_send(a, &probe), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_try_recv(b, &v), WEFT_EAGAIN);
    ck_assert_uint_eq(weft_chan_len(full), 1);
    weft_chan_release(a);
    weft_chan_release(b);
    weft_chan_release(full);
}
END_TEST

/* ---------------------------------------------------------------------
 * More cases than fit on the stack */

enum { MANY = 100 };

START_TEST(test_select_over_100_cases_returns_the_ready_index) {
    weft_chan *chans[MANY];
    int values[MANY];
    weft_case cases[MANY];
    for (int k = 0; k < MANY; k++) {
        chans[k] = make_int_chan(1);
        values[k] = -1;
        cases[k] = (weft_case)WEFT_RECV_CASE(chans[k], &values[k]);
    }
    ck_assert_int_eq(weft_select(cases, MANY, WEFT_NOWAIT), WEFT_EAGAIN);
    uint64_t random = 12345;
    int indices[20] = {0, 1, 63, 64, 65, 99};
    for (int r = 6; r < 20; r++) indices[r] = (int)(test_random(&random) % MANY);
    for (int r = 0; r < 20; r++) {
        int index = indices[r];
        put_int(chans[index], index * 10);
        cases[index].err = 12345;
        weft_time deadline = r % 2 ? WEFT_NOWAIT : WEFT_FOREVER;
        int rc = r % 3 == 2 ? weft_select_biased(cases, MANY, deadline)
                            : weft_select(cases, MANY, deadline);
        ck_assert_msg(rc == index, "ready index %d, select returned %d", index, rc);
        ck_assert_int_eq(cases[index].err, 0);
        ck_assert_int_eq(values[index], index * 10);
        values[index] = -1;
    }
    for (int k = 0; k < MANY; k++) ck_assert_int_eq(values[k], -1);
    for (int k = 0; k < MANY; k++) weft_chan_release(chans[k]);
}
END_TEST

START_TEST(test_blocked_select_over_100_cases_wakes_on_the_right_index) {
    weft_chan *chans[MANY];
    int values[MANY];
    weft_case cases[MANY];
    for (int k = 0; k < MANY; k++) {
        chans[k] = k % 3 == 0 ? NULL : make_int_chan(k % 2 ? 0 : 1); /* some NULL cases too */
        values[k] = -1;
        cases[k] = k % 5 == 0 ? (weft_case)WEFT_SEND_CASE(chans[k], &values[k])
                              : (weft_case)WEFT_RECV_CASE(chans[k], &values[k]);
    }
    /* Full buffered channels under send cases, so nothing is ready. */
    for (int k = 0; k < MANY; k++)
        if (chans[k] && k % 5 == 0 && weft_chan_cap(chans[k]) == 1) put_int(chans[k], 0);
    const int index = 77; /* 77 % 3 != 0, 77 % 5 != 0: a receive on an unbuffered channel */
    weft_chan *then = make_int_chan(0);
    atomic_int arrived = 0;
    select_op op;
    select_op_init(&op, cases, MANY, WEFT_FOREVER, &arrived);
    op.then_chan = then;
    pthread_t thread;
    start_thread(&thread, select_op_main, &op);
    wait_for_count(&arrived, 1);
    ck_assert_msg(!atomic_load(&op.done), "select returned with nothing ready: %d", op.result);
    int v = 7777;
    ck_assert_int_eq(weft_chan_send(chans[index], &v), 0);
    probe_for_stale_waiters(&op, chans, MANY, index, thread);
    weft_chan_release(then);
    ck_assert_int_eq(op.result, index);
    ck_assert_int_eq(cases[index].err, 0);
    ck_assert_int_eq(values[index], 7777);
    for (int k = 0; k < MANY; k++)
        if (chans[k]) weft_chan_release(chans[k]);
}
END_TEST

/* Without memory for the bookkeeping: WEFT_ENOMEM with nothing consumed,
 * or success; never a lost value. */
START_TEST(test_select_over_100_cases_without_memory_fails_cleanly) {
    weft_chan *chans[MANY];
    int values[MANY];
    weft_case cases[MANY];
    for (int k = 0; k < MANY; k++) {
        chans[k] = make_int_chan(1);
        values[k] = -1;
        cases[k] = (weft_case)WEFT_RECV_CASE(chans[k], &values[k]);
    }
    const int index = 70;
    put_int(chans[index], 700);
    weft__alloc_fail_from(1);
    int rc = weft_select(cases, MANY, WEFT_NOWAIT);
    int rc_blocking = WEFT_ENOMEM;
    if (rc == WEFT_ENOMEM) rc_blocking = weft_select(cases, MANY, weft_now() + WEFT_MS(20));
    weft__alloc_fail_from(0);
    if (rc == index) {
        ck_assert_int_eq(values[index], 700);
    } else {
        ck_assert_msg(rc == WEFT_ENOMEM, "select without memory: %d", rc);
        ck_assert_msg(rc_blocking == WEFT_ENOMEM || rc_blocking == index, "blocking select: %d",
                      rc_blocking);
        if (rc_blocking == WEFT_ENOMEM) {
            ck_assert_int_eq(values[index], -1);
            ck_assert_uint_eq(weft_chan_len(chans[index]), 1); /* still there */
        }
    }
    /* With memory back it works. */
    put_int(chans[5], 50);
    rc = weft_select(cases, MANY, WEFT_NOWAIT);
    ck_assert(rc == 5 || rc == index);
    for (int k = 0; k < MANY; k++) weft_chan_release(chans[k]);
}
END_TEST

/* A fresh thread whose first blocking select cannot allocate its parker. */
typedef struct {
    weft_case *cases;
    size_t n;
    int first, second;
} starved_selector;

static void *starved_selector_main(void *arg) {
    starved_selector *s = arg;
    weft__alloc_fail_from(1);
    s->first = weft_select(s->cases, s->n, weft_now() + WEFT_MS(20));
    weft__alloc_fail_from(0);
    s->second = weft_select(s->cases, s->n, weft_now() + WEFT_MS(20));
    return NULL;
}

START_TEST(test_first_blocking_select_without_memory_fails_cleanly) {
    weft_chan *a = make_int_chan(0), *b = make_int_chan(1);
    int in = -1, out = 1;
    weft_case cases[2] = {WEFT_RECV_CASE(a, &in), WEFT_RECV_CASE(b, &out)};
    starved_selector s = {cases, 2, 12345, 12345};
    pthread_t thread;
    start_thread(&thread, starved_selector_main, &s);
    join_thread(thread);
    weft__alloc_fail_from(0);
    ck_assert_msg(s.first == WEFT_ENOMEM || s.first == WEFT_ETIMEDOUT, "first select: %d", s.first);
    ck_assert_int_eq(s.second, WEFT_ETIMEDOUT);
    ck_assert_int_eq(in, -1);
    weft_chan_release(a);
    weft_chan_release(b);
}
END_TEST

/* ---------------------------------------------------------------------
 * Invalid arguments */

START_TEST(test_select_with_a_bad_direction_is_einval) {
    weft_chan *ready = make_int_chan(1);
    put_int(ready, 4);
    int v = -1;
    static const int bad_dirs[] = {0, 3, -1, WEFT_SEND | WEFT_RECV | 4};
    for (size_t d = 0; d < sizeof bad_dirs / sizeof *bad_dirs; d++) {
        weft_case alone[1] = {{ready, bad_dirs[d], &v, 0}};
        ck_assert_int_eq(weft_select(alone, 1, WEFT_NOWAIT), WEFT_EINVAL);
        ck_assert_int_eq(weft_select(alone, 1, WEFT_FOREVER), WEFT_EINVAL);
        ck_assert_int_eq(weft_select_biased(alone, 1, WEFT_NOWAIT), WEFT_EINVAL);
        /* Beside a ready case: the call is rejected as a whole. */
        weft_case mixed[2] = {WEFT_RECV_CASE(ready, &v), {ready, bad_dirs[d], &v, 0}};
        ck_assert_int_eq(weft_select(mixed, 2, WEFT_NOWAIT), WEFT_EINVAL);
        ck_assert_int_eq(weft_select_biased(mixed, 2, WEFT_FOREVER), WEFT_EINVAL);
    }
    ck_assert_int_eq(v, -1);
    ck_assert_uint_eq(weft_chan_len(ready), 1);
    weft_chan_release(ready);
}
END_TEST

START_TEST(test_select_with_null_cases_and_positive_n_is_einval) {
    ck_assert_int_eq(weft_select(NULL, 1, WEFT_NOWAIT), WEFT_EINVAL);
    ck_assert_int_eq(weft_select(NULL, 3, WEFT_FOREVER), WEFT_EINVAL);
    ck_assert_int_eq(weft_select(NULL, MANY, weft_now() + WEFT_SEC(10)), WEFT_EINVAL);
    ck_assert_int_eq(weft_select_biased(NULL, 2, WEFT_FOREVER), WEFT_EINVAL);
}
END_TEST

/* ---------------------------------------------------------------------
 * crossbeam's select_rx and select_both shapes, for caps 0, 1 and 64 */

enum { RX_CHANNELS = 4 };

typedef struct {
    weft_chan *chan;
    uint32_t id, count;
} rx_producer;

static void *rx_producer_main(void *arg) {
    rx_producer *p = arg;
    for (uint32_t i = 0; i < p->count; i++) {
        uint32_t v = p->id << 24 | i;
        WORKER_EXPECT(weft_chan_send(p->chan, &v) == 0);
    }
    WORKER_EXPECT(weft_chan_close(p->chan) == 0);
    return NULL;
}

START_TEST(test_select_receiver_gets_every_value_once_in_order) {
    uint32_t count = (uint32_t)scaled(20000);
    weft_chan *chans[RX_CHANNELS];
    rx_producer producers[RX_CHANNELS];
    pthread_t threads[RX_CHANNELS];
    uint32_t in = 0;
    weft_case cases[RX_CHANNELS];
    for (int k = 0; k < RX_CHANNELS; k++) {
        chans[k] = weft_chan_make(sizeof(uint32_t), stress_caps[_i]);
        ck_assert_ptr_nonnull(chans[k]);
        cases[k] = (weft_case)WEFT_RECV_CASE(chans[k], &in);
        producers[k] = (rx_producer){chans[k], (uint32_t)k, count};
        start_thread(&threads[k], rx_producer_main, &producers[k]);
    }
    uint32_t next[RX_CHANNELS] = {0};
    uint64_t sum = 0, received = 0;
    for (int open = RX_CHANNELS; open > 0;) {
        int rc = weft_select(cases, RX_CHANNELS, WEFT_FOREVER);
        ck_assert_msg(rc >= 0 && rc < RX_CHANNELS, "select: %d", rc);
        if (cases[rc].err == WEFT_ECLOSED) {
            ck_assert_msg(next[rc] == count, "channel %d closed after %u of %u values", rc,
                          next[rc], count);
            cases[rc].ch = NULL;
            open--;
            continue;
        }
        ck_assert_int_eq(cases[rc].err, 0);
        ck_assert_msg(in >> 24 == (uint32_t)rc, "value %#x arrived on channel %d", in, rc);
        ck_assert_msg((in & 0xffffff) == next[rc], "channel %d: got seq %u, expected %u", rc,
                      in & 0xffffff, next[rc]);
        next[rc]++;
        sum += in & 0xffffff;
        received++;
    }
    for (int k = 0; k < RX_CHANNELS; k++) join_thread(threads[k]);
    check_worker_failures();
    ck_assert_uint_eq(received, (uint64_t)RX_CHANNELS * count);
    ck_assert_uint_eq(sum, (uint64_t)RX_CHANNELS * count * (count - 1) / 2);
    for (int k = 0; k < RX_CHANNELS; k++) weft_chan_release(chans[k]);
}
END_TEST

typedef struct {
    weft_chan **chans;
    uint32_t id, count;
} both_sender;

static void *both_sender_main(void *arg) {
    both_sender *s = arg;
    for (uint32_t i = 0; i < s->count; i++) {
        uint32_t v = s->id * s->count + i;
        weft_case cases[RX_CHANNELS];
        for (int k = 0; k < RX_CHANNELS; k++) cases[k] = (weft_case)WEFT_SEND_CASE(s->chans[k], &v);
        int rc = weft_select(cases, RX_CHANNELS, WEFT_FOREVER);
        WORKER_EXPECT(rc >= 0 && rc < RX_CHANNELS);
        if (rc < 0) return NULL;
        WORKER_EXPECT(cases[rc].err == 0);
    }
    return NULL;
}

typedef struct {
    weft_chan **chans;
    _Atomic unsigned char *seen;
    uint32_t total;
    uint64_t count, sum;
} both_receiver;

static void *both_receiver_main(void *arg) {
    both_receiver *r = arg;
    uint32_t in = 0;
    weft_case cases[RX_CHANNELS];
    for (int k = 0; k < RX_CHANNELS; k++) cases[k] = (weft_case)WEFT_RECV_CASE(r->chans[k], &in);
    for (int open = RX_CHANNELS; open > 0;) {
        int rc = weft_select(cases, RX_CHANNELS, WEFT_FOREVER);
        WORKER_EXPECT(rc >= 0 && rc < RX_CHANNELS);
        if (rc < 0) return NULL;
        if (cases[rc].err == WEFT_ECLOSED) {
            cases[rc].ch = NULL;
            open--;
            continue;
        }
        WORKER_EXPECT(cases[rc].err == 0 && in < r->total);
        if (in >= r->total) continue;
        atomic_fetch_add(&r->seen[in], 1);
        r->count++;
        r->sum += in;
    }
    return NULL;
}

START_TEST(test_select_senders_and_select_receivers_sums_match) {
    enum { SENDERS = 4, RECEIVERS = 4 };
    uint32_t count = (uint32_t)scaled(10000), total = SENDERS * count;
    weft_chan *chans[RX_CHANNELS];
    for (int k = 0; k < RX_CHANNELS; k++) {
        chans[k] = weft_chan_make(sizeof(uint32_t), stress_caps[_i]);
        ck_assert_ptr_nonnull(chans[k]);
    }
    _Atomic unsigned char *seen = calloc(total, sizeof *seen);
    ck_assert_ptr_nonnull(seen);
    both_sender senders[SENDERS];
    both_receiver receivers[RECEIVERS];
    pthread_t sender_threads[SENDERS], receiver_threads[RECEIVERS];
    for (int r = 0; r < RECEIVERS; r++) {
        receivers[r] = (both_receiver){chans, seen, total, 0, 0};
        start_thread(&receiver_threads[r], both_receiver_main, &receivers[r]);
    }
    for (int s = 0; s < SENDERS; s++) {
        senders[s] = (both_sender){chans, (uint32_t)s, count};
        start_thread(&sender_threads[s], both_sender_main, &senders[s]);
    }
    for (int s = 0; s < SENDERS; s++) join_thread(sender_threads[s]);
    for (int k = 0; k < RX_CHANNELS; k++) ck_assert_int_eq(weft_chan_close(chans[k]), 0);
    for (int r = 0; r < RECEIVERS; r++) join_thread(receiver_threads[r]);
    check_worker_failures();
    uint64_t received = 0, sum = 0;
    for (int r = 0; r < RECEIVERS; r++) {
        received += receivers[r].count;
        sum += receivers[r].sum;
    }
    assert_each_seen_once(seen, total);
    ck_assert_uint_eq(received, total);
    ck_assert_uint_eq(sum, (uint64_t)total * (total - 1) / 2);
    free(seen);
    for (int k = 0; k < RX_CHANNELS; k++) weft_chan_release(chans[k]);
}
END_TEST

/* --------------------------------------------------------------------- */

static Suite *select_suite(void) {
    Suite *suite = suite_create("select");
    TCase *tc;

    tc = new_case(suite, "default");
    tcase_add_test(tc, test_select_with_nothing_ready_and_nowait_is_eagain);
    tcase_add_test(tc, test_select_with_no_cases_times_out_never_early);
    tcase_add_test(tc, test_select_with_no_cases_and_nowait_is_eagain);
    tcase_add_test(tc, test_select_with_only_null_channels_times_out_never_early);

    tc = new_case(suite, "ready");
    tcase_add_test(tc, test_select_takes_the_ready_recv_case);
    tcase_add_test(tc, test_select_takes_the_ready_send_case);
    tcase_add_test(tc, test_select_with_nowait_takes_a_ready_case);
    tcase_add_test(tc, test_select_recv_case_with_null_elem_discards_the_value);
    tcase_add_test(tc, test_select_always_writes_the_chosen_case_err);
    tcase_add_test(tc, test_select_never_chooses_a_null_channel_case);

    tc = new_case(suite, "closed");
    tcase_add_loop_test(tc, test_select_recv_on_closed_channel_reports_closed, 0, STRESS_CAP_COUNT);
    tcase_add_test(tc, test_select_recv_on_closed_channel_gets_buffered_values_first);
    tcase_add_loop_test(tc, test_select_send_on_closed_channel_reports_closed, 0, STRESS_CAP_COUNT);

    tc = new_case(suite, "fairness");
    tcase_add_test(tc, test_select_is_fair_between_two_ready_cases);
    tcase_add_test(tc, test_select_is_fair_among_four_ready_cases);
    tcase_add_test(tc, test_biased_select_takes_the_first_ready_case);
    tcase_add_test(tc, test_blocked_biased_select_takes_the_case_that_completes);

    tc = new_case(suite, "races");
    tcase_add_test(tc, test_nonblocking_select_never_defaults_while_a_value_moves);
    tcase_add_test(tc, test_nonblocking_select_never_defaults_while_a_channel_closes);
    tcase_add_loop_test(tc, test_select_send_and_recv_on_one_channel_pairs_two_threads, 0, 2);
    tcase_add_test(tc, test_select_never_pairs_with_itself);
    tcase_add_loop_test(tc, test_many_threads_selecting_send_and_recv_on_one_channel, 0, 2);
    tcase_add_test(tc, test_select_with_duplicate_channel_keeps_the_wait_queue_intact);
    tcase_add_loop_test(tc, test_values_on_a_duplicated_channel_are_received_once, 0,
                        STRESS_CAP_COUNT);
    tcase_add_test(tc, test_mixed_plain_and_select_traffic_adds_up);

    tc = new_case(suite, "wakeup");
    tcase_add_loop_test(tc, test_blocked_select_wakes_for_a_value_on_any_case, 0, 4);
    tcase_add_loop_test(tc, test_blocked_select_wakes_for_a_receiver_on_its_send_case, 0, 2);
    tcase_add_loop_test(tc, test_blocked_select_wakes_for_a_close_on_any_case, 0, 4);
    tcase_add_test(tc, test_blocked_select_times_out_never_early);
    tcase_add_test(tc, test_select_ctx_with_no_cases_waits_for_the_cancel);
    tcase_add_test(tc, test_select_ctx_with_only_null_channels_ends_at_the_deadline);

    tc = new_case(suite, "many");
    tcase_add_test(tc, test_select_over_100_cases_returns_the_ready_index);
    tcase_add_test(tc, test_blocked_select_over_100_cases_wakes_on_the_right_index);
    tcase_add_test(tc, test_select_over_100_cases_without_memory_fails_cleanly);
    tcase_add_test(tc, test_first_blocking_select_without_memory_fails_cleanly);

    tc = new_case(suite, "invalid");
    tcase_add_test(tc, test_select_with_a_bad_direction_is_einval);
    tcase_add_test(tc, test_select_with_null_cases_and_positive_n_is_einval);

    tc = new_case(suite, "stress");
    tcase_add_loop_test(tc, test_select_receiver_gets_every_value_once_in_order, 0,
                        STRESS_CAP_COUNT);
    tcase_add_loop_test(tc, test_select_senders_and_select_receivers_sums_match, 0,
                        STRESS_CAP_COUNT);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(select_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
