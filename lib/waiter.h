/* A waiter: what a blocked operation leaves on each object it waits for
 * (see waitq.h for the queues that hold them, parker.h for how its thread
 * sleeps). Waiters of a select, or of a blocked ring operation, live on
 * the blocked thread's stack; a single unbuffered operation uses the one
 * embedded in the thread's parker, on the same cache line as the claim
 * word, so that a partner completing it touches one line. */
#ifndef WEFT_LIB_WAITER_H
#define WEFT_LIB_WAITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct weft__parker;

enum {
    /* waiter.result: the claimer did not complete the operation but says it
     * may now succeed (buffer space, a value, a close): try the case again. */
    WEFT__RETRY = 1,
};

typedef struct weft__waiter {
    struct weft__waiter *next, *prev; /* queue links, under the queue's lock */
    struct weft__parker *parker;      /* the blocked thread */
    void *elem;                       /* send: the value; recv: where to put it (may be NULL) */
    int token;                        /* what a claimer writes into parker->claim: the case index */
    int result;  /* written by the claimer before unpark: 0, WEFT_ECLOSED, WEFT__RETRY */
    bool queued; /* linked into a queue; under the queue's lock */
    /* Set by a select with more than one case on this waiter's channel,
     * before publishing it: whoever claims it also unlinks the parker's
     * other waiters there (chan.c), since the select may not touch that
     * channel again once a case on it has completed. */
    bool shares_channel;
} weft__waiter;

#endif
