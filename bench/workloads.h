/* workloads.h — the workload table of weft-bench.
 *
 * The workloads are those of crossbeam-channel's benchmark suite (and of
 * the anchors in shared/anchors): a message is one long; producers send
 * 1..M (M = their share of the messages), consumers add up what they
 * receive, and every run checks the total. A run covers channel creation,
 * thread start, the transfer, join and channel release, so the caller
 * times the whole call. Threads are plain pthreads. */
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

typedef struct bench_workload {
    const char *name;
    const char *summary;    /* one line for --list */
    bool uses_select;       /* only for peers with has_select */
    bool needs_full_buffer; /* only where capacity >= messages (seq) */
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
