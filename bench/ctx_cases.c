/* ctx_cases.c — the four cases of the context group: ctx_create_cancel,
 * ctx_tree_cancel, recv_ctx and deadlines_pending (see ctx_cases.h).
 *
 * Times come from weft_now() (CLOCK_MONOTONIC) around blocks of a
 * thousand or so operations, so the clock's own cost (tens of ns) is a
 * few hundredths of a ns per operation. Memory is what malloc has handed
 * out (mallinfo2: in use in the arena plus mmapped chunks) and the
 * process's resident set (/proc/self/statm), each read before and after;
 * every array the bench itself needs is allocated and touched before the
 * first reading. deadlines_pending asks the timer thread how many timers
 * are pending through lib/timer.h's weft__timer_pending(), the library's
 * internal test hook.
 *
 * The heap. glibc gives the top of its heap back to the kernel (brk)
 * whenever more than M_TRIM_THRESHOLD (128 KiB) lies free there. Once
 * ctx_create_cancel had run, freeing a 10,000-context tree newest first
 * made some 1,400 brk calls (strace: one per seven contexts, the heap
 * shrinking a page at a time), and the next tree faulted every page back
 * in; on the project's VM a brk that shrinks costs ~25 us and a TLB
 * flush, so tree release went from 40 ns to 6.5 us per context and build
 * from 90 ns to 2.2 us, depending only on which case had run before. That
 * is the allocator and the hypervisor, not weft: the context cases turn
 * trimming off (keep_heap; they run last, after every channel case) and
 * warm the heap before timing what reuses memory. The memory readings of
 * deadlines_pending start instead from a heap trimmed on purpose
 * (malloc_trim), so that its pages are new and counted; its creation time
 * includes their page faults. */
#include "ctx_cases.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __GLIBC__
#include <malloc.h>
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)
#define HAVE_MALLINFO2 1
#endif
#endif

#include "timer.h" /* lib/: weft__timer_pending */
#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/error.h"
#include "weft/time.h"

/* ---- helpers ------------------------------------------------------------ */

static void fail_check(const char *case_name, const char *what) {
    fprintf(stderr, "weft-bench: weft %s: %s\n", case_name, what);
    exit(1);
}

static void no_memory(const char *what) {
    fprintf(stderr, "weft-bench: weft: %s: out of memory\n", what);
    exit(2);
}

static void *allocate_touched(size_t count, size_t size, const char *what) {
    void *memory = calloc(count, size);
    if (memory == NULL) no_memory(what);
    memset(memory, 0xff, count * size); /* resident now, not during a reading */
    return memory;
}

static weft_ctx *with_cancel(weft_ctx *parent) {
    weft_ctx *ctx = weft_ctx_with_cancel(parent);
    if (ctx == NULL) no_memory("weft_ctx_with_cancel");
    return ctx;
}

static weft_ctx *with_deadline(weft_time deadline) {
    weft_ctx *ctx = weft_ctx_with_deadline(NULL, deadline);
    if (ctx == NULL) no_memory("weft_ctx_with_deadline");
    return ctx;
}

static int compare_doubles(const void *left, const void *right) {
    double a = *(const double *)left, b = *(const double *)right;
    return (a > b) - (a < b);
}

/* Median of values[0..count), count >= 1; sorts values in place. */
static double median_of(double *values, size_t count) {
    qsort(values, count, sizeof *values, compare_doubles);
    return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

/* Bytes malloc has handed out and not had back; NAN if unknown. */
static double malloc_in_use(void) {
#ifdef HAVE_MALLINFO2
    struct mallinfo2 info = mallinfo2();
    return (double)info.uordblks + (double)info.hblkhd;
#else
    return NAN;
#endif
}

/* The process's resident set in bytes; NAN if unknown. */
static double resident_bytes(void) {
    FILE *statm = fopen("/proc/self/statm", "r");
    if (statm == NULL) return NAN;
    unsigned long size_pages, resident_pages;
    int fields = fscanf(statm, "%lu %lu", &size_pages, &resident_pages);
    fclose(statm);
    if (fields != 2) return NAN;
    return (double)resident_pages * (double)sysconf(_SC_PAGESIZE);
}

/* Turns glibc's heap trimming off for the rest of the process (see the
 * top of the file). */
static void keep_heap(void) {
#ifdef __GLIBC__
    static bool kept;
    if (!kept) kept = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
#endif
}

/* Gives every free page of the heap back to the kernel, so that what is
 * allocated next is new resident memory. */
static void trim_heap(void) {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* A small xorshift generator: deadlines in random heap positions. */
static unsigned long long next_random(unsigned long long *state) {
    unsigned long long x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* ---- ctx_create_cancel -------------------------------------------------- */

enum { CREATE_BLOCK = 1000, CREATE_BLOCKS = 100 }; /* per form and repetition */

/* count times: with_cancel(parent), cancel, release. Returns ns per op. */
static double create_cancel_block(weft_ctx *parent, int count) {
    weft_time started = weft_now();
    for (int i = 0; i < count; i++) {
        weft_ctx *ctx = with_cancel(parent);
        weft_ctx_cancel(ctx);
        weft_ctx_release(ctx);
    }
    return (double)(weft_now() - started) / count;
}

/* One untimed op that checks what the timed ones do. */
static void check_create_cancel(weft_ctx *parent) {
    weft_ctx *ctx = with_cancel(parent);
    if (weft_ctx_err(ctx) != 0) fail_check("ctx_create_cancel", "a new context has ended");
    weft_ctx_cancel(ctx);
    if (weft_ctx_err(ctx) != WEFT_ECANCELED)
        fail_check("ctx_create_cancel", "a canceled context has no WEFT_ECANCELED");
    weft_ctx_release(ctx);
    if (weft_ctx_err(parent) != 0)
        fail_check("ctx_create_cancel", "canceling a child ended its parent");
}

/* Blocks of the two forms alternate (AB, BA, ...); per form the median
 * block, and the median of the paired differences. */
static void run_create_cancel(double *values) {
    keep_heap();
    weft_ctx *parent = with_cancel(NULL);
    double background[CREATE_BLOCKS], under_parent[CREATE_BLOCKS], difference[CREATE_BLOCKS];
    for (int block = 0; block < CREATE_BLOCKS; block++) {
        if (block % 2 == 0) {
            background[block] = create_cancel_block(NULL, CREATE_BLOCK);
            under_parent[block] = create_cancel_block(parent, CREATE_BLOCK);
        } else {
            under_parent[block] = create_cancel_block(parent, CREATE_BLOCK);
            background[block] = create_cancel_block(NULL, CREATE_BLOCK);
        }
        difference[block] = under_parent[block] - background[block];
        check_create_cancel(block % 2 ? parent : NULL);
    }
    weft_ctx_cancel(parent);
    weft_ctx_release(parent);
    values[0] = median_of(background, CREATE_BLOCKS);
    values[1] = median_of(under_parent, CREATE_BLOCKS);
    values[2] = median_of(difference, CREATE_BLOCKS);
}

/* ---- ctx_tree_cancel ---------------------------------------------------- */

enum { TREE_SIZE = 10000, TREE_FANOUT = 10, TREES = 3 }; /* trees per repetition */

/* nodes[0] is the root, under background; node i > 0 is a child of node
 * (i - 1) / TREE_FANOUT: a complete 10-ary tree of depth 5 in BFS order. */
static void build_tree(weft_ctx **nodes) {
    nodes[0] = with_cancel(NULL);
    for (int i = 1; i < TREE_SIZE; i++) nodes[i] = with_cancel(nodes[(i - 1) / TREE_FANOUT]);
}

static void check_tree(weft_ctx **nodes, int want, const char *what) {
    for (int i = 0; i < TREE_SIZE; i++)
        if (weft_ctx_err(nodes[i]) != want) fail_check("ctx_tree_cancel", what);
}

static void release_tree(weft_ctx **nodes) {
    for (int i = TREE_SIZE - 1; i >= 0; i--) weft_ctx_release(nodes[i]); /* leaves first */
}

/* An untimed tree first, so that the timed ones reuse memory the process
 * has (see keep_heap), then TREES timed ones: per measure their median. */
static void run_tree_cancel(double *values) {
    keep_heap();
    weft_ctx **nodes = allocate_touched(TREE_SIZE, sizeof *nodes, "tree");
    build_tree(nodes);
    weft_ctx_cancel(nodes[0]);
    release_tree(nodes);
    double build[TREES], memory[TREES], cancel[TREES], release[TREES];
    for (int tree = 0; tree < TREES; tree++) {
        double in_use = malloc_in_use();
        weft_time started = weft_now();
        build_tree(nodes);
        weft_time built = weft_now();
        memory[tree] = (malloc_in_use() - in_use) / TREE_SIZE;
        check_tree(nodes, 0, "a context of a new tree has ended");

        weft_time cancel_started = weft_now();
        weft_ctx_cancel(nodes[0]);
        weft_time canceled = weft_now();
        check_tree(nodes, WEFT_ECANCELED, "canceling the root left a context live");

        weft_time release_started = weft_now();
        release_tree(nodes);
        weft_time released = weft_now();

        build[tree] = (double)(built - started) / TREE_SIZE;
        cancel[tree] = (double)(canceled - cancel_started);
        release[tree] = (double)(released - release_started) / TREE_SIZE;
    }
    free(nodes);
    values[0] = median_of(build, TREES);
    values[1] = median_of(memory, TREES);
    values[2] = median_of(cancel, TREES) / 1e3; /* us per tree */
    values[3] = values[2] * 1e3 / TREE_SIZE;
    values[4] = median_of(release, TREES);
}

/* ---- recv_ctx ----------------------------------------------------------- */

enum { RECV_BLOCK = 1024, RECV_ROUNDS = 500 }; /* capacity = block; rounds per repetition */

static void fill(weft_chan *channel) {
    for (long value = 1; value <= RECV_BLOCK; value++) {
        int result = weft_chan_send(channel, &value);
        if (result != 0) fail_check("recv_ctx", weft_strerror(result));
    }
}

/* RECV_BLOCK receives of the values fill() sent, through weft_chan_recv
 * (ctx NULL) or weft_chan_recv_ctx; returns ns per receive. */
static double receive_block(weft_chan *channel, weft_ctx *ctx) {
    long value = 0, sum = 0;
    int failed = 0;
    weft_time started = weft_now();
    if (ctx == NULL) {
        for (int i = 0; i < RECV_BLOCK; i++) {
            failed |= weft_chan_recv(channel, &value);
            sum += value;
        }
    } else {
        for (int i = 0; i < RECV_BLOCK; i++) {
            failed |= weft_chan_recv_ctx(channel, &value, ctx);
            sum += value;
        }
    }
    weft_time elapsed = weft_now() - started;
    if (failed != 0) fail_check("recv_ctx", "a receive of a waiting value failed");
    if (sum != (long)RECV_BLOCK * (RECV_BLOCK + 1) / 2)
        fail_check("recv_ctx", "received values do not add up");
    return (double)elapsed / RECV_BLOCK;
}

/* The same thread fills the channel (untimed) and empties it, the two
 * forms alternating block by block (AB, BA, ...): every receive finds a
 * value waiting, and both forms see the same cache state. */
static void run_recv_ctx(double *values) {
    keep_heap();
    weft_chan *channel = weft_chan_make(sizeof(long), RECV_BLOCK);
    if (channel == NULL) no_memory("weft_chan_make");
    weft_ctx *ctx = with_cancel(NULL); /* live and cancelable: err is a real load */
    double plain[RECV_ROUNDS], with_ctx[RECV_ROUNDS], difference[RECV_ROUNDS];
    for (int round = 0; round < RECV_ROUNDS; round++) {
        for (int step = 0; step < 2; step++) {
            bool ctx_form = (step == 0) == (round % 2 == 1);
            fill(channel);
            double ns = receive_block(channel, ctx_form ? ctx : NULL);
            if (ctx_form)
                with_ctx[round] = ns;
            else
                plain[round] = ns;
        }
        difference[round] = with_ctx[round] - plain[round];
    }
    weft_ctx_cancel(ctx);
    weft_ctx_release(ctx);
    weft_chan_release(channel);
    values[0] = median_of(plain, RECV_ROUNDS);
    values[1] = median_of(with_ctx, RECV_ROUNDS);
    values[2] = median_of(difference, RECV_ROUNDS);
}

/* ---- deadlines_pending -------------------------------------------------- */

/* One more is timed in ONE_MORE_BLOCKS blocks with PENDING pending, and
 * as many with none: half before the PENDING are made, half after. */
enum { PENDING = 100000, ONE_MORE_BLOCK = 1000, ONE_MORE_BLOCKS = 20 };
#define DEADLINE_AHEAD WEFT_SEC(3600) /* deadlines are an hour ahead ... */
#define DEADLINE_SPREAD WEFT_SEC(100) /* ... spread over 100 s, in random order */

static weft_time random_deadline(weft_time base, unsigned long long *random) {
    return base + (weft_time)(next_random(random) % (unsigned long long)DEADLINE_SPREAD);
}

/* ONE_MORE_BLOCK times: with_deadline(background, a random deadline in
 * the pending ones' range), release. Returns ns per op. */
static double one_more_block(weft_time base, unsigned long long *random) {
    weft_time started = weft_now();
    for (int i = 0; i < ONE_MORE_BLOCK; i++)
        weft_ctx_release(with_deadline(random_deadline(base, random)));
    return (double)(weft_now() - started) / ONE_MORE_BLOCK;
}

/* count timed blocks into times[], after an untimed one: the first block
 * after a change of state (the first deadline ever, the timer thread's
 * start, PENDING made or released) runs up to 3x slower. */
static void time_one_more(weft_time base, unsigned long long *random, double *times, int count) {
    one_more_block(base, random);
    for (int block = 0; block < count; block++) times[block] = one_more_block(base, random);
}

static void check_pending(size_t want, const char *when) {
    size_t pending = weft__timer_pending();
    if (pending != want) {
        fprintf(stderr, "weft-bench: weft deadlines_pending: %zu timers pending %s, want %zu\n",
                pending, when, want);
        exit(1);
    }
}

static void run_deadlines_pending(double *values) {
    keep_heap();
    weft_ctx **contexts = allocate_touched(PENDING, sizeof *contexts, "deadlines");
    unsigned long long random = 0x9e3779b97f4a7c15ULL;
    weft_time base = weft_now() + DEADLINE_AHEAD;
    double empty[ONE_MORE_BLOCKS], full[ONE_MORE_BLOCKS];
    size_t pending_before = weft__timer_pending();
    time_one_more(base, &random, empty, ONE_MORE_BLOCKS / 2);
    check_pending(pending_before, "after creating and releasing deadline contexts");

    trim_heap();
    double in_use = malloc_in_use(), resident = resident_bytes();
    weft_time started = weft_now();
    for (int i = 0; i < PENDING; i++) contexts[i] = with_deadline(random_deadline(base, &random));
    weft_time created = weft_now();
    double in_use_growth = malloc_in_use() - in_use, resident_growth = resident_bytes() - resident;
    size_t pending = weft__timer_pending();
    check_pending(pending_before + PENDING, "with every deadline context live");
    for (int i = 0; i < PENDING; i += PENDING / 100)
        if (weft_ctx_err(contexts[i]) != 0 || weft_ctx_deadline(contexts[i]) < base)
            fail_check("deadlines_pending", "a deadline context an hour ahead has ended");

    time_one_more(base, &random, full, ONE_MORE_BLOCKS);
    check_pending(pending_before + PENDING, "after one more was created and released");

    weft_time release_started = weft_now();
    for (int i = 0; i < PENDING; i++) weft_ctx_release(contexts[i]);
    weft_time released = weft_now();
    check_pending(pending_before, "after releasing every deadline context");

    time_one_more(base, &random, empty + ONE_MORE_BLOCKS / 2,
                  ONE_MORE_BLOCKS - ONE_MORE_BLOCKS / 2);
    free(contexts);

    values[0] = (double)(created - started) / PENDING;
    values[1] = (double)(pending - pending_before);
    values[2] = in_use_growth / PENDING;
    values[3] = resident_growth / PENDING;
    values[4] = median_of(empty, ONE_MORE_BLOCKS);
    values[5] = median_of(full, ONE_MORE_BLOCKS);
    values[6] = values[5] - values[4];
    values[7] = (double)(released - release_started) / PENDING;
}

/* ---- the table ---------------------------------------------------------- */

const ctx_case ctx_cases[] = {
    {"ctx_create_cancel",
     "with_cancel + cancel + release, under background and under a live parent, interleaved",
     3,
     {{"with_cancel(background), cancel, release", "ns/op", 0},
      {"the same under a live parent (linked under its lock)", "ns/op", 0},
      {"under a parent - under background", "ns/op", 0}},
     run_create_cancel},
    {"ctx_tree_cancel",
     "a tree of 10,000 contexts (fan-out 10, depth 5): build, cancel the root, release",
     5,
     {{"build: with_cancel under its parent, per context", "ns/ctx", 0},
      {"memory in use per context (malloc)", "bytes", 0},
      {"cancel the root: the whole tree", "us/tree", 0},
      {"cancel the root, per context", "ns/ctx", 0},
      {"release the tree (leaves first), per context", "ns/ctx", 0}},
     run_tree_cancel},
    {"recv_ctx",
     "weft_chan_recv_ctx vs weft_chan_recv on a value waiting, one thread, interleaved blocks",
     3,
     {{"weft_chan_recv, a value waiting (capacity 1024)", "ns/recv", 0},
      {"weft_chan_recv_ctx, the same, live with_cancel context", "ns/recv", 0},
      {"recv_ctx - recv (median of paired blocks)", "ns/recv", 20}},
     run_recv_ctx},
    {"deadlines_pending",
     "100,000 deadline contexts pending an hour ahead: memory, and the cost of one more (the "
     "timer heap's array, 8 B a slot, never shrinks: it counts only in the run where it grew)",
     8,
     {{"create 100,000 with_deadline(1 h ahead), new pages, per context", "ns/ctx", 0},
      {"timers pending on the timer thread (checked)", "count", 0},
      {"memory in use per pending deadline (malloc)", "bytes", 0},
      {"RSS growth per pending deadline", "bytes", 0},
      {"one more with_deadline + release, 0 pending", "ns/op", 0},
      {"one more with_deadline + release, 100,000 pending", "ns/op", 0},
      {"100,000 pending - 0 pending", "ns/op", 0},
      {"release the 100,000, per context", "ns/ctx", 0}},
     run_deadlines_pending},
};

const size_t ctx_case_count = sizeof ctx_cases / sizeof ctx_cases[0];
