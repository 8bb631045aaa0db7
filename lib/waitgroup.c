/* weft_wg: a counter and a queue of threads waiting for it to reach zero.
 *
 * State word wg->state = counter * COUNTER + wakers * WAKER + QUEUED:
 *   QUEUED (bit 0)   the wait queue is not empty. Set and cleared only
 *                    under wg->lock; matches the queue whenever wg->lock
 *                    is free.
 *   wakers (bits 1..WAKER_BITS)  the adds that changed the counter under
 *                    wg->lock and have not yet finished with wg (see
 *                    Lifetime). A count, not a bit, so that two adds
 *                    between their unlock and their last RMW cannot clear
 *                    each other's mark.
 *   counter (above)  changed by CAS anywhere (add/done).
 *
 *   add(delta)  CAS state -> state + delta * COUNTER. A change that leaves
 *               the counter non-zero, or reaches zero with nobody queued,
 *               is that CAS alone. When it would reach zero while QUEUED
 *               is set, it takes wg->lock instead and there makes its
 *               change with a CAS that also adds a WAKER mark (and, if it
 *               reaches zero, clears QUEUED); it claims every queued
 *               waiter, drops wg->lock, removes its mark with one RMW
 *               and only then unparks them.
 *   wait        an acquire load that reads counter zero and no waker
 *               returns at once. Otherwise, under wg->lock: a CAS that
 *               sets QUEUED on a state whose counter is not zero, then
 *               queue and park.
 *
 * No wake-up is lost: the waiter's CAS and the add that reaches zero are
 * both RMWs of wg->state. If the waiter's comes first, the zero-reaching
 * add sees QUEUED, takes wg->lock (so it runs after the waiter has
 * queued) and claims it. If the add comes first, the waiter's CAS fails,
 * it rereads a zero counter and returns.
 *
 * Lifetime (DESIGN.md, "free what you have seen finish"): a wait that
 * returns 0 lets its caller free wg at once, with or without
 * weft_wg_destroy (Go code has none), while the add that released it may
 * still be returning. So an add must not touch wg after a wait can see
 * the counter at zero. The lone CAS of the fast path is its own last
 * access. The locked path still walks the queue and unlocks wg->lock
 * after its CAS, and the waiter that reads zero may never have queued
 * (it polls, or it gave up at its deadline and left the queue before the
 * add took the lock): the WAKER mark, made in that same CAS, covers
 * those accesses. The add's last access is the RMW removing its mark;
 * every wait, before returning 0, waits (yielding) until it has seen the
 * waker count at zero, which it does with an acquire load that reads the
 * removal, so each such add's unlock happens before the wait returns.
 * The spin is short: a marked add is between its unlock and that RMW.
 * Woken waiters spin too, for a marked add of an earlier change in the
 * same round (one that left the counter above zero). Parked waiters are
 * unparked through their parkers, which are never freed, after the RMW;
 * the claim keeps each waiter's frame alive until its unpark.
 *
 * Waking only the waiters queued at the moment the counter reached zero
 * (and all of them) is what makes reuse safe: a thread that calls wait in
 * the next round, after a new add, queues under the lock after that
 * zero-reaching CAS and is not woken by it.
 *
 * Memory ordering: every add is an acq_rel RMW, so the counter's updates
 * form one release sequence; the wait that reads zero (acquire, or the
 * parker's acquire after an unpark that follows the zeroing CAS) sees
 * everything done before each done(). The mark's removal is a release
 * RMW, read by the waiter's acquire load.
 *
 * A waiter whose deadline passes claims its own parker and, if it wins,
 * leaves the queue under wg->lock (clearing QUEUED if it was the last);
 * if the zero-reaching add claimed it first, it returns 0. */
#include "sync_internal.h"

#include "alloc.h"

enum { QUEUED = 1 };

/* Up to 2^22 - 1 marked adds at once: more threads than Linux allows
 * (PID_MAX_LIMIT is 2^22). The counter gets the remaining 40 bits. */
enum { WAKER_BITS = 22 };
#define WAKER ((int64_t)2)
#define WAKERS_MASK (((int64_t)1 << (WAKER_BITS + 1)) - WAKER)
#define COUNTER ((int64_t)1 << (WAKER_BITS + 1))
#define MAX_COUNTER (INT64_MAX / COUNTER)

static inline int64_t counter_of(int64_t state) { return state / COUNTER; }

static inline int64_t wakers_of(int64_t state) { return (state & WAKERS_MASK) / WAKER; }

void weft_wg_init(weft_wg *wg) {
    atomic_init(&wg->state, 0);
    weft__sync_lock_init(&wg->lock);
    wg->queue.first = wg->queue.last = NULL;
}

/* Wait until no marked add is still finishing with wg (see Lifetime). */
static void settle(weft_wg *wg) {
    while (wakers_of(atomic_load_explicit(&wg->state, memory_order_acquire)) != 0)
        weft__sync_yield();
}

void weft_wg_destroy(weft_wg *wg) {
    settle(wg);
    weft__sync_lock_destroy(&wg->lock);
}

/* The new counter after adding delta to state's, aborting on misuse. */
static inline int64_t checked_counter(int64_t state, int64_t delta) {
    int64_t counter = counter_of(state);
    if (delta < 0 ? counter + delta < 0 : delta > MAX_COUNTER - counter) {
        if (delta < 0) weft__panic("negative WaitGroup counter");
        weft__panic("WaitGroup counter overflow");
    }
    return counter + delta;
}

/* The counter may reach zero with waiters queued: change it under
 * wg->lock, marked as a waker until this call is done with wg. */
static void add_and_wake(weft_wg *wg, int64_t delta) {
    weft__waiter *woken = NULL, *waiter;
    weft__sync_lock(&wg->lock);
    int64_t state = atomic_load_explicit(&wg->state, memory_order_relaxed);
    int64_t counter, next;
    do {
        counter = checked_counter(state, delta);
        if ((state & WAKERS_MASK) == WAKERS_MASK) weft__panic("too many WaitGroup wakers at once");
        /* Reaching zero, the waiters are all claimed below: QUEUED goes. */
        next = counter * COUNTER + (state & WAKERS_MASK) + WAKER + (counter ? state & QUEUED : 0);
    } while (!atomic_compare_exchange_weak_explicit(&wg->state, &state, next, memory_order_acq_rel,
                                                    memory_order_relaxed));
    if (counter == 0) {
        while ((waiter = weft__sync_queue_claim(&wg->queue))) {
            waiter->result = WEFT__SYNC_GRANTED;
            waiter->next = woken;
            woken = waiter;
        }
    }
    weft__sync_unlock(&wg->lock);
    /* The last access to wg: a wait that reads no waker may free it. */
    atomic_fetch_sub_explicit(&wg->state, WAKER, memory_order_release);
    weft__sync_unpark_list(woken);
}

void weft_wg_add(weft_wg *wg, int64_t delta) {
    int64_t state = atomic_load_explicit(&wg->state, memory_order_relaxed);
    for (;;) {
        int64_t counter = checked_counter(state, delta);
        if (counter == 0 && (state & QUEUED)) {
            add_and_wake(wg, delta);
            return;
        }
        if (atomic_compare_exchange_weak_explicit(&wg->state, &state,
                                                  counter * COUNTER + state % COUNTER,
                                                  memory_order_acq_rel, memory_order_relaxed))
            return;
    }
}

void weft_wg_done(weft_wg *wg) { weft_wg_add(wg, -1); }

/* Whether a wait may return 0 now: the counter is zero. One acquire load
 * unless a marked add is still finishing, which it then waits out. */
static inline bool reached_zero(weft_wg *wg) {
    int64_t state = atomic_load_explicit(&wg->state, memory_order_acquire);
    if (counter_of(state) != 0) return false;
    if (wakers_of(state) != 0) settle(wg);
    return true;
}

static int wait_yielding(weft_wg *wg, weft_time deadline, weft_ctx *ctx) {
    for (;;) {
        if (reached_zero(wg)) return 0;
        int error = weft__sync_limit(deadline, ctx);
        if (error) return error;
        weft__sync_yield();
    }
}

/* Under wg->lock: true when the counter is zero, else QUEUED is set. */
static bool zero_or_mark_queued(weft_wg *wg) {
    int64_t state = atomic_load_explicit(&wg->state, memory_order_acquire);
    for (;;) {
        if (counter_of(state) == 0) return true;
        if (state & QUEUED) return false;
        if (atomic_compare_exchange_weak_explicit(&wg->state, &state, state | QUEUED,
                                                  memory_order_acq_rel, memory_order_acquire))
            return false;
    }
}

static int wait_slow(weft_wg *wg, weft_time deadline, weft_ctx *ctx) {
    weft__parker *parker = weft__parker_self();
    if (!parker) return wait_yielding(wg, deadline, ctx);
    weft__waiter waiter;
    weft__sync_lock(&wg->lock);
    if (zero_or_mark_queued(wg)) {
        weft__sync_unlock(&wg->lock);
        settle(wg); /* the add that reached zero may still hold a mark */
        return 0;
    }
    weft__sync_waiter_arm(&waiter, parker);
    weft__sync_queue_push(&wg->queue, &waiter);
    weft__sync_unlock(&wg->lock);

    int error = weft__sync_park(&waiter, deadline, ctx, "weft_wg_wait", wg);
    if (error) {
        weft__sync_lock(&wg->lock);
        weft__sync_queue_remove(&wg->queue, &waiter);
        if (weft__sync_queue_empty(&wg->queue))
            atomic_fetch_and_explicit(&wg->state, ~(int64_t)QUEUED, memory_order_relaxed);
        weft__sync_unlock(&wg->lock);
        return error;
    }
    settle(wg); /* our waker's mark is gone; an earlier add's may not be */
    return 0;
}

void weft_wg_wait(weft_wg *wg) {
    if (reached_zero(wg)) return;
    wait_slow(wg, WEFT_FOREVER, NULL);
}

int weft_wg_wait_until(weft_wg *wg, weft_time deadline) {
    if (reached_zero(wg)) return 0;
    if (deadline != WEFT_FOREVER && weft_now() >= deadline) return WEFT_EAGAIN;
    return wait_slow(wg, deadline, NULL);
}

int weft_wg_wait_ctx(weft_wg *wg, weft_ctx *ctx) {
    if (reached_zero(wg)) return 0;
    int error = weft_ctx_err(ctx);
    if (error) return error;
    return wait_slow(wg, WEFT_FOREVER, ctx);
}

/* ---- weft_wg_go -------------------------------------------------------- */

typedef struct {
    weft_wg *wg;
    weft_fn fn;
    void *arg;
} wg_task;

static void run_task(void *arg) {
    wg_task task = *(wg_task *)arg;
    weft__free(arg);
    task.fn(task.arg);
    weft_wg_done(task.wg);
}

int weft_wg_go(weft_wg *wg, weft_fn fn, void *arg) {
    if (!fn) return WEFT_EINVAL;
    wg_task *task = weft__malloc(sizeof *task);
    if (!task) return WEFT_ENOMEM;
    task->wg = wg;
    task->fn = fn;
    task->arg = arg;
    weft_wg_add(wg, 1);
    int error = weft_go(run_task, task);
    if (error) {
        weft__free(task);
        weft_wg_done(wg); /* undo the add; wakes waiters if it was the last */
    }
    return error;
}
