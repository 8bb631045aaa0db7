/* The timer thread and its heap of pending timers (see lib/timer.h).
 *
 * The pieces
 *   One weft-internal thread ("weft/timer"), started by the first
 *   weft__timer_start and never stopped, and a binary min-heap of
 *   weft__timer pointers ordered by `when`, in an array that doubles when
 *   it fills. Each pending timer records its slot (index + 1) so that stop
 *   removes it from the middle of the heap in O(log n) without a search; a
 *   pending timer costs one pointer in the array and nothing else. The
 *   array never shrinks: it stays at its high-water mark, so that stop
 *   never allocates and cannot fail. Timers with equal `when` fire in any
 *   order.
 *
 * What the lock protects
 *   `lock` guards the heap (array, count, capacity), the `when` and
 *   `index` of every pending timer, every timer's `reserved` flag and
 *   their count `reserved`, `running`, `stoppers`, `sleeping_until` and
 *   the thread's start-up state. A timer's `fire` is written by its
 *   owner before it is first started and only read afterwards.
 *
 * Waking the thread
 *   The thread sleeps on `wake` (a CLOCK_MONOTONIC condition variable)
 *   until the earliest `when`, or without limit when the heap is empty,
 *   and records what it sleeps for in `sleeping_until`. A start signals
 *   `wake` only when its timer lands at the top of the heap earlier than
 *   that: the one case where the thread would sleep too long. Stopping the
 *   earliest timer does not signal; the thread wakes at the old time,
 *   finds nothing due and sleeps again. The thread looks at the heap under
 *   the lock before every wait, so no start can slip in unseen.
 *
 * Why fire runs unlocked
 *   The thread takes a due timer out of the heap, records it in `running`
 *   and calls fire with the lock released: fire sends on channels, cancels
 *   contexts and starts and stops timers (its own included), all of which
 *   would deadlock or serialise everything behind it if the lock were
 *   held. A due timer fires only when weft_now() >= when: never early.
 *
 * The stop handshake
 *   After weft__timer_stop returns, the owner may free the timer, so stop
 *   must also wait out a fire call that is running on the timer thread.
 *   A stopper that finds its timer not pending but equal to `running`
 *   counts itself in `stoppers` and waits on `fire_done`; the thread,
 *   when fire returns, clears `running`, broadcasts `fire_done`, and then
 *   waits (on `wake`) until `stoppers` is back to 0 before it looks at the
 *   heap again. So every waiting stopper gets the lock before the timer
 *   can fire a second time, and removes it if its fire restarted it (that
 *   restarted instance never fires, and stop returns true for it: what it
 *   cancelled was pending). A stop called from inside the timer's own
 *   fire (recognised by the thread-local on_timer_thread and running ==
 *   timer) must not wait for itself: it only removes a pending restart.
 *   The flip side: a fire must not wait for anything that a thread
 *   stopping its timer holds while it stops it, or the two wait forever.
 *
 * A fire that restarts its own timer never fails
 *   While a fire runs and its timer is not pending, other starts keep one
 *   free slot in the array for it (they grow it one timer earlier), so a
 *   ticker's self-restart never meets WEFT_ENOMEM.
 *
 * Reserved timers never fail to start
 *   `reserved` counts the reserved timers that are not pending, and the
 *   array always has room for them besides the pending timers: capacity >=
 *   count + reserved, plus the running fire's slot above. A reserved
 *   timer's start moves it from `reserved` to `count` (the sum stays), so
 *   it needs no room; leaving the heap (fire, stop, cancel) moves it back.
 *   Every other start, and a new reservation, grows the array for the sum.
 *
 * Not fork-safe: a child of fork inherits the heap and the flag that says
 * the thread runs, but not the thread. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "fork.h"
#include "panic.h"
#include "parker.h"
#include "thread.h"
#include "time_internal.h"
#include "timer.h"
#include "weft/error.h"

enum { FIRST_CAPACITY = 64 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;                                 /* the thread waits here; monotonic */
static pthread_cond_t fire_done = PTHREAD_COND_INITIALIZER; /* stoppers wait here */

static weft__timer **heap; /* heap[0] is the earliest; under lock */
static size_t count;       /* pending timers; under lock */
static size_t capacity;    /* slots in heap; under lock */

static bool wake_ready;                         /* wake initialised; under lock */
static bool thread_started;                     /* the timer thread exists; under lock */
static weft_time sleeping_until = WEFT_FOREVER; /* what the thread sleeps for; under lock */
static weft__timer *running; /* timer whose fire is being called, or NULL; under lock */
static long stoppers;        /* threads waiting for running's fire to return; under lock */
static size_t reserved;      /* reserved timers not pending: slots kept free; under lock */
static bool orphaned; /* a forked child's timers have no thread (revive is hooked); under lock */

static _Thread_local bool on_timer_thread; /* set once, by the timer thread itself */

/* ---- The heap ---- */

static void place(size_t slot, weft__timer *timer) {
    heap[slot] = timer;
    timer->index = slot + 1;
}

static void sift_up(size_t slot) {
    weft__timer *timer = heap[slot];
    while (slot > 0) {
        size_t parent = (slot - 1) / 2;
        if (heap[parent]->when <= timer->when) break;
        place(slot, heap[parent]);
        slot = parent;
    }
    place(slot, timer);
}

static void sift_down(size_t slot) {
    weft__timer *timer = heap[slot];
    for (;;) {
        size_t child = 2 * slot + 1;
        if (child >= count) break;
        if (child + 1 < count && heap[child + 1]->when < heap[child]->when) child++;
        if (timer->when <= heap[child]->when) break;
        place(slot, heap[child]);
        slot = child;
    }
    place(slot, timer);
}

/* Take a pending timer out of the heap. */
static void heap_remove(weft__timer *timer) {
    size_t slot = timer->index - 1;
    timer->index = 0;
    if (timer->reserved) reserved++; /* its slot stays kept */
    count--;
    if (slot == count) return;
    place(slot, heap[count]);
    if (slot > 0 && heap[(slot - 1) / 2]->when > heap[slot]->when)
        sift_up(slot);
    else
        sift_down(slot);
}

/* Make room for `needed` timers. 0 or WEFT_ENOMEM. */
static int heap_reserve(size_t needed) {
    if (needed <= capacity) return 0;
    size_t grown = capacity ? capacity : FIRST_CAPACITY;
    while (grown < needed) {
        if (grown > SIZE_MAX / 2 / sizeof *heap) return WEFT_ENOMEM;
        grown *= 2;
    }
    weft__timer **array = weft__malloc(grown * sizeof *array);
    if (!array) return WEFT_ENOMEM;
    if (count > 0) memcpy(array, heap, count * sizeof *array);
    weft__free(heap);
    heap = array;
    capacity = grown;
    return 0;
}

/* ---- The thread ---- */

static void wait_for_wake(weft_time until) {
    sleeping_until = until;
    int error;
    if (until == WEFT_FOREVER) {
        error = pthread_cond_wait(&wake, &lock);
    } else {
        struct timespec deadline = weft__timespec(until);
        error = pthread_cond_timedwait(&wake, &lock, &deadline);
    }
    if (error != 0 && error != ETIMEDOUT) weft__panic_errno("pthread_cond_timedwait", error);
    sleeping_until = WEFT_FOREVER;
}

static void *timer_main(void *unused) {
    (void)unused;
    on_timer_thread = true;
    pthread_setname_np(pthread_self(), "weft/timer");
    pthread_mutex_lock(&lock);
    for (;;) {
        if (stoppers > 0) { /* let them see the fire that just returned */
            wait_for_wake(WEFT_FOREVER);
            continue;
        }
        if (count == 0) {
            wait_for_wake(WEFT_FOREVER);
            continue;
        }
        weft__timer *first = heap[0];
        if (first->when > weft_now()) {
            wait_for_wake(first->when);
            continue;
        }
        heap_remove(first);
        running = first;
        pthread_mutex_unlock(&lock);
        first->fire(first);
        pthread_mutex_lock(&lock);
        running = NULL;
        if (stoppers > 0) pthread_cond_broadcast(&fire_done);
    }
    return NULL;
}

static void revive(void);

/* Under the lock: whether a forked child's pending timers have no thread.
 * While they do not, revive is the parker's before-park hook. */
static void set_orphaned(bool value) {
    if (orphaned == value) return;
    orphaned = value;
    weft__parker_before_park(value ? revive : NULL);
}

/* Called under the lock. Start the thread (once it works): 0, or
 * WEFT_EAGAIN to be retried by a later start (or wait, when orphaned). */
static int start_thread(void) {
    weft__fork_watch();
    if (!wake_ready) {
        if (weft__monotonic_cond_init(&wake) != 0) return WEFT_EAGAIN;
        wake_ready = true;
    }
    if (weft__start_service_thread(timer_main) != 0) return WEFT_EAGAIN;
    thread_started = true;
    set_orphaned(false);
    return 0;
}

/* The parker's before-park hook while orphaned: a forked child's pending
 * timers may be what a wait is for, so each blocking wait tries to start
 * their thread until one start succeeds (or none is pending any more). */
static void revive(void) {
    pthread_mutex_lock(&lock);
    if (!thread_started && count > 0)
        start_thread(); /* on failure still orphaned: the next wait retries */
    else
        set_orphaned(false);
    pthread_mutex_unlock(&lock);
}

/* ---- The API ---- */

int weft__timer_start(weft__timer *timer, weft_time when) {
    pthread_mutex_lock(&lock);
    if (timer->index != 0) weft__panic("weft__timer_start: timer already pending");
    int error = thread_started ? 0 : start_thread();
    if (timer->reserved) {
        /* Its slot is kept. Without a thread (a forked child) it waits
         * for one, as the child's other pending timers do. */
        if (error != 0) set_orphaned(true);
        error = 0;
        reserved--;
    } else if (error == 0) {
        /* Keep a slot for the running fire's own timer (see the top). */
        size_t needed = count + reserved + 1;
        /* running may have freed itself (after.c): compare, never read it. */
        if (running && running != timer) needed++;
        error = heap_reserve(needed);
    }
    if (error != 0) {
        pthread_mutex_unlock(&lock);
        return error;
    }
    timer->when = when;
    place(count, timer);
    count++;
    sift_up(count - 1);
    if (timer->index == 1 && when < sleeping_until) pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    return 0;
}

bool weft__timer_stop(weft__timer *timer) {
    pthread_mutex_lock(&lock);
    bool waited = false;
    if (timer->index == 0 && running == timer && !on_timer_thread) {
        stoppers++;
        while (running == timer) pthread_cond_wait(&fire_done, &lock);
        stoppers--;
        waited = true;
    }
    bool was_pending = timer->index != 0;
    if (was_pending) heap_remove(timer);
    if (waited && stoppers == 0) pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    return was_pending;
}

bool weft__timer_cancel(weft__timer *timer) {
    pthread_mutex_lock(&lock);
    bool was_pending = timer->index != 0;
    if (was_pending) heap_remove(timer);
    pthread_mutex_unlock(&lock);
    return was_pending;
}

int weft__timer_reserve(weft__timer *timer) {
    pthread_mutex_lock(&lock);
    if (timer->index != 0 || timer->reserved)
        weft__panic("weft__timer_reserve: timer pending or reserved");
    int error = thread_started ? 0 : start_thread();
    if (error == 0) {
        size_t needed = count + reserved + 1;
        if (running) needed++; /* the running fire's slot (see the top) */
        error = heap_reserve(needed);
    }
    if (error == 0) {
        timer->reserved = true;
        reserved++;
    }
    pthread_mutex_unlock(&lock);
    return error;
}

void weft__timer_unreserve(weft__timer *timer) {
    pthread_mutex_lock(&lock);
    if (timer->index != 0) weft__panic("weft__timer_unreserve: timer pending");
    if (timer->reserved) {
        timer->reserved = false;
        reserved--;
    }
    pthread_mutex_unlock(&lock);
}

size_t weft__timer_pending(void) {
    pthread_mutex_lock(&lock);
    size_t pending = count;
    pthread_mutex_unlock(&lock);
    return pending;
}

/* ---- fork (fork.h) ---- */

/* Fork only between fires: a fire cut off by the fork would leave its
 * owner half-done in the child (a context half canceled). Waiting counts
 * as a stopper, so that the thread starts no new fire until the fork is
 * over; the fire may itself need the lock, which the wait releases. */
void weft__timer_fork_prepare(void) {
    pthread_mutex_lock(&lock);
    if (running && !on_timer_thread) {
        stoppers++;
        while (running) pthread_cond_wait(&fire_done, &lock);
        stoppers--;
    }
}

void weft__timer_fork_parent(void) {
    if (thread_started) pthread_cond_signal(&wake); /* it may wait for stoppers == 0 */
    pthread_mutex_unlock(&lock);
}

/* The timer thread is gone; pending timers stay in the heap and a new
 * thread serves them, started here when timers are pending (should that
 * fail, the child's next blocking wait or timer start tries again: the
 * parker calls revive before every park until a start succeeds). No fire
 * was in progress at the fork (prepare waited), unless the fork came from
 * inside a fire. */
void weft__timer_fork_child(void) {
    running = NULL;
    stoppers = 0;
    thread_started = false;
    sleeping_until = WEFT_FOREVER;
    pthread_cond_init(&fire_done, NULL);
    wake_ready = false; /* start_thread initialises wake again */
    set_orphaned(count > 0 && start_thread() != 0);
    pthread_mutex_unlock(&lock);
}
