/* Check suite for weft/sync.h: WaitGroup, Mutex, RWMutex, Once, Semaphore, Cond.
 *
 * Concurrency tests check invariants under contention (exact totals, "never
 * more than capacity", "never a reader beside a writer") rather than
 * timing. Timing is asserted only as "never early" and as generous upper
 * bounds. Misuse is tested in a forked child whose stderr goes to a pipe:
 * the child must die of SIGABRT after printing exactly one "weft: ..." line. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft/go.h"
#include "weft/sync.h"
#include "alloc.h"
#include "go_internal.h"
#include "sync_internal.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------- */

/* A deadline `ms` from now. */
static weft_time in_ms(long ms) { return weft_deadline(WEFT_MS(ms)); }

/* Threads used by many tests: start count copies of body(arg). */
enum { MAX_THREADS = 32 };

static void start_threads(pthread_t *threads, int count, void *(*body)(void *), void *arg) {
    for (int i = 0; i < count; i++) start_thread(&threads[i], body, arg);
}

static void join_threads(pthread_t *threads, int count) {
    for (int i = 0; i < count; i++) join_thread(threads[i]);
}

/* ==== WaitGroup ========================================================= */

static atomic_int wg_fn_runs;

static void count_run(void *arg) {
    (void)arg;
    atomic_fetch_add(&wg_fn_runs, 1);
}

/* First in the suite: with CK_FORK=no it must run before any test leaves
 * idle pooled threads behind, or weft_go would not need a thread start. */
START_TEST(test_wg_go_undoes_add_when_go_fails) {
    if (weft__pool_threads(weft__pool_default()) != 0) return; /* a thread is idle: cannot fail */
    weft_wg wg = WEFT_WG_INIT;
    atomic_store(&wg_fn_runs, 0);
    weft__pool_fail_thread_create(1000);
    int error = weft_wg_go(&wg, count_run, NULL);
    weft__pool_fail_thread_create(0);
    ck_assert_int_lt(error, 0);
    ck_assert_int_eq(weft_wg_wait_until(&wg, WEFT_NOWAIT), 0); /* counter back at zero */
    ck_assert_int_eq(atomic_load(&wg_fn_runs), 0);
}
END_TEST

START_TEST(test_wg_go_reports_enomem_without_add) {
    weft_wg wg = WEFT_WG_INIT;
    atomic_store(&wg_fn_runs, 0);
    weft__alloc_fail_from(1);
    int error = weft_wg_go(&wg, count_run, NULL);
    weft__alloc_fail_from(0);
    ck_assert_int_eq(error, WEFT_ENOMEM);
    ck_assert_int_eq(weft_wg_wait_until(&wg, WEFT_NOWAIT), 0);
    ck_assert_int_eq(weft_wg_go(&wg, NULL, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_wg_wait_until(&wg, WEFT_NOWAIT), 0);
}
END_TEST

typedef struct {
    weft_wg *wg;
    atomic_int *finished;
    long delay_ms;
} wg_worker_args;

static void *wg_worker(void *arg) {
    wg_worker_args *args = arg;
    sleep_ms(args->delay_ms);
    atomic_fetch_add(args->finished, 1);
    weft_wg_done(args->wg);
    return NULL;
}

START_TEST(test_wg_wait_returns_after_all_done) {
    enum { WORKERS = 8 };
    weft_wg wg;
    weft_wg_init(&wg);
    atomic_int finished = 0;
    wg_worker_args args[WORKERS];
    pthread_t threads[WORKERS];
    weft_wg_add(&wg, WORKERS);
    for (int i = 0; i < WORKERS; i++) {
        args[i] = (wg_worker_args){&wg, &finished, 5 + 3 * i};
        start_thread(&threads[i], wg_worker, &args[i]);
    }
    weft_wg_wait(&wg);
    ck_assert_int_eq(atomic_load(&finished), WORKERS);
    join_threads(threads, WORKERS);
    weft_wg_destroy(&wg);
}
END_TEST

static void *wg_waiter(void *arg) {
    wg_worker_args *args = arg;
    weft_wg_wait(args->wg);
    WORKER_EXPECT(atomic_load(args->finished) == 1);
    return NULL;
}

START_TEST(test_wg_wait_releases_every_waiter) {
    enum { WAITERS = 6 };
    weft_wg wg = WEFT_WG_INIT;
    atomic_int finished = 0;
    wg_worker_args args = {&wg, &finished, 0};
    pthread_t threads[WAITERS];
    weft_wg_add(&wg, 1);
    start_threads(threads, WAITERS, wg_waiter, &args);
    sleep_ms(SETTLE_MS);
    atomic_store(&finished, 1);
    weft_wg_done(&wg);
    join_threads(threads, WAITERS);
    check_worker_failures();
}
END_TEST

START_TEST(test_wg_reusable_after_wait) {
    enum { ROUNDS = 20, WORKERS = 4 };
    weft_wg wg = WEFT_WG_INIT;
    for (int round = 0; round < ROUNDS; round++) {
        atomic_int finished = 0;
        wg_worker_args args = {&wg, &finished, round % 3};
        pthread_t threads[WORKERS];
        weft_wg_add(&wg, WORKERS);
        start_threads(threads, WORKERS, wg_worker, &args);
        weft_wg_wait(&wg);
        ck_assert_int_eq(atomic_load(&finished), WORKERS);
        join_threads(threads, WORKERS);
    }
}
END_TEST

START_TEST(test_wg_wait_until_times_out_never_early) {
    weft_wg wg = WEFT_WG_INIT;
    weft_wg_add(&wg, 1);
    weft_time deadline = in_ms(30);
    ck_assert_int_eq(weft_wg_wait_until(&wg, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    weft_wg_done(&wg);
    ck_assert_int_eq(weft_wg_wait_until(&wg, in_ms(30)), 0);
}
END_TEST

START_TEST(test_wg_wait_until_past_deadline_gives_eagain) {
    weft_wg wg = WEFT_WG_INIT;
    ck_assert_int_eq(weft_wg_wait_until(&wg, WEFT_NOWAIT), 0); /* zero: no wait needed */
    weft_wg_add(&wg, 2);
    ck_assert_int_eq(weft_wg_wait_until(&wg, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(weft_wg_wait_until(&wg, weft_now() - 1), WEFT_EAGAIN);
    weft_wg_add(&wg, -2);
    ck_assert_int_eq(weft_wg_wait_until(&wg, WEFT_NOWAIT), 0);
}
END_TEST

START_TEST(test_wg_wait_until_returns_when_done_in_time) {
    weft_wg wg = WEFT_WG_INIT;
    atomic_int finished = 0;
    wg_worker_args args = {&wg, &finished, 20};
    pthread_t thread;
    weft_wg_add(&wg, 1);
    start_thread(&thread, wg_worker, &args);
    ck_assert_int_eq(weft_wg_wait_until(&wg, in_ms(30000)), 0);
    ck_assert_int_eq(atomic_load(&finished), 1);
    join_thread(thread);
}
END_TEST

typedef struct {
    atomic_int *finished;
} wg_task_args;

static void wg_task(void *arg) {
    wg_task_args *args = arg;
    sleep_ms(5);
    atomic_fetch_add(args->finished, 1);
}

START_TEST(test_wg_go_runs_fn_and_wait_waits_for_it) {
    enum { TASKS = 16 };
    weft_wg wg = WEFT_WG_INIT;
    atomic_int finished = 0;
    wg_task_args args = {&finished};
    for (int i = 0; i < TASKS; i++) ck_assert_int_eq(weft_wg_go(&wg, wg_task, &args), 0);
    weft_wg_wait(&wg);
    ck_assert_int_eq(atomic_load(&finished), TASKS);
}
END_TEST

/* Waiters with short deadlines come and go while the counter moves; a
 * waiter without a deadline must still be released at zero. */
typedef struct {
    weft_wg *wg;
    atomic_bool *stop;
} wg_churn_args;

static void *wg_timed_waiter(void *arg) {
    wg_churn_args *args = arg;
    while (!atomic_load(args->stop)) {
        int error = weft_wg_wait_until(args->wg, weft_deadline(WEFT_US(50)));
        WORKER_EXPECT(error == 0 || error == WEFT_ETIMEDOUT || error == WEFT_EAGAIN);
    }
    return NULL;
}

START_TEST(test_wg_timed_out_waiters_lose_no_wakeup) {
    enum { TIMED = 3, ROUNDS = 200 };
    weft_wg wg = WEFT_WG_INIT;
    atomic_bool stop = false;
    wg_churn_args args = {&wg, &stop};
    pthread_t threads[TIMED];
    start_threads(threads, TIMED, wg_timed_waiter, &args);
    for (int round = 0; round < scaled(ROUNDS); round++) {
        atomic_int finished = 0;
        wg_worker_args worker = {&wg, &finished, 0};
        pthread_t thread;
        weft_wg_add(&wg, 1);
        start_thread(&thread, wg_worker, &worker);
        ck_assert_int_eq(weft_wg_wait_until(&wg, in_ms(30000)), 0);
        ck_assert_int_eq(atomic_load(&finished), 1);
        join_thread(thread);
    }
    atomic_store(&stop, true);
    join_threads(threads, TIMED);
    check_worker_failures();
}
END_TEST

static void wg_negative_misuse(void) {
    weft_wg wg = WEFT_WG_INIT;
    weft_wg_add(&wg, 1);
    weft_wg_done(&wg);
    weft_wg_done(&wg);
}

START_TEST(test_wg_negative_counter_aborts) {
    expect_abort(wg_negative_misuse, "weft: negative WaitGroup counter");
}
END_TEST

/* ==== Mutex ============================================================= */

typedef struct {
    weft_mutex *mutex;
    long iterations;
    long counter; /* plain, not atomic: the mutex must protect it */
} mutex_count_args;

static void *mutex_incrementer(void *arg) {
    mutex_count_args *args = arg;
    for (long i = 0; i < args->iterations; i++) {
        weft_mutex_lock(args->mutex);
        args->counter++;
        weft_mutex_unlock(args->mutex);
    }
    return NULL;
}

START_TEST(test_mutex_excludes_under_contention) {
    enum { THREADS = 8 };
    weft_mutex mutex;
    weft_mutex_init(&mutex);
    mutex_count_args args = {&mutex, scaled(100000), 0};
    pthread_t threads[THREADS];
    start_threads(threads, THREADS, mutex_incrementer, &args);
    join_threads(threads, THREADS);
    ck_assert_int_eq(args.counter, THREADS * args.iterations);
    weft_mutex_destroy(&mutex);
}
END_TEST

static void *mutex_trylock_elsewhere(void *arg) {
    WORKER_EXPECT(weft_mutex_trylock(arg) == WEFT_EAGAIN);
    return NULL;
}

START_TEST(test_mutex_trylock_on_locked_gives_eagain) {
    weft_mutex mutex = WEFT_MUTEX_INIT;
    ck_assert_int_eq(weft_mutex_trylock(&mutex), 0);
    ck_assert_int_eq(weft_mutex_trylock(&mutex), WEFT_EAGAIN);
    pthread_t thread;
    start_thread(&thread, mutex_trylock_elsewhere, &mutex);
    join_thread(thread);
    check_worker_failures();
    weft_mutex_unlock(&mutex);
    ck_assert_int_eq(weft_mutex_trylock(&mutex), 0);
    weft_mutex_unlock(&mutex);
}
END_TEST

START_TEST(test_mutex_lock_until_times_out_never_early) {
    weft_mutex mutex = WEFT_MUTEX_INIT;
    weft_mutex_lock(&mutex);
    weft_time deadline = in_ms(30);
    ck_assert_int_eq(weft_mutex_lock_until(&mutex, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    ck_assert_int_eq(weft_mutex_lock_until(&mutex, WEFT_NOWAIT), WEFT_EAGAIN);
    weft_mutex_unlock(&mutex);
    ck_assert_int_eq(weft_mutex_lock_until(&mutex, WEFT_NOWAIT), 0); /* free: no wait needed */
    weft_mutex_unlock(&mutex);
}
END_TEST

typedef struct {
    weft_mutex *mutex;
    atomic_int *released;
    long hold_ms;
} mutex_holder_args;

static void *mutex_release_later(void *arg) {
    mutex_holder_args *args = arg;
    sleep_ms(args->hold_ms);
    atomic_store(args->released, 1);
    weft_mutex_unlock(args->mutex);
    return NULL;
}

START_TEST(test_mutex_lock_until_succeeds_when_released_in_time) {
    weft_mutex mutex = WEFT_MUTEX_INIT;
    atomic_int released = 0;
    mutex_holder_args args = {&mutex, &released, 30};
    weft_mutex_lock(&mutex);
    pthread_t thread;
    start_thread(&thread, mutex_release_later, &args); /* unlocks our lock: allowed, as in Go */
    ck_assert_int_eq(weft_mutex_lock_until(&mutex, in_ms(30000)), 0);
    ck_assert_int_eq(atomic_load(&released), 1);
    weft_mutex_unlock(&mutex);
    join_thread(thread);
}
END_TEST

static weft_mutex static_mutex = WEFT_MUTEX_INIT;
static long static_counter;

static void *static_mutex_incrementer(void *arg) {
    long iterations = *(long *)arg;
    for (long i = 0; i < iterations; i++) {
        weft_mutex_lock(&static_mutex);
        static_counter++;
        weft_mutex_unlock(&static_mutex);
    }
    return NULL;
}

START_TEST(test_mutex_static_initializer_works) {
    enum { THREADS = 4 };
    long iterations = scaled(20000);
    pthread_t threads[THREADS];
    static_counter = 0;
    start_threads(threads, THREADS, static_mutex_incrementer, &iterations);
    join_threads(threads, THREADS);
    ck_assert_int_eq(static_counter, THREADS * iterations);
    ck_assert_int_eq(weft_mutex_trylock(&static_mutex), 0);
    ck_assert_int_eq(weft_mutex_trylock(&static_mutex), WEFT_EAGAIN);
    weft_mutex_unlock(&static_mutex);
}
END_TEST

/* Waiters that give up at short deadlines must not swallow the wake-up
 * meant for a waiter without one. */
typedef struct {
    weft_mutex *mutex;
    atomic_bool *stop;
    long counter;          /* under mutex */
    atomic_long *acquired; /* progress of the lockers without deadline */
} mutex_churn_args;

static void *mutex_timed_locker(void *arg) {
    mutex_churn_args *args = arg;
    while (!atomic_load(args->stop)) {
        int error = weft_mutex_lock_until(args->mutex, weft_deadline(WEFT_US(20)));
        if (error == 0) {
            args->counter++;
            weft_mutex_unlock(args->mutex);
        } else {
            WORKER_EXPECT(error == WEFT_ETIMEDOUT || error == WEFT_EAGAIN);
        }
    }
    return NULL;
}

static void *mutex_plain_locker(void *arg) {
    mutex_churn_args *args = arg;
    for (long i = 0; i < scaled(20000); i++) {
        weft_mutex_lock(args->mutex);
        args->counter++;
        weft_mutex_unlock(args->mutex);
        atomic_fetch_add(args->acquired, 1);
    }
    return NULL;
}

START_TEST(test_mutex_timed_out_waiters_lose_no_wakeup) {
    enum { TIMED = 3, PLAIN = 3 };
    weft_mutex mutex = WEFT_MUTEX_INIT;
    atomic_bool stop = false;
    atomic_long acquired = 0;
    mutex_churn_args args = {&mutex, &stop, 0, &acquired};
    pthread_t timed[TIMED], plain[PLAIN];
    start_threads(timed, TIMED, mutex_timed_locker, &args);
    start_threads(plain, PLAIN, mutex_plain_locker, &args);
    wait_for_count_long(&acquired, PLAIN * scaled(20000));
    join_threads(plain, PLAIN);
    atomic_store(&stop, true);
    join_threads(timed, TIMED);
    check_worker_failures();
    ck_assert_int_ge(args.counter, PLAIN * scaled(20000));
}
END_TEST

/* Hammers take the mutex back to back, each holding it for a while (the
 * pattern that starves a parked waiter under a purely barging lock: the
 * unlocker re-locks before the woken waiter runs). A victim that arrives
 * while it is held must get it every time, within a generous bound. */
typedef struct {
    weft_mutex *mutex;
    atomic_bool *stop;
    long counter; /* under mutex */
} mutex_hammer_args;

static void *mutex_hammer(void *arg) {
    mutex_hammer_args *args = arg;
    while (!atomic_load_explicit(args->stop, memory_order_relaxed)) {
        weft_mutex_lock(args->mutex);
        weft_time until = weft_now() + WEFT_US(50);
        while (weft_now() < until) args->counter++;
        weft_mutex_unlock(args->mutex);
    }
    return NULL;
}

START_TEST(test_mutex_no_starvation) {
    enum { HAMMERS = 2, VICTIM_ROUNDS = 100 };
    weft_mutex mutex = WEFT_MUTEX_INIT;
    atomic_bool stop = false;
    mutex_hammer_args args = {&mutex, &stop, 0};
    pthread_t threads[HAMMERS];
    start_threads(threads, HAMMERS, mutex_hammer, &args);
    for (int round = 0; round < scaled(VICTIM_ROUNDS); round++) {
        sleep_ms(1);
        int error = weft_mutex_lock_until(&mutex, weft_deadline(WEFT_SEC(10)));
        ck_assert_msg(error == 0, "victim starved: no lock in 10 s (round %d)", round);
        args.counter++;
        weft_mutex_unlock(&mutex);
    }
    atomic_store(&stop, true);
    join_threads(threads, HAMMERS);
}
END_TEST

typedef struct {
    weft_mutex *mutex;
    atomic_int acquired; /* the waiter holds the mutex */
    atomic_int checked;  /* the test has looked: the waiter may unlock */
} mutex_waiter_args;

static void *mutex_waiting_locker(void *arg) {
    mutex_waiter_args *args = arg;
    weft_mutex_lock(args->mutex);
    atomic_store(&args->acquired, 1);
    weft_time give_up = weft_now() + WEFT_SEC(20);
    while (!atomic_load(&args->checked) && weft_now() < give_up) sleep_ms(1);
    weft_mutex_unlock(args->mutex);
    return NULL;
}

/* The starvation rule itself, without timing races: a waiter queued for
 * more than 1 ms is handed the mutex by the next unlock, so the unlocker
 * cannot take it straight back. (The waiter keeps the mutex until the test
 * has looked, so a fast waiter cannot make the trylock succeed.) */
START_TEST(test_mutex_unlock_hands_off_to_long_waiter) {
    weft_mutex mutex = WEFT_MUTEX_INIT;
    mutex_waiter_args args = {.mutex = &mutex};
    weft_mutex_lock(&mutex);
    pthread_t thread;
    start_thread(&thread, mutex_waiting_locker, &args);
    weft_time give_up = weft_now() + WEFT_SEC(20);
    while (!weft__mutex_has_waiters(&mutex)) {
        ck_assert_msg(weft_now() < give_up, "the waiter never queued");
        sleep_ms(1);
    }
    sleep_ms(5); /* it has now waited more than 1 ms */
    weft_mutex_unlock(&mutex);
    int error = weft_mutex_trylock(&mutex); /* the mutex is the waiter's now */
    atomic_store(&args.checked, 1);
    if (error == 0) weft_mutex_unlock(&mutex);
    join_thread(thread);
    ck_assert_int_eq(error, WEFT_EAGAIN);
    ck_assert_int_eq(atomic_load(&args.acquired), 1);
    ck_assert_int_eq(weft_mutex_trylock(&mutex), 0);
    weft_mutex_unlock(&mutex);
}
END_TEST

/* A thread whose parker cannot be allocated still blocks correctly (it
 * yields in a loop). Recycled parkers make the allocation unnecessary when
 * threads have exited before (CK_FORK=no), which weakens but does not
 * break the test. */
typedef struct {
    weft_mutex *mutex;
    atomic_int *acquired;
    int timed_out_result;
    bool timed_out_early;
} no_parker_args;

static void *mutex_locker_without_parker(void *arg) {
    no_parker_args *args = arg;
    weft_time deadline = weft_deadline(WEFT_MS(10));
    args->timed_out_result = weft_mutex_lock_until(args->mutex, deadline);
    args->timed_out_early = weft_now() < deadline;
    weft_mutex_lock(args->mutex);
    atomic_store(args->acquired, 1);
    weft_mutex_unlock(args->mutex);
    return NULL;
}

START_TEST(test_mutex_blocks_without_a_parker) {
    weft_mutex mutex = WEFT_MUTEX_INIT;
    atomic_int acquired = 0;
    no_parker_args args = {&mutex, &acquired, 1, true};
    weft_mutex_lock(&mutex);
    weft__alloc_fail_from(1);
    pthread_t thread;
    start_thread(&thread, mutex_locker_without_parker, &args);
    sleep_ms(50);
    ck_assert_int_eq(atomic_load(&acquired), 0);
    weft_mutex_unlock(&mutex);
    join_thread(thread);
    weft__alloc_fail_from(0);
    ck_assert_int_eq(args.timed_out_result, WEFT_ETIMEDOUT);
    ck_assert(!args.timed_out_early);
    ck_assert_int_eq(atomic_load(&acquired), 1);
}
END_TEST

static void mutex_unlock_unlocked_misuse(void) {
    weft_mutex mutex = WEFT_MUTEX_INIT;
    weft_mutex_unlock(&mutex);
}

static void mutex_unlock_twice_misuse(void) {
    weft_mutex mutex = WEFT_MUTEX_INIT;
    weft_mutex_lock(&mutex);
    weft_mutex_unlock(&mutex);
    weft_mutex_unlock(&mutex);
}

START_TEST(test_mutex_unlock_unlocked_aborts) {
    expect_abort(mutex_unlock_unlocked_misuse, "weft: unlock of unlocked mutex");
    expect_abort(mutex_unlock_twice_misuse, "weft: unlock of unlocked mutex");
}
END_TEST

/* ==== RWMutex =========================================================== */

typedef struct {
    weft_rwmutex *rwmutex;
    atomic_int *inside;
    int expected_inside;
} rw_share_args;

/* Take a read lock, then wait (while holding it) until the other reader is
 * inside too: only possible if the two share the lock. */
static void *rw_sharing_reader(void *arg) {
    rw_share_args *args = arg;
    weft_rwmutex_rlock(args->rwmutex);
    atomic_fetch_add(args->inside, 1);
    weft_time give_up = weft_now() + WEFT_SEC(20);
    while (atomic_load(args->inside) < args->expected_inside && weft_now() < give_up) sched_yield();
    WORKER_EXPECT(atomic_load(args->inside) >= args->expected_inside);
    weft_rwmutex_runlock(args->rwmutex);
    return NULL;
}

START_TEST(test_rwmutex_readers_share) {
    enum { READERS = 3 };
    weft_rwmutex rwmutex;
    weft_rwmutex_init(&rwmutex);
    atomic_int inside = 0;
    rw_share_args args = {&rwmutex, &inside, READERS};
    pthread_t threads[READERS];
    start_threads(threads, READERS, rw_sharing_reader, &args);
    join_threads(threads, READERS);
    check_worker_failures();
    ck_assert_int_eq(weft_rwmutex_trylock(&rwmutex), 0); /* all read locks were dropped */
    weft_rwmutex_unlock(&rwmutex);
    weft_rwmutex_destroy(&rwmutex);
}
END_TEST

typedef struct {
    weft_rwmutex *rwmutex;
    atomic_int readers_in, writers_in;
    long a, b;   /* written by writers in step, read by readers */
    long writes; /* under the write lock */
    long iterations;
    bool timed; /* use the _until forms with short deadlines */
} rw_invariant_args;

static void *rw_checking_writer(void *arg) {
    rw_invariant_args *args = arg;
    for (long i = 0; i < args->iterations; i++) {
        if (args->timed) {
            int error = weft_rwmutex_lock_until(args->rwmutex, weft_deadline(WEFT_US(100)));
            if (error) {
                WORKER_EXPECT(error == WEFT_ETIMEDOUT || error == WEFT_EAGAIN);
                continue;
            }
        } else {
            weft_rwmutex_lock(args->rwmutex);
        }
        WORKER_EXPECT(atomic_fetch_add(&args->writers_in, 1) == 0);
        WORKER_EXPECT(atomic_load(&args->readers_in) == 0);
        args->a++;
        args->b++;
        args->writes++;
        atomic_fetch_sub(&args->writers_in, 1);
        weft_rwmutex_unlock(args->rwmutex);
    }
    return NULL;
}

static void *rw_checking_reader(void *arg) {
    rw_invariant_args *args = arg;
    for (long i = 0; i < args->iterations; i++) {
        if (args->timed) {
            int error = weft_rwmutex_rlock_until(args->rwmutex, weft_deadline(WEFT_US(100)));
            if (error) {
                WORKER_EXPECT(error == WEFT_ETIMEDOUT || error == WEFT_EAGAIN);
                continue;
            }
        } else {
            weft_rwmutex_rlock(args->rwmutex);
        }
        atomic_fetch_add(&args->readers_in, 1);
        WORKER_EXPECT(atomic_load(&args->writers_in) == 0);
        WORKER_EXPECT(args->a == args->b);
        atomic_fetch_sub(&args->readers_in, 1);
        weft_rwmutex_runlock(args->rwmutex);
    }
    return NULL;
}

static void rw_invariants_under_contention(bool timed) {
    enum { WRITERS = 3, READERS = 5 };
    weft_rwmutex rwmutex = WEFT_RWMUTEX_INIT;
    rw_invariant_args args = {.rwmutex = &rwmutex, .iterations = scaled(20000), .timed = timed};
    pthread_t writers[WRITERS], readers[READERS];
    start_threads(writers, WRITERS, rw_checking_writer, &args);
    start_threads(readers, READERS, rw_checking_reader, &args);
    join_threads(writers, WRITERS);
    join_threads(readers, READERS);
    check_worker_failures();
    ck_assert_int_eq(args.a, args.writes);
    ck_assert_int_eq(args.b, args.writes);
    if (!timed) ck_assert_int_eq(args.writes, WRITERS * args.iterations);
    ck_assert_int_eq(weft_rwmutex_trylock(&rwmutex), 0); /* nothing left held or queued */
    weft_rwmutex_unlock(&rwmutex);
}

START_TEST(test_rwmutex_writer_excludes_readers_and_writers) {
    rw_invariants_under_contention(false);
}
END_TEST

START_TEST(test_rwmutex_timed_waiters_keep_exclusion_and_lose_no_wakeup) {
    rw_invariants_under_contention(true);
}
END_TEST

typedef struct {
    weft_rwmutex *rwmutex;
    atomic_int *started, *holding;
    weft_time deadline; /* for the _until variants */
    int result;
} rw_blocker_args;

static void *rw_blocking_writer(void *arg) {
    rw_blocker_args *args = arg;
    atomic_fetch_add(args->started, 1);
    args->result = weft_rwmutex_lock_until(args->rwmutex, args->deadline);
    if (args->result == 0) {
        atomic_fetch_add(args->holding, 1);
        weft_rwmutex_unlock(args->rwmutex);
    }
    return NULL;
}

static void *rw_blocking_reader(void *arg) {
    rw_blocker_args *args = arg;
    atomic_fetch_add(args->started, 1);
    args->result = weft_rwmutex_rlock_until(args->rwmutex, args->deadline);
    if (args->result == 0) {
        atomic_fetch_add(args->holding, 1);
        weft_rwmutex_runlock(args->rwmutex);
    }
    return NULL;
}

/* Wait until a writer is queued on rwmutex, or until `until`: tryrlock
 * fails only while one is (no writer holds it in these tests). */
static bool writer_queued_before(weft_rwmutex *rwmutex, weft_time until) {
    for (;;) {
        if (weft_rwmutex_tryrlock(rwmutex) != 0) return true;
        weft_rwmutex_runlock(rwmutex);
        if (weft_now() >= until) return false;
        sleep_ms(1);
    }
}

static void wait_for_queued_writer(weft_rwmutex *rwmutex) {
    ck_assert_msg(writer_queued_before(rwmutex, weft_now() + WEFT_SEC(20)),
                  "the writer never queued");
}

START_TEST(test_rwmutex_pending_writer_blocks_new_reader) {
    weft_rwmutex rwmutex = WEFT_RWMUTEX_INIT;
    atomic_int started = 0, holding = 0;
    rw_blocker_args writer = {&rwmutex, &started, &holding, WEFT_FOREVER, -1};
    weft_rwmutex_rlock(&rwmutex);
    pthread_t thread;
    start_thread(&thread, rw_blocking_writer, &writer);
    wait_for_queued_writer(&rwmutex);
    /* A new reader (this thread again, or any other) must now wait. */
    weft_time deadline = in_ms(30);
    ck_assert_int_eq(weft_rwmutex_rlock_until(&rwmutex, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    ck_assert_int_eq(weft_rwmutex_tryrlock(&rwmutex), WEFT_EAGAIN);
    ck_assert_int_eq(atomic_load(&holding), 0);
    weft_rwmutex_runlock(&rwmutex); /* the last reader out admits the writer */
    join_thread(thread);
    ck_assert_int_eq(writer.result, 0);
    ck_assert_int_eq(atomic_load(&holding), 1);
}
END_TEST

/* A writer queues behind our read lock, a reader queues behind the writer,
 * the writer times out: the reader must be let in while we still hold our
 * read lock. If the reader is slow to queue and the writer times out first,
 * the scenario did not happen: run it again. */
START_TEST(test_rwmutex_timed_out_writer_admits_readers_it_held_back) {
    bool reader_was_held_back = false;
    for (int attempt = 0; attempt < 20 && !reader_was_held_back; attempt++) {
        weft_rwmutex rwmutex = WEFT_RWMUTEX_INIT;
        atomic_int started = 0, holding = 0;
        rw_blocker_args writer = {&rwmutex, &started, &holding, in_ms(300), -1};
        rw_blocker_args reader = {&rwmutex, &started, &holding, in_ms(30000), -1};
        weft_rwmutex_rlock(&rwmutex);
        pthread_t writer_thread, reader_thread;
        start_thread(&writer_thread, rw_blocking_writer, &writer);
        if (!writer_queued_before(&rwmutex, writer.deadline)) { /* it timed out first */
            join_thread(writer_thread);
            weft_rwmutex_runlock(&rwmutex);
            continue;
        }
        start_thread(&reader_thread, rw_blocking_reader, &reader);
        while (!weft__rwmutex_readers_queued(&rwmutex) && atomic_load(&holding) == 0 &&
               weft_now() < writer.deadline)
            sleep_ms(1);
        reader_was_held_back = weft__rwmutex_readers_queued(&rwmutex);
        join_thread(writer_thread);
        ck_assert_int_eq(writer.result, WEFT_ETIMEDOUT);
        join_thread(reader_thread); /* admitted while we still hold our read lock */
        ck_assert_int_eq(reader.result, 0);
        weft_rwmutex_runlock(&rwmutex);
        ck_assert_int_eq(weft_rwmutex_trylock(&rwmutex), 0);
        weft_rwmutex_unlock(&rwmutex);
    }
    ck_assert_msg(reader_was_held_back, "the reader never queued behind the writer");
}
END_TEST

typedef struct {
    weft_rwmutex *rwmutex;
    atomic_int calling; /* 1 just before the runlock call */
} rw_runlock_args;

static void *rw_runlocking(void *arg) {
    rw_runlock_args *args = arg;
    atomic_store(&args->calling, 1);
    weft_rwmutex_runlock(args->rwmutex);
    return NULL;
}

/* The last reader out while a writer waits must leave the count only once
 * it holds the rwmutex's internal lock. Were the count to fall first, the
 * queued writer could give up, another thread take the free lock, release
 * it and destroy the rwmutex, all before the reader's hand-off touched it.
 * Holding the internal lock here stops the reader at that point. */
START_TEST(test_rwmutex_last_reader_stays_counted_until_its_hand_off) {
    weft_rwmutex *rwmutex = malloc(sizeof *rwmutex);
    ck_assert_ptr_nonnull(rwmutex);
    weft_rwmutex_init(rwmutex);
    weft_rwmutex_rlock(rwmutex);
    atomic_int started = 0, holding = 0;
    rw_blocker_args writer = {rwmutex, &started, &holding, in_ms(30000), -1};
    pthread_t writer_thread, reader_thread;
    start_thread(&writer_thread, rw_blocking_writer, &writer);
    wait_for_queued_writer(rwmutex);

    weft__sync_lock(&rwmutex->lock);
    rw_runlock_args reader = {rwmutex, 0};
    start_thread(&reader_thread, rw_runlocking, &reader);
    wait_for_count(&reader.calling, 1);
    uint32_t readers_while_stopped = weft__rwmutex_readers(rwmutex);
    weft__sync_unlock(&rwmutex->lock);

    join_thread(reader_thread);
    join_thread(writer_thread);
    ck_assert_uint_eq(readers_while_stopped, 1);
    ck_assert_int_eq(writer.result, 0); /* the reader handed it the lock */
    ck_assert_int_eq(atomic_load(&holding), 1);
    weft_rwmutex_destroy(rwmutex);
    free(rwmutex);
}
END_TEST

START_TEST(test_rwmutex_writer_unlock_admits_all_queued_readers) {
    enum { READERS = 3 };
    weft_rwmutex rwmutex = WEFT_RWMUTEX_INIT;
    atomic_int inside = 0;
    rw_share_args args = {&rwmutex, &inside, READERS};
    weft_rwmutex_lock(&rwmutex);
    pthread_t threads[READERS];
    start_threads(threads, READERS, rw_sharing_reader, &args);
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&inside), 0); /* the writer keeps them out */
    weft_rwmutex_unlock(&rwmutex);
    join_threads(threads, READERS); /* each waits until all READERS are inside together */
    check_worker_failures();
}
END_TEST

START_TEST(test_rwmutex_lock_until_times_out_never_early) {
    weft_rwmutex rwmutex = WEFT_RWMUTEX_INIT;
    weft_rwmutex_rlock(&rwmutex);
    ck_assert_int_eq(weft_rwmutex_lock_until(&rwmutex, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(weft_rwmutex_trylock(&rwmutex), WEFT_EAGAIN);
    weft_time deadline = in_ms(30);
    ck_assert_int_eq(weft_rwmutex_lock_until(&rwmutex, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    /* The writer that gave up no longer holds readers back. */
    ck_assert_int_eq(weft_rwmutex_tryrlock(&rwmutex), 0);
    weft_rwmutex_runlock(&rwmutex);
    weft_rwmutex_runlock(&rwmutex);
    ck_assert_int_eq(weft_rwmutex_lock_until(&rwmutex, WEFT_NOWAIT), 0);
    ck_assert_int_eq(weft_rwmutex_rlock_until(&rwmutex, WEFT_NOWAIT), WEFT_EAGAIN);
    weft_rwmutex_unlock(&rwmutex);
}
END_TEST

static void rw_runlock_unlocked_misuse(void) {
    weft_rwmutex rwmutex = WEFT_RWMUTEX_INIT;
    weft_rwmutex_runlock(&rwmutex);
}

static void rw_runlock_write_locked_misuse(void) {
    weft_rwmutex rwmutex = WEFT_RWMUTEX_INIT;
    weft_rwmutex_lock(&rwmutex);
    weft_rwmutex_runlock(&rwmutex);
}

static void rw_unlock_unlocked_misuse(void) {
    weft_rwmutex rwmutex = WEFT_RWMUTEX_INIT;
    weft_rwmutex_unlock(&rwmutex);
}

static void rw_unlock_read_locked_misuse(void) {
    weft_rwmutex rwmutex = WEFT_RWMUTEX_INIT;
    weft_rwmutex_rlock(&rwmutex);
    weft_rwmutex_unlock(&rwmutex);
}

START_TEST(test_rwmutex_misuse_aborts) {
    expect_abort(rw_runlock_unlocked_misuse, "weft: runlock of unlocked rwmutex");
    expect_abort(rw_runlock_write_locked_misuse, "weft: runlock of unlocked rwmutex");
    expect_abort(rw_unlock_unlocked_misuse, "weft: unlock of unlocked rwmutex");
    expect_abort(rw_unlock_read_locked_misuse, "weft: unlock of unlocked rwmutex");
}
END_TEST

/* ==== Once ============================================================== */

typedef struct {
    weft_once once;
    pthread_barrier_t start;
    atomic_int calls;
    long value; /* plain: written by fn, read by every caller after once_do */
} once_args;

static void once_fn(void *arg) {
    once_args *args = arg;
    atomic_fetch_add(&args->calls, 1);
    sleep_ms(20); /* long enough that the other callers really wait */
    args->value = 42;
}

static void *once_caller(void *arg) {
    once_args *args = arg;
    pthread_barrier_wait(&args->start);
    weft_once_do(&args->once, once_fn, args);
    WORKER_EXPECT(args->value == 42);
    return NULL;
}

START_TEST(test_once_runs_fn_exactly_once_and_callers_see_it) {
    enum { CALLERS = 16 };
    once_args args = {.once = WEFT_ONCE_INIT};
    pthread_barrier_init(&args.start, NULL, CALLERS);
    pthread_t threads[CALLERS];
    start_threads(threads, CALLERS, once_caller, &args);
    join_threads(threads, CALLERS);
    check_worker_failures();
    ck_assert_int_eq(atomic_load(&args.calls), 1);
    weft_once_do(&args.once, once_fn, &args); /* done: the fast path, no second call */
    ck_assert_int_eq(atomic_load(&args.calls), 1);
    pthread_barrier_destroy(&args.start);
}
END_TEST

/* ==== Semaphore ========================================================= */

typedef struct {
    weft_sem *sem;
    int64_t capacity;
    atomic_llong held; /* units held by the workers now */
    long iterations;
    bool timed;
} sem_weight_args;

static void *sem_weighted_worker(void *arg) {
    sem_weight_args *args = arg;
    uint64_t random = (uint64_t)(uintptr_t)&random;
    for (long i = 0; i < args->iterations; i++) {
        int64_t units = 1 + (int64_t)(test_random(&random) % 5);
        int error = args->timed
                        ? weft_sem_acquire_until(args->sem, units, weft_deadline(WEFT_US(100)))
                        : weft_sem_acquire(args->sem, units, NULL);
        if (error) {
            WORKER_EXPECT(args->timed && (error == WEFT_ETIMEDOUT || error == WEFT_EAGAIN));
            continue;
        }
        long long now = atomic_fetch_add(&args->held, units) + units;
        WORKER_EXPECT(now <= args->capacity);
        atomic_fetch_sub(&args->held, units);
        weft_sem_release(args->sem, units);
    }
    return NULL;
}

static void sem_weights_under_contention(bool timed) {
    enum { THREADS = 8, CAPACITY = 7 };
    weft_sem sem;
    ck_assert_int_eq(weft_sem_init(&sem, CAPACITY), 0);
    sem_weight_args args = {&sem, CAPACITY, 0, scaled(20000), timed};
    pthread_t threads[THREADS];
    start_threads(threads, THREADS, sem_weighted_worker, &args);
    join_threads(threads, THREADS);
    check_worker_failures();
    ck_assert_int_eq(weft_sem_try_acquire(&sem, CAPACITY), 0); /* everything came back */
    weft_sem_release(&sem, CAPACITY);
    weft_sem_destroy(&sem);
}

START_TEST(test_sem_never_exceeds_capacity_under_contention) {
    sem_weights_under_contention(false);
}
END_TEST

START_TEST(test_sem_timed_acquirers_keep_weights_and_lose_no_wakeup) {
    sem_weights_under_contention(true);
}
END_TEST

typedef struct {
    weft_sem *sem;
    int64_t units;
    weft_time deadline;
    atomic_int *started;
    atomic_int *acquired;
    int result;
} sem_blocker_args;

static void *sem_blocking_acquirer(void *arg) {
    sem_blocker_args *args = arg;
    atomic_fetch_add(args->started, 1);
    args->result = args->deadline == WEFT_FOREVER
                       ? weft_sem_acquire(args->sem, args->units, NULL)
                       : weft_sem_acquire_until(args->sem, args->units, args->deadline);
    if (args->result == 0) atomic_fetch_add(args->acquired, 1);
    return NULL;
}

/* Wait until a request is queued on sem, or until `until`. */
static bool request_queued_before(weft_sem *sem, weft_time until) {
    while (weft__sem_queued(sem) == 0) {
        if (weft_now() >= until) return false;
        sleep_ms(1);
    }
    return true;
}

static void wait_for_queued_request(weft_sem *sem) {
    ck_assert_msg(request_queued_before(sem, weft_now() + WEFT_SEC(20)),
                  "the request never queued");
}

START_TEST(test_sem_big_request_at_head_blocks_later_small_one) {
    weft_sem sem = WEFT_SEM_INIT(10);
    atomic_int started = 0, acquired = 0;
    ck_assert_int_eq(weft_sem_acquire(&sem, 8, NULL), 0); /* 2 units free */
    sem_blocker_args big = {&sem, 5, WEFT_FOREVER, &started, &acquired, -1};
    pthread_t big_thread;
    start_thread(&big_thread, sem_blocking_acquirer, &big);
    wait_for_queued_request(&sem);
    /* 2 units are free, but the request for 5 came first. */
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 1), WEFT_EAGAIN);
    weft_time deadline = in_ms(30);
    ck_assert_int_eq(weft_sem_acquire_until(&sem, 1, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    ck_assert_int_eq(atomic_load(&acquired), 0);
    weft_sem_release(&sem, 8);
    join_thread(big_thread);
    ck_assert_int_eq(big.result, 0);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 5), 0);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 1), WEFT_EAGAIN);
    weft_sem_release(&sem, 10);
}
END_TEST

START_TEST(test_sem_try_acquire) {
    weft_sem sem;
    ck_assert_int_eq(weft_sem_init(&sem, 3), 0);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 2), 0);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 2), WEFT_EAGAIN);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 1), 0);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 1), WEFT_EAGAIN);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 0), 0);
    weft_sem_release(&sem, 3);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 3), 0);
    weft_sem_release(&sem, 3);
    weft_sem_destroy(&sem);
}
END_TEST

START_TEST(test_sem_acquire_until_times_out_never_early) {
    weft_sem sem = WEFT_SEM_INIT(2);
    ck_assert_int_eq(weft_sem_acquire(&sem, 2, NULL), 0);
    ck_assert_int_eq(weft_sem_acquire_until(&sem, 1, WEFT_NOWAIT), WEFT_EAGAIN);
    weft_time deadline = in_ms(30);
    ck_assert_int_eq(weft_sem_acquire_until(&sem, 1, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    weft_sem_release(&sem, 2);
    ck_assert_int_eq(weft_sem_acquire_until(&sem, 2, WEFT_NOWAIT), 0);
    weft_sem_release(&sem, 2);
}
END_TEST

/* A request for all 10 units queues at the head while 2 are free; two
 * requests for 1 queue behind it. When the head times out, they fit, and
 * nobody releases anything: only the head's departure can wake them. If
 * they are slow to queue and the head times out first, run it again. */
START_TEST(test_sem_timed_out_head_wakes_waiters_behind) {
    bool held_back = false;
    for (int attempt = 0; attempt < 20 && !held_back; attempt++) {
        weft_sem sem = WEFT_SEM_INIT(10);
        atomic_int started = 0, acquired = 0;
        ck_assert_int_eq(weft_sem_acquire(&sem, 8, NULL), 0); /* 2 units free */
        sem_blocker_args head = {&sem, 10, in_ms(300), &started, &acquired, -1};
        sem_blocker_args behind[2] = {{&sem, 1, WEFT_FOREVER, &started, &acquired, -1},
                                      {&sem, 1, WEFT_FOREVER, &started, &acquired, -1}};
        pthread_t head_thread, behind_threads[2];
        start_thread(&head_thread, sem_blocking_acquirer, &head);
        if (!request_queued_before(&sem, head.deadline)) { /* it timed out first */
            join_thread(head_thread);
            weft_sem_release(&sem, 8);
            continue;
        }
        start_thread(&behind_threads[0], sem_blocking_acquirer, &behind[0]);
        start_thread(&behind_threads[1], sem_blocking_acquirer, &behind[1]);
        while (weft__sem_queued(&sem) < 3 && weft_now() < head.deadline) sleep_ms(1);
        held_back = weft__sem_queued(&sem) == 3;
        join_thread(head_thread);
        ck_assert_int_eq(head.result, WEFT_ETIMEDOUT);
        join_thread(behind_threads[0]);
        join_thread(behind_threads[1]);
        ck_assert_int_eq(behind[0].result, 0);
        ck_assert_int_eq(behind[1].result, 0);
        ck_assert_int_eq(weft_sem_try_acquire(&sem, 1), WEFT_EAGAIN); /* all 10 held */
        weft_sem_release(&sem, 10);
    }
    ck_assert_msg(held_back, "the small requests never queued behind the big one");
}
END_TEST

START_TEST(test_sem_release_grants_queued_requests_in_order) {
    weft_sem sem = WEFT_SEM_INIT(4);
    atomic_int started = 0, acquired = 0;
    ck_assert_int_eq(weft_sem_acquire(&sem, 4, NULL), 0);
    sem_blocker_args first = {&sem, 3, WEFT_FOREVER, &started, &acquired, -1};
    sem_blocker_args second = {&sem, 2, WEFT_FOREVER, &started, &acquired, -1};
    pthread_t first_thread, second_thread;
    start_thread(&first_thread, sem_blocking_acquirer, &first);
    wait_for_queued_request(&sem);
    start_thread(&second_thread, sem_blocking_acquirer, &second);
    wait_for_count(&started, 2);
    weft_sem_release(&sem, 2); /* 2 free: fits the second, but the first is ahead */
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&acquired), 0);
    weft_sem_release(&sem, 1); /* 3 free: the first gets them, 0 left */
    join_thread(first_thread);
    ck_assert_int_eq(first.result, 0);
    ck_assert_int_eq(atomic_load(&acquired), 1);
    weft_sem_release(&sem, 1);
    weft_sem_release(&sem, 3); /* 4 free: the second gets 2 */
    join_thread(second_thread);
    ck_assert_int_eq(second.result, 0);
    weft_sem_release(&sem, 2);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 4), 0);
    weft_sem_release(&sem, 4);
}
END_TEST

START_TEST(test_sem_rejects_invalid_arguments) {
    weft_sem sem;
    ck_assert_int_eq(weft_sem_init(&sem, -1), WEFT_EINVAL);
    ck_assert_int_eq(weft_sem_init(&sem, 3), 0);
    ck_assert_int_eq(weft_sem_acquire(&sem, 4, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_sem_acquire_until(&sem, 4, WEFT_FOREVER), WEFT_EINVAL);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 4), WEFT_EINVAL);
    ck_assert_int_eq(weft_sem_acquire(&sem, -1, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 3), 0); /* nothing was taken */
    weft_sem_release(&sem, 3);
    weft_sem_destroy(&sem);
}
END_TEST

static void sem_over_release_misuse(void) {
    weft_sem sem = WEFT_SEM_INIT(5);
    weft_sem_acquire(&sem, 2, NULL);
    weft_sem_release(&sem, 3);
}

START_TEST(test_sem_over_release_aborts) {
    expect_abort(sem_over_release_misuse, "weft: semaphore released more than held");
}
END_TEST

/* ==== Cond ============================================================== */

/* Until n waiters are queued on c and not yet woken. */
static void wait_for_cond_waiters(weft_cond *c, int n) {
    weft_time limit = in_ms(BECOME_LIMIT_MS);
    while (weft__cond_waiters(c) != n) {
        ck_assert_msg(weft_now() < limit, "%d waiters never queued", n);
        sleep_ms(1);
    }
}

typedef struct {
    weft_mutex mutex;
    weft_cond cond;
    int tokens;       /* under mutex: how many waiters may leave */
    atomic_int woken; /* waiters that left */
} cond_gate;

static void *cond_gate_waiter(void *arg) {
    cond_gate *gate = arg;
    weft_mutex_lock(&gate->mutex);
    while (gate->tokens == 0) weft_cond_wait(&gate->cond, &gate->mutex);
    gate->tokens--;
    atomic_fetch_add(&gate->woken, 1);
    weft_mutex_unlock(&gate->mutex);
    return NULL;
}

START_TEST(test_cond_signal_wakes_one_waiter) {
    enum { WAITERS = 3 };
    cond_gate gate = {WEFT_MUTEX_INIT, WEFT_COND_INIT, 0, 0};
    pthread_t threads[WAITERS];
    start_threads(threads, WAITERS, cond_gate_waiter, &gate);
    wait_for_cond_waiters(&gate.cond, WAITERS);
    for (int i = 1; i <= WAITERS; i++) {
        weft_mutex_lock(&gate.mutex);
        gate.tokens++;
        weft_cond_signal(&gate.cond);
        /* Still holding the mutex: the woken waiter cannot requeue yet. */
        ck_assert_int_eq(weft__cond_waiters(&gate.cond), WAITERS - i);
        weft_mutex_unlock(&gate.mutex);
        ck_assert(int_becomes(&gate.woken, i));
        if (i < WAITERS) wait_for_cond_waiters(&gate.cond, WAITERS - i);
    }
    join_threads(threads, WAITERS);
    ck_assert_int_eq(gate.tokens, 0);
    weft_cond_signal(&gate.cond); /* nobody waits: nothing happens */
    weft_cond_destroy(&gate.cond);
    weft_mutex_destroy(&gate.mutex);
}
END_TEST

START_TEST(test_cond_broadcast_wakes_every_waiter) {
    enum { WAITERS = 8 };
    cond_gate gate = {WEFT_MUTEX_INIT, WEFT_COND_INIT, 0, 0};
    pthread_t threads[WAITERS];
    start_threads(threads, WAITERS, cond_gate_waiter, &gate);
    wait_for_cond_waiters(&gate.cond, WAITERS);
    weft_mutex_lock(&gate.mutex);
    gate.tokens = WAITERS;
    weft_cond_broadcast(&gate.cond);
    ck_assert_int_eq(weft__cond_waiters(&gate.cond), 0);
    weft_mutex_unlock(&gate.mutex);
    join_threads(threads, WAITERS);
    ck_assert_int_eq(atomic_load(&gate.woken), WAITERS);
    ck_assert_int_eq(gate.tokens, 0);
}
END_TEST

/* A bounded queue under one mutex, with a cond for "not empty" and one
 * for "not full". */
enum { PC_THREADS = 4, PC_ITEMS = 100000, PC_CAPACITY = 16 };

typedef struct {
    weft_mutex mutex;
    weft_cond not_empty, not_full;
    uint32_t ring[PC_CAPACITY];
    int head, count; /* under mutex */
    long taken;      /* under mutex: items consumed so far */
    atomic_int next_producer;
    _Atomic unsigned char seen[PC_ITEMS];
} pc_queue;

static void *pc_producer(void *arg) {
    pc_queue *q = arg;
    uint32_t id = (uint32_t)atomic_fetch_add(&q->next_producer, 1);
    uint32_t per = PC_ITEMS / PC_THREADS;
    for (uint32_t i = 0; i < per; i++) {
        weft_mutex_lock(&q->mutex);
        while (q->count == PC_CAPACITY) weft_cond_wait(&q->not_full, &q->mutex);
        q->ring[(q->head + q->count) % PC_CAPACITY] = id * per + i;
        q->count++;
        weft_cond_signal(&q->not_empty);
        weft_mutex_unlock(&q->mutex);
    }
    return NULL;
}

static void *pc_consumer(void *arg) {
    pc_queue *q = arg;
    for (;;) {
        weft_mutex_lock(&q->mutex);
        while (q->count == 0 && q->taken < PC_ITEMS) weft_cond_wait(&q->not_empty, &q->mutex);
        if (q->count == 0) { /* everything was taken */
            weft_mutex_unlock(&q->mutex);
            return NULL;
        }
        uint32_t value = q->ring[q->head];
        q->head = (q->head + 1) % PC_CAPACITY;
        q->count--;
        if (++q->taken == PC_ITEMS) weft_cond_broadcast(&q->not_empty); /* release the others */
        weft_cond_signal(&q->not_full);
        weft_mutex_unlock(&q->mutex);
        WORKER_EXPECT(value < PC_ITEMS);
        if (value < PC_ITEMS) atomic_fetch_add(&q->seen[value], 1);
    }
}

START_TEST(test_cond_producers_and_consumers_deliver_exactly_once) {
    pc_queue *q = calloc(1, sizeof *q);
    ck_assert_ptr_nonnull(q);
    weft_mutex_init(&q->mutex);
    weft_cond_init(&q->not_empty);
    weft_cond_init(&q->not_full);
    pthread_t producers[PC_THREADS], consumers[PC_THREADS];
    start_threads(consumers, PC_THREADS, pc_consumer, q);
    start_threads(producers, PC_THREADS, pc_producer, q);
    join_threads(producers, PC_THREADS);
    join_threads(consumers, PC_THREADS);
    check_worker_failures();
    ck_assert_int_eq(q->taken, PC_ITEMS);
    ck_assert_int_eq(q->count, 0);
    assert_each_seen_once(q->seen, PC_ITEMS);
    weft_cond_destroy(&q->not_full);
    weft_cond_destroy(&q->not_empty);
    weft_mutex_destroy(&q->mutex);
    free(q);
}
END_TEST

START_TEST(test_cond_wait_until_times_out_holding_the_mutex) {
    weft_mutex mutex = WEFT_MUTEX_INIT;
    weft_cond cond = WEFT_COND_INIT;
    weft_mutex_lock(&mutex);
    weft_time deadline = in_ms(30);
    ck_assert_int_eq(weft_cond_wait_until(&cond, &mutex, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);
    ck_assert_int_eq(weft__cond_waiters(&cond), 0); /* withdrawn */
    pthread_t thread;
    start_thread(&thread, mutex_trylock_elsewhere, &mutex);
    join_thread(thread);
    check_worker_failures();
    /* A deadline already past: at once, and the mutex is still ours. */
    ck_assert_int_eq(weft_cond_wait_until(&cond, &mutex, WEFT_NOWAIT), WEFT_ETIMEDOUT);
    weft_mutex_unlock(&mutex); /* aborts if the wait had not relocked it */
    ck_assert_int_eq(weft_mutex_trylock(&mutex), 0);
    weft_mutex_unlock(&mutex);
    weft_cond_destroy(&cond);
    weft_mutex_destroy(&mutex);
}
END_TEST

typedef struct {
    weft_cond *cond;
    weft_ctx *ctx;
} cond_canceller_args;

static void *cond_cancel_when_queued(void *arg) {
    cond_canceller_args *args = arg;
    while (weft__cond_waiters(args->cond) != 1) sleep_ms(1);
    weft_ctx_cancel(args->ctx);
    return NULL;
}

START_TEST(test_cond_wait_ctx_cancelled_returns_holding_the_mutex) {
    weft_mutex mutex = WEFT_MUTEX_INIT;
    weft_cond cond = WEFT_COND_INIT;
    weft_ctx *ctx = weft_ctx_with_cancel(weft_ctx_background());
    ck_assert_ptr_nonnull(ctx);
    cond_canceller_args args = {&cond, ctx};
    pthread_t canceller;
    weft_mutex_lock(&mutex);
    start_thread(&canceller, cond_cancel_when_queued, &args);
    ck_assert_int_eq(weft_cond_wait_ctx(&cond, &mutex, ctx), WEFT_ECANCELED);
    join_thread(canceller);
    ck_assert_int_eq(weft__cond_waiters(&cond), 0);
    pthread_t thread;
    start_thread(&thread, mutex_trylock_elsewhere, &mutex);
    join_thread(thread);
    check_worker_failures();
    /* Already cancelled: at once, the mutex still held. */
    ck_assert_int_eq(weft_cond_wait_ctx(&cond, &mutex, ctx), WEFT_ECANCELED);
    weft_mutex_unlock(&mutex);
    ck_assert_int_eq(weft_mutex_trylock(&mutex), 0);
    weft_mutex_unlock(&mutex);
    weft_ctx_release(ctx);
    weft_cond_destroy(&cond);
    weft_mutex_destroy(&mutex);
}
END_TEST

/* Waiters with short deadlines come and go while tokens are signalled one
 * by one. A timed waiter that returns 0 takes a token; one that times out
 * takes nothing and does not look. So if a signal that chose a timed
 * waiter were lost when that waiter timed out, a token would be left with
 * the plain waiters asleep: their generous deadline reports it. */
typedef struct {
    weft_mutex mutex;
    weft_cond cond;
    long total;
    long tokens, consumed; /* under mutex */
    atomic_int lost, stop;
} cond_tokens;

static void cond_take_token(cond_tokens *t) { /* under t->mutex, tokens > 0 */
    t->tokens--;
    if (++t->consumed == t->total) weft_cond_broadcast(&t->cond);
}

static void *cond_plain_taker(void *arg) {
    cond_tokens *t = arg;
    for (bool done = false; !done;) {
        weft_mutex_lock(&t->mutex);
        while (t->tokens == 0 && t->consumed < t->total && !atomic_load(&t->lost))
            if (weft_cond_wait_until(&t->cond, &t->mutex, in_ms(2000)) == WEFT_ETIMEDOUT) {
                atomic_store(&t->lost, 1);
                weft_cond_broadcast(&t->cond);
            }
        if (t->tokens > 0) cond_take_token(t);
        done = t->consumed == t->total || atomic_load(&t->lost);
        weft_mutex_unlock(&t->mutex);
    }
    return NULL;
}

static void *cond_timed_taker(void *arg) {
    cond_tokens *t = arg;
    while (!atomic_load(&t->stop)) {
        weft_mutex_lock(&t->mutex);
        int error = weft_cond_wait_until(&t->cond, &t->mutex, weft_deadline(WEFT_US(20)));
        if (error == 0 && t->tokens > 0) cond_take_token(t);
        weft_mutex_unlock(&t->mutex);
    }
    return NULL;
}

START_TEST(test_cond_timed_out_waiters_lose_no_signal) {
    enum { PLAIN = 1, TIMED = 3 };
    cond_tokens t = {WEFT_MUTEX_INIT, WEFT_COND_INIT, scaled(20000), 0, 0, 0, 0};
    pthread_t plain[PLAIN], timed[TIMED];
    start_threads(timed, TIMED, cond_timed_taker, &t);
    start_threads(plain, PLAIN, cond_plain_taker, &t);
    for (long i = 0; i < t.total && !atomic_load(&t.lost); i++) {
        weft_mutex_lock(&t.mutex);
        t.tokens++;
        weft_mutex_unlock(&t.mutex);
        weft_cond_signal(&t.cond);
        if (i % 4 == 0) sched_yield();
    }
    join_threads(plain, PLAIN);
    atomic_store(&t.stop, 1);
    join_threads(timed, TIMED);
    ck_assert_msg(!atomic_load(&t.lost), "a signal was lost to a timed-out waiter");
    ck_assert_int_eq(t.consumed, t.total);
    ck_assert_int_eq(t.tokens, 0);
}
END_TEST

/* Two threads take turns: each waits for its turn, passes it on, unlocks
 * and signals at once, right after the other's predicate check. A lost
 * wake-up leaves both waiting: the generous deadline turns it into a
 * failure instead of a hang. */
typedef struct {
    weft_mutex mutex;
    weft_cond cond;
    int turn; /* under mutex: 0 or 1 */
    long rounds;
    atomic_int lost;
} cond_pingpong;

typedef struct {
    cond_pingpong *game;
    int me;
} cond_player;

static void *cond_play(void *arg) {
    cond_player *player = arg;
    cond_pingpong *game = player->game;
    for (long round = 0; round < game->rounds && !atomic_load(&game->lost); round++) {
        weft_mutex_lock(&game->mutex);
        while (game->turn != player->me && !atomic_load(&game->lost))
            if (weft_cond_wait_until(&game->cond, &game->mutex, in_ms(2000)) == WEFT_ETIMEDOUT)
                atomic_store(&game->lost, 1);
        game->turn = 1 - player->me;
        weft_mutex_unlock(&game->mutex);
        weft_cond_signal(&game->cond);
    }
    weft_cond_broadcast(&game->cond);
    return NULL;
}

START_TEST(test_cond_no_lost_wakeup) {
    cond_pingpong game = {WEFT_MUTEX_INIT, WEFT_COND_INIT, 0, scaled(20000), 0};
    cond_player players[2] = {{&game, 0}, {&game, 1}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) start_thread(&threads[i], cond_play, &players[i]);
    for (int i = 0; i < 2; i++) join_thread(threads[i]);
    ck_assert_msg(!atomic_load(&game.lost), "a signal was lost: a waiter timed out");
}
END_TEST

/* ==== runner ============================================================ */

static Suite *sync_suite(void) {
    Suite *suite = suite_create("sync");
    /* 60 s per test, or more when the environment asks (sanitizer runs). */
    const char *env = getenv("CK_DEFAULT_TIMEOUT");
    double timeout = env && atof(env) > 60 ? atof(env) : 60;

    TCase *wg = tcase_create("waitgroup");
    tcase_set_timeout(wg, timeout);
    tcase_add_test(wg, test_wg_go_undoes_add_when_go_fails);
    tcase_add_test(wg, test_wg_go_reports_enomem_without_add);
    tcase_add_test(wg, test_wg_wait_returns_after_all_done);
    tcase_add_test(wg, test_wg_wait_releases_every_waiter);
    tcase_add_test(wg, test_wg_reusable_after_wait);
    tcase_add_test(wg, test_wg_wait_until_times_out_never_early);
    tcase_add_test(wg, test_wg_wait_until_past_deadline_gives_eagain);
    tcase_add_test(wg, test_wg_wait_until_returns_when_done_in_time);
    tcase_add_test(wg, test_wg_go_runs_fn_and_wait_waits_for_it);
    tcase_add_test(wg, test_wg_timed_out_waiters_lose_no_wakeup);
    tcase_add_test(wg, test_wg_negative_counter_aborts);
    suite_add_tcase(suite, wg);

    TCase *mutex = tcase_create("mutex");
    tcase_set_timeout(mutex, timeout);
    tcase_add_test(mutex, test_mutex_excludes_under_contention);
    tcase_add_test(mutex, test_mutex_trylock_on_locked_gives_eagain);
    tcase_add_test(mutex, test_mutex_lock_until_times_out_never_early);
    tcase_add_test(mutex, test_mutex_lock_until_succeeds_when_released_in_time);
    tcase_add_test(mutex, test_mutex_static_initializer_works);
    tcase_add_test(mutex, test_mutex_timed_out_waiters_lose_no_wakeup);
    tcase_add_test(mutex, test_mutex_unlock_hands_off_to_long_waiter);
    tcase_add_test(mutex, test_mutex_no_starvation);
    tcase_add_test(mutex, test_mutex_blocks_without_a_parker);
    tcase_add_test(mutex, test_mutex_unlock_unlocked_aborts);
    suite_add_tcase(suite, mutex);

    TCase *rwmutex = tcase_create("rwmutex");
    tcase_set_timeout(rwmutex, timeout);
    tcase_add_test(rwmutex, test_rwmutex_readers_share);
    tcase_add_test(rwmutex, test_rwmutex_writer_excludes_readers_and_writers);
    tcase_add_test(rwmutex, test_rwmutex_timed_waiters_keep_exclusion_and_lose_no_wakeup);
    tcase_add_test(rwmutex, test_rwmutex_pending_writer_blocks_new_reader);
    tcase_add_test(rwmutex, test_rwmutex_timed_out_writer_admits_readers_it_held_back);
    tcase_add_test(rwmutex, test_rwmutex_writer_unlock_admits_all_queued_readers);
    tcase_add_test(rwmutex, test_rwmutex_last_reader_stays_counted_until_its_hand_off);
    tcase_add_test(rwmutex, test_rwmutex_lock_until_times_out_never_early);
    tcase_add_test(rwmutex, test_rwmutex_misuse_aborts);
    suite_add_tcase(suite, rwmutex);

    TCase *once = tcase_create("once");
    tcase_set_timeout(once, timeout);
    tcase_add_test(once, test_once_runs_fn_exactly_once_and_callers_see_it);
    suite_add_tcase(suite, once);

    TCase *sem = tcase_create("semaphore");
    tcase_set_timeout(sem, timeout);
    tcase_add_test(sem, test_sem_never_exceeds_capacity_under_contention);
    tcase_add_test(sem, test_sem_timed_acquirers_keep_weights_and_lose_no_wakeup);
    tcase_add_test(sem, test_sem_big_request_at_head_blocks_later_small_one);
    tcase_add_test(sem, test_sem_try_acquire);
    tcase_add_test(sem, test_sem_acquire_until_times_out_never_early);
    tcase_add_test(sem, test_sem_timed_out_head_wakes_waiters_behind);
    tcase_add_test(sem, test_sem_release_grants_queued_requests_in_order);
    tcase_add_test(sem, test_sem_rejects_invalid_arguments);
    tcase_add_test(sem, test_sem_over_release_aborts);
    suite_add_tcase(suite, sem);

    TCase *cond = tcase_create("cond");
    tcase_set_timeout(cond, timeout);
    tcase_add_test(cond, test_cond_signal_wakes_one_waiter);
    tcase_add_test(cond, test_cond_broadcast_wakes_every_waiter);
    tcase_add_test(cond, test_cond_producers_and_consumers_deliver_exactly_once);
    tcase_add_test(cond, test_cond_wait_until_times_out_holding_the_mutex);
    tcase_add_test(cond, test_cond_wait_ctx_cancelled_returns_holding_the_mutex);
    tcase_add_test(cond, test_cond_timed_out_waiters_lose_no_signal);
    tcase_add_test(cond, test_cond_no_lost_wakeup);
    suite_add_tcase(suite, cond);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(sync_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
