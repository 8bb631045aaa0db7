/* Patience: how long a blocked thread stays awake before it sleeps.
 *
 * Waiting awake costs CPU. Sleeping costs more than it seems: the partner
 * pays a futex wake, and we pay a wake-up whose latency depends on the
 * host (about 2 us when the waker shares our vCPU, tens of microseconds
 * when our vCPU had halted). When that latency exceeds the time a thread
 * waits awake, a hand-off pair falls into a mode where each side sleeps
 * on every message, because each wake-up takes longer than the other's
 * patience; a fixed count of polls tuned on one host makes that mode
 * appear on the next. So the waiting is measured in time, not in counts,
 * and each thread learns its patience from its own sleeps:
 *   - a sleep shorter than what it cost (about two wake-up latencies,
 *     measured: the unparker stamps the time of its unpark) shows that a
 *     little more patience would have avoided it: the patience grows to
 *     cover that arrival, up to WEFT__PATIENCE_MAX;
 *   - a longer sleep means the partner was not coming soon: the patience
 *     halves, down to WEFT__PATIENCE_MIN, so an idle thread soon stops
 *     spending CPU on waits that end in a sleep anyway.
 * The first WEFT__POLL_TIME of a wait polls with pause instructions (a
 * running partner answers within a few round trips); the rest yields the
 * core, so that a partner that is not running can have it, and gives up
 * early when a yield shows other threads waiting for the core (it was
 * away for longer than WEFT__YIELD_BUSY). Such a crowded wait quarters
 * the patience: among more runnable threads than cores (a chain of a
 * thousand goroutines), time awake only keeps a thread with work off the
 * core, and the wake-up is cheap because no vCPU halted.
 *
 * The patience is per thread, kept in its parker (parker.h): no shared
 * writes, and a thread's waits are usually alike. */
#ifndef WEFT_LIB_PATIENCE_H
#define WEFT_LIB_PATIENCE_H

#include <sched.h>
#include <limits.h>
#include <stdbool.h>

#include "backoff.h"
#include "weft/time.h"

enum {
    WEFT__POLL_TIME = 2000,       /* ns of pause-polling before the first yield */
    WEFT__YIELD_BUSY = 5000,      /* ns away in one yield: others want the core */
    WEFT__PATIENCE_MIN = 500,     /* ns: a few round trips of polling */
    WEFT__PATIENCE_FIRST = 50000, /* ns: a thread's patience before it has slept */
    WEFT__PATIENCE_MAX = 200000,  /* ns: the longest awake wait worth learning */
};

typedef struct {
    weft_time began;      /* when the wait began */
    weft_time poll_until; /* pause-polling until then, yielding after */
    weft_time give_up;    /* awake until then */
    unsigned polls;       /* pause-polls so far (the clock is read every 8th) */
    bool crowded;         /* it gave up because other threads wanted the core */
} weft__patience;

/* Begin an awake wait of at most budget ns (WEFT__POLL_TIME or less: poll
 * only, never yield). */
static inline void weft__patience_start(weft__patience *patience, weft_time budget) {
    weft_time now = weft_now();
    *patience =
        (weft__patience){.began = now,
                         .poll_until = now + (budget < WEFT__POLL_TIME ? budget : WEFT__POLL_TIME),
                         .give_up = now + budget};
}

/* Go on with a wait begun earlier: poll again for WEFT__POLL_TIME from
 * now, and stay awake at least that long. */
static inline void weft__patience_resume(weft__patience *patience) {
    patience->poll_until = weft_now() + WEFT__POLL_TIME;
    if (patience->give_up < patience->poll_until) patience->give_up = patience->poll_until;
    patience->polls = 0;
}

/* One more step of waiting awake: a pause, or past the polling time a
 * yield. False when the budget is spent or the core is wanted elsewhere:
 * time to sleep. */
static inline bool weft__patience_wait(weft__patience *patience) {
    weft_time now;
    if (patience->polls != UINT_MAX) {
        weft__cpu_relax();
        if (++patience->polls % 8 != 0) return true;
        now = weft_now();
        if (now >= patience->give_up) return false;
        if (now < patience->poll_until) return true;
        patience->polls = UINT_MAX; /* yielding from now on */
    } else {
        now = weft_now();
        if (now >= patience->give_up) return false;
    }
    sched_yield();
    patience->crowded = weft_now() - now >= WEFT__YIELD_BUSY;
    return !patience->crowded;
}

/* The patience to keep after a wait that slept and was woken arrival ns
 * after it began, wake_latency ns after its unpark (see the top). The
 * sleep cost about two wake latencies, ours and the waker's futex call;
 * staying awake until the arrival would have cost arrival - patience. */
static inline weft_time weft__patience_learn(weft_time patience, weft_time arrival,
                                             weft_time wake_latency) {
    if (arrival > WEFT__PATIENCE_MAX || arrival - patience > 2 * wake_latency) {
        patience /= 2;
        return patience < WEFT__PATIENCE_MIN ? WEFT__PATIENCE_MIN : patience;
    }
    weft_time enough = arrival + arrival / 2;
    if (enough > WEFT__PATIENCE_MAX) enough = WEFT__PATIENCE_MAX;
    return enough > patience ? enough : patience;
}

/* The patience to keep after a wait that gave up because the core was
 * crowded: a quarter, so that a thread among many soon sleeps at once. */
static inline weft_time weft__patience_crowded(weft_time patience) {
    patience /= 4;
    return patience < WEFT__PATIENCE_MIN ? WEFT__PATIENCE_MIN : patience;
}

#endif
