/* The parker: how a weft thread sleeps and is woken.
 *
 * Each thread that blocks in weft owns one parker (kept in thread-local
 * storage, allocated on its first blocking call, recycled when the thread
 * exits). A blocking operation arms the parker, publishes waiters that
 * point at it (on one channel, or on every channel of a select), and parks.
 * Whoever wants to complete the operation first claims the parker: a
 * compare-and-swap of its claim word from WEFT__UNCLAIMED to a token (the
 * index of the case it completes). Only the claimer may write to the
 * waiter's buffers and must then unpark the owner exactly once. The owner
 * claims its own parker with WEFT__CLAIM_SELF to give up (deadline, or a
 * case found ready while registering); if that CAS fails, an unpark is on
 * its way and the owner must park until it arrives.
 *
 * Waiting polls briefly, then yields, then sleeps on a futex (the state
 * word): most hand-offs on a busy channel complete in well under a
 * microsecond, and a futex round trip costs several. How long it stays
 * awake is learned per thread from what its sleeps cost (patience.h).
 *
 * Parkers are never freed, only recycled, so an unparker that is still
 * waking the futex after the owner has returned (and even exited) touches
 * valid memory; a stray wake-up is only a spurious one for the parker's
 * next owner, whose wait loop checks the state.
 *
 * The parker is the floor of weft's layering: every blocking call, the
 * goroutine pool, the timer thread and deadlock detection sit on it, so it
 * calls none of them. The two that must hear about parking install hooks
 * instead (below): the timer a before-park hook while a forked child's
 * timers have no thread, deadlock detection a sleep observer once it is
 * turned on. Each is one atomic pointer, NULL until installed, so a
 * program that installs neither pays a relaxed load and a predictable
 * branch for each, as a flag would cost. The parker registers its own
 * fork handlers (weft__parker_fork_watch), before fork.c registers the
 * other modules'. */
#ifndef WEFT_LIB_PARKER_H
#define WEFT_LIB_PARKER_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "patience.h"
#include "waiter.h"
#include "waitrecord.h"
#include "weft/error.h"
#include "weft/time.h"

enum {
    WEFT__UNCLAIMED = -1,  /* armed: waiting for a claimer */
    WEFT__CLAIM_SELF = -2, /* the owner gave up (deadline, or retry) */
};

typedef struct weft__parker {
    /* One cache line: all that a partner completing a single channel
     * operation touches (claim, waiter, value, wake-up). */
    _Alignas(64) atomic_int state; /* EMPTY, SLEEPING or NOTIFIED (parker.c); owner and unparker */
    atomic_int claim;              /* WEFT__UNCLAIMED, WEFT__CLAIM_SELF or a case index; CAS only */
    weft__waiter waiter; /* a single channel operation's waiter (chan.c); owner's between waits */
    uint64_t value;      /* that operation's value when it fits: written by owner or claimer */

    struct weft__parker *next; /* recycling list, under the pool's lock */

    /* What the owner is blocked on, for weft_debug_dump and the deadlock
     * report (waitrecord.h): written by the owner's blocking call before
     * it parks and cleared after (weft__wait_begin, weft__wait_end), read
     * by anyone. A park with no described wait (a pooled thread waiting
     * for a task) is never counted as asleep. */
    weft__wait_record record;
    struct weft__parker *every_next; /* every parker ever made; under pool_lock (parker.c) */
    /* Who owns the parker: written when a thread takes it
     * (weft__parker_self, and the fork child handler). */
    pthread_t owner;
    long thread_id; /* the kernel's id: the main thread's equals the pid */
    /* The deadlock registry's list of sleepers, and whether this one is a
     * goroutine: under the registry lock (deadlock.c), written through the
     * sleep observer; the parker only clears them in a forked child. */
    struct weft__parker *sleeper_next, *sleeper_prev;
    bool goroutine;
    /* For waits in poll (weft__parker_park_polling): -1 until the first
     * one makes it; the unparker writes to it. It stays with the parker
     * (a late write must never reach a reused fd number) and is closed
     * only in a forked child, whose copy is the parent's. */
    int eventfd;
    /* Owner only: an unpark of a poll was consumed since the last drain,
     * so the eventfd may hold a count. Saves a read(2) per wait. */
    bool eventfd_written;
    /* How long the owner's waits stay awake before sleeping, and whether
     * they may yield, learned from its waits (patience.h). Owner only. */
    weft__patience_memory learned;
    /* The current wait's time awake, when its caller began it before
     * registering (weft__parker_wait_awake); owner only. */
    weft__patience awake;
    bool awake_begun;
    /* When the last unpark that had to wake a sleeping owner began:
     * written by that unparker before its exchange, read by the owner after
     * waking, to learn what the sleep cost. */
    _Atomic weft_time unparked_at;
} weft__parker;

/* The calling thread's parker, allocated on first use; NULL if that
 * allocation failed (callers report WEFT_ENOMEM). */
weft__parker *weft__parker_self(void);

/* In a forked child: put the parker of a thread lost in the fork back
 * for reuse, with its state made afresh
 * (its owner may have been asleep on them at the fork). */
void weft__parker_recycle(weft__parker *parker);

/* Owner: start a new wait. Resets the claim word to WEFT__UNCLAIMED.
 * Must only be called when no waiter of the previous wait is published. */
static inline void weft__parker_arm(weft__parker *parker) {
    atomic_store_explicit(&parker->claim, WEFT__UNCLAIMED, memory_order_relaxed);
}

/* Anyone: take the right to complete the owner's wait. True for exactly
 * one caller per arm; that caller must then call weft__parker_unpark
 * (unless token is WEFT__CLAIM_SELF and the caller is the owner). */
static inline bool weft__parker_claim(weft__parker *parker, int token) {
    int expected = WEFT__UNCLAIMED;
    return atomic_compare_exchange_strong_explicit(&parker->claim, &expected, token,
                                                   memory_order_acq_rel, memory_order_acquire);
}

/* The claim word now: WEFT__UNCLAIMED while nobody has claimed. */
static inline int weft__parker_claimed(weft__parker *parker) {
    return atomic_load_explicit(&parker->claim, memory_order_acquire);
}

/* Owner, before publishing any waiter: wait awake for the operation to
 * become possible without registering, so that a partner that is running
 * keeps its fast path (a registered waiter sends it through the lock).
 * Each call is one poll or yield; the first (first true) begins the
 * wait. Returns false when the thread's patience is spent: register and
 * park, and the park then polls only briefly before it sleeps. The
 * caller calls weft__parker_wait_done when the operation has finished,
 * parked or not. */
static inline bool weft__parker_wait_awake(weft__parker *parker, bool first) {
    if (first) {
        weft__patience_start(&parker->awake, &parker->learned);
        parker->awake_begun = true;
        return true;
    }
    return weft__patience_wait(&parker->awake);
}

/* Owner: the wait begun by weft__parker_wait_awake is over. What a crowded
 * core taught it is kept however the wait ended: a waiter that yields to
 * a partner on its own core runs only when that partner stops, while a
 * sleeper is woken onto an idle core. */
static inline void weft__parker_wait_done(weft__parker *parker) {
    if (parker->awake_begun) weft__patience_end(&parker->learned, &parker->awake);
    parker->awake_begun = false;
}

/* Owner (parker may be NULL: then nothing), on a blocking call's slow
 * path before it parks: describe the wait for weft_debug_dump and the
 * deadlock report (call: the blocking call's name, a string literal;
 * object: what it waits on; count and length: the numbers shown beside
 * it, see waitrecord.h). Calls nest; the outermost one's description
 * stands. Every begin must be matched by weft__wait_end once the wait is
 * over, on every path. */
static inline void weft__wait_begin(weft__parker *parker, const char *call, const void *object,
                                    size_t count, size_t length) {
    if (parker)
        weft__wait_record_begin(&parker->record, call, object, count, length, parker->thread_id);
}

static inline void weft__wait_end(weft__parker *parker) {
    if (parker) weft__wait_record_end(&parker->record);
}

/* weft__wait_begin on the calling thread's parker, which it returns (NULL
 * when the thread has none and none can be made: nothing is recorded). */
weft__parker *weft__wait_begin_self(const char *call, const void *object, size_t count,
                                    size_t length);

/* For weft_debug_dump: copy the record of every parker whose owner is in
 * a described wait into out[0..room), and return how many there were
 * (more than room: call again with more room). Takes the parkers' list
 * lock; allocates nothing. */
size_t weft__parker_waits(weft__wait_snapshot *out, size_t room);

/* Claimer: wake the owner. Everything the claimer wrote before this call
 * is visible to the owner when weft__parker_park returns 0. */
void weft__parker_unpark(weft__parker *parker);

/* Owner: wait for an unpark, or until deadline. Returns 0 when unparked
 * (consuming it), WEFT_ETIMEDOUT when weft_now() >= deadline first. With
 * a sleep observer installed and counting, a described wait
 * (weft__wait_begin) with no deadline is counted as asleep while it
 * sleeps (deadlock.h). */
int weft__parker_park(weft__parker *parker, weft_time deadline);

/* Owner: weft__parker_park, but sleeping in ppoll(2) over fds[0..nfds) and
 * the parker's eventfd, which it puts in fds[nfds] (the caller gives
 * nfds + 1 slots). Returns 0 when unparked (consuming it; an unpark wins
 * over a ready fd), 1 when one of the fds has revents (then no unpark is
 * pending for this wait), WEFT_ETIMEDOUT at the deadline, WEFT_ESYS with
 * errno set when the eventfd cannot be made (EMFILE, ENFILE) or poll
 * fails. Interrupted polls are resumed. Never counted as asleep by
 * deadlock detection: the kernel, not another thread, may end the wait. */
int weft__parker_park_polling(weft__parker *parker, struct pollfd *fds, size_t nfds,
                              weft_time deadline);

/* ---- Hooks for the layers above ---- */

/* Called by every weft__parker_park, on the owner, before it spins: the
 * timer module's while a forked child's pending timers have no thread
 * (what the wait is for may be one of them). NULL removes it. One hook at
 * a time; the last call wins. */
void weft__parker_before_park(void (*hook)(void));

/* Told about every counted sleep: a wait with no deadline that its
 * blocking call described, parked while counting() says yes. The parker
 * keeps the sleep's state (a counted state per kind of sleeper, so that
 * the unparker's exchange alone says what to uncount); the observer keeps
 * the books. Each hook is called with no lock of the parker's held
 * unless said otherwise. */
typedef struct weft__sleep_observer {
    /* Whether sleeps are counted now: asked before each sleep that could
     * be, so that turning counting off needs no change of observer. */
    bool (*counting)(void);
    /* Whether the calling thread runs a goroutine (the sleep's kind). */
    bool (*in_goroutine)(void);
    /* The observer's lock, taken by the owner around the
     * compare-and-swap into a counted state and asleep, so
     * that a sleeper is listed exactly while its state is counted. */
    void (*lock)(void);
    void (*unlock)(void);
    /* Under lock, just after that compare-and-swap: count the sleeper. */
    void (*asleep)(weft__parker *parker, bool goroutine);
    /* The owner, once its counted sleep ended. */
    void (*awake)(weft__parker *parker);
    /* An unparker whose exchange ended a counted sleep, before it
     * wakes the owner: it must touch nothing of the parker's, which its owner
     * may already be reusing. */
    void (*unparked)(bool goroutine);
} weft__sleep_observer;

/* Install observer, for good: an unparker that finds a counted sleeper
 * reports to the observer it was counted by, so it is never taken away
 * (turning detection off is counting's business). A second call with the
 * same observer does nothing; with another, it aborts. */
void weft__parker_observe(const weft__sleep_observer *observer);

/* For the observer's report: whether parker's owner is in a counted
 * sleep that nobody has claimed (so that no unpark is coming). */
bool weft__parker_stuck(weft__parker *parker);

/* Register the parker's pthread_atfork handlers, once (cheap after the
 * first call). weft__parker_self does it before a thread's first park;
 * fork.c calls it before registering its own handlers, so that the
 * parker's prepare runs after every other module's and its parent and
 * child handlers before them (pthread_atfork's order: prepare in reverse
 * of registration, the others in order). */
void weft__parker_fork_watch(void);

#endif
