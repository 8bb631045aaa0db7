/* Goroutines and pools (weft/go.h). One behaviour per test.
 *
 * Waits are bounded polls or timed condition waits, never a sleep that
 * hopes the other side has finished; the only timing assertions are
 * generous upper bounds. The tests that set environment variables need a
 * process whose default pool has not started yet, so they run only when
 * Check forks each test (its default; not with CK_FORK=no). */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "go_internal.h"
#include "testutil.h"
#include "weft/go.h"

enum { WAIT_MS = 20000 }; /* bound on any wait; far above what a healthy run needs */

/* Poll until pool's thread count == want, for at most WAIT_MS. */
static bool threads_become(weft_pool *pool, int want) {
    weft_time deadline = weft_deadline(WEFT_MS(WAIT_MS));
    while (weft__pool_threads(pool) != want) {
        if (weft_now() >= deadline) return false;
        sleep_ms(1);
    }
    return true;
}

/* A gate that goroutines count themselves through and may wait at. */
typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond; /* CLOCK_MONOTONIC; broadcast on every change */
    bool open;           /* goroutines in gate_block wait for it */
    int arrived;         /* goroutines that reached the gate */
    int finished;        /* goroutines about to return */
    int open_at;         /* > 0: the open_at-th arrival opens the gate */
} gate;

static void gate_init(gate *g) {
    memset(g, 0, sizeof *g);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_mutex_init(&g->mutex, NULL);
    pthread_cond_init(&g->cond, &attributes);
    pthread_condattr_destroy(&attributes);
}

static void gate_destroy(gate *g) {
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->mutex);
}

static void gate_open(gate *g) {
    pthread_mutex_lock(&g->mutex);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mutex);
}

/* Wait until *field (arrived or finished) reaches want, for at most WAIT_MS. */
static bool gate_reaches(gate *g, const int *field, int want) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&g->mutex);
    int result = 0;
    while (*field < want && result == 0)
        result = pthread_cond_timedwait(&g->cond, &g->mutex, &until);
    bool reached = *field >= want;
    pthread_mutex_unlock(&g->mutex);
    return reached;
}

static int gate_read(gate *g, const int *field) {
    pthread_mutex_lock(&g->mutex);
    int value = *field;
    pthread_mutex_unlock(&g->mutex);
    return value;
}

/* Goroutine: arrive, wait for the gate to open, finish. */
static void gate_block(void *arg) {
    gate *g = arg;
    pthread_mutex_lock(&g->mutex);
    g->arrived++;
    if (g->open_at > 0 && g->arrived == g->open_at) g->open = true;
    pthread_cond_broadcast(&g->cond);
    while (!g->open) pthread_cond_wait(&g->cond, &g->mutex);
    g->finished++;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mutex);
}

/* Goroutine: arrive and finish at once. */
static void gate_pass(void *arg) {
    gate *g = arg;
    pthread_mutex_lock(&g->mutex);
    g->arrived++;
    g->finished++;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mutex);
}

static void do_nothing(void *arg) { (void)arg; }

/* ---- weft_go and the goroutine count ---- */

typedef struct {
    gate gate;
    void *seen; /* the argument the goroutine was given */
} seen_arg;

static void record_arg(void *arg) {
    seen_arg *record = arg;
    pthread_mutex_lock(&record->gate.mutex);
    record->seen = arg;
    pthread_mutex_unlock(&record->gate.mutex);
    gate_pass(&record->gate);
}

START_TEST(go_runs_function_with_its_arg) {
    seen_arg record = {.seen = NULL};
    gate_init(&record.gate);
    ck_assert_int_eq(weft_go(record_arg, &record), 0);
    ck_assert(gate_reaches(&record.gate, &record.gate.finished, 1));
    pthread_mutex_lock(&record.gate.mutex);
    ck_assert_ptr_eq(record.seen, &record);
    pthread_mutex_unlock(&record.gate.mutex);
    ck_assert(goroutines_become(0));
    gate_destroy(&record.gate);
}
END_TEST

START_TEST(goroutines_counts_running_and_returns_to_zero) {
    ck_assert(goroutines_become(0));
    gate g;
    gate_init(&g);
    ck_assert_int_eq(weft_go(gate_block, &g), 0);
    ck_assert_int_ge(weft_goroutines(), 1); /* counted before weft_go returned */
    for (int i = 1; i < 8; i++) ck_assert_int_eq(weft_go(gate_block, &g), 0);
    ck_assert(gate_reaches(&g, &g.arrived, 8));
    ck_assert_int_eq(weft_goroutines(), 8);
    gate_open(&g);
    ck_assert(goroutines_become(0));
    ck_assert_int_eq(gate_read(&g, &g.finished), 8);
    gate_destroy(&g);
}
END_TEST

START_TEST(goroutines_counts_every_pool) {
    ck_assert(goroutines_become(0));
    weft_pool *first = weft_pool_new(NULL), *second = weft_pool_new(NULL);
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_nonnull(second);
    gate g;
    gate_init(&g);
    ck_assert_int_eq(weft_pool_go(first, gate_block, &g), 0);
    ck_assert_int_eq(weft_pool_go(second, gate_block, &g), 0);
    ck_assert_int_eq(weft_go(gate_block, &g), 0);
    ck_assert(gate_reaches(&g, &g.arrived, 3));
    ck_assert_int_eq(weft_goroutines(), 3);
    gate_open(&g);
    ck_assert_int_eq(weft_pool_close(first), 0);
    ck_assert_int_eq(weft_pool_close(second), 0);
    ck_assert(goroutines_become(0));
    gate_destroy(&g);
}
END_TEST

START_TEST(null_fn_returns_einval) {
    weft_pool *pool = weft_pool_new(NULL);
    ck_assert_ptr_nonnull(pool);
    ck_assert_int_eq(weft_go(NULL, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_pool_go(pool, NULL, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_pool_go(NULL, do_nothing, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft__pool_threads(pool), 0);
    ck_assert_int_eq(weft_pool_close(pool), 0);
}
END_TEST

/* ---- Threads: reuse, growth, idle timeout, limits ---- */

enum { SEQUENTIAL = 1000 };

typedef struct {
    gate gate;
    pthread_t threads[SEQUENTIAL];
    int next;
} thread_log;

static void log_thread(void *arg) {
    thread_log *log = arg;
    pthread_mutex_lock(&log->gate.mutex);
    log->threads[log->next++] = pthread_self();
    pthread_mutex_unlock(&log->gate.mutex);
    gate_pass(&log->gate);
}

START_TEST(sequential_goroutines_reuse_threads) {
    /* Each round waits until the goroutine count is back to 0, which a
     * worker's thread brings about only once it is idle again: from then
     * on the next weft_pool_go must hand the call to that same thread. */
    ck_assert(goroutines_become(0));
    weft_pool *pool = weft_pool_new(&(weft_pool_opts){.idle_timeout = WEFT_SEC(60)});
    ck_assert_ptr_nonnull(pool);
    static thread_log log;
    gate_init(&log.gate);
    for (int i = 0; i < SEQUENTIAL; i++) {
        ck_assert_int_eq(weft_pool_go(pool, log_thread, &log), 0);
        ck_assert(gate_reaches(&log.gate, &log.gate.finished, i + 1));
        ck_assert(goroutines_become(0));
    }
    for (int i = 1; i < SEQUENTIAL; i++) ck_assert(pthread_equal(log.threads[i], log.threads[0]));
    ck_assert_int_eq(weft__pool_threads_started(pool), 1);
    ck_assert_int_eq(weft_pool_close(pool), 0);
    gate_destroy(&log.gate);
}
END_TEST

START_TEST(blocked_goroutines_do_not_stop_others) {
    /* All 64 wait until the 64th has arrived: only a pool that starts a
     * thread whenever none is idle gets them all running. */
    gate g;
    gate_init(&g);
    g.open_at = 64;
    for (int i = 0; i < 64; i++) ck_assert_int_eq(weft_go(gate_block, &g), 0);
    ck_assert(gate_reaches(&g, &g.finished, 64));
    ck_assert(goroutines_become(0));
    gate_destroy(&g);
}
END_TEST

START_TEST(idle_threads_above_min_exit_after_idle_timeout) {
    weft_pool *pool =
        weft_pool_new(&(weft_pool_opts){.min_threads = 2, .idle_timeout = WEFT_MS(50)});
    ck_assert_ptr_nonnull(pool);
    gate g;
    gate_init(&g);
    for (int i = 0; i < 8; i++) ck_assert_int_eq(weft_pool_go(pool, gate_block, &g), 0);
    ck_assert(gate_reaches(&g, &g.arrived, 8));
    ck_assert_int_eq(weft__pool_threads(pool), 8);
    gate_open(&g);
    ck_assert(gate_reaches(&g, &g.finished, 8));
    ck_assert(threads_become(pool, 2));
    sleep_ms(250); /* five idle timeouts: the min_threads threads stay */
    ck_assert_int_eq(weft__pool_threads(pool), 2);
    /* and they still serve */
    ck_assert_int_eq(weft_pool_go(pool, gate_pass, &g), 0);
    ck_assert(gate_reaches(&g, &g.finished, 9));
    ck_assert_int_eq(weft_pool_close(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(idle_threads_exit_to_zero_by_default_min) {
    weft_pool *pool = weft_pool_new(&(weft_pool_opts){.idle_timeout = WEFT_MS(20)});
    ck_assert_ptr_nonnull(pool);
    gate g;
    gate_init(&g);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(weft_pool_go(pool, gate_block, &g), 0);
    ck_assert(gate_reaches(&g, &g.arrived, 4));
    gate_open(&g);
    ck_assert(threads_become(pool, 0));
    /* a pool whose threads have all left starts new ones */
    ck_assert_int_eq(weft_pool_go(pool, gate_pass, &g), 0);
    ck_assert(gate_reaches(&g, &g.finished, 5));
    ck_assert_int_eq(weft_pool_close(pool), 0);
    gate_destroy(&g);
}
END_TEST

static atomic_int third_ran;
static void mark_third(void *arg) {
    (void)arg;
    atomic_store(&third_ran, 1);
}

START_TEST(max_threads_gives_eagain_and_queues_nothing) {
    weft_pool *pool = weft_pool_new(&(weft_pool_opts){.max_threads = 2});
    ck_assert_ptr_nonnull(pool);
    gate g;
    gate_init(&g);
    ck_assert_int_eq(weft_pool_go(pool, gate_block, &g), 0);
    ck_assert_int_eq(weft_pool_go(pool, gate_block, &g), 0);
    ck_assert(gate_reaches(&g, &g.arrived, 2));
    ck_assert_int_eq(weft_pool_go(pool, mark_third, NULL), WEFT_EAGAIN);
    gate_open(&g);
    ck_assert(gate_reaches(&g, &g.finished, 2));
    ck_assert_int_eq(weft_pool_close(pool), 0); /* would run anything queued */
    ck_assert_int_eq(atomic_load(&third_ran), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(failed_thread_create_returns_enomem_and_pool_stays_usable) {
    ck_assert(goroutines_become(0));
    weft_pool *pool = weft_pool_new(NULL);
    ck_assert_ptr_nonnull(pool);
    gate g;
    gate_init(&g);
    weft__pool_fail_thread_create(1);
    ck_assert_int_eq(weft_pool_go(pool, gate_pass, &g), WEFT_ENOMEM);
    ck_assert_int_eq(weft__pool_threads(pool), 0);
    ck_assert_int_eq(weft_goroutines(), 0);
    /* the next start succeeds */
    ck_assert_int_eq(weft_pool_go(pool, gate_block, &g), 0);
    ck_assert(gate_reaches(&g, &g.arrived, 1));
    /* a failure while a thread is busy leaves the busy one alone */
    weft__pool_fail_thread_create(1);
    ck_assert_int_eq(weft_pool_go(pool, gate_pass, &g), WEFT_ENOMEM);
    ck_assert_int_eq(weft__pool_threads(pool), 1);
    ck_assert_int_eq(weft_goroutines(), 1);
    gate_open(&g);
    ck_assert(gate_reaches(&g, &g.finished, 1));
    ck_assert_int_eq(weft_pool_go(pool, gate_pass, &g), 0);
    ck_assert(gate_reaches(&g, &g.finished, 2));
    ck_assert_int_eq(gate_read(&g, &g.arrived), 2); /* the failed calls never ran */
    ck_assert_int_eq(weft_pool_close(pool), 0);
    gate_destroy(&g);
}
END_TEST

START_TEST(failed_worker_allocation_returns_enomem_and_pool_stays_usable) {
    weft_pool *pool = weft_pool_new(NULL);
    ck_assert_ptr_nonnull(pool);
    gate g;
    gate_init(&g);
    weft__alloc_fail_from(1);
    int result = weft_pool_go(pool, gate_pass, &g);
    weft__alloc_fail_from(0);
    ck_assert_int_eq(result, WEFT_ENOMEM);
    ck_assert_int_eq(weft__pool_threads(pool), 0);
    ck_assert_int_eq(weft_pool_go(pool, gate_pass, &g), 0);
    ck_assert(gate_reaches(&g, &g.finished, 1));
    ck_assert_int_eq(gate_read(&g, &g.arrived), 1);
    ck_assert_int_eq(weft_pool_close(pool), 0);
    gate_destroy(&g);
}
END_TEST

/* ---- Close ---- */

typedef struct {
    weft_pool *pool;
    int result;
} closer;

static void *close_in_thread(void *arg) {
    closer *c = arg;
    c->result = weft_pool_close(c->pool);
    return NULL;
}

typedef struct {
    gate gate;
    weft_pool *pool;
    int go_result;    /* weft_pool_go on its own pool after the gate opened */
    int close_result; /* weft_pool_close on its own pool */
} inside;

static void go_after_gate(void *arg) {
    inside *state = arg;
    gate_block(
        &state->gate); /* counts finished before we try: the main thread only waits for arrival */
    state->go_result = weft_pool_go(state->pool, do_nothing, NULL);
}

START_TEST(pool_go_after_close_began_returns_eclosed) {
    inside state = {.go_result = 1};
    gate_init(&state.gate);
    state.pool = weft_pool_new(NULL);
    ck_assert_ptr_nonnull(state.pool);
    ck_assert_int_eq(weft_pool_go(state.pool, go_after_gate, &state), 0);
    ck_assert(gate_reaches(&state.gate, &state.gate.arrived, 1));

    closer c = {.pool = state.pool, .result = 1};
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, close_in_thread, &c), 0);
    /* close is waiting for go_after_gate; until it has begun, calls succeed */
    weft_time deadline = weft_deadline(WEFT_MS(WAIT_MS));
    int result;
    while ((result = weft_pool_go(state.pool, do_nothing, NULL)) == 0 && weft_now() < deadline)
        sleep_ms(1);
    ck_assert_int_eq(result, WEFT_ECLOSED);

    gate_open(&state.gate);
    ck_assert_int_eq(pthread_join(thread, NULL), 0);
    ck_assert_int_eq(c.result, 0);
    ck_assert_int_eq(state.go_result, WEFT_ECLOSED); /* from inside, too */
    gate_destroy(&state.gate);
}
END_TEST

static void block_then_linger(void *arg) {
    gate *g = arg;
    pthread_mutex_lock(&g->mutex);
    g->arrived++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open) pthread_cond_wait(&g->cond, &g->mutex);
    pthread_mutex_unlock(&g->mutex);
    sleep_ms(20);
    pthread_mutex_lock(&g->mutex);
    g->finished++;
    pthread_mutex_unlock(&g->mutex);
}

static void *open_later(void *arg) {
    sleep_ms(100);
    gate_open(arg);
    return NULL;
}

START_TEST(pool_close_waits_for_running_goroutines) {
    weft_pool *pool = weft_pool_new(NULL);
    ck_assert_ptr_nonnull(pool);
    gate g;
    gate_init(&g);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(weft_pool_go(pool, block_then_linger, &g), 0);
    ck_assert(gate_reaches(&g, &g.arrived, 4));
    pthread_t opener;
    ck_assert_int_eq(pthread_create(&opener, NULL, open_later, &g), 0);
    ck_assert_int_eq(weft_pool_close(pool), 0);
    ck_assert_int_eq(gate_read(&g, &g.finished), 4);
    ck_assert_int_eq(pthread_join(opener, NULL), 0);
    gate_destroy(&g);
}
END_TEST

static void close_own_pool(void *arg) {
    inside *state = arg;
    state->close_result = weft_pool_close(state->pool);
    gate_pass(&state->gate);
}

START_TEST(pool_close_from_own_goroutine_returns_einval) {
    inside state = {.close_result = 1};
    gate_init(&state.gate);
    state.pool = weft_pool_new(NULL);
    ck_assert_ptr_nonnull(state.pool);
    ck_assert_int_eq(weft_pool_go(state.pool, close_own_pool, &state), 0);
    ck_assert(gate_reaches(&state.gate, &state.gate.finished, 1));
    ck_assert_int_eq(state.close_result, WEFT_EINVAL);
    ck_assert_int_eq(weft_pool_go(state.pool, do_nothing, NULL), 0); /* still open */
    ck_assert_int_eq(weft_pool_close(state.pool), 0);
    gate_destroy(&state.gate);
}
END_TEST

START_TEST(pool_close_null_returns_einval) { ck_assert_int_eq(weft_pool_close(NULL), WEFT_EINVAL); }
END_TEST

START_TEST(pool_close_of_unused_pool_returns_zero) {
    weft_pool *pool = weft_pool_new(NULL);
    ck_assert_ptr_nonnull(pool);
    ck_assert_int_eq(weft_pool_close(pool), 0);
}
END_TEST

/* ---- Options ---- */

START_TEST(pool_new_rejects_invalid_options) {
    const weft_pool_opts invalid[] = {
        {.min_threads = -1},  {.max_threads = -1},
        {.idle_timeout = -1}, {.min_threads = 5, .max_threads = 2},
        {.stack_size = 1},
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        errno = 0;
        ck_assert_ptr_null(weft_pool_new(&invalid[i]));
        ck_assert_int_eq(errno, EINVAL);
    }
}
END_TEST

START_TEST(pool_new_out_of_memory_returns_null_with_enomem) {
    weft__alloc_fail_from(1);
    errno = 0;
    weft_pool *pool = weft_pool_new(NULL);
    int error = errno;
    weft__alloc_fail_from(0);
    ck_assert_ptr_null(pool);
    ck_assert_int_eq(error, ENOMEM);
}
END_TEST

typedef struct {
    gate gate;
    char name[32];
    size_t stack_size;
} thread_facts;

static void read_thread_facts(void *arg) {
    thread_facts *facts = arg;
    pthread_getname_np(pthread_self(), facts->name, sizeof facts->name);
    pthread_attr_t attributes;
    if (pthread_getattr_np(pthread_self(), &attributes) == 0) {
        pthread_attr_getstacksize(&attributes, &facts->stack_size);
        pthread_attr_destroy(&attributes);
    }
    gate_pass(&facts->gate);
}

static thread_facts facts_of(weft_pool *pool) {
    thread_facts facts;
    memset(&facts, 0, sizeof facts);
    gate_init(&facts.gate);
    int result =
        pool ? weft_pool_go(pool, read_thread_facts, &facts) : weft_go(read_thread_facts, &facts);
    ck_assert_int_eq(result, 0);
    ck_assert(gate_reaches(&facts.gate, &facts.gate.finished, 1));
    gate_destroy(&facts.gate);
    return facts;
}

START_TEST(thread_names_start_with_pool_name) {
    weft_pool *pool = weft_pool_new(&(weft_pool_opts){.name = "tester"});
    ck_assert_ptr_nonnull(pool);
    thread_facts facts = facts_of(pool);
    ck_assert_str_eq(facts.name, "tester/1");
    ck_assert_int_eq(weft_pool_close(pool), 0);

    facts = facts_of(NULL);
    ck_assert_msg(strncmp(facts.name, "weft/", 5) == 0, "default pool thread named %s", facts.name);
}
END_TEST

START_TEST(long_pool_names_are_cut_to_15_characters) {
    weft_pool *pool = weft_pool_new(&(weft_pool_opts){.name = "a-very-long-pool-name"});
    ck_assert_ptr_nonnull(pool);
    thread_facts facts = facts_of(pool);
    ck_assert_str_eq(facts.name, "a-very-long-poo");
    ck_assert_int_eq(weft_pool_close(pool), 0);
}
END_TEST

START_TEST(stack_size_option_sets_thread_stack) {
    /* Larger than glibc's default (8 MiB, or RLIMIT_STACK), so a pool that
     * ignored the option would fail; only a lower bound, since glibc may
     * hand out a cached stack somewhat larger than asked for. */
    const size_t want = 24u << 20;
    weft_pool *pool = weft_pool_new(&(weft_pool_opts){.stack_size = want});
    ck_assert_ptr_nonnull(pool);
    thread_facts facts = facts_of(pool);
    ck_assert_uint_ge(facts.stack_size, want);
    ck_assert_int_eq(weft_pool_close(pool), 0);
}
END_TEST

/* ---- Concurrency: hand-offs racing idle timeouts ---- */

enum { SUBMITTERS = 4, TASKS_PER_SUBMITTER = 2000 };

typedef struct {
    weft_pool *pool;
    atomic_int *ran;
    unsigned seed;
    int failures;
} submitter;

static void count_run(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

static void *submit(void *arg) {
    submitter *s = arg;
    for (int i = 0; i < TASKS_PER_SUBMITTER; i++) {
        if (weft_pool_go(s->pool, count_run, s->ran) != 0) s->failures++;
        /* now and then pause past the idle timeout, so that idle threads
         * time out while others are being handed work */
        if (rand_r(&s->seed) % 64 == 0) sleep_ms(1 + rand_r(&s->seed) % 3);
    }
    return NULL;
}

START_TEST(handoff_racing_idle_timeout_runs_every_task_once) {
    weft_pool *pool = weft_pool_new(&(weft_pool_opts){.idle_timeout = WEFT_MS(1)});
    ck_assert_ptr_nonnull(pool);
    static atomic_int ran;
    atomic_store(&ran, 0);
    pthread_t threads[SUBMITTERS];
    submitter submitters[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++) {
        submitters[i] = (submitter){.pool = pool, .ran = &ran, .seed = (unsigned)i + 1};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, submit, &submitters[i]), 0);
    }
    for (int i = 0; i < SUBMITTERS; i++) {
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
        ck_assert_int_eq(submitters[i].failures, 0);
    }
    ck_assert_int_eq(weft_pool_close(pool), 0);
    ck_assert_int_eq(atomic_load(&ran), SUBMITTERS * TASKS_PER_SUBMITTER);
    ck_assert(goroutines_become(0));
}
END_TEST

/* ---- The default pool's environment variables (forked tests only) ---- */

static void expect_blocked_limit(int accepted, int third_result) {
    gate g;
    gate_init(&g);
    for (int i = 0; i < accepted; i++) ck_assert_int_eq(weft_go(gate_block, &g), 0);
    ck_assert(gate_reaches(&g, &g.arrived, accepted));
    ck_assert_int_eq(weft_go(gate_block, &g), third_result);
    gate_open(&g);
    ck_assert(goroutines_become(0));
    gate_destroy(&g);
}

START_TEST(env_max_threads_limits_default_pool) {
    setenv("WEFT_MAX_THREADS", "2", 1);
    expect_blocked_limit(2, WEFT_EAGAIN);
}
END_TEST

START_TEST(env_invalid_numbers_are_ignored) {
    setenv("WEFT_MAX_THREADS", "2x", 1);
    setenv("WEFT_MIN_THREADS", "-1", 1);
    setenv("WEFT_IDLE_TIMEOUT_MS", "soon", 1);
    setenv("WEFT_STACK_SIZE", "99999999999999999999999", 1);
    expect_blocked_limit(2, 0); /* max_threads is not 2 */
}
END_TEST

START_TEST(env_contradicting_values_are_ignored) {
    setenv("WEFT_MIN_THREADS", "5", 1);
    setenv("WEFT_MAX_THREADS", "2", 1);
    expect_blocked_limit(2, 0); /* defaults: max_threads is not 2 */
}
END_TEST

START_TEST(env_idle_timeout_and_min_threads_shrink_default_pool) {
    setenv("WEFT_IDLE_TIMEOUT_MS", "30", 1);
    setenv("WEFT_MIN_THREADS", "1", 1);
    gate g;
    gate_init(&g);
    for (int i = 0; i < 6; i++) ck_assert_int_eq(weft_go(gate_block, &g), 0);
    ck_assert(gate_reaches(&g, &g.arrived, 6));
    gate_open(&g);
    ck_assert(threads_become(weft__pool_default(), 1));
    gate_destroy(&g);
}
END_TEST

START_TEST(env_stack_size_sets_default_pool_stack) {
    setenv("WEFT_STACK_SIZE", "25165824", 1); /* 24 MiB: see stack_size_option_sets_thread_stack */
    thread_facts facts = facts_of(NULL);
    ck_assert_uint_ge(facts.stack_size, 25165824u);
}
END_TEST

static Suite *go_suite(bool forking) {
    Suite *suite = suite_create("go");

    TCase *go = tcase_create("go");
    tcase_set_timeout(go, 60);
    tcase_add_test(go, go_runs_function_with_its_arg);
    tcase_add_test(go, goroutines_counts_running_and_returns_to_zero);
    tcase_add_test(go, goroutines_counts_every_pool);
    tcase_add_test(go, null_fn_returns_einval);
    suite_add_tcase(suite, go);

    TCase *threads = tcase_create("threads");
    tcase_set_timeout(threads, 60);
    tcase_add_test(threads, sequential_goroutines_reuse_threads);
    tcase_add_test(threads, blocked_goroutines_do_not_stop_others);
    tcase_add_test(threads, idle_threads_above_min_exit_after_idle_timeout);
    tcase_add_test(threads, idle_threads_exit_to_zero_by_default_min);
    tcase_add_test(threads, max_threads_gives_eagain_and_queues_nothing);
    tcase_add_test(threads, failed_thread_create_returns_enomem_and_pool_stays_usable);
    tcase_add_test(threads, failed_worker_allocation_returns_enomem_and_pool_stays_usable);
    tcase_add_test(threads, handoff_racing_idle_timeout_runs_every_task_once);
    suite_add_tcase(suite, threads);

    TCase *close = tcase_create("close");
    tcase_set_timeout(close, 60);
    tcase_add_test(close, pool_go_after_close_began_returns_eclosed);
    tcase_add_test(close, pool_close_waits_for_running_goroutines);
    tcase_add_test(close, pool_close_from_own_goroutine_returns_einval);
    tcase_add_test(close, pool_close_null_returns_einval);
    tcase_add_test(close, pool_close_of_unused_pool_returns_zero);
    suite_add_tcase(suite, close);

    TCase *options = tcase_create("options");
    tcase_set_timeout(options, 60);
    tcase_add_test(options, pool_new_rejects_invalid_options);
    tcase_add_test(options, pool_new_out_of_memory_returns_null_with_enomem);
    tcase_add_test(options, thread_names_start_with_pool_name);
    tcase_add_test(options, long_pool_names_are_cut_to_15_characters);
    tcase_add_test(options, stack_size_option_sets_thread_stack);
    suite_add_tcase(suite, options);

    if (forking) {
        TCase *environment = tcase_create("environment");
        tcase_set_timeout(environment, 60);
        tcase_add_test(environment, env_max_threads_limits_default_pool);
        tcase_add_test(environment, env_invalid_numbers_are_ignored);
        tcase_add_test(environment, env_contradicting_values_are_ignored);
        tcase_add_test(environment, env_idle_timeout_and_min_threads_shrink_default_pool);
        tcase_add_test(environment, env_stack_size_sets_default_pool_stack);
        suite_add_tcase(suite, environment);
    }
    return suite;
}

int main(void) {
    /* The fork status must be known before the suite is built: ask a
     * throwaway runner, which reads CK_FORK. */
    bool forking = check_forks();

    /* Without fork every test shares one default pool. A short idle
     * timeout lets its threads leave before exit, so that valgrind finds
     * no live thread (whose glibc TLS block it would call "possibly lost"). */
    if (!forking) setenv("WEFT_IDLE_TIMEOUT_MS", "50", 0);

    SRunner *runner = srunner_create(go_suite(forking));
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    if (!forking && !threads_become(weft__pool_default(), 0)) failed++;
    if (!forking)
        sleep_ms(50); /* the last leaver is past the pool; let its thread finish exiting */
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
