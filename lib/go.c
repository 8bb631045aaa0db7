/* Goroutines: a pool of threads, each running one call at a time.
 *
 * The pieces
 *   A worker is one pooled thread. Between goroutines it sits on its pool's
 *   idle stack and sleeps on its own parker (lib/parker.h). weft_pool_go
 *   pops the top worker (LIFO: the thread that ran last is the one whose
 *   cache and stack are warm, and the threads at the bottom stay cold
 *   long enough to time out), stores fn and arg in it, claims its parker
 *   and unparks it. No allocation on that path: a worker is allocated once,
 *   when its thread is started. When the stack is empty, weft_pool_go
 *   starts a new thread with the call already stored in its worker, unless
 *   max_threads threads exist, in which case it returns WEFT_EAGAIN.
 *
 * What the pool's mutex protects
 *   The idle stack and each worker's place on it (worker.idle and its
 *   links), the counts threads and running, the closing flag, and the
 *   hand-over of a task: a worker's fn, arg and quit are written only by
 *   the thread that has just popped the worker off the idle stack, and the
 *   worker reads them after its parker says it was unparked (the unpark
 *   publishes everything written before it). The options (min_threads,
 *   max_threads, idle_timeout, attributes, name) are written before the
 *   pool is published and only read afterwards. No lock is held while a
 *   goroutine runs, while a thread is created, or while anyone sleeps
 *   (close waits on the drained condition, which releases the mutex).
 *
 * The race between an idle timeout and a hand-off, and how it resolves
 *   An idle worker parks with a deadline. Its park may time out at the
 *   very moment weft_pool_go pops it and is about to unpark it. The mutex
 *   decides who wins: a worker is handed a task only while it is on the
 *   idle stack, and it leaves the stack only under the mutex. So a worker
 *   whose park timed out takes the mutex and looks at worker.idle:
 *     - still on the stack: nobody has a claim on it. If the pool has more
 *       than min_threads threads it removes itself and exits; otherwise it
 *       stays idle and parks again, now without a deadline.
 *     - no longer on the stack: weft_pool_go (or close) popped it before
 *       the timeout got the mutex and will unpark it. It parks again
 *       without a deadline; that unpark ends the park at once or soon.
 *   The worker never claims its own parker, so the claim that goes with
 *   each pop always succeeds; each pop is followed by exactly one claim
 *   and one unpark, and each park that returns 0 consumes exactly one.
 *
 * Invariants
 *   A worker is on the idle stack exactly when its worker.idle is true;
 *   it is then parked (or about to park) with its parker armed and
 *   unclaimed, and no task is stored in it.
 *   threads counts the workers that exist: idle, running, or whose thread
 *   is being started. running counts the workers that hold a task
 *   (including one whose thread is being started); running <= threads <=
 *   max_threads.
 *   The pool starts a thread only when the idle stack is empty. Hence a
 *   worker that went idle without a deadline (threads <= min_threads at
 *   the time) keeps threads <= min_threads for as long as it stays idle,
 *   and every thread above min_threads goes idle with a deadline: the
 *   pool always shrinks back to min_threads.
 *   Once close has set closing, no task is handed out; when running has
 *   dropped to 0 every worker still in the pool is on the idle stack, so
 *   close can stop them all by handing each a quit, and join them.
 *   A worker that leaves on its own (timeout, or its parker could not be
 *   allocated) unlinks itself under the mutex, detaches its thread and
 *   frees itself; after that unlock it touches nothing of the pool's, so
 *   close neither waits for nor joins it. Workers still in the pool at
 *   close are joined and freed by close.
 *
 * The goroutine count
 *   One atomic counter over all pools. weft_pool_go increments it before
 *   the hand-off (so the caller sees its own goroutine counted); the
 *   worker decrements it under the pool's mutex when it has gone idle
 *   again, with release order, and weft_goroutines reads it with acquire
 *   order: reading 0 means every goroutine's writes are visible.
 *
 * Fork
 *   Every pool is on a list (pools_lock) so that fork's handlers (fork.h)
 *   can hold every pool's mutex across fork() and, in the child, empty
 *   each pool of the threads that did not survive. pools_lock is taken
 *   before a pool's mutex, never after. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloc.h"
#include "deadlock.h"
#include "dump.h"
#include "fork.h"
#include "go_internal.h"
#include "panic.h"
#include "parker.h"
#include "weft/go.h"

enum { DEFAULT_MAX_THREADS = 4096, NAME_SIZE = 16 /* Linux: 15 characters and the NUL */ };
_Static_assert((int)NAME_SIZE == (int)WEFT__POOL_NAME_SIZE, "dump.h copies a pool's name whole");
#define DEFAULT_IDLE_TIMEOUT WEFT_SEC(10)
#define DEFAULT_NAME "weft"

typedef struct worker {
    /* Set by the thread that starts the worker, before pthread_create;
     * never change. */
    weft_pool *pool;
    long number; /* the n of "<name>/<n>" */
    /* Written by the worker's own thread before its first task; read by
     * close once the pool has drained. */
    pthread_t thread;
    /* Its kernel id, for weft_debug_dump: 0 until the thread stores it
     * as it starts; read under the mutex. Relaxed. */
    atomic_long thread_id;
    /* The worker's thread's parker. Written by that thread, under the
     * pool's mutex, before it first goes idle; read under the mutex by
     * whoever pops the worker. */
    weft__parker *parker;
    /* The task: written by the starter, or by the popper under the mutex;
     * read by the worker after its park returned 0. */
    weft_fn fn;
    void *arg;
    /* Written by close under the mutex when it pops the worker; read by
     * the worker after its park returned 0. */
    bool quit;
    /* Under the mutex: on the idle stack, and the neighbours there (above
     * is toward the top, the more recently idle). */
    bool idle;
    struct worker *above, *below;
    /* Under the mutex: every worker of the pool, so that a forked child
     * can free those whose threads did not survive. */
    struct worker *next, *previous;
} worker;

struct weft_pool {
    pthread_mutex_t mutex;  /* protects the fields marked "mutex" */
    pthread_cond_t drained; /* broadcast when running drops to 0 while closing */
    worker *idle;           /* mutex: top of the idle stack, the most recently idle */
    worker *workers;        /* mutex: every worker (the `next` list) */
    int threads;            /* mutex: workers that exist (idle, running, or starting) */
    int running;            /* mutex: workers holding a task */
    long numbered;          /* mutex: thread numbers handed out, for names */
    bool closing;           /* mutex: weft_pool_close has begun */
    atomic_long started;    /* threads that began to run (test hook); relaxed */
    struct weft_pool *next_pool, *previous_pool; /* every pool, for fork; under pools_lock */
    /* Options: written before the pool is published, read-only after. */
    int min_threads;
    int max_threads;
    weft_time idle_timeout;
    pthread_attr_t attributes; /* stack size; threads are created joinable */
    char name[NAME_SIZE];
};

/* Goroutines running now in every pool; see the top of the file. */
static atomic_int goroutines;

/* Test hook: thread starts still to fail (weft__pool_fail_thread_create). */
static atomic_int failing_thread_creates;

/* The worker whose thread this is; NULL outside pooled threads. */
static _Thread_local worker *current_worker;

static weft_pool default_pool = {
    .mutex = PTHREAD_MUTEX_INITIALIZER,
    .drained = PTHREAD_COND_INITIALIZER,
};
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

/* Every pool, so that a forked child can forget their threads. */
static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
static weft_pool *pools; /* under pools_lock */

static void register_pool(weft_pool *pool) {
    weft__fork_watch();
    pthread_mutex_lock(&pools_lock);
    pool->previous_pool = NULL;
    pool->next_pool = pools;
    if (pools) pools->previous_pool = pool;
    pools = pool;
    pthread_mutex_unlock(&pools_lock);
}

static void unregister_pool(weft_pool *pool) {
    pthread_mutex_lock(&pools_lock);
    if (pool->previous_pool)
        pool->previous_pool->next_pool = pool->next_pool;
    else
        pools = pool->next_pool;
    if (pool->next_pool) pool->next_pool->previous_pool = pool->previous_pool;
    pthread_mutex_unlock(&pools_lock);
}
static int default_error; /* written once inside default_once: 0 or a WEFT_E* code */

/* ---- The idle stack (all under the pool's mutex) ---- */

static void idle_push(weft_pool *pool, worker *self) {
    self->above = NULL;
    self->below = pool->idle;
    if (pool->idle) pool->idle->above = self;
    pool->idle = self;
    self->idle = true;
}

static void idle_remove(weft_pool *pool, worker *self) {
    if (self->above)
        self->above->below = self->below;
    else
        pool->idle = self->below;
    if (self->below) self->below->above = self->above;
    self->above = self->below = NULL;
    self->idle = false;
}

static void workers_add(weft_pool *pool, worker *self) {
    self->previous = NULL;
    self->next = pool->workers;
    if (pool->workers) pool->workers->previous = self;
    pool->workers = self;
}

static void workers_remove(weft_pool *pool, worker *self) {
    if (self->previous)
        self->previous->next = self->next;
    else
        pool->workers = self->next;
    if (self->next) self->next->previous = self->previous;
}

/* ---- Options ---- */

/* Fill pool's options from opts (NULL: all defaults). Returns 0, EINVAL
 * for an option out of range, or ENOMEM; on error pool is untouched. */
static int configure(weft_pool *pool, const weft_pool_opts *opts) {
    weft_pool_opts options = opts ? *opts : (weft_pool_opts){0};
    if (options.min_threads < 0 || options.max_threads < 0 || options.idle_timeout < 0)
        return EINVAL;
    if (options.max_threads == 0)
        options.max_threads =
            options.min_threads > DEFAULT_MAX_THREADS ? options.min_threads : DEFAULT_MAX_THREADS;
    if (options.min_threads > options.max_threads) return EINVAL;
    if (options.idle_timeout == 0) options.idle_timeout = DEFAULT_IDLE_TIMEOUT;
    if (!options.name || !options.name[0]) options.name = DEFAULT_NAME;

    if (pthread_attr_init(&pool->attributes) != 0) return ENOMEM;
    if (options.stack_size != 0 &&
        pthread_attr_setstacksize(&pool->attributes, options.stack_size) != 0) {
        pthread_attr_destroy(&pool->attributes);
        return EINVAL;
    }
    pool->min_threads = options.min_threads;
    pool->max_threads = options.max_threads;
    pool->idle_timeout = options.idle_timeout;
    size_t length = strnlen(options.name, NAME_SIZE - 1);
    memcpy(pool->name, options.name, length);
    pool->name[length] = '\0';
    return 0;
}

/* The environment variable called name as a decimal number in
 * [low, high], into *value. False (and *value untouched) when it is
 * unset, empty, not a number, or out of range. */
static bool environment_number(const char *name, long long low, long long high, long long *value) {
    const char *text = getenv(name);
    if (!text || !text[0]) return false;
    char *end;
    errno = 0;
    long long number = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || number < low || number > high) return false;
    *value = number;
    return true;
}

static void start_default_pool(void) {
    weft_pool_opts options = {0};
    long long number;
    if (environment_number("WEFT_MIN_THREADS", 0, INT_MAX, &number))
        options.min_threads = (int)number;
    if (environment_number("WEFT_MAX_THREADS", 1, INT_MAX, &number))
        options.max_threads = (int)number;
    if (environment_number("WEFT_IDLE_TIMEOUT_MS", 1, LLONG_MAX, &number))
        options.idle_timeout = number > WEFT_FOREVER / WEFT_MS(1) ? WEFT_FOREVER : WEFT_MS(number);
    if (environment_number("WEFT_STACK_SIZE", 1,
                           (long long)(SIZE_MAX < LLONG_MAX ? SIZE_MAX : LLONG_MAX), &number))
        options.stack_size = (size_t)number;
    /* Values that contradict each other (min above max, a stack size the
     * system refuses) are ignored as a whole. */
    if (configure(&default_pool, &options) != 0 && configure(&default_pool, NULL) != 0)
        default_error = WEFT_ENOMEM;
    else
        register_pool(&default_pool);
}

/* ---- Workers ---- */

static void name_thread(const weft_pool *pool, long number) {
    char name[NAME_SIZE + 24];
    snprintf(name, sizeof name, "%s/%ld", pool->name, number);
    name[NAME_SIZE - 1] = '\0';
    pthread_setname_np(pthread_self(), name);
}

/* The worker's thread leaves the pool, which no longer knows it (see
 * "Invariants"): nobody will join it, so it detaches itself. */
static void leave(worker *self) {
    current_worker = NULL;
    int error = pthread_detach(pthread_self());
    if (error != 0) weft__panic_errno("pthread_detach", error);
    weft__free(self);
}

/* Park until a task (or quit) is handed over: true. Or until the idle
 * deadline passes while the pool has more than min_threads threads and
 * nobody has popped this worker: then it has removed itself from the
 * pool; false. */
static bool wait_for_task(weft_pool *pool, worker *self, weft_time deadline) {
    while (weft__parker_park(self->parker, deadline) != 0) {
        pthread_mutex_lock(&pool->mutex);
        if (self->idle && pool->threads > pool->min_threads) {
            idle_remove(pool, self);
            workers_remove(pool, self);
            pool->threads--;
            pthread_mutex_unlock(&pool->mutex);
            return false;
        }
        /* Either popped (its unpark is on the way) or needed to keep
         * min_threads: either way, wait without a deadline. The parker
         * stays armed and unclaimed: a park that times out consumes
         * nothing. */
        deadline = WEFT_FOREVER;
        pthread_mutex_unlock(&pool->mutex);
    }
    return true;
}

static void *worker_main(void *argument) {
    worker *self = argument;
    weft_pool *pool = self->pool;
    self->thread = pthread_self();
    atomic_store_explicit(&self->thread_id, (long)syscall(SYS_gettid), memory_order_relaxed);
    current_worker = self;
    atomic_fetch_add_explicit(&pool->started, 1, memory_order_relaxed);
    name_thread(pool, self->number);

    for (;;) {
        self->fn(self->arg);
        /* The parker is allocated the first time the worker goes idle;
         * if that fails, the worker cannot sleep, so it leaves. */
        if (!self->parker) self->parker = weft__parker_self();

        pthread_mutex_lock(&pool->mutex);
        pool->running--;
        if (pool->running == 0 && pool->closing) pthread_cond_broadcast(&pool->drained);
        atomic_fetch_sub_explicit(&goroutines, 1, memory_order_release);
        if (!self->parker) {
            workers_remove(pool, self);
            pool->threads--;
            pthread_mutex_unlock(&pool->mutex);
            if (weft__deadlock_enabled()) weft__deadlock_goroutine_ended();
            leave(self);
            return NULL;
        }
        self->fn = NULL;
        self->arg = NULL;
        weft__parker_arm(self->parker);
        /* Idle: no wait is described (every blocking call ended its
         * record), so this park is never counted as asleep nor dumped. */
        idle_push(pool, self);
        weft_time deadline =
            pool->threads > pool->min_threads ? weft_deadline(pool->idle_timeout) : WEFT_FOREVER;
        pthread_mutex_unlock(&pool->mutex);
        if (weft__deadlock_enabled()) weft__deadlock_goroutine_ended();

        if (!wait_for_task(pool, self, deadline)) {
            leave(self);
            return NULL;
        }
        if (self->quit) return NULL; /* close joins and frees us */
    }
}

/* Test hook: true when this thread start must fail. */
static bool fail_this_thread_create(void) {
    int count = atomic_load_explicit(&failing_thread_creates, memory_order_relaxed);
    while (count > 0) {
        if (atomic_compare_exchange_weak_explicit(&failing_thread_creates, &count, count - 1,
                                                  memory_order_relaxed, memory_order_relaxed))
            return true;
    }
    return false;
}

/* Start a thread to run fn(arg). The caller has counted it in threads
 * and running (and in goroutines); on failure this undoes that. */
static int start_worker(weft_pool *pool, long number, weft_fn fn, void *arg) {
    worker *self = weft__calloc(1, sizeof *self);
    if (self) {
        self->pool = pool;
        self->number = number;
        self->fn = fn;
        self->arg = arg;
        pthread_mutex_lock(&pool->mutex);
        workers_add(pool, self);
        pthread_mutex_unlock(&pool->mutex);
        pthread_t thread;
        int error = fail_this_thread_create()
                        ? EAGAIN
                        : pthread_create(&thread, &pool->attributes, worker_main, self);
        /* On success the worker may already have run fn, gone idle and
         * been closed and freed with the pool: touch neither from here. */
        if (error == 0) return 0;
    }
    pthread_mutex_lock(&pool->mutex);
    if (self) workers_remove(pool, self);
    pool->threads--;
    pool->running--;
    if (pool->running == 0 && pool->closing) pthread_cond_broadcast(&pool->drained);
    atomic_fetch_sub_explicit(&goroutines, 1, memory_order_release);
    pthread_mutex_unlock(&pool->mutex);
    weft__free(self);
    if (weft__deadlock_enabled()) weft__deadlock_goroutine_ended();
    return WEFT_ENOMEM;
}

/* ---- The API ---- */

weft_pool *weft_pool_new(const weft_pool_opts *opts) {
    int error = ENOMEM;
    weft_pool *pool = weft__calloc(1, sizeof *pool);
    if (!pool) goto fail_allocate;
    error = configure(pool, opts);
    if (error != 0) goto fail_configure;
    if (pthread_mutex_init(&pool->mutex, NULL) != 0) goto fail_mutex;
    if (pthread_cond_init(&pool->drained, NULL) != 0) goto fail_cond;
    register_pool(pool);
    return pool;

fail_cond:
    pthread_mutex_destroy(&pool->mutex);
fail_mutex:
    pthread_attr_destroy(&pool->attributes);
    error = ENOMEM;
fail_configure:
    weft__free(pool);
fail_allocate:
    errno = error;
    return NULL;
}

int weft_pool_go(weft_pool *pool, weft_fn fn, void *arg) {
    if (!pool || !fn) return WEFT_EINVAL;
    pthread_mutex_lock(&pool->mutex);
    if (pool->closing) {
        pthread_mutex_unlock(&pool->mutex);
        return WEFT_ECLOSED;
    }
    worker *idle = pool->idle;
    if (idle) {
        idle_remove(pool, idle);
        idle->fn = fn;
        idle->arg = arg;
        pool->running++;
        pthread_mutex_unlock(&pool->mutex);
        atomic_fetch_add_explicit(&goroutines, 1, memory_order_relaxed);
        /* The worker never claims itself (see the top of the file). */
        if (!weft__parker_claim(idle->parker, 0))
            weft__panic("pool: an idle thread's parker was already claimed");
        weft__parker_unpark(idle->parker);
        return 0;
    }
    if (pool->threads >= pool->max_threads) {
        pthread_mutex_unlock(&pool->mutex);
        return WEFT_EAGAIN;
    }
    pool->threads++;
    pool->running++;
    long number = ++pool->numbered;
    atomic_fetch_add_explicit(&goroutines, 1, memory_order_relaxed);
    pthread_mutex_unlock(&pool->mutex);
    return start_worker(pool, number, fn, arg);
}

int weft_pool_close(weft_pool *pool) {
    if (!pool || pool == &default_pool) return WEFT_EINVAL;
    if (current_worker && current_worker->pool == pool) return WEFT_EINVAL;

    /* Before taking the pool's mutex: fork's prepare handler takes
     * pools_lock, then each pool's mutex. */
    unregister_pool(pool);
    pthread_mutex_lock(&pool->mutex);
    pool->closing = true;
    while (pool->running > 0) pthread_cond_wait(&pool->drained, &pool->mutex);
    /* Every worker still in the pool is idle now: pop them all and hand
     * each a quit, as a task is handed over. */
    worker *stopping = pool->idle;
    for (worker *each = stopping; each; each = each->below) {
        each->idle = false;
        each->quit = true;
    }
    pool->idle = NULL;
    pthread_mutex_unlock(&pool->mutex);

    for (worker *each = stopping; each; each = each->below) {
        if (!weft__parker_claim(each->parker, 0))
            weft__panic("pool: an idle thread's parker was already claimed");
        weft__parker_unpark(each->parker);
    }
    while (stopping) {
        worker *next = stopping->below;
        int error = pthread_join(stopping->thread, NULL);
        if (error != 0) weft__panic_errno("pthread_join", error);
        weft__free(stopping);
        stopping = next;
    }
    pthread_cond_destroy(&pool->drained);
    pthread_mutex_destroy(&pool->mutex);
    pthread_attr_destroy(&pool->attributes);
    weft__free(pool);
    return 0;
}

int weft_go(weft_fn fn, void *arg) {
    if (!fn) return WEFT_EINVAL;
    pthread_once(&default_once, start_default_pool);
    if (default_error != 0) return default_error;
    return weft_pool_go(&default_pool, fn, arg);
}

int weft_goroutines(void) { return atomic_load_explicit(&goroutines, memory_order_acquire); }

/* For deadlock.c: an idle worker parks with no description, so any
 * described park on a pooled thread is a goroutine's. */
bool weft__go_in_goroutine(void) { return current_worker != NULL; }

/* For weft_debug_dump (dump.h): a worker holds a task (fn) from the
 * hand-over until it has gone idle again, both under the mutex. */
size_t weft__pool_goroutines(weft__goroutine_snapshot *out, size_t room) {
    size_t found = 0;
    pthread_mutex_lock(&pools_lock);
    for (weft_pool *pool = pools; pool; pool = pool->next_pool) {
        pthread_mutex_lock(&pool->mutex);
        for (worker *each = pool->workers; each; each = each->next) {
            if (!each->fn) continue;
            if (found < room) {
                memcpy(out[found].pool, pool->name, sizeof out[found].pool);
                out[found].thread_id = atomic_load_explicit(&each->thread_id, memory_order_relaxed);
            }
            found++;
        }
        pthread_mutex_unlock(&pool->mutex);
    }
    pthread_mutex_unlock(&pools_lock);
    return found;
}

/* ---- Test hooks (go_internal.h) ---- */

weft_pool *weft__pool_default(void) {
    pthread_once(&default_once, start_default_pool);
    return &default_pool;
}

int weft__pool_threads(weft_pool *pool) {
    pthread_mutex_lock(&pool->mutex);
    int threads = pool->threads;
    pthread_mutex_unlock(&pool->mutex);
    return threads;
}

long weft__pool_threads_started(weft_pool *pool) {
    return atomic_load_explicit(&pool->started, memory_order_relaxed);
}

void weft__pool_fail_thread_create(int count) {
    atomic_store_explicit(&failing_thread_creates, count > 0 ? count : 0, memory_order_relaxed);
}

/* ---- fork (fork.h) ---- */

void weft__pool_fork_prepare(void) {
    pthread_mutex_lock(&pools_lock);
    for (weft_pool *pool = pools; pool; pool = pool->next_pool) pthread_mutex_lock(&pool->mutex);
}

void weft__pool_fork_parent(void) {
    for (weft_pool *pool = pools; pool; pool = pool->next_pool) pthread_mutex_unlock(&pool->mutex);
    pthread_mutex_unlock(&pools_lock);
}

/* Only the forking thread lives on. Every pool forgets its other threads
 * (freeing their workers and recycling their parkers, which nothing in
 * the child can reach any more) and its goroutines, except the one the
 * forking thread itself may be running, which still ends in worker_main
 * as usual. A close in
 * progress in the parent is not carried over (its thread is gone). */
void weft__pool_fork_child(void) {
    int survivors = 0;
    for (weft_pool *pool = pools; pool; pool = pool->next_pool) {
        bool ours = current_worker && current_worker->pool == pool;
        for (worker *each = pool->workers, *next; each; each = next) {
            next = each->next;
            if (each == current_worker) continue;
            workers_remove(pool, each);
            if (each->parker) weft__parker_recycle(each->parker);
            weft__free(each);
        }
        pool->idle = NULL;
        pool->threads = ours ? 1 : 0;
        pool->running = ours ? 1 : 0;
        survivors += ours;
        pthread_cond_init(&pool->drained, NULL);
        pthread_mutex_unlock(&pool->mutex);
    }
    atomic_store_explicit(&goroutines, survivors, memory_order_relaxed);
    pthread_mutex_unlock(&pools_lock);
}
