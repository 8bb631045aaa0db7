/* Check suite for the lifetime rule of the sync primitives (DESIGN.md,
 * "Lifetimes: free what you have seen finish"): once a thread has seen
 * another thread's done, unlock, release or once_do finish, or was woken
 * by its cond signal, it may free the object at once, while the other
 * thread's call is still returning.
 *
 * Each test repeats one pattern thousands of times and frees at the
 * earliest legal moment: heap objects are freed right after the
 * observation (mutex, rwmutex and semaphore after their destroy), so that
 * AddressSanitizer sees a late access as a use after free and
 * ThreadSanitizer as a race with the free; a WaitGroup on the stack goes
 * out of scope right after its wait, with no destroy, as in Go. The other
 * side holds no reference: it learns nothing after its call. The races are
 * found by the sanitizers, not asserted; the assertions check that each
 * round ended as it should.
 *
 * Every loop stops after ROUNDS rounds or BUDGET, whichever comes first,
 * so that a test stays within a few seconds under ThreadSanitizer. */
#include "weft/go.h"
#include "weft/group.h"
#include "weft/sync.h"
#include "backoff.h"
#include "sync_internal.h"
#include "testutil.h"

#if defined(UNDER_ASAN)
/* A WaitGroup on the stack is checked only if a frame that returned stays
 * poisoned. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_stack_use_after_return=1"; }
#endif

enum { ROUNDS = 20000 };
#define BUDGET WEFT_SEC(3)

/* Whether another round fits: fewer than ROUNDS done, BUDGET not spent. */
static bool another_round(long round, weft_time started) {
    return round < ROUNDS && (round % 64 != 0 || weft_now() - started < BUDGET);
}

/* Run fn(arg) on a goroutine; the test fails if it cannot start. */
static void spawn(weft_fn fn, void *arg) { ck_assert_int_eq(weft_go(fn, arg), 0); }

/* Spin until *flag is set, yielding now and then (two shared cores). */
static void await_flag(atomic_int *flag) {
    for (long spins = 0; !atomic_load_explicit(flag, memory_order_acquire); spins++)
        if (spins % 64 == 63) sched_yield();
}

/* ==== WaitGroup ========================================================= */

/* The done side of a round; it says when it is calling done. */
typedef struct {
    weft_wg *wg;
    atomic_int calling;
} staged_done;

/* Writing job->calling before the done is legal: the waiting thread's
 * frame, which holds job, lives until the counter reaches zero. */
static void done_when_told(void *arg) {
    staged_done *job = arg;
    weft_wg *wg = job->wg;
    atomic_store_explicit(&job->calling, 1, memory_order_release);
    weft_wg_done(wg);
}

/* A round in which the done sees a waiter queued and reaches wg->lock
 * after the waiter has left, then the observation: a poll that reads the
 * counter at zero. The waiter is staged under wg->lock, as one that gives
 * up at its deadline changes the state (lib/waitgroup.c): QUEUED set
 * while it is queued, cleared as it leaves, wg->lock held while it
 * leaves. A real one does the same with the lock dropped while it
 * sleeps; staging it keeps the done's arrival in the window every round. */
static void wait_after_staged_withdrawal(weft_wg *wg) {
    staged_done job = {.wg = wg};
    weft_wg_add(wg, 1);
    weft__sync_lock(&wg->lock);
    atomic_fetch_or(&wg->state, 1); /* QUEUED: a waiter queued */
    spawn(done_when_told, &job);
    await_flag(&job.calling);
    for (int i = 0; i < 100; i++) weft__cpu_relax(); /* the done reads the state */
    atomic_fetch_and(&wg->state, ~(int64_t)1);       /* the waiter left */
    weft__sync_unlock(&wg->lock);
    while (weft_wg_wait_until(wg, WEFT_NOWAIT) == WEFT_EAGAIN) weft__cpu_relax();
}

/* The frame ends right after the wait; nothing destroys wg. */
__attribute__((noinline)) static void wg_round_on_stack(void) {
    weft_wg wg = WEFT_WG_INIT;
    wait_after_staged_withdrawal(&wg);
}

START_TEST(test_wg_on_stack_goes_out_of_scope_after_wait) {
    weft_time started = weft_now();
    for (long round = 0; another_round(round, started); round++) wg_round_on_stack();
    check_worker_failures();
}
END_TEST

START_TEST(test_wg_freed_after_wait_without_destroy) {
    weft_time started = weft_now();
    for (long round = 0; another_round(round, started); round++) {
        weft_wg *wg = malloc(sizeof *wg);
        ck_assert_ptr_nonnull(wg);
        weft_wg_init(wg);
        wait_after_staged_withdrawal(wg);
        free(wg);
    }
    check_worker_failures();
}
END_TEST

/* The waiter parks and is woken by the done, then frees. */
static void done_now(void *arg) { weft_wg_done(arg); }

static void nothing(void *arg) { (void)arg; }

/* wg.Go, then wait, then the frame ends. */
__attribute__((noinline)) static void wg_go_round_on_stack(void) {
    weft_wg wg = WEFT_WG_INIT;
    ck_assert_int_eq(weft_wg_go(&wg, nothing, NULL), 0);
    weft_wg_wait(&wg);
}

START_TEST(test_wg_go_wg_goes_out_of_scope_after_wait) {
    weft_time started = weft_now();
    for (long round = 0; another_round(round, started); round++) wg_go_round_on_stack();
}
END_TEST

START_TEST(test_wg_freed_after_woken_wait) {
    weft_time started = weft_now();
    for (long round = 0; another_round(round, started); round++) {
        weft_wg *wg = malloc(sizeof *wg);
        ck_assert_ptr_nonnull(wg);
        weft_wg_init(wg);
        weft_wg_add(wg, 1);
        spawn(done_now, wg);
        weft_wg_wait(wg);
        free(wg);
    }
}
END_TEST

/* ==== Once ============================================================== */

typedef struct {
    weft_once once;
    atomic_int ran; /* set by fn as it returns */
} once_box;

static void mark_ran(void *arg) {
    once_box *box = arg;
    atomic_store_explicit(&box->ran, 1, memory_order_release);
}

static void run_once(void *arg) {
    once_box *box = arg;
    weft_once_do(&box->once, mark_ran, box);
}

static void must_not_run(void *arg) {
    (void)arg;
    worker_fail(__FILE__, __LINE__, "a second weft_once_do ran its fn");
}

START_TEST(test_once_freed_after_do_returns_in_second_thread) {
    weft_time started = weft_now();
    for (long round = 0; another_round(round, started); round++) {
        once_box *box = malloc(sizeof *box);
        ck_assert_ptr_nonnull(box);
        *box = (once_box){.once = WEFT_ONCE_INIT};
        spawn(run_once, box);
        await_flag(&box->ran); /* fn is returning: meet the runner's finish */
        weft_once_do(&box->once, must_not_run, NULL);
        free(box);
    }
    check_worker_failures();
}
END_TEST

/* ==== Mutex, RWMutex, Semaphore ========================================= */

/* One kind of lock: how this thread takes and gives it, whether a partner
 * is queued on it, and the partner, which takes it its own way (partner
 * below), says so while holding it, and gives it back. */
typedef struct {
    size_t size;
    void (*init)(void *object);
    void (*take)(void *object);
    void (*give)(void *object);
    void (*destroy)(void *object);
    bool (*queued)(void *object);
    weft_fn partner;
} lock_kind;

typedef struct {
    void *object;
    atomic_int holding; /* the partner holds the object now */
} partner;

/* Rounds of: take; the partner queues; give (the slow path, to the
 * partner); once it holds the object, take again, which returns after the
 * partner's give has freed it; give, destroy and free at once. */
static void run_lock_rounds(const lock_kind *kind) {
    weft_time started = weft_now();
    for (long round = 0; another_round(round, started); round++) {
        void *object = malloc(kind->size);
        ck_assert_ptr_nonnull(object);
        kind->init(object);
        partner other = {.object = object};
        kind->take(object);
        spawn(kind->partner, &other);
        for (int spins = 0; spins < 100000 && !kind->queued(object); spins++)
            if (spins % 64 == 63) sched_yield();
        kind->give(object);
        await_flag(&other.holding);
        kind->take(object); /* observes the partner's give */
        kind->give(object);
        kind->destroy(object);
        free(object);
    }
    check_worker_failures();
}

static void mutex_init(void *m) { weft_mutex_init(m); }
static void mutex_lock(void *m) { weft_mutex_lock(m); }
static void mutex_unlock(void *m) { weft_mutex_unlock(m); }
static void mutex_destroy(void *m) { weft_mutex_destroy(m); }
static bool mutex_queued(void *m) { return weft__mutex_has_waiters(m); }

static void mutex_partner(void *arg) {
    partner *self = arg;
    weft_mutex_lock(self->object);
    atomic_store_explicit(&self->holding, 1, memory_order_release);
    weft_mutex_unlock(self->object);
}

START_TEST(test_mutex_destroyed_and_freed_after_lock_observes_unlock) {
    const lock_kind kind = {sizeof(weft_mutex), mutex_init,   mutex_lock,   mutex_unlock,
                            mutex_destroy,      mutex_queued, mutex_partner};
    run_lock_rounds(&kind);
}
END_TEST

static void rwmutex_init(void *m) { weft_rwmutex_init(m); }
static void rwmutex_lock(void *m) { weft_rwmutex_lock(m); }
static void rwmutex_unlock(void *m) { weft_rwmutex_unlock(m); }
static void rwmutex_rlock(void *m) { weft_rwmutex_rlock(m); }
static void rwmutex_runlock(void *m) { weft_rwmutex_runlock(m); }
static void rwmutex_destroy(void *m) { weft_rwmutex_destroy(m); }
static bool readers_queued(void *m) { return weft__rwmutex_readers_queued(m); }

/* The writer is queued once a reader holding m sees WRITER_QUEUED: a
 * tryrlock fails only then (or while a writer holds m). */
static bool writer_queued(void *m) {
    if (weft_rwmutex_tryrlock(m) != 0) return true;
    weft_rwmutex_runlock(m);
    return false;
}

static void rwmutex_reader_partner(void *arg) {
    partner *self = arg;
    weft_rwmutex_rlock(self->object);
    atomic_store_explicit(&self->holding, 1, memory_order_release);
    weft_rwmutex_runlock(self->object);
}

static void rwmutex_writer_partner(void *arg) {
    partner *self = arg;
    weft_rwmutex_lock(self->object);
    atomic_store_explicit(&self->holding, 1, memory_order_release);
    weft_rwmutex_unlock(self->object);
}

START_TEST(test_rwmutex_destroyed_and_freed_after_lock_observes_runlock) {
    const lock_kind kind = {sizeof(weft_rwmutex),  rwmutex_init,    rwmutex_lock,
                            rwmutex_unlock,        rwmutex_destroy, readers_queued,
                            rwmutex_reader_partner};
    run_lock_rounds(&kind);
}
END_TEST

START_TEST(test_rwmutex_destroyed_and_freed_after_rlock_observes_unlock) {
    const lock_kind kind = {sizeof(weft_rwmutex),  rwmutex_init,    rwmutex_rlock,
                            rwmutex_runlock,       rwmutex_destroy, writer_queued,
                            rwmutex_writer_partner};
    run_lock_rounds(&kind);
}
END_TEST

static void sem_init_one(void *s) { ck_assert_int_eq(weft_sem_init(s, 1), 0); }
static void sem_take(void *s) { ck_assert_int_eq(weft_sem_acquire(s, 1, NULL), 0); }
static void sem_give(void *s) { weft_sem_release(s, 1); }
static void sem_destroy(void *s) { weft_sem_destroy(s); }
static bool sem_queued(void *s) { return weft__sem_queued(s) > 0; }

static void sem_partner(void *arg) {
    partner *self = arg;
    WORKER_EXPECT(weft_sem_acquire(self->object, 1, NULL) == 0);
    atomic_store_explicit(&self->holding, 1, memory_order_release);
    weft_sem_release(self->object, 1);
}

START_TEST(test_sem_destroyed_and_freed_after_acquire_observes_release) {
    const lock_kind kind = {sizeof(weft_sem), sem_init_one, sem_take,   sem_give,
                            sem_destroy,      sem_queued,   sem_partner};
    run_lock_rounds(&kind);
}
END_TEST

/* ==== Cond ============================================================== */

typedef struct {
    weft_mutex mutex;
    weft_cond cond;
} cond_pair;

/* Signal once the waiter is queued; no reference to pair after that. */
static void cond_signaller(void *arg) {
    weft_cond *cond = &((cond_pair *)arg)->cond;
    for (int spins = 0; weft__cond_waiters(cond) == 0; spins++)
        if (spins % 64 == 63) sched_yield();
    weft_cond_signal(cond);
}

/* Rounds of: wait on a heap cond; a partner signals it; the wait returns
 * woken by that signal (with a parker, a weft_cond wait has no spurious
 * wake-up), and the waiter destroys and frees the cond at once, while the
 * signal may still be returning. */
START_TEST(test_cond_destroyed_and_freed_after_wait_observes_signal) {
    weft_time started = weft_now();
    for (long round = 0; another_round(round, started); round++) {
        cond_pair *pair = malloc(sizeof *pair);
        ck_assert_ptr_nonnull(pair);
        weft_mutex_init(&pair->mutex);
        weft_cond_init(&pair->cond);
        weft_mutex_lock(&pair->mutex);
        spawn(cond_signaller, pair);
        weft_cond_wait(&pair->cond, &pair->mutex);
        weft_mutex_unlock(&pair->mutex);
        weft_cond_destroy(&pair->cond);
        weft_mutex_destroy(&pair->mutex);
        free(pair);
    }
}
END_TEST

/* ==== Group ============================================================= */

static int fail_with_arg(weft_ctx *ctx, void *arg) {
    (void)ctx;
    return (int)(intptr_t)arg;
}

START_TEST(test_group_freed_after_wait_returns) {
    weft_time started = weft_now();
    for (long round = 0; another_round(round, started); round++) {
        weft_group *group = weft_group_new(NULL);
        ck_assert_ptr_nonnull(group);
        int error = (int)(round % 2); /* rounds alternate: no error, an error */
        ck_assert_int_eq(weft_group_go(group, fail_with_arg, (void *)(intptr_t)error), 0);
        ck_assert_int_eq(weft_group_wait(group), error);
        weft_group_free(group);
    }
}
END_TEST

/* ==== runner ============================================================ */

static Suite *lifetime_suite(void) {
    Suite *suite = suite_create("lifetime_sync");
    TCase *cases = tcase_create("free after observing");
    tcase_set_timeout(cases, test_timeout());
    tcase_add_test(cases, test_wg_on_stack_goes_out_of_scope_after_wait);
    tcase_add_test(cases, test_wg_freed_after_wait_without_destroy);
    tcase_add_test(cases, test_wg_freed_after_woken_wait);
    tcase_add_test(cases, test_wg_go_wg_goes_out_of_scope_after_wait);
    tcase_add_test(cases, test_once_freed_after_do_returns_in_second_thread);
    tcase_add_test(cases, test_mutex_destroyed_and_freed_after_lock_observes_unlock);
    tcase_add_test(cases, test_rwmutex_destroyed_and_freed_after_lock_observes_runlock);
    tcase_add_test(cases, test_rwmutex_destroyed_and_freed_after_rlock_observes_unlock);
    tcase_add_test(cases, test_sem_destroyed_and_freed_after_acquire_observes_release);
    tcase_add_test(cases, test_cond_destroyed_and_freed_after_wait_observes_signal);
    tcase_add_test(cases, test_group_freed_after_wait_returns);
    suite_add_tcase(suite, cases);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(lifetime_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
