/* weft_rwmutex: a writer-preferring reader/writer lock in one atomic word,
 * with a queue of parked readers and one of parked writers.
 *
 * State word m->state:
 *   bit 0  WRITER          a writer holds the lock
 *   bit 1  WRITER_QUEUED   the writer queue is not empty
 *   bit 2  READERS_QUEUED  the reader queue is not empty
 *   bits 3..31             the number of readers holding the lock (READER each)
 * The two *_QUEUED bits change only under m->lock, and match their queues
 * whenever m->lock is free. WRITER_QUEUED is what makes the lock writer
 * preferring: while it is set, new readers queue instead of entering.
 *
 * Fast paths (no lock):
 *   rlock    CAS +READER, only while neither WRITER nor WRITER_QUEUED is set
 *   runlock  CAS -READER; the last reader while WRITER_QUEUED is set
 *            leaves on the slow path instead, to admit the next writer
 *   lock     CAS 0 -> WRITER
 *   unlock   CAS WRITER -> 0, which fails when anyone is queued
 *
 * Slow paths, under m->lock; each re-reads the state, decides, and moves
 * the state and the claimed waiters in one step before dropping the lock
 * (the unparks come after):
 *   A reader that may not enter queues itself after a CAS that sets
 *   READERS_QUEUED on a state that still has WRITER or WRITER_QUEUED (if
 *   READERS_QUEUED is already set, that state cannot change without
 *   m->lock). A writer that may not enter queues itself after a CAS that
 *   sets WRITER_QUEUED on a state that still has WRITER or readers. So a
 *   queued reader is always behind something whose end comes to m->lock:
 *   the writer's unlock (its fast CAS fails on the *_QUEUED bits), the last
 *   reader's runlock (it sees WRITER_QUEUED: the set happened
 *   while readers held the lock, before the count reached zero), or the
 *   queued writers themselves (a writer that gives up and leaves the queue
 *   empty admits the queued readers).
 *   A writer's unlock admits every queued reader at once, adding them to
 *   the count (the lock passes to them directly; the next writer waits for
 *   them to leave); with no reader queued it hands the lock to the oldest
 *   queued writer (WRITER stays set). So readers and writers alternate in
 *   phases and neither side starves: writers are FIFO among themselves
 *   and never overtaken by readers that arrived after them; a queued
 *   reader gets in at the next writer's unlock, so it waits for at most
 *   one writer's hold (after the readers ahead of that writer leave).
 *   The last reader out hands the lock to the oldest queued writer.
 * A hand-off sets WRITER or the reader count for the waiter before it
 * wakes, so a woken waiter owns the lock and never retries.
 *
 * Memory ordering: rlock's and lock's acquire CAS read the release RMW of
 * the last unlock or runlock (runlock's CAS is acq_rel, so the last
 * reader out also carries the other readers' critical sections to the
 * writer it admits); hand-offs pass through m->lock and the parker
 * (seq_cst exchange in unpark, acquire load in park).
 *
 * Timeouts: a waiter whose deadline passes claims its own parker; if it
 * wins it withdraws under m->lock (a writer that leaves the writer queue
 * empty clears WRITER_QUEUED and admits the readers it held back); if it
 * loses, a hand-off is on its way and it returns 0 holding the lock.
 *
 * Lifetime: as for weft_mutex (lib/mutex.c): the fast paths' CAS is their
 * last access; every slow path (unlock, the last runlock, a writer giving
 * up) changes the state only under m->lock and touches m after that only
 * to unlock m->lock, which weft_rwmutex_destroy waits out; hand-offs are
 * seen only through the unpark, after it. The last reader out hands off
 * under m->lock for this reason (runlock_last). */
#include "sync_internal.h"

enum {
    WRITER = 1u,
    WRITER_QUEUED = 2u,
    READERS_QUEUED = 4u,
    READER = 8u, /* one reader in the count */
};

#define READER_COUNT(state) ((state) >> 3)
#define MAX_READERS (UINT32_MAX >> 3)

void weft_rwmutex_init(weft_rwmutex *m) {
    atomic_init(&m->state, 0);
    weft__sync_lock_init(&m->lock);
    m->readers.first = m->readers.last = NULL;
    m->writers.first = m->writers.last = NULL;
}

void weft_rwmutex_destroy(weft_rwmutex *m) { weft__sync_lock_destroy(&m->lock); }

/* ---- fast paths -------------------------------------------------------- */

static inline bool try_read(weft_rwmutex *m) {
    uint32_t state = atomic_load_explicit(&m->state, memory_order_relaxed);
    while (!(state & (WRITER | WRITER_QUEUED))) {
        if (READER_COUNT(state) == MAX_READERS) weft__panic("too many readers on rwmutex");
        if (atomic_compare_exchange_weak_explicit(&m->state, &state, state + READER,
                                                  memory_order_acquire, memory_order_relaxed))
            return true;
    }
    return false;
}

static inline bool try_write(weft_rwmutex *m) {
    uint32_t unlocked = 0;
    return atomic_compare_exchange_strong_explicit(&m->state, &unlocked, WRITER,
                                                   memory_order_acquire, memory_order_relaxed);
}

int weft_rwmutex_tryrlock(weft_rwmutex *m) { return try_read(m) ? 0 : WEFT_EAGAIN; }

int weft_rwmutex_trylock(weft_rwmutex *m) { return try_write(m) ? 0 : WEFT_EAGAIN; }

/* ---- hand-offs, under m->lock ------------------------------------------ */

/* Claim every queued reader still waiting onto *granted; returns how many. */
static uint32_t claim_readers(weft_rwmutex *m, weft__waiter **granted) {
    uint32_t count = 0;
    weft__waiter *reader;
    while ((reader = weft__sync_queue_claim(&m->readers))) {
        reader->result = WEFT__SYNC_GRANTED;
        reader->next = *granted;
        *granted = reader;
        count++;
    }
    return count;
}

/* Claim the oldest queued writer still waiting onto *granted. */
static bool claim_writer(weft_rwmutex *m, weft__waiter **granted) {
    weft__waiter *writer = weft__sync_queue_claim(&m->writers);
    if (!writer) return false;
    writer->result = WEFT__SYNC_GRANTED;
    writer->next = *granted;
    *granted = writer;
    return true;
}

/* Apply change to the state atomically: readers may enter or leave on the
 * fast path meanwhile, so the flags and count move in one CAS. */
static void update_state(weft_rwmutex *m, uint32_t set, uint32_t clear, uint32_t add_readers) {
    uint32_t state = atomic_load_explicit(&m->state, memory_order_relaxed);
    uint32_t next;
    do {
        if (add_readers > MAX_READERS - READER_COUNT(state))
            weft__panic("too many readers on rwmutex");
        next = ((state | set) & ~clear) + add_readers * READER;
    } while (!atomic_compare_exchange_weak_explicit(&m->state, &state, next, memory_order_acq_rel,
                                                    memory_order_relaxed));
}

/* The writers are gone or all gave up: clear WRITER_QUEUED and, unless a
 * writer holds the lock (its unlock will do it), admit the queued readers. */
static void writers_gone(weft_rwmutex *m, weft__waiter **granted) {
    uint32_t state = atomic_load_explicit(&m->state, memory_order_relaxed);
    uint32_t readers = (state & WRITER) ? 0 : claim_readers(m, granted);
    update_state(m, 0, WRITER_QUEUED | (readers ? READERS_QUEUED : 0), readers);
}

/* ---- readers ----------------------------------------------------------- */

static int rlock_yielding(weft_rwmutex *m, weft_time deadline, weft_ctx *ctx) {
    for (;;) {
        if (try_read(m)) return 0;
        int error = weft__sync_limit(deadline, ctx);
        if (error) return error;
        weft__sync_yield();
    }
}

/* Under m->lock: enter (true), or set READERS_QUEUED while something holds
 * readers back (false). */
static bool read_or_mark_queued(weft_rwmutex *m) {
    uint32_t state = atomic_load_explicit(&m->state, memory_order_relaxed);
    for (;;) {
        if (!(state & (WRITER | WRITER_QUEUED))) {
            if (READER_COUNT(state) == MAX_READERS) weft__panic("too many readers on rwmutex");
            if (atomic_compare_exchange_weak_explicit(&m->state, &state, state + READER,
                                                      memory_order_acquire, memory_order_relaxed))
                return true;
        } else if (state & READERS_QUEUED) {
            return false;
        } else if (atomic_compare_exchange_weak_explicit(&m->state, &state, state | READERS_QUEUED,
                                                         memory_order_relaxed,
                                                         memory_order_relaxed)) {
            return false;
        }
    }
}

static int rlock_slow(weft_rwmutex *m, weft_time deadline, weft_ctx *ctx) {
    weft__parker *parker = weft__parker_self();
    if (!parker) return rlock_yielding(m, deadline, ctx);
    weft__waiter waiter;
    weft__sync_lock(&m->lock);
    if (read_or_mark_queued(m)) {
        weft__sync_unlock(&m->lock);
        return 0;
    }
    weft__sync_waiter_arm(&waiter, parker);
    weft__sync_queue_push(&m->readers, &waiter);
    weft__sync_unlock(&m->lock);

    int error = weft__sync_park(&waiter, deadline, ctx, "weft_rwmutex_rlock", m);
    if (error) {
        weft__sync_lock(&m->lock);
        weft__sync_queue_remove(&m->readers, &waiter);
        if (weft__sync_queue_empty(&m->readers))
            atomic_fetch_and_explicit(&m->state, ~(uint32_t)READERS_QUEUED, memory_order_relaxed);
        weft__sync_unlock(&m->lock);
    }
    return error; /* 0: a writer's unlock counted us in */
}

void weft_rwmutex_rlock(weft_rwmutex *m) {
    if (try_read(m)) return;
    rlock_slow(m, WEFT_FOREVER, NULL);
}

int weft_rwmutex_rlock_until(weft_rwmutex *m, weft_time deadline) {
    if (try_read(m)) return 0;
    if (deadline != WEFT_FOREVER && weft_now() >= deadline) return WEFT_EAGAIN;
    return rlock_slow(m, deadline, NULL);
}

int weft_rwmutex_rlock_ctx(weft_rwmutex *m, weft_ctx *ctx) {
    int error = weft_ctx_err(ctx);
    if (error) return error;
    if (try_read(m)) return 0;
    return rlock_slow(m, WEFT_FOREVER, ctx);
}

/* The last reader out while a writer waits leaves under m->lock, so that
 * the count's fall to zero and the hand-off are one step. Were the count
 * to fall first, a queued writer could give up, a new writer take the free
 * lock on the fast path, unlock it and destroy the rwmutex, all before this
 * reader reached m->lock. */
static void runlock_last(weft_rwmutex *m) {
    weft__waiter *granted = NULL;
    weft__sync_lock(&m->lock);
    /* Readers may have entered since the caller looked, if the writers
     * gave up meanwhile; then one of them is the last, not us. */
    uint32_t prior = atomic_fetch_sub_explicit(&m->state, READER, memory_order_acq_rel);
    if (READER_COUNT(prior) == 1 && !(prior & WRITER) && (prior & WRITER_QUEUED)) {
        if (claim_writer(m, &granted))
            update_state(m, WRITER, weft__sync_queue_empty(&m->writers) ? WRITER_QUEUED : 0, 0);
        else
            writers_gone(m, &granted);
    }
    weft__sync_unlock(&m->lock);
    weft__sync_unpark_list(granted);
}

void weft_rwmutex_runlock(weft_rwmutex *m) {
    uint32_t state = atomic_load_explicit(&m->state, memory_order_relaxed);
    do {
        if (READER_COUNT(state) == 0) weft__panic("runlock of unlocked rwmutex");
        if (READER_COUNT(state) == 1 && (state & WRITER_QUEUED)) {
            runlock_last(m);
            return;
        }
    } while (!atomic_compare_exchange_weak_explicit(&m->state, &state, state - READER,
                                                    memory_order_acq_rel, memory_order_relaxed));
}

/* ---- writers ----------------------------------------------------------- */

static int lock_yielding(weft_rwmutex *m, weft_time deadline, weft_ctx *ctx) {
    for (;;) {
        if (try_write(m)) return 0;
        int error = weft__sync_limit(deadline, ctx);
        if (error) return error;
        weft__sync_yield();
    }
}

/* Under m->lock: take the lock (true), or set WRITER_QUEUED while readers
 * or a writer hold it (false). A free lock with writers queued belongs to
 * the oldest of them: the last reader out is on its way to hand it over. */
static bool write_or_mark_queued(weft_rwmutex *m) {
    uint32_t state = atomic_load_explicit(&m->state, memory_order_relaxed);
    for (;;) {
        if (state & WRITER_QUEUED) return false;
        if (!(state & WRITER) && READER_COUNT(state) == 0) {
            if (atomic_compare_exchange_weak_explicit(&m->state, &state, state | WRITER,
                                                      memory_order_acquire, memory_order_relaxed))
                return true;
        } else if (atomic_compare_exchange_weak_explicit(&m->state, &state, state | WRITER_QUEUED,
                                                         memory_order_relaxed,
                                                         memory_order_relaxed)) {
            return false;
        }
    }
}

static int lock_slow(weft_rwmutex *m, weft_time deadline, weft_ctx *ctx) {
    weft__parker *parker = weft__parker_self();
    if (!parker) return lock_yielding(m, deadline, ctx);
    weft__waiter waiter;
    weft__sync_lock(&m->lock);
    if (write_or_mark_queued(m)) {
        weft__sync_unlock(&m->lock);
        return 0;
    }
    weft__sync_waiter_arm(&waiter, parker);
    weft__sync_queue_push(&m->writers, &waiter);
    weft__sync_unlock(&m->lock);

    int error = weft__sync_park(&waiter, deadline, ctx, "weft_rwmutex_lock", m);
    if (error) {
        weft__waiter *granted = NULL;
        weft__sync_lock(&m->lock);
        weft__sync_queue_remove(&m->writers, &waiter);
        if (weft__sync_queue_empty(&m->writers)) writers_gone(m, &granted);
        weft__sync_unlock(&m->lock);
        weft__sync_unpark_list(granted);
    }
    return error; /* 0: handed the lock (WRITER set for us) */
}

void weft_rwmutex_lock(weft_rwmutex *m) {
    if (try_write(m)) return;
    lock_slow(m, WEFT_FOREVER, NULL);
}

int weft_rwmutex_lock_until(weft_rwmutex *m, weft_time deadline) {
    if (try_write(m)) return 0;
    if (deadline != WEFT_FOREVER && weft_now() >= deadline) return WEFT_EAGAIN;
    return lock_slow(m, deadline, NULL);
}

int weft_rwmutex_lock_ctx(weft_rwmutex *m, weft_ctx *ctx) {
    int error = weft_ctx_err(ctx);
    if (error) return error;
    if (try_write(m)) return 0;
    return lock_slow(m, WEFT_FOREVER, ctx);
}

static void unlock_slow(weft_rwmutex *m) {
    weft__waiter *granted = NULL;
    weft__sync_lock(&m->lock);
    uint32_t readers = claim_readers(m, &granted);
    if (readers) {
        /* The readers that queued during our hold go first; WRITER_QUEUED
         * (if set) stays and holds back readers that come after them. */
        update_state(m, 0, WRITER | READERS_QUEUED, readers);
    } else if (claim_writer(m, &granted)) {
        /* WRITER stays set: the lock is the writer's now. */
        update_state(m, 0,
                     READERS_QUEUED | (weft__sync_queue_empty(&m->writers) ? WRITER_QUEUED : 0), 0);
    } else {
        update_state(m, 0, WRITER | WRITER_QUEUED | READERS_QUEUED, 0);
    }
    weft__sync_unlock(&m->lock);
    weft__sync_unpark_list(granted);
}

void weft_rwmutex_unlock(weft_rwmutex *m) {
    uint32_t state = WRITER;
    if (atomic_compare_exchange_strong_explicit(&m->state, &state, 0, memory_order_release,
                                                memory_order_relaxed))
        return;
    if (!(state & WRITER)) weft__panic("unlock of unlocked rwmutex");
    unlock_slow(m);
}

bool weft__rwmutex_readers_queued(weft_rwmutex *m) {
    return atomic_load_explicit(&m->state, memory_order_relaxed) & READERS_QUEUED;
}

uint32_t weft__rwmutex_readers(weft_rwmutex *m) {
    return READER_COUNT(atomic_load_explicit(&m->state, memory_order_relaxed));
}
