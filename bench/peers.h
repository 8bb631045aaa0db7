/* peers.h — the channel implementations weft-bench compares.
 *
 * A peer is a table of four operations on an opaque channel of longs.
 * The point-to-point workloads (seq, spsc, mpsc, mpmc) run on any peer
 * through this table, so every peer pays the same indirect call per
 * operation. Select workloads need a real select and call weft directly;
 * a peer without one (has_select false) skips them.
 *
 * peers[0] is the baseline that ratios are measured against. */
#ifndef WEFT_BENCH_PEERS_H
#define WEFT_BENCH_PEERS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct bench_peer {
    const char *name;
    const char *summary; /* one line for --list */
    bool has_select;     /* runs the select workloads (weft only) */
    /* A new channel of longs; capacity 0 is unbuffered. NULL on failure. */
    void *(*make)(size_t capacity);
    void (*release)(void *channel);
    /* Blocking send and receive: 0 on success, nonzero on failure. */
    int (*send)(void *channel, long value);
    int (*receive)(void *channel, long *value);
} bench_peer;

extern const bench_peer peers[];
extern const size_t peer_count;

/* The peer that ratios are measured against: &peers[0]. */
#define BASELINE_PEER (&peers[0])

/* The peer called name, or NULL. */
const bench_peer *peer_find(const char *name);

#endif
