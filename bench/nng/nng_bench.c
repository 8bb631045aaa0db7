/* The NNG bridges' benchmark (`make bench-nng`, part of `make bench` when
 * NNG is installed): messages per second through a stream bridge
 * (channel -> PUSH -> PULL -> channel) over tcp://127.0.0.1 and ipc:// for
 * 8-byte and 1 KiB values, beside a plain NNG PUSH/PULL program doing the
 * same in the same run; then jobs per second through the REQ/REP pool
 * beside the same work on a local weft pool. Each figure is the best of
 * ROUNDS runs (the machine may be shared).
 *
 *   nng_bench [--count N] [--rounds R]      */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>

#include "weft.h"
#include "weft/nng.h"

static long count = 200000;
static int rounds = 3;

static void die(const char *what, int rc) {
    fprintf(stderr, "nng_bench: %s: %s\n", what, rc ? nng_strerror(rc) : weft_nng_last_error());
    exit(1);
}

/* ---- Raw NNG: one thread pushes, this one pulls. */

typedef struct {
    const char *url;
    size_t size;
    long n;
} raw_push;

static void *raw_pusher(void *arg) {
    raw_push *p = arg;
    nng_socket s;
    int rc = nng_push0_open(&s);
    if (rc) die("push0_open", rc);
    if ((rc = nng_dial(s, p->url, NULL, NNG_FLAG_NONBLOCK))) die("dial", rc);
    char *buf = calloc(1, p->size);
    for (long i = 0; i < p->n; i++) {
        memcpy(buf, &i, sizeof i < p->size ? sizeof i : p->size);
        if ((rc = nng_send(s, buf, p->size, 0))) die("send", rc);
    }
    free(buf);
    sleep(1); /* let the last messages leave before the close */
    nng_close(s);
    return NULL;
}

static double raw_rate(const char *url, size_t size, long n) {
    nng_socket s;
    int rc = nng_pull0_open(&s);
    if (rc) die("pull0_open", rc);
    nng_listener l;
    if ((rc = nng_listen(s, url, &l, 0))) die("listen", rc);
    char bound[128];
    snprintf(bound, sizeof bound, "%s", url);
    if (strncmp(url, "tcp", 3) == 0) {
        int port;
        nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port);
        snprintf(bound, sizeof bound, "tcp://127.0.0.1:%d", port);
    }
    raw_push p = {bound, size, n};
    pthread_t t;
    pthread_create(&t, NULL, raw_pusher, &p);
    nng_msg *m;
    if ((rc = nng_recvmsg(s, &m, 0))) die("recv", rc);
    nng_msg_free(m);
    weft_time start = weft_now();
    for (long i = 1; i < n; i++) {
        if ((rc = nng_recvmsg(s, &m, 0))) die("recv", rc);
        nng_msg_free(m);
    }
    double rate = (double)(n - 1) / ((double)(weft_now() - start) / 1e9);
    pthread_join(t, NULL);
    nng_close(s);
    return rate;
}

/* ---- The bridge: a goroutine fills `from`, this thread drains `to`. */

typedef struct {
    weft_chan *from;
    long n;
    size_t size;
} producer;

static void produce(void *arg) {
    producer *p = arg;
    char *buf = calloc(1, p->size);
    for (long i = 0; i < p->n; i++) {
        memcpy(buf, &i, sizeof i < p->size ? sizeof i : p->size);
        if (weft_chan_send(p->from, buf) != 0) break;
    }
    free(buf);
    weft_chan_close(p->from);
}

static double bridge_rate(const char *url, size_t size, long n) {
    weft_chan *to = weft_chan_make(size, 1024), *from = weft_chan_make(size, 1024);
    weft_nng_opts ropts = {.url = url, .listen = true, .senders = 1};
    weft_nng_bridge *rb = weft_nng_stream_recv(to, &ropts, NULL);
    if (!rb) die("stream_recv", 0);
    char bound[160];
    weft_nng_url(rb, bound, sizeof bound);
    weft_nng_opts sopts = {.url = bound};
    weft_nng_bridge *sb = weft_nng_stream_send(from, &sopts, NULL);
    if (!sb) die("stream_send", 0);
    producer p = {from, n, size};
    weft_go(produce, &p);
    char *buf = malloc(size);
    if (weft_chan_recv(to, buf) != 0) die("first value", 0);
    weft_time start = weft_now();
    long got = 1;
    while (weft_chan_recv(to, buf) == 0) got++;
    double rate = (double)(got - 1) / ((double)(weft_now() - start) / 1e9);
    if (got != n || weft_nng_wait(rb, WEFT_FOREVER) != 0)
        fprintf(stderr, "nng_bench: %ld of %ld values: %s\n", got, n, weft_nng_text(rb));
    free(buf);
    weft_nng_release(sb);
    weft_nng_release(rb);
    weft_chan_release(from);
    weft_chan_release(to);
    return rate;
}

/* ---- Jobs: REQ/REP over ipc against a local weft pool. */

typedef struct {
    uint64_t id, input;
} job;
typedef struct {
    uint64_t id, output;
} result;

static void work(const void *in, void *out, void *arg) {
    (void)arg;
    const job *j = in;
    result *r = out;
    r->id = j->id;
    r->output = j->input * j->input;
}

typedef struct {
    weft_chan *jobs, *results;
} local_worker;

static void local_work(void *arg) {
    local_worker *w = arg;
    job j;
    while (weft_chan_recv(w->jobs, &j) == 0) {
        result r;
        work(&j, &r, NULL);
        weft_chan_send(w->results, &r);
    }
}

static void feed(void *arg) {
    producer *p = arg;
    for (long i = 0; i < p->n; i++) {
        job j = {(uint64_t)i, (uint64_t)i};
        if (weft_chan_send(p->from, &j) != 0) break;
    }
    weft_chan_close(p->from);
}

static double jobs_rate(const char *url, long n, bool remote) {
    enum { WORKERS = 4 };
    weft_chan *jobs = weft_chan_make(sizeof(job), 256),
              *results = weft_chan_make(sizeof(result), 256);
    weft_nng_bridge *serve = NULL, *jb = NULL;
    weft_wg wg = WEFT_WG_INIT;
    local_worker w = {jobs, results};
    if (remote) {
        weft_nng_opts wopts = {.url = url, .listen = true, .workers = WORKERS};
        serve = weft_nng_serve(sizeof(job), sizeof(result), work, NULL, &wopts, NULL);
        weft_nng_opts jopts = {.url = url, .workers = 64};
        jb = weft_nng_jobs(jobs, results, &jopts, NULL);
        if (!serve || !jb) die("jobs", 0);
    } else {
        for (int i = 0; i < WORKERS; i++) weft_wg_go(&wg, local_work, &w);
    }
    producer p = {jobs, n, 0};
    weft_time start = weft_now();
    weft_go(feed, &p);
    result r;
    long got = 0;
    if (remote) {
        while (weft_chan_recv(results, &r) == 0) got++;
    } else {
        for (; got < n; got++) weft_chan_recv(results, &r);
        weft_wg_wait(&wg);
    }
    double rate = (double)got / ((double)(weft_now() - start) / 1e9);
    weft_nng_release(jb);
    weft_nng_release(serve);
    weft_chan_release(jobs);
    weft_chan_release(results);
    return rate;
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--count") == 0)
            count = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
    }
    if (count < 2 || rounds < 1) {
        fprintf(stderr, "usage: nng_bench [--count N] [--rounds R]\n");
        return 2;
    }
    char ipc[96];
    snprintf(ipc, sizeof ipc, "ipc:///tmp/weft-nng-bench-%d", (int)getpid());
    const char *urls[] = {"tcp://127.0.0.1:0", ipc};
    const size_t sizes[] = {8, 1024};
    printf("nng_bench: best of %d runs, %ld messages each\n", rounds, count);
    printf("%-6s %6s %14s %14s %7s\n", "url", "value", "raw NNG msg/s", "bridge msg/s", "ratio");
    for (int u = 0; u < 2; u++)
        for (int s = 0; s < 2; s++) {
            double raw = 0, bridge = 0;
            long n = sizes[s] > 8 ? count / 2 : count;
            for (int r = 0; r < rounds; r++) {
                double a = raw_rate(urls[u], sizes[s], n), b = bridge_rate(urls[u], sizes[s], n);
                if (a > raw) raw = a;
                if (b > bridge) bridge = b;
            }
            printf("%-6s %5zuB %14.0f %14.0f %6.2fx\n", u ? "ipc" : "tcp", sizes[s], raw, bridge,
                   bridge / raw);
        }
    double local = 0, remote = 0;
    for (int r = 0; r < rounds; r++) {
        double a = jobs_rate(NULL, count / 4, false), b = jobs_rate(ipc, count / 4, true);
        if (a > local) local = a;
        if (b > remote) remote = b;
    }
    printf("jobs: local weft pool %.0f jobs/s, REQ/REP pool over ipc %.0f jobs/s (%.3fx)\n", local,
           remote, remote / local);
    unlink(ipc + strlen("ipc://"));
    return 0;
}
