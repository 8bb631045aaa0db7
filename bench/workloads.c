/* workloads.c — the eight workloads: seq, spsc, mpsc, mpmc (any peer);
 * select_rx, select_both (weft_select); and two of Go's runtime select
 * benchmarks, select_uncontended and select_nonblock (weft_select).
 *
 * Each producer sends 1..share and each consumer returns the sum of what
 * it received; the runner compares the grand total with share*(share+1)/2
 * per producer. Threads share nothing but the channels and their argument
 * structs: shared ones are read-only, a consumer's sum is read only after
 * join. */
#include "workloads.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/chan.h"
#include "weft/error.h"
#include "weft/select.h"

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

static void fail_operation(const char *peer_name, const char *what, int result) {
    fprintf(stderr, "weft-bench: %s: %s failed: %d (%s)\n", peer_name, what, result,
            result < 0 ? weft_strerror(result) : "error");
    exit(1);
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
    long share = params->messages / threads, total = share * threads;
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
    long share = params->messages / threads, total = share * threads;
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
    long share = params->messages / threads, total = share * threads;
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
    long share = params->messages / threads, total = share * threads;
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
 * fixed_capacity). */

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
    long share = params->messages / threads, total = share * threads;
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
    long share = params->messages / threads, total = share * threads;
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

/* ---- the table ---------------------------------------------------------- */

const bench_workload workloads[] = {
    {"seq", "one thread sends every message, then receives them (capacity >= messages only)", false,
     true, ANY_CAPACITY, run_seq},
    {"spsc", "1 producer thread, the main thread receives", false, false, ANY_CAPACITY, run_spsc},
    {"mpsc", "T producer threads, the main thread receives", false, false, ANY_CAPACITY, run_mpsc},
    {"mpmc", "T producer threads, T consumer threads, one channel", false, false, ANY_CAPACITY,
     run_mpmc},
    {"select_rx", "T producers, one channel each; the main thread selects over the T channels",
     true, false, ANY_CAPACITY, run_select_rx},
    {"select_both", "T producers select-send, T consumers select-receive, over T channels", true,
     false, ANY_CAPACITY, run_select_both},
    {"select_uncontended",
     "Go's SelectUncontended: T threads each select over 2 private capacity-1 channels", true,
     false, 1, run_select_uncontended},
    {"select_nonblock",
     "Go's SelectNonblock: T threads, 4 WEFT_NOWAIT selects over 4 shared channels, caps 0,0,1,1",
     true, false, 1, run_select_nonblock},
};

const size_t workload_count = sizeof workloads / sizeof workloads[0];

const bench_workload *workload_find(const char *name) {
    for (size_t i = 0; i < workload_count; i++)
        if (strcmp(workloads[i].name, name) == 0) return &workloads[i];
    return NULL;
}

bool workload_applies(const bench_workload *workload, const bench_peer *peer, size_t capacity,
                      long messages) {
    if (workload->uses_select && !peer->has_select) return false;
    if (workload->needs_full_buffer && capacity < (size_t)messages) return false;
    if (workload->fixed_capacity != ANY_CAPACITY && capacity != (size_t)workload->fixed_capacity)
        return false;
    return true;
}
