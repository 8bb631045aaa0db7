/* A worker pool that spans processes (and hosts): examples/worker_pool's
 * shape, jobs out on one channel and results back on another, with the
 * workers in other processes, through weft/nng.h's job bridge (REQ/REP).
 *
 *   distributed_pool [WORKERS [JOBS]]     start WORKERS worker processes
 *                                         (default 3) on ipc:// and send JOBS
 *                                         jobs (default 1000)
 *   distributed_pool --listen URL [JOBS]  the producer alone, listening on URL
 *                                         (tcp://0.0.0.0:5555): start workers by hand
 *   distributed_pool --worker URL         a worker serving the producer at URL
 *                                         until SIGINT or SIGTERM
 *
 * A job is a number; its result is the number of steps the Collatz
 * sequence takes from it to 1, and the worker's pid. The producer prints
 * how many results each worker sent and checks that every job has exactly
 * one. Delivery is at least once: a job whose worker dies is sent again to
 * another (after NNG's resend time, 1 s here), so a handler may run twice
 * for one job; this one is idempotent (docs/distributed.md). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>
#include <weft/nng.h>

enum { MAX_WORKERS = 64 };

typedef struct {
    uint32_t id;
    uint32_t pad;
    uint64_t n;
} job;

typedef struct {
    uint32_t id;
    int32_t worker;
    uint64_t steps;
} result;

static void collatz(const void *in, void *out, void *arg) {
    (void)arg;
    const job *j = in;
    result *r = out;
    uint64_t n = j->n, steps = 0;
    while (n > 1 && steps < 100000) {
        n = n % 2 ? 3 * n + 1 : n / 2;
        steps++;
    }
    r->id = j->id;
    r->worker = (int32_t)getpid();
    r->steps = steps;
}

static int usage(void) {
    fprintf(stderr, "usage: distributed_pool [WORKERS [JOBS]] | --listen URL [JOBS] | "
                    "--worker URL\n");
    return 2;
}

static long number(const char *text, long low, long high) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < low || value > high) return -1;
    return value;
}

/* A worker: serve until SIGINT or SIGTERM. */
static int worker(const char *url) {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* before any thread starts */
    weft_nng_opts opts = {.url = url, .workers = 4};
    weft_nng_bridge *b = weft_nng_serve(sizeof(job), sizeof(result), collatz, NULL, &opts, NULL);
    if (!b) {
        fprintf(stderr, "distributed_pool: %s\n", weft_nng_last_error());
        return 1;
    }
    int signal_number;
    sigwait(&stop, &signal_number);
    weft_nng_stats stats;
    weft_nng_get_stats(b, &stats);
    weft_nng_release(b);
    fprintf(stderr, "worker %d: %llu jobs done\n", (int)getpid(), (unsigned long long)stats.values);
    return 0;
}

typedef struct {
    weft_chan *jobs;
    long count;
} feeder;

static void feed(void *arg) {
    feeder *f = arg;
    for (long i = 0; i < f->count; i++) {
        job j = {(uint32_t)i, 0, (uint64_t)i + 1};
        if (weft_chan_send(f->jobs, &j) != 0) break;
    }
    weft_chan_close(f->jobs);
}

/* The producer: send count jobs through the bridge at url, print a summary. */
static int produce(const char *url, long count, const pid_t *pids, int npids) {
    weft_chan *jobs = weft_chan_make(sizeof(job), 64);
    weft_chan *results = weft_chan_make(sizeof(result), 64);
    weft_nng_opts opts = {.url = url, .listen = true, .workers = 32, .resend = WEFT_SEC(1)};
    weft_nng_bridge *b = weft_nng_jobs(jobs, results, &opts, NULL);
    if (!b) {
        fprintf(stderr, "distributed_pool: %s\n", weft_nng_last_error());
        return 1;
    }
    char bound[160];
    weft_nng_url(b, bound, sizeof bound);
    printf("producer: %ld jobs on %s\n", count, bound);
    fflush(stdout);
    feeder f = {jobs, count};
    weft_go(feed, &f);
    unsigned char *seen = calloc((size_t)count, 1);
    struct {
        int32_t pid;
        long results;
    } by[MAX_WORKERS + 16] = {{0, 0}};
    int nby = 0;
    long got = 0, twice = 0;
    uint64_t longest = 0;
    weft_time start = weft_now();
    result r;
    while (weft_chan_recv(results, &r) == 0) {
        if (r.id >= count) continue;
        if (seen[r.id]++) twice++;
        got++;
        if (r.steps > longest) longest = r.steps;
        int k = 0;
        while (k < nby && by[k].pid != r.worker) k++;
        if (k == nby && nby < MAX_WORKERS + 16) by[nby++].pid = r.worker;
        if (k < nby) by[k].results++;
    }
    double seconds = (double)(weft_now() - start) / 1e9;
    int rc = weft_nng_wait(b, WEFT_FOREVER);
    long missing = 0;
    for (long i = 0; i < count; i++) missing += !seen[i];
    for (int k = 0; k < nby; k++) printf("worker %d: %ld results\n", (int)by[k].pid, by[k].results);
    printf(
        "%ld results for %ld jobs (%ld missing, %ld twice) in %.2f s; longest chain %llu steps\n",
        got, count, missing, twice, seconds, (unsigned long long)longest);
    if (rc != 0) printf("bridge: %s\n", weft_nng_text(b));
    weft_nng_release(b);
    weft_chan_release(jobs);
    weft_chan_release(results);
    free(seen);
    for (int i = 0; i < npids; i++) kill(pids[i], SIGTERM);
    for (int i = 0; i < npids; i++) waitpid(pids[i], NULL, 0);
    return rc == 0 && missing == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--worker") == 0) return worker(argv[2]);
    if (argc >= 3 && argc <= 4 && strcmp(argv[1], "--listen") == 0) {
        long count = argc == 4 ? number(argv[3], 1, 10000000) : 1000;
        if (count < 0) return usage();
        return produce(argv[2], count, NULL, 0);
    }
    if (argc > 3 || (argc > 1 && argv[1][0] == '-')) return usage();
    long workers = argc > 1 ? number(argv[1], 1, MAX_WORKERS) : 3;
    long count = argc > 2 ? number(argv[2], 1, 10000000) : 1000;
    if (workers < 0 || count < 0) return usage();

    /* The workers are this program again (exec, not a bare fork: NNG
     * refuses to run in a forked child), started before the producer
     * touches NNG; they dial and retry until the producer listens. */
    char url[96];
    snprintf(url, sizeof url, "ipc:///tmp/weft-distributed-pool-%d", (int)getpid());
    pid_t pids[MAX_WORKERS];
    for (long i = 0; i < workers; i++) {
        fflush(NULL);
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[i] == 0) {
            execl("/proc/self/exe", argv[0], "--worker", url, (char *)NULL);
            perror("exec");
            _exit(127);
        }
    }
    int rc = produce(url, count, pids, (int)workers);
    unlink(url + strlen("ipc://"));
    return rc;
}
