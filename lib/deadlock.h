/* Deadlock detection: Go's "all goroutines are asleep - deadlock!", opt in
 * (WEFT_DEBUG=deadlock, or weft_debug_deadlock in weft/go.h).
 *
 * What is counted
 *   A thread is "asleep" from the moment weft__parker_park really goes to
 *   sleep for a wait with no deadline that its blocking call described
 *   (parker->what, set through weft__parker_note), until the unparker's
 *   exchange takes it out of the SLEEPING state (parker.c). A woken thread
 *   that has not run yet is therefore never counted. Waits with a deadline
 *   are never counted, nor an idle pooled thread waiting for a task (go.c
 *   clears what first): those end by themselves. A context's deadline is a
 *   pending timer, which vetoes the report (below).
 *
 *   Each sleeper counts as a goroutine (its thread is running a goroutine,
 *   go.c) or as another thread. The state is "stuck" when the sleeping
 *   goroutines are all of weft_goroutines(), at least one other thread
 *   sleeps too (main, waiting on them), and no timer is pending.
 *
 * How a report avoids false positives
 *   The thread whose park makes the counts match does not decide: it pokes
 *   a watchdog thread ("weft/deadlock", started on first need). The
 *   watchdog waits for a grace period during which nothing may change (an
 *   epoch, bumped under the registry lock by every counted sleep, wake-up
 *   and goroutine end, must stay put) and no timer may be pending, before
 *   and after. Then, under the registry lock, it walks the sleepers and
 *   checks each one is still asleep and unclaimed: a claim always comes
 *   before the unpark that ends a wait, so a claimed sleeper will wake
 *   whatever happens. Only then it prints and aborts. What it cannot see
 *   is a thread outside weft (a plain pthread computing, or blocked in
 *   read(2)) that will later wake a sleeper after more than the grace
 *   period: a program that relies on one should not turn detection on.
 *
 * Cost when off
 *   Nothing on the fast paths. A blocking call stores what and object in
 *   its parker (two stores, on the way to parking); weft__parker_park tests
 *   one flag (a relaxed load and a predictable branch) once its spin is
 *   over, before it sleeps; an unpark that finds its owner sleeping tests
 *   the old state once more before the futex wake. Counted sleeps (option
 *   on) take the registry lock when they fall asleep and when they wake.
 *
 * Locks
 *   The registry lock guards the sleeper list, the counts, the epoch and
 *   the watchdog's state. It is taken after a parker's mutex (a sleeper
 *   registers itself under its own mutex), never before one, and nothing
 *   else is taken while it is held (the watchdog asks for pending timers
 *   with it released). */
#ifndef WEFT_LIB_DEADLOCK_H
#define WEFT_LIB_DEADLOCK_H

#include <stdatomic.h>
#include <stdbool.h>

#include "parker.h"

/* On: counted sleeps and the watchdog. Written by weft__deadlock_setup
 * (WEFT_DEBUG) and weft_debug_deadlock; read relaxed anywhere. */
extern atomic_bool weft__deadlock_on;

static inline bool weft__deadlock_enabled(void) {
    return __builtin_expect(atomic_load_explicit(&weft__deadlock_on, memory_order_relaxed), 0);
}

/* Read WEFT_DEBUG, once per process. Called when a thread first gets its
 * parker, before its first park. */
void weft__deadlock_setup(void);

/* The registry lock, for weft__parker_park's counted sleep: the owner
 * takes it (under its parker's mutex) around its SLEEPING compare-and-swap
 * and weft__deadlock_asleep, so a sleeper is listed exactly while its
 * parker may be in a counted SLEEPING state. */
void weft__deadlock_lock(void);
void weft__deadlock_unlock(void);

/* Under the registry lock, right after the owner's compare-and-swap into
 * a counted sleep: list the parker, count it (as a goroutine or not),
 * advance the epoch, and poke the watchdog if the counts now match. */
void weft__deadlock_asleep(weft__parker *parker, bool goroutine);

/* The owner, after its counted sleep ended (with its parker's mutex
 * released): take the parker off the list. */
void weft__deadlock_awake(weft__parker *parker);

/* An unparker whose exchange found a counted sleeper: uncount it. Takes
 * the registry lock; touches nothing of the parker's, which its owner may
 * already be reusing. */
void weft__deadlock_unparked(bool goroutine);

/* go.c, after a goroutine returned (weft_goroutines() went down): the
 * remaining ones may now all be asleep. */
void weft__deadlock_goroutine_ended(void);

/* go.c: whether the calling thread is running a goroutine. */
bool weft__go_in_goroutine(void);

/* parker.c: whether parker's owner is in a counted sleep that nobody has
 * claimed (so that no unpark is coming), and if so whether as a goroutine. */
bool weft__parker_stuck(weft__parker *parker);

/* fork (called from parker.c's child handler): the child's only thread is
 * awake; forget every sleeper and the watchdog. */
void weft__deadlock_fork_child(void);

#endif
