/* Unbounded channels (weft_chan_make_unbounded), from the contract in
 * include/weft/chan.h and DESIGN.md ("More of Go's toolbox").
 *
 * The stalled-sender tests stop a sender between reserving its slot and
 * writing its value with the private hook weft__list_reserved_hook
 * (lib/chan_list.h): the state in which crossbeam's try_recv spins
 * forever (crossbeam#997). The hook is installed before any thread starts
 * and removed after every thread has been joined. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/error.h"
#include "weft/select.h"

#include "alloc.h"
#include "chan_list.h"
#include "testutil.h"

enum { BLOCK = 31 }; /* values per block (lib/chan_list.c) */

static weft_chan *make_u64(void) {
    weft_chan *channel = weft_chan_make_unbounded(sizeof(uint64_t));
    ck_assert_ptr_nonnull(channel);
    return channel;
}

static void send_range(weft_chan *channel, uint64_t first, uint64_t count) {
    for (uint64_t v = first; v < first + count; v++)
        ck_assert_int_eq(weft_chan_send(channel, &v), 0);
}

static void expect_range(weft_chan *channel, uint64_t first, uint64_t count) {
    for (uint64_t v = first; v < first + count; v++) {
        uint64_t got = UINT64_MAX;
        ck_assert_int_eq(weft_chan_recv(channel, &got), 0);
        ck_assert_uint_eq(got, v);
    }
}

/* ---- basics ------------------------------------------------------------ */

START_TEST(million_sends_with_no_receiver_are_all_received_in_order) {
    uint64_t count = (uint64_t)scaled(1000000);
    weft_chan *channel = make_u64();
    for (uint64_t v = 0; v < count; v++) ck_assert_int_eq(weft_chan_try_send(channel, &v), 0);
    ck_assert_uint_eq(weft_chan_len(channel), count);
    expect_range(channel, 0, count);
    uint64_t extra;
    ck_assert_int_eq(weft_chan_try_recv(channel, &extra), WEFT_EAGAIN);
    ck_assert_uint_eq(weft_chan_len(channel), 0);
    weft_chan_release(channel);
}
END_TEST

START_TEST(cap_is_unbounded_and_len_counts_queued_values) {
    weft_chan *channel = make_u64();
    ck_assert_uint_eq(weft_chan_cap(channel), WEFT_UNBOUNDED);
    ck_assert_uint_eq(weft_chan_elem_size(channel), sizeof(uint64_t));
    ck_assert_uint_eq(weft_chan_len(channel), 0);
    send_range(channel, 0, 3 * BLOCK + 5);
    ck_assert_uint_eq(weft_chan_len(channel), 3 * BLOCK + 5);
    expect_range(channel, 0, BLOCK + 1);
    ck_assert_uint_eq(weft_chan_len(channel), 2 * BLOCK + 4);
    weft_chan_release(channel);
}
END_TEST

START_TEST(close_drains_queued_values_then_reports_closed) {
    weft_chan *channel = make_u64();
    send_range(channel, 0, 2 * BLOCK + 3);
    ck_assert_int_eq(weft_chan_close(channel), 0);
    uint64_t v = 7;
    ck_assert_int_eq(weft_chan_send(channel, &v), WEFT_ECLOSED);
    ck_assert_int_eq(weft_chan_try_send(channel, &v), WEFT_ECLOSED);
    expect_range(channel, 0, 2 * BLOCK + 3);
    ck_assert_int_eq(weft_chan_recv(channel, &v), WEFT_ECLOSED);
    ck_assert_int_eq(weft_chan_try_recv(channel, &v), WEFT_ECLOSED);
    ck_assert_uint_eq(v, 7);
    weft_chan_release(channel);
}
END_TEST

WEFT_CHAN_DEFINE(int_chan, int)

START_TEST(typed_unbounded_channel_round_trips) {
    int_chan channel = int_chan_make_unbounded();
    ck_assert_ptr_nonnull(channel.ch);
    for (int i = 0; i < 100; i++) ck_assert_int_eq(int_chan_send(channel, i), 0);
    for (int i = 0; i < 100; i++) {
        int got = -1;
        ck_assert_int_eq(int_chan_recv(channel, &got), 0);
        ck_assert_int_eq(got, i);
    }
    int_chan_release(channel);
}
END_TEST

START_TEST(signal_only_unbounded_channel_counts_signals) {
    weft_chan *channel = weft_chan_make_unbounded(0);
    ck_assert_ptr_nonnull(channel);
    for (int i = 0; i < 100; i++) ck_assert_int_eq(weft_chan_send(channel, NULL), 0);
    ck_assert_uint_eq(weft_chan_len(channel), 100);
    for (int i = 0; i < 100; i++) ck_assert_int_eq(weft_chan_try_recv(channel, NULL), 0);
    ck_assert_int_eq(weft_chan_try_recv(channel, NULL), WEFT_EAGAIN);
    weft_chan_release(channel);
}
END_TEST

START_TEST(make_unbounded_with_size_overflow_is_einval) {
    errno = 0;
    ck_assert_ptr_null(weft_chan_make_unbounded(SIZE_MAX / 8));
    ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(steady_send_and_receive_allocate_nothing) {
    weft_chan *channel = make_u64();
    for (uint64_t v = 0; v < 4 * BLOCK; v++) { /* the first crossings allocate */
        ck_assert_int_eq(weft_chan_send(channel, &v), 0);
        expect_range(channel, v, 1);
    }
    (void)weft__alloc_count(); /* counts from here */
    weft__alloc_fail_from(0);
    for (uint64_t v = 0; v < 100 * BLOCK; v++) {
        ck_assert_int_eq(weft_chan_send(channel, &v), 0);
        expect_range(channel, v, 1);
    }
    ck_assert_int_eq(weft__alloc_count(), 0);
    weft_chan_release(channel);
}
END_TEST

/* ---- many threads ------------------------------------------------------ */

typedef struct {
    weft_chan *channel;
    uint32_t sender, count;
} sender_args;

static void *tagged_sender_main(void *arg) {
    sender_args *args = arg;
    for (uint32_t i = 0; i < args->count; i++) {
        uint64_t value = (uint64_t)args->sender << 32 | i;
        WORKER_EXPECT(weft_chan_send(args->channel, &value) == 0);
    }
    return NULL;
}

START_TEST(values_arrive_in_fifo_order_per_sender) {
    enum { SENDERS = 4 };
    uint32_t per_sender = (uint32_t)scaled(100000);
    weft_chan *channel = make_u64();
    sender_args args[SENDERS];
    pthread_t threads[SENDERS];
    for (uint32_t s = 0; s < SENDERS; s++) {
        args[s] = (sender_args){channel, s, per_sender};
        start_thread(&threads[s], tagged_sender_main, &args[s]);
    }
    uint32_t next[SENDERS] = {0};
    for (uint64_t k = 0; k < (uint64_t)SENDERS * per_sender; k++) {
        uint64_t value;
        ck_assert_int_eq(weft_chan_recv(channel, &value), 0);
        uint32_t sender = (uint32_t)(value >> 32), seq = (uint32_t)value;
        ck_assert_uint_lt(sender, SENDERS);
        ck_assert_msg(seq == next[sender], "sender %u: got %u, expected %u", sender, seq,
                      next[sender]);
        next[sender]++;
    }
    for (int s = 0; s < SENDERS; s++) join_thread(threads[s]);
    check_worker_failures();
    weft_chan_release(channel);
}
END_TEST

typedef struct {
    weft_chan *channel;
    _Atomic unsigned char *seen;
    uint64_t total;
    bool try_forms; /* poll with try_recv instead of blocking */
} counter_args;

static void *counting_receiver_main(void *arg) {
    counter_args *args = arg;
    for (;;) {
        uint64_t value;
        int result = args->try_forms ? weft_chan_try_recv(args->channel, &value)
                                     : weft_chan_recv(args->channel, &value);
        if (result == WEFT_ECLOSED) break;
        if (result == WEFT_EAGAIN && args->try_forms) continue;
        WORKER_EXPECT(result == 0 && value < args->total);
        if (result != 0 || value >= args->total) break;
        atomic_fetch_add_explicit(&args->seen[value], 1, memory_order_relaxed);
    }
    return NULL;
}

typedef struct {
    weft_chan *channel;
    uint64_t first, count;
} range_args;

static void *range_sender_main(void *arg) {
    range_args *args = arg;
    for (uint64_t v = args->first; v < args->first + args->count; v++)
        WORKER_EXPECT(weft_chan_send(args->channel, &v) == 0);
    return NULL;
}

/* _i: 0 blocking receivers, 1 receivers polling with try_recv. */
START_TEST(mpmc_receives_each_value_exactly_once) {
    enum { SENDERS = 4, RECEIVERS = 4 };
    uint64_t per_sender = (uint64_t)scaled(100000), total = SENDERS * per_sender;
    weft_chan *channel = make_u64();
    _Atomic unsigned char *seen = calloc(total, sizeof *seen);
    ck_assert_ptr_nonnull(seen);
    counter_args receivers[RECEIVERS];
    range_args senders[SENDERS];
    pthread_t receiver_threads[RECEIVERS], sender_threads[SENDERS];
    for (int r = 0; r < RECEIVERS; r++) {
        receivers[r] = (counter_args){channel, seen, total, _i == 1};
        start_thread(&receiver_threads[r], counting_receiver_main, &receivers[r]);
    }
    for (int s = 0; s < SENDERS; s++) {
        senders[s] = (range_args){channel, (uint64_t)s * per_sender, per_sender};
        start_thread(&sender_threads[s], range_sender_main, &senders[s]);
    }
    for (int s = 0; s < SENDERS; s++) join_thread(sender_threads[s]);
    ck_assert_int_eq(weft_chan_close(channel), 0);
    for (int r = 0; r < RECEIVERS; r++) join_thread(receiver_threads[r]);
    check_worker_failures();
    assert_each_seen_once(seen, total);
    free(seen);
    weft_chan_release(channel);
}
END_TEST

/* ---- a sender stalled between reserving and writing -------------------- */

static _Thread_local bool stall_this_send;
static atomic_int stalled, resume;

static void stall_after_reserving(void) {
    if (!stall_this_send) return;
    stall_this_send = false;
    atomic_store(&stalled, 1);
    while (!atomic_load(&resume)) sleep_ms(1);
}

typedef struct {
    weft_chan *channel;
    uint64_t first, count; /* the first send of these stalls */
    atomic_int done;
} stalling_args;

static void *stalling_sender_main(void *arg) {
    stalling_args *args = arg;
    stall_this_send = true;
    for (uint64_t v = args->first; v < args->first + args->count; v++)
        WORKER_EXPECT(weft_chan_send(args->channel, &v) == 0);
    atomic_store(&args->done, 1);
    return NULL;
}

static void start_stalled_sender(pthread_t *thread, stalling_args *args) {
    atomic_store(&stalled, 0);
    atomic_store(&resume, 0);
    weft__list_reserved_hook = stall_after_reserving;
    start_thread(thread, stalling_sender_main, args);
    ck_assert(int_becomes(&stalled, 1));
}

static void resume_and_join(pthread_t thread) {
    atomic_store(&resume, 1);
    join_thread(thread);
    weft__list_reserved_hook = NULL;
    check_worker_failures();
}

START_TEST(try_recv_does_not_wait_for_a_stalled_sender) {
    weft_chan *channel = make_u64();
    stalling_args args = {channel, 100, 3, 0};
    pthread_t thread;
    start_stalled_sender(&thread, &args);
    uint64_t got = 0;
    ck_assert_int_eq(weft_chan_try_recv(channel, &got), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_recv_until(channel, &got, WEFT_NOWAIT), WEFT_EAGAIN);
    /* A value sent after the stalled one is not held up behind it. */
    send_range(channel, 7, 1);
    ck_assert_int_eq(weft_chan_try_recv(channel, &got), 0);
    ck_assert_uint_eq(got, 7);
    resume_and_join(thread);
    expect_range(channel, 100, 3);
    ck_assert_int_eq(weft_chan_try_recv(channel, &got), WEFT_EAGAIN);
    weft_chan_release(channel);
}
END_TEST

START_TEST(try_recv_does_not_wait_for_a_stalled_sender_linking_a_block) {
    weft_chan *channel = make_u64();
    send_range(channel, 0, BLOCK - 1); /* the stalled send takes the block's last slot */
    stalling_args args = {channel, 100, 3, 0};
    pthread_t thread;
    start_stalled_sender(&thread, &args);
    expect_range(channel, 0, BLOCK - 1);
    uint64_t got = 0;
    ck_assert_int_eq(weft_chan_try_recv(channel, &got), WEFT_EAGAIN);
    send_range(channel, 7, 1); /* in the next block, which the head cannot reach yet */
    ck_assert_int_eq(weft_chan_try_recv(channel, &got), WEFT_EAGAIN);
    resume_and_join(thread);
    expect_range(channel, 7, 1);
    expect_range(channel, 100, 3);
    ck_assert_int_eq(weft_chan_try_recv(channel, &got), WEFT_EAGAIN);
    weft_chan_release(channel);
}
END_TEST

typedef struct {
    weft_chan *channel;
    uint64_t value;
    int result;
    atomic_int arrived, done;
} recv_args;

static void *receiver_main(void *arg) {
    recv_args *args = arg;
    atomic_store(&args->arrived, 1);
    args->result = weft_chan_recv(args->channel, &args->value);
    atomic_store(&args->done, 1);
    return NULL;
}

START_TEST(blocked_recv_gets_a_stalled_senders_value_once_it_resumes) {
    weft_chan *channel = make_u64();
    stalling_args args = {channel, 100, 1, 0};
    pthread_t sender;
    start_stalled_sender(&sender, &args);
    recv_args receive = {.channel = channel};
    pthread_t receiver;
    start_thread(&receiver, receiver_main, &receive);
    ck_assert(int_becomes(&receive.arrived, 1));
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&receive.done), 0);
    resume_and_join(sender);
    join_thread(receiver);
    ck_assert_int_eq(receive.result, 0);
    ck_assert_uint_eq(receive.value, 100);
    weft_chan_release(channel);
}
END_TEST

static void *stalling_single_sender_main(void *arg) {
    stalling_args *args = arg;
    stall_this_send = true;
    atomic_store(&args->done, weft_chan_send(args->channel, &args->first) == 0 ? 1 : -1);
    return NULL;
}

/* A send under way when the channel is closed may be delivered or report
 * WEFT_ECLOSED, but its value is received exactly when it reports 0. */
START_TEST(send_stalled_across_a_close_is_delivered_exactly_when_it_succeeds) {
    weft_chan *channel = make_u64();
    send_range(channel, 0, 2);
    stalling_args args = {channel, 100, 1, 0};
    atomic_store(&stalled, 0);
    atomic_store(&resume, 0);
    weft__list_reserved_hook = stall_after_reserving;
    pthread_t thread;
    start_thread(&thread, stalling_single_sender_main, &args);
    ck_assert(int_becomes(&stalled, 1));
    ck_assert_int_eq(weft_chan_close(channel), 0);
    expect_range(channel, 0, 2);
    uint64_t got = 0;
    int early = weft_chan_try_recv(channel, &got); /* never waits for the stalled send */
    ck_assert(early == WEFT_EAGAIN || early == WEFT_ECLOSED);
    resume_and_join(thread);
    int late = early == WEFT_ECLOSED ? early : weft_chan_recv(channel, &got);
    if (atomic_load(&args.done) == 1) {
        ck_assert_int_eq(late, 0);
        ck_assert_uint_eq(got, 100);
        ck_assert_int_eq(weft_chan_recv(channel, &got), WEFT_ECLOSED);
    } else {
        ck_assert_int_eq(late, WEFT_ECLOSED);
    }
    weft_chan_release(channel);
}
END_TEST

/* Senders that dawdle between reserving and writing for about as long as a
 * try_recv polls before it gives a slot up: the give-up races the write
 * (both orders, and the race for the value after it), yet each value
 * arrives once, in order per sender. */
static _Thread_local uint64_t dawdle_state;

static void dawdle_after_reserving(void) {
    unsigned pauses = (unsigned)(test_random(&dawdle_state) % 96);
    for (unsigned i = 0; i < pauses; i++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause(); /* as lib/backoff.h polls */
#else
        __asm__ __volatile__("" ::: "memory");
#endif
    }
}

typedef struct {
    weft_chan *channel;
    uint32_t *next; /* per sender: the next sequence number expected */
    _Atomic long *received;
    _Atomic unsigned char *seen; /* sender * per_sender + seq */
    uint32_t per_sender;
    long total;
    int failures;
} polling_args;

static void *polling_receiver_main(void *arg) {
    polling_args *args = arg;
    while (atomic_load(args->received) < args->total) {
        uint64_t value;
        if (weft_chan_try_recv(args->channel, &value) != 0) continue;
        atomic_fetch_add(args->received, 1);
        /* Each receiver checks order among what it got: per sender, rising. */
        uint32_t sender = (uint32_t)(value >> 32), seq = (uint32_t)value;
        if (sender >= 2 || seq >= args->per_sender ||
            (args->next[sender] > 0 && seq < args->next[sender])) {
            args->failures++;
            continue;
        }
        args->next[sender] = seq + 1;
        atomic_fetch_add(&args->seen[sender * args->per_sender + seq], 1);
    }
    return NULL;
}

START_TEST(try_recv_racing_slow_writers_receives_each_value_once_in_order) {
    enum { SENDERS = 2, RECEIVERS = 2 };
    uint32_t per_sender = (uint32_t)scaled(30000);
    weft_chan *channel = make_u64();
    weft__list_reserved_hook = dawdle_after_reserving;
    _Atomic long received = 0;
    _Atomic unsigned char *seen = calloc((size_t)SENDERS * per_sender, sizeof *seen);
    ck_assert_ptr_nonnull(seen);
    uint32_t next[RECEIVERS][SENDERS] = {{0}};
    polling_args receivers[RECEIVERS];
    pthread_t receiver_threads[RECEIVERS], sender_threads[SENDERS];
    sender_args senders[SENDERS];
    for (int r = 0; r < RECEIVERS; r++) {
        receivers[r] = (polling_args){
            channel, next[r], &received, seen, per_sender, (long)SENDERS * per_sender, 0};
        start_thread(&receiver_threads[r], polling_receiver_main, &receivers[r]);
    }
    for (uint32_t s = 0; s < SENDERS; s++) {
        senders[s] = (sender_args){channel, s, per_sender};
        start_thread(&sender_threads[s], tagged_sender_main, &senders[s]);
    }
    for (int s = 0; s < SENDERS; s++) join_thread(sender_threads[s]);
    for (int r = 0; r < RECEIVERS; r++) join_thread(receiver_threads[r]);
    weft__list_reserved_hook = NULL;
    check_worker_failures();
    for (int r = 0; r < RECEIVERS; r++) ck_assert_int_eq(receivers[r].failures, 0);
    ck_assert_int_eq(atomic_load(&received), (long)SENDERS * per_sender);
    assert_each_seen_once(seen, (size_t)SENDERS * per_sender);
    free(seen);
    uint64_t extra;
    ck_assert_int_eq(weft_chan_try_recv(channel, &extra), WEFT_EAGAIN);
    weft_chan_release(channel);
}
END_TEST

/* ---- blocking and waking ----------------------------------------------- */

START_TEST(blocked_recv_is_woken_by_a_send) {
    weft_chan *channel = make_u64();
    recv_args receive = {.channel = channel};
    pthread_t receiver;
    start_thread(&receiver, receiver_main, &receive);
    ck_assert(int_becomes(&receive.arrived, 1));
    sleep_ms(SETTLE_MS);
    uint64_t value = 42;
    ck_assert_int_eq(weft_chan_send(channel, &value), 0);
    join_thread(receiver);
    ck_assert_int_eq(receive.result, 0);
    ck_assert_uint_eq(receive.value, 42);
    weft_chan_release(channel);
}
END_TEST

START_TEST(blocked_recv_is_woken_by_close) {
    weft_chan *channel = make_u64();
    recv_args receive = {.channel = channel};
    pthread_t receiver;
    start_thread(&receiver, receiver_main, &receive);
    ck_assert(int_becomes(&receive.arrived, 1));
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(weft_chan_close(channel), 0);
    join_thread(receiver);
    ck_assert_int_eq(receive.result, WEFT_ECLOSED);
    weft_chan_release(channel);
}
END_TEST

START_TEST(recv_until_times_out_on_an_empty_channel) {
    weft_chan *channel = make_u64();
    uint64_t got;
    weft_time start = weft_now();
    ck_assert_int_eq(weft_chan_recv_until(channel, &got, weft_deadline(WEFT_MS(20))),
                     WEFT_ETIMEDOUT);
    ck_assert_int_ge(weft_now() - start, WEFT_MS(20));
    weft_chan_release(channel);
}
END_TEST

START_TEST(select_sends_on_an_unbounded_case_at_once) {
    weft_chan *channel = make_u64(), *never = weft_chan_make(sizeof(uint64_t), 0);
    ck_assert_ptr_nonnull(never);
    uint64_t value = 5, sink;
    weft_case cases[] = {WEFT_RECV_CASE(never, &sink), WEFT_SEND_CASE(channel, &value)};
    for (int i = 0; i < 40; i++) ck_assert_int_eq(weft_select(cases, 2, WEFT_FOREVER), 1);
    ck_assert_uint_eq(weft_chan_len(channel), 40);
    weft_chan_release(channel);
    weft_chan_release(never);
}
END_TEST

typedef struct {
    weft_chan *channel, *other;
    uint64_t value;
    int chosen, err;
    atomic_int arrived;
} select_args;

static void *selecting_receiver_main(void *arg) {
    select_args *args = arg;
    uint64_t sink;
    weft_case cases[] = {WEFT_RECV_CASE(args->other, &sink),
                         WEFT_RECV_CASE(args->channel, &args->value)};
    atomic_store(&args->arrived, 1);
    args->chosen = weft_select(cases, 2, WEFT_FOREVER);
    args->err = cases[args->chosen >= 0 ? args->chosen : 0].err;
    return NULL;
}

START_TEST(select_blocked_on_an_unbounded_recv_case_is_woken_by_a_send) {
    weft_chan *channel = make_u64(), *other = weft_chan_make(sizeof(uint64_t), 0);
    ck_assert_ptr_nonnull(other);
    select_args args = {.channel = channel, .other = other};
    pthread_t thread;
    start_thread(&thread, selecting_receiver_main, &args);
    ck_assert(int_becomes(&args.arrived, 1));
    sleep_ms(SETTLE_MS);
    uint64_t value = 9;
    ck_assert_int_eq(weft_chan_send(channel, &value), 0);
    join_thread(thread);
    ck_assert_int_eq(args.chosen, 1);
    ck_assert_int_eq(args.err, 0);
    ck_assert_uint_eq(args.value, 9);
    weft_chan_release(channel);
    weft_chan_release(other);
}
END_TEST

START_TEST(nonblocking_select_takes_a_queued_value) {
    weft_chan *channel = make_u64();
    uint64_t got = 0;
    weft_case cases[] = {WEFT_RECV_CASE(channel, &got)};
    ck_assert_int_eq(weft_select(cases, 1, WEFT_NOWAIT), WEFT_EAGAIN);
    send_range(channel, 3, 1);
    ck_assert_int_eq(weft_select(cases, 1, WEFT_NOWAIT), 0);
    ck_assert_uint_eq(got, 3);
    weft_chan_release(channel);
}
END_TEST

typedef struct {
    weft_chan *channel;
    weft_ctx *ctx;
    int result;
    atomic_int arrived;
} ctx_args;

static void *ctx_receiver_main(void *arg) {
    ctx_args *args = arg;
    uint64_t got;
    atomic_store(&args->arrived, 1);
    args->result = weft_chan_recv_ctx(args->channel, &got, args->ctx);
    return NULL;
}

START_TEST(recv_ctx_returns_when_the_context_is_canceled) {
    weft_chan *channel = make_u64();
    ctx_args args = {.channel = channel, .ctx = weft_ctx_with_cancel(NULL)};
    ck_assert_ptr_nonnull(args.ctx);
    pthread_t thread;
    start_thread(&thread, ctx_receiver_main, &args);
    ck_assert(int_becomes(&args.arrived, 1));
    sleep_ms(SETTLE_MS);
    weft_ctx_cancel(args.ctx);
    join_thread(thread);
    ck_assert_int_eq(args.result, WEFT_ECANCELED);
    /* The send side of a context call never waits. */
    uint64_t value = 1;
    ck_assert_int_eq(weft_chan_send_ctx(channel, &value, NULL), 0);
    ck_assert_uint_eq(weft_chan_len(channel), 1);
    weft_ctx_release(args.ctx);
    weft_chan_release(channel);
}
END_TEST

/* ---- lifetimes --------------------------------------------------------- */

typedef struct {
    weft_chan *channel; /* owned: released right after the last value */
    uint64_t count;
    int failures;
} owner_args;

static void *owning_receiver_main(void *arg) {
    owner_args *args = arg;
    for (uint64_t v = 0; v < args->count; v++) {
        uint64_t got;
        if (weft_chan_recv(args->channel, &got) != 0 || got != v) args->failures++;
    }
    weft_chan_release(args->channel);
    return NULL;
}

/* The sender holds no reference: the receiver frees the channel as soon
 * as it has the last value, while the sender may still be returning from
 * its send (AddressSanitizer and ThreadSanitizer would see a late touch).
 * Counts around a block's end exercise the head moving on. */
START_TEST(receiver_releases_right_after_the_last_value) {
    long rounds = scaled(2000);
    for (long round = 0; round < rounds; round++) {
        owner_args args = {make_u64(), (uint64_t)(BLOCK - 2 + round % 5), 0};
        pthread_t receiver;
        weft_chan *channel = args.channel;
        start_thread(&receiver, owning_receiver_main, &args);
        for (uint64_t v = 0; v < args.count; v++) ck_assert_int_eq(weft_chan_send(channel, &v), 0);
        join_thread(receiver);
        ck_assert_int_eq(args.failures, 0);
    }
}
END_TEST

static void *closing_receiver_main(void *arg) {
    owner_args *args = arg;
    uint64_t got;
    while (weft_chan_recv(args->channel, &got) == 0) args->count++;
    weft_chan_release(args->channel);
    return NULL;
}

START_TEST(receiver_releases_right_after_seeing_the_close) {
    long rounds = scaled(2000);
    for (long round = 0; round < rounds; round++) {
        owner_args args = {make_u64(), 0, 0};
        weft_chan *channel = args.channel;
        pthread_t receiver;
        start_thread(&receiver, closing_receiver_main, &args);
        uint64_t sent = (uint64_t)(round % (2 * BLOCK));
        for (uint64_t v = 0; v < sent; v++) ck_assert_int_eq(weft_chan_send(channel, &v), 0);
        ck_assert_int_eq(weft_chan_close(channel), 0);
        join_thread(receiver);
        ck_assert_uint_eq(args.count, sent);
    }
}
END_TEST

static Suite *unbounded_suite(void) {
    Suite *suite = suite_create("unbounded");
    TCase *tc = new_case(suite, "basics");
    tcase_add_test(tc, million_sends_with_no_receiver_are_all_received_in_order);
    tcase_add_test(tc, cap_is_unbounded_and_len_counts_queued_values);
    tcase_add_test(tc, close_drains_queued_values_then_reports_closed);
    tcase_add_test(tc, typed_unbounded_channel_round_trips);
    tcase_add_test(tc, signal_only_unbounded_channel_counts_signals);
    tcase_add_test(tc, make_unbounded_with_size_overflow_is_einval);
    tcase_add_test(tc, steady_send_and_receive_allocate_nothing);

    tc = new_case(suite, "threads");
    tcase_add_test(tc, values_arrive_in_fifo_order_per_sender);
    tcase_add_loop_test(tc, mpmc_receives_each_value_exactly_once, 0, 2);

    tc = new_case(suite, "stalled sender");
    tcase_add_test(tc, try_recv_does_not_wait_for_a_stalled_sender);
    tcase_add_test(tc, try_recv_does_not_wait_for_a_stalled_sender_linking_a_block);
    tcase_add_test(tc, blocked_recv_gets_a_stalled_senders_value_once_it_resumes);
    tcase_add_test(tc, send_stalled_across_a_close_is_delivered_exactly_when_it_succeeds);
    tcase_add_test(tc, try_recv_racing_slow_writers_receives_each_value_once_in_order);

    tc = new_case(suite, "blocking");
    tcase_add_test(tc, blocked_recv_is_woken_by_a_send);
    tcase_add_test(tc, blocked_recv_is_woken_by_close);
    tcase_add_test(tc, recv_until_times_out_on_an_empty_channel);
    tcase_add_test(tc, select_sends_on_an_unbounded_case_at_once);
    tcase_add_test(tc, select_blocked_on_an_unbounded_recv_case_is_woken_by_a_send);
    tcase_add_test(tc, nonblocking_select_takes_a_queued_value);
    tcase_add_test(tc, recv_ctx_returns_when_the_context_is_canceled);

    tc = new_case(suite, "lifetime");
    tcase_add_test(tc, receiver_releases_right_after_the_last_value);
    tcase_add_test(tc, receiver_releases_right_after_seeing_the_close);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(unbounded_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
