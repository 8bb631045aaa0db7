/* weft_once: run a function exactly once; everyone returns after it ran.
 *
 * State word once->state: NEW -> RUNNING -> DONE, nothing else.
 *   NEW -> RUNNING  the first caller, by CAS; it alone runs fn.
 *   RUNNING -> DONE that caller, after fn returned, under once->lock, with
 *                   a release store; in the same critical section it
 *                   claims every queued waiter, then unparks them after
 *                   dropping the lock.
 * Fast path: an acquire load that reads DONE returns at once; it pairs
 * with the release store of DONE, so everything fn wrote is visible.
 * Other callers that find RUNNING take once->lock, re-check the state and,
 * if it is still RUNNING, queue a waiter and park. Because DONE is stored
 * under the same lock, a caller either sees DONE under the lock or is
 * queued before the store, and then the runner claims it: no wake-up is
 * lost. Woken waiters see fn's writes through the parker (seq_cst unpark,
 * acquire park) as well as through the lock.
 *
 * once->lock guards the queue and the RUNNING -> DONE step. */
#include "sync_internal.h"

enum { NEW = 0, RUNNING = 1, DONE = 2 };

static void finish(weft_once *once) {
    weft__waiter *woken = NULL, *waiter;
    weft__sync_lock(&once->lock);
    atomic_store_explicit(&once->state, DONE, memory_order_release);
    while ((waiter = weft__sync_queue_claim(&once->queue))) {
        waiter->result = WEFT__SYNC_GRANTED;
        waiter->next = woken;
        woken = waiter;
    }
    weft__sync_unlock(&once->lock);
    weft__sync_unpark_list(woken);
}

/* Another caller runs fn: wait until it is done. */
static void wait_done(weft_once *once) {
    weft__parker *parker = weft__parker_self();
    if (!parker) {
        while (atomic_load_explicit(&once->state, memory_order_acquire) != DONE) weft__sync_yield();
        return;
    }
    weft__waiter waiter;
    weft__sync_lock(&once->lock);
    if (atomic_load_explicit(&once->state, memory_order_acquire) == DONE) {
        weft__sync_unlock(&once->lock);
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
