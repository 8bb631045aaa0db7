/* Poll fds of channels: weft_chan_pollfd (see chan_poll.h for how an fd
 * observes its channel, and docs/event-loops.md for the contract).
 *
 * Each direction's fd is an eventfd, made on the first call for that
 * direction under the channel's lock (so two first calls make one). Its
 * state, under the same lock, is one of:
 *   armed:  nothing could proceed when last looked at; the fd is drained
 *           and the observer counts as a waiter (chan.c sets the fast
 *           path's flag for it);
 *   raised: something could proceed, or the channel is closed; the fd
 *           holds one write and the observer is not a waiter.
 * Raising writes the eventfd once; only a try call that finds nothing
 * (WEFT_EAGAIN) re-arms: it marks the observer armed and makes it visible
 * (a seq_cst store of the flag), re-checks readiness (seq_cst loads),
 * and drains the fd only if still nothing is ready, so that a partner
 * that advanced its position before the flag store is seen by the
 * re-check, and one after it sees the flag and raises: no edge is lost.
 * A close raises both for good (a try after it never says WEFT_EAGAIN).
 *
 * Fork: the child's copies of the eventfds are the parent's objects, and
 * a write in the child would wake the parent's loop. Every poll is on a
 * registry; the child handler gives each fd number a fresh eventfd of the
 * same readiness (dup3 over it), so the child's loop keeps working with
 * the numbers it knows and the parent never hears from the child. The
 * registry lock is held across fork (taken in prepare) and is a leaf:
 * it is taken under a channel lock, never the other way round. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "alloc.h"
#include "chan_poll.h"
#include "panic.h"

atomic_long weft__chan_pollfd_writes;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static weft__chan_poll *registry; /* under registry_lock */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void signal_fd(int fd) {
    const uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR) continue;
    atomic_fetch_add_explicit(&weft__chan_pollfd_writes, 1, memory_order_relaxed);
}

static void drain_fd(int fd) {
    uint64_t count;
    while (read(fd, &count, sizeof count) < 0 && errno == EINTR) continue;
}

void weft__chan_poll_raise(weft__chan_poll *poll, int dir) {
    int side = weft__chan_poll_side(dir);
    if (!poll->armed[side]) return;
    poll->armed[side] = false;
    if (poll->raised[side]) return;
    poll->raised[side] = true;
    signal_fd(atomic_load_explicit(&poll->fd[side], memory_order_relaxed));
}

void weft__chan_poll_close(weft__chan_poll *poll) {
    for (int side = 0; side < 2; side++) {
        int fd = atomic_load_explicit(&poll->fd[side], memory_order_relaxed);
        poll->armed[side] = false;
        if (fd < 0 || poll->raised[side]) continue;
        poll->raised[side] = true;
        signal_fd(fd);
    }
}

/* Under the channel's lock: arm dir's observer, then look. Ready: raise
 * the fd (it may be raised already: then it stays so, no write). Not
 * ready: drain it; the observer stays armed until a partner raises it. */
static void rearm_locked(weft_chan *channel, weft__chan_poll *poll, int dir) {
    int side = weft__chan_poll_side(dir);
    int fd = atomic_load_explicit(&poll->fd[side], memory_order_relaxed);
    if (fd < 0 || poll->armed[side]) return;
    poll->armed[side] = true;
    if (weft__chan_watch_locked(channel, dir)) {
        weft__chan_poll_raise(poll, dir);
    } else if (poll->raised[side]) {
        drain_fd(fd);
        poll->raised[side] = false;
    }
}

void weft__chan_poll_rearm(weft_chan *channel, int dir) {
    weft__chan_poll *poll = __atomic_load_n(weft__chan_poll_slot(channel), __ATOMIC_ACQUIRE);
    /* fd is set once: -1 here means nobody polls this direction. */
    if (atomic_load_explicit(&poll->fd[weft__chan_poll_side(dir)], memory_order_relaxed) < 0)
        return;
    weft__chan_lock(channel);
    rearm_locked(channel, poll, dir);
    weft__chan_unlock(channel);
}

/* ---- fork: every poll of the process gets fresh eventfds in a child ---- */

static void fork_prepare(void) { pthread_mutex_lock(&registry_lock); }

static void fork_parent(void) { pthread_mutex_unlock(&registry_lock); }

/* Put a fresh eventfd, readable if raised, at fd's number. */
static void renew_fd(int fd, bool raised) {
    int fresh = eventfd(raised ? 1 : 0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fresh < 0) weft__panic_errno("eventfd (a channel's poll fd, in a forked child)", errno);
    if (dup3(fresh, fd, O_CLOEXEC) < 0)
        weft__panic_errno("dup3 (a channel's poll fd, in a forked child)", errno);
    close(fresh);
}

/* The child's only thread: a poll that a lost thread was changing is
 * what fork.h says no handler can repair; every other is consistent. */
static void fork_child(void) {
    for (weft__chan_poll *poll = registry; poll; poll = poll->next) {
        for (int side = 0; side < 2; side++) {
            int fd = atomic_load_explicit(&poll->fd[side], memory_order_relaxed);
            if (fd >= 0) renew_fd(fd, poll->raised[side]);
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

static void install_fork_handlers(void) {
    int error = pthread_atfork(fork_prepare, fork_parent, fork_child);
    if (error) weft__panic_errno("pthread_atfork", error);
}

/* ---- making and freeing ---------------------------------------------- */

static weft__chan_poll *make_poll(void) {
    weft__chan_poll *poll = weft__calloc(1, sizeof *poll);
    if (!poll) return NULL;
    atomic_init(&poll->fd[0], -1);
    atomic_init(&poll->fd[1], -1);
    pthread_mutex_lock(&registry_lock);
    poll->next = registry;
    if (registry) registry->prev = poll;
    registry = poll;
    pthread_mutex_unlock(&registry_lock);
    return poll;
}

void weft__chan_poll_free(weft__chan_poll *poll) {
    if (!poll) return;
    pthread_mutex_lock(&registry_lock);
    if (poll->prev)
        poll->prev->next = poll->next;
    else
        registry = poll->next;
    if (poll->next) poll->next->prev = poll->prev;
    pthread_mutex_unlock(&registry_lock);
    for (int side = 0; side < 2; side++) {
        int fd = atomic_load_explicit(&poll->fd[side], memory_order_relaxed);
        if (fd >= 0) close(fd);
    }
    weft__free(poll);
}

int weft_chan_pollfd(weft_chan *channel, int dir) {
    if (!channel || (dir != WEFT_SEND && dir != WEFT_RECV)) return WEFT_EINVAL;
    if (dir == WEFT_SEND && weft__chan_refuses_send(channel)) return WEFT_EINVAL;
    int side = weft__chan_poll_side(dir);
    weft__chan_poll **slot = weft__chan_poll_slot(channel);
    weft__chan_poll *poll = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (poll) {
        int fd = atomic_load_explicit(&poll->fd[side], memory_order_acquire);
        if (fd >= 0) return fd;
    }
    pthread_once(&fork_once, install_fork_handlers);
    int result;
    weft__chan_lock(channel);
    poll = *slot;
    if (!poll) {
        poll = make_poll();
        if (!poll) {
            result = WEFT_ENOMEM;
            goto done;
        }
        __atomic_store_n(slot, poll, __ATOMIC_RELEASE);
    }
    result = atomic_load_explicit(&poll->fd[side], memory_order_relaxed);
    if (result < 0) {
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0) {
            result = WEFT_ESYS;
            goto done;
        }
        atomic_store_explicit(&poll->fd[side], fd, memory_order_release);
        rearm_locked(channel, poll, dir);
        result = fd;
    }
done:;
    int saved_errno = errno;
    weft__chan_unlock(channel);
    errno = saved_errno;
    return result;
}
