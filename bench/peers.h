/* peers.h — the implementations weft-bench compares.
 *
 * A peer provides some of three capabilities, and a workload needs one:
 *   PEER_CHANNEL  a table of four operations on an opaque channel of
 *                 longs. The point-to-point workloads (seq, spsc, mpsc,
 *                 mpmc, most of Go's channel benchmarks) run on any peer
 *                 through this table, so every peer pays the same
 *                 indirect call per operation.
 *   PEER_WEFT     weft's own API beyond send and receive (select, try
 *                 operations): the workloads call weft directly; weft only.
 *   PEER_SPAWN    starting a task and waiting for it: weft_go against
 *                 pthread_create + pthread_join.
 * Each capability has a baseline peer that ratios are measured against:
 * the condvar queue for channels (and for PEER_WEFT, where it cannot run,
 * so those cases have no ratio), pthread for spawning. */
#ifndef WEFT_BENCH_PEERS_H
#define WEFT_BENCH_PEERS_H

#include <stdbool.h>
#include <stddef.h>

enum {
    PEER_CHANNEL = 1u << 0,
    PEER_WEFT = 1u << 1,
    PEER_SPAWN = 1u << 2,
};

/* A task of PEER_SPAWN: runs once per spawn. */
typedef void bench_task(void *argument);

typedef struct bench_peer {
    const char *name;
    const char *summary;   /* one line for --list */
    unsigned provides;     /* PEER_* */
    unsigned baseline_for; /* PEER_*: capabilities whose cases divide by this peer */
    /* PEER_CHANNEL (else NULL). A new channel of longs; capacity 0 is
     * unbuffered. NULL on failure. */
    void *(*make)(size_t capacity);
    void (*release)(void *channel);
    /* Blocking send and receive: 0 on success, nonzero on failure. */
    int (*send)(void *channel, long value);
    int (*receive)(void *channel, long *value);
    /* PEER_SPAWN (else NULL). Starts count tasks, each running
     * task(argument) on a thread of its own (or a goroutine), then waits
     * until all have returned. 0 on success; nonzero when a task could not
     * be started (those started are still waited for). */
    int (*spawn)(int count, bench_task *task, void *argument);
} bench_peer;

extern const bench_peer peers[];
extern const size_t peer_count;

/* The peer called name, or NULL. */
const bench_peer *peer_find(const char *name);

/* The baseline of workloads that need capability (one PEER_* bit), or
 * NULL when there is none. */
const bench_peer *peer_baseline(unsigned capability);

#endif
