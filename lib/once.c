/* weft_once: run a function exactly once; everyone returns after it ran.
 *
 * State word once->state: NEW -> RUNNING -> FINISHING -> DONE, nothing
 * else.
 *   NEW -> RUNNING        the first caller, by CAS; it alone runs fn.
 *   RUNNING -> FINISHING  that caller, after fn returned, under once->lock;
 *                         in the same critical section it claims every
 *                         queued waiter.
 *   FINISHING -> DONE     that caller, after dropping once->lock, with a
 *                         release store: its last access to once. It
 *                         unparks the claimed waiters after it.
 * Fast path: an acquire load that reads DONE returns at once; it pairs
 * with the release store of DONE, so everything fn wrote is visible.
 * Other callers that find RUNNING take once->lock, re-check the state and,
 * if it is still RUNNING, queue a waiter and park. Because FINISHING is
 * stored under the same lock, a caller either sees it (or DONE) under the
 * lock or is queued before the store, and then the runner claims it: no
 * wake-up is lost. A caller that sees FINISHING, under the lock or on the
 * fast path, yields until it reads DONE: the runner is between its unlock
 * and that store. Woken waiters see fn's writes through the parker
 * (seq_cst unpark, acquire park) as well as through the lock.
 *
 * Lifetime: once has no destroy, and a caller may free it as soon as any
 * weft_once_do on it returned (DESIGN.md, "free what you have seen
 * finish"). Every return follows a load of DONE or an unpark that comes
 * after the runner's store of DONE, and the runner touches once no more
 * after that store (it unparks through the parkers, never freed; each
 * claimed waiter's frame lives until its unpark). Storing DONE under the
 * lock instead would let a fast-path caller free once while the runner
 * still walked the queue and unlocked once->lock.
 *
 * once->lock guards the queue and the RUNNING -> FINISHING step. */
#include "sync_internal.h"

enum { NEW = 0, RUNNING = 1, FINISHING = 2, DONE = 3 };

static void finish(weft_once *once) {
    weft__waiter *woken = NULL, *waiter;
    weft__sync_lock(&once->lock);
    atomic_store_explicit(&once->state, FINISHING, memory_order_relaxed);
    while ((waiter = weft__sync_queue_claim(&once->queue))) {
        waiter->result = WEFT__SYNC_GRANTED;
        waiter->next = woken;
        woken = waiter;
    }
    weft__sync_unlock(&once->lock);
    /* The last access to once: a caller that reads DONE may free it. */
    atomic_store_explicit(&once->state, DONE, memory_order_release);
    weft__sync_unpark_list(woken);
}

/* fn has returned and the runner is finishing: wait for DONE. */
static void await_done(weft_once *once) {
    while (atomic_load_explicit(&once->state, memory_order_acquire) != DONE) weft__sync_yield();
}

/* Another caller runs fn: wait until it is done. */
static void wait_done(weft_once *once) {
    weft__parker *parker = weft__parker_self();
    if (!parker) {
        await_done(once);
        return;
    }
    weft__waiter waiter;
    weft__sync_lock(&once->lock);
    if (atomic_load_explicit(&once->state, memory_order_acquire) != RUNNING) {
        weft__sync_unlock(&once->lock);
        await_done(once); /* FINISHING: the runner's store of DONE is on its way */
        return;
    }
    weft__sync_waiter_arm(&waiter, parker);
    weft__sync_queue_push(&once->queue, &waiter);
    weft__sync_unlock(&once->lock);
    /* No deadline, and no other wake source may claim this wait. */
    weft__sync_park(&waiter, WEFT_FOREVER, NULL, "weft_once_do", once);
}

void weft_once_do(weft_once *once, weft_fn fn, void *arg) {
    uint32_t state = atomic_load_explicit(&once->state, memory_order_acquire);
    if (state == DONE) return;
    if (state == NEW &&
        atomic_compare_exchange_strong_explicit(&once->state, &state, RUNNING, memory_order_acquire,
                                                memory_order_acquire)) {
        fn(arg);
        finish(once);
        return;
    }
    if (state == DONE) return;
    wait_done(once);
}
