/* Parker: spin, yield, then sleep on a condition variable.
 *
 * State machine of parker->state (owner = the thread the parker belongs to):
 *   EMPTY    -> NOTIFIED   unparker (exchange); owner was spinning or not yet waiting
 *   EMPTY    -> SLEEPING   owner, under parker->mutex, just before cond_wait
 *   SLEEPING -> NOTIFIED   unparker (exchange), then lock + signal + unlock
 *   SLEEPING -> EMPTY      owner, under the mutex, on deadline
 *   NOTIFIED -> EMPTY      owner, consuming the unpark
 * The owner only moves EMPTY -> SLEEPING with a CAS under the mutex, and the
 * unparker signals under the same mutex, so a signal cannot fall between the
 * owner's check and its cond_wait. The unparker's exchange is seq_cst and
 * the owner's successful load of NOTIFIED is acquire: what the claimer
 * wrote (a copied value, waiter->result) happens before the owner reads it.
 *
 * Parkers come from a recycling list and are never freed (see parker.h). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "backoff.h"
#include "fork.h"
#include "parker.h"
#include "time_internal.h"

enum { EMPTY, SLEEPING, NOTIFIED };

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static weft__parker *pool_free; /* recycled parkers, under pool_lock */
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static _Thread_local weft__parker *current;

static void recycle(void *arg) {
    weft__parker *parker = arg;
    pthread_mutex_lock(&pool_lock);
    parker->next = pool_free;
    pool_free = parker;
    pthread_mutex_unlock(&pool_lock);
}

void weft__parker_recycle(weft__parker *parker) { recycle(parker); }

static void make_exit_key(void) {
    if (pthread_key_create(&exit_key, recycle) != 0) abort();
}

static weft__parker *make_parker(void) {
    weft__parker *parker = weft__aligned_alloc(_Alignof(weft__parker), sizeof *parker);
    if (!parker) return NULL;
    memset(parker, 0, sizeof *parker);
    pthread_condattr_t attributes;
    if (pthread_condattr_init(&attributes) != 0) goto fail_attributes;
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    if (pthread_cond_init(&parker->cond, &attributes) != 0) goto fail_cond;
    pthread_condattr_destroy(&attributes);
    if (pthread_mutex_init(&parker->mutex, NULL) != 0) goto fail_mutex;
    return parker;
fail_mutex:
    pthread_cond_destroy(&parker->cond);
fail_cond:
    pthread_condattr_destroy(&attributes);
fail_attributes:
    weft__free(parker);
    return NULL;
}

weft__parker *weft__parker_self(void) {
    if (current) return current;
    weft__fork_watch();
    pthread_once(&exit_key_once, make_exit_key);
    pthread_mutex_lock(&pool_lock);
    weft__parker *parker = pool_free;
    if (parker) pool_free = parker->next;
    pthread_mutex_unlock(&pool_lock);
    if (!parker) {
        parker = make_parker();
        if (!parker) return NULL;
    }
    if (pthread_setspecific(exit_key, parker) != 0) {
        recycle(parker);
        return NULL;
    }
    atomic_store_explicit(&parker->state, EMPTY, memory_order_relaxed);
    current = parker;
    return parker;
}

void weft__parker_unpark(weft__parker *parker) {
    if (atomic_exchange(&parker->state, NOTIFIED) == SLEEPING) {
        pthread_mutex_lock(&parker->mutex);
        pthread_cond_signal(&parker->cond);
        pthread_mutex_unlock(&parker->mutex);
    }
}

static inline bool consume(weft__parker *parker) {
    if (atomic_load_explicit(&parker->state, memory_order_acquire) != NOTIFIED) return false;
    atomic_store_explicit(&parker->state, EMPTY, memory_order_relaxed);
    return true;
}

int weft__parker_park(weft__parker *parker, weft_time deadline) {
    /* A partner that is running completes a hand-off within a few hundred
     * nanoseconds; one that is not needs our core, which the yields give. */
    for (weft__backoff backoff = {0}; !weft__backoff_done(&backoff);) {
        if (consume(parker)) return 0;
        weft__backoff_snooze(&backoff);
    }
    struct timespec until = weft__timespec(deadline);
    int result = 0;
    pthread_mutex_lock(&parker->mutex);
    for (;;) {
        int expected = EMPTY;
        if (!atomic_compare_exchange_strong(&parker->state, &expected, SLEEPING)) {
            if (expected == NOTIFIED) break;
        }
        if (deadline == WEFT_FOREVER) {
            pthread_cond_wait(&parker->cond, &parker->mutex);
        } else if (pthread_cond_timedwait(&parker->cond, &parker->mutex, &until) == ETIMEDOUT &&
                   weft_now() >= deadline) {
            expected = SLEEPING;
            if (atomic_compare_exchange_strong(&parker->state, &expected, EMPTY)) {
                result = WEFT_ETIMEDOUT;
                goto out;
            }
            break; /* NOTIFIED raced with the deadline: take the unpark */
        }
        if (atomic_load(&parker->state) == NOTIFIED) break;
    }
    atomic_store_explicit(&parker->state, EMPTY, memory_order_relaxed);
out:
    pthread_mutex_unlock(&parker->mutex);
    return result;
}

/* ---- fork (fork.h) ---- */

void weft__parker_fork_prepare(void) { pthread_mutex_lock(&pool_lock); }

void weft__parker_fork_parent(void) { pthread_mutex_unlock(&pool_lock); }

/* The only thread of the child: its parker's mutex may have been held by
 * a thread that was unparking it, so both it and the condition variable
 * start afresh. Parkers of threads that did not survive stay allocated. */
void weft__parker_fork_child(void) {
    pthread_mutex_unlock(&pool_lock);
    if (!current) return;
    pthread_mutex_init(&current->mutex, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&current->cond, &attributes);
    pthread_condattr_destroy(&attributes);
    atomic_store_explicit(&current->state, EMPTY, memory_order_relaxed);
}
