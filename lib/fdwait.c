/* Waiting for one fd's readiness (weft/io.h): a select of one fd case,
 * with the context's done channel as a second, lower-priority case. */
#include <unistd.h>

#include "chan_internal.h"
#include "engine.h"
#include "fd_source.h"
#include "fdwait.h"
#include "parker.h"
#include "weft/ctx.h"
#include "weft/io.h"
#include "weft/select.h"

/* The outcome of a chosen fd case: what is ready, or WEFT_ECLOSED. */
static int outcome(const weft_case *c, const weft_fdwait *wait) {
    return c->err ? c->err : wait->revents;
}

int weft_fd_wait_until(int fd, int events, weft_time deadline) {
    if (fd < 0 || !weft__fd_events_valid(events)) return WEFT_EINVAL;
    weft_fdwait wait = {fd, events, 0};
    weft_case only = WEFT_FD_CASE(&wait);
    /* Described before select's first poll: a system call either way. */
    weft__parker *self =
        weft__wait_begin_self("weft_fd_wait_until", NULL, (size_t)fd, (size_t)events);
    int chosen = weft_select(&only, 1, deadline);
    weft__wait_end(self);
    return chosen == 0 ? outcome(&only, &wait) : chosen;
}

int weft_fd_wait_ctx(int fd, int events, weft_ctx *ctx) {
    if (fd < 0 || !weft__fd_events_valid(events)) return WEFT_EINVAL;
    weft_fdwait wait = {fd, events, 0};
    weft_case cases[2] = {WEFT_FD_CASE(&wait), {NULL, WEFT_RECV, NULL, 0}};
    /* Ready beats ended: an fd that is ready is served after a cancel.
     * Biased, the select below tries the fd before the done channel, so
     * only an ended context needs a look at the fd of its own. */
    int error = weft_ctx_err(ctx);
    if (error) {
        int chosen = weft_select(cases, 1, WEFT_NOWAIT);
        if (chosen == 0) return outcome(&cases[0], &wait);
        return chosen == WEFT_EAGAIN ? error : chosen;
    }
    cases[1].ch = weft_ctx_done(ctx);
    weft__parker *self =
        weft__wait_begin_self("weft_fd_wait_ctx", NULL, (size_t)fd, (size_t)events);
    int chosen = weft_select_biased(cases, cases[1].ch ? 2 : 1, WEFT_FOREVER);
    weft__wait_end(self);
    if (chosen == 0) return outcome(&cases[0], &wait);
    if (chosen == 1) return weft_ctx_err(ctx);
    return chosen;
}

/* The sources of an fd wait: the fd, and a context's done channel. */
static const weft__source_kinds kinds = {NULL, &weft__chan_source, &weft__chan_source,
                                         &weft__fd_source};

/* The engine's wait over cases (the fd first, the done channel second),
 * without select's first attempt: the caller has just found the fd not
 * ready, and the engine's enlist sees a done channel closed since. */
static int wait_unready(weft_case *cases, size_t n, const weft_fdwait *wait, weft_time deadline) {
    int chosen = weft__engine_wait(cases, n, NULL, deadline, kinds, "weft_fd_wait", wait);
    return chosen == 0 ? outcome(&cases[0], wait) : chosen;
}

int weft__fd_wait_unready_until(int fd, int events, weft_time deadline) {
    /* A deadline passed is "try once": the public form's one poll. */
    if (deadline != WEFT_FOREVER && weft_now() >= deadline)
        return weft_fd_wait_until(fd, events, deadline);
    weft_fdwait wait = {fd, events, 0};
    weft_case only = WEFT_FD_CASE(&wait);
    return wait_unready(&only, 1, &wait, deadline);
}

int weft__fd_wait_unready_ctx(int fd, int events, weft_ctx *ctx) {
    if (weft_ctx_err(ctx)) return weft_fd_wait_ctx(fd, events, ctx); /* ready beats ended */
    weft_chan *done = weft_ctx_done(ctx);
    weft_fdwait wait = {fd, events, 0};
    weft_case cases[2] = {WEFT_FD_CASE(&wait), {done, WEFT_RECV, NULL, 0}};
    int chosen = wait_unready(cases, done ? 2 : 1, &wait, WEFT_FOREVER);
    return chosen == 1 ? weft_ctx_err(ctx) : chosen;
}

int weft_fd_close(int fd) {
    if (fd >= 0) weft__fd_wake_closed(fd);
    return close(fd) == 0 ? 0 : WEFT_ESYS;
}
