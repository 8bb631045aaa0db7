/* weft from threads weft did not create: the main thread, plain pthreads,
 * a sigwait thread. Every header says its calls are safe from any thread,
 * pooled goroutine or not; these tests hold it to that, one behaviour per
 * test, mixing plain threads with goroutines where the behaviour is about
 * the two meeting.
 *
 * "Thread X is blocked" is arranged as testutil.h describes (a counter
 * bumped just before the call, then a settling sleep); a sleep that is too
 * short only makes a test weaker, never wrong. Loops honour
 * WEFT_TEST_SCALE. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/error.h"
#include "weft/go.h"
#include "weft/select.h"
#include "weft/sync.h"
#include "weft/time.h"

#include "alloc.h"
#include "go_internal.h"
#include "testutil.h"

/* Wait (polling, bounded) until every goroutine has returned: a goroutine
 * is counted until its pooled thread is idle again, a moment after the
 * WaitGroup that tracked it reached zero. */
static void wait_for_no_goroutines(void) {
    ck_assert_msg(goroutines_become(0), "%d goroutines never returned", weft_goroutines());
}

/* ---- the main thread, before any goroutine ------------------------------ */

static void set_flag(void *arg) { *(int *)arg = 1; }

/* First in the suite: with Check's default fork mode every test starts in
 * a process that never called weft, and with CK_FORK=no nothing ran
 * before this one; either way no goroutine and no pooled thread exists. */
START_TEST(test_main_thread_uses_weft_before_any_goroutine) {
    ck_assert_int_eq(weft_goroutines(), 0);
    weft_chan *buffered = weft_chan_make(sizeof(int), 2);
    weft_chan *unbuffered = weft_chan_make(sizeof(int), 0);
    ck_assert_ptr_nonnull(buffered);
    ck_assert_ptr_nonnull(unbuffered);

    int value = 7, got = 0;
    ck_assert_int_eq(weft_chan_send(buffered, &value), 0);
    ck_assert_int_eq(weft_chan_recv(buffered, &got), 0);
    ck_assert_int_eq(got, 7);
    ck_assert_int_eq(weft_chan_try_send(unbuffered, &value), WEFT_EAGAIN); /* no receiver */

    /* The main thread parks (its parker is made now) and its deadline
     * wakes it. */
    weft_time deadline = weft_deadline(WEFT_MS(5));
    ck_assert_int_eq(weft_chan_recv_until(unbuffered, &got, deadline), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= deadline);

    weft_case cases[] = {WEFT_RECV_CASE(buffered, &got), WEFT_RECV_CASE(unbuffered, &got)};
    ck_assert_int_eq(weft_select(cases, 2, WEFT_NOWAIT), WEFT_EAGAIN);

    weft_mutex mutex = WEFT_MUTEX_INIT;
    weft_mutex_lock(&mutex);
    ck_assert_int_eq(weft_mutex_trylock(&mutex), WEFT_EAGAIN);
    weft_mutex_unlock(&mutex);
    weft_mutex_destroy(&mutex);

    weft_wg wg = WEFT_WG_INIT;
    weft_wg_add(&wg, 1);
    ck_assert_int_eq(weft_wg_wait_until(&wg, WEFT_NOWAIT), WEFT_EAGAIN);
    weft_wg_done(&wg);
    weft_wg_wait(&wg);
    weft_wg_destroy(&wg);

    weft_once once = WEFT_ONCE_INIT;
    int ran = 0;
    weft_once_do(&once, set_flag, &ran);
    ck_assert_int_eq(ran, 1);

    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    weft_ctx_cancel(ctx);
    ck_assert_int_eq(weft_ctx_err(ctx), WEFT_ECANCELED);
    ck_assert_int_eq(weft_chan_recv_ctx(unbuffered, &got, ctx), WEFT_ECANCELED);
    weft_ctx_release(ctx);

    ck_assert_int_eq(weft_chan_close(buffered), 0);
    ck_assert_int_eq(weft_chan_recv(buffered, &got), WEFT_ECLOSED);
    weft_chan_release(buffered);
    weft_chan_release(unbuffered);

    /* None of it needed a goroutine or a pooled thread. */
    ck_assert_int_eq(weft_goroutines(), 0);
    ck_assert_int_eq(weft__pool_threads_started(weft__pool_default()), 0);
}
END_TEST

/* ---- plain threads exchange values -------------------------------------- */

static const size_t caps[] = {0, 1, 16};
#define CAP_COUNT 3

enum { PRODUCERS = 3, CONSUMERS = 3 };

typedef struct {
    weft_chan *chan;
    long first, count; /* a producer sends first .. first + count - 1 */
    _Atomic unsigned char *seen;
    long received; /* a consumer's total */
} exchanger;

static void *producer_main(void *arg) {
    exchanger *self = arg;
    for (long i = 0; i < self->count; i++) {
        uint64_t value = (uint64_t)(self->first + i);
        WORKER_EXPECT(weft_chan_send(self->chan, &value) == 0);
    }
    return NULL;
}

static void *consumer_main(void *arg) {
    exchanger *self = arg;
    uint64_t value;
    int rc;
    while ((rc = weft_chan_recv(self->chan, &value)) == 0) {
        atomic_fetch_add(&self->seen[value], 1);
        self->received++;
    }
    WORKER_EXPECT(rc == WEFT_ECLOSED);
    return NULL;
}

/* Plain pthreads on both ends, no goroutine anywhere: every value sent is
 * received exactly once, over unbuffered and buffered channels. */
START_TEST(test_plain_threads_deliver_each_value_once) {
    const long per_producer = scaled(20000), total = per_producer * PRODUCERS;
    weft_chan *chan = weft_chan_make(sizeof(uint64_t), caps[_i]);
    ck_assert_ptr_nonnull(chan);
    _Atomic unsigned char *seen = calloc((size_t)total, sizeof *seen);
    ck_assert_ptr_nonnull(seen);

    exchanger producers[PRODUCERS], consumers[CONSUMERS];
    pthread_t producer_threads[PRODUCERS], consumer_threads[CONSUMERS];
    for (int k = 0; k < CONSUMERS; k++) {
        consumers[k] = (exchanger){.chan = chan, .seen = seen};
        start_thread(&consumer_threads[k], consumer_main, &consumers[k]);
    }
    for (int p = 0; p < PRODUCERS; p++) {
        producers[p] = (exchanger){.chan = chan, .first = p * per_producer, .count = per_producer};
        start_thread(&producer_threads[p], producer_main, &producers[p]);
    }
    for (int p = 0; p < PRODUCERS; p++) join_thread(producer_threads[p]);
    ck_assert_int_eq(weft_chan_close(chan), 0); /* after the last send returned */
    long received = 0;
    for (int k = 0; k < CONSUMERS; k++) {
        join_thread(consumer_threads[k]);
        received += consumers[k].received;
    }
    check_worker_failures();
    ck_assert_int_eq(received, total);
    assert_each_seen_once(seen, (size_t)total);
    free(seen);
    weft_chan_release(chan);
}
END_TEST

/* ---- plain threads woken by goroutines and by close --------------------- */

typedef struct {
    weft_case cases[2];
    int chosen;
    atomic_int arrived;
} selector;

static void *selector_main(void *arg) {
    selector *self = arg;
    atomic_fetch_add(&self->arrived, 1);
    self->chosen = weft_select(self->cases, 2, WEFT_FOREVER);
    return NULL;
}

typedef struct {
    weft_chan *chan;
    int value;
    int result;
} goroutine_sender;

static void send_from_goroutine(void *arg) {
    goroutine_sender *self = arg;
    self->result = weft_chan_send(self->chan, &self->value);
}

/* A plain thread blocked in weft_select on two channels is woken by a
 * goroutine's send on one of them, and gets that value. */
START_TEST(test_plain_thread_select_woken_by_goroutine_send) {
    weft_chan *idle = weft_chan_make(sizeof(int), 1);  /* nothing is ever sent here */
    weft_chan *wakes = weft_chan_make(sizeof(int), 0); /* the goroutine sends here */
    ck_assert_ptr_nonnull(idle);
    ck_assert_ptr_nonnull(wakes);
    int from_idle = -1, from_wakes = -1;
    selector waiting = {
        .cases = {WEFT_RECV_CASE(idle, &from_idle), WEFT_RECV_CASE(wakes, &from_wakes)},
        .chosen = -100};
    pthread_t thread;
    start_thread(&thread, selector_main, &waiting);
    wait_for_count(&waiting.arrived, 1);

    goroutine_sender sender = {.chan = wakes, .value = 42, .result = -100};
    weft_wg wg = WEFT_WG_INIT;
    ck_assert_int_eq(weft_wg_go(&wg, send_from_goroutine, &sender), 0);
    join_thread(thread);
    weft_wg_wait(&wg);

    ck_assert_int_eq(waiting.chosen, 1);
    ck_assert_int_eq(waiting.cases[1].err, 0);
    ck_assert_int_eq(from_wakes, 42);
    ck_assert_int_eq(from_idle, -1);
    ck_assert_int_eq(sender.result, 0);
    weft_wg_destroy(&wg);
    weft_chan_release(idle);
    weft_chan_release(wakes);
}
END_TEST

enum { BLOCKED_RECEIVERS = 3 };

typedef struct {
    weft_chan *chan;
    atomic_int *arrived;
    int value; /* preset; a receive that fails leaves it */
    int result;
} receiver;

static void *receiver_main(void *arg) {
    receiver *self = arg;
    atomic_fetch_add(self->arrived, 1);
    self->result = weft_chan_recv(self->chan, &self->value);
    return NULL;
}

/* Plain threads blocked receiving on an empty channel (unbuffered, then
 * buffered) are all woken by a close from another plain thread (main):
 * each gets WEFT_ECLOSED and keeps its buffer untouched. */
START_TEST(test_plain_threads_blocked_in_recv_woken_by_close) {
    size_t capacity = _i == 0 ? 0 : 4;
    weft_chan *chan = weft_chan_make(sizeof(int), capacity);
    ck_assert_ptr_nonnull(chan);
    atomic_int arrived = 0;
    receiver receivers[BLOCKED_RECEIVERS];
    pthread_t threads[BLOCKED_RECEIVERS];
    for (int i = 0; i < BLOCKED_RECEIVERS; i++) {
        receivers[i] = (receiver){.chan = chan, .arrived = &arrived, .value = -1, .result = -100};
        start_thread(&threads[i], receiver_main, &receivers[i]);
    }
    wait_for_count(&arrived, BLOCKED_RECEIVERS);
    ck_assert_int_eq(weft_chan_close(chan), 0);
    for (int i = 0; i < BLOCKED_RECEIVERS; i++) {
        join_thread(threads[i]);
        ck_assert_int_eq(receivers[i].result, WEFT_ECLOSED);
        ck_assert_int_eq(receivers[i].value, -1);
    }
    weft_chan_release(chan);
}
END_TEST

/* ---- a plain thread waits for goroutines -------------------------------- */

enum { WG_GOROUTINES = 8 };

typedef struct {
    weft_chan *gate;            /* closed by the test: goroutines may finish */
    int results[WG_GOROUTINES]; /* plain ints: the WaitGroup must publish them */
    struct wg_slot {
        void *shared;
        int index;
    } slots[WG_GOROUTINES];
    weft_wg wg;
    atomic_int arrived;
    bool saw_all;
} wg_scene;

static void finish_slot(void *arg) {
    struct wg_slot *slot = arg;
    wg_scene *scene = slot->shared;
    WORKER_EXPECT(weft_chan_recv(scene->gate, NULL) == WEFT_ECLOSED);
    scene->results[slot->index] = slot->index + 1;
}

static void *wg_waiter_main(void *arg) {
    wg_scene *scene = arg;
    atomic_fetch_add(&scene->arrived, 1);
    weft_wg_wait(&scene->wg);
    scene->saw_all = true;
    for (int i = 0; i < WG_GOROUTINES; i++)
        if (scene->results[i] != i + 1) scene->saw_all = false;
    return NULL;
}

/* A plain thread blocked in weft_wg_wait is released when the goroutines
 * counted on it finish, and sees everything they wrote. */
START_TEST(test_plain_thread_waits_for_goroutines_on_waitgroup) {
    wg_scene *scene = calloc(1, sizeof *scene);
    ck_assert_ptr_nonnull(scene);
    weft_wg_init(&scene->wg);
    scene->gate = weft_chan_make(0, 0);
    ck_assert_ptr_nonnull(scene->gate);
    for (int i = 0; i < WG_GOROUTINES; i++) {
        scene->slots[i] = (struct wg_slot){scene, i};
        ck_assert_int_eq(weft_wg_go(&scene->wg, finish_slot, &scene->slots[i]), 0);
    }
    pthread_t thread;
    start_thread(&thread, wg_waiter_main, scene);
    wait_for_count(&scene->arrived, 1);
    /* The goroutines cannot finish before the gate opens. */
    ck_assert_int_eq(weft_wg_wait_until(&scene->wg, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_close(scene->gate), 0);
    join_thread(thread);
    check_worker_failures();
    ck_assert(scene->saw_all);
    wait_for_no_goroutines();
    weft_chan_release(scene->gate);
    weft_wg_destroy(&scene->wg);
    free(scene);
}
END_TEST

/* ---- cancel between plain threads --------------------------------------- */

/* The _ctx calls a plain thread may block in; the loop index picks one. */
enum { CTX_RECV, CTX_SELECT, CTX_MUTEX, CTX_WAITGROUP, CTX_SEMAPHORE, CTX_KINDS };

typedef struct {
    int kind;
    weft_ctx *ctx;
    weft_chan *chan;    /* unbuffered, nobody sends */
    weft_mutex *mutex;  /* held by the test */
    weft_wg *wg;        /* counter 1 until the end */
    weft_sem *sem;      /* every unit held by the test */
    atomic_int arrived; /* the blocked thread is about to call */
    int result;
} ctx_scene;

static void *ctx_blocked_main(void *arg) {
    ctx_scene *scene = arg;
    int value = 0;
    weft_case recv_case = WEFT_RECV_CASE(scene->chan, &value);
    atomic_fetch_add(&scene->arrived, 1);
    switch (scene->kind) {
    case CTX_RECV: scene->result = weft_chan_recv_ctx(scene->chan, &value, scene->ctx); break;
    case CTX_SELECT: scene->result = weft_select_ctx(&recv_case, 1, scene->ctx); break;
    case CTX_MUTEX: scene->result = weft_mutex_lock_ctx(scene->mutex, scene->ctx); break;
    case CTX_WAITGROUP: scene->result = weft_wg_wait_ctx(scene->wg, scene->ctx); break;
    case CTX_SEMAPHORE: scene->result = weft_sem_acquire(scene->sem, 1, scene->ctx); break;
    default: scene->result = -100; break;
    }
    return NULL;
}

static void *canceler_main(void *arg) {
    ctx_scene *scene = arg;
    /* No ck_assert off the test thread: a bounded poll, then cancel anyway. */
    weft_time give_up = weft_now() + WEFT_SEC(60);
    while (atomic_load(&scene->arrived) < 1 && weft_now() < give_up) sleep_ms(1);
    sleep_ms(SETTLE_MS);
    weft_ctx_cancel(scene->ctx);
    return NULL;
}

/* A plain thread blocked in a _ctx call (a receive, a select, a mutex, a
 * WaitGroup, a semaphore) is woken by weft_ctx_cancel from another plain
 * thread: the call returns WEFT_ECANCELED and did nothing. */
START_TEST(test_plain_thread_ctx_call_woken_by_cancel_from_plain_thread) {
    weft_mutex mutex = WEFT_MUTEX_INIT;
    weft_wg wg = WEFT_WG_INIT;
    weft_sem sem = WEFT_SEM_INIT(1);
    ctx_scene scene = {.kind = _i,
                       .ctx = weft_ctx_with_cancel(NULL),
                       .chan = weft_chan_make(sizeof(int), 0),
                       .mutex = &mutex,
                       .wg = &wg,
                       .sem = &sem,
                       .result = -100};
    ck_assert_ptr_nonnull(scene.ctx);
    ck_assert_ptr_nonnull(scene.chan);
    weft_mutex_lock(&mutex);
    weft_wg_add(&wg, 1);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 1), 0);

    pthread_t blocked, canceler;
    start_thread(&blocked, ctx_blocked_main, &scene);
    start_thread(&canceler, canceler_main, &scene);
    join_thread(canceler);
    join_thread(blocked);
    ck_assert_int_eq(scene.result, WEFT_ECANCELED);

    /* Nothing was taken by the canceled call. */
    ck_assert_int_eq(weft_mutex_trylock(&mutex), WEFT_EAGAIN); /* still the test's */
    weft_mutex_unlock(&mutex);
    ck_assert_int_eq(weft_sem_try_acquire(&sem, 1), WEFT_EAGAIN);
    weft_sem_release(&sem, 1);
    weft_wg_done(&wg);

    weft_ctx_release(scene.ctx);
    weft_chan_release(scene.chan);
    weft_sem_destroy(&sem);
    weft_wg_destroy(&wg);
    weft_mutex_destroy(&mutex);
}
END_TEST

/* ---- one mutex, threads and goroutines ---------------------------------- */

enum { MUTEX_THREADS = 3, MUTEX_GOROUTINES = 3 };

typedef struct {
    weft_mutex mutex;
    long counter; /* plain: only the mutex protects it */
    long rounds;
} counter_scene;

static void count_rounds(counter_scene *scene) {
    for (long i = 0; i < scene->rounds; i++) {
        weft_mutex_lock(&scene->mutex);
        scene->counter++;
        weft_mutex_unlock(&scene->mutex);
    }
}

static void *count_in_thread(void *arg) {
    count_rounds(arg);
    return NULL;
}

static void count_in_goroutine(void *arg) { count_rounds(arg); }

/* A weft_mutex shared by plain pthreads and goroutines keeps the count
 * exact: no increment is lost to an overlap. */
START_TEST(test_mutex_shared_by_threads_and_goroutines_keeps_exact_count) {
    counter_scene scene = {.counter = 0, .rounds = scaled(20000)};
    weft_mutex_init(&scene.mutex);
    weft_wg wg = WEFT_WG_INIT;
    pthread_t threads[MUTEX_THREADS];
    for (int i = 0; i < MUTEX_GOROUTINES; i++)
        ck_assert_int_eq(weft_wg_go(&wg, count_in_goroutine, &scene), 0);
    for (int i = 0; i < MUTEX_THREADS; i++) start_thread(&threads[i], count_in_thread, &scene);
    for (int i = 0; i < MUTEX_THREADS; i++) join_thread(threads[i]);
    weft_wg_wait(&wg);
    ck_assert_int_eq(scene.counter, scene.rounds * (MUTEX_THREADS + MUTEX_GOROUTINES));
    weft_wg_destroy(&wg);
    weft_mutex_destroy(&scene.mutex);
}
END_TEST

/* ---- short-lived threads ------------------------------------------------ */

enum { BATCH = 8 };

typedef struct {
    weft_chan *rendezvous; /* unbuffered */
    _Atomic unsigned char *seen;
    long received;
} collector;

static void collect(void *arg) {
    collector *self = arg;
    uint64_t value;
    int rc;
    while ((rc = weft_chan_recv(self->rendezvous, &value)) == 0) {
        atomic_fetch_add(&self->seen[value], 1);
        self->received++;
    }
    WORKER_EXPECT(rc == WEFT_ECLOSED);
}

typedef struct {
    weft_chan *rendezvous;
    uint64_t value;
} visitor;

static void *visitor_main(void *arg) {
    visitor *self = arg;
    WORKER_EXPECT(weft_chan_send(self->rendezvous, &self->value) == 0);
    return NULL; /* the thread's weft state (its parker) goes back for reuse */
}

/* Many short-lived plain threads, each blocking once in weft (a hand-off
 * to a goroutine), then exiting, BATCH alive at a time: every value
 * arrives once, and what a thread took from weft (its parker) is reclaimed
 * when it exits, so weft's allocations are bounded by the threads alive at
 * once (at most BATCH after the first batch), not by the threads made. */
START_TEST(test_short_lived_threads_reclaim_what_they_used) {
    const long total = scaled(2000) < BATCH * 2 ? BATCH * 2 : scaled(2000);
    collector sink = {.rendezvous = weft_chan_make(sizeof(uint64_t), 0),
                      .seen = calloc((size_t)total, sizeof(_Atomic unsigned char))};
    ck_assert_ptr_nonnull(sink.rendezvous);
    ck_assert_ptr_nonnull(sink.seen);
    weft_wg wg = WEFT_WG_INIT;
    ck_assert_int_eq(weft_wg_go(&wg, collect, &sink), 0);

    visitor visitors[BATCH];
    pthread_t threads[BATCH];
    for (long first = 0; first < total; first += BATCH) {
        /* The first batch makes parkers; after it, count allocations. */
        if (first == BATCH) weft__alloc_fail_from(0);
        long count = total - first < BATCH ? total - first : BATCH;
        for (long k = 0; k < count; k++) {
            visitors[k] = (visitor){sink.rendezvous, (uint64_t)(first + k)};
            start_thread(&threads[k], visitor_main, &visitors[k]);
        }
        for (long k = 0; k < count; k++) join_thread(threads[k]);
    }
    long allocations = weft__alloc_count();

    ck_assert_int_eq(weft_chan_close(sink.rendezvous), 0);
    weft_wg_wait(&wg);
    check_worker_failures();
    ck_assert_int_eq(sink.received, total);
    assert_each_seen_once(sink.seen, (size_t)total);
    ck_assert_msg(allocations <= BATCH, "%ld allocations by %ld threads after the first %d",
                  allocations, total - BATCH, BATCH);
    wait_for_no_goroutines();
    weft_wg_destroy(&wg);
    free(sink.seen);
    weft_chan_release(sink.rendezvous);
}
END_TEST

/* ---- a signal-handling thread ------------------------------------------- */

typedef struct {
    weft_ctx *ctx;
    sigset_t signals;
} signal_scene;

static void *signal_waiter_main(void *arg) {
    signal_scene *scene = arg;
    int received = 0;
    WORKER_EXPECT(sigwait(&scene->signals, &received) == 0);
    WORKER_EXPECT(received == SIGUSR1);
    weft_ctx_cancel(scene->ctx); /* in a thread, not in a handler */
    return NULL;
}

typedef struct {
    weft_ctx *ctx;
    weft_chan *chan; /* nobody sends */
    atomic_int arrived;
    int result;
} ctx_receiver;

static void recv_until_canceled(void *arg) {
    ctx_receiver *self = arg;
    atomic_fetch_add(&self->arrived, 1);
    self->result = weft_chan_recv_ctx(self->chan, NULL, self->ctx);
}

/* The pattern docs/migrating-from-pthreads.md recommends for signals: a
 * thread in sigwait turns SIGUSR1 into a cancel, which wakes a goroutine
 * blocked in a _ctx call. */
START_TEST(test_sigwait_thread_cancel_wakes_goroutine) {
    signal_scene scene = {.ctx = weft_ctx_with_cancel(NULL)};
    ck_assert_ptr_nonnull(scene.ctx);
    sigemptyset(&scene.signals);
    sigaddset(&scene.signals, SIGUSR1);
    /* Only the signal thread blocks SIGUSR1 (it inherits the mask set
     * around its creation), and pthread_kill aims at it alone. */
    sigset_t saved;
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &scene.signals, &saved), 0);
    pthread_t signal_thread;
    start_thread(&signal_thread, signal_waiter_main, &scene);
    ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &saved, NULL), 0);

    ctx_receiver waiting = {.ctx = scene.ctx, .chan = weft_chan_make(0, 0), .result = -100};
    ck_assert_ptr_nonnull(waiting.chan);
    weft_wg wg = WEFT_WG_INIT;
    ck_assert_int_eq(weft_wg_go(&wg, recv_until_canceled, &waiting), 0);
    wait_for_count(&waiting.arrived, 1);
    ck_assert_int_eq(pthread_kill(signal_thread, SIGUSR1), 0);
    weft_wg_wait(&wg);
    join_thread(signal_thread);
    check_worker_failures();
    ck_assert_int_eq(waiting.result, WEFT_ECANCELED);
    weft_wg_destroy(&wg);
    weft_chan_release(waiting.chan);
    weft_ctx_release(scene.ctx);
}
END_TEST

static Suite *threads_suite(void) {
    Suite *suite = suite_create("threads");
    TCase *tc;

    tc = new_case(suite, "main");
    tcase_add_test(tc, test_main_thread_uses_weft_before_any_goroutine); /* first: see above */

    tc = new_case(suite, "channels");
    tcase_add_loop_test(tc, test_plain_threads_deliver_each_value_once, 0, CAP_COUNT);
    tcase_add_test(tc, test_plain_thread_select_woken_by_goroutine_send);
    tcase_add_loop_test(tc, test_plain_threads_blocked_in_recv_woken_by_close, 0, 2);

    tc = new_case(suite, "sync");
    tcase_add_test(tc, test_plain_thread_waits_for_goroutines_on_waitgroup);
    tcase_add_test(tc, test_mutex_shared_by_threads_and_goroutines_keeps_exact_count);

    tc = new_case(suite, "cancel");
    tcase_add_loop_test(tc, test_plain_thread_ctx_call_woken_by_cancel_from_plain_thread, 0,
                        CTX_KINDS);
    tcase_add_test(tc, test_sigwait_thread_cancel_wakes_goroutine);

    tc = new_case(suite, "lifetime");
    tcase_add_test(tc, test_short_lived_threads_reclaim_what_they_used);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(threads_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
