/* Busy-waiting for a step of another thread, polite on an oversubscribed
 * machine.
 *
 * A failed compare-and-swap is retried after a short, growing run of
 * pause instructions, and on a channel's position after a few such runs
 * a yield. Waiting for another thread to finish a step it has
 * begun (a slot half written, a ring momentarily full) pauses, then
 * yields the core: with two cores and more runnable threads, the thread
 * we wait for may need ours. Waiting for a partner that may never come is
 * patience.h's, which bounds it in time and then parks. */
#ifndef WEFT_LIB_BACKOFF_H
#define WEFT_LIB_BACKOFF_H

#include <sched.h>
#include <stdbool.h>

static inline void weft__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

#ifndef WEFT__SNOOZE_POLLS
#define WEFT__SNOOZE_POLLS 128 /* polls, one pause apart, before yielding */
#endif
/* Up to 2^6 pauses (about 1.3 us here) after a lost CAS; a ring's or a
 * list's position yields instead of reaching that (weft__backoff_lost_race),
 * the mutex spins on and then parks. With four
 * producers on two cores, a shorter limit (2^4) let the two running
 * threads trade the position's cache line on every attempt: capacity-N
 * mpmc ran at a median 15 M msg/s against 29 with this limit, mpsc at 23
 * against 34 (medians of 7-11 interleaved runs); capacities 0 and 1, which
 * rarely lose a CAS, did not move. */
enum {
    WEFT__CAS_SPIN_LIMIT = 6,
};

typedef struct {
    unsigned step;
} weft__backoff;

/* After a lost race on a shared word: pause a little, more each time. */
static inline void weft__backoff_spin(weft__backoff *backoff) {
    unsigned step = backoff->step < WEFT__CAS_SPIN_LIMIT ? backoff->step : WEFT__CAS_SPIN_LIMIT;
    for (unsigned i = 0; i < (1u << step); i++) weft__cpu_relax();
    backoff->step++;
}

/* After a lost CAS on a ring's or a list's position: pause, more each
 * time, and after a few losses (63 pauses in all) yield the core. With
 * more threads than cores, the two that run trade the position's cache
 * line on every attempt while the rest wait; yielding lets one of them
 * run its operations with the line at hand. Capacity-N mpmc with 16
 * producers and 16 consumers on 2 cores went from 20 to 45 M msg/s (5
 * interleaved runs; crossbeam 34), mpsc from 26 to 38, and with 4 of each
 * from 30 to 37 (mpmc) and 34 to 39 (mpsc); capacity 1 did not lose. */
static inline void weft__backoff_lost_race(weft__backoff *backoff) {
    if (backoff->step < WEFT__CAS_SPIN_LIMIT) {
        weft__backoff_spin(backoff);
    } else {
        backoff->step++;
        sched_yield();
    }
}

/* While waiting for another thread: poll often at first (a partner that is
 * running answers within a few hundred nanoseconds; a long pause would only
 * add latency), then yield the core to a partner that is not running. */
static inline void weft__backoff_snooze(weft__backoff *backoff) {
    if (backoff->step < WEFT__SNOOZE_POLLS)
        weft__cpu_relax();
    else
        sched_yield();
    backoff->step++;
}

#endif
