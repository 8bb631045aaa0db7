/* Waiting for one fd's readiness (weft/io.h): a select of one fd case,
 * with the context's done channel as a second, lower-priority case. */
#include <unistd.h>

#include "fd_source.h"
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
    int chosen = weft_select(&only, 1, deadline);
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
    int chosen = weft_select_biased(cases, cases[1].ch ? 2 : 1, WEFT_FOREVER);
    if (chosen == 0) return outcome(&cases[0], &wait);
    if (chosen == 1) return weft_ctx_err(ctx);
    return chosen;
}

int weft_fd_close(int fd) {
    if (fd >= 0) weft__fd_wake_closed(fd);
    return close(fd) == 0 ? 0 : WEFT_ESYS;
}
