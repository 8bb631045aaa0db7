/* A channel's poll fds (weft_chan_pollfd, chan_pollfd.c) and the few hooks
 * chan.c calls.
 *
 * An fd's readiness is a standing observer of the channel: while it is
 * *armed* (nothing ready in its direction when last looked at), it counts
 * as a waiter of that direction, so the buffered fast path's "someone is
 * parked" flag is set and the next partner takes the locked path, which
 * raises it: one eventfd write, and the observer is disarmed. A try call
 * that says WEFT_EAGAIN re-arms it: it sets the flag, re-checks (the same
 * store→load as parking), and only if nothing is ready drains the eventfd.
 * A channel without a poll fd, or with a raised one, never sees the flag
 * set on its account: its fast path is unchanged.
 *
 * Everything here except weft__chan_poll_free runs under the channel's
 * lock; the fields say who writes them. */
#ifndef WEFT_LIB_CHAN_POLL_H
#define WEFT_LIB_CHAN_POLL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "weft/chan.h"

typedef struct weft__chan_poll {
    /* Per direction: [0] WEFT_SEND, [1] WEFT_RECV (poll_side). */
    atomic_int fd[2]; /* the eventfd, -1 until asked; set once, under the channel's lock */
    bool armed[2];    /* counts as a waiter; under the channel's lock */
    bool raised[2];   /* the eventfd is readable (we wrote it); under the channel's lock */
    struct weft__chan_poll *next, *prev; /* every poll of the process; under the registry lock */
} weft__chan_poll;

static inline int weft__chan_poll_side(int dir) { return dir == WEFT_RECV; }

/* Whether poll (may be NULL) has an armed observer for dir. */
static inline bool weft__chan_poll_armed(const weft__chan_poll *poll, int dir) {
    return poll && poll->armed[weft__chan_poll_side(dir)];
}

/* dir may now proceed: if its observer is armed, disarm it and raise the
 * fd (one write). */
void weft__chan_poll_raise(weft__chan_poll *poll, int dir);

/* The channel is closing: raise both fds for good. */
void weft__chan_poll_close(weft__chan_poll *poll);

/* A try call on channel said WEFT_EAGAIN in dir: re-arm dir's observer
 * (takes the channel's lock). */
void weft__chan_poll_rearm(weft_chan *channel, int dir);

/* The channel is being freed: close its fds and forget it. NULL is ignored. */
void weft__chan_poll_free(weft__chan_poll *poll);

/* chan.c's side, for chan_pollfd.c: its lock, where its poll pointer
 * lives (written under the lock, read with acquire), whether it refuses
 * sends (a context's done channel), and, under the lock, "make an armed
 * observer of dir visible to partners, then say whether dir can proceed
 * now (or the channel is closed)". */
void weft__chan_lock(weft_chan *channel);
void weft__chan_unlock(weft_chan *channel);
weft__chan_poll **weft__chan_poll_slot(weft_chan *channel);
bool weft__chan_refuses_send(const weft_chan *channel);
bool weft__chan_watch_locked(weft_chan *channel, int dir);

/* Test hook: eventfd writes made by every channel so far. */
extern atomic_long weft__chan_pollfd_writes;

#endif
