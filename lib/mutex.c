/* weft_mutex: one atomic word for the fast path, a queue of parked
 * waiters for the slow path.
 *
 * State word m->state, two bits:
 *   LOCKED  someone holds the mutex.
 *   QUEUED  the wait queue is not empty. Set and cleared only under
 *           m->lock, and always kept equal to "m->queue is not empty"
 *           whenever m->lock is free.
 * Uncontended: lock is CAS 0 -> LOCKED (acquire), unlock is CAS
 * LOCKED -> 0 (release). That unlock CAS fails whenever QUEUED is set,
 * which sends the unlocker to the slow path to wake a waiter.
 *
 * Why no wake-up is lost: a locker queues itself only after a CAS under
 * m->lock that moves the state from a value with LOCKED set to the same
 * value with QUEUED set (or after seeing QUEUED already set under m->lock,
 * which, see below, means LOCKED stays set until m->lock is dropped). In
 * the modification order of m->state either that CAS comes first, and the
 * holder's fast unlock CAS fails and it takes the slow path, which needs
 * m->lock and so sees the waiter; or the unlock comes first, and the
 * locker's CAS fails, it rereads an unlocked state and takes the mutex
 * itself. While QUEUED is set and a thread holds m->lock, LOCKED can only
 * be set (by a barging locker), never cleared: clearing it with QUEUED set
 * is the slow unlock's job, under m->lock.
 *
 * Slow unlock, under m->lock: claim the oldest waiter still waiting
 * (weft__sync_queue_claim skips those that gave up), clear QUEUED if the
 * queue is now empty, and either
 *   - hand the mutex over (LOCKED stays set; waiter->result = GRANTED)
 *     when the waiter has waited 1 ms or more (see Fairness), or
 *   - clear LOCKED and tell the waiter to retry (RETRY): it competes with
 *     threads arriving on the fast path, which may take the mutex first
 *     ("barging"; it keeps the lock hot in a running thread's cache, the
 *     reason Go's normal mode does it).
 * The unpark happens after m->lock is dropped.
 *
 * Fairness, after Go's starvation mode: a woken waiter that loses the race
 * goes back to the front of the queue, not the back, so the queue stays
 * FIFO by first arrival, and it keeps the time it first queued. An unlock
 * whose chosen waiter has been waiting for 1 ms or more hands the mutex
 * straight to it instead of freeing it: nobody can barge in on a mutex
 * that is never free. So the oldest waiter gets the mutex within about
 * 1 ms plus one critical section, every waiter reaches the front in turn,
 * and none starves; while nobody has waited that long, throughput is that
 * of a barging lock. (Go decides starvation in the waiter, which must run
 * and lose once more first; deciding in the unlocker needs no such turn,
 * at the cost of a clock read in the slow unlock.)
 *
 * Memory ordering: the fast paths pair the unlock's release CAS with the
 * next lock's acquire CAS. A hand-off passes the critical section on
 * through m->lock and the parker (the unpark's seq_cst exchange, read by
 * the owner's acquire load), a retried lock through the acquire CAS that
 * takes it, which reads the slow unlock's release RMW.
 *
 * Timeouts: a waiter whose deadline passes claims its own parker; if that
 * succeeds, it unlinks itself under m->lock (clearing QUEUED if it was the
 * last) and returns WEFT_ETIMEDOUT. If an unlocker claimed it first, it
 * waits for the unpark: a hand-off makes it the owner (it returns 0); a
 * retry makes it try once more and report WEFT_ETIMEDOUT on failure, which
 * loses nothing, since a failure means another thread holds the mutex and
 * that thread's unlock will wake the next waiter. *
 * Lifetime: a mutex may be destroyed and freed by a thread that holds it
 * (or saw it free) once no other thread will lock it, even while the
 * unlock that freed it is still returning. A fast unlock's CAS is its
 * last access. A slow unlock clears LOCKED under m->lock and then still
 * unlocks m->lock, so a barging locker could take the mutex, unlock it
 * and destroy it before that unlock: weft_mutex_destroy therefore takes
 * and drops m->lock first (weft__sync_lock_destroy), which waits it out;
 * after m->lock the unlocker touches only the claimed waiter (alive until
 * its unpark) and its parker (never freed). Every other access after the
 * release happens under m->lock too. A waiter handed the mutex learns it
 * only from the unpark, after the unlocker's last access. */
#include "sync_internal.h"

enum {
    LOCKED = 1u,
    QUEUED = 2u,
};

/* Polls of a locked mutex before queueing, with growing pauses between
 * them (about 200 pauses in all): on a busy mutex the holder often leaves
 * within a few hundred nanoseconds. A woken waiter polls RETRY_POLLS
 * times before it queues again. */
enum { SPIN_POLLS = 8, RETRY_POLLS = 4 };

/* A waiter that has waited this long is handed the mutex by the next
 * unlock (Go's starvationThresholdNs). */
#define STARVATION_THRESHOLD WEFT_MS(1)

typedef struct {
    weft__waiter base;      /* first: the queue holds &base */
    weft_time queued_since; /* when it first queued; owner writes it before queueing,
                               unlockers read it under m->lock */
} mutex_waiter;

void weft_mutex_init(weft_mutex *m) {
    atomic_init(&m->state, 0);
    weft__sync_lock_init(&m->lock);
    m->queue.first = m->queue.last = NULL;
}

void weft_mutex_destroy(weft_mutex *m) { weft__sync_lock_destroy(&m->lock); }

/* One attempt on the free mutex; no lost CAS is retried when it is held. */
static inline bool try_take(weft_mutex *m) {
    uint32_t state = atomic_load_explicit(&m->state, memory_order_relaxed);
    while (!(state & LOCKED)) {
        if (atomic_compare_exchange_weak_explicit(&m->state, &state, state | LOCKED,
                                                  memory_order_acquire, memory_order_relaxed))
            return true;
    }
    return false;
}

int weft_mutex_trylock(weft_mutex *m) { return try_take(m) ? 0 : WEFT_EAGAIN; }

/* No parker (its allocation failed): poll, yielding the CPU. */
static int lock_yielding(weft_mutex *m, weft_time deadline, weft_ctx *ctx) {
    for (;;) {
        if (try_take(m)) return 0;
        int error = weft__sync_limit(deadline, ctx);
        if (error) return error;
        weft__sync_yield();
    }
}

/* Under m->lock: take the mutex if it is free (true), or else make sure
 * QUEUED is set while LOCKED is, so that the holder's unlock comes to the
 * queue (false). */
static bool take_or_mark_queued(weft_mutex *m) {
    uint32_t state = atomic_load_explicit(&m->state, memory_order_relaxed);
    for (;;) {
        if (!(state & LOCKED)) {
            if (atomic_compare_exchange_weak_explicit(&m->state, &state, state | LOCKED,
                                                      memory_order_acquire, memory_order_relaxed))
                return true;
        } else if (state & QUEUED) {
            return false;
        } else if (atomic_compare_exchange_weak_explicit(&m->state, &state, state | QUEUED,
                                                         memory_order_relaxed,
                                                         memory_order_relaxed)) {
            return false;
        }
    }
}

/* Under m->lock: the queue may have emptied; keep QUEUED in step. */
static void sync_queued_bit(weft_mutex *m) {
    if (weft__sync_queue_empty(&m->queue))
        atomic_fetch_and_explicit(&m->state, ~(uint32_t)QUEUED, memory_order_relaxed);
}

static int lock_slow(weft_mutex *m, weft_time deadline, weft_ctx *ctx) {
    weft__backoff backoff = {0};
    for (int i = 0; i < SPIN_POLLS; i++) {
        if (try_take(m)) return 0;
        weft__backoff_spin(&backoff);
    }
    weft__parker *parker = weft__parker_self();
    if (!parker) return lock_yielding(m, deadline, ctx);

    mutex_waiter waiter = {.queued_since = weft_now()};
    bool front = false; /* woken and lost: keep our place at the front */
    for (;;) {
        weft__sync_lock(&m->lock);
        if (take_or_mark_queued(m)) {
            weft__sync_unlock(&m->lock);
            return 0;
        }
        weft__sync_waiter_arm(&waiter.base, parker);
        if (front)
            weft__sync_queue_push_front(&m->queue, &waiter.base);
        else
            weft__sync_queue_push(&m->queue, &waiter.base);
        weft__sync_unlock(&m->lock);

        int error = weft__sync_park(&waiter.base, deadline, ctx, "weft_mutex_lock", m);
        if (error) {
            weft__sync_lock(&m->lock);
            weft__sync_queue_remove(&m->queue, &waiter.base);
            sync_queued_bit(m);
            weft__sync_unlock(&m->lock);
            return error;
        }
        if (waiter.base.result == WEFT__SYNC_GRANTED) return 0; /* handed over */
        /* RETRY: the mutex was freed for us to compete for. */
        for (int i = 0; i < RETRY_POLLS; i++) {
            if (try_take(m)) return 0;
            weft__cpu_relax();
        }
        error = weft__sync_limit(deadline, ctx);
        if (error) return error;
        front = true;
    }
}

void weft_mutex_lock(weft_mutex *m) {
    uint32_t unlocked = 0;
    if (atomic_compare_exchange_strong_explicit(&m->state, &unlocked, LOCKED, memory_order_acquire,
                                                memory_order_relaxed))
        return;
    lock_slow(m, WEFT_FOREVER, NULL);
}

int weft_mutex_lock_until(weft_mutex *m, weft_time deadline) {
    if (try_take(m)) return 0;
    if (deadline != WEFT_FOREVER && weft_now() >= deadline) return WEFT_EAGAIN;
    return lock_slow(m, deadline, NULL);
}

int weft_mutex_lock_ctx(weft_mutex *m, weft_ctx *ctx) {
    int error = weft_ctx_err(ctx);
    if (error) return error;
    if (try_take(m)) return 0;
    return lock_slow(m, WEFT_FOREVER, ctx);
}

static void unlock_slow(weft_mutex *m) {
    weft__sync_lock(&m->lock);
    mutex_waiter *waiter = (mutex_waiter *)weft__sync_queue_claim(&m->queue);
    uint32_t clear = weft__sync_queue_empty(&m->queue) ? QUEUED : 0;
    if (waiter && weft_now() - waiter->queued_since >= STARVATION_THRESHOLD) {
        waiter->base.result = WEFT__SYNC_GRANTED; /* LOCKED stays set: it is the owner now */
        if (clear) atomic_fetch_and_explicit(&m->state, ~clear, memory_order_relaxed);
    } else {
        if (waiter) waiter->base.result = WEFT__SYNC_RETRY;
        atomic_fetch_and_explicit(&m->state, ~(LOCKED | clear), memory_order_release);
    }
    weft__sync_unlock(&m->lock);
    if (waiter) weft__parker_unpark(waiter->base.parker);
}

void weft_mutex_unlock(weft_mutex *m) {
    uint32_t state = LOCKED;
    if (atomic_compare_exchange_strong_explicit(&m->state, &state, 0, memory_order_release,
                                                memory_order_relaxed))
        return;
    if (!(state & LOCKED)) weft__panic("unlock of unlocked mutex");
    unlock_slow(m);
}

bool weft__mutex_has_waiters(weft_mutex *m) {
    return atomic_load_explicit(&m->state, memory_order_relaxed) & QUEUED;
}
