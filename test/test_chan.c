/* Channel tests, written from the contract in include/weft/chan.h and
 * DESIGN.md ("Channels"), not from the implementation.
 *
 * Most tests are loop tests over the capacities 0 (unbuffered), 1 and
 * 1024: the loop index _i picks caps[_i]. Producer/consumer threads are
 * plain pthreads. Heavy tests honour WEFT_TEST_SCALE (see testutil.h). */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft/chan.h"
#include "weft/error.h"
#include "weft/select.h"
#include "weft/time.h"

#include "alloc.h"
#include "testutil.h"

static const size_t caps[] = {0, 1, 1024};
#define CAP_COUNT 3

/* Typed channels: checked by the compiler. */
struct point {
    int x;
    double y;
    char tag[8];
};
WEFT_CHAN_DEFINE(int_chan, int)
WEFT_CHAN_DEFINE(point_chan, struct point)

/* ---------------------------------------------------------------------
 * One blocking operation on its own thread. */

enum op_kind { OP_SEND, OP_RECV };

typedef struct {
    weft_chan *chan;
    enum op_kind kind;
    int value;           /* send: the value; recv: preset, then what arrived */
    weft_time deadline;  /* WEFT_FOREVER: the plain call; otherwise the _until form */
    int result;          /* the call's return value */
    atomic_int *arrived; /* bumped just before the call (may be NULL) */
    atomic_int done;     /* set once the call returned */
} chan_op;

static void *chan_op_main(void *arg) {
    chan_op *op = arg;
    int rc;
    if (op->arrived) atomic_fetch_add(op->arrived, 1);
    if (op->kind == OP_SEND)
        rc = op->deadline == WEFT_FOREVER
                 ? weft_chan_send(op->chan, &op->value)
                 : weft_chan_send_until(op->chan, &op->value, op->deadline);
    else
        rc = op->deadline == WEFT_FOREVER
                 ? weft_chan_recv(op->chan, &op->value)
                 : weft_chan_recv_until(op->chan, &op->value, op->deadline);
    op->result = rc;
    atomic_store(&op->done, 1);
    return NULL;
}

static void chan_op_init(chan_op *op, weft_chan *chan, enum op_kind kind, int value,
                         weft_time deadline, atomic_int *arrived) {
    op->chan = chan;
    op->kind = kind;
    op->value = value;
    op->deadline = deadline;
    op->result = 12345;
    op->arrived = arrived;
    atomic_init(&op->done, 0);
}

/* Fill a buffered channel of ints to capacity with base, base+1, ... */
static void fill_ints(weft_chan *c, size_t cap, int base) {
    for (size_t i = 0; i < cap; i++) {
        int v = base + (int)i;
        ck_assert_int_eq(weft_chan_try_send(c, &v), 0);
    }
}

/* Receive cap ints and check they are base, base+1, ... in order. */
static void drain_ints(weft_chan *c, size_t cap, int base) {
    for (size_t i = 0; i < cap; i++) {
        int v = -1;
        ck_assert_int_eq(weft_chan_try_recv(c, &v), 0);
        ck_assert_int_eq(v, base + (int)i);
    }
}

/* ---------------------------------------------------------------------
 * FIFO per sender */

typedef struct {
    int32_t sender;
    int32_t seq;
} tagged;

typedef struct {
    weft_chan *chan;
    int sender;
    int count;
} fifo_sender;

static void *fifo_sender_main(void *arg) {
    fifo_sender *s = arg;
    for (int i = 0; i < s->count; i++) {
        tagged t = {s->sender, i};
        WORKER_EXPECT(weft_chan_send(s->chan, &t) == 0);
    }
    return NULL;
}

START_TEST(test_values_arrive_in_fifo_order_per_sender) {
    enum { SENDERS = 4 };
    int per_sender = (int)scaled(25000);
    weft_chan *c = weft_chan_make(sizeof(tagged), caps[_i]);
    ck_assert_ptr_nonnull(c);
    fifo_sender senders[SENDERS];
    pthread_t threads[SENDERS];
    for (int s = 0; s < SENDERS; s++) {
        senders[s] = (fifo_sender){c, s, per_sender};
        start_thread(&threads[s], fifo_sender_main, &senders[s]);
    }
    int next[SENDERS] = {0};
    for (long k = 0; k < (long)SENDERS * per_sender; k++) {
        tagged t = {-1, -1};
        ck_assert_int_eq(weft_chan_recv(c, &t), 0);
        ck_assert_msg(t.sender >= 0 && t.sender < SENDERS, "corrupt value: sender %d", t.sender);
        ck_assert_msg(t.seq >= next[t.sender], "sender %d: seq %d after %d (FIFO violated)",
                      t.sender, t.seq, next[t.sender] - 1);
        ck_assert_msg(t.seq == next[t.sender], "sender %d: seq %d missing (got %d)", t.sender,
                      next[t.sender], t.seq);
        next[t.sender]++;
    }
    for (int s = 0; s < SENDERS; s++) join_thread(threads[s]);
    check_worker_failures();
    tagged extra;
    ck_assert_int_eq(weft_chan_try_recv(c, &extra), WEFT_EAGAIN);
    weft_chan_release(c);
}
END_TEST

/* ---------------------------------------------------------------------
 * Exactly once under contention */

typedef struct {
    weft_chan *chan;
    uint32_t first, count;
} range_producer;

static void *range_producer_main(void *arg) {
    range_producer *p = arg;
    for (uint32_t i = 0; i < p->count; i++) {
        uint32_t v = p->first + i;
        WORKER_EXPECT(weft_chan_send(p->chan, &v) == 0);
    }
    return NULL;
}

typedef struct {
    weft_chan *chan;
    _Atomic unsigned char *seen;
    uint32_t total;
    uint64_t count, sum;
} counting_consumer;

static void *counting_consumer_main(void *arg) {
    counting_consumer *k = arg;
    for (;;) {
        uint32_t v;
        int rc = weft_chan_recv(k->chan, &v);
        if (rc == WEFT_ECLOSED) break;
        WORKER_EXPECT(rc == 0);
        if (rc != 0) break;
        WORKER_EXPECT(v < k->total);
        if (v >= k->total) continue;
        atomic_fetch_add_explicit(&k->seen[v], 1, memory_order_relaxed);
        k->count++;
        k->sum += v;
    }
    return NULL;
}

START_TEST(test_each_value_received_exactly_once_under_contention) {
    enum { PRODUCERS = 4, CONSUMERS = 4 };
    uint32_t per_producer = (uint32_t)scaled(100000);
    uint32_t total = PRODUCERS * per_producer;
    weft_chan *c = weft_chan_make(sizeof(uint32_t), caps[_i]);
    ck_assert_ptr_nonnull(c);
    _Atomic unsigned char *seen = calloc(total, sizeof *seen);
    ck_assert_ptr_nonnull(seen);
    range_producer producers[PRODUCERS];
    counting_consumer consumers[CONSUMERS];
    pthread_t producer_threads[PRODUCERS], consumer_threads[CONSUMERS];
    for (int k = 0; k < CONSUMERS; k++) {
        consumers[k] = (counting_consumer){c, seen, total, 0, 0};
        start_thread(&consumer_threads[k], counting_consumer_main, &consumers[k]);
    }
    for (int p = 0; p < PRODUCERS; p++) {
        producers[p] = (range_producer){c, (uint32_t)p * per_producer, per_producer};
        start_thread(&producer_threads[p], range_producer_main, &producers[p]);
    }
    for (int p = 0; p < PRODUCERS; p++) join_thread(producer_threads[p]);
    ck_assert_int_eq(weft_chan_close(c), 0);
    for (int k = 0; k < CONSUMERS; k++) join_thread(consumer_threads[k]);
    check_worker_failures();

    uint64_t count = 0, sum = 0;
    for (int k = 0; k < CONSUMERS; k++) {
        count += consumers[k].count;
        sum += consumers[k].sum;
    }
    assert_each_seen_once(seen, total);
    ck_assert_uint_eq(count, total);
    ck_assert_uint_eq(sum, (uint64_t)total * (total - 1) / 2);
    free(seen);
    weft_chan_release(c);
}
END_TEST

/* ---------------------------------------------------------------------
 * Close */

START_TEST(test_close_wakes_every_blocked_receiver) {
    enum { RECEIVERS = 8 };
    weft_chan *c = weft_chan_make(sizeof(int), caps[_i]);
    ck_assert_ptr_nonnull(c);
    atomic_int arrived = 0;
    chan_op ops[RECEIVERS];
    pthread_t threads[RECEIVERS];
    for (int r = 0; r < RECEIVERS; r++) {
        /* Half block in recv, half in recv_until with a far deadline. */
        weft_time deadline = r % 2 ? weft_now() + WEFT_SEC(100) : WEFT_FOREVER;
        chan_op_init(&ops[r], c, OP_RECV, -7, deadline, &arrived);
        start_thread(&threads[r], chan_op_main, &ops[r]);
    }
    wait_for_count(&arrived, RECEIVERS);
    for (int r = 0; r < RECEIVERS; r++)
        ck_assert_msg(!atomic_load(&ops[r].done), "receiver %d returned on an empty channel", r);
    ck_assert_int_eq(weft_chan_close(c), 0);
    for (int r = 0; r < RECEIVERS; r++) join_thread(threads[r]);
    for (int r = 0; r < RECEIVERS; r++) {
        ck_assert_msg(ops[r].result == WEFT_ECLOSED, "receiver %d: %d", r, ops[r].result);
        ck_assert_msg(ops[r].value == -7, "receiver %d: elem written on close", r);
    }
    weft_chan_release(c);
}
END_TEST

START_TEST(test_close_wakes_every_blocked_sender) {
    enum { SENDERS = 8, FILL_BASE = 1000000 };
    size_t cap = caps[_i];
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    fill_ints(c, cap, FILL_BASE); /* full: every further send blocks */
    atomic_int arrived = 0;
    chan_op ops[SENDERS];
    pthread_t threads[SENDERS];
    for (int s = 0; s < SENDERS; s++) {
        weft_time deadline = s % 2 ? weft_now() + WEFT_SEC(100) : WEFT_FOREVER;
        chan_op_init(&ops[s], c, OP_SEND, s, deadline, &arrived);
        start_thread(&threads[s], chan_op_main, &ops[s]);
    }
    wait_for_count(&arrived, SENDERS);
    for (int s = 0; s < SENDERS; s++)
        ck_assert_msg(!atomic_load(&ops[s].done), "sender %d returned with no room", s);
    ck_assert_int_eq(weft_chan_close(c), 0);
    for (int s = 0; s < SENDERS; s++) join_thread(threads[s]);
    for (int s = 0; s < SENDERS; s++)
        ck_assert_msg(ops[s].result == WEFT_ECLOSED, "sender %d: %d", s, ops[s].result);
    /* The buffered values survive the close; no blocked sender's does. */
    ck_assert_uint_eq(weft_chan_len(c), cap);
    for (size_t i = 0; i < cap; i++) {
        int v = -1;
        ck_assert_int_eq(weft_chan_recv(c, &v), 0);
        ck_assert_int_eq(v, FILL_BASE + (int)i);
    }
    int v = -1;
    ck_assert_int_eq(weft_chan_recv(c, &v), WEFT_ECLOSED);
    ck_assert_int_eq(v, -1);
    weft_chan_release(c);
}
END_TEST

/* Senders that send until close, and receivers that receive until close:
 * the values received are exactly those whose send returned 0. */
enum { RACE_SENDERS = 4, RACE_RECEIVERS = 2, RACE_STRIDE = 1 << 24 };

typedef struct {
    weft_chan *chan;
    int id;
    int sent; /* sends that returned 0: seqs 0..sent-1 */
} race_sender;

static void *race_sender_main(void *arg) {
    race_sender *s = arg;
    for (int i = 0; i < RACE_STRIDE; i++) {
        int v = s->id * RACE_STRIDE + i;
        int rc = weft_chan_send(s->chan, &v);
        if (rc == WEFT_ECLOSED) return NULL;
        WORKER_EXPECT(rc == 0);
        if (rc != 0) return NULL;
        s->sent++;
    }
    return NULL;
}

typedef struct {
    weft_chan *chan;
    atomic_long *received_total;
    value_log log;
} race_receiver;

static void *race_receiver_main(void *arg) {
    race_receiver *r = arg;
    for (;;) {
        int v;
        int rc = weft_chan_recv(r->chan, &v);
        if (rc == WEFT_ECLOSED) return NULL;
        WORKER_EXPECT(rc == 0);
        if (rc != 0) return NULL;
        log_append(&r->log, (uint64_t)v);
        atomic_fetch_add(r->received_total, 1);
    }
}

START_TEST(test_close_delivers_exactly_the_sends_that_succeeded) {
    weft_chan *c = weft_chan_make(sizeof(int), caps[_i]);
    ck_assert_ptr_nonnull(c);
    atomic_long received_total = 0;
    race_sender senders[RACE_SENDERS];
    race_receiver receivers[RACE_RECEIVERS];
    pthread_t sender_threads[RACE_SENDERS], receiver_threads[RACE_RECEIVERS];
    for (int r = 0; r < RACE_RECEIVERS; r++) {
        receivers[r] = (race_receiver){c, &received_total, {0}};
        start_thread(&receiver_threads[r], race_receiver_main, &receivers[r]);
    }
    for (int s = 0; s < RACE_SENDERS; s++) {
        senders[s] = (race_sender){c, s, 0};
        start_thread(&sender_threads[s], race_sender_main, &senders[s]);
    }
    wait_for_count_long(&received_total, scaled(4000));
    ck_assert_int_eq(weft_chan_close(c), 0); /* mid-stream */
    for (int s = 0; s < RACE_SENDERS; s++) join_thread(sender_threads[s]);
    for (int r = 0; r < RACE_RECEIVERS; r++) join_thread(receiver_threads[r]);
    check_worker_failures();

    value_log all = {0};
    for (int r = 0; r < RACE_RECEIVERS; r++) {
        for (size_t k = 0; k < receivers[r].log.count; k++)
            log_append(&all, receivers[r].log.values[k]);
        log_free(&receivers[r].log);
    }
    qsort(all.values, all.count, sizeof *all.values, compare_u64);
    /* Sorted, the log must be exactly sender 0's seqs 0..sent-1, then
     * sender 1's, and so on. */
    size_t k = 0;
    for (int s = 0; s < RACE_SENDERS; s++) {
        for (int i = 0; i < senders[s].sent; i++, k++) {
            uint64_t expected = (uint64_t)s * RACE_STRIDE + (uint64_t)i;
            ck_assert_msg(k < all.count, "sender %d: successful send of seq %d never received", s,
                          i);
            ck_assert_msg(all.values[k] >= expected, "value %llu received twice or unexpectedly",
                          (unsigned long long)all.values[k]);
            ck_assert_msg(all.values[k] == expected,
                          "sender %d: successful send of seq %d never received (next: %llu)", s, i,
                          (unsigned long long)all.values[k]);
        }
    }
    ck_assert_msg(k == all.count, "received %zu values whose send failed (first: %llu)",
                  all.count - k, (unsigned long long)all.values[k]);
    log_free(&all);
    weft_chan_release(c);
}
END_TEST

START_TEST(test_close_keeps_buffered_values_then_reports_closed) {
    size_t cap = caps[_i];
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    fill_ints(c, cap, 100);
    ck_assert_int_eq(weft_chan_close(c), 0);
    ck_assert_uint_eq(weft_chan_len(c), cap);
    for (size_t i = 0; i < cap; i++) {
        int v = -1;
        ck_assert_int_eq(weft_chan_recv(c, &v), 0);
        ck_assert_int_eq(v, 100 + (int)i);
        ck_assert_uint_eq(weft_chan_len(c), cap - i - 1);
    }
    weft_time start = weft_now();
    for (int round = 0; round < 3; round++) {
        int v = -1;
        ck_assert_int_eq(weft_chan_recv(c, &v), WEFT_ECLOSED);
        ck_assert_int_eq(weft_chan_try_recv(c, &v), WEFT_ECLOSED);
        ck_assert_int_eq(weft_chan_recv_until(c, &v, WEFT_NOWAIT), WEFT_ECLOSED);
        ck_assert_int_eq(weft_chan_recv_until(c, &v, weft_now() + WEFT_SEC(30)), WEFT_ECLOSED);
        ck_assert_int_eq(v, -1);
    }
    ck_assert_msg(weft_now() - start < WEFT_SEC(10), "receives on a closed channel blocked");
    weft_chan_release(c);
}
END_TEST

START_TEST(test_send_on_closed_channel_reports_closed) {
    weft_chan *c = weft_chan_make(sizeof(int), caps[_i]);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(weft_chan_close(c), 0);
    int v = 5;
    ck_assert_int_eq(weft_chan_send(c, &v), WEFT_ECLOSED);
    ck_assert_int_eq(weft_chan_try_send(c, &v), WEFT_ECLOSED);
    ck_assert_int_eq(weft_chan_send_until(c, &v, WEFT_NOWAIT), WEFT_ECLOSED);
    ck_assert_int_eq(weft_chan_send_until(c, &v, weft_now() + WEFT_SEC(30)), WEFT_ECLOSED);
    /* Nothing was delivered. */
    ck_assert_uint_eq(weft_chan_len(c), 0);
    int got = -1;
    ck_assert_int_eq(weft_chan_recv(c, &got), WEFT_ECLOSED);
    ck_assert_int_eq(got, -1);
    weft_chan_release(c);
}
END_TEST

typedef struct {
    weft_chan *channel;
    int written_before_close; /* plain: the close must publish it */
} close_publishes_args;

static void *write_then_close(void *arg) {
    close_publishes_args *args = arg;
    args->written_before_close = 42;
    WORKER_EXPECT(weft_chan_close(args->channel) == 0);
    return NULL;
}

/* A send that fails because the channel is closed happens after the close,
 * as a receive that reports it does: what the closer wrote before closing
 * is visible. Read without that ordering, the plain int is a data race,
 * which ThreadSanitizer reports. */
START_TEST(test_send_that_finds_channel_closed_sees_the_closers_writes) {
    weft_chan *c = weft_chan_make(sizeof(int), caps[_i]);
    ck_assert_ptr_nonnull(c);
    close_publishes_args args = {c, 0};
    pthread_t closer;
    start_thread(&closer, write_then_close, &args);
    int v = 1, error;
    /* Keep the channel from filling (or, unbuffered, let the send time
     * out or find its deadline passed) until the close. No assertion
     * before the join: in CK_FORK=no mode a failed one would leave the
     * closer writing into this dead frame. */
    while ((error = weft_chan_send_until(c, &v, weft_deadline(WEFT_US(50)))) == 0 ||
           error == WEFT_ETIMEDOUT || error == WEFT_EAGAIN)
        (void)weft_chan_try_recv(c, NULL);
    int written = args.written_before_close;
    join_thread(closer);
    ck_assert_int_eq(error, WEFT_ECLOSED);
    ck_assert_int_eq(written, 42);
    check_worker_failures();
    weft_chan_release(c);
}
END_TEST

START_TEST(test_double_close_reports_closed) {
    weft_chan *c = weft_chan_make(sizeof(int), caps[_i]);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(weft_chan_close(c), 0);
    ck_assert_int_eq(weft_chan_close(c), WEFT_ECLOSED);
    ck_assert_int_eq(weft_chan_close(c), WEFT_ECLOSED);
    weft_chan_release(c);
}
END_TEST

START_TEST(test_close_null_channel_is_einval) {
    ck_assert_int_eq(weft_chan_close(NULL), WEFT_EINVAL);
}
END_TEST

/* ---------------------------------------------------------------------
 * Closed beats would-block */

START_TEST(test_nonblocking_recv_on_closed_drained_channel_reports_closed) {
    weft_chan *c = weft_chan_make(sizeof(int), caps[_i]);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(weft_chan_close(c), 0);
    int v = -1;
    ck_assert_int_eq(weft_chan_try_recv(c, &v), WEFT_ECLOSED);
    ck_assert_int_eq(weft_chan_recv_until(c, &v, WEFT_NOWAIT), WEFT_ECLOSED);
    ck_assert_int_eq(weft_chan_recv_until(c, &v, weft_now() - WEFT_MS(5)), WEFT_ECLOSED);
    ck_assert_int_eq(v, -1);
    weft_chan_release(c);
}
END_TEST

START_TEST(test_nonblocking_send_on_closed_full_channel_reports_closed) {
    size_t cap = caps[_i];
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    fill_ints(c, cap, 40); /* full (or unbuffered with no receiver): would block */
    ck_assert_int_eq(weft_chan_close(c), 0);
    int v = 9;
    ck_assert_int_eq(weft_chan_try_send(c, &v), WEFT_ECLOSED);
    ck_assert_int_eq(weft_chan_send_until(c, &v, WEFT_NOWAIT), WEFT_ECLOSED);
    ck_assert_int_eq(weft_chan_send_until(c, &v, weft_now() - WEFT_MS(5)), WEFT_ECLOSED);
    drain_ints(c, cap, 40);
    ck_assert_int_eq(weft_chan_try_recv(c, &v), WEFT_ECLOSED);
    weft_chan_release(c);
}
END_TEST

/* ---------------------------------------------------------------------
 * Would block */

START_TEST(test_nonblocking_recv_on_empty_channel_would_block) {
    weft_chan *c = weft_chan_make(sizeof(int), caps[_i]);
    ck_assert_ptr_nonnull(c);
    int v = -1;
    ck_assert_int_eq(weft_chan_try_recv(c, &v), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_recv_until(c, &v, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_recv_until(c, &v, weft_now()), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_recv_until(c, &v, weft_now() - WEFT_SEC(1)), WEFT_EAGAIN);
    ck_assert_int_eq(v, -1);
    weft_chan_release(c);
}
END_TEST

START_TEST(test_nonblocking_send_on_full_channel_would_block) {
    size_t cap = caps[_i];
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    fill_ints(c, cap, 7); /* full; unbuffered has no receiver */
    int v = 99;
    ck_assert_int_eq(weft_chan_try_send(c, &v), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_send_until(c, &v, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_send_until(c, &v, weft_now()), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_send_until(c, &v, weft_now() - WEFT_SEC(1)), WEFT_EAGAIN);
    /* None of those values went in. */
    ck_assert_uint_eq(weft_chan_len(c), cap);
    drain_ints(c, cap, 7);
    ck_assert_int_eq(weft_chan_try_recv(c, &v), WEFT_EAGAIN);
    weft_chan_release(c);
}
END_TEST

/* A deadline in the past still tries once: it succeeds when it can. */
START_TEST(test_past_deadline_still_tries_once) {
    size_t cap = caps[_i];
    if (cap == 0) return; /* unbuffered: covered by the try_send/try_recv partner tests */
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    int v = 31;
    ck_assert_int_eq(weft_chan_send_until(c, &v, WEFT_NOWAIT), 0);
    int got = -1;
    ck_assert_int_eq(weft_chan_recv_until(c, &got, weft_now() - WEFT_SEC(1)), 0);
    ck_assert_int_eq(got, 31);
    v = 32;
    ck_assert_int_eq(weft_chan_send_until(c, &v, weft_now() - WEFT_SEC(1)), 0);
    ck_assert_int_eq(weft_chan_recv_until(c, &got, WEFT_NOWAIT), 0);
    ck_assert_int_eq(got, 32);
    weft_chan_release(c);
}
END_TEST

/* ---------------------------------------------------------------------
 * Deadlines */

START_TEST(test_recv_until_times_out_never_early) {
    weft_chan *c = weft_chan_make(sizeof(int), caps[_i]);
    ck_assert_ptr_nonnull(c);
    int v = -1;
    weft_time deadline = weft_now() + WEFT_MS(30);
    ck_assert_int_eq(weft_chan_recv_until(c, &v, deadline), WEFT_ETIMEDOUT);
    weft_time now = weft_now();
    ck_assert_msg(now >= deadline, "returned %lld ns early", (long long)(deadline - now));
    ck_assert_int_eq(v, -1);
    weft_chan_release(c);
}
END_TEST

START_TEST(test_send_until_times_out_never_early_and_is_not_delivered) {
    size_t cap = caps[_i];
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    fill_ints(c, cap, 0);
    int v = 555;
    weft_time deadline = weft_now() + WEFT_MS(30);
    ck_assert_int_eq(weft_chan_send_until(c, &v, deadline), WEFT_ETIMEDOUT);
    weft_time now = weft_now();
    ck_assert_msg(now >= deadline, "returned %lld ns early", (long long)(deadline - now));
    /* The timed-out value never shows up, not even a while later. */
    drain_ints(c, cap, 0);
    ck_assert_int_eq(weft_chan_try_recv(c, &v), WEFT_EAGAIN);
    sleep_ms(10);
    ck_assert_int_eq(weft_chan_try_recv(c, &v), WEFT_EAGAIN);
    ck_assert_uint_eq(weft_chan_len(c), 0);
    weft_chan_release(c);
}
END_TEST

typedef struct {
    weft_chan *chan;
    atomic_int *arrived; /* the test thread bumps it just before blocking */
    enum op_kind kind;
    int value;
} late_partner;

static void *late_partner_main(void *arg) {
    late_partner *p = arg;
    while (atomic_load(p->arrived) == 0) sleep_ms(1);
    sleep_ms(SETTLE_MS);
    if (p->kind == OP_SEND)
        WORKER_EXPECT(weft_chan_send(p->chan, &p->value) == 0);
    else
        WORKER_EXPECT(weft_chan_recv(p->chan, &p->value) == 0);
    return NULL;
}

START_TEST(test_recv_until_gets_value_arriving_before_deadline) {
    weft_chan *c = weft_chan_make(sizeof(int), caps[_i]);
    ck_assert_ptr_nonnull(c);
    atomic_int arrived = 0;
    late_partner partner = {c, &arrived, OP_SEND, 42};
    pthread_t thread;
    start_thread(&thread, late_partner_main, &partner);
    int v = -1;
    weft_time deadline = weft_now() + WEFT_SEC(60);
    atomic_store(&arrived, 1);
    ck_assert_int_eq(weft_chan_recv_until(c, &v, deadline), 0);
    ck_assert_int_eq(v, 42);
    join_thread(thread);
    check_worker_failures();
    weft_chan_release(c);
}
END_TEST

START_TEST(test_send_until_completes_when_receiver_arrives_before_deadline) {
    size_t cap = caps[_i];
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    fill_ints(c, cap, 1);
    atomic_int arrived = 0;
    late_partner partner = {c, &arrived, OP_RECV, -1};
    pthread_t thread;
    start_thread(&thread, late_partner_main, &partner);
    int v = 77;
    atomic_store(&arrived, 1);
    ck_assert_int_eq(weft_chan_send_until(c, &v, weft_now() + WEFT_SEC(60)), 0);
    join_thread(thread);
    check_worker_failures();
    if (cap == 0) {
        ck_assert_int_eq(partner.value, 77);
    } else {
        ck_assert_int_eq(partner.value, 1); /* the oldest value */
        drain_ints(c, cap - 1, 2);
        int last = -1;
        ck_assert_int_eq(weft_chan_try_recv(c, &last), 0);
        ck_assert_int_eq(last, 77);
    }
    ck_assert_int_eq(weft_chan_try_recv(c, &v), WEFT_EAGAIN);
    weft_chan_release(c);
}
END_TEST

/* ---------------------------------------------------------------------
 * Unbuffered hand-off */

START_TEST(test_unbuffered_send_completes_only_after_receive) {
    weft_chan *c = weft_chan_make(sizeof(int), 0);
    ck_assert_ptr_nonnull(c);
    atomic_int arrived = 0;
    chan_op op;
    chan_op_init(&op, c, OP_SEND, 314, WEFT_FOREVER, &arrived);
    pthread_t thread;
    start_thread(&thread, chan_op_main, &op);
    wait_for_count(&arrived, 1);
    sleep_ms(30);
    ck_assert_msg(!atomic_load(&op.done), "unbuffered send returned with no receiver");
    int v = -1;
    ck_assert_int_eq(weft_chan_recv(c, &v), 0);
    ck_assert_int_eq(v, 314);
    join_thread(thread);
    ck_assert_int_eq(atomic_load(&op.done), 1);
    ck_assert_int_eq(op.result, 0);
    weft_chan_release(c);
}
END_TEST

START_TEST(test_unbuffered_try_send_succeeds_with_blocked_receiver) {
    weft_chan *c = weft_chan_make(sizeof(int), 0);
    ck_assert_ptr_nonnull(c);
    atomic_int arrived = 0;
    chan_op op;
    chan_op_init(&op, c, OP_RECV, -1, WEFT_FOREVER, &arrived);
    pthread_t thread;
    start_thread(&thread, chan_op_main, &op);
    wait_for_count(&arrived, 1);
    /* The receiver should be parked by now; retry in case it is slow. */
    int v = 2718, rc = WEFT_EAGAIN;
    for (weft_time give_up = weft_now() + WEFT_SEC(60); weft_now() < give_up; sleep_ms(1))
        if ((rc = weft_chan_try_send(c, &v)) != WEFT_EAGAIN) break;
    ck_assert_int_eq(rc, 0);
    join_thread(thread);
    ck_assert_int_eq(op.result, 0);
    ck_assert_int_eq(op.value, 2718);
    weft_chan_release(c);
}
END_TEST

START_TEST(test_unbuffered_try_recv_succeeds_with_blocked_sender) {
    weft_chan *c = weft_chan_make(sizeof(int), 0);
    ck_assert_ptr_nonnull(c);
    atomic_int arrived = 0;
    chan_op op;
    chan_op_init(&op, c, OP_SEND, 1618, WEFT_FOREVER, &arrived);
    pthread_t thread;
    start_thread(&thread, chan_op_main, &op);
    wait_for_count(&arrived, 1);
    int v = -1, rc = WEFT_EAGAIN;
    for (weft_time give_up = weft_now() + WEFT_SEC(60); weft_now() < give_up; sleep_ms(1))
        if ((rc = weft_chan_try_recv(c, &v)) != WEFT_EAGAIN) break;
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(v, 1618);
    join_thread(thread);
    ck_assert_int_eq(op.result, 0);
    weft_chan_release(c);
}
END_TEST

/* ---------------------------------------------------------------------
 * len, cap */

START_TEST(test_len_counts_buffered_values_and_cap_is_as_made) {
    size_t cap = caps[_i];
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(weft_chan_cap(c), cap);
    ck_assert_uint_eq(weft_chan_elem_size(c), sizeof(int));
    ck_assert_uint_eq(weft_chan_len(c), 0);
    for (size_t i = 0; i < cap; i++) {
        int v = (int)i;
        ck_assert_int_eq(weft_chan_send(c, &v), 0);
        ck_assert_uint_eq(weft_chan_len(c), i + 1);
    }
    for (size_t i = cap; i > 0; i--) {
        ck_assert_int_eq(weft_chan_recv(c, NULL), 0);
        ck_assert_uint_eq(weft_chan_len(c), i - 1);
    }
    ck_assert_uint_eq(weft_chan_cap(c), cap);
    weft_chan_release(c);
}
END_TEST

START_TEST(test_len_of_unbuffered_is_zero_with_blocked_sender) {
    weft_chan *c = weft_chan_make(sizeof(int), 0);
    ck_assert_ptr_nonnull(c);
    atomic_int arrived = 0;
    chan_op op;
    chan_op_init(&op, c, OP_SEND, 1, WEFT_FOREVER, &arrived);
    pthread_t thread;
    start_thread(&thread, chan_op_main, &op);
    wait_for_count(&arrived, 1);
    ck_assert_uint_eq(weft_chan_len(c), 0);
    ck_assert_uint_eq(weft_chan_cap(c), 0);
    ck_assert_int_eq(weft_chan_recv(c, NULL), 0);
    join_thread(thread);
    ck_assert_int_eq(op.result, 0);
    weft_chan_release(c);
}
END_TEST

START_TEST(test_len_cap_elem_size_of_null_channel_are_zero) {
    ck_assert_uint_eq(weft_chan_len(NULL), 0);
    ck_assert_uint_eq(weft_chan_cap(NULL), 0);
    ck_assert_uint_eq(weft_chan_elem_size(NULL), 0);
}
END_TEST

/* ---------------------------------------------------------------------
 * Typed channels */

START_TEST(test_typed_int_channel_operations) {
    int_chan c = int_chan_make(4);
    ck_assert_ptr_nonnull(c.ch);
    ck_assert_uint_eq(int_chan_cap(c), 4);
    ck_assert_uint_eq(weft_chan_elem_size(c.ch), sizeof(int));
    ck_assert_int_eq(int_chan_send(c, 42), 0);
    ck_assert_int_eq(int_chan_try_send(c, 43), 0);
    ck_assert_int_eq(int_chan_send_until(c, 44, weft_now() + WEFT_SEC(10)), 0);
    ck_assert_uint_eq(int_chan_len(c), 3);
    int v = -1;
    ck_assert_int_eq(int_chan_recv(c, &v), 0);
    ck_assert_int_eq(v, 42);
    ck_assert_int_eq(int_chan_try_recv(c, &v), 0);
    ck_assert_int_eq(v, 43);
    ck_assert_int_eq(int_chan_recv_until(c, &v, WEFT_NOWAIT), 0);
    ck_assert_int_eq(v, 44);
    ck_assert_int_eq(int_chan_try_recv(c, &v), WEFT_EAGAIN);
    weft_time deadline = weft_now() + WEFT_MS(10);
    ck_assert_int_eq(int_chan_recv_until(c, &v, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    int_chan_retain(c);
    int_chan_release(c);
    ck_assert_int_eq(int_chan_send(c, 45), 0);
    ck_assert_int_eq(int_chan_close(c), 0);
    ck_assert_int_eq(int_chan_close(c), WEFT_ECLOSED);
    ck_assert_int_eq(int_chan_send(c, 46), WEFT_ECLOSED);
    ck_assert_int_eq(int_chan_recv(c, &v), 0);
    ck_assert_int_eq(v, 45);
    ck_assert_int_eq(int_chan_recv(c, &v), WEFT_ECLOSED);
    int_chan_release(c);
}
END_TEST

typedef struct {
    point_chan chan;
    struct point value;
    int result;
} point_receiver;

static void *point_receiver_main(void *arg) {
    point_receiver *r = arg;
    r->result = point_chan_recv(r->chan, &r->value);
    return NULL;
}

START_TEST(test_typed_struct_channel_round_trips) {
    point_chan c = point_chan_make(0);
    ck_assert_ptr_nonnull(c.ch);
    ck_assert_uint_eq(point_chan_cap(c), 0);
    ck_assert_uint_eq(weft_chan_elem_size(c.ch), sizeof(struct point));
    point_receiver receiver = {c, {0, 0, ""}, 12345};
    pthread_t thread;
    start_thread(&thread, point_receiver_main, &receiver);
    struct point p = {-3, 2.5, "weft"};
    ck_assert_int_eq(point_chan_send(c, p), 0);
    join_thread(thread);
    ck_assert_int_eq(receiver.result, 0);
    ck_assert_int_eq(receiver.value.x, -3);
    ck_assert(receiver.value.y == 2.5);
    ck_assert_str_eq(receiver.value.tag, "weft");
    ck_assert_int_eq(point_chan_try_send(c, p), WEFT_EAGAIN);
    ck_assert_int_eq(point_chan_send_until(c, p, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(point_chan_try_recv(c, &p), WEFT_EAGAIN);
    ck_assert_int_eq(point_chan_recv_until(c, &p, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_uint_eq(point_chan_len(c), 0);
    point_chan_retain(c);
    point_chan_release(c);
    ck_assert_int_eq(point_chan_close(c), 0);
    ck_assert_int_eq(point_chan_recv(c, &p), WEFT_ECLOSED);
    point_chan_release(c);
}
END_TEST

START_TEST(test_typed_cases_work_in_select) {
    int_chan numbers = int_chan_make(1);
    point_chan points = point_chan_make(1);
    ck_assert_ptr_nonnull(numbers.ch);
    ck_assert_ptr_nonnull(points.ch);
    int number = -1;
    struct point out = {7, 1.25, "out"};
    weft_case cases[2] = {int_chan_recv_case(numbers, &number), point_chan_send_case(points, &out)};
    ck_assert_ptr_eq(cases[0].ch, numbers.ch);
    ck_assert_int_eq(cases[0].dir, WEFT_RECV);
    ck_assert_ptr_eq(cases[1].ch, points.ch);
    ck_assert_int_eq(cases[1].dir, WEFT_SEND);
    /* Only the send has room. */
    cases[0].err = cases[1].err = 12345;
    ck_assert_int_eq(weft_select(cases, 2, WEFT_NOWAIT), 1);
    ck_assert_int_eq(cases[1].err, 0);
    struct point in = {0, 0, ""};
    ck_assert_int_eq(point_chan_try_recv(points, &in), 0);
    ck_assert_int_eq(in.x, 7);
    ck_assert_str_eq(in.tag, "out");
    /* Fill points, give numbers a value: only the receive is ready. */
    ck_assert_int_eq(point_chan_send(points, in), 0);
    ck_assert_int_eq(int_chan_send(numbers, 99), 0);
    cases[0].err = cases[1].err = 12345;
    ck_assert_int_eq(weft_select(cases, 2, WEFT_FOREVER), 0);
    ck_assert_int_eq(cases[0].err, 0);
    ck_assert_int_eq(number, 99);
    /* The mirror pair: send an int, receive a point. */
    int seven = 7;
    struct point got = {0, 0, ""};
    weft_case mirror[2] = {int_chan_send_case(numbers, &seven), point_chan_recv_case(points, &got)};
    ck_assert_int_eq(mirror[0].dir, WEFT_SEND);
    ck_assert_int_eq(mirror[1].dir, WEFT_RECV);
    int first = weft_select(mirror, 2, WEFT_NOWAIT); /* both ready */
    ck_assert(first == 0 || first == 1);
    ck_assert_int_eq(weft_select(mirror, 2, WEFT_NOWAIT), 1 - first);
    ck_assert_int_eq(weft_select(mirror, 2, WEFT_NOWAIT),
                     WEFT_EAGAIN); /* numbers full, points empty */
    ck_assert_int_eq(got.x, 7);
    ck_assert_int_eq(int_chan_recv(numbers, &number), 0);
    ck_assert_int_eq(number, 7);
    int_chan_release(numbers);
    point_chan_release(points);
}
END_TEST

/* ---------------------------------------------------------------------
 * Large elements */

enum { BIG_SIZE = 1000 };

typedef struct {
    unsigned char data[BIG_SIZE];
} big_elem;

static unsigned char big_byte(uint32_t producer, uint32_t seq, size_t i) {
    return (unsigned char)(producer * 131u + seq * 31u + (uint32_t)i * 7u + (uint32_t)(i >> 8));
}

static void big_fill(big_elem *e, uint32_t producer, uint32_t seq) {
    memcpy(e->data, &producer, 4);
    memcpy(e->data + 4, &seq, 4);
    for (size_t i = 8; i < BIG_SIZE; i++) e->data[i] = big_byte(producer, seq, i);
}

typedef struct {
    weft_chan *chan;
    uint32_t producer, count;
    uint64_t checksum;
} big_producer;

static void *big_producer_main(void *arg) {
    big_producer *p = arg;
    for (uint32_t seq = 0; seq < p->count; seq++) {
        big_elem e;
        big_fill(&e, p->producer, seq);
        for (size_t i = 0; i < BIG_SIZE; i++) p->checksum += e.data[i];
        WORKER_EXPECT(weft_chan_send(p->chan, &e) == 0);
    }
    return NULL;
}

typedef struct {
    weft_chan *chan;
    uint32_t producers, per_producer;
    _Atomic unsigned char *seen;
    uint64_t checksum, count;
    int corrupt;
} big_consumer;

static void *big_consumer_main(void *arg) {
    big_consumer *k = arg;
    for (;;) {
        big_elem e;
        int rc = weft_chan_recv(k->chan, &e);
        if (rc == WEFT_ECLOSED) return NULL;
        WORKER_EXPECT(rc == 0);
        if (rc != 0) return NULL;
        uint32_t producer, seq;
        memcpy(&producer, e.data, 4);
        memcpy(&seq, e.data + 4, 4);
        for (size_t i = 0; i < BIG_SIZE; i++) k->checksum += e.data[i];
        k->count++;
        if (producer >= k->producers || seq >= k->per_producer) {
            k->corrupt++;
            continue;
        }
        for (size_t i = 8; i < BIG_SIZE; i++)
            if (e.data[i] != big_byte(producer, seq, i)) {
                k->corrupt++;
                break;
            }
        atomic_fetch_add(&k->seen[producer * k->per_producer + seq], 1);
    }
}

START_TEST(test_large_elements_round_trip_intact) {
    enum { PRODUCERS = 2, CONSUMERS = 2 };
    uint32_t per_producer = (uint32_t)scaled(5000);
    weft_chan *c = weft_chan_make(sizeof(big_elem), caps[_i]);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(weft_chan_elem_size(c), BIG_SIZE);
    _Atomic unsigned char *seen = calloc((size_t)PRODUCERS * per_producer, sizeof *seen);
    ck_assert_ptr_nonnull(seen);
    big_producer producers[PRODUCERS];
    big_consumer consumers[CONSUMERS];
    pthread_t producer_threads[PRODUCERS], consumer_threads[CONSUMERS];
    for (int k = 0; k < CONSUMERS; k++) {
        consumers[k] = (big_consumer){c, PRODUCERS, per_producer, seen, 0, 0, 0};
        start_thread(&consumer_threads[k], big_consumer_main, &consumers[k]);
    }
    for (int p = 0; p < PRODUCERS; p++) {
        producers[p] = (big_producer){c, (uint32_t)p, per_producer, 0};
        start_thread(&producer_threads[p], big_producer_main, &producers[p]);
    }
    for (int p = 0; p < PRODUCERS; p++) join_thread(producer_threads[p]);
    ck_assert_int_eq(weft_chan_close(c), 0);
    for (int k = 0; k < CONSUMERS; k++) join_thread(consumer_threads[k]);
    check_worker_failures();
    uint64_t sent_sum = 0, received_sum = 0, count = 0;
    for (int p = 0; p < PRODUCERS; p++) sent_sum += producers[p].checksum;
    for (int k = 0; k < CONSUMERS; k++) {
        received_sum += consumers[k].checksum;
        count += consumers[k].count;
        ck_assert_msg(consumers[k].corrupt == 0, "consumer %d saw %d corrupt elements", k,
                      consumers[k].corrupt);
    }
    ck_assert_uint_eq(count, (uint64_t)PRODUCERS * per_producer);
    ck_assert_uint_eq(received_sum, sent_sum);
    assert_each_seen_once(seen, (size_t)PRODUCERS * per_producer);
    free(seen);
    weft_chan_release(c);
}
END_TEST

/* ---------------------------------------------------------------------
 * Signal-only channels (elem_size 0) */

typedef struct {
    weft_chan *chan;
    int count;
} signal_sender;

static void *signal_sender_main(void *arg) {
    signal_sender *s = arg;
    for (int i = 0; i < s->count; i++) WORKER_EXPECT(weft_chan_send(s->chan, NULL) == 0);
    return NULL;
}

START_TEST(test_signal_only_channel_carries_signals) {
    size_t cap = caps[_i];
    weft_chan *c = weft_chan_make(0, cap);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(weft_chan_elem_size(c), 0);
    ck_assert_uint_eq(weft_chan_cap(c), cap);
    ck_assert_int_eq(weft_chan_try_recv(c, NULL), WEFT_EAGAIN);
    if (cap > 0) {
        for (size_t i = 0; i < cap; i++) {
            ck_assert_int_eq(weft_chan_send(c, NULL), 0);
            ck_assert_uint_eq(weft_chan_len(c), i + 1);
        }
        ck_assert_int_eq(weft_chan_try_send(c, NULL), WEFT_EAGAIN);
        for (size_t i = 0; i + 1 < cap; i++) ck_assert_int_eq(weft_chan_recv(c, NULL), 0);
        ck_assert_uint_eq(weft_chan_len(c), 1);
    } else {
        signal_sender sender = {c, 3};
        pthread_t thread;
        start_thread(&thread, signal_sender_main, &sender);
        for (int i = 0; i < 3; i++) ck_assert_int_eq(weft_chan_recv(c, NULL), 0);
        join_thread(thread);
        check_worker_failures();
        ck_assert_uint_eq(weft_chan_len(c), 0);
        ck_assert_int_eq(weft_chan_try_send(c, NULL), WEFT_EAGAIN);
    }
    ck_assert_int_eq(weft_chan_close(c), 0);
    ck_assert_int_eq(weft_chan_send(c, NULL), WEFT_ECLOSED);
    if (cap > 0) ck_assert_int_eq(weft_chan_recv(c, NULL), 0); /* the last buffered signal */
    ck_assert_int_eq(weft_chan_recv(c, NULL), WEFT_ECLOSED);
    ck_assert_int_eq(weft_chan_try_recv(c, NULL), WEFT_ECLOSED);
    weft_chan_release(c);
}
END_TEST

/* ---------------------------------------------------------------------
 * NULL channel and NULL elem */

START_TEST(test_null_channel_operations_are_einval) {
    int v = 1;
    ck_assert_int_eq(weft_chan_send(NULL, &v), WEFT_EINVAL);
    ck_assert_int_eq(weft_chan_recv(NULL, &v), WEFT_EINVAL);
    ck_assert_int_eq(weft_chan_try_send(NULL, &v), WEFT_EINVAL);
    ck_assert_int_eq(weft_chan_try_recv(NULL, &v), WEFT_EINVAL);
    ck_assert_int_eq(weft_chan_send_until(NULL, &v, WEFT_NOWAIT), WEFT_EINVAL);
    ck_assert_int_eq(weft_chan_recv_until(NULL, &v, WEFT_NOWAIT), WEFT_EINVAL);
    ck_assert_int_eq(weft_chan_send_until(NULL, &v, weft_now() + WEFT_SEC(30)), WEFT_EINVAL);
    ck_assert_int_eq(weft_chan_recv_until(NULL, &v, weft_now() + WEFT_SEC(30)), WEFT_EINVAL);
    ck_assert_int_eq(weft_chan_send_until(NULL, &v, WEFT_FOREVER), WEFT_EINVAL);
    ck_assert_int_eq(weft_chan_recv_until(NULL, &v, WEFT_FOREVER), WEFT_EINVAL);
    ck_assert_int_eq(weft_chan_close(NULL), WEFT_EINVAL);
    ck_assert_int_eq(v, 1);
    weft_chan_retain(NULL); /* ignored */
    weft_chan_release(NULL);
}
END_TEST

START_TEST(test_recv_with_null_elem_discards_the_value) {
    size_t cap = caps[_i];
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    range_producer producer = {c, 1, 2}; /* sends 1, then 2 */
    pthread_t thread;
    start_thread(&thread, range_producer_main, &producer);
    ck_assert_int_eq(weft_chan_recv(c, NULL), 0);
    uint32_t v = 0;
    ck_assert_int_eq(weft_chan_recv(c, &v), 0);
    ck_assert_uint_eq(v, 2);
    join_thread(thread);
    check_worker_failures();
    ck_assert_int_eq(weft_chan_try_recv(c, &v), WEFT_EAGAIN);
    weft_chan_release(c);
}
END_TEST

/* ---------------------------------------------------------------------
 * Construction failures */

/* Resident set size of this process, in bytes (/proc/self/statm). */
static long resident_bytes(void) {
    FILE *statm = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(statm);
    long size = 0, resident = 0;
    ck_assert_int_eq(fscanf(statm, "%ld %ld", &size, &resident), 2);
    fclose(statm);
    return resident * sysconf(_SC_PAGESIZE);
}

/* As Go's make zeroes its buffer, make commits a large ring at once: its
 * first lap must not stop senders on page faults (lib/chan.c, fault_in). */
START_TEST(test_make_commits_a_large_ring_at_once) {
    const size_t cap = (size_t)1 << 20; /* 16 MiB of 8-byte values and stamps */
    long before = resident_bytes();
    weft_chan *ch = weft_chan_make(sizeof(uint64_t), cap);
    ck_assert_ptr_nonnull(ch);
    long grown = resident_bytes() - before;
    ck_assert_msg(grown >= (long)(cap * 16) - (1L << 20),
                  "make grew the resident set by %ld bytes, not the ring's %zu", grown, cap * 16);
    weft_chan_release(ch);
}
END_TEST

START_TEST(test_make_with_size_overflow_is_einval) {
    errno = 0;
    ck_assert_ptr_null(weft_chan_make(SIZE_MAX / 2 + 1, 2));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(weft_chan_make(2, SIZE_MAX / 2 + 1));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(weft_chan_make(SIZE_MAX, SIZE_MAX));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(
        weft_chan_make((size_t)1 << (sizeof(size_t) * 4), (size_t)1 << (sizeof(size_t) * 4)));
    ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_make_allocation_failure_is_enomem) {
    size_t cap = caps[_i];
    weft_chan *c = NULL;
    long k;
    for (k = 1; k <= 1000; k++) {
        weft__alloc_fail_from(k);
        errno = 0;
        c = weft_chan_make(sizeof(big_elem), cap);
        int saved_errno = errno;
        weft__alloc_fail_from(0);
        if (c) break;
        ck_assert_msg(saved_errno == ENOMEM, "k=%ld: make failed with errno %d, not ENOMEM", k,
                      saved_errno);
    }
    ck_assert_msg(c != NULL, "weft_chan_make never succeeded");
    /* The channel that finally came out works. */
    ck_assert_uint_eq(weft_chan_cap(c), cap);
    if (cap > 0) {
        big_elem e, out;
        big_fill(&e, 3, 4);
        ck_assert_int_eq(weft_chan_send(c, &e), 0);
        ck_assert_int_eq(weft_chan_recv(c, &out), 0);
        ck_assert_mem_eq(out.data, e.data, BIG_SIZE);
    }
    weft_chan_release(c);
}
END_TEST

/* A thread whose first blocking call cannot allocate its parker. */
typedef struct {
    weft_chan *chan;
    enum op_kind kind;
    int first, second; /* results */
    int value;
} starved_thread;

static void *starved_thread_main(void *arg) {
    starved_thread *t = arg;
    weft__alloc_fail_from(1);
    weft_time deadline = weft_now() + WEFT_MS(20);
    if (t->kind == OP_RECV)
        t->first = weft_chan_recv_until(t->chan, &t->value, deadline);
    else
        t->first = weft_chan_send_until(t->chan, &t->value, deadline);
    weft__alloc_fail_from(0);
    deadline = weft_now() + WEFT_MS(20);
    if (t->kind == OP_RECV)
        t->second = weft_chan_recv_until(t->chan, &t->value, deadline);
    else
        t->second = weft_chan_send_until(t->chan, &t->value, deadline);
    return NULL;
}

START_TEST(test_first_blocking_recv_without_memory_fails_cleanly) {
    weft_chan *c = weft_chan_make(sizeof(int), caps[_i]);
    ck_assert_ptr_nonnull(c);
    starved_thread t = {c, OP_RECV, 12345, 12345, -1};
    pthread_t thread;
    start_thread(&thread, starved_thread_main, &t);
    join_thread(thread);
    weft__alloc_fail_from(0);
    ck_assert_msg(t.first == WEFT_ENOMEM || t.first == WEFT_ETIMEDOUT, "first blocking recv: %d",
                  t.first);
    ck_assert_int_eq(t.second, WEFT_ETIMEDOUT);
    ck_assert_int_eq(t.value, -1);
    weft_chan_release(c);
}
END_TEST

START_TEST(test_first_blocking_send_without_memory_fails_cleanly) {
    size_t cap = caps[_i];
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    fill_ints(c, cap, 0);
    starved_thread t = {c, OP_SEND, 12345, 12345, 4242};
    pthread_t thread;
    start_thread(&thread, starved_thread_main, &t);
    join_thread(thread);
    weft__alloc_fail_from(0);
    ck_assert_msg(t.first == WEFT_ENOMEM || t.first == WEFT_ETIMEDOUT, "first blocking send: %d",
                  t.first);
    ck_assert_int_eq(t.second, WEFT_ETIMEDOUT);
    /* Neither send was delivered. */
    drain_ints(c, cap, 0);
    int v;
    ck_assert_int_eq(weft_chan_try_recv(c, &v), WEFT_EAGAIN);
    weft_chan_release(c);
}
END_TEST

/* With a partner on the way, a parkerless receiver either gets the value
 * or fails with ENOMEM and leaves it for someone else: never loses it. */
START_TEST(test_first_blocking_recv_without_memory_loses_no_value) {
    weft_chan *c = weft_chan_make(sizeof(int), 0);
    ck_assert_ptr_nonnull(c);
    int scratch;
    /* Make sure this thread's own parker exists before memory runs out. */
    ck_assert_int_eq(weft_chan_recv_until(c, &scratch, weft_now() + WEFT_MS(1)), WEFT_ETIMEDOUT);
    weft__alloc_fail_from(1);
    atomic_int arrived = 0;
    chan_op op;
    chan_op_init(&op, c, OP_RECV, -1, weft_now() + WEFT_SEC(5), &arrived);
    pthread_t thread;
    start_thread(&thread, chan_op_main, &op);
    wait_for_count(&arrived, 1);
    int v = 4711;
    int sent = weft_chan_send_until(c, &v, weft_now() + WEFT_MS(500));
    join_thread(thread);
    weft__alloc_fail_from(0);
    if (op.result == 0) {
        ck_assert_int_eq(op.value, 4711);
        ck_assert_int_eq(sent, 0);
    } else {
        ck_assert_msg(op.result == WEFT_ENOMEM, "receiver: %d", op.result);
        ck_assert_int_eq(op.value, -1);
        ck_assert_msg(sent == WEFT_ETIMEDOUT, "send with no receiver: %d", sent);
    }
    weft_chan_release(c);
}
END_TEST

/* ---------------------------------------------------------------------
 * Reference counting */

START_TEST(test_retain_twice_release_three_times_frees) {
    weft_chan *c = weft_chan_make(sizeof(int), 4);
    ck_assert_ptr_nonnull(c);
    weft_chan_retain(c);
    weft_chan_retain(c);
    weft_chan_release(c);
    int v = 8;
    ck_assert_int_eq(weft_chan_send(c, &v), 0); /* still referenced twice */
    weft_chan_release(c);
    v = -1;
    ck_assert_int_eq(weft_chan_recv(c, &v), 0); /* still referenced once */
    ck_assert_int_eq(v, 8);
    weft_chan_release(c); /* frees: ASan/valgrind report a leak or double free */
}
END_TEST

typedef struct {
    weft_chan *chan; /* a reference this thread owns */
    int result;
} owning_receiver;

static void *owning_receiver_main(void *arg) {
    owning_receiver *r = arg;
    int v = -1;
    r->result = weft_chan_recv(r->chan, &v);
    if (r->result == 0) r->result = v;
    weft_chan_release(r->chan);
    return NULL;
}

START_TEST(test_channel_outlives_its_creator_reference) {
    weft_chan *c = weft_chan_make(sizeof(int), caps[_i]);
    ck_assert_ptr_nonnull(c);
    weft_chan_retain(c);
    owning_receiver receiver = {c, 12345};
    pthread_t thread;
    start_thread(&thread, owning_receiver_main, &receiver);
    int v = 61;
    ck_assert_int_eq(weft_chan_send(c, &v), 0);
    weft_chan_release(c); /* the receiver's reference keeps it alive */
    join_thread(thread);
    ck_assert_int_eq(receiver.result, 61);
}
END_TEST

START_TEST(test_release_frees_buffered_values) {
    size_t cap = caps[_i];
    weft_chan *c = weft_chan_make(sizeof(big_elem), cap);
    ck_assert_ptr_nonnull(c);
    for (size_t i = 0; i < cap; i++) {
        big_elem e;
        big_fill(&e, 1, (uint32_t)i);
        ck_assert_int_eq(weft_chan_try_send(c, &e), 0);
    }
    ck_assert_uint_eq(weft_chan_len(c), cap);
    weft_chan_release(c); /* undrained: the leak checkers see whether it all went */

    weft_chan *closed = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(closed);
    fill_ints(closed, cap, 0);
    ck_assert_int_eq(weft_chan_close(closed), 0);
    weft_chan_release(closed);
}
END_TEST

/* --------------------------------------------------------------------- */

static Suite *chan_suite(void) {
    Suite *suite = suite_create("chan");
    TCase *tc;

    tc = new_case(suite, "order");
    tcase_add_loop_test(tc, test_values_arrive_in_fifo_order_per_sender, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_each_value_received_exactly_once_under_contention, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_large_elements_round_trip_intact, 0, CAP_COUNT);

    tc = new_case(suite, "close");
    tcase_add_loop_test(tc, test_close_wakes_every_blocked_receiver, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_close_wakes_every_blocked_sender, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_close_delivers_exactly_the_sends_that_succeeded, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_close_keeps_buffered_values_then_reports_closed, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_send_on_closed_channel_reports_closed, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_send_that_finds_channel_closed_sees_the_closers_writes, 0,
                        CAP_COUNT);
    tcase_add_loop_test(tc, test_double_close_reports_closed, 0, CAP_COUNT);
    tcase_add_test(tc, test_close_null_channel_is_einval);
    tcase_add_loop_test(tc, test_nonblocking_recv_on_closed_drained_channel_reports_closed, 0,
                        CAP_COUNT);
    tcase_add_loop_test(tc, test_nonblocking_send_on_closed_full_channel_reports_closed, 0,
                        CAP_COUNT);

    tc = new_case(suite, "nonblocking");
    tcase_add_loop_test(tc, test_nonblocking_recv_on_empty_channel_would_block, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_nonblocking_send_on_full_channel_would_block, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_past_deadline_still_tries_once, 0, CAP_COUNT);

    tc = new_case(suite, "deadline");
    tcase_add_loop_test(tc, test_recv_until_times_out_never_early, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_send_until_times_out_never_early_and_is_not_delivered, 0,
                        CAP_COUNT);
    tcase_add_loop_test(tc, test_recv_until_gets_value_arriving_before_deadline, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_send_until_completes_when_receiver_arrives_before_deadline, 0,
                        CAP_COUNT);

    tc = new_case(suite, "unbuffered");
    tcase_add_test(tc, test_unbuffered_send_completes_only_after_receive);
    tcase_add_test(tc, test_unbuffered_try_send_succeeds_with_blocked_receiver);
    tcase_add_test(tc, test_unbuffered_try_recv_succeeds_with_blocked_sender);

    tc = new_case(suite, "len_cap");
    tcase_add_loop_test(tc, test_len_counts_buffered_values_and_cap_is_as_made, 0, CAP_COUNT);
    tcase_add_test(tc, test_len_of_unbuffered_is_zero_with_blocked_sender);
    tcase_add_test(tc, test_len_cap_elem_size_of_null_channel_are_zero);

    tc = new_case(suite, "typed");
    tcase_add_test(tc, test_typed_int_channel_operations);
    tcase_add_test(tc, test_typed_struct_channel_round_trips);
    tcase_add_test(tc, test_typed_cases_work_in_select);

    tc = new_case(suite, "special");
    tcase_add_loop_test(tc, test_signal_only_channel_carries_signals, 0, CAP_COUNT);
    tcase_add_test(tc, test_null_channel_operations_are_einval);
    tcase_add_loop_test(tc, test_recv_with_null_elem_discards_the_value, 0, CAP_COUNT);

    tc = new_case(suite, "alloc");
    tcase_add_test(tc, test_make_with_size_overflow_is_einval);
    tcase_add_test(tc, test_make_commits_a_large_ring_at_once);
    tcase_add_loop_test(tc, test_make_allocation_failure_is_enomem, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_first_blocking_recv_without_memory_fails_cleanly, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_first_blocking_send_without_memory_fails_cleanly, 0, CAP_COUNT);
    tcase_add_test(tc, test_first_blocking_recv_without_memory_loses_no_value);

    tc = new_case(suite, "refcount");
    tcase_add_test(tc, test_retain_twice_release_three_times_frees);
    tcase_add_loop_test(tc, test_channel_outlives_its_creator_reference, 0, CAP_COUNT);
    tcase_add_loop_test(tc, test_release_frees_buffered_values, 0, CAP_COUNT);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(chan_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
