/* A pipeline with fan-out, fan-in and early cancellation, after the Go
 * blog's "Pipelines and cancellation":
 *
 *     func generate(ctx context.Context, count int) <-chan int {
 *         out := make(chan int)
 *         go func() {
 *             defer close(out)
 *             for n := 1; n <= count; n++ {
 *                 select {
 *                 case out <- n:
 *                 case <-ctx.Done():
 *                     return
 *                 }
 *             }
 *         }()
 *         return out
 *     }
 *     // square(ctx, in): the same loop over in, sending n*n.
 *     // merge(ctx, ins...): one goroutine per input copies it to out; a
 *     // last one closes out after wg.Wait() for those copiers.
 *
 *     ctx, cancel := context.WithCancel(context.Background())
 *     numbers := generate(ctx, count)
 *     squares := merge(ctx, square(ctx, numbers), square(ctx, numbers), square(ctx, numbers))
 *     for n := range squares { ... }    // or stop early ...
 *     cancel()                          // ... and this stops every stage
 *
 * The three squarers share one input (fan-out) and merge joins their
 * outputs into one channel (fan-in). Go's select on a send and on
 * ctx.Done() is weft_chan_send_ctx: when the consumer stops early and
 * cancels, a stage blocked sending to nobody gives up instead of leaking.
 * The program checks that with weft_goroutines, as a Go test would with
 * runtime.NumGoroutine. It prints the squares of 1..10, sorted (the
 * squarers finish in any order) with their sum, then takes 3 squares of
 * 1..1000 and cancels; "goroutines running: 0" after each run. */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

enum { SQUARERS = 3, ROOM = 16 }; /* ROOM: more squares than the full run makes */

typedef struct {
    weft_ctx *ctx;       /* borrowed: the run's, canceled when the consumer stops */
    weft_chan *in, *out; /* borrowed: the run releases them after every stage ended */
    long count;          /* generate: sends 1..count */
    weft_wg *forwarders; /* close_when_merged: the goroutines sending on out */
} stage;

static void check(int err, const char *what) {
    if (err == WEFT_OK) return;
    fprintf(stderr, "%s: %s\n", what, weft_strerror(err));
    exit(1);
}

static void generate(void *arg) {
    stage *s = arg;
    for (long n = 1; n <= s->count; n++)
        if (weft_chan_send_ctx(s->out, &n, s->ctx) != WEFT_OK) break; /* canceled */
    check(weft_chan_close(s->out), "close");                          /* defer close(out) */
}

static void square(void *arg) {
    stage *s = arg;
    long n;
    while (weft_chan_recv_ctx(s->in, &n, s->ctx) == WEFT_OK) { /* until closed or canceled */
        long squared = n * n;
        if (weft_chan_send_ctx(s->out, &squared, s->ctx) != WEFT_OK) break;
    }
    check(weft_chan_close(s->out), "close");
}

/* merge's copier: one per input. */
static void forward(void *arg) {
    stage *s = arg;
    long n;
    while (weft_chan_recv_ctx(s->in, &n, s->ctx) == WEFT_OK)
        if (weft_chan_send_ctx(s->out, &n, s->ctx) != WEFT_OK) break;
}

/* The merged channel is closed once nobody can send on it any more. */
static void close_when_merged(void *arg) {
    stage *s = arg;
    weft_wg_wait(s->forwarders);
    check(weft_chan_close(s->out), "close");
}

static weft_chan *make_chan(void) {
    weft_chan *c = weft_chan_make(sizeof(long), 0); /* unbuffered, as in the Go */
    if (!c) {
        perror("weft_chan_make");
        exit(1);
    }
    return c;
}

/* Wait until every goroutine has returned: 0, or how many are left after
 * 10 seconds (a leak). A goroutine counts until just after its function
 * returns, so the count may lag the last close by a moment. */
static int goroutines_left(void) {
    weft_time give_up = weft_now() + WEFT_SEC(10);
    while (weft_goroutines() > 0 && weft_now() < give_up) weft_sleep(WEFT_MS(1));
    return weft_goroutines();
}

/* Run generate(1..count) -> SQUARERS x square -> merge, taking at most
 * `take` squares into taken[]; return how many it took. */
static int run(long count, int take, long *taken) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    if (!ctx) {
        perror("weft_ctx_with_cancel");
        exit(1);
    }
    weft_chan *numbers = make_chan(), *merged = make_chan(), *squared[SQUARERS];
    weft_wg forwarders = WEFT_WG_INIT;
    stage source = {ctx, NULL, numbers, count, NULL}, closer = {ctx, NULL, merged, 0, &forwarders};
    stage squarers[SQUARERS], copiers[SQUARERS];

    check(weft_go(generate, &source), "weft_go");
    for (int i = 0; i < SQUARERS; i++) {
        squared[i] = make_chan();
        squarers[i] = (stage){ctx, numbers, squared[i], 0, NULL}; /* fan-out: all read numbers */
        check(weft_go(square, &squarers[i]), "weft_go");
        copiers[i] = (stage){ctx, squared[i], merged, 0, NULL}; /* fan-in: all write merged */
        check(weft_wg_go(&forwarders, forward, &copiers[i]), "weft_wg_go");
    }
    check(weft_go(close_when_merged, &closer), "weft_go");

    int took = 0;
    while (took < take && weft_chan_recv(merged, &taken[took]) == WEFT_OK) took++;
    weft_ctx_cancel(ctx); /* defer cancel(): stages still running give up */

    int left = goroutines_left(); /* the stages use this frame: wait before returning */
    if (left != 0) {              /* a stage leaked: leave its channels and ctx alone */
        fprintf(stderr, "%d goroutines still running\n", left);
        exit(1);
    }
    for (int i = 0; i < SQUARERS; i++) weft_chan_release(squared[i]);
    weft_chan_release(numbers);
    weft_chan_release(merged);
    weft_ctx_release(ctx);
    return took;
}

static int compare_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

int main(void) {
    long squares[ROOM], sum = 0;
    int took = run(10, ROOM, squares); /* to the end: merged is closed after the 10th */
    qsort(squares, (size_t)took, sizeof squares[0], compare_long);
    printf("squares of 1..10:");
    for (int i = 0; i < took; i++) {
        printf(" %ld", squares[i]);
        sum += squares[i];
    }
    printf(" (sum %ld)\n", sum);
    printf("goroutines running: %d\n", weft_goroutines());
    if (took != 10 || sum != 385) return 1;

    took = run(1000, 3, squares); /* stop after 3 of 1000 */
    printf("took %d squares of 1..1000, then canceled the rest\n", took);
    printf("goroutines running: %d\n", weft_goroutines());
    return took == 3 ? 0 : 1;
}
