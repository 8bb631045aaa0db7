/* Timer tests: the internal timer thread (lib/timer.h), weft_after,
 * weft_ticker, weft_timer and weft_after_func, and weft_sleep/weft_sleep_ctx
 * (include/weft/time.h).
 *
 * Fire callbacks run on the timer thread, so they never call ck_assert:
 * they record what they saw in atomics or under a mutex, and report
 * broken expectations with WORKER_EXPECT (testutil.h). The test thread
 * waits for them by polling with a generous give-up time.
 *
 * Timing is asserted only as order ("never early", "in deadline order")
 * and as generous bounds. Where an order must not depend on the machine's
 * speed, a gate timer holds the timer thread inside its fire until every
 * timer of the test has been started, so that all of them are in the heap
 * before the first is taken out.
 *
 * Every test leaves no timer pending when it ends (timers on its stack
 * could otherwise fire after it returned), so each one can check that
 * weft__timer_pending() is back to 0, also with CK_FORK=no. */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/error.h"
#include "weft/time.h"

#include "alloc.h"
#include "time_internal.h"
#include "timer.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------- */

/* Poll until *counter >= target; fail after 10 seconds. */
static void await_count(atomic_int *counter, int target) {
    weft_time give_up = weft_now() + WEFT_SEC(10);
    while (atomic_load(counter) < target) {
        ck_assert_msg(weft_now() < give_up, "only %d of %d fires arrived", atomic_load(counter),
                      target);
        sleep_ms(1);
    }
}

/* Poll until no timer is pending; fail after 10 seconds. */
static void await_no_pending_timer(void) {
    weft_time give_up = weft_now() + WEFT_SEC(10);
    while (weft__timer_pending() != 0) {
        ck_assert_msg(weft_now() < give_up, "%zu timers still pending", weft__timer_pending());
        sleep_ms(1);
    }
}

static void shuffle(int *values, int count, uint64_t *random_state) {
    for (int i = count - 1; i > 0; i--) {
        int j = (int)(test_random(random_state) % (uint64_t)(i + 1));
        int swap = values[i];
        values[i] = values[j];
        values[j] = swap;
    }
}

/* A timer that counts its fires and checks it was not early. */
typedef struct {
    weft__timer timer; /* first: fire gets a pointer to it */
    weft_time due;     /* the `when` it was started with */
    atomic_int fires;
} probe;

static void probe_fire(weft__timer *timer) {
    probe *self = (probe *)timer;
    WORKER_EXPECT(weft_now() >= self->due);
    atomic_fetch_add(&self->fires, 1);
}

static void probe_init(probe *self, void (*fire)(weft__timer *)) {
    weft__timer_init(&self->timer, fire);
    self->due = 0;
    atomic_init(&self->fires, 0);
}

static int probe_start(probe *self, weft_time when) {
    self->due = when;
    return weft__timer_start(&self->timer, when);
}

/* The gate: a timer due at once whose fire holds the timer thread until
 * gate_open(). gate_close returns once the thread is inside it. */
static atomic_int gate_is_open;
static atomic_int gate_entered;

static void gate_fire(weft__timer *timer) {
    (void)timer;
    atomic_store(&gate_entered, 1);
    while (!atomic_load(&gate_is_open)) sleep_ms(1);
}

static void gate_close(weft__timer *gate) {
    atomic_store(&gate_is_open, 0);
    atomic_store(&gate_entered, 0);
    weft__timer_init(gate, gate_fire);
    ck_assert_int_eq(weft__timer_start(gate, 0), 0);
    await_count(&gate_entered, 1);
}

static void gate_open(void) { atomic_store(&gate_is_open, 1); }

/* Timers that log, under a mutex, the order they fire in. */
typedef struct {
    weft__timer timer; /* first */
    int rank;          /* place in deadline order */
    weft_time due;
    atomic_int fires;
} ranked;

static pthread_mutex_t fire_log_lock = PTHREAD_MUTEX_INITIALIZER;
static int *fire_log;
static int fire_log_count;

static void ranked_fire(weft__timer *timer) {
    ranked *self = (ranked *)timer;
    WORKER_EXPECT(weft_now() >= self->due);
    atomic_fetch_add(&self->fires, 1);
    pthread_mutex_lock(&fire_log_lock);
    fire_log[fire_log_count++] = self->rank;
    pthread_mutex_unlock(&fire_log_lock);
}

static int fire_log_length(void) {
    pthread_mutex_lock(&fire_log_lock);
    int length = fire_log_count;
    pthread_mutex_unlock(&fire_log_lock);
    return length;
}

static void await_fire_log(int target) {
    weft_time give_up = weft_now() + WEFT_SEC(10);
    while (fire_log_length() < target) {
        ck_assert_msg(weft_now() < give_up, "only %d of %d fires arrived", fire_log_length(),
                      target);
        sleep_ms(1);
    }
}

/* ---- the timer thread: order and timing ------------------------------- */

START_TEST(test_timers_fire_in_deadline_order) {
    enum { TIMERS = 200 };
    static ranked timers[TIMERS];
    int order[TIMERS];
    fire_log = order;
    fire_log_count = 0;
    int ranks[TIMERS];
    for (int i = 0; i < TIMERS; i++) ranks[i] = i;
    uint64_t random_state = 42;
    shuffle(ranks, TIMERS, &random_state);

    weft__timer gate;
    gate_close(&gate);
    weft_time base = weft_now() + WEFT_MS(20);
    for (int i = 0; i < TIMERS; i++) {
        ranked *timer = &timers[ranks[i]];
        weft__timer_init(&timer->timer, ranked_fire);
        timer->rank = ranks[i];
        timer->due = base + WEFT_MS(2) * ranks[i];
        atomic_init(&timer->fires, 0);
        ck_assert_int_eq(weft__timer_start(&timer->timer, timer->due), 0);
    }
    gate_open();
    await_fire_log(TIMERS);
    for (int i = 0; i < TIMERS; i++) ck_assert_int_eq(order[i], i);
    check_worker_failures();
    ck_assert_uint_eq(weft__timer_pending(), 0);
    fire_log = NULL;
}
END_TEST

START_TEST(test_timer_never_fires_early) {
    enum { TIMERS = 50 };
    probe probes[TIMERS];
    uint64_t random_state = 7;
    for (int i = 0; i < TIMERS; i++) {
        probe_init(&probes[i], probe_fire);
        weft_time when = weft_now() + (weft_time)(test_random(&random_state) % WEFT_MS(30));
        ck_assert_int_eq(probe_start(&probes[i], when), 0);
    }
    for (int i = 0; i < TIMERS; i++) await_count(&probes[i].fires, 1);
    check_worker_failures(); /* each fire checked weft_now() >= due */
    for (int i = 0; i < TIMERS; i++) ck_assert_int_eq(atomic_load(&probes[i].fires), 1);
    ck_assert_uint_eq(weft__timer_pending(), 0);
}
END_TEST

START_TEST(test_timer_with_past_deadline_fires_at_once) {
    probe past, zero;
    probe_init(&past, probe_fire);
    probe_init(&zero, probe_fire);
    ck_assert_int_eq(probe_start(&past, weft_now() - WEFT_SEC(1)), 0);
    ck_assert_int_eq(probe_start(&zero, 0), 0);
    await_count(&past.fires, 1);
    await_count(&zero.fires, 1);
    check_worker_failures();
    ck_assert_uint_eq(weft__timer_pending(), 0);
}
END_TEST

/* ---- stop -------------------------------------------------------------- */

START_TEST(test_stop_before_firing_returns_true_and_it_never_fires) {
    probe timer;
    probe_init(&timer, probe_fire);
    ck_assert_int_eq(probe_start(&timer, weft_now() + WEFT_MS(30)), 0);
    ck_assert_uint_eq(weft__timer_pending(), 1);
    ck_assert(weft__timer_stop(&timer.timer));
    ck_assert_uint_eq(weft__timer_pending(), 0);
    sleep_ms(60);
    ck_assert_int_eq(atomic_load(&timer.fires), 0);
    /* A second stop finds nothing to stop. */
    ck_assert(!weft__timer_stop(&timer.timer));
}
END_TEST

START_TEST(test_stop_after_firing_returns_false) {
    probe timer;
    probe_init(&timer, probe_fire);
    ck_assert_int_eq(probe_start(&timer, weft_now()), 0);
    await_count(&timer.fires, 1);
    ck_assert(!weft__timer_stop(&timer.timer));
    ck_assert_int_eq(atomic_load(&timer.fires), 1);
}
END_TEST

START_TEST(test_stop_of_never_started_timer_returns_false) {
    probe timer;
    probe_init(&timer, probe_fire);
    ck_assert(!weft__timer_stop(&timer.timer));
}
END_TEST

/* A fire that takes 50 ms; optionally restarts its own timer at its end. */
typedef struct {
    weft__timer timer; /* first */
    atomic_int entered, finished;
    bool restart;
} slow;

static void slow_fire(weft__timer *timer) {
    slow *self = (slow *)timer;
    atomic_fetch_add(&self->entered, 1);
    sleep_ms(50);
    if (self->restart) WORKER_EXPECT(weft__timer_start(&self->timer, 0) == 0); /* due at once */
    atomic_fetch_add(&self->finished, 1);
}

static void slow_init(slow *self, bool restart) {
    weft__timer_init(&self->timer, slow_fire);
    atomic_init(&self->entered, 0);
    atomic_init(&self->finished, 0);
    self->restart = restart;
}

START_TEST(test_stop_while_fire_runs_waits_for_it_to_return) {
    slow timer;
    slow_init(&timer, false);
    ck_assert_int_eq(weft__timer_start(&timer.timer, 0), 0);
    await_count(&timer.entered, 1);
    ck_assert(!weft__timer_stop(&timer.timer));
    /* Had stop not waited, this would still be 0 for some 50 ms. */
    ck_assert_int_eq(atomic_load(&timer.finished), 1);
    check_worker_failures();
}
END_TEST

/* The running fire restarts its timer, due at once: the stop that waited
 * for it must cancel that restart before the timer thread fires it again. */
START_TEST(test_stop_while_fire_runs_cancels_the_restart_it_made) {
    slow timer;
    slow_init(&timer, true);
    ck_assert_int_eq(weft__timer_start(&timer.timer, 0), 0);
    await_count(&timer.entered, 1);
    ck_assert(weft__timer_stop(&timer.timer)); /* it removed the pending restart */
    ck_assert_int_eq(atomic_load(&timer.finished), 1);
    ck_assert_uint_eq(weft__timer_pending(), 0);
    sleep_ms(30);
    ck_assert_int_eq(atomic_load(&timer.entered), 1);
    check_worker_failures();
}
END_TEST

/* A fire that stops its own timer (with or without restarting it first)
 * must not wait for itself. */
typedef struct {
    weft__timer timer; /* first */
    bool restart_first;
    atomic_int stop_result; /* -1 until the fire ran */
} self_stopper;

static void self_stopper_fire(weft__timer *timer) {
    self_stopper *self = (self_stopper *)timer;
    if (self->restart_first) WORKER_EXPECT(weft__timer_start(&self->timer, 0) == 0);
    atomic_store(&self->stop_result, weft__timer_stop(&self->timer) ? 1 : 0);
}

START_TEST(test_stop_inside_own_fire_does_not_wait) {
    self_stopper plain = {.restart_first = false}, restarted = {.restart_first = true};
    weft__timer_init(&plain.timer, self_stopper_fire);
    weft__timer_init(&restarted.timer, self_stopper_fire);
    atomic_init(&plain.stop_result, -1);
    atomic_init(&restarted.stop_result, -1);
    ck_assert_int_eq(weft__timer_start(&plain.timer, 0), 0);
    ck_assert_int_eq(weft__timer_start(&restarted.timer, 0), 0);
    weft_time give_up = weft_now() + WEFT_SEC(10);
    while (atomic_load(&plain.stop_result) < 0 || atomic_load(&restarted.stop_result) < 0) {
        ck_assert_msg(weft_now() < give_up, "a fire that stopped its own timer never returned");
        sleep_ms(1);
    }
    ck_assert_int_eq(atomic_load(&plain.stop_result), 0);     /* nothing pending */
    ck_assert_int_eq(atomic_load(&restarted.stop_result), 1); /* the restart, cancelled */
    ck_assert(!weft__timer_stop(&plain.timer));
    ck_assert(!weft__timer_stop(&restarted.timer));
    ck_assert_uint_eq(weft__timer_pending(), 0);
    check_worker_failures();
}
END_TEST

/* ---- starting and stopping from inside a fire -------------------------- */

enum { RESTARTS = 5 };

static void restarting_fire(weft__timer *timer) {
    probe *self = (probe *)timer;
    WORKER_EXPECT(weft_now() >= self->due);
    if (atomic_fetch_add(&self->fires, 1) + 1 < RESTARTS) {
        self->due = weft_now() + WEFT_MS(1);
        WORKER_EXPECT(weft__timer_start(&self->timer, self->due) == 0);
    }
}

START_TEST(test_fire_restarting_its_own_timer_fires_again) {
    probe timer;
    probe_init(&timer, restarting_fire);
    ck_assert_int_eq(probe_start(&timer, weft_now() + WEFT_MS(1)), 0);
    await_count(&timer.fires, RESTARTS);
    sleep_ms(20);
    ck_assert_int_eq(atomic_load(&timer.fires), RESTARTS);
    ck_assert_uint_eq(weft__timer_pending(), 0);
    check_worker_failures();
}
END_TEST

/* A fire that starts one timer and stops another. */
typedef struct {
    weft__timer timer; /* first */
    probe *to_start;
    probe *to_stop;
    atomic_int stop_result; /* -1 until the fire ran */
} juggler;

static void juggler_fire(weft__timer *timer) {
    juggler *self = (juggler *)timer;
    WORKER_EXPECT(probe_start(self->to_start, weft_now()) == 0);
    atomic_store(&self->stop_result, weft__timer_stop(&self->to_stop->timer) ? 1 : 0);
}

START_TEST(test_fire_starts_and_stops_other_timers) {
    probe started, stopped;
    probe_init(&started, probe_fire);
    probe_init(&stopped, probe_fire);
    juggler fire = {.to_start = &started, .to_stop = &stopped};
    weft__timer_init(&fire.timer, juggler_fire);
    atomic_init(&fire.stop_result, -1);
    ck_assert_int_eq(probe_start(&stopped, weft_now() + WEFT_MS(100)), 0);
    ck_assert_int_eq(weft__timer_start(&fire.timer, weft_now() + WEFT_MS(5)), 0);
    await_count(&started.fires, 1);
    ck_assert_int_eq(atomic_load(&fire.stop_result), 1);
    sleep_ms(150);
    ck_assert_int_eq(atomic_load(&stopped.fires), 0);
    ck_assert_uint_eq(weft__timer_pending(), 0);
    check_worker_failures();
}
END_TEST

/* ---- the heap ---------------------------------------------------------- */

START_TEST(test_many_pending_timers_all_stop) {
    int total = (int)scaled(100000);
    probe *probes = malloc((size_t)total * sizeof *probes);
    int *order = malloc((size_t)total * sizeof *order);
    ck_assert(probes && order);
    uint64_t random_state = 3;
    weft_time far = weft_now() + WEFT_SEC(3600);
    for (int i = 0; i < total; i++) {
        probe_init(&probes[i], probe_fire);
        weft_time when = far + (weft_time)(test_random(&random_state) % WEFT_SEC(60));
        ck_assert_int_eq(probe_start(&probes[i], when), 0);
        order[i] = i;
    }
    ck_assert_uint_eq(weft__timer_pending(), (size_t)total);
    shuffle(order, total, &random_state); /* removals from everywhere in the heap */
    for (int i = 0; i < total; i++) ck_assert(weft__timer_stop(&probes[order[i]].timer));
    ck_assert_uint_eq(weft__timer_pending(), 0);
    for (int i = 0; i < total; i++) ck_assert_int_eq(atomic_load(&probes[i].fires), 0);
    free(order);
    free(probes);
}
END_TEST

/* Stopping half the timers, from all over the heap, leaves the other
 * half to fire, still in deadline order; the stopped ones never fire. */
START_TEST(test_stopped_timers_never_fire_and_the_rest_keep_their_order) {
    enum { TIMERS = 400 };
    static ranked timers[TIMERS];
    int order[TIMERS];
    fire_log = order;
    fire_log_count = 0;
    int ranks[TIMERS];
    for (int i = 0; i < TIMERS; i++) ranks[i] = i;
    uint64_t random_state = 99;
    shuffle(ranks, TIMERS, &random_state);

    weft__timer gate;
    gate_close(&gate);
    weft_time base = weft_now() + WEFT_MS(10);
    for (int i = 0; i < TIMERS; i++) {
        ranked *timer = &timers[ranks[i]];
        weft__timer_init(&timer->timer, ranked_fire);
        timer->rank = ranks[i];
        timer->due = base + WEFT_US(250) * ranks[i];
        atomic_init(&timer->fires, 0);
        ck_assert_int_eq(weft__timer_start(&timer->timer, timer->due), 0);
    }
    shuffle(ranks, TIMERS, &random_state);
    for (int i = 0; i < TIMERS; i++)
        if (ranks[i] % 2 == 1) ck_assert(weft__timer_stop(&timers[ranks[i]].timer));
    ck_assert_uint_eq(weft__timer_pending(), TIMERS / 2);
    gate_open();
    await_fire_log(TIMERS / 2);
    await_no_pending_timer();
    ck_assert_int_eq(fire_log_length(), TIMERS / 2);
    for (int i = 0; i < TIMERS / 2; i++) ck_assert_int_eq(order[i], 2 * i);
    for (int i = 1; i < TIMERS; i += 2) ck_assert_int_eq(atomic_load(&timers[i].fires), 0);
    check_worker_failures();
    fire_log = NULL;
}
END_TEST

START_TEST(test_heap_growth_failure_is_enomem_and_leaves_timer_not_pending) {
    /* Some timers first, so that the array has grown at least once and
     * holds timers to copy; then fill it to capacity with allocation
     * failing: the start that needs it to grow fails, whatever the
     * capacity is. */
    size_t limit = (size_t)1 << 18;
    probe *probes = malloc(limit * sizeof *probes);
    ck_assert_ptr_nonnull(probes);
    weft_time far = weft_now() + WEFT_SEC(3600);
    size_t started = 0;
    for (; started < 100; started++) {
        probe_init(&probes[started], probe_fire);
        ck_assert_int_eq(probe_start(&probes[started], far + (weft_time)started), 0);
    }
    weft__alloc_fail_from(1);
    int error = 0;
    while (started < limit) {
        probe_init(&probes[started], probe_fire);
        error = probe_start(&probes[started], far);
        if (error != 0) break;
        started++;
    }
    weft__alloc_fail_from(0);
    ck_assert_int_eq(error, WEFT_ENOMEM);
    probe *failed = &probes[started];
    ck_assert_uint_eq(failed->timer.index, 0);
    ck_assert_uint_eq(weft__timer_pending(), started);
    ck_assert(!weft__timer_stop(&failed->timer));
    /* With memory back, the same timer starts. */
    ck_assert_int_eq(probe_start(failed, far), 0);
    ck_assert_uint_eq(weft__timer_pending(), started + 1);
    for (size_t i = 0; i <= started; i++) ck_assert(weft__timer_stop(&probes[i].timer));
    ck_assert_uint_eq(weft__timer_pending(), 0);
    free(probes);
}
END_TEST

/* While a fire runs, other starts leave a slot in the heap array for its
 * own timer: its restart succeeds even when the array is otherwise full
 * and memory has run out. */
typedef struct {
    weft__timer timer; /* first */
    atomic_int entered, may_finish, finished;
    int restart_result;
} held_restarter;

static void held_restarter_fire(weft__timer *timer) {
    held_restarter *self = (held_restarter *)timer;
    atomic_store(&self->entered, 1);
    while (!atomic_load(&self->may_finish)) sleep_ms(1);
    self->restart_result = weft__timer_start(&self->timer, weft_now() + WEFT_SEC(3600));
    atomic_store(&self->finished, 1);
}

START_TEST(test_fire_restarting_its_own_timer_needs_no_allocation) {
    held_restarter restarter = {.restart_result = 12345};
    weft__timer_init(&restarter.timer, held_restarter_fire);
    atomic_init(&restarter.entered, 0);
    atomic_init(&restarter.may_finish, 0);
    atomic_init(&restarter.finished, 0);
    ck_assert_int_eq(weft__timer_start(&restarter.timer, 0), 0);
    await_count(&restarter.entered, 1);

    size_t limit = (size_t)1 << 18;
    probe *probes = malloc(limit * sizeof *probes);
    ck_assert_ptr_nonnull(probes);
    weft_time far = weft_now() + WEFT_SEC(3600);
    weft__alloc_fail_from(1);
    size_t started = 0;
    int error = 0;
    while (started < limit) {
        probe_init(&probes[started], probe_fire);
        error = probe_start(&probes[started], far);
        if (error != 0) break;
        started++;
    }
    ck_assert_int_eq(error, WEFT_ENOMEM);
    atomic_store(&restarter.may_finish, 1);
    await_count(&restarter.finished, 1);
    weft__alloc_fail_from(0);
    ck_assert_int_eq(restarter.restart_result, 0);
    ck_assert_uint_eq(weft__timer_pending(), started + 1);
    ck_assert(weft__timer_stop(&restarter.timer));
    for (size_t i = 0; i < started; i++) ck_assert(weft__timer_stop(&probes[i].timer));
    ck_assert_uint_eq(weft__timer_pending(), 0);
    free(probes);
}
END_TEST

/* Several threads start and stop their own timers, due within 200 us, at
 * random, pausing now and then so that some come due: every start ends
 * in exactly one fire or one stop that returned true. */
enum { CHURN_THREADS = 4, CHURN_TIMERS = 8 };

typedef struct {
    probe probes[CHURN_TIMERS];
    long starts[CHURN_TIMERS];
    long stopped[CHURN_TIMERS]; /* stops that returned true */
    long iterations;
    uint64_t random_state;
} churner;

static void *churner_main(void *arg) {
    churner *self = arg;
    for (int i = 0; i < CHURN_TIMERS; i++) probe_init(&self->probes[i], probe_fire);
    bool pending[CHURN_TIMERS] = {false};
    for (long n = 0; n < self->iterations; n++) {
        if (n % 64 == 63) { /* let some of them come due */
            struct timespec pause = {0, 100000};
            nanosleep(&pause, NULL);
        }
        int i = (int)(test_random(&self->random_state) % CHURN_TIMERS);
        if (pending[i]) {
            if (weft__timer_stop(&self->probes[i].timer)) self->stopped[i]++;
            pending[i] = false;
        } else {
            weft_time delay = (weft_time)(test_random(&self->random_state) % WEFT_US(200));
            WORKER_EXPECT(probe_start(&self->probes[i], weft_now() + delay) == 0);
            self->starts[i]++;
            pending[i] = true;
        }
    }
    for (int i = 0; i < CHURN_TIMERS; i++)
        if (pending[i] && weft__timer_stop(&self->probes[i].timer)) self->stopped[i]++;
    return NULL;
}

START_TEST(test_concurrent_starts_and_stops_account_for_every_timer) {
    static churner churners[CHURN_THREADS];
    pthread_t threads[CHURN_THREADS];
    memset(churners, 0, sizeof churners);
    for (int t = 0; t < CHURN_THREADS; t++) {
        churners[t].iterations = scaled(20000);
        churners[t].random_state = (uint64_t)t + 1;
        start_thread(&threads[t], churner_main, &churners[t]);
    }
    for (int t = 0; t < CHURN_THREADS; t++) join_thread(threads[t]);
    check_worker_failures();
    ck_assert_uint_eq(weft__timer_pending(), 0);
    long fired = 0;
    for (int t = 0; t < CHURN_THREADS; t++)
        for (int i = 0; i < CHURN_TIMERS; i++) {
            churner *self = &churners[t];
            int fires = atomic_load(&self->probes[i].fires);
            fired += fires;
            ck_assert_msg(self->starts[i] == fires + self->stopped[i],
                          "thread %d timer %d: %ld starts, %d fires, %ld stopped", t, i,
                          self->starts[i], fires, self->stopped[i]);
        }
    ck_assert_int_gt(fired, 0);
}
END_TEST

/* ---- weft_after -------------------------------------------------------- */

START_TEST(test_after_value_arrives_not_before_d) {
    weft_time start = weft_now();
    weft_chan *chan = weft_after(WEFT_MS(30));
    ck_assert_ptr_nonnull(chan);
    ck_assert_uint_eq(weft_chan_cap(chan), 1);
    ck_assert_uint_eq(weft_chan_elem_size(chan), sizeof(weft_time));
    weft_time fired_at = 0;
    ck_assert_int_eq(weft_chan_recv_until(chan, &fired_at, start + WEFT_SEC(5)), 0);
    weft_time received_at = weft_now();
    ck_assert_int_ge(fired_at, start + WEFT_MS(30));
    ck_assert_int_le(fired_at, received_at);
    weft_chan_release(chan);
}
END_TEST

START_TEST(test_after_channel_receives_exactly_one_value) {
    weft_chan *chan = weft_after(WEFT_MS(5));
    ck_assert_ptr_nonnull(chan);
    weft_time fired_at;
    ck_assert_int_eq(weft_chan_recv_until(chan, &fired_at, weft_now() + WEFT_SEC(5)), 0);
    ck_assert_int_eq(weft_chan_recv_until(chan, &fired_at, weft_now() + WEFT_MS(50)),
                     WEFT_ETIMEDOUT);
    await_no_pending_timer();
    weft_chan_release(chan);
}
END_TEST

START_TEST(test_after_value_waits_for_a_late_reader) {
    weft_time start = weft_now();
    weft_chan *chan = weft_after(WEFT_MS(5));
    ck_assert_ptr_nonnull(chan);
    sleep_ms(40);
    ck_assert_uint_eq(weft_chan_len(chan), 1);
    weft_time fired_at = 0;
    ck_assert_int_eq(weft_chan_try_recv(chan, &fired_at), 0);
    ck_assert_int_ge(fired_at, start + WEFT_MS(5));
    weft_chan_release(chan);
}
END_TEST

/* Run under `make asan`: the leak checker proves the channel and the
 * timer's struct were freed by the fire. */
START_TEST(test_after_released_before_firing_leaks_nothing) {
    for (int i = 0; i < 10; i++) {
        weft_chan *chan = weft_after(WEFT_MS(50 + i));
        ck_assert_ptr_nonnull(chan);
        weft_chan_release(chan);
    }
    ck_assert_uint_eq(weft__timer_pending(), 10);
    await_no_pending_timer();
    sleep_ms(10); /* the last fire's free, after it left the heap */
}
END_TEST

START_TEST(test_after_with_nonpositive_duration_fires_at_once) {
    weft_time durations[] = {0, -WEFT_SEC(1)};
    for (int i = 0; i < 2; i++) {
        weft_time start = weft_now();
        weft_chan *chan = weft_after(durations[i]);
        ck_assert_ptr_nonnull(chan);
        weft_time fired_at = 0;
        ck_assert_int_eq(weft_chan_recv_until(chan, &fired_at, start + WEFT_SEC(5)), 0);
        ck_assert_int_ge(fired_at, start);
        weft_chan_release(chan);
    }
}
END_TEST

START_TEST(test_after_allocation_failure_is_enomem) {
    weft_chan *chan = NULL;
    for (long k = 1; k <= 100 && !chan; k++) {
        weft__alloc_fail_from(k);
        errno = 0;
        chan = weft_after(WEFT_MS(5));
        int saved_errno = errno;
        weft__alloc_fail_from(0);
        if (!chan) {
            ck_assert_msg(saved_errno == ENOMEM, "k=%ld: errno %d, not ENOMEM", k, saved_errno);
            ck_assert_uint_eq(weft__timer_pending(), 0);
        }
    }
    ck_assert_ptr_nonnull(chan);
    weft_time fired_at;
    ck_assert_int_eq(weft_chan_recv_until(chan, &fired_at, weft_now() + WEFT_SEC(5)), 0);
    weft_chan_release(chan);
}
END_TEST

/* ---- weft_ticker ------------------------------------------------------- */

START_TEST(test_ticker_ticks_about_every_period) {
    weft_time start = weft_now();
    weft_ticker *ticker = weft_ticker_new(WEFT_MS(20));
    ck_assert_ptr_nonnull(ticker);
    weft_chan *chan = weft_ticker_chan(ticker);
    ck_assert_uint_eq(weft_chan_cap(chan), 1);
    int ticks = 0;
    weft_time tick, previous = start;
    while (weft_chan_recv_until(chan, &tick, start + WEFT_MS(300)) == 0) {
        ck_assert_int_gt(tick, previous);
        previous = tick;
        ticks++;
    }
    weft_ticker_stop(ticker);
    ck_assert_msg(ticks >= 5 && ticks <= 16, "%d ticks in 300 ms at a 20 ms period", ticks);
    ck_assert_uint_eq(weft__timer_pending(), 0);
}
END_TEST

START_TEST(test_ticker_first_tick_comes_one_period_after_new) {
    weft_time start = weft_now();
    weft_ticker *ticker = weft_ticker_new(WEFT_MS(30));
    ck_assert_ptr_nonnull(ticker);
    weft_time tick = 0;
    ck_assert_int_eq(weft_chan_recv_until(weft_ticker_chan(ticker), &tick, start + WEFT_SEC(5)), 0);
    ck_assert_int_ge(tick, start + WEFT_MS(30));
    weft_ticker_stop(ticker);
}
END_TEST

/* A reader asleep for ten periods finds one stale tick, not ten: the
 * others were dropped, and the next one is sent after the drain. */
START_TEST(test_ticker_slow_reader_misses_ticks) {
    weft_time start = weft_now();
    weft_ticker *ticker = weft_ticker_new(WEFT_MS(10));
    ck_assert_ptr_nonnull(ticker);
    weft_chan *chan = weft_ticker_chan(ticker);
    sleep_ms(100);
    ck_assert_uint_eq(weft_chan_len(chan), 1);
    weft_time stale = 0, fresh = 0;
    ck_assert_int_eq(weft_chan_try_recv(chan, &stale), 0);
    weft_time drained_at = weft_now();
    ck_assert_int_eq(weft_chan_recv_until(chan, &fresh, drained_at + WEFT_SEC(5)), 0);
    ck_assert_int_ge(stale, start + WEFT_MS(10));
    ck_assert_int_lt(stale, drained_at);
    ck_assert_int_ge(fresh, drained_at);
    weft_ticker_stop(ticker);
}
END_TEST

START_TEST(test_ticker_reset_to_shorter_period_ticks_sooner) {
    weft_ticker *ticker = weft_ticker_new(WEFT_SEC(10));
    ck_assert_ptr_nonnull(ticker);
    weft_chan *chan = weft_ticker_chan(ticker);
    weft_time reset_at = weft_now();
    weft_ticker_reset(ticker, WEFT_MS(10));
    weft_time tick = 0, previous = reset_at;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(weft_chan_recv_until(chan, &tick, reset_at + WEFT_SEC(5)), 0);
        ck_assert_int_ge(tick, reset_at + WEFT_MS(10));
        ck_assert_int_gt(tick, previous);
        previous = tick;
    }
    weft_ticker_stop(ticker);
}
END_TEST

START_TEST(test_ticker_reset_to_longer_period_delays_next_tick) {
    weft_ticker *ticker = weft_ticker_new(WEFT_MS(5));
    ck_assert_ptr_nonnull(ticker);
    weft_chan *chan = weft_ticker_chan(ticker);
    weft_time tick;
    ck_assert_int_eq(weft_chan_recv_until(chan, &tick, weft_now() + WEFT_SEC(5)), 0);
    weft_ticker_reset(ticker, WEFT_SEC(10));
    (void)weft_chan_try_recv(chan, &tick); /* a tick sent before the reset */
    ck_assert_int_eq(weft_chan_recv_until(chan, &tick, weft_now() + WEFT_MS(100)), WEFT_ETIMEDOUT);
    ck_assert_uint_eq(weft__timer_pending(), 1);
    weft_ticker_stop(ticker);
    ck_assert_uint_eq(weft__timer_pending(), 0);
}
END_TEST

/* With its own reference to the channel, the test can watch it after the
 * ticker is gone. */
START_TEST(test_ticker_sends_nothing_after_stop) {
    weft_ticker *ticker = weft_ticker_new(WEFT_MS(5));
    ck_assert_ptr_nonnull(ticker);
    weft_chan *chan = weft_ticker_chan(ticker);
    weft_chan_retain(chan);
    weft_time tick;
    ck_assert_int_eq(weft_chan_recv_until(chan, &tick, weft_now() + WEFT_SEC(5)), 0);
    weft_ticker_stop(ticker);
    ck_assert_uint_eq(weft__timer_pending(), 0);
    (void)weft_chan_try_recv(chan, &tick);
    sleep_ms(50);
    ck_assert_int_eq(weft_chan_try_recv(chan, &tick), WEFT_EAGAIN);
    weft_chan_release(chan);
}
END_TEST

/* Stop lands at random points of a fast ticker's life, often while the
 * timer thread runs its fire: no tick after stop, nothing left pending,
 * no race (under `make tsan`) and no use after free (under `make asan`). */
START_TEST(test_ticker_stop_racing_its_fire_sends_nothing_after) {
    long rounds = scaled(200);
    uint64_t random_state = 5;
    for (long n = 0; n < rounds; n++) {
        weft_ticker *ticker = weft_ticker_new(WEFT_US(50));
        ck_assert_ptr_nonnull(ticker);
        weft_chan *chan = weft_ticker_chan(ticker);
        weft_chan_retain(chan);
        struct timespec pause = {0, (long)(test_random(&random_state) % 500000)};
        nanosleep(&pause, NULL);
        weft_ticker_stop(ticker);
        weft_time tick;
        (void)weft_chan_try_recv(chan, &tick);
        if (n % 20 == 0) { /* now and then, look for a late tick */
            sleep_ms(2);
            ck_assert_int_eq(weft_chan_try_recv(chan, &tick), WEFT_EAGAIN);
        }
        weft_chan_release(chan);
    }
    ck_assert_uint_eq(weft__timer_pending(), 0);
}
END_TEST

/* Reset from another thread than the reader while the ticker runs fast. */
typedef struct {
    weft_ticker *ticker;
    long resets;
} resetter;

static void *resetter_main(void *arg) {
    resetter *self = arg;
    for (long n = 0; n < self->resets; n++) {
        weft_ticker_reset(self->ticker, n % 2 ? WEFT_US(100) : WEFT_US(200));
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

START_TEST(test_ticker_reset_racing_its_fire_keeps_ticking) {
    weft_ticker *ticker = weft_ticker_new(WEFT_US(100));
    ck_assert_ptr_nonnull(ticker);
    resetter reset = {ticker, scaled(500)};
    pthread_t thread;
    start_thread(&thread, resetter_main, &reset);
    weft_chan *chan = weft_ticker_chan(ticker);
    weft_time tick;
    int ticks = 0;
    weft_time give_up = weft_now() + WEFT_SEC(10);
    while (ticks < 20 && weft_chan_recv_until(chan, &tick, give_up) == 0) ticks++;
    join_thread(thread);
    ck_assert_int_eq(ticks, 20);
    ck_assert_int_eq(weft_chan_recv_until(chan, &tick, weft_now() + WEFT_SEC(5)), 0);
    weft_ticker_stop(ticker);
    ck_assert_uint_eq(weft__timer_pending(), 0);
}
END_TEST

START_TEST(test_ticker_with_nonpositive_period_is_einval) {
    weft_time periods[] = {0, -1, -WEFT_SEC(1)};
    for (int i = 0; i < 3; i++) {
        errno = 0;
        ck_assert_ptr_null(weft_ticker_new(periods[i]));
        ck_assert_int_eq(errno, EINVAL);
    }
    ck_assert_uint_eq(weft__timer_pending(), 0);
}
END_TEST

static weft_ticker *misused_ticker;

static void reset_with_zero_period(void) { weft_ticker_reset(misused_ticker, 0); }

static void reset_null_ticker(void) { weft_ticker_reset(NULL, WEFT_MS(1)); }

START_TEST(test_ticker_reset_of_null_aborts) {
    expect_abort(reset_null_ticker, "weft: weft_ticker_reset of a NULL ticker");
}
END_TEST

static void reset_with_negative_period(void) { weft_ticker_reset(misused_ticker, -WEFT_MS(1)); }

START_TEST(test_ticker_reset_with_nonpositive_period_aborts) {
#ifdef UNDER_TSAN
    /* The forked child restarts the timer thread for the pending ticker,
     * and ThreadSanitizer kills a child that starts threads after a
     * multi-threaded fork. The plain and asan runs check this. */
    return;
#endif
    misused_ticker = weft_ticker_new(WEFT_SEC(10));
    ck_assert_ptr_nonnull(misused_ticker);
    expect_abort(reset_with_zero_period, "weft: weft_ticker_reset: non-positive period");
    expect_abort(reset_with_negative_period, "weft: weft_ticker_reset: non-positive period");
    weft_ticker_stop(misused_ticker);
    misused_ticker = NULL;
}
END_TEST

START_TEST(test_ticker_allocation_failure_is_enomem) {
    weft_ticker *ticker = NULL;
    for (long k = 1; k <= 100 && !ticker; k++) {
        weft__alloc_fail_from(k);
        errno = 0;
        ticker = weft_ticker_new(WEFT_MS(5));
        int saved_errno = errno;
        weft__alloc_fail_from(0);
        if (!ticker) {
            ck_assert_msg(saved_errno == ENOMEM, "k=%ld: errno %d, not ENOMEM", k, saved_errno);
            ck_assert_uint_eq(weft__timer_pending(), 0);
        }
    }
    ck_assert_ptr_nonnull(ticker);
    weft_time tick;
    ck_assert_int_eq(
        weft_chan_recv_until(weft_ticker_chan(ticker), &tick, weft_now() + WEFT_SEC(5)), 0);
    weft_ticker_stop(ticker);
}
END_TEST

/* ---- weft_timer and weft_after_func (Go 1.23's Timer) ------------------ */

/* Poll until the channel holds a value; fail after 10 seconds. */
static void await_buffered(weft_chan *chan) {
    weft_time give_up = weft_now() + WEFT_SEC(10);
    while (weft_chan_len(chan) == 0) {
        ck_assert_msg(weft_now() < give_up, "the timer never fired");
        sleep_ms(1);
    }
}

START_TEST(test_timer_fires_once_with_the_firing_time) {
    weft_time start = weft_now();
    weft_timer *timer = weft_timer_new(WEFT_MS(20));
    ck_assert_ptr_nonnull(timer);
    weft_chan *chan = weft_timer_chan(timer);
    ck_assert_uint_eq(weft_chan_elem_size(chan), sizeof(weft_time));
    weft_time fired_at = 0;
    ck_assert_int_eq(weft_chan_recv_until(chan, &fired_at, start + WEFT_SEC(5)), 0);
    ck_assert_int_ge(fired_at, start + WEFT_MS(20));
    ck_assert_int_le(fired_at, weft_now());
    ck_assert_int_eq(weft_chan_recv_until(chan, &fired_at, weft_deadline(WEFT_MS(50))),
                     WEFT_ETIMEDOUT);
    weft_timer_free(timer);
}
END_TEST

START_TEST(test_timer_with_nonpositive_duration_fires_at_once) {
    weft_time durations[] = {0, -WEFT_SEC(1)};
    for (int i = 0; i < 2; i++) {
        weft_time start = weft_now();
        weft_timer *timer = weft_timer_new(durations[i]);
        ck_assert_ptr_nonnull(timer);
        weft_time fired_at = 0;
        ck_assert_int_eq(
            weft_chan_recv_until(weft_timer_chan(timer), &fired_at, start + WEFT_SEC(5)), 0);
        ck_assert_int_ge(fired_at, start);
        weft_timer_free(timer);
    }
}
END_TEST

START_TEST(test_timer_stop_before_firing_returns_true_and_no_value_ever_comes) {
    weft_timer *timer = weft_timer_new(WEFT_MS(20));
    ck_assert_ptr_nonnull(timer);
    ck_assert(weft_timer_stop(timer));
    weft_time fired_at;
    ck_assert_int_eq(
        weft_chan_recv_until(weft_timer_chan(timer), &fired_at, weft_deadline(WEFT_MS(60))),
        WEFT_ETIMEDOUT);
    ck_assert(!weft_timer_stop(timer)); /* stopped already */
    weft_timer_free(timer);
}
END_TEST

START_TEST(test_timer_stop_after_its_value_was_received_returns_false) {
    weft_timer *timer = weft_timer_new(WEFT_MS(1));
    ck_assert_ptr_nonnull(timer);
    weft_time fired_at;
    ck_assert_int_eq(
        weft_chan_recv_until(weft_timer_chan(timer), &fired_at, weft_deadline(WEFT_SEC(5))), 0);
    ck_assert(!weft_timer_stop(timer));
    weft_timer_free(timer);
}
END_TEST

/* Go 1.23: a value sent but not received is taken back; stop says it
 * stopped the timer from delivering. */
START_TEST(test_timer_stop_after_firing_takes_the_unreceived_value_back) {
    weft_timer *timer = weft_timer_new(0);
    ck_assert_ptr_nonnull(timer);
    weft_chan *chan = weft_timer_chan(timer);
    await_buffered(chan);
    ck_assert(weft_timer_stop(timer));
    ck_assert_uint_eq(weft_chan_len(chan), 0);
    weft_time fired_at;
    ck_assert_int_eq(weft_chan_try_recv(chan, &fired_at), WEFT_EAGAIN);
    weft_timer_free(timer);
}
END_TEST

/* The send hook holds the fire between leaving the heap and sending: a
 * stop then must wait for the send and take the value back, or the value
 * would arrive after stop returned. */
static atomic_int send_held, send_may_go;

static void hold_send(void) {
    atomic_store(&send_held, 1);
    while (!atomic_load(&send_may_go)) sleep_ms(1);
}

typedef struct {
    weft_timer *timer;
    atomic_int returned;
    bool result;
} stopper;

static void *stop_in_thread(void *arg) {
    stopper *self = arg;
    self->result = weft_timer_stop(self->timer);
    atomic_store(&self->returned, 1);
    return NULL;
}

START_TEST(test_timer_stop_while_its_fire_is_sending_waits_and_takes_the_value_back) {
    atomic_store(&send_held, 0);
    atomic_store(&send_may_go, 0);
    weft__timer_send_hook(hold_send);
    weft_timer *timer = weft_timer_new(0);
    ck_assert_ptr_nonnull(timer);
    ck_assert(int_becomes(&send_held, 1));
    weft__timer_send_hook(NULL);
    stopper stop = {.timer = timer};
    atomic_init(&stop.returned, 0);
    pthread_t thread;
    start_thread(&thread, stop_in_thread, &stop);
    sleep_ms(SETTLE_MS);
    ck_assert_int_eq(atomic_load(&stop.returned), 0); /* it waits for the send */
    atomic_store(&send_may_go, 1);
    join_thread(thread);
    ck_assert(stop.result);
    weft_time fired_at;
    ck_assert_int_eq(
        weft_chan_recv_until(weft_timer_chan(timer), &fired_at, weft_deadline(WEFT_MS(30))),
        WEFT_ETIMEDOUT);
    weft_timer_free(timer);
}
END_TEST

/* Go 1.23's stale-value case: Reset while the old value waits in the
 * channel; the next value received is the new setting's. */
START_TEST(test_timer_reset_while_a_value_waits_never_delivers_the_old_value) {
    weft_timer *timer = weft_timer_new(0);
    ck_assert_ptr_nonnull(timer);
    weft_chan *chan = weft_timer_chan(timer);
    await_buffered(chan);
    weft_time reset_at = weft_now();
    ck_assert(weft_timer_reset(timer, WEFT_MS(30)));
    weft_time fired_at = 0;
    ck_assert_int_eq(weft_chan_try_recv(chan, &fired_at), WEFT_EAGAIN);
    ck_assert_int_eq(weft_chan_recv_until(chan, &fired_at, weft_deadline(WEFT_SEC(5))), 0);
    ck_assert_int_ge(fired_at, reset_at + WEFT_MS(30));
    weft_timer_free(timer);
}
END_TEST

START_TEST(test_timer_reset_after_fire_and_receive_returns_false_and_fires_again) {
    weft_timer *timer = weft_timer_new(WEFT_MS(1));
    ck_assert_ptr_nonnull(timer);
    weft_chan *chan = weft_timer_chan(timer);
    weft_time first = 0, second = 0;
    ck_assert_int_eq(weft_chan_recv_until(chan, &first, weft_deadline(WEFT_SEC(5))), 0);
    weft_time reset_at = weft_now();
    ck_assert(!weft_timer_reset(timer, WEFT_MS(5)));
    ck_assert_int_eq(weft_chan_recv_until(chan, &second, weft_deadline(WEFT_SEC(5))), 0);
    ck_assert_int_ge(second, reset_at + WEFT_MS(5));
    weft_timer_free(timer);
}
END_TEST

START_TEST(test_timer_reset_of_a_pending_timer_returns_true_and_moves_it) {
    weft_timer *timer = weft_timer_new(WEFT_SEC(3600));
    ck_assert_ptr_nonnull(timer);
    weft_time reset_at = weft_now();
    ck_assert(weft_timer_reset(timer, WEFT_MS(10)));
    weft_time fired_at = 0;
    ck_assert_int_eq(
        weft_chan_recv_until(weft_timer_chan(timer), &fired_at, weft_deadline(WEFT_SEC(5))), 0);
    ck_assert_int_ge(fired_at, reset_at + WEFT_MS(10));
    ck_assert_int_lt(fired_at, reset_at + WEFT_SEC(3600));
    weft_timer_free(timer);
}
END_TEST

/* Resets racing the timer thread's fire of the old setting: after each
 * reset to an hour, whatever the old setting did, nothing is left to
 * receive. */
START_TEST(test_timer_reset_racing_its_fire_leaves_no_stale_value) {
    weft_timer *timer = weft_timer_new(WEFT_SEC(3600));
    ck_assert_ptr_nonnull(timer);
    weft_chan *chan = weft_timer_chan(timer);
    uint64_t random_state = 7;
    long rounds = scaled(20000);
    for (long i = 0; i < rounds; i++) {
        weft_timer_reset(timer, (weft_time)(test_random(&random_state) % WEFT_US(30)));
        for (uint64_t spin = test_random(&random_state) % 2000; spin > 0; spin--)
            atomic_signal_fence(memory_order_seq_cst);
        weft_timer_reset(timer, WEFT_SEC(3600));
        weft_time stale;
        ck_assert_msg(weft_chan_try_recv(chan, &stale) == WEFT_EAGAIN,
                      "round %ld: a value of the old setting was received", i);
    }
    weft_timer_free(timer);
}
END_TEST

/* A receiver takes values while the test thread resets and stops the
 * timer, racing the fire: each setting delivers exactly once, either to
 * the receiver or as a stop that returns true, never both. */
typedef struct {
    weft_chan *chan;
    atomic_int done;
    long received;
} timer_receiver;

static void *receive_until_done(void *arg) {
    timer_receiver *self = arg;
    weft_time fired_at;
    while (!atomic_load(&self->done))
        if (weft_chan_recv_until(self->chan, &fired_at, weft_deadline(WEFT_MS(1))) == 0)
            self->received++;
    while (weft_chan_try_recv(self->chan, &fired_at) == 0) self->received++;
    return NULL;
}

START_TEST(test_timer_stop_racing_a_receiver_accounts_for_every_setting) {
    weft_timer *timer = weft_timer_new(WEFT_SEC(3600));
    ck_assert_ptr_nonnull(timer);
    ck_assert(weft_timer_stop(timer));
    timer_receiver receiver = {.chan = weft_timer_chan(timer)};
    atomic_init(&receiver.done, 0);
    pthread_t thread;
    start_thread(&thread, receive_until_done, &receiver);
    uint64_t random_state = 11;
    long rounds = scaled(20000), stopped = 0;
    for (long i = 0; i < rounds; i++) {
        ck_assert(!weft_timer_reset(timer, (weft_time)(test_random(&random_state) % WEFT_US(30))));
        for (uint64_t spin = test_random(&random_state) % 4000; spin > 0; spin--)
            atomic_signal_fence(memory_order_seq_cst);
        if (weft_timer_stop(timer)) stopped++;
    }
    atomic_store(&receiver.done, 1);
    join_thread(thread);
    ck_assert_msg(receiver.received + stopped == rounds, "%ld settings: %ld received, %ld stopped",
                  rounds, receiver.received, stopped);
    weft_timer_free(timer);
}
END_TEST

/* Two threads reset one timer at once: the per-timer lock keeps them from
 * both starting it (which would abort), and one value comes at the end. */
static void *reset_many_times(void *arg) {
    weft_timer *timer = arg;
    for (long i = 0; i < scaled(20000); i++) weft_timer_reset(timer, WEFT_US(i % 20));
    return NULL;
}

START_TEST(test_timer_concurrent_resets_leave_one_setting) {
    weft_timer *timer = weft_timer_new(WEFT_SEC(3600));
    ck_assert_ptr_nonnull(timer);
    pthread_t threads[2];
    for (int t = 0; t < 2; t++) start_thread(&threads[t], reset_many_times, timer);
    for (int t = 0; t < 2; t++) join_thread(threads[t]);
    weft_timer_reset(timer, WEFT_MS(1)); /* whatever the last one left */
    weft_chan *chan = weft_timer_chan(timer);
    weft_time fired_at;
    ck_assert_int_eq(weft_chan_recv_until(chan, &fired_at, weft_deadline(WEFT_SEC(5))), 0);
    ck_assert_int_eq(weft_chan_recv_until(chan, &fired_at, weft_deadline(WEFT_MS(30))),
                     WEFT_ETIMEDOUT);
    weft_timer_free(timer);
}
END_TEST

START_TEST(test_timer_free_of_a_pending_timer_leaves_nothing_pending) {
    size_t pending = weft__timer_pending();
    weft_timer *timer = weft_timer_new(WEFT_SEC(3600));
    ck_assert_ptr_nonnull(timer);
    ck_assert_uint_eq(weft__timer_pending(), pending + 1);
    weft_timer_free(timer);
    ck_assert_uint_eq(weft__timer_pending(), pending);
    weft_timer_free(NULL);
}
END_TEST

static void stop_null_timer(void) { weft_timer_stop(NULL); }

static void reset_null_timer(void) { weft_timer_reset(NULL, WEFT_MS(1)); }

START_TEST(test_timer_stop_or_reset_of_null_aborts) {
    expect_abort(stop_null_timer, "weft: weft_timer_stop of a NULL timer");
    expect_abort(reset_null_timer, "weft: weft_timer_reset of a NULL timer");
    ck_assert_ptr_null(weft_timer_chan(NULL));
}
END_TEST

/* after_func: fn counts its runs in a counter that outlives the timer. */
static void count_run(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

START_TEST(test_after_func_runs_fn_once_in_a_goroutine) {
    atomic_int runs;
    atomic_init(&runs, 0);
    weft_timer *timer = weft_after_func(WEFT_MS(5), count_run, &runs);
    ck_assert_ptr_nonnull(timer);
    ck_assert_ptr_null(weft_timer_chan(timer));
    ck_assert(int_becomes(&runs, 1));
    sleep_ms(30);
    ck_assert_int_eq(atomic_load(&runs), 1);
    ck_assert(!weft_timer_stop(timer)); /* it has run */
    weft_timer_free(timer);
    ck_assert(goroutines_become(0));
}
END_TEST

/* fn sees itself on a pool thread: a goroutine, not the timer thread. */
static void note_goroutines(void *arg) { atomic_store((atomic_int *)arg, weft_goroutines()); }

START_TEST(test_after_func_runs_fn_as_a_goroutine) {
    atomic_int goroutines;
    atomic_init(&goroutines, -1);
    weft_timer *timer = weft_after_func(0, note_goroutines, &goroutines);
    ck_assert_ptr_nonnull(timer);
    weft_time give_up = weft_deadline(WEFT_SEC(10));
    while (atomic_load(&goroutines) < 0 && weft_now() < give_up) sleep_ms(1);
    ck_assert_int_ge(atomic_load(&goroutines), 1);
    weft_timer_free(timer);
    ck_assert(goroutines_become(0));
}
END_TEST

START_TEST(test_after_func_stop_before_it_runs_returns_true_and_fn_never_runs) {
    atomic_int runs;
    atomic_init(&runs, 0);
    weft_timer *timer = weft_after_func(WEFT_MS(20), count_run, &runs);
    ck_assert_ptr_nonnull(timer);
    ck_assert(weft_timer_stop(timer));
    sleep_ms(60);
    ck_assert_int_eq(atomic_load(&runs), 0);
    ck_assert(!weft_timer_stop(timer));
    weft_timer_free(timer);
}
END_TEST

START_TEST(test_after_func_reset_of_a_pending_one_reschedules_it) {
    atomic_int runs;
    atomic_init(&runs, 0);
    weft_timer *timer = weft_after_func(WEFT_SEC(3600), count_run, &runs);
    ck_assert_ptr_nonnull(timer);
    ck_assert(weft_timer_reset(timer, WEFT_MS(5)));
    ck_assert(int_becomes(&runs, 1));
    weft_timer_free(timer);
    ck_assert(goroutines_become(0));
}
END_TEST

START_TEST(test_after_func_reset_after_it_ran_runs_it_again) {
    atomic_int runs;
    atomic_init(&runs, 0);
    weft_timer *timer = weft_after_func(0, count_run, &runs);
    ck_assert_ptr_nonnull(timer);
    ck_assert(int_becomes(&runs, 1));
    ck_assert(!weft_timer_reset(timer, WEFT_MS(1)));
    ck_assert(int_becomes(&runs, 2));
    weft_timer_free(timer);
    ck_assert(goroutines_become(0));
}
END_TEST

START_TEST(test_after_func_freed_before_it_runs_never_runs) {
    atomic_int runs;
    atomic_init(&runs, 0);
    weft_timer *timer = weft_after_func(WEFT_MS(20), count_run, &runs);
    ck_assert_ptr_nonnull(timer);
    weft_timer_free(timer);
    sleep_ms(60);
    ck_assert_int_eq(atomic_load(&runs), 0);
}
END_TEST

/* Stops racing the fire: fn runs exactly when stop returned false. */
START_TEST(test_after_func_stop_racing_its_fire_prevents_exactly_the_runs_it_reports) {
    atomic_int runs;
    atomic_init(&runs, 0);
    weft_timer *timer = weft_after_func(WEFT_SEC(3600), count_run, &runs);
    ck_assert_ptr_nonnull(timer);
    ck_assert(weft_timer_stop(timer));
    uint64_t random_state = 5;
    long rounds = scaled(5000), stopped = 0;
    for (long i = 0; i < rounds; i++) {
        weft_timer_reset(timer, (weft_time)(test_random(&random_state) % WEFT_US(30)));
        for (uint64_t spin = test_random(&random_state) % 4000; spin > 0; spin--)
            atomic_signal_fence(memory_order_seq_cst);
        if (weft_timer_stop(timer)) stopped++;
    }
    weft_timer_free(timer);
    ck_assert(goroutines_become(0));
    ck_assert_msg(atomic_load(&runs) + stopped == rounds, "%ld settings: %d runs, %ld stopped",
                  rounds, atomic_load(&runs), stopped);
}
END_TEST

START_TEST(test_after_func_with_null_fn_is_einval) {
    errno = 0;
    ck_assert_ptr_null(weft_after_func(WEFT_MS(1), NULL, NULL));
    ck_assert_int_eq(errno, EINVAL);
}
END_TEST

/* ---- weft_sleep and weft_sleep_ctx ------------------------------------- */

START_TEST(test_sleep_is_never_early) {
    weft_time durations[] = {-WEFT_MS(1), 0, 1, WEFT_US(10), WEFT_US(500), WEFT_MS(2), WEFT_MS(15)};
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        weft_time start = weft_now();
        weft_sleep(durations[i]);
        weft_time elapsed = weft_now() - start;
        ck_assert_msg(elapsed >= durations[i], "slept %lld ns of %lld", (long long)elapsed,
                      (long long)durations[i]);
        ck_assert_int_lt(elapsed, durations[i] + WEFT_SEC(1));
    }
}
END_TEST

START_TEST(test_sleep_ctx_returns_zero_after_the_duration) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    weft_ctx *contexts[] = {NULL, weft_ctx_background(), ctx};
    weft_time durations[] = {0, WEFT_US(100), WEFT_MS(5)};
    for (int c = 0; c < 3; c++) {
        for (int i = 0; i < 3; i++) {
            weft_time start = weft_now();
            ck_assert_int_eq(weft_sleep_ctx(durations[i], contexts[c]), 0);
            ck_assert_int_ge(weft_now() - start, durations[i]);
        }
    }
    weft_ctx_cancel(ctx);
    weft_ctx_release(ctx);
}
END_TEST

static void *cancel_after_20ms(void *arg) {
    sleep_ms(20);
    weft_ctx_cancel(arg);
    return NULL;
}

START_TEST(test_sleep_ctx_returns_the_error_when_cancelled_early) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    pthread_t thread;
    start_thread(&thread, cancel_after_20ms, ctx);
    weft_time start = weft_now();
    ck_assert_int_eq(weft_sleep_ctx(WEFT_SEC(10), ctx), WEFT_ECANCELED);
    ck_assert_int_lt(weft_now() - start, WEFT_SEC(1));
    join_thread(thread);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_sleep_ctx_on_an_ended_context_returns_at_once) {
    weft_ctx *canceled = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(canceled);
    weft_ctx_cancel(canceled);
    weft_ctx *expired = weft_ctx_with_deadline(NULL, 0);
    ck_assert_ptr_nonnull(expired);
    weft_time start = weft_now();
    ck_assert_int_eq(weft_sleep_ctx(WEFT_SEC(10), canceled), WEFT_ECANCELED);
    ck_assert_int_eq(weft_sleep_ctx(0, canceled), WEFT_ECANCELED);
    ck_assert_int_eq(weft_sleep_ctx(WEFT_SEC(10), expired), WEFT_ETIMEDOUT);
    ck_assert_int_lt(weft_now() - start, WEFT_SEC(1));
    weft_ctx_release(canceled);
    weft_ctx_release(expired);
}
END_TEST

START_TEST(test_sleep_ctx_deadline_context_gives_its_error) {
    weft_time start = weft_now();
    weft_ctx *ctx = weft_ctx_with_timeout(NULL, WEFT_MS(20));
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(weft_sleep_ctx(WEFT_SEC(10), ctx), WEFT_ETIMEDOUT);
    weft_time elapsed = weft_now() - start;
    ck_assert_int_ge(elapsed, WEFT_MS(20));
    ck_assert_int_lt(elapsed, WEFT_SEC(1));
    weft_ctx_release(ctx);
    await_no_pending_timer();
}
END_TEST

/* ---- the suite --------------------------------------------------------- */

static Suite *timer_suite(void) {
    Suite *suite = suite_create("timer");
    TCase *tc;

    tc = new_case(suite, "order");
    tcase_add_test(tc, test_timers_fire_in_deadline_order);
    tcase_add_test(tc, test_timer_never_fires_early);
    tcase_add_test(tc, test_timer_with_past_deadline_fires_at_once);

    tc = new_case(suite, "stop");
    tcase_add_test(tc, test_stop_before_firing_returns_true_and_it_never_fires);
    tcase_add_test(tc, test_stop_after_firing_returns_false);
    tcase_add_test(tc, test_stop_of_never_started_timer_returns_false);
    tcase_add_test(tc, test_stop_while_fire_runs_waits_for_it_to_return);
    tcase_add_test(tc, test_stop_while_fire_runs_cancels_the_restart_it_made);
    tcase_add_test(tc, test_stop_inside_own_fire_does_not_wait);

    tc = new_case(suite, "inside_fire");
    tcase_add_test(tc, test_fire_restarting_its_own_timer_fires_again);
    tcase_add_test(tc, test_fire_starts_and_stops_other_timers);

    tc = new_case(suite, "heap");
    tcase_add_test(tc, test_many_pending_timers_all_stop);
    tcase_add_test(tc, test_stopped_timers_never_fire_and_the_rest_keep_their_order);
    tcase_add_test(tc, test_heap_growth_failure_is_enomem_and_leaves_timer_not_pending);
    tcase_add_test(tc, test_fire_restarting_its_own_timer_needs_no_allocation);
    tcase_add_test(tc, test_concurrent_starts_and_stops_account_for_every_timer);

    tc = new_case(suite, "after");
    tcase_add_test(tc, test_after_value_arrives_not_before_d);
    tcase_add_test(tc, test_after_channel_receives_exactly_one_value);
    tcase_add_test(tc, test_after_value_waits_for_a_late_reader);
    tcase_add_test(tc, test_after_released_before_firing_leaks_nothing);
    tcase_add_test(tc, test_after_with_nonpositive_duration_fires_at_once);
    tcase_add_test(tc, test_after_allocation_failure_is_enomem);

    tc = new_case(suite, "ticker");
    tcase_add_test(tc, test_ticker_ticks_about_every_period);
    tcase_add_test(tc, test_ticker_first_tick_comes_one_period_after_new);
    tcase_add_test(tc, test_ticker_slow_reader_misses_ticks);
    tcase_add_test(tc, test_ticker_reset_to_shorter_period_ticks_sooner);
    tcase_add_test(tc, test_ticker_reset_to_longer_period_delays_next_tick);
    tcase_add_test(tc, test_ticker_sends_nothing_after_stop);
    tcase_add_test(tc, test_ticker_stop_racing_its_fire_sends_nothing_after);
    tcase_add_test(tc, test_ticker_reset_racing_its_fire_keeps_ticking);
    tcase_add_test(tc, test_ticker_with_nonpositive_period_is_einval);
    tcase_add_test(tc, test_ticker_reset_with_nonpositive_period_aborts);
    tcase_add_test(tc, test_ticker_reset_of_null_aborts);
    tcase_add_test(tc, test_ticker_allocation_failure_is_enomem);

    tc = new_case(suite, "timer");
    tcase_add_test(tc, test_timer_fires_once_with_the_firing_time);
    tcase_add_test(tc, test_timer_with_nonpositive_duration_fires_at_once);
    tcase_add_test(tc, test_timer_stop_before_firing_returns_true_and_no_value_ever_comes);
    tcase_add_test(tc, test_timer_stop_after_its_value_was_received_returns_false);
    tcase_add_test(tc, test_timer_stop_after_firing_takes_the_unreceived_value_back);
    tcase_add_test(tc, test_timer_stop_while_its_fire_is_sending_waits_and_takes_the_value_back);
    tcase_add_test(tc, test_timer_reset_while_a_value_waits_never_delivers_the_old_value);
    tcase_add_test(tc, test_timer_reset_after_fire_and_receive_returns_false_and_fires_again);
    tcase_add_test(tc, test_timer_reset_of_a_pending_timer_returns_true_and_moves_it);
    tcase_add_test(tc, test_timer_reset_racing_its_fire_leaves_no_stale_value);
    tcase_add_test(tc, test_timer_stop_racing_a_receiver_accounts_for_every_setting);
    tcase_add_test(tc, test_timer_concurrent_resets_leave_one_setting);
    tcase_add_test(tc, test_timer_free_of_a_pending_timer_leaves_nothing_pending);
    tcase_add_test(tc, test_timer_stop_or_reset_of_null_aborts);

    tc = new_case(suite, "after_func");
    tcase_add_test(tc, test_after_func_runs_fn_once_in_a_goroutine);
    tcase_add_test(tc, test_after_func_runs_fn_as_a_goroutine);
    tcase_add_test(tc, test_after_func_stop_before_it_runs_returns_true_and_fn_never_runs);
    tcase_add_test(tc, test_after_func_reset_of_a_pending_one_reschedules_it);
    tcase_add_test(tc, test_after_func_reset_after_it_ran_runs_it_again);
    tcase_add_test(tc, test_after_func_freed_before_it_runs_never_runs);
    tcase_add_test(tc, test_after_func_stop_racing_its_fire_prevents_exactly_the_runs_it_reports);
    tcase_add_test(tc, test_after_func_with_null_fn_is_einval);

    tc = new_case(suite, "sleep");
    tcase_add_test(tc, test_sleep_is_never_early);
    tcase_add_test(tc, test_sleep_ctx_returns_zero_after_the_duration);
    tcase_add_test(tc, test_sleep_ctx_returns_the_error_when_cancelled_early);
    tcase_add_test(tc, test_sleep_ctx_on_an_ended_context_returns_at_once);
    tcase_add_test(tc, test_sleep_ctx_deadline_context_gives_its_error);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(timer_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
