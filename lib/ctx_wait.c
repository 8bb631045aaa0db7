/* The channel waits that a context may end (weft/chan.h, weft/select.h):
 * the wait with the context's done channel as one more receive case.
 * Above select in the layering (docs/architecture.md), so that chan.c
 * and select.c know nothing of contexts. */
#include <string.h>

#include "alloc.h"
#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/select.h"

/* A channel operation: the operation and the done channel as a two-case
 * priority select, so that a value or a partner that is there wins over a
 * cancel that comes at the same moment. */
static int attempt(weft_chan *channel, int dir, void *elem) {
    return dir == WEFT_SEND ? weft_chan_try_send(channel, elem) : weft_chan_try_recv(channel, elem);
}

static int operate_ctx(weft_chan *channel, int dir, void *elem, weft_ctx *ctx) {
    int error = weft_ctx_err(ctx);
    if (error) return error;
    weft_chan *done = weft_ctx_done(ctx);
    if (!done || !channel)
        return dir == WEFT_SEND ? weft_chan_send(channel, elem) : weft_chan_recv(channel, elem);
    int result = attempt(channel, dir, elem);
    if (result != WEFT_EAGAIN) return result;
    weft_case cases[2] = {{channel, dir, elem, 0}, {done, WEFT_RECV, NULL, 0}};
    int chosen = weft_select_biased(cases, 2, WEFT_FOREVER);
    if (chosen == 0) return cases[0].err;
    if (chosen == 1) return weft_ctx_err(ctx);
    return chosen;
}

int weft_chan_send_ctx(weft_chan *channel, const void *elem, weft_ctx *ctx) {
    return operate_ctx(channel, WEFT_SEND, (void *)elem, ctx);
}

int weft_chan_recv_ctx(weft_chan *channel, void *elem, weft_ctx *ctx) {
    return operate_ctx(channel, WEFT_RECV, elem, ctx);
}

/* The context's done channel joins the select as one more receive case,
 * so a cancel wakes it like any channel would. */
int weft_select_ctx(weft_case *cases, size_t n, weft_ctx *ctx) {
    int error = weft_ctx_err(ctx);
    if (error) return error;
    weft_chan *done = weft_ctx_done(ctx);
    if (!done) return weft_select(cases, n, WEFT_FOREVER);
    if (n > 0 && !cases) return WEFT_EINVAL;
    if (n >= (size_t)INT32_MAX) return WEFT_EINVAL;

    weft_case stack_cases[WEFT_SELECT_STACK_CASES];
    weft_case *all = stack_cases;
    if (n + 1 > WEFT_SELECT_STACK_CASES) {
        all = weft__malloc((n + 1) * sizeof *all);
        if (!all) return WEFT_ENOMEM;
    }
    if (n > 0) memcpy(all, cases, n * sizeof *all);
    all[n] = (weft_case)WEFT_RECV_CASE(done, NULL);
    int chosen = weft_select(all, n + 1, WEFT_FOREVER);
    if (chosen >= 0 && (size_t)chosen < n)
        cases[chosen].err = all[chosen].err;
    else if ((size_t)chosen == n)
        chosen = weft_ctx_err(ctx);
    if (all != stack_cases) weft__free(all);
    return chosen;
}
