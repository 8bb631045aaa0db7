/* Waits for an fd that a system call has just found not ready, for the
 * byte calls of io.c.
 *
 * weft_fd_wait_until and weft_fd_wait_ctx begin as every select does,
 * with an attempt at each case, and an fd case's attempt is a poll(2) of
 * its own. After recv or accept has said EAGAIN that poll only repeats
 * what the caller just learnt, at the price of a system call on every
 * wait. These forms go straight to the engine: it enlists the cases and
 * sleeps in poll, which is level-triggered, so readiness that came after
 * the caller's EAGAIN is seen there at once. The results are those of the
 * public forms. */
#ifndef WEFT_LIB_FDWAIT_H
#define WEFT_LIB_FDWAIT_H

#include "weft/io.h"

/* As weft_fd_wait_until, for an fd just found not ready. */
int weft__fd_wait_unready_until(int fd, int events, weft_time deadline);

/* As weft_fd_wait_ctx, for an fd just found not ready. */
int weft__fd_wait_unready_ctx(int fd, int events, weft_ctx *ctx);

#endif
