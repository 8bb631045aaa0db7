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
 * A yield can cost far more than it gives. The kernel (CFS, and EEVDF
 * more so) puts a yielding thread behind every other runnable thread of
 * its core, so a waiter that shares its core with a busy partner (a
 * producer computing between sends) runs again only when that partner's
 * time slice ends, milliseconds later, while a sleeping waiter would have
 * been woken at once, onto the idle core. So a yield that kept the thread
 * off its core for a slice (WEFT__YIELD_SLICE) bans yields for a while,
 * twice as long each time in a row up to WEFT__YIELD_BAN_MAX; a yield
 * that got the core back soon lifts the doubling. A banned wait polls
 * briefly (WEFT__POLL_TIME at most), then sleeps.
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
    WEFT__POLL_TIME = 2000,          /* ns of pause-polling before the first yield */
    WEFT__YIELD_BUSY = 5000,         /* ns off the core in one step: others want it */
    WEFT__PATIENCE_MIN = 500,        /* ns: a few round trips of polling */
    WEFT__PATIENCE_FIRST = 50000,    /* ns: a thread's patience before it has slept */
    WEFT__PATIENCE_MAX = 200000,     /* ns: the longest awake wait worth learning */
    WEFT__YIELD_SLICE = 500000,      /* ns off the core in one yield: a time slice lost */
    WEFT__YIELD_BAN_FIRST = 1000000, /* ns without yields after a yield that lost a slice */
    WEFT__YIELD_BAN_MAX = 64000000,  /* ns: the ban doubles up to this while yields stay dear */
};

/* What a thread has learned about waiting (kept in its parker). */
typedef struct {
    weft_time patience;       /* how long to stay awake; 0: not learned yet */
    weft_time yield_ban;      /* the last ban's length; 0 after a cheap yield */
    weft_time no_yield_until; /* no yields before then */
} weft__patience_memory;

/* One wait's time awake. */
typedef struct {
    weft_time began;      /* when the wait began */
    weft_time poll_until; /* pause-polling until then, yielding after (if it may) */
    weft_time give_up;    /* awake until then */
    unsigned polls;       /* pause-polls so far (the clock is read every 8th) */
    bool may_yield;       /* no ban on yields (see the top) */
    bool yielded;         /* it has yielded, each time getting the core back soon */
    bool crowded;         /* it gave up because other threads wanted the core */
    bool lost_slice;      /* ... in a yield that kept it off for a time slice */
} weft__patience;

/* Begin an awake wait of at most budget ns; one that may not yield polls
 * all the time, as does one whose budget is within the polling time. */
static inline void weft__patience_begin(weft__patience *patience, weft_time budget,
                                        bool may_yield) {
    weft_time now = weft_now();
    *patience = (weft__patience){
        .began = now,
        .poll_until = now + (budget < WEFT__POLL_TIME ? budget : WEFT__POLL_TIME),
        .give_up = now + budget,
        .may_yield = may_yield,
    };
}

/* Begin an awake wait as the thread's memory says. A wait banned from
 * yielding polls for WEFT__POLL_TIME at most: the ban says the core is
 * contended, where a longer spin only keeps others off it. */
static inline void weft__patience_start(weft__patience *patience,
                                        const weft__patience_memory *memory) {
    weft_time budget = memory->patience ? memory->patience : WEFT__PATIENCE_FIRST;
    bool may_yield = weft_now() >= memory->no_yield_until;
    if (!may_yield && budget > WEFT__POLL_TIME) budget = WEFT__POLL_TIME;
    weft__patience_begin(patience, budget, may_yield);
}

/* Go on with a wait begun earlier: poll again for WEFT__POLL_TIME from
 * now, and stay awake at least that long. */
static inline void weft__patience_resume(weft__patience *patience) {
    patience->poll_until = weft_now() + WEFT__POLL_TIME;
    if (patience->give_up < patience->poll_until) patience->give_up = patience->poll_until;
    patience->polls = 0;
}

/* One more step of waiting awake: a pause, or past the polling time a
 * yield if it may. False when the budget is spent or the thread found
 * itself kept off its core (others want it): time to sleep. */
static inline bool weft__patience_wait(weft__patience *patience) {
    if (patience->polls != UINT_MAX) {
        weft__cpu_relax();
        if (++patience->polls % 8 != 0) return true;
        weft_time now = weft_now();
        if (now >= patience->give_up) return false;
        if (now < patience->poll_until || !patience->may_yield) return true;
        patience->polls = UINT_MAX; /* yielding from now on */
    }
    weft_time now = weft_now();
    if (now >= patience->give_up) return false;
    sched_yield();
    weft_time away = weft_now() - now;
    if (away >= WEFT__YIELD_BUSY) {
        patience->crowded = true;
        patience->lost_slice = away >= WEFT__YIELD_SLICE;
        return false;
    }
    patience->yielded = true;
    return true;
}

/* The patience to keep after a wait that gave up because the core was
 * crowded: a quarter, so that a thread among many soon sleeps at once. */
static inline weft_time weft__patience_crowded(weft_time patience) {
    patience /= 4;
    return patience < WEFT__PATIENCE_MIN ? WEFT__PATIENCE_MIN : patience;
}

/* After any wait: what a crowded core teaches (see the top). A yield that
 * lost the core for a slice bans yields for a while, twice as long each
 * time in a row; one that got it back soon lifts the doubling. */
static inline void weft__patience_end(weft__patience_memory *memory,
                                      const weft__patience *patience) {
    if (patience->crowded) {
        memory->patience =
            weft__patience_crowded(memory->patience ? memory->patience : WEFT__PATIENCE_FIRST);
        if (patience->lost_slice) {
            weft_time ban = memory->yield_ban ? 2 * memory->yield_ban : WEFT__YIELD_BAN_FIRST;
            memory->yield_ban = ban < WEFT__YIELD_BAN_MAX ? ban : WEFT__YIELD_BAN_MAX;
            memory->no_yield_until = weft_now() + memory->yield_ban;
        }
    } else if (patience->yielded) {
        memory->yield_ban = 0;
    }
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

#endif
