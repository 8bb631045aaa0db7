/* workloads.h — the workload table of weft-bench.
 *
 * Three families:
 *   - the grid of the anchors (shared/anchors, after crossbeam-channel's
 *     benchmark suite): seq, spsc, mpsc, mpmc, select_rx, select_both, at
 *     every capacity of --cap. A message is one long; producers send 1..M
 *     (M = their share of the messages), consumers add up what they
 *     receive, and every run checks the total.
 *   - Go's runtime benchmarks that matter to channel users
 *     (src/runtime/chan_test.go): chan_* and select_*. They make channels
 *     of the capacities Go gives them and run once, whatever --cap says.
 *     What a "message" is depends on the benchmark (--list says); the run
 *     checks what went through or what the operations returned.
 *   - spawn: starting a task and waiting for it, weft_go against
 *     pthread_create + pthread_join.
 *   - latency_light and latency_full: how long one hand-off takes, at every
 *     capacity of --cap. A message is a timestamp (weft_now(), before the
 *     send); the receiver stores now - timestamp in workload_params'
 *     latencies, and the runner turns them into percentiles. latency_light
 *     sends one message at a time, LATENCY_GAP_NS apart, so that each
 *     finds the receiver idle (the wake-up path); latency_full has T
 *     producers send back to back (the time includes queueing).
 * A run covers channel creation, thread start, the work, join and channel
 * release, so the caller times the whole call. Threads are plain pthreads. */
#ifndef WEFT_BENCH_WORKLOADS_H
#define WEFT_BENCH_WORKLOADS_H

#include <stdbool.h>
#include <stddef.h>

#include "peers.h"

typedef struct workload_params {
    const bench_peer *peer;
    size_t capacity; /* of the channels the workload makes (Go's: what the table says) */
    long messages;   /* requested; workloads round to whole shares, at least one each */
    int threads;     /* T */
    /* Latency workloads (bench_workload.latency): room for messages +
     * threads samples, where the run stores the ns from before each send
     * to after its receive, in the order received; else NULL. */
    long *latencies;
} workload_params;

/* Runs the workload once and returns the number of messages transferred.
 * A failed channel operation or a wrong checksum prints one line to
 * stderr and exits with status 1; a thread that cannot start, status 2. */
typedef long workload_run(const workload_params *params);

#define ANY_CAPACITY (-1L)

/* latency_light: the pause between one send's return and the next timestamp,
 * long enough for the receiver to have stopped spinning and parked. */
#define LATENCY_GAP_NS 50000L

typedef struct bench_workload {
    const char *name;
    const char *summary; /* one line for --list: what runs, and what a message is */
    /* Go 1.19 on the project machine (go test -bench, GOMAXPROCS=2), in ns
     * per message as this workload counts them, and how Go counts its op;
     * NULL: not one of Go's benchmarks. For --list. */
    const char *go_reference;
    unsigned needs;         /* the PEER_* capability a peer must provide to run it */
    bool needs_full_buffer; /* only where capacity >= messages (seq) */
    /* ANY_CAPACITY: a grid workload, run at every --cap entry with
     * channels of that capacity. Otherwise the capacity Go's benchmark
     * gives its channel (times T when capacity_per_thread: Go's
     * GOMAXPROCS); the workload runs once, whatever --cap says. */
    long fixed_capacity;
    bool capacity_per_thread;
    const char
        *capacity_label;   /* for the report when fixed ("100T", "0/1", "-"); NULL: the number */
    int fixed_threads;     /* 0: --threads; else always this many (Go's ChanSync: 2) */
    long default_messages; /* without --messages; 0: the grid's defaults */
    bool latency;          /* fills workload_params' latencies; reported apart */
    workload_run *run;
} bench_workload;

extern const bench_workload workloads[];
extern const size_t workload_count;

/* The workload called name, or NULL. */
const bench_workload *workload_find(const char *name);

/* Whether the workload is in the grid (runs at every --cap entry). */
bool workload_in_grid(const bench_workload *workload);

/* The threads a case of workload runs with, given --threads. */
int workload_threads(const bench_workload *workload, int threads);

/* Whether the workload runs on this peer at this capacity. */
bool workload_applies(const bench_workload *workload, const bench_peer *peer, size_t capacity,
                      long messages);

#endif
