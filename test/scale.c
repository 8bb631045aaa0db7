/* Scale runs (issue 6, item 3): many goroutines, many threads, many
 * contexts. A program, not a Check suite: a full run takes about a minute
 * on a 2-vCPU machine, too long for `make test`. `make scale` runs it.
 *
 *   blocked    10,000 goroutines on an explicit pool (64 KiB stacks) block
 *              receiving from one channel; one close releases every one of
 *              them with WEFT_ECLOSED; weft_goroutines() returns to 0 and the
 *              pool closes.
 *   short      1,000,000 short goroutines through the default pool, each
 *              bumping a counter and a WaitGroup.
 *   contexts   a context gets 1,000,000 children, three times: released
 *              while live; each canceled, then released; canceled all at
 *              once with their parent, then released. The parent still
 *              cancels afterwards, and the heap returns to its baseline.
 *
 * It checks correctness only, never speed, and exits non-zero at the
 * first broken invariant. Each run prints its figures on one line that
 * starts with "scale:", for quoting:
 *     scale: 10000 goroutines released by one close in 0.41 s, ...
 *
 * Usage: scale [--divide N] [--only blocked|short|contexts]
 *   --divide N   divide every count by N (a quick run; valgrind)
 * Under ThreadSanitizer every count is divided by 10 more: it keeps at
 * most a few thousand threads alive, and runs some ten times slower. */
#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"
#include "go_internal.h"
#include "sanitizers.h"

#if defined(UNDER_ASAN) || defined(UNDER_TSAN)
/* The sanitizers' allocator statistics (sanitizer/allocator_interface.h,
 * which gcc does not install). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

enum {
    BLOCKED_GOROUTINES = 10000,
    SHORT_GOROUTINES = 1000000,
    CHILD_CONTEXTS = 1000000,
    SMALL_STACK = 64 * 1024,
    WAIT_SECONDS = 300 /* bound on any wait; far above what a healthy run needs */
};

/* Every count is divided by this (--divide, and 10 more under TSan). */
static long divisor = 1;

static long sized(long count) {
    long result = count / divisor;
    return result > 0 ? result : 1;
}

/* A broken invariant: say which, and stop. */
#define CHECK(condition, ...)                                                                \
    do {                                                                                     \
        if (!(condition)) {                                                                  \
            fprintf(stderr, "scale: FAILED at %s:%d: %s: ", __FILE__, __LINE__, #condition); \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
            exit(EXIT_FAILURE);                                                              \
        }                                                                                    \
    } while (0)

static void sleep_ms(long ms) {
    struct timespec duration = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&duration, &duration) != 0 && errno == EINTR) {}
}

static double seconds_since(weft_time start) { return (double)(weft_now() - start) / 1e9; }

static double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

/* The process's peak resident set so far, in bytes. */
static double peak_rss(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_maxrss * 1024.0;
}

/* The process's resident set now, in bytes. */
static double current_rss(void) {
    FILE *statm = fopen("/proc/self/statm", "r");
    if (!statm) return 0;
    long pages_total = 0, pages_resident = 0;
    if (fscanf(statm, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = 0;
    fclose(statm);
    return (double)pages_resident * (double)sysconf(_SC_PAGESIZE);
}

/* Bytes the program has allocated and not freed. */
static size_t heap_in_use(void) {
#if defined(UNDER_ASAN) || defined(UNDER_TSAN)
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
#endif
}

/* Poll until *counter == want, for at most WAIT_SECONDS. */
static bool count_becomes(atomic_long *counter, long want) {
    weft_time give_up = weft_deadline(WEFT_SEC(WAIT_SECONDS));
    while (atomic_load(counter) != want) {
        if (weft_now() >= give_up) return false;
        sleep_ms(1);
    }
    return true;
}

/* Poll until weft_goroutines() == want, for at most WAIT_SECONDS. */
static bool goroutines_become(int want) {
    weft_time give_up = weft_deadline(WEFT_SEC(WAIT_SECONDS));
    while (weft_goroutines() != want) {
        if (weft_now() >= give_up) return false;
        sleep_ms(1);
    }
    return true;
}

/* ---- 10,000 goroutines blocked on one channel ------------------------------ */

typedef struct {
    weft_chan *channel;
    atomic_long arrived;  /* goroutines about to receive */
    atomic_long closed;   /* receives that returned WEFT_ECLOSED */
    atomic_long other;    /* receives that returned anything else */
    atomic_long returned; /* all of them */
} blocked_state;

static void receive_until_closed(void *arg) {
    blocked_state *state = arg;
    atomic_fetch_add(&state->arrived, 1);
    int result = weft_chan_recv(state->channel, NULL);
    atomic_fetch_add(result == WEFT_ECLOSED ? &state->closed : &state->other, 1);
    atomic_fetch_add(&state->returned, 1);
}

static void blocked_goroutines_released_by_one_close(void) {
    long count = sized(BLOCKED_GOROUTINES);
    CHECK(weft_goroutines() == 0, "%d goroutines before the start", weft_goroutines());
    double rss_before = current_rss();
    weft_pool_opts options = {.max_threads = (int)count,
                              .stack_size = SMALL_STACK,
                              .idle_timeout = WEFT_FOREVER,
                              .name = "scale"};
    weft_pool *pool = weft_pool_new(&options);
    CHECK(pool != NULL, "weft_pool_new: %s", strerror(errno));
    blocked_state state = {.channel = weft_chan_make(0, 0)};
    CHECK(state.channel != NULL, "weft_chan_make: %s", strerror(errno));

    weft_time start = weft_now();
    for (long i = 0; i < count; i++) {
        int result = weft_pool_go(pool, receive_until_closed, &state);
        CHECK(result == 0, "goroutine %ld of %ld: %s", i, count, weft_strerror(result));
    }
    CHECK(count_becomes(&state.arrived, count), "%ld of %ld arrived", atomic_load(&state.arrived),
          count);
    double started = seconds_since(start);
    CHECK(weft__pool_threads(pool) == (int)count, "%d threads", weft__pool_threads(pool));
    sleep_ms(200); /* let the last arrivals park */
    double rss_blocked = current_rss();
    CHECK(atomic_load(&state.returned) == 0, "%ld got past the receive",
          atomic_load(&state.returned));
    CHECK(weft_goroutines() == (int)count, "weft_goroutines() %d", weft_goroutines());

    start = weft_now();
    CHECK(weft_chan_close(state.channel) == 0, "close");
    CHECK(count_becomes(&state.returned, count), "%ld of %ld returned",
          atomic_load(&state.returned), count);
    double released = seconds_since(start);
    CHECK(goroutines_become(0), "weft_goroutines() %d", weft_goroutines());
    double idle = seconds_since(start);
    CHECK(atomic_load(&state.closed) == count, "%ld of %ld got WEFT_ECLOSED",
          atomic_load(&state.closed), count);
    CHECK(atomic_load(&state.other) == 0, "%ld got another result", atomic_load(&state.other));

    start = weft_now();
    CHECK(weft_pool_close(pool) == 0, "weft_pool_close");
    double closed = seconds_since(start);
    weft_chan_release(state.channel);
    printf("scale: %ld goroutines released by one close in %.2f s, peak RSS %.0f MiB "
           "(all WEFT_ECLOSED; weft_goroutines() back to 0 after %.2f s; %ld threads with "
           "64 KiB stacks started in %.2f s, +%.1f KiB RSS each while blocked; pool closed "
           "in %.2f s)\n",
           count, released, mib(peak_rss()), idle, count, started,
           (rss_blocked - rss_before) / 1024.0 / (double)count, closed);
    fflush(stdout);
}

/* ---- 1,000,000 short goroutines ---------------------------------------------- */

typedef struct {
    atomic_long runs;
    weft_wg finished;
} short_state;

static void run_short(void *arg) {
    short_state *state = arg;
    atomic_fetch_add_explicit(&state->runs, 1, memory_order_relaxed);
    weft_wg_done(&state->finished);
}

static void short_goroutines_through_the_default_pool(void) {
    long count = sized(SHORT_GOROUTINES);
    short_state state = {.finished = WEFT_WG_INIT};
    weft_pool *pool = weft__pool_default();
    long threads_before = weft__pool_threads_started(pool);
    long busy = 0; /* weft_go said WEFT_EAGAIN (max_threads all busy): retried */
    weft_time start = weft_now();
    weft_wg_add(&state.finished, count);
    for (long i = 0; i < count; i++) {
        int result;
        while ((result = weft_go(run_short, &state)) == WEFT_EAGAIN) {
            busy++;
            sched_yield();
        }
        CHECK(result == 0, "goroutine %ld: %s", i, weft_strerror(result));
    }
    double handed = seconds_since(start);
    int waited = weft_wg_wait_until(&state.finished, weft_deadline(WEFT_SEC(WAIT_SECONDS)));
    CHECK(waited == 0, "weft_wg_wait_until: %s", weft_strerror(waited));
    double finished = seconds_since(start);
    CHECK(atomic_load(&state.runs) == count, "%ld of %ld ran", atomic_load(&state.runs), count);
    CHECK(goroutines_become(0), "weft_goroutines() %d", weft_goroutines());
    long threads = weft__pool_threads_started(pool) - threads_before;
    CHECK(threads >= 1, "%ld threads", threads);
    printf("scale: %ld short goroutines through the default pool in %.2f s (%.2f us each), "
           "%ld threads created (%d alive after; all handed over in %.2f s; %ld retries at "
           "max_threads)\n",
           count, finished, finished * 1e6 / (double)count, threads, weft__pool_threads(pool),
           handed, busy);
    fflush(stdout);
    weft_wg_destroy(&state.finished);
}

/* ---- a context with 1,000,000 children ---------------------------------------- */

enum child_fate {
    RELEASED_LIVE,        /* released while live: each unlinks itself */
    CANCELED_THEN_FREED,  /* each canceled, then released */
    PARENT_CANCELED_FIRST /* the parent cancels all of them, then they are released */
};

static const char *const fate_names[] = {"released live", "each canceled then released",
                                         "canceled with their parent then released"};

static void children_of_one_context(enum child_fate fate) {
    long count = sized(CHILD_CONTEXTS);
    weft_ctx **children = malloc((size_t)count * sizeof *children);
    CHECK(children != NULL, "malloc");
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    CHECK(parent != NULL, "weft_ctx_with_cancel: %s", strerror(errno));
    size_t baseline = heap_in_use();

    weft_time start = weft_now();
    for (long i = 0; i < count; i++) {
        children[i] = weft_ctx_with_cancel(parent);
        CHECK(children[i] != NULL, "child %ld: %s", i, strerror(errno));
    }
    double created = seconds_since(start);
    size_t peak = heap_in_use();
    CHECK(weft_ctx_err(parent) == 0, "parent ended");
    for (long i = 0; i < count; i++) CHECK(weft_ctx_err(children[i]) == 0, "child %ld ended", i);

    double canceled = 0;
    start = weft_now();
    if (fate == CANCELED_THEN_FREED) {
        for (long i = 0; i < count; i++) weft_ctx_cancel(children[i]);
        canceled = seconds_since(start);
        CHECK(weft_ctx_err(parent) == 0, "a child's cancel reached its parent");
    } else if (fate == PARENT_CANCELED_FIRST) {
        weft_ctx_cancel(parent);
        canceled = seconds_since(start);
    }
    if (fate != RELEASED_LIVE) {
        for (long i = 0; i < count; i++) {
            CHECK(weft_ctx_err(children[i]) == WEFT_ECANCELED, "child %ld: %d", i,
                  weft_ctx_err(children[i]));
            CHECK(weft_chan_try_recv(weft_ctx_done(children[i]), NULL) == WEFT_ECLOSED,
                  "child %ld's done channel is open", i);
        }
    }
    start = weft_now();
    for (long i = 0; i < count; i++) weft_ctx_release(children[i]);
    double released = seconds_since(start);
    free(children);

    /* The parent still cancels (it lists no child: were a released one
     * still linked, this would touch freed memory), and takes new children. */
    weft_ctx *late = weft_ctx_with_cancel(parent);
    CHECK(late != NULL, "a new child: %s", strerror(errno));
    int expected = fate == PARENT_CANCELED_FIRST ? WEFT_ECANCELED : 0;
    CHECK(weft_ctx_err(late) == expected, "a new child's error %d", weft_ctx_err(late));
    start = weft_now();
    weft_ctx_cancel(parent);
    double parent_canceled = seconds_since(start);
    CHECK(weft_ctx_err(parent) == WEFT_ECANCELED, "parent error %d", weft_ctx_err(parent));
    CHECK(weft_ctx_err(late) == WEFT_ECANCELED, "new child error %d", weft_ctx_err(late));
    weft_ctx_release(late);

    size_t after = heap_in_use();
    size_t left = after > baseline ? after - baseline : 0;
    weft_ctx_release(parent);
    char cancel_time[48] = "";
    if (fate != RELEASED_LIVE)
        snprintf(cancel_time, sizeof cancel_time, "canceled in %.2f s, ", canceled);
    printf("scale: a context with %ld children %s: the parent still cancels (in %.3f ms), heap "
           "back to %.1f KiB above its baseline (created in %.2f s, %.0f MiB at peak, "
           "%.0f bytes a child; %sreleased in %.2f s)\n",
           count, fate_names[fate], parent_canceled * 1e3, (double)left / 1024.0, created,
           mib((double)(peak - baseline)), (double)(peak - baseline) / (double)count, cancel_time,
           released);
    fflush(stdout);
    /* The memory came back: within 1 MiB of where it started (allocator
     * caches keep a little). */
    CHECK(left < 1024 * 1024, "%zu bytes still in use after releasing %ld children", left, count);
}

static void contexts_with_a_million_children(void) {
    children_of_one_context(RELEASED_LIVE);
    children_of_one_context(CANCELED_THEN_FREED);
    children_of_one_context(PARENT_CANCELED_FIRST);
}

/* ---- main ------------------------------------------------------------------ */

static const struct {
    const char *name;
    void (*run)(void);
} runs[] = {
    {"blocked", blocked_goroutines_released_by_one_close},
    {"short", short_goroutines_through_the_default_pool},
    {"contexts", contexts_with_a_million_children},
};

static void usage(const char *program) {
    fprintf(stderr, "usage: %s [--divide N] [--only blocked|short|contexts]\n", program);
    exit(2);
}

int main(int argc, char **argv) {
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--divide") == 0 && i + 1 < argc) {
            divisor = strtol(argv[++i], NULL, 10);
            if (divisor < 1) usage(argv[0]);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            usage(argv[0]);
        }
    }
#ifdef UNDER_TSAN
    divisor *= 10;
    printf("scale: under ThreadSanitizer every count is divided by %ld\n", divisor);
#endif
    struct rlimit processes;
    if (getrlimit(RLIMIT_NPROC, &processes) == 0 && processes.rlim_cur != RLIM_INFINITY &&
        geteuid() != 0 && (long)processes.rlim_cur < sized(BLOCKED_GOROUTINES) + 100)
        printf("scale: note: RLIMIT_NPROC is %ld, fewer than the threads needed\n",
               (long)processes.rlim_cur);

    bool ran = false;
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        if (only && strcmp(only, runs[i].name) != 0) continue;
        runs[i].run();
        ran = true;
    }
    if (!ran) usage(argv[0]);
    printf("scale: every check passed\n");
    return EXIT_SUCCESS;
}
