/* Ticker-driven metrics: workers count requests and errors under a mutex
 * while a flusher, on every tick, takes the counts and resets them to
 * zero, until a context tells it to stop. It is Go's
 *
 *     func (m *metrics) take() (requests, errors int) { // snapshot and reset
 *         m.mu.Lock()
 *         defer m.mu.Unlock()
 *         requests, errors = m.requests, m.errors
 *         m.requests, m.errors = 0, 0
 *         return
 *     }
 *
 *     func flusher(ctx context.Context, m *metrics, period time.Duration) {
 *         ticker := time.NewTicker(period)
 *         defer ticker.Stop()
 *         for {
 *             select {
 *             case <-ticker.C:
 *                 flush(m.take())
 *             case <-ctx.Done():
 *                 flush(m.take()) // what came in since the last tick
 *                 return
 *             }
 *         }
 *     }
 *
 * Four workers record 200 requests each, a millisecond apart, one in ten
 * of them failed; when they are done main cancels the context and waits
 * for the flusher's last flush. Taking and resetting under one lock means
 * no request is lost or flushed twice: the flushes add up to exactly what
 * the workers counted, 800 requests and 80 errors. How many flushes that
 * takes, and how big each is, depends on timing. The optional argument is
 * the ticker's period in milliseconds (default 100). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

enum { WORKERS = 4, REQUESTS = 200 };

typedef struct {
    weft_mutex lock;
    long requests, errors; /* since the last flush; under lock */
} metrics;

typedef struct {
    metrics *counts;       /* borrowed, as every pointer here: main's, which outlives us */
    long requests, errors; /* out: what this worker recorded */
} worker_args;

typedef struct {
    metrics *counts;
    weft_ctx *ctx; /* borrowed: main releases it after the flusher has returned */
    weft_time period;
    long flushes, requests, errors; /* out: the totals of every flush */
} flusher_args;

static void worker(void *arg) {
    worker_args *args = arg;
    for (int i = 0; i < REQUESTS; i++) {
        int failed = i % 10 == 9; /* one in ten */
        weft_mutex_lock(&args->counts->lock);
        args->counts->requests++;
        args->counts->errors += failed;
        weft_mutex_unlock(&args->counts->lock);
        args->requests++;
        args->errors += failed;
        weft_sleep(WEFT_MS(1)); /* the next request comes a little later */
    }
}

static void flush(flusher_args *args) {
    weft_mutex_lock(&args->counts->lock); /* take and reset as one step */
    long requests = args->counts->requests, errors = args->counts->errors;
    args->counts->requests = args->counts->errors = 0;
    weft_mutex_unlock(&args->counts->lock);
    printf("flush %ld: %ld requests, %ld errors\n", ++args->flushes, requests, errors);
    args->requests += requests;
    args->errors += errors;
}

static void flusher(void *arg) {
    flusher_args *args = arg;
    weft_ticker *ticker = weft_ticker_new(args->period);
    if (!ticker) {
        perror("weft_ticker_new");
        exit(1);
    }
    weft_case tick = WEFT_RECV_CASE(weft_ticker_chan(ticker), NULL);
    while (weft_select_ctx(&tick, 1, args->ctx) == 0) flush(args); /* until ctx ends */
    flush(args); /* what came in since the last tick */
    weft_ticker_stop(ticker);
}

static void check(int err, const char *what) {
    if (err == WEFT_OK) return;
    fprintf(stderr, "%s: %s\n", what, weft_strerror(err));
    exit(1);
}

/* A positive number of milliseconds, or -1. */
static long parse_ms(const char *text) {
    char *end;
    long ms = strtol(text, &end, 10);
    return end != text && *end == '\0' && ms > 0 && ms <= INT_MAX ? ms : -1;
}

int main(int argc, char **argv) {
    long period_ms = argc == 2 ? parse_ms(argv[1]) : 100;
    if (argc > 2 || period_ms < 0) {
        fprintf(stderr, "usage: %s [period_ms]\n", argv[0]);
        return 2;
    }

    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    if (!ctx) {
        perror("weft_ctx_with_cancel");
        return 1;
    }
    metrics counts = {WEFT_MUTEX_INIT, 0, 0};
    flusher_args flushing = {&counts, ctx, WEFT_MS(period_ms), 0, 0, 0};
    worker_args workers[WORKERS];
    weft_wg flusher_done = WEFT_WG_INIT, workers_done = WEFT_WG_INIT;
    check(weft_wg_go(&flusher_done, flusher, &flushing), "weft_wg_go");
    for (int w = 0; w < WORKERS; w++) {
        workers[w] = (worker_args){&counts, 0, 0};
        check(weft_wg_go(&workers_done, worker, &workers[w]), "weft_wg_go");
    }

    weft_wg_wait(&workers_done);
    weft_ctx_cancel(ctx);        /* stop the flusher ... */
    weft_wg_wait(&flusher_done); /* ... and wait for its last flush */

    long requests = 0, errors = 0;
    for (int w = 0; w < WORKERS; w++) {
        requests += workers[w].requests;
        errors += workers[w].errors;
    }
    printf("counted %ld requests, %ld errors\n", requests, errors);
    printf("flushed %ld requests, %ld errors in %ld flushes\n", flushing.requests, flushing.errors,
           flushing.flushes);

    weft_mutex_destroy(&counts.lock);
    weft_ctx_release(ctx);
    return flushing.requests == requests && flushing.errors == errors ? 0 : 1;
}
