/* workloads.c — the six workloads: seq, spsc, mpsc, mpmc (any peer) and
 * select_rx, select_both (weft_select).
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

/* ---- the table ---------------------------------------------------------- */

const bench_workload workloads[] = {
    {"seq", "one thread sends every message, then receives them (capacity >= messages only)", false,
     true, run_seq},
    {"spsc", "1 producer thread, the main thread receives", false, false, run_spsc},
    {"mpsc", "T producer threads, the main thread receives", false, false, run_mpsc},
    {"mpmc", "T producer threads, T consumer threads, one channel", false, false, run_mpmc},
    {"select_rx", "T producers, one channel each; the main thread selects over the T channels",
     true, false, run_select_rx},
    {"select_both", "T producers select-send, T consumers select-receive, over T channels", true,
     false, run_select_both},
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
    return true;
}
