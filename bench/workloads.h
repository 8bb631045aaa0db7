/* workloads.h — the workload table of weft-bench.
 *
 * The workloads are those of crossbeam-channel's benchmark suite (and of
 * the anchors in shared/anchors): a message is one long; producers send
 * 1..M (M = their share of the messages), consumers add up what they
 * receive, and every run checks the total. Two more are Go's runtime
 * select benchmarks (src/runtime/chan_test.go), where a message is one
 * iteration of the benchmark's loop and the run checks what the selects
 * chose. A run covers channel creation, thread start, the transfer, join
 * and channel release, so the caller times the whole call. Threads are
 * plain pthreads. */
#ifndef WEFT_BENCH_WORKLOADS_H
#define WEFT_BENCH_WORKLOADS_H

#include <stdbool.h>
#include <stddef.h>

#include "peers.h"

typedef struct workload_params {
    const bench_peer *peer;
    size_t capacity; /* of every channel the workload makes */
    long messages;   /* requested; threaded workloads round down to a multiple of threads */
    int threads;     /* T */
} workload_params;

/* Runs the workload once and returns the number of messages transferred.
 * A failed channel operation or a wrong checksum prints one line to
 * stderr and exits with status 1; a thread that cannot start, status 2. */
typedef long workload_run(const workload_params *params);

#define ANY_CAPACITY (-1L)

typedef struct bench_workload {
    const char *name;
    const char *summary;    /* one line for --list */
    bool uses_select;       /* only for peers with has_select */
    bool needs_full_buffer; /* only where capacity >= messages (seq) */
    /* ANY_CAPACITY: runs at every --cap entry with channels of that
     * capacity. Otherwise the workload makes channels of the capacities Go's
     * benchmark uses, and runs only where --cap lists this capacity, so that
     * the default grid runs it once. */
    long fixed_capacity;
    workload_run *run;
} bench_workload;

extern const bench_workload workloads[];
extern const size_t workload_count;

/* The workload called name, or NULL. */
const bench_workload *workload_find(const char *name);

/* Whether the workload runs on this peer at this capacity. */
bool workload_applies(const bench_workload *workload, const bench_peer *peer, size_t capacity,
                      long messages);

#endif
