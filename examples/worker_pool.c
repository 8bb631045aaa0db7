/* A bounded worker pool: three workers take ten jobs from one unbuffered
 * channel and send what they make of them on a results channel. It is Go's
 *
 *     func worker(jobs <-chan int, results chan<- result) {
 *         for job := range jobs { // ends when jobs is closed and drained
 *             results <- result{job, job * job}
 *         }
 *     }
 *
 *     jobs := make(chan int)               // unbuffered: a send waits for a worker
 *     results := make(chan result, 10)     // room for every result: workers never wait
 *     var wg sync.WaitGroup
 *     for range 3 {
 *         wg.Go(func() { worker(jobs, results) })
 *     }
 *     for job := 1; job <= 10; job++ {
 *         jobs <- job
 *     }
 *     close(jobs)
 *     wg.Wait()
 *     close(results)
 *     for r := range results { ... }
 *
 * Closing jobs is how the producer says "no more work": each worker's
 * receive then returns WEFT_ECLOSED and the worker returns. Only three
 * jobs are ever in progress, however many are queued up behind them.
 * Results arrive in any order; main files each under its job number and
 * prints them in job order, then why each worker stopped, then the sum. */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

enum { WORKERS = 3, JOBS = 10 };

typedef struct {
    int job;
    long square;
} result;

typedef struct {
    weft_chan *jobs, *results; /* borrowed: main releases them after the workers end */
    int stopped_by;            /* out: the error that ended the worker's loop */
} worker_args;

static void worker(void *arg) {
    worker_args *args = arg;
    int job, err;
    while ((err = weft_chan_recv(args->jobs, &job)) == WEFT_OK) {
        result done = {job, (long)job * job};
        if ((err = weft_chan_send(args->results, &done)) != WEFT_OK) break;
    }
    args->stopped_by = err; /* WEFT_ECLOSED once jobs is closed and drained */
}

static void check(int err, const char *what) {
    if (err == WEFT_OK) return;
    fprintf(stderr, "%s: %s\n", what, weft_strerror(err));
    exit(1);
}

int main(void) {
    weft_chan *jobs = weft_chan_make(sizeof(int), 0);
    weft_chan *results = weft_chan_make(sizeof(result), JOBS);
    if (!jobs || !results) {
        perror("weft_chan_make");
        return 1;
    }
    weft_wg workers = WEFT_WG_INIT;
    worker_args args[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        args[w] = (worker_args){jobs, results, WEFT_OK};
        check(weft_wg_go(&workers, worker, &args[w]), "weft_wg_go");
    }

    for (int job = 1; job <= JOBS; job++) check(weft_chan_send(jobs, &job), "send job");
    check(weft_chan_close(jobs), "close jobs"); /* no more jobs: the workers' loops end */
    weft_wg_wait(&workers);
    check(weft_chan_close(results), "close results"); /* nobody sends any more */

    long squares[JOBS + 1] = {0};
    int times_done[JOBS + 1] = {0};
    result done;
    while (weft_chan_recv(results, &done) == WEFT_OK) { /* the buffered results, then closed */
        squares[done.job] = done.square;
        times_done[done.job]++;
    }

    int failed = 0;
    long sum = 0;
    for (int job = 1; job <= JOBS; job++) {
        printf("job %d -> %ld\n", job, squares[job]);
        if (times_done[job] != 1) failed = 1; /* each job is taken by exactly one worker */
        sum += squares[job];
    }
    for (int w = 0; w < WORKERS; w++) {
        printf("worker %d stopped: %s\n", w + 1, weft_strerror(args[w].stopped_by));
        if (args[w].stopped_by != WEFT_ECLOSED) failed = 1;
    }
    printf("sum: %ld\n", sum);

    weft_chan_release(jobs);
    weft_chan_release(results);
    return failed;
}
