/* Parker: poll, yield, then sleep on a futex: the state word itself.
 *
 * State machine of parker->state (owner = the thread the parker belongs to):
 *   EMPTY    -> NOTIFIED   unparker (exchange); owner was spinning or not yet waiting
 *   EMPTY    -> SLEEPING   owner (CAS), just before futex_wait on SLEEPING
 *   SLEEPING -> NOTIFIED   unparker (exchange), then futex_wake
 *   SLEEPING -> EMPTY      owner (CAS), on deadline
 *   NOTIFIED -> EMPTY      owner, consuming the unpark
 * With a sleep observer counting (parker.h; deadlock detection), a
 * described wait with no deadline sleeps in a counted state instead of
 * SLEEPING, one per kind of thread, so that the unparker's exchange alone
 * says what to uncount:
 *   EMPTY    -> ASLEEP_*   owner (CAS), under the observer's lock
 *   ASLEEP_* -> NOTIFIED   unparker (exchange), tells the observer, wakes
 * futex_wait sleeps only while the word still holds the sleeping state it
 * was given, checked by the kernel under its own lock, so a wake-up cannot
 * fall between the owner's CAS and its sleep; no mutex is needed, and the
 * woken owner has none to take. The unparker's exchange is seq_cst and
 * the owner's successful load of NOTIFIED is acquire: what the claimer
 * wrote (a copied value, waiter->result) happens before the owner reads it.
 *
 * The hooks (parker.h) are read relaxed: each points at code and constant
 * data that exist for the whole run, so there is nothing to publish. The
 * observer is only ever set once; an unparker that finds a counted state
 * reads it after the sleeper did (its exchange read the sleeper's CAS,
 * which followed the sleeper's load), so it finds the same observer.
 *
 * Parkers come from a recycling list and are never freed (see parker.h).
 * pool_lock, held across fork by the parker's own handlers, guards that
 * list. */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "backoff.h"
#include "panic.h"
#include "parker.h"
#include "patience.h"
#include "thread.h"
#include "time_internal.h"

/* Every state from SLEEPING on means "the owner sleeps on the futex";
 * POLLING means it waits in poll(2), on its fds and the parker's eventfd. */
enum { EMPTY, NOTIFIED, POLLING, SLEEPING, ASLEEP_OTHER, ASLEEP_GOROUTINE };

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static weft__parker *pool_free; /* recycled parkers, under pool_lock */
static weft__parker *every;     /* every parker ever made, through every_next; under pool_lock */
static pthread_key_t exit_key;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT; /* exit_key and the fork handlers */
static _Thread_local weft__parker *current;

static _Atomic(void (*)(void)) before_park;            /* weft__parker_before_park's */
static _Atomic(const weft__sleep_observer *) observer; /* weft__parker_observe's; set once */

static void recycle(void *arg) {
    weft__parker *parker = arg;
    pthread_mutex_lock(&pool_lock);
    parker->next = pool_free;
    pool_free = parker;
    pthread_mutex_unlock(&pool_lock);
}

/* In the child, a parker that a lost thread may have left mid-use: its
 * owner asleep (its state still says so) or an unparker inside wake().
 * The child has one thread, so nothing else can touch the parker while it
 * starts afresh: state and the deadlock registry's links (the registry
 * forgets its sleepers in the child, fork.c). */
static void renew(weft__parker *parker) {
    atomic_store_explicit(&parker->state, EMPTY, memory_order_relaxed);
    parker->sleeper_next = parker->sleeper_prev = NULL;
    weft__wait_record_clear(&parker->record);
    /* The child's copy of the eventfd is the parent's object: a write by
     * either would wake the other's poll. The child makes its own. */
    if (parker->eventfd >= 0) close(parker->eventfd);
    parker->eventfd = -1;
    parker->eventfd_written = false;
}

void weft__parker_recycle(weft__parker *parker) {
    renew(parker);
    recycle(parker);
}

/* The exit key's destructor, on the exiting thread. Once the parker is
 * back on the list another thread may take it, so this thread forgets it:
 * a weft call from a later key destructor (another library's, in this
 * round or a later one) takes a parker of its own and sets the key again,
 * and POSIX runs another round of destructors for it (up to
 * PTHREAD_DESTRUCTOR_ITERATIONS; after the last one that parker is never
 * recycled, but still used by this thread alone). */
static void recycle_at_exit(void *arg) {
    current = NULL;
    recycle(arg);
}

static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static void setup(void) {
    if (pthread_key_create(&exit_key, recycle_at_exit) != 0) abort();
    int error = pthread_atfork(fork_prepare, fork_parent, fork_child);
    if (error) weft__panic_errno("pthread_atfork", error);
}

void weft__parker_fork_watch(void) { pthread_once(&setup_once, setup); }

static weft__parker *make_parker(void) {
    weft__parker *parker = weft__aligned_alloc(_Alignof(weft__parker), sizeof *parker);
    if (!parker) return NULL;
    memset(parker, 0, sizeof *parker);
    parker->eventfd = -1;
    return parker;
}

/* The calling thread becomes parker's owner. */
static void take(weft__parker *parker) {
    parker->owner = pthread_self();
    parker->thread_id = (long)syscall(SYS_gettid);
    weft__wait_record_clear(&parker->record);
}

weft__parker *weft__parker_self(void) {
    if (current) return current;
    weft__parker_fork_watch();
    pthread_mutex_lock(&pool_lock);
    weft__parker *parker = pool_free;
    if (parker) pool_free = parker->next;
    pthread_mutex_unlock(&pool_lock);
    if (!parker) {
        parker = make_parker();
        if (!parker) return NULL;
        pthread_mutex_lock(&pool_lock);
        parker->every_next = every;
        every = parker;
        pthread_mutex_unlock(&pool_lock);
    }
    if (pthread_setspecific(exit_key, parker) != 0) {
        recycle(parker);
        return NULL;
    }
    take(parker);
    atomic_store_explicit(&parker->state, EMPTY, memory_order_relaxed);
    current = parker;
    return parker;
}

/* The futex calls. A parker is never freed, so a wake-up that reaches a
 * parker whose owner has moved on is only a spurious wake-up of a later
 * sleep, which checks the state. errno is kept: a blocking weft call
 * must not change it. */
static bool futex_sleep(atomic_int *word, int sleeping, const struct timespec *until) {
    int saved = errno;
    long result = syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, sleeping, until,
                          NULL, FUTEX_BITSET_MATCH_ANY);
    bool timed_out = result < 0 && errno == ETIMEDOUT;
    errno = saved;
    return !timed_out;
}

static void futex_wake(atomic_int *word) {
    int saved = errno;
    syscall(SYS_futex, word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, NULL, 0);
    errno = saved;
}

/* The unparker's half when the owner sleeps: tell the observer about a
 * counted sleeper (see the top for why it is there), then wake it. */
__attribute__((noinline)) static void wake(weft__parker *parker, int before) {
    if (before != SLEEPING)
        atomic_load_explicit(&observer, memory_order_relaxed)->unparked(before == ASLEEP_GOROUTINE);
    futex_wake(&parker->state);
}

/* The unparker's half when the owner waits in poll. The parker outlives
 * its owner (it is only recycled) and the eventfd the parker, so a late
 * write is at worst a spurious wake-up of a later poll, which drains it. */
__attribute__((noinline)) static void wake_polling(weft__parker *parker) {
    uint64_t one = 1;
    ssize_t written;
    do written = write(parker->eventfd, &one, sizeof one);
    while (written < 0 && errno == EINTR);
    /* EAGAIN: the counter is full, so the owner is being woken anyway. */
}

void weft__parker_unpark(weft__parker *parker) {
    /* The stamp comes first: once the exchange is seen, the owner may be
     * on to its next wait, which must not take this wake-up's time. */
    if (atomic_load_explicit(&parker->state, memory_order_relaxed) >= SLEEPING)
        atomic_store_explicit(&parker->unparked_at, weft_now(), memory_order_relaxed);
    int before = atomic_exchange(&parker->state, NOTIFIED);
    if (before >= SLEEPING)
        wake(parker, before);
    else if (before == POLLING)
        wake_polling(parker);
}

static inline bool consume(weft__parker *parker) {
    if (atomic_load_explicit(&parker->state, memory_order_acquire) != NOTIFIED) return false;
    atomic_store_explicit(&parker->state, EMPTY, memory_order_relaxed);
    return true;
}

/* With a sleep observer installed: a sleep that it counts, one with no
 * deadline that the blocking call described, listed by the observer from
 * the CAS into ASLEEP_* until after it woke. Returns false, doing
 * nothing, for any other park; true once it has consumed the unpark. */
__attribute__((noinline)) static bool park_counted(weft__parker *parker, weft_time deadline,
                                                   const weft__sleep_observer *watcher) {
    if (deadline != WEFT_FOREVER || !weft__wait_record_described(&parker->record) ||
        !watcher->counting())
        return false;
    bool goroutine = watcher->in_goroutine();
    int asleep = goroutine ? ASLEEP_GOROUTINE : ASLEEP_OTHER;
    int expected = EMPTY;
    watcher->lock();
    bool listed = atomic_compare_exchange_strong(&parker->state, &expected, asleep);
    if (listed) watcher->asleep(parker, goroutine);
    watcher->unlock();
    /* Not listed: the CAS found NOTIFIED, the only other state here. */
    if (listed)
        while (atomic_load(&parker->state) == asleep) futex_sleep(&parker->state, asleep, NULL);
    atomic_store_explicit(&parker->state, EMPTY, memory_order_relaxed);
    if (listed) watcher->awake(parker);
    return true;
}

bool weft__parker_stuck(weft__parker *parker) {
    int state = atomic_load(&parker->state);
    return (state == ASLEEP_OTHER || state == ASLEEP_GOROUTINE) &&
           weft__parker_claimed(parker) == WEFT__UNCLAIMED;
}

/* Sleep until unparked (0) or the deadline (WEFT_ETIMEDOUT). */
static int sleep_until(weft__parker *parker, weft_time deadline) {
    const weft__sleep_observer *watcher = atomic_load_explicit(&observer, memory_order_relaxed);
    if (__builtin_expect(watcher != NULL, 0) && park_counted(parker, deadline, watcher)) return 0;
    struct timespec until = weft__timespec(deadline);
    for (;;) {
        int expected = EMPTY;
        if (!atomic_compare_exchange_strong(&parker->state, &expected, SLEEPING) &&
            expected == NOTIFIED)
            break;
        /* SLEEPING now (a spurious wake-up leaves it so). */
        bool in_time =
            futex_sleep(&parker->state, SLEEPING, deadline == WEFT_FOREVER ? NULL : &until);
        if (atomic_load(&parker->state) == NOTIFIED) break;
        if (deadline != WEFT_FOREVER && (!in_time || weft_now() >= deadline)) {
            expected = SLEEPING;
            if (atomic_compare_exchange_strong(&parker->state, &expected, EMPTY))
                return WEFT_ETIMEDOUT;
            break; /* NOTIFIED raced with the deadline: take the unpark */
        }
    }
    atomic_store_explicit(&parker->state, EMPTY, memory_order_relaxed);
    return 0;
}

/* After a sleep ended by an unpark: keep the patience that would have
 * paid (patience.h). A wake-up stamped before this wait began was not
 * the one that ended it (its unparker's stamp is still to come, or a
 * spurious wake took the unpark): that sleep teaches nothing. */
static void learn(weft__parker *parker, const weft__patience *patience) {
    weft_time now = weft_now();
    weft_time unparked = atomic_load_explicit(&parker->unparked_at, memory_order_relaxed);
    if (patience->crowded || unparked < patience->began || unparked > now) return;
    parker->learned.patience = weft__patience_learn(patience->give_up - patience->began,
                                                    now - patience->began, now - unparked);
}

int weft__parker_park(weft__parker *parker, weft_time deadline) {
    void (*hook)(void) = atomic_load_explicit(&before_park, memory_order_relaxed);
    if (hook) hook();
    /* A partner that is running completes a hand-off within a few hundred
     * nanoseconds; one that is not needs our core, which the yields give.
     * How long is worth it depends on the host: patience.h. */
    weft__patience patience;
    if (parker->awake_begun) {
        /* The caller waited awake before registering: what remains of its
         * budget, and at least a brief poll for a partner that found the
         * waiter just published. */
        patience = parker->awake;
        weft__patience_resume(&patience);
    } else {
        weft__patience_start(&patience, &parker->learned);
    }
    if (deadline != WEFT_FOREVER && deadline < patience.give_up)
        patience.give_up = deadline; /* a deadline is not overslept awake */
    int result = 0;
    do
        if (consume(parker)) goto awake;
    while (weft__patience_wait(&patience));
    result = sleep_until(parker, deadline);
    if (result == 0) learn(parker, &patience);
awake:
    if (parker->awake_begun)
        parker->awake = patience; /* the caller's weft__parker_wait_done ends it */
    else
        weft__patience_end(&parker->learned, &patience);
    return result;
}

/* ---- Parking in poll(2) ---- */

static void drain(int eventfd) {
    uint64_t count;
    while (read(eventfd, &count, sizeof count) < 0 && errno == EINTR) continue;
}

/* Milliseconds are too coarse for a deadline; ppoll takes a timespec. */
static struct timespec *remaining(weft_time deadline, struct timespec *left) {
    if (deadline == WEFT_FOREVER) return NULL;
    weft_time now = weft_now();
    weft_time span = deadline > now ? deadline - now : 0;
    left->tv_sec = (time_t)(span / 1000000000);
    left->tv_nsec = (long)(span % 1000000000);
    return left;
}

/* Take an unpark that found the parker POLLING: its write to the eventfd
 * has come or is coming, so the next poll must drain first. */
static bool consume_polled(weft__parker *parker) {
    if (!consume(parker)) return false;
    parker->eventfd_written = true;
    return true;
}

/* Leave POLLING for EMPTY; false if an unpark came first (then consumed). */
static bool stop_polling(weft__parker *parker) {
    int expected = POLLING;
    if (atomic_compare_exchange_strong(&parker->state, &expected, EMPTY)) return true;
    (void)consume_polled(parker);
    return false;
}

int weft__parker_park_polling(weft__parker *parker, struct pollfd *fds, size_t nfds,
                              weft_time deadline) {
    void (*hook)(void) = atomic_load_explicit(&before_park, memory_order_relaxed);
    if (hook) hook();
    if (parker->eventfd < 0) {
        parker->eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (parker->eventfd < 0) return WEFT_ESYS;
    }
    fds[nfds] = (struct pollfd){.fd = parker->eventfd, .events = POLLIN};
    /* Counts left by unparkers of earlier waits, drained before the state
     * says POLLING: an unpark of this wait writes only after that. A write
     * that lands after this drain shows below as a stale count. */
    if (parker->eventfd_written) {
        drain(parker->eventfd);
        parker->eventfd_written = false;
    }
    int expected = EMPTY;
    if (!atomic_compare_exchange_strong(&parker->state, &expected, POLLING)) {
        (void)consume(parker);
        return 0;
    }
    for (;;) {
        struct timespec left;
        int ready = ppoll(fds, nfds + 1, remaining(deadline, &left), NULL);
        if (consume_polled(parker)) return 0;
        if (ready < 0) {
            if (errno == EINTR) continue;
            int saved = errno;
            if (!stop_polling(parker)) return 0;
            errno = saved;
            return WEFT_ESYS;
        }
        bool fd_ready = false;
        for (size_t k = 0; k < nfds; k++)
            if (fds[k].revents) fd_ready = true;
        if (fd_ready) return stop_polling(parker) ? 1 : 0;
        if (fds[nfds].revents) {
            /* A stale count; an unpark of this wait shows as NOTIFIED. */
            drain(parker->eventfd);
            continue;
        }
        if (deadline != WEFT_FOREVER && weft_now() >= deadline)
            return stop_polling(parker) ? WEFT_ETIMEDOUT : 0;
    }
}

/* ---- Wait records (parker.h, waitrecord.h) ---- */

weft__parker *weft__wait_begin_self(const char *call, const void *object, size_t count,
                                    size_t length) {
    weft__parker *parker = weft__parker_self();
    weft__wait_begin(parker, call, object, count, length);
    return parker;
}

/* A parker on the list is never freed, so the walk may read any record;
 * a recycled parker's is clear (its thread ended no wait in the middle). */
size_t weft__parker_waits(weft__wait_snapshot *out, size_t room) {
    size_t found = 0;
    pthread_mutex_lock(&pool_lock);
    for (weft__parker *parker = every; parker; parker = parker->every_next) {
        weft__wait_snapshot snapshot;
        if (!weft__wait_record_read(&parker->record, &snapshot)) continue;
        if (found < room) out[found] = snapshot;
        found++;
    }
    pthread_mutex_unlock(&pool_lock);
    return found;
}

/* ---- Hooks (parker.h) ---- */

void weft__parker_before_park(void (*hook)(void)) {
    atomic_store_explicit(&before_park, hook, memory_order_relaxed);
}

void weft__parker_observe(const weft__sleep_observer *installed) {
    const weft__sleep_observer *expected = NULL;
    if (!atomic_compare_exchange_strong(&observer, &expected, installed) && expected != installed)
        weft__panic("weft__parker_observe: a different sleep observer is installed");
}

/* ---- fork: the parker's own handlers (weft__parker_fork_watch) ---- */

static void fork_prepare(void) { pthread_mutex_lock(&pool_lock); }

static void fork_parent(void) { pthread_mutex_unlock(&pool_lock); }

/* The only thread of the child. Its own parker and every parker on the
 * recycling list are renewed (a parker on the list may still be in an
 * unparker's hands, see parker.h); the pools then hand back their lost
 * threads' parkers through weft__parker_recycle, which renews them too.
 * Parkers of other lost threads (plain pthreads) stay allocated and
 * unused. Runs before fork.c's child handler (weft__parker_fork_watch). */
static void fork_child(void) {
    pthread_mutex_unlock(&pool_lock);
    /* Threads lost in the fork wait no more, even those whose parkers
     * stay unused (a dump in the child must not list them). */
    for (weft__parker *parker = every; parker; parker = parker->every_next)
        if (parker != current) weft__wait_record_clear(&parker->record);
    for (weft__parker *parker = pool_free; parker; parker = parker->next) renew(parker);
    if (!current) return;
    renew(current);
    take(current); /* the same thread, with the child's kernel id */
}
