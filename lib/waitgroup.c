/* weft_wg: a counter and a queue of threads waiting for it to reach zero.
 *
 * State word wg->state = counter * 2 + QUEUED, where QUEUED (bit 0) says
 * the wait queue is not empty. QUEUED is set and cleared only under
 * wg->lock and matches the queue whenever wg->lock is free; the counter
 * changes by CAS anywhere (add/done), keeping QUEUED as it is.
 *
 *   add(delta)  CAS state -> state + 2 * delta. A change that leaves the
 *               counter non-zero, or reaches zero with nobody queued, is
 *               that CAS alone. A change that reaches zero while QUEUED is
 *               set is made under wg->lock instead, clearing QUEUED in the
 *               same CAS and claiming every queued waiter before the lock
 *               is dropped (the unparks come after).
 *   wait        an acquire load that reads counter zero returns at once.
 *               Otherwise, under wg->lock: a CAS that sets QUEUED on a
 *               state whose counter is not zero, then queue and park.
 *
 * No wake-up is lost: the waiter's CAS and the add that reaches zero are
 * both RMWs of wg->state. If the waiter's comes first, the zero-reaching
 * add sees QUEUED, takes wg->lock (so it runs after the waiter has
 * queued) and claims it. If the add comes first, the waiter's CAS fails,
 * it rereads a zero counter and returns.
 *
 * Waking only the waiters queued at the moment the counter reached zero
 * (and all of them) is what makes reuse safe: a thread that calls wait in
 * the next round, after a new add, queues under the lock after that
 * zero-reaching CAS and is not woken by it.
 *
 * Memory ordering: every add is an acq_rel RMW, so the counter's updates
 * form one release sequence; the wait that reads zero (acquire, or the
 * parker's acquire after an unpark that follows the zeroing CAS) sees
 * everything done before each done().
 *
 * A waiter whose deadline passes claims its own parker and, if it wins,
 * leaves the queue under wg->lock (clearing QUEUED if it was the last);
 * if the zero-reaching add claimed it first, it returns 0. */
#include "sync_internal.h"

#include "alloc.h"

enum { QUEUED = 1 };

/* The counter lives above bit 0; keep counter * 2 in range. */
#define MAX_COUNTER (INT64_MAX / 2)

static inline int64_t counter_of(int64_t state) { return (state - (state & QUEUED)) / 2; }

void weft_wg_init(weft_wg *wg) {
    atomic_init(&wg->state, 0);
    weft__sync_lock_init(&wg->lock);
    wg->queue.first = wg->queue.last = NULL;
}

void weft_wg_destroy(weft_wg *wg) { weft__sync_lock_destroy(&wg->lock); }

/* The new counter after adding delta to state's, aborting on misuse. */
static inline int64_t checked_counter(int64_t state, int64_t delta) {
    int64_t counter = counter_of(state);
    if (delta < 0 ? counter + delta < 0 : delta > MAX_COUNTER - counter) {
        if (delta < 0) weft__panic("negative WaitGroup counter");
        weft__panic("WaitGroup counter overflow");
    }
    return counter + delta;
}

/* The counter reaches zero with waiters queued: do it under wg->lock. */
static void add_and_wake(weft_wg *wg, int64_t delta) {
    weft__waiter *woken = NULL, *waiter;
    weft__sync_lock(&wg->lock);
    int64_t state = atomic_load_explicit(&wg->state, memory_order_relaxed);
    int64_t counter;
    do {
        counter = checked_counter(state, delta);
    } while (!atomic_compare_exchange_weak_explicit(
        &wg->state, &state, counter == 0 ? 0 : counter * 2 + (state & QUEUED), memory_order_acq_rel,
        memory_order_relaxed));
    if (counter == 0) {
        while ((waiter = weft__sync_queue_claim(&wg->queue))) {
            waiter->result = WEFT__SYNC_GRANTED;
            waiter->next = woken;
            woken = waiter;
        }
    }
    weft__sync_unlock(&wg->lock);
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
                                                  counter * 2 + (state & QUEUED),
                                                  memory_order_acq_rel, memory_order_relaxed))
            return;
    }
}

void weft_wg_done(weft_wg *wg) { weft_wg_add(wg, -1); }

static int wait_yielding(weft_wg *wg, weft_time deadline, weft_ctx *ctx) {
    for (;;) {
        if (counter_of(atomic_load_explicit(&wg->state, memory_order_acquire)) == 0) return 0;
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
    }
    return error;
}

static inline bool is_zero(weft_wg *wg) {
    return counter_of(atomic_load_explicit(&wg->state, memory_order_acquire)) == 0;
}

void weft_wg_wait(weft_wg *wg) {
    if (is_zero(wg)) return;
    wait_slow(wg, WEFT_FOREVER, NULL);
}

int weft_wg_wait_until(weft_wg *wg, weft_time deadline) {
    if (is_zero(wg)) return 0;
    if (deadline != WEFT_FOREVER && weft_now() >= deadline) return WEFT_EAGAIN;
    return wait_slow(wg, deadline, NULL);
}

int weft_wg_wait_ctx(weft_wg *wg, weft_ctx *ctx) {
    if (is_zero(wg)) return 0;
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
