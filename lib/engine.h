/* The blocking engine: wait until one of a set of sources is ready.
 *
 * A source is one case of a wait: a channel send or receive (chan.c), an
 * fd's readiness (fd_source.c). A context is its done channel, a deadline
 * the engine's own argument. The engine knows a source only through the
 * operations below, given per case direction in a table the caller passes
 * (kinds[case.dir]); it calls nothing above the parker by name, and the
 * layers above call it: chan.c for a channel operation that must wait,
 * select.c for a select.
 *
 * A wait, after the caller's own attempts found nothing ready:
 *   1. arm the thread's parker (claim word := WEFT__UNCLAIMED);
 *   2. enlist one waiter per case with its source (a channel queues it; an
 *      fd's table lists it for weft_fd_close), and learn whether the case
 *      could proceed now: one that became ready before its waiter was
 *      visible would otherwise never wake us. Sources that the kernel
 *      reports on also give a pollfd;
 *   3. if a case could proceed, claim ourselves (WEFT__CLAIM_SELF),
 *      withdraw, attempt again;
 *   4. park: on the condition variable, or, with pollfds, in poll(2) over
 *      them and the parker's eventfd. Whoever claims the parker first (a
 *      partner, a close, a wake-up for room or a value, or we ourselves
 *      when poll reports an fd) wins; every other source that looks at one
 *      of our waiters sees the claim taken and drops it;
 *   5. withdraw every other waiter, except those on the winning case's
 *      object (source.object): its claimer unlinked them, and once that
 *      case has completed the object may already be freed. Then act on
 *      the winning waiter's result: 0 or WEFT_ECLOSED means the claimer
 *      completed the case; WEFT__RETRY means attempt that case first,
 *      then all of them again.
 * On a deadline the thread claims itself; if that fails a claimer is
 * completing a case right now, so it waits for the unpark and reports
 * that case: the operation happened, and must not be reported as timed
 * out. */
#ifndef WEFT_LIB_ENGINE_H
#define WEFT_LIB_ENGINE_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#include "parker.h"
#include "waiter.h"
#include "weft/select.h"

typedef struct weft__source {
    /* One attempt at the case, never blocking: 0 or WEFT_ECLOSED when it
     * proceeded (the engine stores that in the case's err), WEFT_EAGAIN
     * when it would block. self: the caller's parker (NULL if it has none),
     * whose own waiters are never partners. */
    int (*attempt)(weft_case *c, const weft__parker *self);
    /* Publish waiters[i] for cases[i], and return whether the case could
     * proceed now. Given every case, so that a source may publish all the
     * cases on one object at once (see object); it is then called for
     * each of them and publishes them on the first call. */
    bool (*enlist)(const weft_case *cases, size_t n, size_t i, weft__waiter *waiters);
    /* Take waiter back if it is still published. */
    void (*withdraw)(const weft_case *c, weft__waiter *waiter);
    /* The object that a claimer of the case may free once it has
     * completed it (a channel); NULL for none. A claimer unlinks the
     * wait's other waiters on that object (weft__waiter.shares_channel). */
    const void *(*object)(const weft_case *c);
    /* Sources that the kernel reports on (NULL for others): fill *slot for
     * poll(2) and return true, or return false to sit this wait out. */
    bool (*pollfd)(const weft_case *c, struct pollfd *slot);
    /* After poll: whether revents (the case's slot) makes the case ready;
     * if so, record it in the case. */
    bool (*polled)(weft_case *c, short revents);
} weft__source;

/* The sources of a wait by case direction: kinds[c.dir] (WEFT_SEND,
 * WEFT_RECV, WEFT_FD); a NULL entry is a kind the caller never passes. */
typedef const weft__source *const weft__source_kinds[WEFT_FD + 1];

/* One attempt at every case, in order (NULL: array order): the index of
 * the first that proceeds (its err set), or WEFT_EAGAIN. */
int weft__engine_attempt_all(weft_case *cases, size_t n, const unsigned *order,
                             const weft__parker *self, const weft__source_kinds kinds);

/* Block until one of cases[0..n) proceeds, after the caller's own
 * attempts found none ready. order lists the case indices in the order to
 * enlist and retry them (NULL: array order). what and object describe the
 * wait, with n as its count, for the dump and the deadlock report
 * (parker.h, weft__wait_begin), unless the caller described it. Returns the
 * case index (its err set), WEFT_ETIMEDOUT, WEFT_ENOMEM (more than
 * WEFT_SELECT_STACK_CASES cases and no memory for their waiters), or
 * WEFT_ESYS (errno set: the parker's eventfd could not be made, or poll
 * failed). Without a parker for this thread it polls, yielding. */
int weft__engine_wait(weft_case *cases, size_t n, const unsigned *order, weft_time deadline,
                      const weft__source_kinds kinds, const char *what, const void *object);

#endif
