/* weft_cond: Go's sync.Cond over a weft_mutex.
 *
 * A FIFO queue of parked waiters under c->lock, nothing else. A wait arms
 * the thread's parker and queues its waiter (on its stack) under c->lock
 * BEFORE it unlocks the mutex, then parks. A signal or broadcast that
 * runs after the waiter's unlock therefore finds it queued: no wake-up is
 * lost between the unlock and the sleep. Signal claims the oldest waiter
 * still waiting (weft__sync_queue_claim unlinks it, and skips waiters
 * whose wait another party ended); broadcast claims every one. Waiters
 * are served in the order they queued, so none starves.
 *
 * Claims, as in semaphore.c: a waiter whose deadline passes or whose ctx
 * ends tries to claim its own parker. If it wins, it withdraws its waiter
 * under c->lock and returns WEFT_ETIMEDOUT or ctx's error; no signal
 * picked it (a signal that finds it claimed skips it and wakes the next
 * waiter). If a signal claimed it first, weft__sync_park waits for that
 * signal's unpark and returns 0: the waiter reports success, even though
 * its deadline has passed, so the signal is never lost.
 *
 * Either way the wait relocks the mutex before it returns (weft_mutex_lock
 * cannot fail), so every wait returns holding it.
 *
 * Lifetime, as mutex.c: a signaller unlinks its waiters under c->lock and
 * unparks them only after dropping c->lock; from then on it touches only
 * the claimed waiters (alive until their unpark) and their parkers (never
 * freed), never c. A woken waiter learns of the signal only from the
 * unpark, after the signaller's last access to c, so c may be destroyed
 * right after the wait returns; weft_cond_destroy still takes and drops
 * c->lock first (weft__sync_lock_destroy) to wait out any call in it.
 *
 * Without a parker (its one-time allocation failed) a wait unlocks the
 * mutex, yields the CPU and relocks it: a spurious wake-up, which the
 * caller's predicate loop absorbs, as with pthread_cond_wait. */
#include "sync_internal.h"

void weft_cond_init(weft_cond *c) {
    weft__sync_lock_init(&c->lock);
    c->queue.first = c->queue.last = NULL;
}

void weft_cond_destroy(weft_cond *c) { weft__sync_lock_destroy(&c->lock); }

static int wait_yielding(weft_mutex *m, weft_time deadline, weft_ctx *ctx) {
    weft_mutex_unlock(m);
    weft__sync_yield();
    weft_mutex_lock(m);
    return weft__sync_limit(deadline, ctx);
}

/* Called holding m; returns holding m. */
static int cond_wait(weft_cond *c, weft_mutex *m, weft_time deadline, weft_ctx *ctx) {
    int error = weft__sync_limit(deadline, ctx);
    if (error) return error; /* ended before the call: m was never dropped */
    weft__parker *parker = weft__parker_self();
    if (!parker) return wait_yielding(m, deadline, ctx);
    weft__waiter waiter;
    weft__sync_lock(&c->lock);
    weft__sync_waiter_arm(&waiter, parker);
    weft__sync_queue_push(&c->queue, &waiter);
    weft__sync_unlock(&c->lock);
    weft_mutex_unlock(m); /* only now: a signal from here on finds us queued */

    error = weft__sync_park(&waiter, deadline, ctx, "weft_cond_wait", c);
    if (error) { /* we claimed ourselves: no signal chose us, withdraw */
        weft__sync_lock(&c->lock);
        weft__sync_queue_remove(&c->queue, &waiter);
        weft__sync_unlock(&c->lock);
    }
    weft_mutex_lock(m);
    return error;
}

void weft_cond_wait(weft_cond *c, weft_mutex *m) { cond_wait(c, m, WEFT_FOREVER, NULL); }

int weft_cond_wait_until(weft_cond *c, weft_mutex *m, weft_time deadline) {
    return cond_wait(c, m, deadline, NULL);
}

int weft_cond_wait_ctx(weft_cond *c, weft_mutex *m, weft_ctx *ctx) {
    return cond_wait(c, m, WEFT_FOREVER, ctx);
}

void weft_cond_signal(weft_cond *c) {
    weft__sync_lock(&c->lock);
    weft__waiter *waiter = weft__sync_queue_claim(&c->queue);
    weft__sync_unlock(&c->lock);
    if (waiter) weft__parker_unpark(waiter->parker);
}

void weft_cond_broadcast(weft_cond *c) {
    weft__waiter *list = NULL, **tail = &list;
    weft__sync_lock(&c->lock);
    weft__waiter *waiter;
    while ((waiter = weft__sync_queue_claim(&c->queue))) { /* unlinked: next is ours */
        *tail = waiter;
        tail = &waiter->next;
    }
    weft__sync_unlock(&c->lock);
    weft__sync_unpark_list(list);
}

int weft__cond_waiters(weft_cond *c) {
    int count = 0;
    weft__sync_lock(&c->lock);
    for (const weft__waiter *waiter = c->queue.first; waiter; waiter = waiter->next)
        if (weft__parker_claimed(waiter->parker) == WEFT__UNCLAIMED) count++;
    weft__sync_unlock(&c->lock);
    return count;
}
