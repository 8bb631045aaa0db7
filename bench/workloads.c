/* workloads.c — the workloads: the anchors' grid (seq, spsc, mpsc, mpmc
 * on any channel peer; select_rx, select_both through weft_select), Go's
 * runtime benchmarks (chan_* on any channel peer where the condvar queue
 * can do the same, else through weft's own API; select_uncontended and
 * select_nonblock through weft_select), spawn (weft_go against
 * pthread_create + pthread_join), and latency_light and latency_full (on any
 * channel peer; timestamps instead of 1..share, see their section).
 *
 * Each producer sends 1..share and each consumer returns the sum of what
 * it received; the runner compares the grand total with share*(share+1)/2
 * per producer. Threads share nothing but the channels and their argument
 * structs: shared ones are read-only, a consumer's sum is read only after
 * join. */
#include "workloads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/chan.h"
#include "weft/error.h"
#include "weft/select.h"
#include "weft/time.h"

/* ---- helpers ---------------------------------------------------------- */

static long long triangle(long count) { return (long long)count * (count + 1) / 2; }

static void check_sum(const char *peer_name, const char *workload_name, long long got,
                      long long want) {
    if (got != want) {
        fprintf(stderr, "weft-bench: %s %s: checksum mismatch: got %lld, want %lld\n", peer_name,
                workload_name, got, want);
        exit(1);
    }
}

/* result: a WEFT_E* code (negative) or an errno value (positive). */
static void fail_operation(const char *peer_name, const char *what, int result) {
    fprintf(stderr, "weft-bench: %s: %s failed: %d (%s)\n", peer_name, what, result,
            result < 0 ? weft_strerror(result) : strerror(result));
    exit(1);
}

/* What each of `parts` threads does: messages / parts, at least one. */
static long share_of(long messages, long parts) {
    long share = messages / parts;
    return share > 0 ? share : 1;
}

static void *make_channel(const bench_peer *peer, size_t capacity) {
    void *channel = peer->make(capacity);
    if (channel == NULL) {
        fprintf(stderr, "weft-bench: %s: cannot make a channel of capacity %zu\n", peer->name,
                capacity);
        exit(2);
    }
    return channel;
}

static void start_thread(pthread_t *thread, void *(*body)(void *), void *argument) {
    int result = pthread_create(thread, NULL, body, argument);
    if (result != 0) {
        fprintf(stderr, "weft-bench: pthread_create: %s\n", strerror(result));
        exit(2);
    }
}

static void join_thread(pthread_t thread) {
    int result = pthread_join(thread, NULL);
    if (result != 0) {
        fprintf(stderr, "weft-bench: pthread_join: %s\n", strerror(result));
        exit(2);
    }
}

static inline void send_one(const bench_peer *peer, void *channel, long value) {
    int result = peer->send(channel, value);
    if (result != 0) fail_operation(peer->name, "send", result);
}

static inline long receive_one(const bench_peer *peer, void *channel) {
    long value = 0;
    int result = peer->receive(channel, &value);
    if (result != 0) fail_operation(peer->name, "receive", result);
    return value;
}

static long long receive_sum(const bench_peer *peer, void *channel, long count) {
    long long sum = 0;
    for (long i = 0; i < count; i++) sum += receive_one(peer, channel);
    return sum;
}

/* One producer or consumer thread of the point-to-point workloads. */
typedef struct endpoint {
    const bench_peer *peer;
    void *channel;
    long count;    /* messages to send (1..count) or to receive */
    long long sum; /* consumer: out */
} endpoint;

static void *producer_main(void *argument) {
    endpoint *self = argument;
    for (long value = 1; value <= self->count; value++) send_one(self->peer, self->channel, value);
    return NULL;
}

static void *consumer_main(void *argument) {
    endpoint *self = argument;
    self->sum = receive_sum(self->peer, self->channel, self->count);
    return NULL;
}

/* ---- point-to-point workloads ------------------------------------------ */

/* One thread sends every message, then receives them all back. */
static long run_seq(const workload_params *params) {
    const bench_peer *peer = params->peer;
    long count = params->messages;
    void *channel = make_channel(peer, params->capacity);
    for (long value = 1; value <= count; value++) send_one(peer, channel, value);
    long long sum = receive_sum(peer, channel, count);
    peer->release(channel);
    check_sum(peer->name, "seq", sum, triangle(count));
    return count;
}

/* One producer thread; the calling thread receives. */
static long run_spsc(const workload_params *params) {
    const bench_peer *peer = params->peer;
    long count = params->messages;
    void *channel = make_channel(peer, params->capacity);
    endpoint producer = {peer, channel, count, 0};
    pthread_t thread;
    start_thread(&thread, producer_main, &producer);
    long long sum = receive_sum(peer, channel, count);
    join_thread(thread);
    peer->release(channel);
    check_sum(peer->name, "spsc", sum, triangle(count));
    return count;
}

/* T producer threads; the calling thread receives. */
static long run_mpsc(const workload_params *params) {
    const bench_peer *peer = params->peer;
    int threads = params->threads;
    long share = share_of(params->messages, threads), total = share * threads;
    void *channel = make_channel(peer, params->capacity);
    endpoint producer = {peer, channel, share, 0}; /* read-only: shared by all producers */
    pthread_t thread[threads];
    for (int i = 0; i < threads; i++) start_thread(&thread[i], producer_main, &producer);
    long long sum = receive_sum(peer, channel, total);
    for (int i = 0; i < threads; i++) join_thread(thread[i]);
    peer->release(channel);
    check_sum(peer->name, "mpsc", sum, threads * triangle(share));
    return total;
}

/* T producer threads and T consumer threads on one channel. */
static long run_mpmc(const workload_params *params) {
    const bench_peer *peer = params->peer;
    int threads = params->threads;
    long share = share_of(params->messages, threads), total = share * threads;
    void *channel = make_channel(peer, params->capacity);
    endpoint producer = {peer, channel, share, 0};
    endpoint consumer[threads];
    pthread_t producer_thread[threads], consumer_thread[threads];
    for (int i = 0; i < threads; i++) start_thread(&producer_thread[i], producer_main, &producer);
    for (int i = 0; i < threads; i++) {
        consumer[i] = (endpoint){peer, channel, share, 0};
        start_thread(&consumer_thread[i], consumer_main, &consumer[i]);
    }
    long long sum = 0;
    for (int i = 0; i < threads; i++) join_thread(producer_thread[i]);
    for (int i = 0; i < threads; i++) {
        join_thread(consumer_thread[i]);
        sum += consumer[i].sum;
    }
    peer->release(channel);
    check_sum(peer->name, "mpmc", sum, threads * triangle(share));
    return total;
}

/* ---- select workloads (weft only) -------------------------------------- */

static weft_chan **make_weft_channels(int count, size_t capacity) {
    weft_chan **channels = calloc((size_t)count, sizeof *channels);
    if (channels == NULL) {
        fprintf(stderr, "weft-bench: out of memory\n");
        exit(2);
    }
    for (int i = 0; i < count; i++) {
        channels[i] = weft_chan_make(sizeof(long), capacity);
        if (channels[i] == NULL) {
            fprintf(stderr, "weft-bench: weft: cannot make a channel of capacity %zu\n", capacity);
            exit(2);
        }
    }
    return channels;
}

static void release_weft_channels(weft_chan **channels, int count) {
    for (int i = 0; i < count; i++) weft_chan_release(channels[i]);
    free(channels);
}

/* weft_select over cases[0..count); exits on anything but a clean choice. */
static inline void select_one(weft_case *cases, int count) {
    int chosen = weft_select(cases, (size_t)count, WEFT_FOREVER);
    if (chosen < 0) fail_operation("weft", "weft_select", chosen);
    if (cases[chosen].err != 0) fail_operation("weft", "weft_select case", cases[chosen].err);
}

/* A thread of the select workloads: sends or receives count messages,
 * directly on one channel or by selecting over several. */
typedef struct selector {
    weft_chan **channels;
    int channel_count;
    long count;
    long long sum; /* receiver: out */
} selector;

static void *direct_sender_main(void *argument) {
    selector *self = argument;
    for (long value = 1; value <= self->count; value++) {
        int result = weft_chan_send(self->channels[0], &value);
        if (result != 0) fail_operation("weft", "send", result);
    }
    return NULL;
}

static void *select_sender_main(void *argument) {
    selector *self = argument;
    long value = 0;
    weft_case cases[self->channel_count];
    for (int i = 0; i < self->channel_count; i++)
        cases[i] = (weft_case)WEFT_SEND_CASE(self->channels[i], &value);
    for (value = 1; value <= self->count; value++) select_one(cases, self->channel_count);
    return NULL;
}

static long long select_receive_sum(weft_chan **channels, int channel_count, long count) {
    long value = 0;
    long long sum = 0;
    weft_case cases[channel_count];
    for (int i = 0; i < channel_count; i++)
        cases[i] = (weft_case)WEFT_RECV_CASE(channels[i], &value);
    for (long i = 0; i < count; i++) {
        select_one(cases, channel_count);
        sum += value;
    }
    return sum;
}

static void *select_receiver_main(void *argument) {
    selector *self = argument;
    self->sum = select_receive_sum(self->channels, self->channel_count, self->count);
    return NULL;
}

/* T producers, each sending on its own channel; the calling thread
 * receives everything by selecting over the T channels. */
static long run_select_rx(const workload_params *params) {
    int threads = params->threads;
    long share = share_of(params->messages, threads), total = share * threads;
    weft_chan **channels = make_weft_channels(threads, params->capacity);
    selector producer[threads];
    pthread_t thread[threads];
    for (int i = 0; i < threads; i++) {
        producer[i] = (selector){&channels[i], 1, share, 0};
        start_thread(&thread[i], direct_sender_main, &producer[i]);
    }
    long long sum = select_receive_sum(channels, threads, total);
    for (int i = 0; i < threads; i++) join_thread(thread[i]);
    release_weft_channels(channels, threads);
    check_sum("weft", "select_rx", sum, threads * triangle(share));
    return total;
}

/* T producers select-send over T channels; T consumers select-receive
 * over the same T channels. */
static long run_select_both(const workload_params *params) {
    int threads = params->threads;
    long share = share_of(params->messages, threads), total = share * threads;
    weft_chan **channels = make_weft_channels(threads, params->capacity);
    selector producer = {channels, threads, share, 0};
    selector consumer[threads];
    pthread_t producer_thread[threads], consumer_thread[threads];
    for (int i = 0; i < threads; i++)
        start_thread(&producer_thread[i], select_sender_main, &producer);
    for (int i = 0; i < threads; i++) {
        consumer[i] = (selector){channels, threads, share, 0};
        start_thread(&consumer_thread[i], select_receiver_main, &consumer[i]);
    }
    long long sum = 0;
    for (int i = 0; i < threads; i++) join_thread(producer_thread[i]);
    for (int i = 0; i < threads; i++) {
        join_thread(consumer_thread[i]);
        sum += consumer[i].sum;
    }
    release_weft_channels(channels, threads);
    check_sum("weft", "select_both", sum, threads * triangle(share));
    return total;
}

/* ---- Go's runtime select benchmarks (weft only) ------------------------ */

/* Go's src/runtime/chan_test.go runs these under b.RunParallel, whose
 * GOMAXPROCS goroutines share b.N iterations; here T threads share the
 * messages, one message being one iteration. Their channels have the
 * capacities Go gives them, whatever --cap says (bench_workload's
 * fixed_capacity). The channel benchmarks below share check_count. */

/* Exits unless count (of select outcomes) is what the workload implies. */
static void check_count(const char *workload_name, const char *what, long got, long want) {
    if (got != want) {
        fprintf(stderr, "weft-bench: weft %s: %s: got %ld, want %ld\n", workload_name, what, got,
                want);
        exit(1);
    }
}

/* A thread of select_uncontended: its own two capacity-1 channels. */
typedef struct ping_pong {
    long count;
    long long sum; /* out: every value received, the leftover one included */
} ping_pong;

/* BenchmarkSelectUncontended:
 *     select { case <-myc1: myc2 <- 0; case <-myc2: myc1 <- 0 }
 * with myc1 holding one value at the start. Exactly one channel holds a
 * value at each select, so the select never blocks and the cases
 * alternate. Iteration i receives i - 1 and sends i; the value left over
 * at the end is count. */
static void *ping_pong_main(void *argument) {
    ping_pong *self = argument;
    weft_chan **channels = make_weft_channels(2, 1);
    long received = 0, next = 0;
    int result = weft_chan_send(channels[0], &next);
    if (result != 0) fail_operation("weft", "send", result);
    weft_case cases[2] = {WEFT_RECV_CASE(channels[0], &received),
                          WEFT_RECV_CASE(channels[1], &received)};
    long long sum = 0;
    for (long i = 1; i <= self->count; i++) {
        int chosen = weft_select(cases, 2, WEFT_FOREVER);
        if (chosen < 0) fail_operation("weft", "weft_select", chosen);
        if (cases[chosen].err != 0) fail_operation("weft", "weft_select case", cases[chosen].err);
        sum += received;
        next = i;
        result = weft_chan_send(channels[1 - chosen], &next); /* myc2 after myc1, and back */
        if (result != 0) fail_operation("weft", "send", result);
    }
    /* The last value sent waits in the channel the next select would take. */
    int last = (int)(self->count % 2);
    check_count("select_uncontended", "values left in the idle channel",
                (long)weft_chan_len(channels[1 - last]), 0);
    result = weft_chan_try_recv(channels[last], &received);
    if (result != 0) fail_operation("weft", "receive of the leftover value", result);
    self->sum = sum + received;
    release_weft_channels(channels, 2);
    return NULL;
}

/* T threads, each selecting over its own pair of capacity-1 channels. */
static long run_select_uncontended(const workload_params *params) {
    int threads = params->threads;
    long share = share_of(params->messages, threads), total = share * threads;
    ping_pong player[threads];
    pthread_t thread[threads];
    for (int i = 0; i < threads; i++) {
        player[i] = (ping_pong){share, 0};
        start_thread(&thread[i], ping_pong_main, &player[i]);
    }
    long long sum = 0;
    for (int i = 0; i < threads; i++) {
        join_thread(thread[i]);
        sum += player[i].sum;
    }
    check_sum("weft", "select_uncontended", sum, threads * triangle(share));
    return total;
}

/* select_nonblock's four channels, myc1 and myc2 unbuffered, myc3 and
 * myc4 of capacity 1, are shared by every thread: Go makes them outside
 * b.RunParallel (the version before RunParallel made them per goroutine). */
enum { NONBLOCK_SELECTS = 4 };

typedef struct nonblocker {
    weft_chan **channels;             /* [4]: myc1..myc4, shared */
    long count;                       /* iterations */
    long proceeded[NONBLOCK_SELECTS]; /* out: selects that did not default, per channel */
} nonblocker;

/* BenchmarkSelectNonblock: four selects with a default, each on one case:
 *     select { case <-myc1: default: }    select { case myc2 <- 0: default: }
 *     select { case <-myc3: default: }    select { case myc4 <- 0: default: }
 * Nobody else sends or receives, so all of them default but the first
 * send on myc4 (by whichever thread gets there first), which fills it. */
static void *nonblocker_main(void *argument) {
    nonblocker *self = argument;
    long value = 0;
    weft_case cases[NONBLOCK_SELECTS] = {
        WEFT_RECV_CASE(self->channels[0], &value),
        WEFT_SEND_CASE(self->channels[1], &value),
        WEFT_RECV_CASE(self->channels[2], &value),
        WEFT_SEND_CASE(self->channels[3], &value),
    };
    long proceeded[NONBLOCK_SELECTS] = {0};
    for (long i = 0; i < self->count; i++) {
        for (int c = 0; c < NONBLOCK_SELECTS; c++) {
            int chosen = weft_select(&cases[c], 1, WEFT_NOWAIT);
            if (chosen == WEFT_EAGAIN) continue; /* default: */
            if (chosen != 0) fail_operation("weft", "non-blocking weft_select", chosen);
            if (cases[c].err != 0) fail_operation("weft", "weft_select case", cases[c].err);
            proceeded[c]++;
        }
    }
    memcpy(self->proceeded, proceeded, sizeof proceeded);
    return NULL;
}

/* T threads run the four non-blocking selects on four shared channels. */
static long run_select_nonblock(const workload_params *params) {
    int threads = params->threads;
    long share = share_of(params->messages, threads), total = share * threads;
    weft_chan **unbuffered = make_weft_channels(2, 0), **buffered = make_weft_channels(2, 1);
    weft_chan *channels[NONBLOCK_SELECTS] = {unbuffered[0], unbuffered[1], buffered[0],
                                             buffered[1]};
    nonblocker worker[threads];
    pthread_t thread[threads];
    for (int i = 0; i < threads; i++) {
        worker[i] = (nonblocker){.channels = channels, .count = share};
        start_thread(&thread[i], nonblocker_main, &worker[i]);
    }
    long proceeded[NONBLOCK_SELECTS] = {0};
    for (int i = 0; i < threads; i++) {
        join_thread(thread[i]);
        for (int c = 0; c < NONBLOCK_SELECTS; c++) proceeded[c] += worker[i].proceeded[c];
    }
    static const char *const what[NONBLOCK_SELECTS] = {
        "receives on myc1 (unbuffered) that proceeded", "sends on myc2 (unbuffered) that proceeded",
        "receives on myc3 (capacity 1) that proceeded",
        "sends on myc4 (capacity 1) that proceeded"};
    for (int c = 0; c < NONBLOCK_SELECTS; c++)
        check_count("select_nonblock", what[c], proceeded[c], c == 3 && total > 0 ? 1 : 0);
    check_count("select_nonblock", "values in myc4 at the end", (long)weft_chan_len(channels[3]),
                total > 0 ? 1 : 0);
    release_weft_channels(unbuffered, 2);
    release_weft_channels(buffered, 2);
    return total;
}

/* ---- Go's runtime channel benchmarks ------------------------------------ */

/* The rest of Go's chan_test.go benchmarks that a channel user meets. Those
 * under b.RunParallel split the messages evenly over T threads (Go hands
 * out b.N in grains to GOMAXPROCS goroutines); ns per message is wall time
 * over all messages of all threads, as Go's ns/op is. Where Go sends 0 or
 * an empty struct, these send 1, 2, 3, ... so that the run can check the
 * sum of what came out. Each runs on any channel peer (the condvar queue
 * included) but chan_nonblocking, which needs a non-blocking receive. */

/* ChanUncontended and ChanContended: one of Go's ops is this many sends,
 * then as many receives. */
enum { GO_BATCH = 100 };

/* One of the T threads of a b.RunParallel benchmark. */
typedef struct parallel_part {
    const bench_peer *peer;
    void *channel;   /* shared by every part; NULL: each makes its own */
    size_t capacity; /* of the channels a part makes */
    long count;      /* iterations: messages of this part */
    long long sum;   /* out: the sum of what it received, or a count */
} parallel_part;

/* Runs body on T threads of `share` iterations each; returns the sum of
 * their sums. */
static long long run_parallel(const workload_params *params, void *channel, long share,
                              void *(*body)(void *)) {
    int threads = params->threads;
    parallel_part part[threads];
    pthread_t thread[threads];
    for (int i = 0; i < threads; i++) {
        part[i] = (parallel_part){params->peer, channel, params->capacity, share, 0};
        start_thread(&thread[i], body, &part[i]);
    }
    long long sum = 0;
    for (int i = 0; i < threads; i++) {
        join_thread(thread[i]);
        sum += part[i].sum;
    }
    return sum;
}

/* BenchmarkChanNonblocking: `select { case <-myc: default: }` on an
 * unbuffered channel that nobody sends on; Go compiles a one-case select
 * with default into a non-blocking receive, weft_chan_try_recv. Every
 * try must say WEFT_EAGAIN; the part counts them. */
static void *nonblocking_main(void *argument) {
    parallel_part *self = argument;
    weft_chan *channel = self->channel;
    long value, defaults = 0;
    for (long i = 0; i < self->count; i++) {
        int result = weft_chan_try_recv(channel, &value);
        if (result != WEFT_EAGAIN) fail_operation("weft", "try_recv on an idle channel", result);
        defaults++;
    }
    self->sum = defaults;
    return NULL;
}

static long run_chan_nonblocking(const workload_params *params) {
    long share = share_of(params->messages, params->threads), total = share * params->threads;
    weft_chan **channel = make_weft_channels(1, 0);
    long long defaults = run_parallel(params, channel[0], share, nonblocking_main);
    release_weft_channels(channel, 1);
    check_count("chan_nonblocking", "receives that found nothing", (long)defaults, total);
    return total;
}

/* BenchmarkChanUncontended (a channel of capacity 100 per part) and
 * BenchmarkChanContended (one of capacity 100T, shared): each op sends
 * 100 values, then receives 100. In the shared channel a part may receive
 * other parts' values, but never waits: while it receives, every part
 * has sent at least as many as it received in its current op. */
static void *batches_main(void *argument) {
    parallel_part *self = argument;
    const bench_peer *peer = self->peer;
    void *channel = self->channel ? self->channel : make_channel(peer, self->capacity);
    long value = 0;
    long long sum = 0;
    for (long batch = 0; batch < self->count / GO_BATCH; batch++) {
        for (int i = 0; i < GO_BATCH; i++) send_one(peer, channel, ++value);
        for (int i = 0; i < GO_BATCH; i++) sum += receive_one(peer, channel);
    }
    if (self->channel == NULL) peer->release(channel);
    self->sum = sum;
    return NULL;
}

/* The messages of a part of chan_uncontended or chan_contended: whole ops. */
static long batch_share(const workload_params *params) {
    return GO_BATCH * share_of(params->messages, (long)params->threads * GO_BATCH);
}

static long run_chan_uncontended(const workload_params *params) {
    long share = batch_share(params), total = share * params->threads;
    long long sum = run_parallel(params, NULL, share, batches_main);
    check_sum(params->peer->name, "chan_uncontended", sum, params->threads * triangle(share));
    return total;
}

static long run_chan_contended(const workload_params *params) {
    long share = batch_share(params), total = share * params->threads;
    void *channel = make_channel(params->peer, params->capacity);
    long long sum = run_parallel(params, channel, share, batches_main);
    params->peer->release(channel);
    check_sum(params->peer->name, "chan_contended", sum, params->threads * triangle(share));
    return total;
}

/* BenchmarkChanSem: a channel of capacity GOMAXPROCS (T) as a counting
 * semaphore; each op acquires (sends) and releases (receives). T parts
 * and T slots: nobody waits. */
static void *semaphore_main(void *argument) {
    parallel_part *self = argument;
    long long sum = 0;
    for (long value = 1; value <= self->count; value++) {
        send_one(self->peer, self->channel, value);
        sum += receive_one(self->peer, self->channel);
    }
    self->sum = sum;
    return NULL;
}

static long run_chan_sem(const workload_params *params) {
    long share = share_of(params->messages, params->threads), total = share * params->threads;
    void *channel = make_channel(params->peer, params->capacity);
    long long sum = run_parallel(params, channel, share, semaphore_main);
    params->peer->release(channel);
    check_sum(params->peer->name, "chan_sem", sum, params->threads * triangle(share));
    return total;
}

/* BenchmarkChanCreation: each op makes a channel of capacity 1, sends one
 * value, receives it, and drops the channel (here: releases it). */
static void *creation_main(void *argument) {
    parallel_part *self = argument;
    long long sum = 0;
    for (long value = 1; value <= self->count; value++) {
        void *channel = make_channel(self->peer, self->capacity);
        send_one(self->peer, channel, value);
        sum += receive_one(self->peer, channel);
        self->peer->release(channel);
    }
    self->sum = sum;
    return NULL;
}

static long run_chan_creation(const workload_params *params) {
    long share = share_of(params->messages, params->threads), total = share * params->threads;
    long long sum = run_parallel(params, NULL, share, creation_main);
    check_sum(params->peer->name, "chan_creation", sum, params->threads * triangle(share));
    return total;
}

/* BenchmarkChanSync: two goroutines pass values back and forth over one
 * unbuffered channel, one receiving first, the other sending first; one
 * op of Go's is one hand-off. Here the calling thread sends 1..n and
 * receives each back from an echo thread: 2n hand-offs. */
static void *echo_main(void *argument) {
    endpoint *self = argument;
    long long sum = 0;
    for (long i = 0; i < self->count; i++) {
        long value = receive_one(self->peer, self->channel);
        sum += value;
        send_one(self->peer, self->channel, value);
    }
    self->sum = sum;
    return NULL;
}

static long run_chan_sync(const workload_params *params) {
    const bench_peer *peer = params->peer;
    long rounds = share_of(params->messages, 2);
    void *channel = make_channel(peer, params->capacity);
    endpoint echo = {peer, channel, rounds, 0};
    pthread_t thread;
    start_thread(&thread, echo_main, &echo);
    long long sum = 0;
    for (long value = 1; value <= rounds; value++) {
        send_one(peer, channel, value);
        sum += receive_one(peer, channel);
    }
    join_thread(thread);
    peer->release(channel);
    check_sum(peer->name, "chan_sync (echoed)", sum, triangle(rounds));
    check_sum(peer->name, "chan_sync (echo thread)", echo.sum, triangle(rounds));
    return 2 * rounds;
}

/* benchmarkChanProdCons(chanSize, localWork = 0): GOMAXPROCS (T)
 * producers and as many consumers on one channel; each producer sends its
 * share and then a 0, and a consumer stops at the first 0 it receives, so
 * each consumer gets exactly one of the T zeros. Go's three
 * ChanProdCons benchmarks do no work between operations (localWork is
 * 0; the ChanProdConsWork ones add 100 iterations of it). */
static void *terminated_producer_main(void *argument) {
    endpoint *self = argument;
    for (long value = 1; value <= self->count; value++) send_one(self->peer, self->channel, value);
    send_one(self->peer, self->channel, 0);
    return NULL;
}

static void *terminated_consumer_main(void *argument) {
    endpoint *self = argument;
    long long sum = 0;
    for (;;) {
        long value = receive_one(self->peer, self->channel);
        if (value == 0) break;
        sum += value;
    }
    self->sum = sum;
    return NULL;
}

static long run_chan_prodcons(const workload_params *params) {
    const bench_peer *peer = params->peer;
    int threads = params->threads;
    long share = share_of(params->messages, threads), total = share * threads;
    void *channel = make_channel(peer, params->capacity);
    endpoint producer = {peer, channel, share, 0}; /* read-only: shared by all producers */
    endpoint consumer[threads];
    pthread_t producer_thread[threads], consumer_thread[threads];
    for (int i = 0; i < threads; i++) {
        consumer[i] = (endpoint){peer, channel, 0, 0};
        start_thread(&consumer_thread[i], terminated_consumer_main, &consumer[i]);
    }
    for (int i = 0; i < threads; i++)
        start_thread(&producer_thread[i], terminated_producer_main, &producer);
    long long sum = 0;
    for (int i = 0; i < threads; i++) join_thread(producer_thread[i]);
    for (int i = 0; i < threads; i++) {
        join_thread(consumer_thread[i]);
        sum += consumer[i].sum;
    }
    peer->release(channel);
    check_sum(peer->name, "chan_prodcons", sum, threads * triangle(share));
    return total;
}

/* ---- spawn --------------------------------------------------------------- */

/* The task: all but empty, one relaxed add, so that the run can check
 * that every task ran (the wait orders it before the check). */
static void count_task(void *argument) {
    atomic_fetch_add_explicit((atomic_long *)argument, 1, memory_order_relaxed);
}

/* T tasks started, then waited for, again and again: weft_go and a
 * WaitGroup against pthread_create and pthread_join. One message is one
 * task. */
static long run_spawn(const workload_params *params) {
    const bench_peer *peer = params->peer;
    int batch = params->threads;
    long batches = share_of(params->messages, batch), total = batches * batch;
    atomic_long ran = 0;
    for (long i = 0; i < batches; i++) {
        int result = peer->spawn(batch, count_task, &ran);
        if (result != 0) {
            fprintf(stderr, "weft-bench: %s: cannot start a task: %s\n", peer->name,
                    result < 0 ? weft_strerror(result) : strerror(result));
            exit(2);
        }
    }
    check_count("spawn", "tasks that ran", atomic_load(&ran), total);
    return total;
}

/* ---- latency ------------------------------------------------------------- */

/* A message is the weft_now() of just before its send; the receiver
 * subtracts it from the weft_now() of just after its receive, so a sample
 * holds one clock read besides the hand-off. Both threads read the same
 * CLOCK_MONOTONIC. A sample below zero would mean a value that was never
 * sent (the clock does not go back): the run exits 1. */

/* One producer of the latency workloads. */
typedef struct stamper {
    const bench_peer *peer;
    void *channel;
    long count;
    weft_time gap; /* > 0: wait this long after each send returns (latency) */
} stamper;

static void *stamper_main(void *argument) {
    const stamper *self = argument;
    for (long i = 0; i < self->count; i++) {
        send_one(self->peer, self->channel, (long)weft_now());
        if (self->gap > 0) { /* spin, not sleep: the sender's core stays awake */
            weft_time until = weft_now() + self->gap;
            while (weft_now() < until) continue;
        }
    }
    return NULL;
}

/* Receives total timestamps on the calling thread into latencies. */
static void receive_latencies(const bench_peer *peer, void *channel, long total, long *latencies,
                              const char *workload_name) {
    for (long i = 0; i < total; i++) {
        long sent = receive_one(peer, channel);
        long sample = (long)weft_now() - sent;
        if (sample < 0) {
            fprintf(stderr, "weft-bench: %s %s: received %ld, a timestamp from the future\n",
                    peer->name, workload_name, sent);
            exit(1);
        }
        latencies[i] = sample;
    }
}

/* producers threads of stamper_main, sharing `share` each; the calling
 * thread receives every timestamp. */
static long run_stamped(const workload_params *params, int producers, long share, weft_time gap,
                        const char *workload_name) {
    const bench_peer *peer = params->peer;
    long total = share * producers;
    void *channel = make_channel(peer, params->capacity);
    stamper producer = {peer, channel, share, gap}; /* read-only: shared by all producers */
    pthread_t thread[producers];
    for (int i = 0; i < producers; i++) start_thread(&thread[i], stamper_main, &producer);
    receive_latencies(peer, channel, total, params->latencies, workload_name);
    for (int i = 0; i < producers; i++) join_thread(thread[i]);
    peer->release(channel);
    return total;
}

/* One producer, a message every LATENCY_GAP_NS: the receiver is idle (has
 * parked, for a peer that parks) when each arrives. */
static long run_latency_light(const workload_params *params) {
    return run_stamped(params, 1, params->messages, LATENCY_GAP_NS, "latency_light");
}

/* T producers back to back, as mpsc: a sample includes the time spent
 * queued behind the others (at capacity N, everything sent so far). */
static long run_latency_full(const workload_params *params) {
    int threads = params->threads;
    return run_stamped(params, threads, share_of(params->messages, threads), 0, "latency_full");
}

/* ---- the table ---------------------------------------------------------- */

const bench_workload workloads[] = {
    /* the anchors' grid */
    {.name = "seq",
     .summary = "one thread sends every message, then receives them (capacity >= messages only)",
     .needs = PEER_CHANNEL,
     .needs_full_buffer = true,
     .fixed_capacity = ANY_CAPACITY,
     .run = run_seq},
    {.name = "spsc",
     .summary = "1 producer thread, the main thread receives",
     .needs = PEER_CHANNEL,
     .fixed_capacity = ANY_CAPACITY,
     .run = run_spsc},
    {.name = "mpsc",
     .summary = "T producer threads, the main thread receives",
     .needs = PEER_CHANNEL,
     .fixed_capacity = ANY_CAPACITY,
     .run = run_mpsc},
    {.name = "mpmc",
     .summary = "T producer threads, T consumer threads, one channel",
     .needs = PEER_CHANNEL,
     .fixed_capacity = ANY_CAPACITY,
     .run = run_mpmc},
    {.name = "select_rx",
     .summary = "T producers, one channel each; the main thread selects over the T channels",
     .needs = PEER_WEFT,
     .fixed_capacity = ANY_CAPACITY,
     .run = run_select_rx},
    {.name = "select_both",
     .summary = "T producers select-send, T consumers select-receive, over T channels",
     .needs = PEER_WEFT,
     .fixed_capacity = ANY_CAPACITY,
     .run = run_select_both},
    /* Go's runtime benchmarks */
    {.name = "chan_nonblocking",
     .summary = "Go's ChanNonblocking: T threads try_recv on one shared unbuffered channel that "
                "never has a sender (Go: select with default); msg = one try",
     .go_reference = "1.77 ns/msg (an op is one try)",
     .needs = PEER_WEFT,
     .fixed_capacity = 0,
     .default_messages = 50000000,
     .run = run_chan_nonblocking},
    {.name = "chan_uncontended",
     .summary = "Go's ChanUncontended: T threads, each with its own capacity-100 channel, send "
                "100 values, then receive 100; msg = one value sent and received",
     .go_reference = "45.8 ns/msg (4581 ns/op, an op being 100 msgs)",
     .needs = PEER_CHANNEL,
     .fixed_capacity = GO_BATCH,
     .default_messages = 5000000,
     .run = run_chan_uncontended},
    {.name = "chan_contended",
     .summary = "Go's ChanContended: the same on one channel of capacity 100T shared by the T "
                "threads; msg = one value sent and received",
     .go_reference = "39.9 ns/msg (3990 ns/op, an op being 100 msgs)",
     .needs = PEER_CHANNEL,
     .fixed_capacity = GO_BATCH,
     .capacity_per_thread = true,
     .capacity_label = "100T",
     .default_messages = 2000000,
     .run = run_chan_contended},
    {.name = "chan_sync",
     .summary = "Go's ChanSync: 2 threads (always) pass values back and forth over an unbuffered "
                "channel; msg = one hand-off",
     .go_reference = "229 ns/msg (an op is one hand-off)",
     .needs = PEER_CHANNEL,
     .fixed_capacity = 0,
     .fixed_threads = 2,
     .default_messages = 20000,
     .run = run_chan_sync},
    {.name = "chan_prodcons0",
     .summary = "Go's ChanProdCons0: T producers, T consumers, one unbuffered channel, no work "
                "between operations; msg = one value",
     .go_reference = "209 ns/msg (an op is one value)",
     .needs = PEER_CHANNEL,
     .fixed_capacity = 0,
     .default_messages = 10000,
     .run = run_chan_prodcons},
    {.name = "chan_prodcons10",
     .summary = "Go's ChanProdCons10: the same with a channel of capacity 10",
     .go_reference = "144 ns/msg (an op is one value)",
     .needs = PEER_CHANNEL,
     .fixed_capacity = 10,
     .default_messages = 50000,
     .run = run_chan_prodcons},
    {.name = "chan_prodcons100",
     .summary = "Go's ChanProdCons100: the same with a channel of capacity 100",
     .go_reference = "100 ns/msg (an op is one value)",
     .needs = PEER_CHANNEL,
     .fixed_capacity = 100,
     .default_messages = 300000,
     .run = run_chan_prodcons},
    {.name = "chan_sem",
     .summary = "Go's ChanSem: T threads send, then receive, on one channel of capacity T, which "
                "never blocks (Go sends empty structs, these longs); msg = one send + receive",
     .go_reference = "67 ns/msg (an op is one send + receive)",
     .needs = PEER_CHANNEL,
     .fixed_capacity = 1,
     .capacity_per_thread = true,
     .capacity_label = "T",
     .default_messages = 1000000,
     .run = run_chan_sem},
    {.name = "chan_creation",
     .summary = "Go's ChanCreation: T threads make a capacity-1 channel, send, receive and "
                "release it; msg = all four",
     .go_reference = "187 ns/msg (an op is all four)",
     .needs = PEER_CHANNEL,
     .fixed_capacity = 1,
     .default_messages = 1000000,
     .run = run_chan_creation},
    {.name = "select_uncontended",
     .summary = "Go's SelectUncontended: T threads each select over 2 private capacity-1 "
                "channels, then send on the other; msg = one select + send",
     .go_reference = "38.4 ns/msg (an op is one select + send)",
     .needs = PEER_WEFT,
     .fixed_capacity = 1,
     .default_messages = 10000000,
     .run = run_select_uncontended},
    {.name = "select_nonblock",
     .summary = "Go's SelectNonblock: T threads, 4 WEFT_NOWAIT selects over 4 shared channels, "
                "caps 0,0,1,1; msg = the 4 selects",
     .go_reference = "8.14 ns/msg (an op is the 4 selects)",
     .needs = PEER_WEFT,
     .fixed_capacity = 1,
     .capacity_label = "0/1",
     .default_messages = 10000000,
     .run = run_select_nonblock},
    /* goroutines */
    {.name = "spawn",
     .summary = "T tasks started, then waited for, repeatedly: weft_go + a WaitGroup vs "
                "pthread_create + pthread_join, of a function that adds 1; msg = one task",
     .needs = PEER_SPAWN,
     .fixed_capacity = 0,
     .capacity_label = "-",
     .default_messages = 8000,
     .run = run_spawn},
    /* latency */
    {.name = "latency_light",
     .summary = "1 producer sends a timestamp every 50 us, the main thread receives: each "
                "message finds it idle; ns from send to receive, percentiles",
     .needs = PEER_CHANNEL,
     .fixed_capacity = ANY_CAPACITY,
     .default_messages = 10000,
     .latency = true,
     .run = run_latency_light},
    {.name = "latency_full",
     .summary = "T producers send timestamps back to back, the main thread receives: "
                "hand-off plus queueing, percentiles",
     .needs = PEER_CHANNEL,
     .fixed_capacity = ANY_CAPACITY,
     .default_messages = 50000,
     .latency = true,
     .run = run_latency_full},
};

const size_t workload_count = sizeof workloads / sizeof workloads[0];

const bench_workload *workload_find(const char *name) {
    for (size_t i = 0; i < workload_count; i++)
        if (strcmp(workloads[i].name, name) == 0) return &workloads[i];
    return NULL;
}

bool workload_in_grid(const bench_workload *workload) {
    return workload->fixed_capacity == ANY_CAPACITY;
}

int workload_threads(const bench_workload *workload, int threads) {
    return workload->fixed_threads > 0 ? workload->fixed_threads : threads;
}

bool workload_applies(const bench_workload *workload, const bench_peer *peer, size_t capacity,
                      long messages) {
    if ((peer->provides & workload->needs) != workload->needs) return false;
    if (workload->needs_full_buffer && capacity < (size_t)messages) return false;
    return true;
}
