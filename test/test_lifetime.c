/* Lifetime tests: "free what you have seen finish" (DESIGN.md, section
 * "Lifetimes"; issue 12), for channels, select, contexts, timers and
 * pools. The sync primitives have their own file (test_lifetime_sync.c).
 *
 * Every test repeats one pattern thousands of times: the test thread
 * makes a heap object and hands the bare pointer to a partner (a
 * goroutine, the timer thread, a pool's thread) that takes no reference;
 * the partner operates on it; the moment the test thread has observed
 * that operation complete (a value or WEFT_ECLOSED received, its own send
 * or select returned, a cancel seen), it destroys the object and makes the
 * next one, which malloc places in the same memory. A library call that
 * touches the object after making its effect visible is then a
 * use-after-free that AddressSanitizer sees, a race with the free that
 * ThreadSanitizer sees, or, in a plain build, a read of the next round's
 * object: channel rounds alternate element sizes 8 and 4 so that such a
 * read copies the wrong number of bytes and the value check fails.
 *
 * The partner's records (what it received, what its call returned) live in
 * an array the test owns, never in the object under test; they are
 * checked after the last round, once every goroutine has returned. */
#include <check.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/error.h"
#include "weft/go.h"
#include "weft/select.h"
#include "weft/sync.h"
#include "weft/time.h"

#include "testutil.h"

static const size_t caps[] = {0, 1, 16};
#define CAP_COUNT 3

/* What a receive buffer holds before a value arrives. */
#define SENTINEL UINT64_C(0xA5A5A5A5A5A5A5A5)

/* Rounds of a pattern: plain builds run them all; the sanitizers slow
 * every operation by 5-20 times, so they run fewer, still thousands;
 * WEFT_TEST_SCALE divides them again under valgrind. */
static long rounds(long plain) {
#if defined(UNDER_TSAN)
    plain /= 4;
#elif defined(UNDER_ASAN)
    plain /= 2;
#endif
    return scaled(plain / 4); /* a quarter: the whole suite stays within CI's budget */
}

/* A channel nobody ever sends on or closes: the other case of a select, or
 * the channel a _ctx call waits on until its context ends. Made once,
 * still reachable at exit. */
static weft_chan *idle_channel(void) {
    static weft_chan *idle;
    if (!idle) idle = weft_chan_make(sizeof(uint64_t), 0);
    ck_assert_ptr_nonnull(idle);
    return idle;
}

/* Round i's element size: 8 and 4 in turn, so that the next round's
 * channel, in the same memory, differs from this one. */
static size_t elem_size_of_round(long round) { return round % 2 ? 4 : 8; }

/* What a SENTINEL-filled buffer holds after receiving the first
 * elem_size bytes of value. */
static uint64_t as_received(uint64_t value, size_t elem_size) {
    uint64_t buffer = SENTINEL;
    memcpy(&buffer, &value, elem_size);
    return buffer;
}

/* How one side makes its channel operation. */
enum how { PLAIN, BY_SELECT, BY_TRY };

/* One round's partner: what it was given and what it saw. */
typedef struct {
    weft_chan *chan; /* borrowed, no reference: freed once its operation is seen */
    weft_ctx *ctx;   /* likewise */
    enum how how;    /* the partner's form of its channel operation */
    int count;       /* values to send */
    bool closes;     /* close chan after the last send */
    uint64_t base;   /* the first value; then base + 1, ... */
    uint64_t received;
    int result;
    atomic_int arrived; /* set just before the partner's operation */
    atomic_int ran;     /* an after-function: set when it ran */
} partner;

static partner *partners_new(long count) {
    partner *partners = calloc((size_t)count, sizeof *partners);
    ck_assert_ptr_nonnull(partners);
    return partners;
}

/* Wait for every partner goroutine to return, then check what the
 * workers recorded and free the records. */
static void partners_free(partner *partners) {
    ck_assert_msg(goroutines_become(0), "partners still running");
    check_worker_failures();
    free(partners);
}

static void go_or_fail(weft_fn fn, void *arg) { ck_assert_int_eq(weft_go(fn, arg), 0); }

/* Wait until the partner is about to make its blocking call, then give it
 * a round-dependent few yields to get there: some rounds find it parked,
 * some still on its way. */
static void wait_for_arrival(partner *p, long round) {
    while (!atomic_load(&p->arrived)) sched_yield();
    for (long k = round % 4; k > 0; k--) sched_yield();
}

/* ---- one channel operation in each form --------------------------------- */

static int receive_value(weft_chan *channel, uint64_t *buffer, enum how how) {
    if (how == BY_SELECT) {
        weft_case cases[2] = {WEFT_RECV_CASE(channel, buffer),
                              WEFT_RECV_CASE(idle_channel(), NULL)};
        int chosen = weft_select(cases, 2, WEFT_FOREVER);
        return chosen == 0 ? cases[0].err : -1000 - chosen;
    }
    if (how == BY_TRY) {
        int result;
        while ((result = weft_chan_try_recv(channel, buffer)) == WEFT_EAGAIN) sched_yield();
        return result;
    }
    return weft_chan_recv(channel, buffer);
}

static int send_value(weft_chan *channel, const uint64_t *value, enum how how) {
    if (how == BY_SELECT) {
        weft_case cases[2] = {WEFT_SEND_CASE(channel, value), WEFT_RECV_CASE(idle_channel(), NULL)};
        int chosen = weft_select(cases, 2, WEFT_FOREVER);
        return chosen == 0 ? cases[0].err : -1000 - chosen;
    }
    if (how == BY_TRY) {
        int result;
        while ((result = weft_chan_try_send(channel, value)) == WEFT_EAGAIN) sched_yield();
        return result;
    }
    return weft_chan_send(channel, value);
}

/* ---- the test thread receives, the partner sends -------------------------- */

/* Partner: send count values, then close if asked. Its last call is given
 * the channel and returns after the test thread may have freed it. */
static void send_values(void *arg) {
    partner *p = arg;
    weft_chan *channel = p->chan;
    for (int j = 0; j < p->count; j++) {
        uint64_t value = p->base + (uint64_t)j;
        WORKER_EXPECT(send_value(channel, &value, p->how) == 0);
    }
    if (p->closes) WORKER_EXPECT(weft_chan_close(channel) == 0);
}

/* Each round: a partner sends 1 to cap + 1 values (more than fit, so some
 * sends block) and maybe closes; the test thread receives them all (and
 * WEFT_ECLOSED) in its form and releases the channel at once. */
static void run_receive_rounds(size_t cap, enum how how, enum how partner_how, bool closes) {
    long count = rounds(20000);
    partner *partners = partners_new(count);
    for (long i = 0; i < count; i++) {
        partner *p = &partners[i];
        size_t elem_size = elem_size_of_round(i);
        weft_chan *channel = weft_chan_make(elem_size, cap);
        ck_assert_ptr_nonnull(channel);
        p->chan = channel;
        p->how = partner_how;
        p->count = 1 + (int)(i % (long)(cap + 1));
        p->closes = closes;
        p->base = (uint64_t)i * 64;
        go_or_fail(send_values, p);
        for (int j = 0; j < p->count; j++) {
            uint64_t got = SENTINEL;
            ck_assert_int_eq(receive_value(channel, &got, how), 0);
            ck_assert_uint_eq(got, as_received(p->base + (uint64_t)j, elem_size));
        }
        if (closes) {
            uint64_t got = SENTINEL;
            ck_assert_int_eq(receive_value(channel, &got, how), WEFT_ECLOSED);
            ck_assert_uint_eq(got, SENTINEL);
        }
        weft_chan_release(channel);
    }
    partners_free(partners);
}

START_TEST(test_channel_freed_after_last_value_received) {
    run_receive_rounds(caps[_i], PLAIN, PLAIN, false);
}
END_TEST

START_TEST(test_channel_freed_after_select_received_last_value) {
    run_receive_rounds(caps[_i], BY_SELECT, PLAIN, false);
}
END_TEST

START_TEST(test_channel_freed_after_try_recv_got_last_value) {
    run_receive_rounds(caps[_i], BY_TRY, PLAIN, false);
}
END_TEST

START_TEST(test_channel_freed_after_last_value_of_a_select_send_received) {
    run_receive_rounds(caps[_i], PLAIN, BY_SELECT, false);
}
END_TEST

START_TEST(test_channel_freed_after_eclosed_received) {
    run_receive_rounds(caps[_i], PLAIN, PLAIN, true);
}
END_TEST

START_TEST(test_channel_freed_after_select_saw_eclosed) {
    run_receive_rounds(caps[_i], BY_SELECT, PLAIN, true);
}
END_TEST

START_TEST(test_channel_freed_after_try_recv_saw_eclosed) {
    run_receive_rounds(caps[_i], BY_TRY, PLAIN, true);
}
END_TEST

/* ---- the test thread sends, the partner receives -------------------------- */

/* Partner: receive one value, in its form. */
static void receive_one(void *arg) {
    partner *p = arg;
    uint64_t got = SENTINEL;
    atomic_store(&p->arrived, 1);
    p->result = receive_value(p->chan, &got, p->how);
    p->received = got;
}

/* Each round: the test thread fills the channel (cap values), a partner
 * receives one, and the test thread's send, which can only complete once
 * that receive has (it needs the partner itself when unbuffered, the slot
 * the partner freed when buffered), is followed by the release. */
static void run_send_rounds(size_t cap, enum how how, enum how partner_how) {
    long count = rounds(20000);
    partner *partners = partners_new(count);
    for (long i = 0; i < count; i++) {
        partner *p = &partners[i];
        size_t elem_size = elem_size_of_round(i);
        weft_chan *channel = weft_chan_make(elem_size, cap);
        ck_assert_ptr_nonnull(channel);
        p->base = (uint64_t)i * 64;
        for (size_t j = 0; j < cap; j++) {
            uint64_t value = p->base + j;
            ck_assert_int_eq(weft_chan_try_send(channel, &value), 0);
        }
        p->chan = channel;
        p->how = partner_how;
        go_or_fail(receive_one, p);
        if (cap == 0) wait_for_arrival(p, i);
        uint64_t value = p->base + cap;
        ck_assert_int_eq(send_value(channel, &value, how), 0);
        weft_chan_release(channel);
    }
    ck_assert(goroutines_become(0));
    for (long i = 0; i < count; i++) {
        ck_assert_int_eq(partners[i].result, 0);
        ck_assert_uint_eq(partners[i].received,
                          as_received(partners[i].base, elem_size_of_round(i)));
    }
    partners_free(partners);
}

START_TEST(test_channel_freed_after_send_returned) { run_send_rounds(caps[_i], PLAIN, PLAIN); }
END_TEST

START_TEST(test_channel_freed_after_select_send_returned) {
    run_send_rounds(caps[_i], BY_SELECT, PLAIN);
}
END_TEST

START_TEST(test_channel_freed_after_try_send_succeeded) {
    run_send_rounds(caps[_i], BY_TRY, PLAIN);
}
END_TEST

START_TEST(test_channel_freed_after_send_to_a_select_returned) {
    run_send_rounds(caps[_i], PLAIN, BY_SELECT);
}
END_TEST

/* ---- a select with two cases on one channel ------------------------------- */

/* Partner: a select that receives from and sends to the same unbuffered
 * channel; the test thread completes one case and frees the channel, so
 * the other case must be withdrawn before the select's effect shows. */
static void select_both_directions(void *arg) {
    partner *p = arg;
    uint64_t got = SENTINEL, value = p->base + 1;
    weft_case cases[2] = {WEFT_RECV_CASE(p->chan, &got), WEFT_SEND_CASE(p->chan, &value)};
    atomic_store(&p->arrived, 1);
    int chosen = weft_select(cases, 2, WEFT_FOREVER);
    p->result = chosen < 0 ? chosen : chosen * 100 + cases[chosen].err;
    p->received = got;
}

START_TEST(test_channel_freed_after_completing_one_of_two_select_cases_on_it) {
    long count = rounds(20000);
    partner *partners = partners_new(count);
    for (long i = 0; i < count; i++) {
        partner *p = &partners[i];
        size_t elem_size = elem_size_of_round(i);
        weft_chan *channel = weft_chan_make(elem_size, 0);
        ck_assert_ptr_nonnull(channel);
        p->chan = channel;
        p->base = (uint64_t)i * 64;
        go_or_fail(select_both_directions, p);
        wait_for_arrival(p, i);
        if (i % 4 < 2) { /* complete the receive case */
            ck_assert_int_eq(weft_chan_send(channel, &p->base), 0);
        } else { /* complete the send case */
            uint64_t got = SENTINEL;
            ck_assert_int_eq(weft_chan_recv(channel, &got), 0);
            ck_assert_uint_eq(got, as_received(p->base + 1, elem_size));
        }
        weft_chan_release(channel);
    }
    ck_assert(goroutines_become(0));
    for (long i = 0; i < count; i++) {
        if (i % 4 < 2) {
            ck_assert_int_eq(partners[i].result, 0);
            ck_assert_uint_eq(partners[i].received,
                              as_received(partners[i].base, elem_size_of_round(i)));
        } else {
            ck_assert_int_eq(partners[i].result, 100);
            ck_assert_uint_eq(partners[i].received, SENTINEL);
        }
    }
    partners_free(partners);
}
END_TEST

/* ---- a select send racing a close --------------------------------------- */

/* Partner: one select send on an unbuffered channel nobody receives from
 * until it is closed; records the select's outcome. */
static void select_send_once(void *arg) {
    partner *p = arg;
    uint64_t value = p->base;
    weft_case cases[2] = {WEFT_SEND_CASE(p->chan, &value), WEFT_RECV_CASE(idle_channel(), NULL)};
    atomic_store(&p->arrived, 1);
    int chosen = weft_select(cases, 2, WEFT_FOREVER);
    p->result = chosen < 0 ? chosen : chosen * 100 + cases[chosen].err;
    atomic_store(&p->ran, 1);
}

/* Round i's pause between the partner's arrival and the close: from none
 * to a few microseconds (a select's first try and its registration take
 * about one), spread so that every moment of the select is hit, with a
 * yield now and then to let a descheduled partner run on. */
static void close_after_a_while(long round) {
    long step = (round * 37) % 1024;
    for (volatile long spin = step < 512 ? step / 4 : step * 2; spin > 0; spin--) {}
    if (round % 16 == 15) sched_yield();
}

/* Nobody receives before the close, so the send can only fail; a close
 * that lands between the select's first try and its registration must
 * not leave the send queued for a later receive to take. Each round the
 * test thread closes at a different moment of the select, then receives
 * until the select has returned: every receive must be WEFT_ECLOSED. */
START_TEST(test_select_send_never_succeeds_on_closed_unbuffered_channel) {
    long count = rounds(200000);
    long values_after_eclosed = 0, sends_chosen = 0;
    partner *partners = partners_new(count);
    for (long i = 0; i < count; i++) {
        partner *p = &partners[i];
        weft_chan *channel = weft_chan_make(sizeof(uint64_t), 0);
        ck_assert_ptr_nonnull(channel);
        p->chan = channel;
        p->base = (uint64_t)i;
        go_or_fail(select_send_once, p);
        while (!atomic_load(&p->arrived)) sched_yield();
        close_after_a_while(i);
        ck_assert_int_eq(weft_chan_close(channel), 0);
        bool eclosed_seen = false;
        for (;;) {
            bool returned = atomic_load(&p->ran);
            uint64_t got = SENTINEL;
            int result = weft_chan_recv(channel, &got);
            if (result == WEFT_ECLOSED)
                eclosed_seen = true;
            else if (result == 0 && eclosed_seen)
                values_after_eclosed++;
            if (returned) break;
        }
        /* The select has returned: the channel is no longer its. */
        weft_chan_release(channel);
    }
    ck_assert(goroutines_become(0));
    for (long i = 0; i < count; i++) sends_chosen += partners[i].result == 0;
    partners_free(partners);
    ck_assert_msg(values_after_eclosed == 0,
                  "%ld of %ld receives returned a value after one returned WEFT_ECLOSED",
                  values_after_eclosed, count);
    ck_assert_msg(sends_chosen == 0, "%ld of %ld select sends succeeded on a closed channel",
                  sends_chosen, count);
}
END_TEST

/* ---- contexts ------------------------------------------------------------ */

/* Partner: cancel a context it was given and holds no reference to. */
static void cancel_given(void *arg) {
    partner *p = arg;
    weft_ctx_cancel(p->ctx);
}

static void note_ran(void *arg) {
    partner *p = arg;
    atomic_store(&p->ran, 1);
}

/* How the owner sees the cancel. */
enum observe {
    THROUGH_ERR,
    THROUGH_DONE,
    THROUGH_RECV_CTX,
    THROUGH_SELECT_CTX,
    THROUGH_AFTER_FUNC
};

static void observe_end(weft_ctx *ctx, enum observe how, partner *p) {
    uint64_t got = SENTINEL;
    switch (how) {
    case THROUGH_ERR:
        while (weft_ctx_err(ctx) == 0) sched_yield();
        break;
    case THROUGH_DONE:
        ck_assert_int_eq(weft_chan_recv(weft_ctx_done(ctx), NULL), WEFT_ECLOSED);
        break;
    case THROUGH_RECV_CTX:
        ck_assert_int_eq(weft_chan_recv_ctx(idle_channel(), &got, ctx), WEFT_ECANCELED);
        ck_assert_uint_eq(got, SENTINEL);
        break;
    case THROUGH_SELECT_CTX: {
        weft_case cases[1] = {WEFT_RECV_CASE(idle_channel(), &got)};
        ck_assert_int_eq(weft_select_ctx(cases, 1, ctx), WEFT_ECANCELED);
        break;
    }
    case THROUGH_AFTER_FUNC:
        while (!atomic_load(&p->ran)) sched_yield();
        break;
    }
}

/* Each round: the owner makes a context (holding its only reference), a
 * partner cancels it, and the owner releases it the moment it sees the
 * cancel. */
static void run_cancel_rounds(enum observe how) {
    long count = rounds(20000);
    partner *partners = partners_new(count);
    for (long i = 0; i < count; i++) {
        partner *p = &partners[i];
        weft_ctx *ctx = weft_ctx_with_cancel(weft_ctx_background());
        ck_assert_ptr_nonnull(ctx);
        weft_ctx_after *after = NULL;
        if (how == THROUGH_AFTER_FUNC) {
            after = weft_ctx_after_func(ctx, note_ran, p);
            ck_assert_ptr_nonnull(after);
        }
        p->ctx = ctx;
        go_or_fail(cancel_given, p);
        observe_end(ctx, how, p);
        ck_assert_int_eq(weft_ctx_err(ctx), WEFT_ECANCELED);
        if (after) ck_assert(!weft_ctx_after_stop(after));
        weft_ctx_release(ctx);
    }
    partners_free(partners);
}

START_TEST(test_context_freed_after_cancel_seen_through_err) { run_cancel_rounds(THROUGH_ERR); }
END_TEST

START_TEST(test_context_freed_after_its_done_channel_closed) { run_cancel_rounds(THROUGH_DONE); }
END_TEST

START_TEST(test_context_freed_after_recv_ctx_returned_ecanceled) {
    run_cancel_rounds(THROUGH_RECV_CTX);
}
END_TEST

START_TEST(test_context_freed_after_select_ctx_returned_ecanceled) {
    run_cancel_rounds(THROUGH_SELECT_CTX);
}
END_TEST

START_TEST(test_context_freed_after_its_after_func_ran) { run_cancel_rounds(THROUGH_AFTER_FUNC); }
END_TEST

/* A partner cancels the parent; the owner of parent and child releases the
 * child when it sees the child's done channel closed, and the parent at
 * once after, while the cancel may still be walking the tree. */
START_TEST(test_child_and_parent_freed_after_parent_cancel_seen_in_child) {
    long count = rounds(20000);
    partner *partners = partners_new(count);
    for (long i = 0; i < count; i++) {
        partner *p = &partners[i];
        weft_ctx *parent = weft_ctx_with_cancel(weft_ctx_background());
        ck_assert_ptr_nonnull(parent);
        weft_ctx *child = weft_ctx_with_cancel(parent);
        ck_assert_ptr_nonnull(child);
        p->ctx = parent;
        go_or_fail(cancel_given, p);
        ck_assert_int_eq(weft_chan_recv(weft_ctx_done(child), NULL), WEFT_ECLOSED);
        weft_ctx_release(child);
        ck_assert_int_eq(weft_ctx_err(parent), WEFT_ECANCELED);
        weft_ctx_release(parent);
    }
    partners_free(partners);
}
END_TEST

/* The timer thread cancels a context at its deadline; the owner releases
 * it as soon as its done channel is closed. */
START_TEST(test_context_freed_after_deadline_expired) {
    long count = rounds(5000);
    for (long i = 0; i < count; i++) {
        weft_ctx *ctx = weft_ctx_with_timeout(weft_ctx_background(), WEFT_US(i % 20));
        ck_assert_ptr_nonnull(ctx);
        ck_assert_int_eq(weft_chan_recv(weft_ctx_done(ctx), NULL), WEFT_ECLOSED);
        ck_assert_int_eq(weft_ctx_err(ctx), WEFT_ETIMEDOUT);
        weft_ctx_release(ctx);
    }
}
END_TEST

/* ---- misuse of a done channel ---------------------------------------------- */

static weft_mutex misuse_mutex = WEFT_MUTEX_INIT;
static weft_ctx *misuse_ctx;
static atomic_int misuse_arrived;

static void *lock_until_canceled(void *unused) {
    (void)unused;
    atomic_store(&misuse_arrived, 1);
    weft_mutex_lock_ctx(&misuse_mutex, misuse_ctx);
    return NULL;
}

/* In the forked child: a thread blocks in weft_mutex_lock_ctx on a held
 * mutex; misuse() then closes or sends on the context's done channel. The
 * context is live, so its waiters must not be told it ended: weft aborts.
 * Returning normally (the child exits 0) fails the test. */
static void block_then(void (*misuse)(weft_chan *done)) {
    misuse_ctx = weft_ctx_with_cancel(weft_ctx_background());
    if (!misuse_ctx) abort();
    weft_mutex_lock(&misuse_mutex);
    pthread_t thread;
    if (pthread_create(&thread, NULL, lock_until_canceled, NULL) != 0) abort();
    while (!atomic_load(&misuse_arrived)) sched_yield();
    sleep_ms(SETTLE_MS);
    misuse(weft_ctx_done(misuse_ctx));
    pthread_join(thread, NULL);
}

static void close_done(weft_chan *done) { weft_chan_close(done); }

static void send_on_done(weft_chan *done) { weft_chan_send(done, NULL); }

static void close_done_of_live_context(void) { block_then(close_done); }

static void send_on_done_of_live_context(void) { block_then(send_on_done); }

/* The child must die of SIGABRT after writing one line starting "weft:". */
static void expect_weft_abort(void (*misuse)(void)) {
#ifdef UNDER_TSAN
    /* ThreadSanitizer kills a child that starts threads after a
     * multi-threaded fork; the plain and asan runs check this. */
    (void)misuse;
    return;
#else
    char text[512];
    abort_output(misuse, text, sizeof text);
    ck_assert_msg(strncmp(text, "weft:", 5) == 0, "stderr does not start with \"weft:\": %s", text);
    char *newline = strchr(text, '\n');
    ck_assert_msg(newline && newline[1] == '\0', "stderr is not one line: %s", text);
#endif
}

START_TEST(test_closing_done_channel_of_live_context_aborts) {
    expect_weft_abort(close_done_of_live_context);
}
END_TEST

START_TEST(test_sending_on_done_channel_of_live_context_aborts) {
    expect_weft_abort(send_on_done_of_live_context);
}
END_TEST

/* ---- timers ------------------------------------------------------------- */

/* The timer thread sends on weft_after's channel and drops its reference;
 * the owner releases its own the moment the value arrives. */
START_TEST(test_after_channel_freed_after_its_value_received) {
    long count = rounds(5000);
    for (long i = 0; i < count; i++) {
        weft_time start = weft_now(), fired = 0;
        weft_chan *after = weft_after(WEFT_US(i % 20));
        ck_assert_ptr_nonnull(after);
        ck_assert_int_eq(weft_chan_recv(after, &fired), 0);
        weft_chan_release(after);
        ck_assert_int_ge(fired, start);
    }
}
END_TEST

/* A tick received, the ticker (and its channel) is stopped and freed at
 * once, while the timer thread may still be finishing that tick. */
START_TEST(test_ticker_stopped_after_tick_received) {
    long count = rounds(5000);
    for (long i = 0; i < count; i++) {
        weft_ticker *ticker = weft_ticker_new(WEFT_US(1 + i % 20));
        ck_assert_ptr_nonnull(ticker);
        weft_time tick = 0;
        ck_assert_int_eq(weft_chan_recv(weft_ticker_chan(ticker), &tick), 0);
        weft_ticker_stop(ticker);
        ck_assert_int_gt(tick, 0);
    }
}
END_TEST

/* A weft_timer's value received, the timer (and its channel) is freed at
 * once, while the timer thread may still be returning from the send. */
START_TEST(test_timer_freed_after_its_value_received) {
    long count = rounds(5000);
    for (long i = 0; i < count; i++) {
        weft_time start = weft_now(), fired = 0;
        weft_timer *timer = weft_timer_new(WEFT_US(i % 20));
        ck_assert_ptr_nonnull(timer);
        ck_assert_int_eq(weft_chan_recv(weft_timer_chan(timer), &fired), 0);
        weft_timer_free(timer);
        ck_assert_int_ge(fired, start);
    }
}
END_TEST

/* Busy-wait until t: around a timer's due time, where a free meets its
 * fire. The jitter (0 to 4 us after the due time, by round) spreads the
 * free over the fire's few microseconds. */
#define WEFT_NS_JITTER(i) ((weft_time)((i) % 9) * 500)

static void spin_until(weft_time t) {
    while (weft_now() < t) atomic_signal_fence(memory_order_seq_cst);
}

/* A sanitizer's report of a fire that touched a freed timer takes a while
 * to print and abort; wait for it before the test may pass. */
static void let_reports_finish(void) { sleep_ms(200); }

/* Freed while its fire may be running, before anyone received. */
START_TEST(test_timer_freed_while_it_may_be_firing) {
    long count = rounds(5000);
    for (long i = 0; i < count; i++) {
        weft_time start = weft_now();
        weft_timer *timer = weft_timer_new(WEFT_US(i % 20));
        ck_assert_ptr_nonnull(timer);
        spin_until(start + WEFT_US(i % 20) + WEFT_NS_JITTER(i));
        weft_timer_free(timer);
    }
    let_reports_finish();
}
END_TEST

/* An after_func timer freed while its fire may be handing fn to a
 * goroutine: fn gets its own record, never the freed timer. */
static void count_ran(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

START_TEST(test_after_func_timer_freed_while_it_may_be_firing) {
    long count = rounds(5000);
    atomic_int *ran = calloc((size_t)count, sizeof *ran);
    ck_assert_ptr_nonnull(ran);
    for (long i = 0; i < count; i++) {
        weft_time start = weft_now();
        weft_timer *timer = weft_after_func(WEFT_US(i % 20), count_ran, &ran[i]);
        ck_assert_ptr_nonnull(timer);
        spin_until(start + WEFT_US(i % 20) + WEFT_NS_JITTER(i));
        weft_timer_free(timer);
    }
    ck_assert(goroutines_become(0));
    for (long i = 0; i < count; i++) ck_assert_int_le(atomic_load(&ran[i]), 1);
    free(ran);
    let_reports_finish();
}
END_TEST

/* fn frees its own timer (Go's `t = time.AfterFunc(d, func() { t.Stop() })`)
 * while the timer thread may still be returning from weft_go. */
typedef struct {
    weft_timer *_Atomic timer;
    atomic_int ran;
} self_freeing;

static void free_own_timer(void *arg) {
    self_freeing *self = arg;
    weft_timer *timer;
    while (!(timer = atomic_load(&self->timer))) sched_yield(); /* published after make */
    weft_timer_free(timer);
    atomic_store(&self->ran, 1);
}

START_TEST(test_after_func_timer_freed_by_its_own_fn) {
    long count = rounds(5000);
    self_freeing *records = calloc((size_t)count, sizeof *records);
    ck_assert_ptr_nonnull(records);
    for (long i = 0; i < count; i++) {
        weft_timer *timer = weft_after_func(WEFT_US(i % 20), free_own_timer, &records[i]);
        ck_assert_ptr_nonnull(timer);
        atomic_store(&records[i].timer, timer);
        ck_assert(int_becomes(&records[i].ran, 1));
    }
    ck_assert(goroutines_become(0));
    free(records);
}
END_TEST

/* ---- pools --------------------------------------------------------------- */

static weft_pool *pool_or_fail(void) {
    weft_pool_opts opts = {.min_threads = 0, .max_threads = 2};
    weft_pool *pool = weft_pool_new(&opts);
    ck_assert_ptr_nonnull(pool);
    return pool;
}

/* A goroutine of a private pool sends its results and closes their
 * channel; the owner frees the channel at WEFT_ECLOSED and closes the pool
 * at once, while that goroutine may still be returning from the close. */
START_TEST(test_pool_closed_and_channel_freed_after_eclosed_from_its_goroutine) {
    long count = rounds(1000);
    partner *partners = partners_new(count);
    for (long i = 0; i < count; i++) {
        partner *p = &partners[i];
        weft_pool *pool = pool_or_fail();
        weft_chan *channel = weft_chan_make(elem_size_of_round(i), 1 + (size_t)i % 2);
        ck_assert_ptr_nonnull(channel);
        p->chan = channel;
        p->count = 1 + (int)(i % 3);
        p->closes = true;
        p->base = (uint64_t)i * 64;
        ck_assert_int_eq(weft_pool_go(pool, send_values, p), 0);
        for (int j = 0; j < p->count; j++) {
            uint64_t got = SENTINEL;
            ck_assert_int_eq(weft_chan_recv(channel, &got), 0);
            ck_assert_uint_eq(got, as_received(p->base + (uint64_t)j, elem_size_of_round(i)));
        }
        ck_assert_int_eq(weft_chan_recv(channel, NULL), WEFT_ECLOSED);
        weft_chan_release(channel);
        ck_assert_int_eq(weft_pool_close(pool), 0);
    }
    partners_free(partners);
}
END_TEST

/* ---- the suite ------------------------------------------------------------ */

static Suite *lifetime_suite(void) {
    Suite *suite = suite_create("lifetime");

    TCase *tc = new_case(suite, "receive_then_free");
    tcase_add_loop_test(tc, test_channel_freed_after_last_value_received, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_channel_freed_after_select_received_last_value, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_channel_freed_after_try_recv_got_last_value, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_channel_freed_after_last_value_of_a_select_send_received, 0,
                        CAP_COUNT);
    tcase_add_loop_test(tc, test_channel_freed_after_eclosed_received, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_channel_freed_after_select_saw_eclosed, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_channel_freed_after_try_recv_saw_eclosed, 0, CAP_COUNT);

    tc = new_case(suite, "send_then_free");
    tcase_add_loop_test(tc, test_channel_freed_after_send_returned, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_channel_freed_after_select_send_returned, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_channel_freed_after_try_send_succeeded, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_channel_freed_after_send_to_a_select_returned, 0, CAP_COUNT);

    tc = new_case(suite, "select");
    tcase_add_test(tc, test_channel_freed_after_completing_one_of_two_select_cases_on_it);
    tcase_add_test(tc, test_select_send_never_succeeds_on_closed_unbuffered_channel);

    tc = new_case(suite, "contexts");
    tcase_add_test(tc, test_context_freed_after_cancel_seen_through_err);
    tcase_add_test(tc, test_context_freed_after_its_done_channel_closed);
    tcase_add_test(tc, test_context_freed_after_recv_ctx_returned_ecanceled);
    tcase_add_test(tc, test_context_freed_after_select_ctx_returned_ecanceled);
    tcase_add_test(tc, test_context_freed_after_its_after_func_ran);
    tcase_add_test(tc, test_child_and_parent_freed_after_parent_cancel_seen_in_child);
    tcase_add_test(tc, test_context_freed_after_deadline_expired);

    tc = new_case(suite, "done_channel_misuse");
    tcase_add_test(tc, test_closing_done_channel_of_live_context_aborts);
    tcase_add_test(tc, test_sending_on_done_channel_of_live_context_aborts);

    tc = new_case(suite, "timers");
    tcase_add_test(tc, test_after_channel_freed_after_its_value_received);
    tcase_add_test(tc, test_ticker_stopped_after_tick_received);
    tcase_add_test(tc, test_timer_freed_after_its_value_received);
    tcase_add_test(tc, test_timer_freed_while_it_may_be_firing);
    tcase_add_test(tc, test_after_func_timer_freed_while_it_may_be_firing);
    tcase_add_test(tc, test_after_func_timer_freed_by_its_own_fn);

    tc = new_case(suite, "pools");
    tcase_add_test(tc, test_pool_closed_and_channel_freed_after_eclosed_from_its_goroutine);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(lifetime_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
