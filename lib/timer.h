/* The timer thread: one internal thread and a binary min-heap of pending
 * timers, shared by context deadlines, weft_after, tickers and weft_timer.
 *
 * A timer is embedded in its owner's struct. Starting it inserts it into
 * the heap (O(log n) under the timer lock, and a wake-up of the thread
 * when it becomes the earliest); stopping it removes it (O(log n)). When
 * its time comes the thread takes it out of the heap and calls
 * timer->fire(timer) without holding the timer lock; fire may start and
 * stop other timers, and restart its own. */
#ifndef WEFT_LIB_TIMER_H
#define WEFT_LIB_TIMER_H

#include <stdbool.h>
#include <stddef.h>

#include "weft/time.h"

typedef struct weft__timer weft__timer;

struct weft__timer {
    weft_time when;                   /* when it fires; under the timer lock while pending */
    void (*fire)(weft__timer *timer); /* called on the timer thread */
    size_t index;                     /* place in the heap + 1; 0 when not pending */
    bool reserved;                    /* holds a heap slot (weft__timer_reserve); under the lock */
};

/* Prepare a timer that is not pending. */
static inline void weft__timer_init(weft__timer *timer, void (*fire)(weft__timer *)) {
    timer->when = 0;
    timer->fire = fire;
    timer->index = 0;
    timer->reserved = false;
}

/* Make timer pending, to fire at when (a time already passed fires at
 * once). The timer must not be pending. Returns 0, WEFT_ENOMEM (the heap
 * could not grow) or WEFT_EAGAIN (the timer thread could not start); on
 * error the timer is not pending. A reserved timer's start always returns
 * 0 and allocates nothing (in a forked child whose timer thread cannot be
 * started yet, it waits in the heap for one, as the child's other timers
 * do). */
int weft__timer_start(weft__timer *timer, weft_time when);

/* Make timer not pending. Returns true if it was pending (so it will not
 * fire); false if it was not, in which case its fire call, if one is
 * running, has returned before this does (unless called from that fire
 * call itself): after weft__timer_stop the owner may free the timer. */
bool weft__timer_stop(weft__timer *timer);

/* As weft__timer_stop, but never waits: a fire already running may still
 * be running (or have restarted the timer) when it returns. For callers
 * that hold a lock the fire may need, and that do not free the timer. */
bool weft__timer_cancel(weft__timer *timer);

/* Keep a slot of the heap's array for timer from now until
 * weft__timer_unreserve, so that starting it never allocates or fails:
 * for timers whose owner promises a start that cannot fail (weft_timer's
 * reset). Starts the timer thread if it is not running. Returns 0,
 * WEFT_ENOMEM or WEFT_EAGAIN (the thread could not start); on error the
 * timer is not reserved. The timer must be neither pending nor reserved. */
int weft__timer_reserve(weft__timer *timer);

/* Give the slot back. The timer must not be pending (weft__timer_stop it
 * first); a timer that is not reserved is left as it is. */
void weft__timer_unreserve(weft__timer *timer);

/* Timers pending now (for tests and benchmarks). */
size_t weft__timer_pending(void);

#endif
