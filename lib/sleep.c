/* weft_sleep and weft_sleep_ctx (weft/time.h): the thread's own sleep,
 * and a receive on the context's done channel with the end of the sleep
 * as its deadline. Beside ctx_wait.c in the layering (docs/architecture.md). */
#include <errno.h>
#include <time.h>

#include "parker.h"
#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/time.h"

void weft_sleep(weft_time d) {
    if (d <= 0) return;
    weft_time deadline = weft_deadline(d);
    struct timespec until = {(time_t)(deadline / WEFT_SEC(1)), (long)(deadline % WEFT_SEC(1))};
    weft__parker *self = weft__wait_begin_self("weft_sleep", NULL, (size_t)(d / WEFT_MS(1)), 0);
    /* TIMER_ABSTIME: a signal's EINTR resumes to the same end, so a sleep
     * interrupted any number of times still ends no sooner than d. */
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) continue;
    weft__wait_end(self);
}

int weft_sleep_ctx(weft_time d, weft_ctx *ctx) {
    int error = weft_ctx_err(ctx);
    if (error) return error;
    weft_chan *done = weft_ctx_done(ctx);
    if (!done) {
        weft_sleep(d);
        return 0;
    }
    if (d <= 0) return 0;
    weft_time deadline = weft_deadline(d);
    weft__parker *self = weft__wait_begin_self("weft_sleep_ctx", ctx, (size_t)(d / WEFT_MS(1)), 0);
    /* The done channel carries nothing and is only ever closed: a receive
     * that does not time out means ctx ended; one that times out means the
     * sleep is over, never early. */
    for (;;) {
        int result = weft_chan_recv_until(done, NULL, deadline);
        if (result != WEFT_ETIMEDOUT && result != WEFT_EAGAIN) {
            error = weft_ctx_err(ctx);
            if (error) break;
        }
        if (weft_now() >= deadline) break;
    }
    weft__wait_end(self);
    return error;
}
