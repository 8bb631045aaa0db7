/* The seed program: a worker goroutine prints "working..." on every tick
 * of a ticker until a context with a timeout tells it to stop; main waits
 * for it with a WaitGroup and says why it stopped. It is Go's
 *
 *     for {
 *         select {
 *         case <-ctx.Done():
 *             return
 *         case <-ticker.C:
 *             fmt.Println("working...")
 *         }
 *     }
 *
 * loop, with ctx from context.WithTimeout and the worker started by wg.Go.
 * Prints "working..." three times (at 200, 400 and 600 ms), then
 * "worker stopped: deadline passed". Two optional arguments, the period
 * and the timeout in milliseconds, let the tests run it faster. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

typedef struct {
    weft_ctx *ctx; /* borrowed: main releases it only after the worker has returned */
    weft_time period;
} worker_args;

static void worker(void *arg) {
    worker_args *args = arg;
    weft_ticker *ticker = weft_ticker_new(args->period);
    if (!ticker) {
        perror("weft_ticker_new");
        exit(1);
    }
    weft_case tick = WEFT_RECV_CASE(weft_ticker_chan(ticker), NULL); /* NULL: drop the time */
    /* Wait for the next tick or for the context to end, whichever comes
     * first: then weft_select_ctx returns the context's error instead of
     * the index of the tick's case. */
    while (weft_select_ctx(&tick, 1, args->ctx) == 0) puts("working...");
    weft_ticker_stop(ticker); /* Go's defer ticker.Stop(): frees its timer */
}

/* A positive number of milliseconds, or -1. */
static long parse_ms(const char *text) {
    char *end;
    long ms = strtol(text, &end, 10);
    return end != text && *end == '\0' && ms > 0 && ms <= INT_MAX ? ms : -1;
}

int main(int argc, char **argv) {
    long period_ms = 200, timeout_ms = 700;
    if (argc == 3) {
        period_ms = parse_ms(argv[1]);
        timeout_ms = parse_ms(argv[2]);
    }
    if ((argc != 1 && argc != 3) || period_ms < 0 || timeout_ms < 0) {
        fprintf(stderr, "usage: %s [period_ms timeout_ms]\n", argv[0]);
        return 2;
    }

    /* The timeout starts now, before the worker: it bounds the whole run. */
    weft_ctx *ctx = weft_ctx_with_timeout(NULL, WEFT_MS(timeout_ms));
    if (!ctx) {
        perror("weft_ctx_with_timeout");
        return 1;
    }
    worker_args args = {ctx, WEFT_MS(period_ms)};
    weft_wg workers = WEFT_WG_INIT;
    if (weft_wg_go(&workers, worker, &args) != WEFT_OK) return 1; /* add(1), go, done */
    weft_wg_wait(&workers); /* the worker has printed its last line */

    printf("worker stopped: %s\n", weft_strerror(weft_ctx_err(ctx)));
    weft_ctx_cancel(ctx); /* Go's defer cancel(): a no-op once the deadline has passed */
    weft_ctx_release(ctx);
    return 0;
}
