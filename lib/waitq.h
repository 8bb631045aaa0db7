/* Wait queues: FIFOs of waiters, each protected by its owner's lock (the
 * channel's, the mutex's...): every function here must be called with that
 * lock held, except weft__waitq_maybe_empty. A waiter stays in a queue until the thread that claims
 * it, or its owner, unlinks it (a claimer always unlinks the waiter it claimed, so the owner need
 * not look for it); the owner unlinks every waiter of a wait under the queues' locks before
 * returning, so no queue ever points at a dead stack frame. */
#ifndef WEFT_LIB_WAITQ_H
#define WEFT_LIB_WAITQ_H

#include <stdbool.h>
#include <stddef.h>

#include "parker.h"
#include "waiter.h"

typedef struct {
    weft__waiter *first, *last;
} weft__waitq;

static inline bool weft__waitq_empty(const weft__waitq *queue) { return queue->first == NULL; }

/* `first` is stored atomically (relaxed, under the lock) so that a thread
 * without the lock may ask whether the queue is empty. */
static inline void weft__waitq_set_first(weft__waitq *queue, weft__waiter *first) {
    __atomic_store_n(&queue->first, first, __ATOMIC_RELAXED);
}

/* Without the lock: whether no waiter was queued at the moment of the
 * (acquire) load. A true answer is a fact about that instant only. */
static inline bool weft__waitq_maybe_empty(const weft__waitq *queue) {
    return __atomic_load_n(&queue->first, __ATOMIC_ACQUIRE) == NULL;
}

static inline void weft__waitq_push(weft__waitq *queue, weft__waiter *waiter) {
    waiter->next = NULL;
    waiter->prev = queue->last;
    if (queue->last)
        queue->last->next = waiter;
    else
        weft__waitq_set_first(queue, waiter);
    queue->last = waiter;
    waiter->queued = true;
}

/* Unlink waiter if it is still queued (a claimer may have done it). */
static inline void weft__waitq_remove(weft__waitq *queue, weft__waiter *waiter) {
    if (!waiter->queued) return;
    if (waiter->prev)
        waiter->prev->next = waiter->next;
    else
        weft__waitq_set_first(queue, waiter->next);
    if (waiter->next)
        waiter->next->prev = waiter->prev;
    else
        queue->last = waiter->prev;
    waiter->next = waiter->prev = NULL;
    waiter->queued = false;
}

/* Unlink every waiter of parker from queue. */
static inline void weft__waitq_remove_parker(weft__waitq *queue, const weft__parker *parker) {
    weft__waiter *waiter = queue->first;
    while (waiter) {
        weft__waiter *next = waiter->next;
        if (waiter->parker == parker) weft__waitq_remove(queue, waiter);
        waiter = next;
    }
}

/* Claim the oldest waiter whose wait is still open, unlinking it; waiters
 * met on the way whose wait another queue already claimed are unlinked
 * too (their owners find them gone). Waiters of parker skip are left
 * alone: a select never pairs with itself. Returns the claimed waiter,
 * whose owner the caller must complete and unpark, or NULL. */
static inline weft__waiter *weft__waitq_claim(weft__waitq *queue, const weft__parker *skip) {
    weft__waiter *waiter = queue->first;
    while (waiter) {
        weft__waiter *next = waiter->next;
        if (waiter->parker != skip) {
            bool won = weft__parker_claim(waiter->parker, waiter->token);
            weft__waitq_remove(queue, waiter);
            if (won) return waiter;
        }
        waiter = next;
    }
    return NULL;
}

/* Whether a waiter other than skip's is queued whose wait is still open. */
static inline bool weft__waitq_has_partner(const weft__waitq *queue, const weft__parker *skip) {
    for (const weft__waiter *waiter = queue->first; waiter; waiter = waiter->next)
        if (waiter->parker != skip && weft__parker_claimed(waiter->parker) == WEFT__UNCLAIMED)
            return true;
    return false;
}

#endif
