/* An fd's readiness as a source of the blocking engine (engine.h): the
 * WEFT_FD cases of a select, and the waits of weft/io.h.
 *
 * The kernel tells readiness: a case's attempt is poll(2) with a zero
 * timeout, and a wait hands the engine a pollfd, so the thread sleeps in
 * poll over its fds. Only weft_fd_close needs to find the waiters of an
 * fd, so each waiter is also listed in a table hashed by fd, under a lock
 * per bucket that no channel operation ever takes. */
#ifndef WEFT_LIB_FD_SOURCE_H
#define WEFT_LIB_FD_SOURCE_H

#include "engine.h"
#include "weft/io.h"

/* The case's elem is its weft_fdwait; revents is written when the case
 * proceeds. Its object is NULL: an fd is not freed by a claimer. */
extern const weft__source weft__fd_source;

/* Whether events asks for something an fd can be waited for
 * (WEFT_FD_IN, WEFT_FD_OUT, and no other bit but WEFT_FD_ERR, which is
 * always reported anyway). */
static inline bool weft__fd_events_valid(int events) {
    return (events & (WEFT_FD_IN | WEFT_FD_OUT)) != 0 &&
           (events & ~(WEFT_FD_IN | WEFT_FD_OUT | WEFT_FD_ERR)) == 0;
}

/* Complete every weft wait now listed on fd with WEFT_ECLOSED and wake
 * it; weft_fd_close's first half. Never blocks but on the bucket lock. */
void weft__fd_wake_closed(int fd);

#endif
