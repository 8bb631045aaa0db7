/* Fault injection (issue 6, item 2): out of memory and out of threads give
 * error codes, never a crash, a hang, a leak or a half-made object.
 *
 * Allocation. Every public constructor and every operation that may
 * allocate runs with its k-th allocation failing (lib/alloc.h's hook), for
 * k = 1, 2, ... until a run makes fewer than k allocations: it then
 * succeeded without any failure, and k - 1 is the number of injection
 * points, which each test prints:
 *     faults: weft_chan_make(8, 1): 2 injection points
 * At each failing k the test asserts the documented error (NULL and errno,
 * or a WEFT_E* code) or, where the header promises that the call copes
 * (a blocking call whose parker cannot be allocated waits by yielding),
 * that it still works; then that nothing is left half-made: the parent
 * context still cancels its other children and lists no stale child (a
 * stale one would be a use after free, which AddressSanitizer reports), no
 * timer is left pending, no waiter is left registered on a channel, a pool
 * or group still runs work, a WaitGroup is balanced. Under
 * AddressSanitizer a recoverable LeakSanitizer check runs after every
 * failing k, so a leak is pinned to the allocation whose failure caused
 * it (and the usual check at exit still runs).
 *
 * Threads. weft__pool_fail_thread_create makes pthread_create fail in the
 * pools: weft_go, weft_pool_go, weft_wg_go and weft_group_go return
 * WEFT_ENOMEM, the pool stays usable, goroutines blocked in it are not
 * disturbed, and a WaitGroup's waiter is not woken. In a forked child that
 * drops to user nobody (RLIMIT_NPROC is not enforced for root, which is
 * what the tests run as), a real RLIMIT_NPROC makes every thread start
 * fail, the timer thread's included.
 *
 * The hook counts allocations from every thread, so nothing else may
 * allocate while it is armed: goroutines started by a call under test
 * wait on a plain pthread latch until the hook is disarmed, the test
 * thread's parker is allocated before any loop, and no timer fires while
 * the hook is armed (the deadlines under test are far away, or fire only
 * after the successful run). */
#include <check.h>
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft.h"
#include "alloc.h"
#include "go_internal.h"
#include "testutil.h"
#include "timer.h"

#ifdef UNDER_ASAN
#include <sanitizer/lsan_interface.h>
#endif

enum {
    MAX_POINTS = 64,       /* no call here makes more allocations than this */
    WAIT_MS = 10000,       /* bound on any wait; far above what a healthy run needs */
    BLOCK_MS = 20,         /* how long a blocking call under test waits */
    MAX_OCCUPY = 8192,     /* bound on goroutines parked to use up idle threads */
    MAX_TRIAL_THREADS = 64 /* bound on fresh threads tried for one parker allocation */
};
#define HOUR WEFT_SEC(3600)

/* ---- the hook ------------------------------------------------------------ */

static void arm(long k) { weft__alloc_fail_from(k); }

/* Disarm the hook; returns the allocations attempted while it was armed. */
static long disarm(void) {
    long attempts = weft__alloc_count();
    weft__alloc_fail_from(0);
    return attempts;
}

#ifdef UNDER_ASAN
static void assert_no_leak(const char *call, long k) {
    ck_assert_msg(__lsan_do_recoverable_leak_check() == 0,
                  "%s leaked with allocation %ld failing (LeakSanitizer's report is above)", call,
                  k);
}
#else
static void assert_no_leak(const char *call, long k) {
    (void)call;
    (void)k;
}
#endif

/* After a run at k that reached its k-th allocation (and so met a
 * failure): nothing leaked. */
static void after_failure(const char *call, long k) { assert_no_leak(call, k); }

/* The first k whose run made fewer than k allocations: print and return
 * the number of injection points, k - 1. */
static long report_points(const char *call, long k, const char *note) {
    long points = k - 1;
    printf("faults: %s: %ld injection point%s%s%s\n", call, points, points == 1 ? "" : "s",
           note ? "; " : "", note ? note : "");
    fflush(stdout);
    return points;
}

/* ---- helpers ------------------------------------------------------------- */

/* A gate made of pthread primitives only, so that waiting at it allocates
 * nothing of weft's (a weft blocking call would allocate the thread's
 * parker while the hook is armed). */
typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool open;          /* under mutex */
    atomic_int arrived; /* callers that reached the latch */
    atomic_int passed;  /* callers that went through it */
} latch;

static void latch_init(latch *l) {
    pthread_mutex_init(&l->mutex, NULL);
    pthread_cond_init(&l->cond, NULL);
    l->open = false;
    atomic_init(&l->arrived, 0);
    atomic_init(&l->passed, 0);
}

static void latch_destroy(latch *l) {
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->mutex);
}

static void latch_wait(latch *l) {
    atomic_fetch_add(&l->arrived, 1);
    pthread_mutex_lock(&l->mutex);
    while (!l->open) pthread_cond_wait(&l->cond, &l->mutex);
    pthread_mutex_unlock(&l->mutex);
    atomic_fetch_add(&l->passed, 1);
}

static void latch_open(latch *l) {
    pthread_mutex_lock(&l->mutex);
    l->open = true;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mutex);
}

/* A goroutine body: wait at the latch. */
static void wait_at_latch(void *arg) { latch_wait(arg); }

/* A goroutine body: count one run. */
static void count_run(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

static void quiesce(void) {
    ck_assert_msg(goroutines_become(0), "goroutines still running: %d", weft_goroutines());
}

/* Allocate the calling thread's parker now (a first blocking call), so
 * that blocking calls under test allocate only what they allocate. */
/* Block on never (nobody sends) until a short deadline: the calling
 * thread's parker is allocated then, if it had none. */
static int block_briefly_on(weft_chan *never) {
    int result;
    /* WEFT_EAGAIN: the deadline passed before the call (a slow moment), so
     * it never blocked; try again with a longer one. */
    for (long ms = 1;
         (result = weft_chan_recv_until(never, NULL, weft_deadline(WEFT_MS(ms)))) == WEFT_EAGAIN &&
         ms < 1000;
         ms *= 2) {}
    return result;
}

static int block_briefly(void) {
    weft_chan *never = weft_chan_make(0, 0);
    if (!never) return WEFT_ENOMEM;
    int result = block_briefly_on(never);
    weft_chan_release(never);
    return result;
}

static void warm_parker(void) { ck_assert_int_eq(block_briefly(), WEFT_ETIMEDOUT); }

/* Make sure the default pool has an idle thread, so that the next
 * weft_go hands its task over without starting (allocating) a thread. */
static void warm_default_pool(void) {
    atomic_int ran = 0;
    ck_assert_int_eq(weft_go(count_run, &ran), 0);
    ck_assert(int_becomes(&ran, 1));
    quiesce();
}

/* ---- weft_chan_make -------------------------------------------------------- */

static long inject_chan_make(size_t elem_size, size_t cap) {
    char call[64];
    snprintf(call, sizeof call, "weft_chan_make(%zu, %zu)", elem_size, cap);
    for (long k = 1; k <= MAX_POINTS; k++) {
        arm(k);
        errno = 0;
        weft_chan *channel = weft_chan_make(elem_size, cap);
        int error = errno;
        long attempts = disarm();
        if (attempts >= k) {
            ck_assert_msg(!channel, "%s succeeded with allocation %ld failing", call, k);
            ck_assert_int_eq(error, ENOMEM);
            after_failure(call, k);
            continue;
        }
        ck_assert_ptr_nonnull(channel);
        uint64_t value = 42, got = 0;
        if (cap == 0) {
            ck_assert_int_eq(weft_chan_try_send(channel, &value), WEFT_EAGAIN);
        } else {
            ck_assert_int_eq(weft_chan_try_send(channel, &value), 0);
            ck_assert_uint_eq(weft_chan_len(channel), 1);
            ck_assert_int_eq(weft_chan_try_recv(channel, &got), 0);
            ck_assert_uint_eq(got, 42);
        }
        ck_assert_int_eq(weft_chan_close(channel), 0);
        weft_chan_release(channel);
        return report_points(call, k, NULL);
    }
    ck_abort_msg("%s never succeeded", call);
    return -1;
}

START_TEST(chan_make_fails_cleanly_at_every_allocation) {
    ck_assert_int_ge(inject_chan_make(sizeof(uint64_t), 0), 1);
    /* A small ring shares the channel's block; a large one is a second
     * allocation, whose failure must free the first. */
    ck_assert_int_ge(inject_chan_make(sizeof(uint64_t), 1), 1);
    ck_assert_int_ge(inject_chan_make(sizeof(uint64_t), 1 << 20), 2);
}
END_TEST

/* ---- unbounded channels ----------------------------------------------------- */

START_TEST(chan_make_unbounded_fails_cleanly_at_every_allocation) {
    const char *call = "weft_chan_make_unbounded(8)";
    for (long k = 1; k <= MAX_POINTS; k++) {
        arm(k);
        errno = 0;
        weft_chan *channel = weft_chan_make_unbounded(sizeof(uint64_t));
        int error = errno;
        long attempts = disarm();
        if (attempts >= k) {
            ck_assert_msg(!channel, "%s succeeded with allocation %ld failing", call, k);
            ck_assert_int_eq(error, ENOMEM);
            after_failure(call, k);
            continue;
        }
        ck_assert_ptr_nonnull(channel);
        uint64_t value = 42, got = 0;
        ck_assert_int_eq(weft_chan_try_send(channel, &value), 0);
        ck_assert_int_eq(weft_chan_try_recv(channel, &got), 0);
        ck_assert_uint_eq(got, 42);
        weft_chan_release(channel);
        ck_assert_int_ge(report_points(call, k, NULL), 3);
        return;
    }
    ck_abort_msg("%s never succeeded", call);
}
END_TEST

/* The send that fills a block's last slot allocates the next block: when
 * that fails it reports WEFT_ENOMEM and queues nothing, and the channel
 * works on (values in order, the next send succeeding). */
START_TEST(unbounded_send_that_needs_a_block_fails_cleanly) {
    enum { BLOCK = 31 };
    const char *call = "weft_chan_send (unbounded, a block's last slot)";
    for (long k = 1; k <= MAX_POINTS; k++) {
        weft_chan *channel = weft_chan_make_unbounded(sizeof(uint64_t));
        ck_assert_ptr_nonnull(channel);
        for (uint64_t v = 0; v < BLOCK - 1; v++) ck_assert_int_eq(weft_chan_send(channel, &v), 0);
        uint64_t last = BLOCK - 1;
        arm(k);
        int result = weft_chan_send(channel, &last);
        long attempts = disarm();
        if (attempts >= k) {
            ck_assert_int_eq(result, WEFT_ENOMEM);
            ck_assert_uint_eq(weft_chan_len(channel), BLOCK - 1);
            ck_assert_int_eq(weft_chan_send(channel, &last), 0);
        } else {
            ck_assert_int_eq(result, 0);
        }
        uint64_t after = BLOCK;
        ck_assert_int_eq(weft_chan_send(channel, &after), 0);
        for (uint64_t v = 0; v <= BLOCK; v++) {
            uint64_t got = UINT64_MAX;
            ck_assert_int_eq(weft_chan_try_recv(channel, &got), 0);
            ck_assert_uint_eq(got, v);
        }
        ck_assert_int_eq(weft_chan_try_recv(channel, &after), WEFT_EAGAIN);
        weft_chan_release(channel);
        if (attempts >= k) {
            after_failure(call, k);
            continue;
        }
        ck_assert_int_ge(report_points(call, k, NULL), 1);
        return;
    }
    ck_abort_msg("%s never succeeded", call);
}
END_TEST

/* A drained block is kept for the next link: a channel whose length stays
 * short sends on when no memory is left. */
START_TEST(unbounded_send_reuses_a_drained_block_without_allocating) {
    weft_chan *channel = weft_chan_make_unbounded(sizeof(uint64_t));
    ck_assert_ptr_nonnull(channel);
    for (uint64_t v = 0; v < 100; v++) {
        uint64_t got;
        ck_assert_int_eq(weft_chan_send(channel, &v), 0);
        ck_assert_int_eq(weft_chan_recv(channel, &got), 0);
    }
    arm(1);
    for (uint64_t v = 0; v < 1000; v++) {
        uint64_t got = UINT64_MAX;
        ck_assert_int_eq(weft_chan_send(channel, &v), 0);
        ck_assert_int_eq(weft_chan_recv(channel, &got), 0);
        ck_assert_uint_eq(got, v);
    }
    ck_assert_int_eq(disarm(), 0);
    weft_chan_release(channel);
}
END_TEST

/* ---- pools and goroutines -------------------------------------------------- */

START_TEST(pool_new_fails_cleanly_at_every_allocation) {
    weft_pool_opts options = {.max_threads = 4, .name = "faults"};
    for (long k = 1; k <= MAX_POINTS; k++) {
        arm(k);
        errno = 0;
        weft_pool *pool = weft_pool_new(&options);
        int error = errno;
        long attempts = disarm();
        if (attempts >= k) {
            ck_assert_ptr_null(pool);
            ck_assert_int_eq(error, ENOMEM);
            after_failure("weft_pool_new", k);
            continue;
        }
        ck_assert_ptr_nonnull(pool);
        atomic_int ran = 0;
        ck_assert_int_eq(weft_pool_go(pool, count_run, &ran), 0);
        ck_assert(int_becomes(&ran, 1));
        ck_assert_int_eq(weft_pool_close(pool), 0);
        ck_assert_int_ge(report_points("weft_pool_new", k, NULL), 1);
        return;
    }
    ck_abort_msg("weft_pool_new never succeeded");
}
END_TEST

/* weft_pool_go with no idle thread starts one; each failure leaves the
 * pool without threads or goroutines, and the later success runs the
 * call once. A hand-off to the idle thread then allocates nothing. */
START_TEST(pool_go_starting_a_thread_fails_cleanly_at_every_allocation) {
    weft_pool_opts options = {.max_threads = 4, .name = "faults"};
    weft_pool *pool = weft_pool_new(&options);
    ck_assert_ptr_nonnull(pool);
    latch gate;
    latch_init(&gate);
    long k;
    for (k = 1; k <= MAX_POINTS; k++) {
        arm(k);
        int result = weft_pool_go(pool, wait_at_latch, &gate);
        long attempts = disarm();
        if (attempts < k) {
            ck_assert_int_eq(result, 0);
            break;
        }
        ck_assert_int_eq(result, WEFT_ENOMEM);
        ck_assert_int_eq(weft__pool_threads(pool), 0);
        ck_assert_int_eq(weft_goroutines(), 0);
        after_failure("weft_pool_go (new thread)", k);
    }
    ck_assert_int_ge(report_points("weft_pool_go (new thread)", k, NULL), 1);
    latch_open(&gate);
    ck_assert(int_becomes(&gate.passed, 1));
    quiesce();
    ck_assert_int_eq(atomic_load(&gate.arrived), 1); /* the failed calls never ran */

    /* The thread is idle now: a hand-off allocates nothing. */
    atomic_int ran = 0;
    arm(1);
    int result = weft_pool_go(pool, count_run, &ran);
    long attempts = disarm();
    ck_assert_int_eq(result, 0);
    ck_assert_int_eq(attempts, 0);
    ck_assert(int_becomes(&ran, 1));
    report_points("weft_pool_go (hand-off to an idle thread)", 1, "allocates nothing");
    ck_assert_int_eq(weft_pool_close(pool), 0);
    latch_destroy(&gate);
}
END_TEST

/* The default pool: a hand-off to an idle thread allocates nothing. */
/* The default pool: a hand-off to an idle thread allocates nothing. (When
 * Check does not fork, the default pool's idle threads time out after
 * 50 ms: should the idle thread leave between the warm-up and the call,
 * the call starts a thread, which the hook fails; then try again.) */
START_TEST(go_handing_off_to_an_idle_thread_allocates_nothing) {
    for (int round = 0;; round++) {
        warm_default_pool();
        atomic_int ran = 0;
        arm(1);
        int result = weft_go(count_run, &ran);
        long attempts = disarm();
        if (result == WEFT_ENOMEM && attempts >= 1 && round < 20) continue; /* it left */
        ck_assert_int_eq(result, 0);
        ck_assert_int_eq(attempts, 0);
        ck_assert(int_becomes(&ran, 1));
        quiesce();
        break;
    }
    report_points("weft_go (hand-off to an idle thread)", 1, "allocates nothing");
}
END_TEST

/* Threads parked to hold parkers (see take_recycled_parkers). */
typedef struct {
    pthread_t threads[MAX_TRIAL_THREADS];
    int count;
    latch release;
} parker_holders;

typedef struct {
    parker_holders *holders;
    atomic_int done;
    long attempts; /* allocations its first blocking call made; written before done */
} holder;

static void *hold_parker(void *arg) {
    holder *self = arg;
    weft_chan *never = weft_chan_make(0, 0);
    long before = weft__alloc_count(); /* nothing else allocates now */
    if (never) block_briefly_on(never);
    self->attempts = weft__alloc_count() - before;
    weft_chan_release(never);
    atomic_store(&self->done, 1);
    latch_wait(&self->holders->release);
    return NULL;
}

/* Parkers of exited threads are recycled, not freed: start threads that
 * each take one and keep it, until one of them had to allocate its own.
 * Then the recycling list is empty and the next new thread allocates. */
static void take_recycled_parkers(parker_holders *holders, holder *records) {
    latch_init(&holders->release);
    holders->count = 0;
    for (;;) {
        ck_assert_msg(holders->count < MAX_TRIAL_THREADS, "the recycled parkers never ran out");
        holder *record = &records[holders->count];
        record->holders = holders;
        atomic_init(&record->done, 0);
        start_thread(&holders->threads[holders->count++], hold_parker, record);
        ck_assert(int_becomes(&record->done, 1));
        if (record->attempts > 0) return;
    }
}

static void release_parker_holders(parker_holders *holders) {
    latch_open(&holders->release);
    for (int i = 0; i < holders->count; i++) join_thread(holders->threads[i]);
    latch_destroy(&holders->release);
}

/* A pooled thread allocates its parker when it first goes idle; if that
 * fails it leaves the pool, which stays usable. */
/* A pooled thread allocates its parker when it first goes idle; if that
 * fails it leaves the pool, which stays usable. Threads that exit
 * meanwhile (the default pool's idle ones, when Check does not fork and
 * their timeout is short) recycle parkers, which the new thread may take
 * instead of allocating: then the case was not exercised, and it runs
 * again with a new pool. */
START_TEST(pool_thread_whose_parker_fails_leaves_and_pool_stays_usable) {
    bool exercised = false;
    for (int round = 0; round < 20 && !exercised; round++) {
        parker_holders holders;
        holder records[MAX_TRIAL_THREADS];
        take_recycled_parkers(&holders, records);
        weft_pool_opts options = {.max_threads = 4, .name = "faults"};
        weft_pool *pool = weft_pool_new(&options);
        ck_assert_ptr_nonnull(pool);
        latch gate;
        latch_init(&gate);
        ck_assert_int_eq(weft_pool_go(pool, wait_at_latch, &gate), 0);
        ck_assert(int_becomes(&gate.arrived, 1));
        arm(1);
        latch_open(&gate);
        bool ended = goroutines_become(0);
        long attempts = disarm();
        ck_assert(ended);
        exercised = attempts >= 1;
        int left = exercised ? 0 : 1; /* with a recycled parker it stays, idle */
        weft_time give_up = weft_deadline(WEFT_MS(WAIT_MS));
        while (weft__pool_threads(pool) != left && weft_now() < give_up) sleep_ms(1);
        ck_assert_int_eq(weft__pool_threads(pool), left);
        after_failure("a pooled thread's parker", 1);

        atomic_int ran = 0;
        ck_assert_int_eq(weft_pool_go(pool, count_run, &ran), 0);
        ck_assert(int_becomes(&ran, 1));
        quiesce();
        ck_assert_int_eq(weft__pool_threads(pool), 1);
        ck_assert_int_eq(weft_pool_close(pool), 0);
        latch_destroy(&gate);
        release_parker_holders(&holders);
    }
    ck_assert_msg(exercised, "the pooled thread always found a recycled parker");
    report_points("a pooled thread's parker (first time idle)", 2, "the thread leaves the pool");
}
END_TEST

/* ---- weft_wg_go ------------------------------------------------------------ */

typedef struct {
    weft_wg *wg;
    atomic_int started;
    atomic_int returned;
} wg_waiter;

static void *wait_on_wg(void *arg) {
    wg_waiter *self = arg;
    warm_parker();
    atomic_store(&self->started, 1);
    weft_wg_wait(self->wg);
    atomic_store(&self->returned, 1);
    return NULL;
}

/* Each failing weft_wg_go leaves the counter as it was: zero stays zero
 * (a wait returns at once), and a waiter on a pending count is not woken. */
START_TEST(wg_go_fails_cleanly_at_every_allocation) {
    warm_parker();
    warm_default_pool();
    weft_wg wg = WEFT_WG_INIT;
    atomic_int ran = 0;
    long k;
    for (k = 1; k <= MAX_POINTS; k++) {
        arm(k);
        int result = weft_wg_go(&wg, count_run, &ran);
        long attempts = disarm();
        if (attempts < k) {
            ck_assert_int_eq(result, 0);
            break;
        }
        ck_assert_int_eq(result, WEFT_ENOMEM);
        ck_assert_int_eq(weft_wg_wait_until(&wg, WEFT_NOWAIT), 0); /* balanced */
        after_failure("weft_wg_go", k);
    }
    long points = report_points("weft_wg_go (counter at zero)", k, NULL);
    ck_assert_int_ge(points, 1);
    weft_wg_wait(&wg);
    ck_assert_int_eq(atomic_load(&ran), 1);
    quiesce();

    /* Again with a pending count and a waiter parked on it. */
    weft_wg_add(&wg, 1);
    wg_waiter waiter = {.wg = &wg};
    pthread_t thread;
    start_thread(&thread, wait_on_wg, &waiter);
    ck_assert(int_becomes(&waiter.started, 1));
    sleep_ms(SETTLE_MS);
    for (k = 1; k <= MAX_POINTS; k++) {
        arm(k);
        int result = weft_wg_go(&wg, count_run, &ran);
        long attempts = disarm();
        if (attempts < k) {
            ck_assert_int_eq(result, 0);
            break;
        }
        ck_assert_int_eq(result, WEFT_ENOMEM);
        ck_assert_int_eq(atomic_load(&waiter.returned), 0);
        after_failure("weft_wg_go", k);
    }
    /* One point more if the default pool had no idle thread left (its
     * threads time out after 50 ms when Check does not fork). */
    ck_assert_int_ge(report_points("weft_wg_go (a waiter parked)", k, NULL), points);
    ck_assert(int_becomes(&ran, 2));
    quiesce();
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&waiter.returned), 0); /* the add(1) still holds it */
    weft_wg_done(&wg);
    ck_assert(int_becomes(&waiter.returned, 1));
    join_thread(thread);
    weft_wg_destroy(&wg);
}
END_TEST

/* ---- contexts -------------------------------------------------------------- */

enum construct { WITH_CANCEL, WITH_DEADLINE, WITH_TIMEOUT, WITH_VALUE, WITHOUT_CANCEL, CONSTRUCTS };

static const char *const construct_names[CONSTRUCTS] = {
    "weft_ctx_with_cancel", "weft_ctx_with_deadline", "weft_ctx_with_timeout",
    "weft_ctx_with_value", "weft_ctx_without_cancel"};

static int key_one, value_one;

static weft_ctx *construct(enum construct kind, weft_ctx *parent) {
    switch (kind) {
    case WITH_CANCEL: return weft_ctx_with_cancel(parent);
    case WITH_DEADLINE: return weft_ctx_with_deadline(parent, weft_deadline(HOUR));
    case WITH_TIMEOUT: return weft_ctx_with_timeout(parent, HOUR);
    case WITH_VALUE: return weft_ctx_with_value(parent, &key_one, &value_one);
    default: return weft_ctx_without_cancel(parent);
    }
}

static bool has_deadline(enum construct kind) {
    return kind == WITH_DEADLINE || kind == WITH_TIMEOUT;
}

/* Contexts with an hour's timeout, pending in the timer heap. With
 * CK_FORK=no (the valgrind run) every test shares one heap, which never
 * shrinks, so earlier tests' timers may have grown it well past 4096. */
typedef struct {
    weft_ctx *items[1 << 15];
    int count;
} fillers;

/* Add pending timers until the timer heap is full, so that the next timer
 * start must grow it: one more allocation to fail. A with_timeout makes a
 * cancelable context's allocations (as many as a with_cancel), then grows
 * the heap if it is full: a probe whose next allocation fails therefore
 * fails exactly when the heap is full, and otherwise adds one filler. */
static void fill_timer_heap(fillers *made) {
    weft__alloc_fail_from(0);
    weft_ctx *measure = weft_ctx_with_cancel(NULL);
    long cancelable = weft__alloc_count();
    ck_assert_ptr_nonnull(measure);
    weft_ctx_release(measure);
    made->count = 0;
    for (;;) {
        ck_assert_int_lt(made->count, (int)(sizeof made->items / sizeof made->items[0]));
        arm(cancelable + 1);
        weft_ctx *filler = weft_ctx_with_timeout(NULL, HOUR);
        disarm();
        if (!filler) return; /* full */
        made->items[made->count++] = filler;
    }
}

static void release_fillers(fillers *made) {
    for (int i = 0; i < made->count; i++) weft_ctx_release(made->items[i]);
    made->count = 0;
}

enum parent_state { PARENT_LIVE, PARENT_CANCELED, PARENT_BACKGROUND };

static const char *const parent_names[] = {"live parent", "canceled parent", "background parent"};

/* Run one constructor with every k over a parent in the given state. */
static long inject_ctx_constructor(enum construct kind, enum parent_state state) {
    char call[96];
    snprintf(call, sizeof call, "%s (%s)", construct_names[kind], parent_names[state]);
    fillers *made = calloc(1, sizeof *made);
    ck_assert_ptr_nonnull(made);
    if (has_deadline(kind)) fill_timer_heap(made);
    for (long k = 1; k <= MAX_POINTS; k++) {
        /* A parent with one other child, to see that it is unharmed. */
        weft_ctx *parent = NULL, *sibling = NULL;
        if (state != PARENT_BACKGROUND) {
            parent = weft_ctx_with_cancel(NULL);
            ck_assert_ptr_nonnull(parent);
            sibling = weft_ctx_with_cancel(parent);
            ck_assert_ptr_nonnull(sibling);
            if (state == PARENT_CANCELED) weft_ctx_cancel(parent);
        }
        size_t pending = weft__timer_pending();

        arm(k);
        errno = 0;
        weft_ctx *child = construct(kind, parent);
        int error = errno;
        long attempts = disarm();

        bool failed = attempts >= k;
        if (failed) {
            ck_assert_msg(!child, "%s succeeded with allocation %ld failing", call, k);
            ck_assert_int_eq(error, ENOMEM);
        } else {
            ck_assert_ptr_nonnull(child);
            bool timed = has_deadline(kind) && state != PARENT_CANCELED;
            ck_assert_uint_eq(weft__timer_pending(), pending + timed);
            if (kind == WITH_VALUE) ck_assert_ptr_eq(weft_ctx_value(child, &key_one), &value_one);
            int expected = state == PARENT_CANCELED && kind != WITHOUT_CANCEL ? WEFT_ECANCELED : 0;
            ck_assert_int_eq(weft_ctx_err(child), expected);
        }
        ck_assert_uint_eq(weft__timer_pending(),
                          pending + (!failed && has_deadline(kind) && state != PARENT_CANCELED));
        if (parent) {
            /* The parent still cancels; it lists no stale child. */
            weft_ctx_cancel(parent);
            ck_assert_int_eq(weft_ctx_err(sibling), WEFT_ECANCELED);
            ck_assert_int_eq(weft_chan_recv_until(weft_ctx_done(sibling), NULL, WEFT_NOWAIT),
                             WEFT_ECLOSED);
            if (child && kind != WITHOUT_CANCEL)
                ck_assert_int_eq(weft_ctx_err(child), WEFT_ECANCELED);
            if (child && kind == WITHOUT_CANCEL) ck_assert_int_eq(weft_ctx_err(child), 0);
        }
        weft_ctx_release(child);
        weft_ctx_release(sibling);
        weft_ctx_release(parent);
        ck_assert_uint_eq(weft__timer_pending(), pending);
        if (failed) {
            after_failure(call, k);
            continue;
        }
        release_fillers(made);
        free(made);
        return report_points(call, k, NULL);
    }
    ck_abort_msg("%s never succeeded", call);
    return -1;
}

START_TEST(ctx_constructors_fail_cleanly_at_every_allocation) {
    warm_parker();
    for (int kind = 0; kind < CONSTRUCTS; kind++) {
        for (int state = 0; state <= PARENT_BACKGROUND; state++) {
            long points = inject_ctx_constructor(kind, state);
            ck_assert_int_ge(points, 1);
            /* A deadline child of a live parent grows the (full) timer
             * heap: one point more than without a deadline. */
            if (has_deadline(kind) && state == PARENT_LIVE) ck_assert_int_ge(points, 2);
        }
    }
}
END_TEST

typedef struct {
    atomic_int runs;
} after_probe;

static void after_ran(void *arg) { atomic_fetch_add(&((after_probe *)arg)->runs, 1); }

/* weft_ctx_after_func on a live context, then on one that has ended (whose
 * fn starts at once: if weft_go cannot take it, fn runs on a fallback
 * thread, so a failure there is absorbed, never a skipped fn). */
START_TEST(ctx_after_func_fails_cleanly_at_every_allocation) {
    warm_parker();
    warm_default_pool();
    for (int ended = 0; ended <= 1; ended++) {
        const char *call =
            ended ? "weft_ctx_after_func (ended context)" : "weft_ctx_after_func (live context)";
        long k;
        for (k = 1; k <= MAX_POINTS; k++) {
            weft_ctx *ctx = weft_ctx_with_cancel(NULL);
            ck_assert_ptr_nonnull(ctx);
            if (ended) weft_ctx_cancel(ctx);
            after_probe probe = {0};
            arm(k);
            errno = 0;
            weft_ctx_after *after = weft_ctx_after_func(ctx, after_ran, &probe);
            int error = errno;
            long attempts = disarm();
            bool failed = attempts >= k;
            if (after) {
                /* Ended: fn was started whatever failed after the handle. */
                ck_assert_msg(!failed || ended, "%s succeeded with allocation %ld failing", call,
                              k);
                if (!ended) {
                    ck_assert_int_eq(atomic_load(&probe.runs), 0);
                    weft_ctx_cancel(ctx);
                }
                ck_assert(int_becomes(&probe.runs, 1));
                ck_assert(!weft_ctx_after_stop(after));
            } else {
                ck_assert(failed);
                ck_assert_int_eq(error, ENOMEM);
                weft_ctx_cancel(ctx); /* the ctx is unharmed; no fn is registered */
            }
            weft_ctx_release(ctx);
            quiesce();
            ck_assert_int_eq(atomic_load(&probe.runs), after ? 1 : 0);
            if (!failed) break;
            after_failure(call, k);
        }
        ck_assert_int_ge(report_points(call, k, NULL), 1);
    }
}
END_TEST

/* ---- timers ---------------------------------------------------------------- */

START_TEST(after_fails_cleanly_at_every_allocation) {
    warm_parker();
    fillers *made = calloc(1, sizeof *made);
    ck_assert_ptr_nonnull(made);
    fill_timer_heap(made);
    size_t pending = weft__timer_pending();
    long k;
    for (k = 1; k <= MAX_POINTS; k++) {
        weft_time start = weft_now();
        arm(k);
        errno = 0;
        weft_chan *fires = weft_after(WEFT_MS(5));
        int error = errno;
        long attempts = disarm();
        if (attempts < k) {
            ck_assert_ptr_nonnull(fires);
            weft_time when = 0;
            ck_assert_int_eq(weft_chan_recv_until(fires, &when, weft_deadline(WEFT_MS(WAIT_MS))),
                             0);
            ck_assert_int_ge(when, start + WEFT_MS(5));
            weft_chan_release(fires);
            break;
        }
        ck_assert_ptr_null(fires);
        ck_assert_int_eq(error, ENOMEM);
        ck_assert_uint_eq(weft__timer_pending(), pending);
        after_failure("weft_after", k);
    }
    ck_assert_int_ge(report_points("weft_after (timer heap full)", k, NULL), 2);
    ck_assert_uint_eq(weft__timer_pending(), pending);
    release_fillers(made);
    free(made);
}
END_TEST

START_TEST(ticker_new_fails_cleanly_at_every_allocation) {
    warm_parker();
    fillers *made = calloc(1, sizeof *made);
    ck_assert_ptr_nonnull(made);
    fill_timer_heap(made);
    size_t pending = weft__timer_pending();
    long k;
    for (k = 1; k <= MAX_POINTS; k++) {
        arm(k);
        errno = 0;
        weft_ticker *ticker = weft_ticker_new(WEFT_MS(5));
        int error = errno;
        long attempts = disarm();
        if (attempts < k) {
            ck_assert_ptr_nonnull(ticker);
            ck_assert_uint_eq(weft__timer_pending(), pending + 1);
            weft_time when = 0;
            ck_assert_int_eq(weft_chan_recv_until(weft_ticker_chan(ticker), &when,
                                                  weft_deadline(WEFT_MS(WAIT_MS))),
                             0);
            weft_ticker_stop(ticker);
            break;
        }
        ck_assert_ptr_null(ticker);
        ck_assert_int_eq(error, ENOMEM);
        ck_assert_uint_eq(weft__timer_pending(), pending);
        after_failure("weft_ticker_new", k);
    }
    ck_assert_int_ge(report_points("weft_ticker_new (timer heap full)", k, NULL), 2);
    ck_assert_uint_eq(weft__timer_pending(), pending);
    release_fillers(made);
    free(made);
}
END_TEST

/* weft_timer_new (make == NULL) and weft_after_func, with the timer heap
 * full: the chan, the timer and the heap slot each fail cleanly. */
static void inject_timer_make(const char *call, bool after_func) {
    warm_parker();
    fillers *made = calloc(1, sizeof *made);
    ck_assert_ptr_nonnull(made);
    fill_timer_heap(made);
    size_t pending = weft__timer_pending();
    atomic_int runs = 0;
    long k;
    for (k = 1; k <= MAX_POINTS; k++) {
        arm(k);
        errno = 0;
        weft_timer *timer =
            after_func ? weft_after_func(WEFT_MS(5), count_run, &runs) : weft_timer_new(WEFT_MS(5));
        int error = errno;
        long attempts = disarm();
        if (attempts < k) {
            ck_assert_ptr_nonnull(timer);
            ck_assert_uint_eq(weft__timer_pending(), pending + 1);
            if (after_func) {
                ck_assert(int_becomes(&runs, 1));
            } else {
                weft_time when = 0;
                ck_assert_int_eq(weft_chan_recv_until(weft_timer_chan(timer), &when,
                                                      weft_deadline(WEFT_MS(WAIT_MS))),
                                 0);
            }
            weft_timer_free(timer);
            break;
        }
        ck_assert_ptr_null(timer);
        ck_assert_int_eq(error, ENOMEM);
        ck_assert_uint_eq(weft__timer_pending(), pending);
        after_failure(call, k);
    }
    ck_assert_int_ge(report_points(call, k, NULL), after_func ? 2 : 3);
    ck_assert_uint_eq(weft__timer_pending(), pending);
    quiesce();
    ck_assert_int_eq(atomic_load(&runs), after_func ? 1 : 0);
    release_fillers(made);
    free(made);
}

START_TEST(timer_new_fails_cleanly_at_every_allocation) {
    inject_timer_make("weft_timer_new (timer heap full)", false);
}
END_TEST

START_TEST(after_func_timer_fails_cleanly_at_every_allocation) {
    inject_timer_make("weft_after_func (timer heap full)", true);
}
END_TEST

/* A timer made, then the heap filled around it: its resets and stops,
 * a drain of a value included, allocate nothing. */
START_TEST(timer_stop_and_reset_allocate_nothing_with_the_heap_full) {
    warm_parker();
    atomic_int runs = 0;
    weft_timer *timer = weft_timer_new(HOUR);
    weft_timer *func = weft_after_func(HOUR, count_run, &runs);
    ck_assert_ptr_nonnull(timer);
    ck_assert_ptr_nonnull(func);
    ck_assert(weft_timer_stop(timer));
    ck_assert(weft_timer_stop(func));
    fillers *made = calloc(1, sizeof *made);
    ck_assert_ptr_nonnull(made);
    fill_timer_heap(made);
    arm(1);
    bool reset_stopped = weft_timer_reset(timer, HOUR); /* not active: false */
    bool reset_pending = weft_timer_reset(timer, HOUR); /* pending: true */
    bool stopped = weft_timer_stop(timer);              /* pending: true */
    bool func_reset = weft_timer_reset(func, HOUR);     /* not active: false */
    bool func_stopped = weft_timer_stop(func);          /* pending: true */
    ck_assert_int_eq(disarm(), 0);
    ck_assert(!reset_stopped && reset_pending && stopped && !func_reset && func_stopped);
    /* A value waiting in the channel, taken back by a reset. */
    weft_timer_reset(timer, 0);
    weft_time give_up = weft_deadline(WEFT_MS(WAIT_MS));
    while (weft_chan_len(weft_timer_chan(timer)) == 0 && weft_now() < give_up) sleep_ms(1);
    arm(1);
    bool drained = weft_timer_reset(timer, HOUR);
    ck_assert_int_eq(disarm(), 0);
    ck_assert(drained);
    weft_timer_free(timer);
    weft_timer_free(func);
    ck_assert_int_eq(atomic_load(&runs), 0);
    release_fillers(made);
    free(made);
}
END_TEST

/* ---- groups ---------------------------------------------------------------- */

static int task_counts(weft_ctx *ctx, void *arg) {
    (void)ctx;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

START_TEST(group_new_fails_cleanly_at_every_allocation) {
    warm_parker();
    warm_default_pool();
    long k;
    for (k = 1; k <= MAX_POINTS; k++) {
        weft_ctx *parent = weft_ctx_with_cancel(NULL);
        ck_assert_ptr_nonnull(parent);
        weft_ctx *sibling = weft_ctx_with_cancel(parent);
        ck_assert_ptr_nonnull(sibling);
        arm(k);
        errno = 0;
        weft_group *group = weft_group_new(parent);
        int error = errno;
        long attempts = disarm();
        bool failed = attempts >= k;
        if (failed) {
            ck_assert_ptr_null(group);
            ck_assert_int_eq(error, ENOMEM);
        } else {
            ck_assert_ptr_nonnull(group);
            atomic_int ran = 0;
            ck_assert_int_eq(weft_group_go(group, task_counts, &ran), 0);
            ck_assert_int_eq(weft_group_wait(group), 0);
            ck_assert_int_eq(atomic_load(&ran), 1);
        }
        weft_ctx_cancel(parent); /* no stale child from the failed group */
        ck_assert_int_eq(weft_ctx_err(sibling), WEFT_ECANCELED);
        if (group) ck_assert_int_eq(weft_ctx_err(weft_group_ctx(group)), WEFT_ECANCELED);
        weft_group_free(group);
        weft_ctx_release(sibling);
        weft_ctx_release(parent);
        quiesce();
        if (!failed) break;
        after_failure("weft_group_new", k);
    }
    ck_assert_int_ge(report_points("weft_group_new", k, NULL), 2);
}
END_TEST

/* group_go and group_try_go, without a limit and with a limit of 1 (a
 * failed call must give its slot back: else the next try_go would say
 * WEFT_EAGAIN, and the next go would wait forever). */
START_TEST(group_go_fails_cleanly_at_every_allocation) {
    warm_parker();
    for (int try = 0; try <= 1; try++) {
        for (int limit = -1; limit <= 1; limit += 2) {
            char call[64];
            snprintf(call, sizeof call, "%s (%s)", try ? "weft_group_try_go" : "weft_group_go",
                     limit < 0 ? "no limit" : "limit 1");
            warm_default_pool();
            weft_group *group = weft_group_new(NULL);
            ck_assert_ptr_nonnull(group);
            weft_group_set_limit(group, limit);
            atomic_int ran = 0;
            long k;
            for (k = 1; k <= MAX_POINTS; k++) {
                int err_before = weft_ctx_err(weft_group_ctx(group)); /* a wait cancels it */
                arm(k);
                int result = try ? weft_group_try_go(group, task_counts, &ran)
                                 : weft_group_go(group, task_counts, &ran);
                long attempts = disarm();
                if (attempts < k) {
                    ck_assert_int_eq(result, 0);
                    break;
                }
                ck_assert_int_eq(result, WEFT_ENOMEM);
                ck_assert_int_eq(atomic_load(&ran), 0);
                ck_assert_int_eq(weft_ctx_err(weft_group_ctx(group)), err_before);
                /* The slot is free: a task starts at once, and the group
                 * (reusable after a wait) is back where it was. */
                atomic_int probe = 0;
                ck_assert_int_eq(weft_group_try_go(group, task_counts, &probe), 0);
                ck_assert_int_eq(weft_group_wait(group), 0);
                ck_assert_int_eq(atomic_load(&probe), 1);
                quiesce();
                after_failure(call, k);
            }
            ck_assert_int_ge(report_points(call, k, NULL), 1);
            ck_assert_int_eq(weft_group_wait(group), 0);
            ck_assert_int_eq(atomic_load(&ran), 1);
            weft_group_free(group);
            quiesce();
        }
    }
}
END_TEST

/* ---- select over many cases ------------------------------------------------ */

enum { MANY = WEFT_SELECT_STACK_CASES + 1 };

typedef struct {
    weft_chan *unbuffered, *buffered;
    weft_case cases[MANY];
    uint64_t got;
} many_cases;

static void many_cases_init(many_cases *m) {
    m->unbuffered = weft_chan_make(sizeof(uint64_t), 0);
    m->buffered = weft_chan_make(sizeof(uint64_t), 4);
    ck_assert_ptr_nonnull(m->unbuffered);
    ck_assert_ptr_nonnull(m->buffered);
}

static void many_cases_arm(many_cases *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        weft_case each = WEFT_RECV_CASE(i % 2 ? m->unbuffered : m->buffered, &m->got);
        m->cases[i] = each;
    }
}

/* No waiter of a failed select is left on either channel: a send finds no
 * receiver on the unbuffered one, and one sent into the buffered one stays
 * there. */
static void assert_no_waiter_left(many_cases *m) {
    uint64_t value = 9, got = 0;
    ck_assert_int_eq(weft_chan_try_send(m->unbuffered, &value), WEFT_EAGAIN);
    ck_assert_uint_eq(weft_chan_len(m->buffered), 0);
    ck_assert_int_eq(weft_chan_try_send(m->buffered, &value), 0);
    ck_assert_uint_eq(weft_chan_len(m->buffered), 1);
    ck_assert_int_eq(weft_chan_try_recv(m->buffered, &got), 0);
    ck_assert_uint_eq(got, 9);
}

static void many_cases_destroy(many_cases *m) {
    weft_chan_release(m->unbuffered);
    weft_chan_release(m->buffered);
}

/* A partner for a select that must block: it offers a value on the
 * unbuffered channel with try_send (which allocates nothing) until a
 * receiver registered there takes it, or until told to stop. A select
 * registers only after its last allocation, so the partner can complete
 * only a select that allocated everything: no deadline that a slow
 * moment could let pass early. */
typedef struct {
    weft_chan *channel;
    atomic_int stop;
    atomic_int delivered;
} partner;

static void *offer_until_taken(void *arg) {
    partner *self = arg;
    uint64_t value = 11;
    while (!atomic_load(&self->stop)) {
        if (weft_chan_try_send(self->channel, &value) == 0) {
            atomic_store(&self->delivered, 1);
            return NULL;
        }
        sched_yield();
    }
    return NULL;
}

/* Run select (or select_ctx over a fresh cancelable context, when
 * with_ctx) on the first n cases with a partner, hook armed at k.
 * Returns the result; *attempts gets the allocations made. */
static int select_with_partner(many_cases *m, size_t n, bool with_ctx, long k, long *attempts) {
    partner offer = {.channel = m->unbuffered};
    weft_ctx *ctx = NULL;
    if (with_ctx) {
        ctx = weft_ctx_with_cancel(NULL);
        ck_assert_ptr_nonnull(ctx);
    }
    many_cases_arm(m, n);
    m->got = 0;
    pthread_t thread;
    start_thread(&thread, offer_until_taken, &offer);
    arm(k);
    int result =
        with_ctx ? weft_select_ctx(m->cases, n, ctx) : weft_select(m->cases, n, WEFT_FOREVER);
    *attempts = disarm();
    atomic_store(&offer.stop, 1);
    join_thread(thread);
    if (result >= 0) {
        ck_assert_int_eq(atomic_load(&offer.delivered), 1);
        ck_assert_int_eq(result % 2, 1); /* an unbuffered case */
        ck_assert_int_eq(m->cases[result].err, 0);
        ck_assert_uint_eq(m->got, 11);
    } else {
        ck_assert_int_eq(atomic_load(&offer.delivered), 0);
    }
    if (ctx) {
        ck_assert_int_eq(weft_ctx_err(ctx), 0);
        weft_ctx_cancel(ctx);
        weft_ctx_release(ctx);
    }
    return result;
}

START_TEST(select_over_many_cases_fails_cleanly_at_every_allocation) {
    warm_parker();
    many_cases m;
    many_cases_init(&m);

    /* Nothing ready: it blocks (per-case waiters) until the partner comes. */
    long k, attempts;
    for (k = 1; k <= MAX_POINTS; k++) {
        int result = select_with_partner(&m, MANY, false, k, &attempts);
        if (attempts < k) {
            ck_assert_int_ge(result, 0);
            break;
        }
        ck_assert_int_eq(result, WEFT_ENOMEM);
        assert_no_waiter_left(&m);
        after_failure("weft_select (65 cases, blocking)", k);
    }
    ck_assert_int_ge(report_points("weft_select (65 cases, blocking)", k, NULL), 2);
    assert_no_waiter_left(&m);

    /* A value ready: a failed select takes nothing. */
    for (k = 1; k <= MAX_POINTS; k++) {
        uint64_t value = 7;
        if (weft_chan_len(m.buffered) == 0)
            ck_assert_int_eq(weft_chan_try_send(m.buffered, &value), 0);
        many_cases_arm(&m, MANY);
        m.got = 0;
        arm(k);
        int result = weft_select(m.cases, MANY, WEFT_NOWAIT);
        attempts = disarm();
        if (attempts < k) {
            ck_assert_int_ge(result, 0);
            ck_assert_int_eq(result % 2, 0); /* a buffered case */
            ck_assert_int_eq(m.cases[result].err, 0);
            ck_assert_uint_eq(m.got, 7);
            ck_assert_uint_eq(weft_chan_len(m.buffered), 0);
            break;
        }
        ck_assert_int_eq(result, WEFT_ENOMEM);
        ck_assert_uint_eq(weft_chan_len(m.buffered), 1);
        ck_assert_uint_eq(m.got, 0);
        after_failure("weft_select (65 cases, one ready)", k);
    }
    ck_assert_int_ge(report_points("weft_select (65 cases, one ready)", k, NULL), 1);

    /* weft_select_ctx with 64 cases: 65 with the context's. */
    for (k = 1; k <= MAX_POINTS; k++) {
        int result = select_with_partner(&m, MANY - 1, true, k, &attempts);
        if (attempts < k) {
            ck_assert_int_ge(result, 0);
            break;
        }
        ck_assert_int_eq(result, WEFT_ENOMEM);
        assert_no_waiter_left(&m);
        after_failure("weft_select_ctx (64 cases, blocking)", k);
    }
    ck_assert_int_ge(report_points("weft_select_ctx (64 cases, blocking)", k, NULL), 3);
    assert_no_waiter_left(&m);
    many_cases_destroy(&m);
}
END_TEST

/* ---- the first blocking call of a new thread -------------------------------- */

enum blocking_op { CHAN_UNBUFFERED, CHAN_BUFFERED, SELECT_TWO, MUTEX, WAITGROUP, SEMAPHORE, OPS };

static const char *const op_names[OPS] = {
    "weft_chan_recv_until (cap 0)", "weft_chan_recv_until (cap 1)", "weft_select (2 cases)",
    "weft_mutex_lock_until",        "weft_wg_wait_until",           "weft_sem_acquire_until"};

/* The objects a blocking call waits on, none of which becomes ready. */
typedef struct {
    weft_chan *unbuffered, *buffered;
    weft_mutex mutex; /* held by the test thread */
    weft_wg wg;       /* counter 1 */
    weft_sem sem;     /* every unit held */
} blockers;

typedef struct {
    blockers *on;
    enum blocking_op op;
    long k;
    int result;
    long attempts;
    weft_time deadline, returned;
    atomic_int done;
    latch *release; /* the thread keeps its parker until the test ends */
} trial;

static void *run_trial(void *arg) {
    trial *self = arg;
    blockers *on = self->on;
    uint64_t got;
    weft_case cases[2] = {WEFT_RECV_CASE(on->unbuffered, &got), WEFT_RECV_CASE(on->buffered, &got)};
    self->deadline = weft_deadline(WEFT_MS(BLOCK_MS));
    arm(self->k);
    switch (self->op) {
    case CHAN_UNBUFFERED:
        self->result = weft_chan_recv_until(on->unbuffered, &got, self->deadline);
        break;
    case CHAN_BUFFERED:
        self->result = weft_chan_recv_until(on->buffered, &got, self->deadline);
        break;
    case SELECT_TWO: self->result = weft_select(cases, 2, self->deadline); break;
    case MUTEX: self->result = weft_mutex_lock_until(&on->mutex, self->deadline); break;
    case WAITGROUP: self->result = weft_wg_wait_until(&on->wg, self->deadline); break;
    default: self->result = weft_sem_acquire_until(&on->sem, 1, self->deadline); break;
    }
    self->returned = weft_now();
    self->attempts = disarm();
    atomic_store(&self->done, 1);
    latch_wait(self->release);
    return NULL;
}

/* The blockers are as they were: no waiter of the failed call is left on
 * any of them (it would take the value sent, or the unlock, and hold it). */
static void assert_blockers_clean(blockers *on) {
    uint64_t value = 5, got = 0;
    ck_assert_int_eq(weft_chan_try_send(on->unbuffered, &value), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_try_send(on->buffered, &value), 0);
    ck_assert_int_eq(weft_chan_try_recv(on->buffered, &got), 0);
    ck_assert_uint_eq(got, 5);
    weft_mutex_unlock(&on->mutex);
    ck_assert_int_eq(weft_mutex_trylock(&on->mutex), 0);
    weft_wg_done(&on->wg);
    ck_assert_int_eq(weft_wg_wait_until(&on->wg, WEFT_NOWAIT), 0);
    weft_wg_add(&on->wg, 1);
    weft_sem_release(&on->sem, 1);
    ck_assert_int_eq(weft_sem_try_acquire(&on->sem, 1), 0);
}

/* ---- the goroutine dump ------------------------------------------------- */

/* More blocked threads than weft_debug_dump keeps on its stack, so that
 * it allocates; with memory gone it still writes a whole, parseable dump,
 * of as many threads as its stack holds, and says it is truncated. */
enum { DUMPED_THREADS = 40, DUMP_STACK_ROOM = 32 /* dump.c's STACK_ROOM */ };
static weft_chan *dumped_channel;

static void *block_for_dump(void *unused) {
    (void)unused;
    int value;
    weft_chan_recv(dumped_channel, &value);
    return NULL;
}

/* Dump into memory; the number of thread lines and whether it says it
 * was truncated. */
static int dump_threads(int *truncated) {
    static char text[64 * 1024];
    int fd = memfd_create("dump", MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    weft_debug_dump(fd);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    ssize_t got = read(fd, text, sizeof text - 1);
    close(fd);
    ck_assert_int_gt(got, 0);
    text[got] = '\0';
    ck_assert_msg(strncmp(text, "weft: dump-begin ", 17) == 0, "no dump-begin: %s", text);
    const char *end = strstr(text, "weft: dump-end lines=");
    ck_assert_msg(end && end[strlen(end) - 1] == '\n', "no dump-end: %s", text);
    int lines = 0;
    for (const char *line = strstr(text, "\nweft: thread "); line;
         line = strstr(line + 1, "\nweft: thread "))
        lines++;
    int announced;
    ck_assert_int_eq(sscanf(end, "weft: dump-end lines=%d truncated=%d", &announced, truncated), 2);
    ck_assert_int_eq(announced, lines);
    return lines;
}

START_TEST(debug_dump_truncates_cleanly_at_every_allocation) {
    dumped_channel = weft_chan_make(sizeof(int), 0);
    pthread_t threads[DUMPED_THREADS];
    for (int i = 0; i < DUMPED_THREADS; i++) start_thread(&threads[i], block_for_dump, NULL);
    int truncated;
    weft_time give_up = weft_deadline(WEFT_MS(WAIT_MS));
    while (dump_threads(&truncated) < DUMPED_THREADS) {
        ck_assert(weft_now() < give_up);
        sleep_ms(5);
    }
    long k = 1;
    for (;; k++) {
        ck_assert_int_le(k, MAX_POINTS);
        arm(k);
        int lines = dump_threads(&truncated);
        long attempts = disarm();
        if (attempts < k) {
            ck_assert_int_eq(lines, DUMPED_THREADS);
            ck_assert_int_eq(truncated, 0);
            break;
        }
        ck_assert_int_eq(lines, DUMP_STACK_ROOM);
        ck_assert_int_eq(truncated, 1);
        after_failure("weft_debug_dump", k);
    }
    ck_assert_int_ge(report_points("weft_debug_dump (40 threads)", k, NULL), 1);
    weft_chan_close(dumped_channel);
    for (int i = 0; i < DUMPED_THREADS; i++) join_thread(threads[i]);
    weft_chan_release(dumped_channel);
}
END_TEST

/* Each blocking call, made first thing in a new thread, allocates that
 * thread's parker. When that fails, every one of them (channel
 * operations, select and the sync primitives) still waits, by yielding.
 * Parkers of exited threads are recycled: a trial whose call allocated
 * nothing got one, and the next trial runs in another new thread (each
 * keeps its parker until the end, so the recycled ones run out). */
START_TEST(first_blocking_call_of_a_new_thread_survives_a_failed_parker) {
    warm_parker();
    blockers on;
    on.unbuffered = weft_chan_make(sizeof(uint64_t), 0);
    on.buffered = weft_chan_make(sizeof(uint64_t), 1);
    ck_assert_ptr_nonnull(on.unbuffered);
    ck_assert_ptr_nonnull(on.buffered);
    weft_mutex_init(&on.mutex);
    weft_mutex_lock(&on.mutex);
    weft_wg_init(&on.wg);
    weft_wg_add(&on.wg, 1);
    ck_assert_int_eq(weft_sem_init(&on.sem, 1), 0);
    ck_assert_int_eq(weft_sem_try_acquire(&on.sem, 1), 0);

    latch release;
    latch_init(&release);
    enum { MAX_TRIALS = OPS * 2 + MAX_TRIAL_THREADS };
    trial *trials = calloc(MAX_TRIALS, sizeof *trials);
    pthread_t *threads = calloc(MAX_TRIALS, sizeof *threads);
    ck_assert_ptr_nonnull(trials);
    ck_assert_ptr_nonnull(threads);
    int started = 0;

    for (int op = 0; op < OPS; op++) {
        long k = 1;
        bool absorbed = false;
        for (;;) {
            ck_assert_int_lt(started, MAX_TRIALS);
            trial *each = &trials[started];
            *each = (trial){.on = &on, .op = op, .k = k, .release = &release};
            start_thread(&threads[started++], run_trial, each);
            ck_assert(int_becomes(&each->done, 1));
            if (each->attempts == 0) continue; /* a recycled parker: try a newer thread */
            bool failed = each->attempts >= k;
            /* It worked: waited until its deadline, never less. */
            ck_assert_msg(each->result == WEFT_ETIMEDOUT,
                          "%s with allocation %ld failing returned %d", op_names[op], k,
                          each->result);
            ck_assert_int_ge(each->returned, each->deadline);
            absorbed |= failed;
            assert_blockers_clean(&on);
            if (!failed) break;
            after_failure(op_names[op], k);
            k++;
        }
        char call[96];
        snprintf(call, sizeof call, "first blocking call of a new thread, %s", op_names[op]);
        ck_assert_int_ge(
            report_points(call, k,
                          absorbed ? "absorbed: it waits by yielding" : "no allocation failed"),
            1);
    }

    latch_open(&release);
    for (int i = 0; i < started; i++) join_thread(threads[i]);
    free(threads);
    free(trials);
    latch_destroy(&release);
    weft_mutex_unlock(&on.mutex);
    weft_mutex_destroy(&on.mutex);
    weft_wg_done(&on.wg);
    weft_wg_destroy(&on.wg);
    weft_sem_release(&on.sem, 1);
    weft_sem_destroy(&on.sem);
    weft_chan_release(on.unbuffered);
    weft_chan_release(on.buffered);
}
END_TEST

/* ---- thread creation failing (the pools' hook) ------------------------------ */

typedef struct {
    weft_chan *channel;
    atomic_int blocked;
    atomic_int result; /* 1 until it returns */
    uint64_t got;
} parked_receiver;

static void receive_once(void *arg) {
    parked_receiver *self = arg;
    atomic_store(&self->blocked, 1);
    atomic_store(&self->result, weft_chan_recv(self->channel, &self->got));
}

/* A pool whose thread starts fail: WEFT_ENOMEM each time, nothing runs,
 * the goroutine blocked in the pool stays blocked, and the pool runs
 * work again once threads can start. */
START_TEST(pool_go_with_failing_thread_start_disturbs_nobody) {
    warm_parker();
    weft_pool_opts options = {.max_threads = 8, .name = "faults"};
    weft_pool *pool = weft_pool_new(&options);
    ck_assert_ptr_nonnull(pool);
    parked_receiver receiver = {.channel = weft_chan_make(sizeof(uint64_t), 0)};
    atomic_init(&receiver.result, 1);
    ck_assert_ptr_nonnull(receiver.channel);
    ck_assert_int_eq(weft_pool_go(pool, receive_once, &receiver), 0);
    ck_assert(int_becomes(&receiver.blocked, 1));
    sleep_ms(SETTLE_MS);

    atomic_int ran = 0;
    weft__pool_fail_thread_create(3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(weft_pool_go(pool, count_run, &ran), WEFT_ENOMEM);
        ck_assert_int_eq(weft__pool_threads(pool), 1);
        ck_assert_int_eq(weft_goroutines(), 1);
    }
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&ran), 0);
    ck_assert_int_eq(atomic_load(&receiver.result), 1); /* still blocked */

    ck_assert_int_eq(weft_pool_go(pool, count_run, &ran), 0); /* the hook is used up */
    ck_assert(int_becomes(&ran, 1));
    uint64_t value = 77;
    ck_assert_int_eq(weft_chan_send(receiver.channel, &value), 0);
    ck_assert(int_becomes(&receiver.result, 0));
    ck_assert_uint_eq(receiver.got, 77);
    quiesce();
    ck_assert_int_eq(weft_pool_close(pool), 0);
    weft_chan_release(receiver.channel);
    weft__pool_fail_thread_create(0);
}
END_TEST

enum starter { START_GO, START_WG_GO, START_GROUP_GO, STARTERS };

static const char *const starter_names[STARTERS] = {"weft_go", "weft_wg_go", "weft_group_go"};

static int task_waits_at_latch(weft_ctx *ctx, void *arg) {
    (void)ctx;
    latch_wait(arg);
    return 0;
}

/* Start goroutines that wait at gate until one start fails for want of a
 * thread: every idle thread of the default pool is then busy, and the
 * failure came from the thread start. Returns how many started. */
static int occupy_until_thread_start_fails(enum starter how, latch *gate, weft_wg *wg,
                                           weft_group *group) {
    for (int started = 0; started < MAX_OCCUPY; started++) {
        weft__pool_fail_thread_create(1);
        int result;
        switch (how) {
        case START_GO: result = weft_go(wait_at_latch, gate); break;
        case START_WG_GO: result = weft_wg_go(wg, wait_at_latch, gate); break;
        default: result = weft_group_go(group, task_waits_at_latch, gate); break;
        }
        if (result != 0) {
            weft__pool_fail_thread_create(0);
            ck_assert_msg(result == WEFT_ENOMEM, "%s returned %d", starter_names[how], result);
            return started;
        }
    }
    weft__pool_fail_thread_create(0);
    ck_abort_msg("%s never needed a new thread", starter_names[how]);
    return -1;
}

/* weft_go, weft_wg_go and weft_group_go when the default pool has no idle
 * thread and cannot start one: WEFT_ENOMEM; the goroutines already running
 * are untouched; the WaitGroup is balanced and its waiter is not woken;
 * the group records no error and its context stays live. */
START_TEST(default_pool_starters_with_failing_thread_start_disturb_nobody) {
    warm_parker();
    for (int how = 0; how < STARTERS; how++) {
        latch gate;
        latch_init(&gate);
        weft_wg wg = WEFT_WG_INIT;
        weft_wg_add(&wg, 1); /* a pending count with a waiter on it */
        wg_waiter waiter = {.wg = &wg};
        pthread_t thread;
        start_thread(&thread, wait_on_wg, &waiter);
        ck_assert(int_becomes(&waiter.started, 1));
        weft_group *group = weft_group_new(NULL);
        ck_assert_ptr_nonnull(group);

        int base = weft_goroutines();
        int started = occupy_until_thread_start_fails(how, &gate, &wg, group);
        ck_assert(int_becomes(&gate.arrived, started));
        ck_assert_int_eq(weft_goroutines(), base + started);
        sleep_ms(SETTLE_MS);
        ck_assert_int_eq(atomic_load(&gate.arrived), started); /* the failed one never ran */
        ck_assert_int_eq(atomic_load(&waiter.returned), 0);
        ck_assert_int_eq(weft_ctx_err(weft_group_ctx(group)), 0);

        /* Threads can start again: the next call works. */
        switch (how) {
        case START_GO: ck_assert_int_eq(weft_go(wait_at_latch, &gate), 0); break;
        case START_WG_GO: ck_assert_int_eq(weft_wg_go(&wg, wait_at_latch, &gate), 0); break;
        default: ck_assert_int_eq(weft_group_go(group, task_waits_at_latch, &gate), 0); break;
        }
        ck_assert(int_becomes(&gate.arrived, started + 1));
        latch_open(&gate);
        ck_assert(int_becomes(&gate.passed, started + 1));
        ck_assert_int_eq(weft_group_wait(group), 0);
        weft_group_free(group);
        quiesce();
        sleep_ms(SETTLE_MS);
        ck_assert_int_eq(atomic_load(&waiter.returned), 0); /* the add(1) still holds it */
        weft_wg_done(&wg);
        ck_assert(int_becomes(&waiter.returned, 1));
        join_thread(thread);
        weft_wg_destroy(&wg);
        latch_destroy(&gate);
        printf("faults: %s: WEFT_ENOMEM when a thread start fails (after %d hand-offs to idle "
               "threads)\n",
               starter_names[how], started);
        fflush(stdout);
    }
}
END_TEST

/* An after-function whose context ends while no pooled thread can run it
 * runs anyway, once, on a fallback thread (ctx.h: never skipped). */
START_TEST(after_func_runs_once_when_no_pooled_thread_can_start) {
    warm_parker();
    latch gate;
    latch_init(&gate);
    int started = occupy_until_thread_start_fails(START_GO, &gate, NULL, NULL);
    ck_assert(int_becomes(&gate.arrived, started));
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    after_probe probe = {0};
    weft_ctx_after *after = weft_ctx_after_func(ctx, after_ran, &probe);
    ck_assert_ptr_nonnull(after);
    weft__pool_fail_thread_create(MAX_OCCUPY);
    weft_ctx_cancel(ctx);
    ck_assert(int_becomes(&probe.runs, 1));
    weft__pool_fail_thread_create(0);
    ck_assert(!weft_ctx_after_stop(after));
    weft_ctx_release(ctx);
    latch_open(&gate);
    ck_assert(int_becomes(&gate.passed, started));
    quiesce();
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&probe.runs), 1);
    latch_destroy(&gate);
}
END_TEST

/* An after_func timer that fires while no goroutine can start is late,
 * not lost: it tries again and runs fn once when a thread can start. */
START_TEST(after_func_timer_runs_once_when_goroutines_can_start_again) {
    warm_parker();
    latch gate;
    latch_init(&gate);
    int started = occupy_until_thread_start_fails(START_GO, &gate, NULL, NULL);
    ck_assert(int_becomes(&gate.arrived, started));
    atomic_int runs = 0;
    weft__pool_fail_thread_create(MAX_OCCUPY);
    weft_timer *timer = weft_after_func(0, count_run, &runs);
    ck_assert_ptr_nonnull(timer);
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&runs), 0);
    ck_assert_uint_ge(weft__timer_pending(), 1); /* waiting to try again */
    weft__pool_fail_thread_create(0);
    ck_assert(int_becomes(&runs, 1));
    ck_assert(!weft_timer_stop(timer));
    weft_timer_free(timer);
    latch_open(&gate);
    ck_assert(int_becomes(&gate.passed, started));
    quiesce();
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&runs), 1);
    latch_destroy(&gate);
}
END_TEST

/* Until fn has been handed to a goroutine, stop prevents it. */
START_TEST(after_func_timer_stopped_while_no_goroutine_can_start_never_runs) {
    warm_parker();
    latch gate;
    latch_init(&gate);
    int started = occupy_until_thread_start_fails(START_GO, &gate, NULL, NULL);
    ck_assert(int_becomes(&gate.arrived, started));
    atomic_int runs = 0;
    weft__pool_fail_thread_create(MAX_OCCUPY);
    weft_timer *timer = weft_after_func(0, count_run, &runs);
    ck_assert_ptr_nonnull(timer);
    sleep_ms(SETTLE_MS);
    ck_assert(weft_timer_stop(timer));
    weft__pool_fail_thread_create(0);
    latch_open(&gate);
    ck_assert(int_becomes(&gate.passed, started));
    quiesce();
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&runs), 0);
    weft_timer_free(timer);
    latch_destroy(&gate);
}
END_TEST

/* ---- fresh processes: the first weft_go, and RLIMIT_NPROC ------------------- */

/* What a forked child reports, in memory shared with the parent. */
typedef struct {
    int step;    /* 0: every step passed; else the first that failed */
    long points; /* injection points the child covered */
    char note[160];
} child_report;

enum {
    STEP_OK = 0,
    STEP_GO = 10,
    STEP_COUNT,
    STEP_RUN,
    STEP_WG,
    STEP_TIMER,
    STEP_CTX,
    STEP_TICKER,
    STEP_RESTORE,
    STEP_NO_SETUID = 90,   /* could not become an ordinary user */
    STEP_NOT_ENFORCED = 91 /* RLIMIT_NPROC did not stop pthread_create */
};

static child_report *report;

/* Fork, run body in the child (which writes *report and exits with its
 * step), and return the child's report. */
static child_report run_in_child(int (*body)(void)) {
    report = mmap(NULL, sizeof *report, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(report, MAP_FAILED);
    memset(report, 0, sizeof *report);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        alarm(20);
        int step = body();
        report->step = step;
        _exit(step);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "the child died of signal %d", WTERMSIG(status));
    child_report copy = *report;
    munmap(report, sizeof *report);
    ck_assert_int_eq(WEXITSTATUS(status), copy.step);
    return copy;
}

static int threads_in_this_process(void) {
    FILE *status = fopen("/proc/self/status", "r");
    if (!status) return -1;
    char line[256];
    int threads = -1;
    while (fgets(line, sizeof line, status))
        if (sscanf(line, "Threads: %d", &threads) == 1) break;
    fclose(status);
    return threads;
}

static latch child_gate;

/* In a process where weft has run nothing: the first weft_go starts the
 * default pool and its first thread, with every k. */
static int child_first_go(void) {
    latch_init(&child_gate);
    long k;
    for (k = 1; k <= MAX_POINTS; k++) {
        arm(k);
        int result = weft_go(wait_at_latch, &child_gate);
        long attempts = disarm();
        if (attempts < k) {
            if (result != 0) return STEP_GO;
            break;
        }
        if (result != WEFT_ENOMEM) return STEP_GO;
        if (weft_goroutines() != 0) return STEP_COUNT;
    }
    report->points = k - 1;
    latch_open(&child_gate);
    weft_time give_up = weft_deadline(WEFT_MS(WAIT_MS));
    while (weft_goroutines() != 0)
        if (weft_now() > give_up) return STEP_COUNT;
    if (atomic_load(&child_gate.passed) != 1) return STEP_RUN;
    if (weft__pool_threads_started(weft__pool_default()) != 1) return STEP_RUN;
    return STEP_OK;
}

START_TEST(first_go_in_a_fresh_process_fails_cleanly_at_every_allocation) {
#ifdef UNDER_TSAN
    puts("faults: first weft_go in a fresh process: skipped under ThreadSanitizer (fork)");
    return;
#endif
    child_report result = run_in_child(child_first_go);
    ck_assert_msg(result.step == STEP_OK, "the child failed at step %d", result.step);
    ck_assert_int_ge(result.points, 1);
    report_points("weft_go (first call: starts the default pool and a thread)", result.points + 1,
                  NULL);
}
END_TEST

static void *no_op_thread(void *arg) { return arg; }

/* As user nobody with RLIMIT_NPROC's soft limit at 1, no thread can
 * start: weft_go gives WEFT_ENOMEM, timers give EAGAIN (their thread
 * cannot start); with the limit raised again, everything works. */
static int child_under_nproc_limit(void) {
    bool single = threads_in_this_process() == 1; /* else a timer thread was rebuilt at fork */
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
        snprintf(report->note, sizeof report->note, "setuid(nobody): %s", strerror(errno));
        return STEP_NO_SETUID;
    }
    struct rlimit limit;
    if (getrlimit(RLIMIT_NPROC, &limit) != 0) return STEP_NO_SETUID;
    struct rlimit low = {.rlim_cur = 1, .rlim_max = limit.rlim_max};
    if (setrlimit(RLIMIT_NPROC, &low) != 0) return STEP_NO_SETUID;
    pthread_t probe;
    if (pthread_create(&probe, NULL, no_op_thread, NULL) == 0) {
        pthread_join(probe, NULL);
        return STEP_NOT_ENFORCED;
    }

    atomic_int ran = 0;
    if (weft_go(count_run, &ran) != WEFT_ENOMEM) return STEP_GO;
    if (weft_goroutines() != 0) return STEP_COUNT;
    weft_wg wg = WEFT_WG_INIT;
    if (weft_wg_go(&wg, count_run, &ran) != WEFT_ENOMEM) return STEP_WG;
    if (weft_wg_wait_until(&wg, WEFT_NOWAIT) != 0) return STEP_WG;
    if (single) {
        errno = 0;
        if (weft_after(HOUR) != NULL || errno != EAGAIN) return STEP_TIMER;
        errno = 0;
        if (weft_ctx_with_timeout(NULL, HOUR) != NULL || errno != EAGAIN) return STEP_CTX;
        errno = 0;
        if (weft_ticker_new(HOUR) != NULL || errno != EAGAIN) return STEP_TICKER;
    }
    weft_ctx *plain = weft_ctx_with_cancel(NULL); /* needs no thread */
    if (!plain) return STEP_CTX;
    weft_ctx_cancel(plain);
    weft_ctx_release(plain);

    if (setrlimit(RLIMIT_NPROC, &limit) != 0) return STEP_RESTORE;
    if (weft_go(count_run, &ran) != 0) return STEP_GO;
    if (weft_wg_go(&wg, count_run, &ran) != 0) return STEP_WG;
    if (weft_wg_wait_until(&wg, weft_deadline(WEFT_MS(WAIT_MS))) != 0) return STEP_WG;
    weft_time give_up = weft_deadline(WEFT_MS(WAIT_MS));
    while (atomic_load(&ran) != 2)
        if (weft_now() > give_up) return STEP_RUN;
    weft_chan *fires = weft_after(WEFT_MS(1));
    if (!fires) return STEP_TIMER;
    int received = weft_chan_recv_until(fires, NULL, weft_deadline(WEFT_MS(WAIT_MS)));
    weft_chan_release(fires);
    if (received != 0) return STEP_TIMER;
    weft_ctx *timed = weft_ctx_with_timeout(NULL, WEFT_MS(1));
    if (!timed) return STEP_CTX;
    int ended = weft_chan_recv_until(weft_ctx_done(timed), NULL, weft_deadline(WEFT_MS(WAIT_MS)));
    int err = weft_ctx_err(timed);
    weft_ctx_release(timed);
    if (ended != WEFT_ECLOSED || err != WEFT_ETIMEDOUT) return STEP_CTX;
    snprintf(report->note, sizeof report->note, "%s",
             single ? "timer thread start failed with EAGAIN too" : "timers not checked");
    return STEP_OK;
}

/* Root (uid 0, or CAP_SYS_RESOURCE) is exempt from RLIMIT_NPROC: the
 * kernel lets its thread starts through whatever the limit. */
static int child_root_under_nproc_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NPROC, &limit) != 0) return STEP_NO_SETUID;
    struct rlimit low = {.rlim_cur = 1, .rlim_max = limit.rlim_max};
    if (setrlimit(RLIMIT_NPROC, &low) != 0) return STEP_NO_SETUID;
    pthread_t probe;
    int error = pthread_create(&probe, NULL, no_op_thread, NULL);
    if (error == 0) pthread_join(probe, NULL);
    snprintf(report->note, sizeof report->note, "%s",
             error == 0 ? "ignored (root is exempt), so the child drops to user nobody"
                        : "enforced");
    return STEP_OK;
}

START_TEST(rlimit_nproc_makes_thread_starts_fail_cleanly) {
#ifdef UNDER_TSAN
    puts("faults: RLIMIT_NPROC: skipped under ThreadSanitizer (fork)");
    return;
#endif
    if (geteuid() == 0) {
        child_report root = run_in_child(child_root_under_nproc_limit);
        printf("faults: RLIMIT_NPROC soft 1 as root: %s\n", root.note);
        fflush(stdout);
    }
    child_report result = run_in_child(child_under_nproc_limit);
    if (result.step == STEP_NO_SETUID || result.step == STEP_NOT_ENFORCED) {
        printf("faults: RLIMIT_NPROC not testable here (%s); the pools' hook covers thread "
               "starts\n",
               result.step == STEP_NO_SETUID ? result.note : "not enforced");
        fflush(stdout);
        return;
    }
    ck_assert_msg(result.step == STEP_OK, "the child failed at step %d", result.step);
    printf("faults: RLIMIT_NPROC (soft 1, as nobody): weft_go and weft_wg_go give WEFT_ENOMEM, "
           "%s; all work once it is raised\n",
           result.note);
    fflush(stdout);
}
END_TEST

static Suite *faults_suite(void) {
    Suite *suite = suite_create("faults");
    /* First: in a process where weft has started no thread yet. */
    TCase *fresh = new_case(suite, "fresh process");
    tcase_add_test(fresh, first_go_in_a_fresh_process_fails_cleanly_at_every_allocation);
    tcase_add_test(fresh, rlimit_nproc_makes_thread_starts_fail_cleanly);

    TCase *allocation = new_case(suite, "allocation");
    tcase_add_test(allocation, chan_make_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, chan_make_unbounded_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, unbounded_send_that_needs_a_block_fails_cleanly);
    tcase_add_test(allocation, unbounded_send_reuses_a_drained_block_without_allocating);
    tcase_add_test(allocation, pool_new_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, pool_go_starting_a_thread_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, go_handing_off_to_an_idle_thread_allocates_nothing);
    tcase_add_test(allocation, pool_thread_whose_parker_fails_leaves_and_pool_stays_usable);
    tcase_add_test(allocation, wg_go_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, ctx_constructors_fail_cleanly_at_every_allocation);
    tcase_add_test(allocation, ctx_after_func_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, after_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, ticker_new_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, timer_new_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, after_func_timer_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, timer_stop_and_reset_allocate_nothing_with_the_heap_full);
    tcase_add_test(allocation, group_new_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, group_go_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, select_over_many_cases_fails_cleanly_at_every_allocation);
    tcase_add_test(allocation, first_blocking_call_of_a_new_thread_survives_a_failed_parker);
    tcase_add_test(allocation, debug_dump_truncates_cleanly_at_every_allocation);

    TCase *threads = new_case(suite, "thread start");
    tcase_add_test(threads, pool_go_with_failing_thread_start_disturbs_nobody);
    tcase_add_test(threads, default_pool_starters_with_failing_thread_start_disturb_nobody);
    tcase_add_test(threads, after_func_runs_once_when_no_pooled_thread_can_start);
    tcase_add_test(threads, after_func_timer_runs_once_when_goroutines_can_start_again);
    tcase_add_test(threads, after_func_timer_stopped_while_no_goroutine_can_start_never_runs);
    return suite;
}

int main(void) {
    bool forking = check_forks();
    /* Without fork every test shares one default pool; a short idle
     * timeout lets its threads leave before exit (valgrind would call a
     * live thread's TLS "possibly lost"). */
    if (!forking) setenv("WEFT_IDLE_TIMEOUT_MS", "50", 0);

    SRunner *runner = srunner_create(faults_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    if (!forking) {
        weft_time give_up = weft_deadline(WEFT_SEC(10));
        while (weft__pool_threads(weft__pool_default()) != 0 && weft_now() < give_up) sleep_ms(5);
        sleep_ms(50);
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
