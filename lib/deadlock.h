/* Deadlock detection: Go's "all goroutines are asleep - deadlock!", opt in
 * (WEFT_DEBUG=deadlock, or weft_debug_deadlock in weft/go.h).
 *
 * How it hears about sleeps
 *   The parker is below everything and calls nothing above it, so this
 *   module installs a sleep observer into it (weft__parker_observe,
 *   parker.h) the first time detection is turned on, and leaves it there:
 *   a sleeper counted while detection was on must be uncounted by its
 *   unparker even if detection has been turned off since, so turning it
 *   off only makes the observer's counting() say no. Until then the parker
 *   pays one relaxed load of a NULL pointer before it sleeps.
 *
 * When WEFT_DEBUG is read
 *   Once, by a constructor of this file, before main: the observer must be
 *   in place before the first counted park, and a program whose main
 *   thread alone blocks forever (no goroutine ever started) must be
 *   reported too, so no later event (a pool starting, the first park) can
 *   be the trigger; the parker may not call up to ask. weft_debug_deadlock
 *   reads it first too (once), so that the environment never overrides the
 *   call even when the call comes from another constructor. The shared
 *   library always has this file. From libweft.a an object is linked only
 *   when referenced, and a constructor with it: go.c and fork.c reference
 *   this file, and every blocking call's file references ctx.c (the _ctx
 *   forms), which references go.c (weft_go), so a program that can block
 *   in weft links it. Setting WEFT_DEBUG from within the program (setenv
 *   in main) is too late; that is what weft_debug_deadlock is for.
 *
 * What is counted
 *   A thread is "asleep" from the moment weft__parker_park really goes to
 *   sleep for a wait with no deadline that its blocking call described
 *   (its wait record, waitrecord.h: weft__wait_begin), until the unparker's
 *   exchange takes it out of its counted state (parker.c). A woken thread
 *   that has not run yet is therefore never counted. Waits with a deadline
 *   are never counted, nor an idle pooled thread waiting for a task (it
 *   describes no wait): those end by themselves. A context's deadline is a
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
 *   Nothing on the fast paths. A blocking call describes its wait in its
 *   parker's wait record on the way to parking (waitrecord.h, shared with
 *   weft_debug_dump); weft__parker_park tests
 *   the observer pointer (a relaxed load and a predictable branch) once its
 *   spin is over, before it sleeps; an unpark that finds its owner sleeping
 *   tests the old state once more before the futex wake. Turned on and then
 *   off, a sleep with no deadline also calls counting(). Counted sleeps
 *   (option on) take the registry lock when they fall asleep and wake.
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

/* On: counted sleeps and the watchdog. Written by the WEFT_DEBUG reading
 * and weft_debug_deadlock; read relaxed anywhere. */
extern atomic_bool weft__deadlock_on;

static inline bool weft__deadlock_enabled(void) {
    return __builtin_expect(atomic_load_explicit(&weft__deadlock_on, memory_order_relaxed), 0);
}

/* go.c, after a goroutine returned (weft_goroutines() went down): the
 * remaining ones may now all be asleep. */
void weft__deadlock_goroutine_ended(void);

/* go.c: whether the calling thread is running a goroutine (the sleep
 * observer's in_goroutine). */
bool weft__go_in_goroutine(void);

/* fork.c's child handler, after the parker's: the child's only thread is
 * awake; forget every sleeper and the watchdog. */
void weft__deadlock_fork_child(void);

#endif
