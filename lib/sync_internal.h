/* Helpers shared by the sync primitives (waitgroup.c, mutex.c, rwmutex.c,
 * once.c, semaphore.c, cond.c).
 *
 * Every primitive blocks the same way: under its internal lock it checks
 * that it must wait, arms the thread's parker, queues a waiter (on its
 * stack) that points at the parker, drops the lock and parks. Whoever
 * completes the wait (an unlock, a release, the last done) claims the
 * parker under the lock with the waiter's token, unlinks the waiter,
 * writes waiter->result, drops the lock and only then unparks: the claim
 * keeps the waiter's frame alive (its owner cannot return before the
 * unpark), and parkers are never freed, so unparking after the lock is
 * released is safe and keeps the futex wake out of the critical section.
 *
 * Any other wake source can end the wait the same way, by claiming the
 * parker with its own token and unparking it: the owner then sees a claim
 * that is not its queue's token, withdraws its waiter under the lock and
 * returns that source's error (weft__sync_park). That is how the deadline
 * works today (the owner claims itself, WEFT__CLAIM_SELF) and how a
 * context will cancel a blocked sync call later. */
#ifndef WEFT_LIB_SYNC_INTERNAL_H
#define WEFT_LIB_SYNC_INTERNAL_H

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#include "weft/ctx.h"
#include "weft/sync.h"
#include "weft/time.h"
#include "backoff.h"
#include "chan_internal.h"
#include "panic.h"
#include "parker.h"
#include "waitq.h"

/* weft/sync.h shows C++ a plain T, aligned to sizeof(T), wherever C has
 * _Atomic(T) (WEFT__ATOMIC_FIELD): the two agree on every struct's layout
 * only while _Atomic(T) adds neither size nor alignment beyond that. */
_Static_assert(sizeof(_Atomic(uint32_t)) == sizeof(uint32_t) &&
                   _Alignof(_Atomic(uint32_t)) == sizeof(uint32_t),
               "weft/sync.h: C++ would see another layout for _Atomic(uint32_t) fields");
_Static_assert(sizeof(_Atomic(int64_t)) == sizeof(int64_t) &&
                   _Alignof(_Atomic(int64_t)) == sizeof(int64_t),
               "weft/sync.h: C++ would see another layout for _Atomic(int64_t) fields");

/* The token a sync primitive writes into a parker's claim word when it
 * completes a wait. Other wake sources (contexts, later) use a different
 * token, so the owner can tell who woke it. */
enum { WEFT__SYNC_TOKEN = 0, WEFT__CTX_TOKEN = 1 };

/* waiter->result written by a sync primitive's claimer. */
enum {
    WEFT__SYNC_GRANTED = 0, /* the wait is complete: the lock or units are the owner's now */
    WEFT__SYNC_RETRY = WEFT__RETRY, /* the lock was freed: compete for it again */
};

/* The primitives' internal lock: a pthread mutex, so that a thread that
 * finds it taken sleeps rather than spins when the holder is preempted
 * (two cores, many threads). Critical sections are a few pointer moves. */
static inline void weft__sync_lock(pthread_mutex_t *lock) {
    int error = pthread_mutex_lock(lock);
    if (error) weft__panic_errno("pthread_mutex_lock", error);
}

static inline void weft__sync_unlock(pthread_mutex_t *lock) {
    int error = pthread_mutex_unlock(lock);
    if (error) weft__panic_errno("pthread_mutex_unlock", error);
}

/* A primitive's destroy: wait out a call that made the primitive free
 * (an unlock, the last done, a release) and is still finishing under the
 * internal lock, which a thread that then took it on the fast path could
 * otherwise destroy and free under that call's feet. Every slow path
 * touches the primitive only while it holds the lock. */
static inline void weft__sync_lock_destroy(pthread_mutex_t *lock) {
    weft__sync_lock(lock);
    weft__sync_unlock(lock);
    pthread_mutex_destroy(lock);
}

static inline void weft__sync_lock_init(pthread_mutex_t *lock) {
    int error = pthread_mutex_init(lock, NULL);
    if (error) weft__panic_errno("pthread_mutex_init", error);
}

/* Whether deadline has passed: weft_now() >= deadline. */
static inline bool weft__sync_expired(weft_time deadline) {
    return deadline != WEFT_FOREVER && weft_now() >= deadline;
}

/* Why a wait must end now: WEFT_ETIMEDOUT when deadline has passed, ctx's
 * error when it has ended (ctx may be NULL), else 0. */
static inline int weft__sync_limit(weft_time deadline, weft_ctx *ctx) {
    if (weft__sync_expired(deadline)) return WEFT_ETIMEDOUT;
    return weft_ctx_err(ctx);
}

/* sync.h embeds weft__sync_queue, which has weft__waitq's layout but is a
 * distinct type (the public header cannot include waiter.h). These
 * adapters run waiter.h's queue operations on a copy and store it back,
 * so no object is ever accessed through the wrong struct type. Call with
 * the owner's lock held. */
static inline weft__waitq weft__sync_queue_get(const weft__sync_queue *queue) {
    weft__waitq copy = {queue->first, queue->last};
    return copy;
}

static inline void weft__sync_queue_put(weft__sync_queue *queue, weft__waitq copy) {
    queue->first = copy.first;
    queue->last = copy.last;
}

static inline bool weft__sync_queue_empty(const weft__sync_queue *queue) {
    return queue->first == NULL;
}

/* Append waiter (the newest). */
static inline void weft__sync_queue_push(weft__sync_queue *queue, weft__waiter *waiter) {
    weft__waitq copy = weft__sync_queue_get(queue);
    weft__waitq_push(&copy, waiter);
    weft__sync_queue_put(queue, copy);
}

/* Put waiter first: a woken waiter that lost the race keeps its turn. */
static inline void weft__sync_queue_push_front(weft__sync_queue *queue, weft__waiter *waiter) {
    waiter->prev = NULL;
    waiter->next = queue->first;
    if (queue->first)
        queue->first->prev = waiter;
    else
        queue->last = waiter;
    queue->first = waiter;
    waiter->queued = true;
}

/* Unlink waiter if it is still queued. */
static inline void weft__sync_queue_remove(weft__sync_queue *queue, weft__waiter *waiter) {
    weft__waitq copy = weft__sync_queue_get(queue);
    weft__waitq_remove(&copy, waiter);
    weft__sync_queue_put(queue, copy);
}

/* Claim and unlink the oldest waiter whose wait is still open (unlinking
 * the abandoned ones met on the way). NULL when there is none. */
static inline weft__waiter *weft__sync_queue_claim(weft__sync_queue *queue) {
    weft__waitq copy = weft__sync_queue_get(queue);
    weft__waiter *waiter = weft__waitq_claim(&copy, NULL);
    weft__sync_queue_put(queue, copy);
    return waiter;
}

/* Start a wait: arm the parker and fill in the waiter. Call under the
 * primitive's lock, before queueing the waiter. */
static inline void weft__sync_waiter_arm(weft__waiter *waiter, weft__parker *parker) {
    weft__parker_arm(parker);
    waiter->next = waiter->prev = NULL;
    waiter->parker = parker;
    waiter->elem = NULL;
    waiter->token = WEFT__SYNC_TOKEN;
    waiter->result = WEFT__SYNC_GRANTED;
    waiter->queued = false;
}

/* Owner: park until the queued waiter's wait ends (what and object
 * describe it for the dump and the deadlock report: weft__wait_begin). Returns 0 when the
 * primitive completed it (the claimer unlinked the waiter and wrote
 * waiter->result); otherwise the wait was abandoned and the waiter may
 * still be queued, so the caller must withdraw it under the lock and
 * return the code: WEFT_ETIMEDOUT when deadline passed (then
 * weft_now() >= deadline), or ctx's error when ctx ended.
 *
 * The context wakes us as a channel close wakes a select: a second waiter
 * on the same parker, with its own token, sits on ctx's done channel, and
 * the close claims the parker with that token. */
static inline int weft__sync_park(weft__waiter *waiter, weft_time deadline, weft_ctx *ctx,
                                  const char *what, const void *object) {
    weft__parker *parker = waiter->parker;
    weft__wait_begin(parker, what, object, 0, 0);
    weft_chan *done = weft_ctx_done(ctx);
    weft__waiter done_waiter = {.parker = parker, .token = WEFT__CTX_TOKEN};
    bool must_park = true;
    if (done && weft__chan_register(done, WEFT_RECV, &done_waiter)) {
        /* Already closed: end the wait ourselves unless the primitive
         * completed it first (then its unpark is on the way). */
        if (weft__parker_claim(parker, WEFT__CTX_TOKEN)) must_park = false;
        deadline = WEFT_FOREVER;
    }
    if (must_park && weft__parker_park(parker, deadline) == WEFT_ETIMEDOUT) {
        if (!weft__parker_claim(parker, WEFT__CLAIM_SELF))
            /* Claimed by someone else first: its unpark is on the way. */
            weft__parker_park(parker, WEFT_FOREVER);
    }
    if (done) weft__chan_unregister(done, WEFT_RECV, &done_waiter);
    weft__wait_end(parker);
    int claimer = weft__parker_claimed(parker);
    if (claimer == waiter->token) return 0;
    if (claimer == WEFT__CTX_TOKEN) return weft_ctx_err(ctx);
    return WEFT_ETIMEDOUT;
}

/* Wake the owners of the waiters on a list made by a claimer (linked
 * through waiter->next after unlinking). Call after dropping the lock.
 * Each waiter's frame may vanish at its unpark, so read it first. */
static inline void weft__sync_unpark_list(weft__waiter *list) {
    while (list) {
        weft__waiter *next = list->next;
        weft__parker *parker = list->parker;
        weft__parker_unpark(parker);
        list = next;
    }
}

/* Test hooks: whether a thread is queued on m (parked or about to park);
 * whether a reader is queued on rwmutex m; how many readers hold it; how
 * many requests are queued on semaphore s; how many waiters on cond c are
 * queued and not yet claimed. */
bool weft__mutex_has_waiters(weft_mutex *m);
bool weft__rwmutex_readers_queued(weft_rwmutex *m);
uint32_t weft__rwmutex_readers(weft_rwmutex *m);
int weft__sem_queued(weft_sem *s);
int weft__cond_waiters(weft_cond *c);

/* Without a parker (its one-time allocation failed) a blocking call
 * still works: it retries while yielding the CPU. */
static inline void weft__sync_yield(void) { sched_yield(); }

#endif
