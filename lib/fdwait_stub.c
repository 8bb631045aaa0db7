/* TEMPORARY: the readiness waits of weft/io.h, for testing lib/io.c
 * before lib/fdwait.c lands on main. Drop this file at merge.
 *
 * poll(2) in 5 ms slices, checking the deadline and the context between
 * slices; ready beats ended (each round polls before it looks at either).
 * No weft_fd_close, no select fd cases. */
#include <errno.h>
#include <poll.h>

#include "weft/ctx.h"
#include "weft/io.h"

enum { SLICE_MS = 5 };

/* One poll of fd for at most timeout_ms: the weft events found, 0 when
 * none, WEFT_ESYS when poll failed. */
static int poll_slice(int fd, int events, int timeout_ms) {
    struct pollfd entry = {.fd = fd};
    if (events & WEFT_FD_IN) entry.events |= POLLIN;
    if (events & WEFT_FD_OUT) entry.events |= POLLOUT;
    int found = poll(&entry, 1, timeout_ms);
    if (found < 0) return errno == EINTR ? 0 : WEFT_ESYS;
    if (found == 0) return 0;
    int revents = 0;
    if (entry.revents & POLLIN) revents |= WEFT_FD_IN;
    if (entry.revents & POLLOUT) revents |= WEFT_FD_OUT;
    if (entry.revents & (POLLERR | POLLHUP | POLLNVAL)) revents |= WEFT_FD_ERR;
    return revents;
}

int weft_fd_wait_until(int fd, int events, weft_time deadline) {
    if (fd < 0 || !(events & (WEFT_FD_IN | WEFT_FD_OUT))) return WEFT_EINVAL;
    for (bool first = true;; first = false) {
        int ready = poll_slice(fd, events, 0);
        if (ready) return ready;
        weft_time now = weft_now();
        if (now >= deadline) return first ? WEFT_EAGAIN : WEFT_ETIMEDOUT;
        weft_time left_ms = (deadline - now + WEFT_MS(1) - 1) / WEFT_MS(1);
        ready = poll_slice(fd, events, left_ms < SLICE_MS ? (int)left_ms : SLICE_MS);
        if (ready) return ready;
    }
}

int weft_fd_wait_ctx(int fd, int events, weft_ctx *ctx) {
    if (fd < 0 || !(events & (WEFT_FD_IN | WEFT_FD_OUT))) return WEFT_EINVAL;
    for (;;) {
        int ready = poll_slice(fd, events, 0);
        if (ready) return ready;
        int err = weft_ctx_err(ctx);
        if (err) return err;
        ready = poll_slice(fd, events, SLICE_MS);
        if (ready) return ready;
    }
}
