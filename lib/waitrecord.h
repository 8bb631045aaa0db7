/* The wait record: what a thread blocked in weft is waiting on, kept in
 * its parker for weft_debug_dump (dump.c) and the deadlock report
 * (deadlock.c).
 *
 * Who writes it
 *   Only the parker's owner, on the slow path of a blocking call: after
 *   the call's fast attempts failed and before it parks (begin), and once
 *   the wait is over (end). Calls nest: io.c's weft_read_ctx begins "on
 *   fd 7" and then waits through the engine, which begins too; only the
 *   outermost begin writes (depth, the owner's alone) and only the
 *   outermost end clears, so the record names the call the user made.
 *
 * Who reads it
 *   The owner itself (whether its wait is described, for deadlock
 *   counting), and any thread taking a dump, at any moment, without a
 *   lock. So every field but depth is atomic and the record is a
 *   sequence lock: begin makes sequence odd, stores the fields, and makes
 *   it even again with a release store; a reader loads sequence
 *   (acquire), the fields, and sequence again, and keeps what it read
 *   only if both loads saw the same even number. The fields are stored
 *   with release and loaded with acquire (plain moves on x86 and, unlike
 *   fences, understood by ThreadSanitizer): a reader that saw any field of
 *   a newer begin has synchronised with that store, which follows the odd
 *   store to sequence, so its second load sees that or a newer number
 *   (Boehm, "Can seqlocks get along with programming language memory
 *   models?", 2012, gives the fence form of the same argument). end
 *   stores call = NULL alone: a reader that still sees the older call
 *   with its fields read a record that was true a moment ago, and one
 *   that sees NULL skips the thread.
 *
 * What it never does
 *   Point the reader at anything it may not touch: the object is only an
 *   address to print (a channel may be freed by the partner that completed
 *   the wait while the dump runs), so every number the dump prints beside
 *   it (a channel's capacity and length, an fd) is copied in by the owner
 *   at begin, while the object is surely alive.
 *
 * Cost
 *   Nothing on a fast path: begin runs only when a call is about to wait.
 *   There it is a coarse clock read (clock_gettime(CLOCK_MONOTONIC_COARSE),
 *   served by the vDSO without a system call) and eight stores (plain
 *   moves on x86), no atomic read-modify-write; end is one store. The parking that follows
 *   costs a futex round trip or a spin of several hundred nanoseconds. */
#ifndef WEFT_LIB_WAITRECORD_H
#define WEFT_LIB_WAITRECORD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct weft__wait_record {
    atomic_uint sequence;         /* even: stable; odd: the owner is rewriting it */
    _Atomic(const char *) call;   /* the blocking call, a string literal; NULL: not waiting */
    _Atomic(const void *) object; /* what it waits on (a channel, a mutex, select's cases) */
    /* Numbers shown beside the object, by the kind of call: a channel's
     * capacity and its length when the wait began; a select's cases; an
     * fd and its events; a sleep's length in milliseconds. */
    atomic_size_t count;
    atomic_size_t length;
    atomic_long thread_id;  /* the owner's kernel thread id */
    _Atomic(int64_t) since; /* CLOCK_MONOTONIC_COARSE nanoseconds at begin */
    int depth;              /* owner only: begins not yet ended */
} weft__wait_record;

/* A copy of a record, read by weft__wait_record_read. */
typedef struct weft__wait_snapshot {
    const char *call;
    const void *object;
    size_t count, length;
    long thread_id;
    int64_t since;
} weft__wait_snapshot;

/* The coarse monotonic clock, in nanoseconds: a few nanoseconds to read,
 * a few milliseconds' resolution, enough for how long a thread waited. */
static inline int64_t weft__coarse_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* Owner, before a wait: describe it, unless an outer call of the same
 * thread already did (then only count the nesting). */
static inline void weft__wait_record_begin(weft__wait_record *record, const char *call,
                                           const void *object, size_t count, size_t length,
                                           long thread_id) {
    if (record->depth++ > 0) return;
    unsigned sequence = atomic_load_explicit(&record->sequence, memory_order_relaxed);
    atomic_store_explicit(&record->sequence, sequence + 1, memory_order_relaxed);
    atomic_store_explicit(&record->object, object, memory_order_release);
    atomic_store_explicit(&record->count, count, memory_order_release);
    atomic_store_explicit(&record->length, length, memory_order_release);
    atomic_store_explicit(&record->thread_id, thread_id, memory_order_release);
    atomic_store_explicit(&record->since, weft__coarse_now(), memory_order_release);
    atomic_store_explicit(&record->call, call, memory_order_release);
    atomic_store_explicit(&record->sequence, sequence + 2, memory_order_release);
}

/* Owner, once the wait begun by the matching begin is over. */
static inline void weft__wait_record_end(weft__wait_record *record) {
    if (--record->depth > 0) return;
    atomic_store_explicit(&record->call, NULL, memory_order_relaxed);
}

/* Owner: whether its current wait is described (the deadlock detector
 * counts only described waits). */
static inline bool weft__wait_record_described(const weft__wait_record *record) {
    return atomic_load_explicit(&record->call, memory_order_relaxed) != NULL;
}

/* Owner, in a forked child or when a thread takes the parker: no wait. */
static inline void weft__wait_record_clear(weft__wait_record *record) {
    record->depth = 0;
    atomic_store_explicit(&record->call, NULL, memory_order_relaxed);
}

/* Anyone: copy the record into *out. False when the owner is not in a
 * described wait, or kept rewriting it while we looked. */
static inline bool weft__wait_record_read(const weft__wait_record *record,
                                          weft__wait_snapshot *out) {
    enum { ATTEMPTS = 64 };
    for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
        unsigned before = atomic_load_explicit(&record->sequence, memory_order_acquire);
        if (before & 1) continue;
        out->call = atomic_load_explicit(&record->call, memory_order_acquire);
        out->object = atomic_load_explicit(&record->object, memory_order_acquire);
        out->count = atomic_load_explicit(&record->count, memory_order_acquire);
        out->length = atomic_load_explicit(&record->length, memory_order_acquire);
        out->thread_id = atomic_load_explicit(&record->thread_id, memory_order_acquire);
        out->since = atomic_load_explicit(&record->since, memory_order_acquire);
        unsigned after = atomic_load_explicit(&record->sequence, memory_order_relaxed);
        if (before == after) return out->call != NULL;
    }
    return false;
}

#endif
