/* What select needs from a channel: try an operation without blocking,
 * publish and withdraw a waiter, and ask whether a case could proceed now.
 *
 * Every function takes the direction (WEFT_SEND or WEFT_RECV) and, where it
 * matters, the calling thread's parker as `self`, so that a select never
 * finds its own waiters as partners. */
#ifndef WEFT_LIB_CHAN_INTERNAL_H
#define WEFT_LIB_CHAN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "waitq.h"
#include "weft/chan.h"

/* One attempt: 0 (done: sent, or received into elem), WEFT_ECLOSED, or
 * WEFT_EAGAIN (would block). Never parks. */
int weft__chan_try(weft_chan *channel, int dir, void *elem, const weft__parker *self);

/* Publish waiter on the channel's queue for dir, so that a partner, a
 * close, or (buffered) room or a value claims it. Returns whether the case
 * could proceed right now, ignoring self's own waiters (self is
 * waiter->parker): judged after the waiter became visible, this closes
 * the window in which the case became ready unseen. */
bool weft__chan_register(weft_chan *channel, int dir, weft__waiter *waiter);

/* weft__chan_register of waiters[i] for every case i on channel (a
 * select with several cases on it) under one hold of the lock: once one
 * of them is published, a partner may complete it and free the channel,
 * so the others cannot be published on a later visit. Returns whether
 * any could proceed. */
bool weft__chan_register_cases(weft_chan *channel, const weft_case *cases, weft__waiter *waiters,
                               size_t n);

/* A number that changes whenever a case on the channel may have become
 * ready: a value or room in the ring, a partner queued, a close. Two equal
 * readings around a failed attempt mean the case stayed not ready
 * throughout: non-blocking select uses this to report "nothing was ready"
 * only for a moment at which that was true. */
uint64_t weft__chan_version(const weft_chan *channel);

/* For spinning: whether an attempt might now succeed, judged without
 * touching the other side's cache lines or the lock (a ring's slot stamp;
 * an unbuffered channel's version against *seen, which it updates). May
 * say false for a close; the caller's registration catches that. */
bool weft__chan_may_be_ready(weft_chan *channel, int dir, uint64_t *seen);

/* Withdraw waiter if it is still queued. */
void weft__chan_unregister(weft_chan *channel, int dir, weft__waiter *waiter);

/* For contexts (ctx.c): make channel a done channel, before anyone else
 * sees it. weft_chan_close and every send on it then abort (a one-line
 * "weft: ..." message): only its context closes it, through
 * weft__chan_close_owned, which is weft_chan_close without that check. */
void weft__chan_set_receive_only(weft_chan *channel);
int weft__chan_close_owned(weft_chan *channel);

/* The channel as a source of the blocking engine (engine.h): a case's
 * attempt is weft__chan_try (a nil channel is never ready), its waiter
 * goes on the channel's queue for its direction, and its object is the
 * channel. weft__chan_kinds has it for WEFT_SEND and WEFT_RECV only. */
extern const weft__source weft__chan_source;
extern const weft__source_kinds weft__chan_kinds;

#endif
