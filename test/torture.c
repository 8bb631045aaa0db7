/* torture — every weft operation at once, in seeded random rounds, with
 * the library's guarantees checked at the end of each round.
 *
 *   torture [--seed N] [--seconds S] [--round SEED] [--hang S] [--earliest-free]
 *           [--verbose]
 *
 * --seed N      the run's seed (default: from the clock); round n's seed is
 *               derived from it and n
 * --seconds S   run rounds for about S seconds (default 10)
 * --round SEED  replay one round from the seed a failure printed (with
 *               --seconds as well: repeat it for that long)
 * --hang S      a round not finished S seconds after its stop is a hang
 *               (default 30; 120 under a sanitizer)
 * --earliest-free  weight the earliest-free shapes (below) heavily, about
 *               two thirds of every worker's operations; a replay needs it
 *               too
 *
 * A round builds a random world from its seed: channels of capacity 0, 1
 * or N, or unbounded, carrying 0-, 8- or 24-byte values; a context tree under one root
 * (with_cancel, with_deadline, with_value); a ticker; a mutex, a rwmutex,
 * a semaphore and a once; and workers, each a goroutine or a plain
 * pthread with its own random mix of operations drawn from a generator
 * seeded from the round's. Workers send and receive in every form
 * (blocking, try, _until, _ctx), select over up to 70 cases (NULL
 * channels, the same channel in several cases and both directions,
 * context done channels, weft_after and ticker channels) in every form
 * (non-blocking, deadline, forever, _ctx, biased), close channels and
 * cancel contexts at random moments, make and cancel contexts of their
 * own (and hand them to other threads to cancel), register and stop
 * after-functions, wait on contexts and deadlines that only those can end,
 * lock the mutexes, take semaphore units, fan tasks out with WaitGroups
 * and errgroups (goroutines and pthreads), and run timers and tickers. In
 * the earliest-free shapes a worker makes a private channel, context,
 * WaitGroup or mutex, hands the bare pointer to a partner that holds no
 * reference, and frees it the moment it has seen the partner's operation
 * finish (the lifetime rule of issue 12). A chaos thread closes channels and cancels contexts on a
 * schedule. After a random few milliseconds the round stops: several threads close every channel
 * and cancel the root concurrently, everything is joined, the channels are drained, and the
 * invariants are checked:
 *
 *  - exactly once: every value whose send succeeded (0, or a select that
 *    chose that send case) was received exactly once or was still in its
 *    channel at the drain; no value whose send failed (or whose select
 *    case was not chosen) was ever received; values arrive intact, on the
 *    channel they were sent on, in FIFO order per sender for each
 *    receiver, and none was still buffered while a later one from the
 *    same sender had been received. Values are unique: producer << 44 |
 *    channel << 40 | counter, logged per producer and merged at the end;
 *    signal-only channels are checked by counts;
 *  - results: every return code is one the call's form allows; _until
 *    and timeouts never return early; a _ctx call returns its context's
 *    own error; a receive that did not happen (and every case a select did
 *    not choose) leaves its buffer untouched;
 *  - wake-ups: close, cancel and deadlines wake every thread they concern
 *    (some waits can only be ended by a context or a deadline): a round
 *    must finish within --hang seconds of its stop, or a watchdog prints
 *    the seed and what every thread is blocked in, and exits 1. When a
 *    cancel returns, every context below it has ended and its done
 *    channel is closed;
 *  - contexts: errors and causes are consistent (a cause names the
 *    context that was cancelled with it, a deadline error comes after the
 *    deadline), deadlines and values are inherited, children of ended
 *    contexts are born ended; errgroups return their tasks' first error;
 *  - mutual exclusion: pairs of counters written under the mutex and the
 *    rwmutex's write lock are never seen apart and add up at the end;
 *    semaphore units are never over-granted and all come back (the whole
 *    capacity can be taken at the end); a once runs once; WaitGroups wait
 *    for all their tasks; every after-function that stop said had started
 *    ran once;
 *  - no leaks: weft_goroutines() returns to 0 and weft__timer_pending()
 *    to its baseline after each round.
 *
 * A failure prints "torture: FAILED seed=<round seed> round=<n>: <what>"
 * and the round's world, and exits 1; `torture --round <round seed>`
 * replays the world and its operation mixes (not the interleaving). A
 * library abort or a sanitizer report prints the same seed line. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"
#include "timer.h" /* weft__timer_pending (internal): the timer leak check */

#include "sanitizers.h"
#if defined(UNDER_TSAN) || defined(UNDER_ASAN)
#define TORTURE_SANITIZED 1
#endif
#ifdef TORTURE_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

enum {
    MAX_CHANS = 8,      /* fits the 4 channel bits of a value */
    MAX_NODES = 16,     /* contexts of a round's tree; a bit each in a mask */
    MAX_WORKERS = 10,   /* per round */
    MAX_CASES = 70,     /* a select may exceed WEFT_SELECT_STACK_CASES */
    MAX_STOPPERS = 3,   /* threads that stop a round at once */
    MAX_EVENTS = 6,     /* the chaos thread's scheduled closes and cancels */
    MAX_MESSAGES = 8,   /* failures kept per round */
    MAX_PENDING = 8,    /* after-function registrations a worker keeps open */
    FIRST_CAUSE = 1000, /* cancel causes: FIRST_CAUSE + node index */
};

/* A value: producer << 44 | channel << 40 | counter; bit 63 is never set,
 * so a buffer still holding SENTINEL is never mistaken for a value. */
#define PRODUCER_SHIFT 44
#define CHANNEL_SHIFT 40
#define COUNTER_MASK ((UINT64_C(1) << CHANNEL_SHIFT) - 1)
#define MAX_PRODUCERS (1 << 19)
#define SENTINEL UINT64_C(0xA5A5A5A5A5A5A5A5)
#define CHECK_MULTIPLIER UINT64_C(0x9E3779B97F4A7C15)

/* ---- random numbers ----------------------------------------------------- */

typedef struct {
    uint64_t state;
} rng;

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint64_t next_random(rng *random) { return splitmix64(&random->state); }

/* Uniform below bound (> 0), to within bound / 2^32. */
static uint32_t below(rng *random, uint32_t bound) {
    return (uint32_t)(((next_random(random) >> 32) * bound) >> 32);
}

static bool chance(rng *random, unsigned percent) { return below(random, 100) < percent; }

static uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t state = a ^ (b * UINT64_C(0xD1B54A32D192ED03));
    return splitmix64(&state);
}

/* ---- logs of values ----------------------------------------------------- */

typedef struct {
    uint64_t *values;
    size_t count, capacity;
} value_log;

static void log_add(value_log *log, uint64_t value) {
    if (log->count == log->capacity) {
        size_t capacity = log->capacity ? log->capacity * 2 : 256;
        uint64_t *values = realloc(log->values, capacity * sizeof *values);
        if (!values) {
            fprintf(stderr, "torture: out of memory\n");
            exit(2);
        }
        log->values = values;
        log->capacity = capacity;
    }
    log->values[log->count++] = value;
}

static void log_free(value_log *log) {
    free(log->values);
    *log = (value_log){0};
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* ---- the world of a round ----------------------------------------------- */

/* What is counted, per agent, and summed into the run's totals. */
enum kind {
    K_SEND,
    K_RECV,
    K_SELECT,
    K_CLOSE,
    K_CANCEL,
    K_CONTEXT,
    K_MUTEX,
    K_RWMUTEX,
    K_SEMAPHORE,
    K_WAITGROUP,
    K_GROUP,
    K_GOROUTINE,
    K_TIMER,
    K_AFTER_FUNC,
    K_EARLY_FREE,
    K_OTHER,
    KINDS
};

static const char *const kind_names[KINDS] = {
    "sends",  "recvs",       "selects",        "closes",      "cancels",   "contexts",
    "mutex",  "rwmutex",     "semaphore",      "waitgroup",   "errgroups", "tasks",
    "timers", "after-funcs", "earliest-frees", "once/values",
};

/* What a worker may do; each has a weight in the worker's mix. */
enum op {
    OP_SEND,
    OP_RECV,
    OP_SELECT,
    OP_CLOSE,
    OP_CANCEL,
    OP_SUBCONTEXT,
    OP_CTX_WAIT,
    OP_MUTEX,
    OP_RWMUTEX,
    OP_SEMAPHORE,
    OP_WAITGROUP,
    OP_GROUP,
    OP_AFTER,
    OP_TICKER,
    OP_AFTER_FUNC,
    OP_ONCE,
    OP_VALUE,
    OP_EARLY_FREE,
    OPS
};

/* A worker's weight for each op: 0 with zero_percent chance, else uniform
 * in [low, high]. Tasks use task_weights. */
static const struct {
    unsigned low, high, zero_percent;
} weight_spec[OPS] = {
    [OP_SEND] = {100, 1000, 0},     [OP_RECV] = {100, 1000, 0},   [OP_SELECT] = {50, 800, 10},
    [OP_CLOSE] = {1, 1, 85},        [OP_CANCEL] = {1, 4, 40},     [OP_SUBCONTEXT] = {5, 60, 20},
    [OP_CTX_WAIT] = {2, 20, 30},    [OP_MUTEX] = {10, 200, 25},   [OP_RWMUTEX] = {10, 200, 25},
    [OP_SEMAPHORE] = {10, 150, 25}, [OP_WAITGROUP] = {2, 30, 30}, [OP_GROUP] = {2, 30, 30},
    [OP_AFTER] = {2, 30, 30},       [OP_TICKER] = {1, 10, 40},    [OP_AFTER_FUNC] = {2, 30, 30},
    [OP_ONCE] = {1, 20, 50},        [OP_VALUE] = {5, 50, 30},     [OP_EARLY_FREE] = {2, 20, 30},
};

/* --earliest-free: OP_EARLY_FREE's weight instead, about two thirds of
 * every worker's operations. */
static bool earliest_free;
static const struct { unsigned low, high, zero_percent; } earliest_free_spec = {4000, 12000, 0};

static const unsigned task_weights[OPS] = {
    [OP_SEND] = 30,   [OP_RECV] = 30,     [OP_SELECT] = 15,    [OP_MUTEX] = 5,
    [OP_RWMUTEX] = 5, [OP_SEMAPHORE] = 5, [OP_VALUE] = 3,      [OP_ONCE] = 1,
    [OP_AFTER] = 2,   [OP_CANCEL] = 1,    [OP_SUBCONTEXT] = 3, [OP_EARLY_FREE] = 2,
};

typedef struct {
    weft_chan *chan;
    size_t cap, elem_size;
    bool ctx_only; /* waited on only with contexts and bounded deadlines: closed after the join */
    atomic_int closes; /* weft_chan_close calls that returned 0 */
} chan_slot;

enum node_kind { NODE_CANCEL, NODE_DEADLINE, NODE_VALUE };
static const char *const node_kind_names[] = {"cancel", "deadline", "value"};

typedef struct {
    weft_ctx *ctx;
    int parent; /* -1 for the root */
    enum node_kind kind;
    weft_time deadline; /* what weft_ctx_deadline must say */
    uint32_t ancestors; /* bit i: node i is this node or above it */
    const void *key;    /* NODE_VALUE: its key (the value is the node itself) */
} ctx_node;

static const char value_keys[3] = {0}; /* their addresses are the keys */

typedef struct round round;
typedef struct agent agent;

/* An after-function registration, kept until the round's end (its fn may
 * run after the worker has stopped it and moved on). */
typedef struct after_record {
    struct after_record *next;
    weft_ctx_after *handle;
    weft_ctx *ctx; /* alive while fn runs (the registration holds it) */
    round *round;
    bool stopped;
} after_record;

/* Anything that runs operations: a worker, a task, the chaos thread, a
 * stopper, the drain. Each has its own producer id, counter and logs. */
struct agent {
    agent *next; /* the round's list of every agent */
    round *round;
    const char *role;
    int id; /* producer id; -1: may not send (ids ran out) */
    uint64_t counter;
    rng random;
    weft_ctx *ctx;   /* home context: ends by the round's stop at the latest */
    weft_ctx *lease; /* a short with_timeout under ctx, renewed once it ends; owned */
    value_log sent, failed, received;
    uint64_t signals_sent[MAX_CHANS], signals_received[MAX_CHANS];
    uint64_t counts[KINDS];
    uint64_t mutex_holds, rw_writes, after_started;
    int task_error; /* group tasks: what the task returns */
    const unsigned *weights;
    unsigned own_weights[OPS], weight_total;
    after_record *afters;               /* every registration made */
    after_record *pending[MAX_PENDING]; /* those not stopped yet */
    int pending_count;
    bool goroutine;
    pthread_t thread;
    _Atomic(const char *) doing; /* for the watchdog */
    atomic_int doing_chan;
    atomic_bool finished;
};

typedef struct {
    weft_time at; /* after the round's start */
    bool close;   /* else cancel */
    int index;
} chaos_event;

typedef struct {
    round *round;
    agent *agent;
    int actions[MAX_CHANS + MAX_NODES]; /* >= 0: close channel; < 0: cancel node -1 - a */
    int count;
    pthread_t thread;
    bool joinable; /* runs on thread */
} stopper;

struct round {
    uint64_t seed;
    long number;
    weft_time duration, started;
    _Atomic(const char *) phase;

    int chans_count;
    chan_slot chans[MAX_CHANS];
    int normal[MAX_CHANS], normal_count; /* indices of channels that are not ctx_only */
    int nodes_count;
    ctx_node nodes[MAX_NODES];
    weft_ticker *ticker;
    weft_time ticker_started;
    weft_pool *pool; /* some rounds: an explicit pool for WaitGroup tasks; else NULL */
    int pool_max_threads;

    struct {
        weft_mutex lock;
        uint64_t first, second; /* written under lock only */
        atomic_int inside;
    } mutex;
    struct {
        weft_rwmutex lock;
        uint64_t first, second; /* written under the write lock only */
        atomic_int readers, writers;
    } rw;
    struct {
        weft_sem sem;
        int64_t capacity;
        atomic_llong held;
    } sem;
    weft_once once;
    atomic_int once_runs;
    atomic_long after_ran;

    atomic_bool stop;
    atomic_int next_producer;
    atomic_int detached; /* detached pthreads still running */
    _Atomic(agent *) agents;
    int workers_count;
    agent *workers[MAX_WORKERS];
    weft_wg goroutine_workers;
    agent *chaos_agent;
    int events_count;
    chaos_event events[MAX_EVENTS];
    int stoppers_count;
    stopper stoppers[MAX_STOPPERS];

    pthread_mutex_t failure_lock;
    atomic_int failures;
    char messages[MAX_MESSAGES][320];
};

/* ---- failures ----------------------------------------------------------- */

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static void
failf(round *r, const char *format, ...) {
    pthread_mutex_lock(&r->failure_lock);
    int index = atomic_fetch_add(&r->failures, 1);
    if (index < MAX_MESSAGES) {
        va_list args;
        va_start(args, format);
        vsnprintf(r->messages[index], sizeof r->messages[index], format, args);
        va_end(args);
    }
    pthread_mutex_unlock(&r->failure_lock);
}

static const char *error_name(int err) {
    switch (err) {
    case WEFT_OK: return "0";
    case WEFT_ECLOSED: return "ECLOSED";
    case WEFT_EAGAIN: return "EAGAIN";
    case WEFT_ECANCELED: return "ECANCELED";
    case WEFT_ETIMEDOUT: return "ETIMEDOUT";
    case WEFT_ENOMEM: return "ENOMEM";
    case WEFT_EINVAL: return "EINVAL";
    default: return "unknown";
    }
}

/* The line printed when the process dies (an abort in the library, a
 * sanitizer report): written before each round, read by a signal handler. */
static char crash_line[160];
static size_t crash_line_length;

static void print_crash_line(void) {
    if (crash_line_length) {
        ssize_t ignored = write(STDERR_FILENO, crash_line, crash_line_length);
        (void)ignored;
    }
}

static void on_fatal_signal(int signal_number) {
    print_crash_line();
    signal(signal_number, SIG_DFL);
    raise(signal_number);
}

/* ---- agents ------------------------------------------------------------- */

static void set_doing(agent *a, const char *what, int chan) {
    atomic_store_explicit(&a->doing, what, memory_order_relaxed);
    atomic_store_explicit(&a->doing_chan, chan, memory_order_relaxed);
}

static agent *agent_new(round *r, const char *role, weft_ctx *ctx, uint64_t seed) {
    agent *a = calloc(1, sizeof *a);
    if (!a) {
        fprintf(stderr, "torture: out of memory\n");
        exit(2);
    }
    a->round = r;
    a->role = role;
    a->ctx = ctx;
    int id = atomic_fetch_add(&r->next_producer, 1);
    a->id = id < MAX_PRODUCERS ? id : -1;
    a->random.state = seed;
    a->weights = task_weights;
    for (int op = 0; op < OPS; op++) a->weight_total += task_weights[op];
    atomic_init(&a->doing, "starting");
    atomic_init(&a->doing_chan, -1);
    atomic_init(&a->finished, false);
    agent *head = atomic_load(&r->agents);
    do a->next = head;
    while (!atomic_compare_exchange_weak(&r->agents, &head, a));
    return a;
}

static uint64_t next_value(agent *a, int chan) {
    return (uint64_t)a->id << PRODUCER_SHIFT | (uint64_t)chan << CHANNEL_SHIFT |
           (a->counter++ & COUNTER_MASK);
}

/* A send buffer: the value, then two check words (24-byte channels). */
static void encode(uint64_t *buffer, uint64_t value) {
    buffer[0] = value;
    buffer[1] = ~value;
    buffer[2] = value * CHECK_MULTIPLIER;
    buffer[3] = SENTINEL;
}

static void fill_sentinel(uint64_t *buffer) {
    for (int i = 0; i < 4; i++) buffer[i] = SENTINEL;
}

static bool untouched(const uint64_t *buffer) {
    for (int i = 0; i < 4; i++)
        if (buffer[i] != SENTINEL) return false;
    return true;
}

/* A send on round channel c finished: sent (ok) or not. */
static void note_sent(agent *a, int c, uint64_t value, bool ok) {
    if (a->round->chans[c].elem_size == 0) {
        if (ok) a->signals_sent[c]++;
        return;
    }
    log_add(ok ? &a->sent : &a->failed, value);
}

/* A receive on round channel c succeeded into buffer (which was full of
 * SENTINEL before): check the value and log it. */
static void note_received(agent *a, int c, const uint64_t *buffer, const char *how) {
    round *r = a->round;
    chan_slot *slot = &r->chans[c];
    if (slot->elem_size == 0) {
        if (!untouched(buffer))
            failf(r, "%s on signal channel %d wrote into the receive buffer", how, c);
        a->signals_received[c]++;
        return;
    }
    uint64_t value = buffer[0];
    bool ok = (value >> 63) == 0 && (int)((value >> CHANNEL_SHIFT) & 15) == c;
    if (slot->elem_size == 8)
        ok = ok && buffer[1] == SENTINEL && buffer[2] == SENTINEL;
    else
        ok = ok && buffer[1] == ~value && buffer[2] == value * CHECK_MULTIPLIER;
    ok = ok && buffer[3] == SENTINEL;
    if (!ok) {
        failf(r,
              "%s on channel %d (cap %zu, elem %zu) received a malformed value or one sent on "
              "another channel: %016" PRIx64 " %016" PRIx64 " %016" PRIx64 " %016" PRIx64,
              how, c, slot->cap, slot->elem_size, buffer[0], buffer[1], buffer[2], buffer[3]);
        return;
    }
    log_add(&a->received, value);
}

/* ---- result checks ------------------------------------------------------ */

enum form { F_BLOCK, F_TRY, F_UNTIL, F_CTX };
static const char *const form_names[2][4] = {
    {"send", "try_send", "send_until", "send_ctx"},
    {"recv", "try_recv", "recv_until", "recv_ctx"},
};

/* err (non-zero) came back from a call of the given form: it must be one
 * the form allows, a timeout must not be early, and a context error must
 * be the context's own. closed_ok: ECLOSED is allowed (channel calls). */
static void check_failure(agent *a, const char *what, int chan, int form, int err,
                          weft_time deadline, weft_ctx *ctx, bool closed_ok) {
    round *r = a->round;
    switch (err) {
    case WEFT_ECLOSED:
        if (closed_ok) return;
        break;
    case WEFT_EAGAIN:
        if (form == F_TRY || (form == F_UNTIL && deadline != WEFT_FOREVER)) return;
        break;
    case WEFT_ETIMEDOUT:
        if (form == F_UNTIL) {
            weft_time now = weft_now();
            if (now < deadline)
                failf(r, "%s (chan %d) returned ETIMEDOUT %" PRId64 " ns before its deadline", what,
                      chan, deadline - now);
            return;
        }
        if (form == F_CTX) {
            int ctx_err = weft_ctx_err(ctx);
            if (ctx_err != WEFT_ETIMEDOUT)
                failf(r, "%s (chan %d) returned ETIMEDOUT but its context's error is %s", what,
                      chan, error_name(ctx_err));
            else if (weft_now() < weft_ctx_deadline(ctx))
                failf(r, "%s (chan %d): context timed out before its deadline", what, chan);
            return;
        }
        break;
    case WEFT_ECANCELED:
        if (form == F_CTX) {
            int ctx_err = weft_ctx_err(ctx);
            if (ctx_err != WEFT_ECANCELED)
                failf(r, "%s (chan %d) returned ECANCELED but its context's error is %s", what,
                      chan, error_name(ctx_err));
            return;
        }
        break;
    default: break;
    }
    failf(r, "%s (chan %d, form %d) returned %s (%d), which it may not", what, chan, form,
          error_name(err), err);
}

/* A deadline for an _until call: passed, near, a few ms, or (when
 * allowed) WEFT_FOREVER. */
static weft_time random_deadline(agent *a, bool allow_forever) {
    uint32_t x = below(&a->random, 100);
    if (x < 15) return WEFT_NOWAIT;
    if (x < 25) return weft_now() - below(&a->random, 1000);
    if (x < 75) return weft_now() + WEFT_US(below(&a->random, 50));
    if (x < 98 || !allow_forever) return weft_now() + WEFT_US(below(&a->random, 1000));
    return WEFT_FOREVER;
}

/* The agent's lease: a context with a timeout of up to 2 ms under its home
 * context, made anew once the last one has ended, so that _ctx calls
 * return within milliseconds even when no partner comes. */
static weft_ctx *lease(agent *a) {
    if (a->lease && !weft_ctx_err(a->lease)) return a->lease;
    if (weft_ctx_err(a->ctx)) return a->ctx; /* a new lease would be born ended */
    set_doing(a, "renew lease", -1);
    if (a->lease) weft_ctx_release(a->lease);
    a->lease = weft_ctx_with_timeout(a->ctx, WEFT_US(50 + below(&a->random, 2000)));
    a->counts[K_CONTEXT]++;
    if (!a->lease) {
        failf(a->round, "weft_ctx_with_timeout returned NULL (errno %d)", errno);
        return a->ctx;
    }
    return a->lease;
}

/* A context that ends by the round's stop: mostly the agent's lease,
 * sometimes its home context or any node (which may live until the stop). */
static weft_ctx *pick_ctx(agent *a) {
    uint32_t x = below(&a->random, 100);
    if (x < 85) return lease(a);
    if (x < 93) return a->ctx;
    round *r = a->round;
    return r->nodes[below(&a->random, (uint32_t)r->nodes_count)].ctx;
}

/* A channel; one that close will wake (not ctx_only) unless bounded. */
static int pick_chan(agent *a, bool bounded) {
    round *r = a->round;
    int c = (int)below(&a->random, (uint32_t)r->chans_count);
    if (!bounded && r->chans[c].ctx_only)
        c = r->normal[below(&a->random, (uint32_t)r->normal_count)];
    return c;
}

/* ---- channel operations ------------------------------------------------- */

/* One send or receive on channel c in the given form. ctx (F_CTX) must
 * end by the round's stop when c is ctx_only. */
static void chan_op(agent *a, int dir, int c, int form, weft_ctx *ctx) {
    round *r = a->round;
    chan_slot *slot = &r->chans[c];
    weft_chan *chan = slot->chan;
    if (a->id < 0) dir = WEFT_RECV;
    if (slot->ctx_only && form == F_BLOCK) form = F_CTX;
    weft_time deadline = form == F_UNTIL ? random_deadline(a, !slot->ctx_only) : WEFT_FOREVER;
    const char *what = form_names[dir == WEFT_RECV][form];
    uint64_t buffer[4];
    int err = 0;
    set_doing(a, what, c);
    if (dir == WEFT_SEND) {
        uint64_t value = next_value(a, c);
        encode(buffer, value);
        const void *elem = slot->elem_size == 0 && chance(&a->random, 50) ? NULL : buffer;
        switch (form) {
        case F_BLOCK: err = weft_chan_send(chan, elem); break;
        case F_TRY: err = weft_chan_try_send(chan, elem); break;
        case F_UNTIL: err = weft_chan_send_until(chan, elem, deadline); break;
        case F_CTX: err = weft_chan_send_ctx(chan, elem, ctx); break;
        }
        a->counts[K_SEND]++;
        note_sent(a, c, value, err == 0);
    } else {
        fill_sentinel(buffer);
        void *elem = slot->elem_size == 0 && chance(&a->random, 50) ? NULL : buffer;
        switch (form) {
        case F_BLOCK: err = weft_chan_recv(chan, elem); break;
        case F_TRY: err = weft_chan_try_recv(chan, elem); break;
        case F_UNTIL: err = weft_chan_recv_until(chan, elem, deadline); break;
        case F_CTX: err = weft_chan_recv_ctx(chan, elem, ctx); break;
        }
        a->counts[K_RECV]++;
        if (err == 0) {
            note_received(a, c, buffer, what);
        } else if (!untouched(buffer)) {
            failf(r, "%s on channel %d returned %s but wrote into its buffer", what, c,
                  error_name(err));
        }
    }
    if (err != 0) check_failure(a, what, c, form, err, deadline, ctx, true);
    if (below(&a->random, 64) == 0) {
        size_t length = weft_chan_len(chan);
        if (length > slot->cap || weft_chan_cap(chan) != slot->cap ||
            weft_chan_elem_size(chan) != slot->elem_size)
            failf(r, "channel %d: len %zu, cap %zu, elem_size %zu (made with cap %zu, elem %zu)", c,
                  length, weft_chan_cap(chan), weft_chan_elem_size(chan), slot->cap,
                  slot->elem_size);
    }
}

static int random_form(agent *a) {
    uint32_t x = below(&a->random, 100);
    return x < 6 ? F_BLOCK : x < 40 ? F_TRY : x < 72 ? F_UNTIL : F_CTX;
}

static void op_send_or_recv(agent *a, int dir) {
    int form = random_form(a);
    int c = pick_chan(a, form != F_BLOCK); /* one draw after the other: replays repeat */
    chan_op(a, dir, c, form, pick_ctx(a));
}

/* ---- select ------------------------------------------------------------- */

enum { SRC_NULL = -1, SRC_DONE = -2, SRC_AFTER = -3, SRC_TICKER = -4 };
enum { M_NOWAIT, M_DEADLINE, M_FOREVER, M_CTX, M_BIASED };
static const char *const mode_names[] = {"select (nowait)", "select (deadline)", "select (forever)",
                                         "select_ctx", "select_biased"};

typedef struct {
    int source;         /* a round channel, or SRC_* */
    uint64_t value;     /* send: the value offered */
    int node;           /* SRC_DONE: whose done channel */
    weft_time earliest; /* SRC_AFTER: the earliest time it may carry */
    uint64_t buffer[4];
} case_info;

/* A select over random cases. ctx serves the _ctx mode; ctx_ends says
 * whether it ends by the round's stop (else the select needs a case that
 * the stop or a timer will make ready). */
static void select_op(agent *a, weft_ctx *ctx, bool ctx_ends) {
    round *r = a->round;
    weft_case cases[MAX_CASES];
    case_info info[MAX_CASES];
    weft_chan *afters[MAX_CASES];
    int afters_count = 0;
    size_t n =
        chance(&a->random, 1) ? 65 + below(&a->random, MAX_CASES - 64) : below(&a->random, 9);
    uint32_t x = below(&a->random, 100);
    int mode = x < 30   ? M_NOWAIT
               : x < 58 ? M_DEADLINE
               : x < 63 ? M_FOREVER
               : x < 90 ? M_CTX
                        : M_BIASED;
    bool bounded = mode != M_FOREVER && (mode != M_CTX || ctx_ends);
    bool waker = false;
    for (size_t i = 0; i < n; i++) {
        case_info *k = &info[i];
        fill_sentinel(k->buffer);
        k->source = SRC_NULL;
        k->node = -1;
        k->earliest = 0;
        int dir = chance(&a->random, 50) ? WEFT_SEND : WEFT_RECV;
        weft_chan *chan = NULL;
        x = below(&a->random, 100);
        if (x < 8) {
            /* a NULL channel: never ready */
        } else if (x < 22 && i > 0) {
            size_t earlier = below(&a->random, (uint32_t)i);
            k->source = info[earlier].source;
            k->node = info[earlier].node;
            k->earliest = info[earlier].earliest;
            chan = cases[earlier].ch;
            if (k->source < 0 && k->source != SRC_NULL) dir = WEFT_RECV;
        } else if (x < 84) {
            k->source = pick_chan(a, bounded);
            chan = r->chans[k->source].chan;
        } else if (x < 91) {
            k->source = SRC_DONE;
            k->node = (int)below(&a->random, (uint32_t)r->nodes_count);
            chan = weft_ctx_done(r->nodes[k->node].ctx);
            dir = WEFT_RECV;
        } else if (x < 95) {
            weft_time delay = WEFT_US(below(&a->random, 500));
            k->earliest = weft_now() + delay;
            chan = weft_after(delay);
            if (!chan) {
                failf(r, "weft_after returned NULL (errno %d)", errno);
            } else {
                k->source = SRC_AFTER;
                afters[afters_count++] = chan;
            }
            dir = WEFT_RECV;
            a->counts[K_TIMER]++;
        } else {
            k->source = SRC_TICKER;
            chan = weft_ticker_chan(r->ticker);
            dir = WEFT_RECV;
        }
        if (k->source >= 0 && dir == WEFT_SEND && a->id < 0) dir = WEFT_RECV;
        if (k->source >= 0 ? !r->chans[k->source].ctx_only : k->source != SRC_NULL) waker = true;
        void *elem = k->buffer;
        if (k->source >= 0 && dir == WEFT_SEND) {
            k->value = next_value(a, k->source);
            encode(k->buffer, k->value);
            if (r->chans[k->source].elem_size == 0 && chance(&a->random, 50)) elem = NULL;
        } else if ((k->source >= 0 && r->chans[k->source].elem_size == 0) ||
                   k->source == SRC_DONE) {
            if (chance(&a->random, 50)) elem = NULL;
        }
        cases[i] = (weft_case){chan, dir, elem, 0};
    }
    if ((mode == M_FOREVER || (mode == M_CTX && !ctx_ends)) && !waker) mode = M_DEADLINE;
    weft_time deadline = mode == M_NOWAIT ? WEFT_NOWAIT : WEFT_FOREVER;
    if (mode == M_DEADLINE || mode == M_BIASED)
        deadline = chance(&a->random, 30)   ? WEFT_NOWAIT
                   : chance(&a->random, 80) ? weft_now() + WEFT_US(below(&a->random, 100))
                                            : weft_now() + WEFT_US(below(&a->random, 1000));

    set_doing(a, mode_names[mode], (int)n);
    int chosen = 0;
    switch (mode) {
    case M_NOWAIT: chosen = weft_select(cases, n, WEFT_NOWAIT); break;
    case M_DEADLINE: chosen = weft_select(cases, n, deadline); break;
    case M_FOREVER: chosen = weft_select(cases, n, WEFT_FOREVER); break;
    case M_CTX: chosen = weft_select_ctx(cases, n, ctx); break;
    case M_BIASED: chosen = weft_select_biased(cases, n, deadline); break;
    }
    a->counts[K_SELECT]++;
    const char *what = mode_names[mode];

    if (chosen >= 0 && ((size_t)chosen >= n || !cases[chosen].ch)) {
        failf(r, "%s over %zu cases chose case %d, %s", what, n, chosen,
              (size_t)chosen >= n ? "which does not exist" : "whose channel is NULL");
        chosen = -100;
    } else if (chosen >= 0) {
        weft_case *k = &cases[chosen];
        case_info *ki = &info[chosen];
        if (k->err != 0 && k->err != WEFT_ECLOSED)
            failf(r, "%s: the chosen case's err is %d", what, k->err);
        if (ki->source >= 0) {
            if (k->dir == WEFT_SEND)
                note_sent(a, ki->source, ki->value, k->err == 0);
            else if (k->err == 0)
                note_received(a, ki->source, ki->buffer, what);
            else if (!untouched(ki->buffer))
                failf(r, "%s: a receive case that met a closed channel wrote its buffer", what);
        } else if (ki->source == SRC_DONE) {
            if (k->err != WEFT_ECLOSED || !untouched(ki->buffer))
                failf(r, "%s: a context's done channel gave err %d (a value?)", what, k->err);
            if (!weft_ctx_err(r->nodes[ki->node].ctx))
                failf(r, "%s: node %d's done channel was ready while the context is live", what,
                      ki->node);
        } else {
            weft_time now = weft_now();
            weft_time tick = (weft_time)ki->buffer[0];
            weft_time earliest = ki->source == SRC_AFTER ? ki->earliest : r->ticker_started;
            if (k->err != 0 || tick < earliest || tick > now)
                failf(r,
                      "%s: a %s channel gave err %d, time %" PRId64 " (earliest %" PRId64
                      ", now %" PRId64 ")",
                      what, ki->source == SRC_AFTER ? "weft_after" : "ticker", k->err, tick,
                      earliest, now);
        }
    } else {
        int form = mode == M_CTX ? F_CTX : (mode == M_FOREVER ? F_BLOCK : F_UNTIL);
        check_failure(a, what, -1, form, chosen, deadline, ctx, false);
    }
    for (size_t i = 0; i < n; i++) {
        if ((int)i == chosen) continue;
        if (info[i].source >= 0 && cases[i].dir == WEFT_SEND)
            note_sent(a, info[i].source, info[i].value, false);
        else if (cases[i].dir == WEFT_RECV && !untouched(info[i].buffer))
            failf(r, "%s returned %d but wrote into the buffer of case %zu (source %d)", what,
                  chosen, i, info[i].source);
    }
    for (int i = 0; i < afters_count; i++) weft_chan_release(afters[i]);
}

/* ---- close and cancel --------------------------------------------------- */

static void close_chan(agent *a, int c) {
    round *r = a->round;
    set_doing(a, "close", c);
    int err = weft_chan_close(r->chans[c].chan);
    a->counts[K_CLOSE]++;
    if (err == 0)
        atomic_fetch_add(&r->chans[c].closes, 1);
    else if (err != WEFT_ECLOSED)
        failf(r, "weft_chan_close(channel %d) returned %s", c, error_name(err));
}

/* After a cancel of node j returned: every context at or below j has
 * ended, and its done channel is closed. */
static void check_subtree_ended(round *r, int j) {
    for (int d = 0; d < r->nodes_count; d++) {
        if (!(r->nodes[d].ancestors & (1u << j))) continue;
        weft_ctx *ctx = r->nodes[d].ctx;
        if (!weft_ctx_err(ctx))
            failf(r, "weft_ctx_cancel(node %d) returned and node %d below it is still live", j, d);
        else if (weft_chan_try_recv(weft_ctx_done(ctx), NULL) != WEFT_ECLOSED)
            failf(r, "node %d has ended but its done channel is not closed", d);
    }
}

static void cancel_node(agent *a, int j) {
    round *r = a->round;
    set_doing(a, "cancel", j);
    a->counts[K_CANCEL]++;
    if (chance(&a->random, 50))
        weft_ctx_cancel_cause(r->nodes[j].ctx, FIRST_CAUSE + j);
    else
        weft_ctx_cancel(r->nodes[j].ctx);
    if (r->nodes[j].kind != NODE_VALUE) check_subtree_ended(r, j);
}

/* ---- contexts of a worker's own ------------------------------------------ */

static void cancel_and_release(void *arg) {
    weft_ctx *ctx = arg;
    weft_ctx_cancel(ctx);
    weft_ctx_release(ctx);
}

typedef struct {
    round *round;
    weft_ctx *ctx;
} detached_cancel;

static void *cancel_and_release_thread(void *arg) {
    detached_cancel job = *(detached_cancel *)arg;
    free(arg);
    cancel_and_release(job.ctx);
    atomic_fetch_sub(&job.round->detached, 1);
    return NULL;
}

/* Start body(arg) on a detached pthread, counted in r->detached (the body
 * decrements it last). */
static bool start_detached(round *r, void *(*body)(void *), void *arg) {
    pthread_attr_t attributes;
    pthread_t thread;
    if (pthread_attr_init(&attributes) != 0) return false;
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    atomic_fetch_add(&r->detached, 1);
    int error = pthread_create(&thread, &attributes, body, arg);
    pthread_attr_destroy(&attributes);
    if (error) atomic_fetch_sub(&r->detached, 1);
    return error == 0;
}

static void after_fn(void *arg) {
    after_record *record = arg;
    if (!weft_ctx_err(record->ctx))
        failf(record->round, "an after-function ran while its context is live");
    atomic_fetch_add(&record->round->after_ran, 1);
}

static void stop_after(agent *a, int index) {
    after_record *record = a->pending[index];
    set_doing(a, "after_stop", -1);
    if (!weft_ctx_after_stop(record->handle)) a->after_started++;
    record->stopped = true;
    a->pending[index] = a->pending[--a->pending_count];
}

static void register_after(agent *a, weft_ctx *ctx) {
    if (a->pending_count == MAX_PENDING) stop_after(a, (int)below(&a->random, MAX_PENDING));
    after_record *record = calloc(1, sizeof *record);
    if (!record) {
        fprintf(stderr, "torture: out of memory\n");
        exit(2);
    }
    record->ctx = ctx;
    record->round = a->round;
    set_doing(a, "after_func", -1);
    record->handle = weft_ctx_after_func(ctx, after_fn, record);
    a->counts[K_AFTER_FUNC]++;
    if (!record->handle) {
        failf(a->round, "weft_ctx_after_func returned NULL (errno %d)", errno);
        free(record);
        return;
    }
    record->next = a->afters;
    a->afters = record;
    a->pending[a->pending_count++] = record;
}

static void op_after_func(agent *a) {
    register_after(a, pick_ctx(a));
    if (a->pending_count && chance(&a->random, 50))
        stop_after(a, (int)below(&a->random, (uint32_t)a->pending_count));
}

/* Wait on something only ctx (or the deadline) can end: an empty select,
 * NULL cases, a WaitGroup nobody finishes, a held mutex, rwmutex or
 * semaphore, an unbuffered channel with no partner. */
static void wait_for_end(agent *a, weft_ctx *ctx, weft_time deadline) {
    round *r = a->round;
    bool use_ctx = ctx != NULL;
    int what = (int)below(&a->random, 8);
    static const char *const names[] = {"{}",          "NULL cases",    "wg_wait",
                                        "mutex_lock",  "rwmutex_rlock", "rwmutex_lock",
                                        "sem_acquire", "recv"};
    int err = 0;
    set_doing(a, use_ctx ? "wait for a context" : "wait for a deadline", what);
    switch (what) {
    case 0: err = use_ctx ? weft_select_ctx(NULL, 0, ctx) : weft_select(NULL, 0, deadline); break;
    case 1: {
        weft_case cases[3] = {WEFT_RECV_CASE(NULL, NULL), WEFT_SEND_CASE(NULL, NULL),
                              WEFT_RECV_CASE(NULL, NULL)};
        size_t n = 1 + below(&a->random, 3);
        err = use_ctx ? weft_select_ctx(cases, n, ctx) : weft_select(cases, n, deadline);
        break;
    }
    case 2: {
        weft_wg wg;
        weft_wg_init(&wg);
        weft_wg_add(&wg, 1);
        err = use_ctx ? weft_wg_wait_ctx(&wg, ctx) : weft_wg_wait_until(&wg, deadline);
        weft_wg_done(&wg);
        weft_wg_destroy(&wg);
        break;
    }
    case 3: {
        weft_mutex mutex = WEFT_MUTEX_INIT;
        weft_mutex_lock(&mutex);
        err = use_ctx ? weft_mutex_lock_ctx(&mutex, ctx) : weft_mutex_lock_until(&mutex, deadline);
        if (err == 0) {
            failf(r, "a lock of a held mutex succeeded");
            weft_mutex_unlock(&mutex);
        }
        weft_mutex_unlock(&mutex);
        weft_mutex_destroy(&mutex);
        break;
    }
    case 4:
    case 5: {
        weft_rwmutex rw;
        weft_rwmutex_init(&rw);
        weft_rwmutex_lock(&rw);
        if (what == 4)
            err = use_ctx ? weft_rwmutex_rlock_ctx(&rw, ctx)
                          : weft_rwmutex_rlock_until(&rw, deadline);
        else
            err =
                use_ctx ? weft_rwmutex_lock_ctx(&rw, ctx) : weft_rwmutex_lock_until(&rw, deadline);
        if (err == 0) failf(r, "a lock of a write-locked rwmutex succeeded");
        weft_rwmutex_unlock(&rw);
        weft_rwmutex_destroy(&rw);
        break;
    }
    case 6: {
        weft_sem sem = WEFT_SEM_INIT(2);
        weft_sem_acquire(&sem, 2, NULL);
        err = use_ctx ? weft_sem_acquire(&sem, 1, ctx) : weft_sem_acquire_until(&sem, 1, deadline);
        if (err == 0) failf(r, "an acquire from an exhausted semaphore succeeded");
        weft_sem_release(&sem, err == 0 ? 3 : 2);
        weft_sem_destroy(&sem);
        break;
    }
    case 7: {
        weft_chan *chan = weft_chan_make(sizeof(uint64_t), 0);
        if (!chan) {
            failf(r, "weft_chan_make returned NULL");
            return;
        }
        uint64_t value = SENTINEL;
        if (chance(&a->random, 50))
            err = use_ctx ? weft_chan_recv_ctx(chan, &value, ctx)
                          : weft_chan_recv_until(chan, &value, deadline);
        else
            err = use_ctx ? weft_chan_send_ctx(chan, &value, ctx)
                          : weft_chan_send_until(chan, &value, deadline);
        if (err == 0) failf(r, "an operation on an unbuffered channel with no partner succeeded");
        weft_chan_release(chan);
        break;
    }
    }
    if (use_ctx) {
        int ctx_err = weft_ctx_err(ctx);
        if (err != ctx_err || !err)
            failf(r, "wait for a context (%s) returned %s; the context's error is %s", names[what],
                  error_name(err), error_name(ctx_err));
        else if (err == WEFT_ETIMEDOUT && weft_now() < weft_ctx_deadline(ctx))
            failf(r, "wait for a context (%s) timed out before the deadline", names[what]);
    } else if (err != WEFT_ETIMEDOUT && err != WEFT_EAGAIN) {
        failf(r, "wait for a deadline (%s) returned %s", names[what], error_name(err));
    } else if (err == WEFT_ETIMEDOUT && weft_now() < deadline) {
        failf(r, "wait for a deadline (%s) returned ETIMEDOUT early", names[what]);
    }
}

/* A context with a short timeout (under a node, or background), waited
 * on by something only it can end; or the same with a bare deadline. */
static void op_ctx_wait(agent *a) {
    round *r = a->round;
    if (chance(&a->random, 30)) {
        wait_for_end(a, NULL, weft_now() + WEFT_US(below(&a->random, 500)));
        return;
    }
    weft_ctx *parent =
        chance(&a->random, 50) ? NULL : r->nodes[below(&a->random, (uint32_t)r->nodes_count)].ctx;
    set_doing(a, "with_timeout", -1);
    weft_ctx *ctx = weft_ctx_with_timeout(parent, WEFT_US(below(&a->random, 500)));
    a->counts[K_CONTEXT]++;
    if (!ctx) {
        failf(r, "weft_ctx_with_timeout returned NULL (errno %d)", errno);
        return;
    }
    wait_for_end(a, ctx, 0);
    if (chance(&a->random, 50)) weft_ctx_cancel(ctx);
    weft_ctx_release(ctx);
}

/* Make a context of one's own under a node (or background), check what it
 * inherits, use it, then cancel it here, hand it to a goroutine or a
 * pthread to cancel, or just drop it. */
static void op_subcontext(agent *a) {
    round *r = a->round;
    weft_ctx *parent =
        chance(&a->random, 10) ? NULL : r->nodes[below(&a->random, (uint32_t)r->nodes_count)].ctx;
    int parent_err = weft_ctx_err(parent);
    weft_time parent_deadline = weft_ctx_deadline(parent);
    static const char *const names[] = {"with_cancel", "with_timeout", "with_deadline (passed)",
                                        "with_value", "without_cancel"};
    int kind = (int)below(&a->random, 5);
    bool ends = parent != NULL; /* by the round's stop at the latest */
    bool ends_soon = false;     /* by its own deadline */
    int marker = 0;
    weft_time requested = 0; /* kind 2's deadline */
    weft_ctx *child = NULL;
    set_doing(a, names[kind], -1);
    switch (kind) {
    case 0: child = weft_ctx_with_cancel(parent); break;
    case 1:
        child = weft_ctx_with_timeout(parent, WEFT_US(below(&a->random, 1000)));
        ends = ends_soon = true;
        break;
    case 2:
        requested = weft_now() - below(&a->random, 1000);
        child = weft_ctx_with_deadline(parent, requested);
        ends = ends_soon = true;
        break;
    case 3: child = weft_ctx_with_value(parent, &value_keys[0], &marker); break;
    case 4:
        child = weft_ctx_without_cancel(parent);
        ends = false;
        break;
    }
    a->counts[K_CONTEXT]++;
    if (!child) {
        failf(r, "weft_ctx_%s returned NULL (errno %d)", names[kind], errno);
        return;
    }
    int err = weft_ctx_err(child);
    /* A passed deadline gives a child born finished, even when the
     * parent's earlier deadline has passed too and its timer has not
     * fired yet. */
    if (kind == 2 && !err) failf(r, "a context whose deadline has passed was born live");
    if (kind < 4 && parent_err && !err)
        failf(r, "%s of an ended context was born live", names[kind]);
    if (kind < 4 && weft_ctx_deadline(child) > parent_deadline)
        failf(r, "%s has a later deadline than its parent", names[kind]);
    if (kind == 3 && weft_ctx_value(child, &value_keys[0]) != &marker)
        failf(r, "weft_ctx_value of a with_value context does not find its value");
    if (kind == 4 &&
        (err || weft_ctx_done(child) || weft_ctx_deadline(child) != WEFT_FOREVER ||
         weft_ctx_value(child, &value_keys[1]) != weft_ctx_value(parent, &value_keys[1])))
        failf(r, "without_cancel: err %d, done %p, deadline %" PRId64 ", or values differ", err,
              (void *)weft_ctx_done(child), weft_ctx_deadline(child));

    for (uint32_t uses = below(&a->random, 4); uses > 0; uses--) {
        uint32_t x = below(&a->random, 10);
        if (x < 6) {
            int dir = chance(&a->random, 50) ? WEFT_SEND : WEFT_RECV;
            chan_op(a, dir, pick_chan(a, ends), F_CTX, child);
        } else if (x < 8) {
            select_op(a, child, ends);
        } else if (ends_soon) {
            wait_for_end(a, child, 0);
        } else if (chance(&a->random, 30)) {
            register_after(a, child);
        }
    }

    uint32_t ending = below(&a->random, 4);
    if (ending == 1) {
        weft_ctx_retain(child);
        set_doing(a, "weft_go (cancel a context)", -1);
        if (weft_go(cancel_and_release, child) == 0)
            a->counts[K_GOROUTINE]++;
        else
            cancel_and_release(child);
    } else if (ending == 2) {
        detached_cancel *job = malloc(sizeof *job);
        if (job) {
            weft_ctx_retain(child);
            *job = (detached_cancel){r, child};
            set_doing(a, "pthread_create (cancel a context)", -1);
            if (!start_detached(r, cancel_and_release_thread, job)) {
                free(job);
                cancel_and_release(child);
            }
        }
    } else if (ending == 0) {
        set_doing(a, "cancel (own context)", -1);
        if (chance(&a->random, 50))
            weft_ctx_cancel_cause(child, 3000);
        else
            weft_ctx_cancel(child);
        a->counts[K_CANCEL]++;
        int after = weft_ctx_err(child);
        if (kind < 3 && !after) failf(r, "%s: canceled but live", names[kind]);
        if (kind == 4 && after) failf(r, "without_cancel: canceled (it cannot be)");
    }
    weft_ctx_release(child);
}

/* ---- mutual exclusion --------------------------------------------------- */

/* Lock with one of the four forms; returns 0 when locked. */
#define LOCK_WITH_FORM(a, form, deadline, ctx, lock_call, try_call, until_call, ctx_call) \
    do {                                                                                  \
        switch (form) {                                                                   \
        case F_BLOCK:                                                                     \
            lock_call;                                                                    \
            err = 0;                                                                      \
            break;                                                                        \
        case F_TRY: err = try_call; break;                                                \
        case F_UNTIL: err = until_call; break;                                            \
        default: err = ctx_call; break;                                                   \
        }                                                                                 \
    } while (0)

static void op_mutex(agent *a) {
    round *r = a->round;
    int form = (int)below(&a->random, 4), err;
    weft_time deadline = form == F_UNTIL ? random_deadline(a, true) : WEFT_FOREVER;
    weft_ctx *ctx = pick_ctx(a);
    set_doing(a, "mutex_lock", form);
    LOCK_WITH_FORM(
        a, form, deadline, ctx, weft_mutex_lock(&r->mutex.lock), weft_mutex_trylock(&r->mutex.lock),
        weft_mutex_lock_until(&r->mutex.lock, deadline), weft_mutex_lock_ctx(&r->mutex.lock, ctx));
    a->counts[K_MUTEX]++;
    if (err) {
        check_failure(a, "mutex lock", -1, form, err, deadline, ctx, false);
        return;
    }
    if (atomic_fetch_add(&r->mutex.inside, 1) != 0) failf(r, "two threads hold the mutex");
    uint64_t before = r->mutex.first;
    r->mutex.first = before + 1;
    if (below(&a->random, 16) == 0) sched_yield();
    if (r->mutex.second != before)
        failf(r, "mutex: the pair protected by it is %" PRIu64 "/%" PRIu64, before,
              r->mutex.second);
    r->mutex.second = before + 1;
    atomic_fetch_sub(&r->mutex.inside, 1);
    weft_mutex_unlock(&r->mutex.lock);
    a->mutex_holds++;
}

static void op_rwmutex(agent *a) {
    round *r = a->round;
    int form = (int)below(&a->random, 4), err;
    weft_time deadline = form == F_UNTIL ? random_deadline(a, true) : WEFT_FOREVER;
    weft_ctx *ctx = pick_ctx(a);
    bool writer = chance(&a->random, 25);
    a->counts[K_RWMUTEX]++;
    if (writer) {
        set_doing(a, "rwmutex_lock", form);
        LOCK_WITH_FORM(a, form, deadline, ctx, weft_rwmutex_lock(&r->rw.lock),
                       weft_rwmutex_trylock(&r->rw.lock),
                       weft_rwmutex_lock_until(&r->rw.lock, deadline),
                       weft_rwmutex_lock_ctx(&r->rw.lock, ctx));
        if (err) {
            check_failure(a, "rwmutex lock", -1, form, err, deadline, ctx, false);
            return;
        }
        if (atomic_fetch_add(&r->rw.writers, 1) != 0) failf(r, "two writers hold the rwmutex");
        if (atomic_load(&r->rw.readers) != 0) failf(r, "a writer holds the rwmutex with readers");
        uint64_t before = r->rw.first;
        r->rw.first = before + 1;
        if (below(&a->random, 16) == 0) sched_yield();
        if (r->rw.second != before) failf(r, "rwmutex: the pair is inconsistent under the lock");
        r->rw.second = before + 1;
        atomic_fetch_sub(&r->rw.writers, 1);
        weft_rwmutex_unlock(&r->rw.lock);
        a->rw_writes++;
    } else {
        set_doing(a, "rwmutex_rlock", form);
        LOCK_WITH_FORM(a, form, deadline, ctx, weft_rwmutex_rlock(&r->rw.lock),
                       weft_rwmutex_tryrlock(&r->rw.lock),
                       weft_rwmutex_rlock_until(&r->rw.lock, deadline),
                       weft_rwmutex_rlock_ctx(&r->rw.lock, ctx));
        if (err) {
            check_failure(a, "rwmutex rlock", -1, form, err, deadline, ctx, false);
            return;
        }
        atomic_fetch_add(&r->rw.readers, 1);
        if (atomic_load(&r->rw.writers) != 0) failf(r, "a reader holds the rwmutex with a writer");
        uint64_t first = r->rw.first;
        if (below(&a->random, 16) == 0) sched_yield();
        uint64_t second = r->rw.second;
        if (first != second || r->rw.first != first)
            failf(r, "rwmutex: a reader saw the pair change (%" PRIu64 "/%" PRIu64 ")", first,
                  second);
        atomic_fetch_sub(&r->rw.readers, 1);
        weft_rwmutex_runlock(&r->rw.lock);
    }
}

static void op_semaphore(agent *a) {
    round *r = a->round;
    int64_t capacity = r->sem.capacity;
    int64_t units = 1 + (int64_t)below(&a->random, (uint32_t)capacity);
    if (below(&a->random, 50) == 0) units = capacity + 1; /* can never succeed: EINVAL */
    if (below(&a->random, 50) == 0) units = 0;
    int form = (int)below(&a->random, 5); /* 4: acquire with a NULL context */
    weft_time deadline = form == F_UNTIL ? random_deadline(a, false) : WEFT_FOREVER;
    weft_ctx *ctx = form == F_CTX ? pick_ctx(a) : NULL;
    int err = 0;
    set_doing(a, "sem_acquire", form);
    switch (form) {
    case F_BLOCK:
    case 4: err = weft_sem_acquire(&r->sem.sem, units, NULL); break;
    case F_TRY: err = weft_sem_try_acquire(&r->sem.sem, units); break;
    case F_UNTIL: err = weft_sem_acquire_until(&r->sem.sem, units, deadline); break;
    case F_CTX: err = weft_sem_acquire(&r->sem.sem, units, ctx); break;
    }
    a->counts[K_SEMAPHORE]++;
    if (units > capacity) {
        if (err != WEFT_EINVAL) failf(r, "sem acquire of more than the capacity returned %d", err);
        if (err == 0) weft_sem_release(&r->sem.sem, units);
        return;
    }
    if (err) {
        check_failure(a, "sem acquire", -1, form == 4 ? F_BLOCK : form, err, deadline, ctx, false);
        return;
    }
    long long held = atomic_fetch_add(&r->sem.held, units) + units;
    if (held > capacity)
        failf(r, "semaphore: %lld units held of a capacity of %" PRId64, held, capacity);
    if (below(&a->random, 16) == 0) sched_yield();
    atomic_fetch_sub(&r->sem.held, units);
    weft_sem_release(&r->sem.sem, units);
}

static void once_fn(void *arg) {
    round *r = arg;
    atomic_fetch_add(&r->once_runs, 1);
}

static void op_once(agent *a) {
    set_doing(a, "once_do", -1);
    weft_once_do(&a->round->once, once_fn, a->round);
    a->counts[K_OTHER]++;
    if (atomic_load(&a->round->once_runs) != 1)
        failf(a->round, "weft_once_do returned and fn ran %d times",
              atomic_load(&a->round->once_runs));
}

/* The value of key k as seen from node n: the nearest value node above. */
static void *expected_value(round *r, int n, int k) {
    for (; n >= 0; n = r->nodes[n].parent)
        if (r->nodes[n].kind == NODE_VALUE && r->nodes[n].key == &value_keys[k])
            return &r->nodes[n];
    return NULL;
}

static void op_value(agent *a) {
    round *r = a->round;
    int n = (int)below(&a->random, (uint32_t)r->nodes_count), k = (int)below(&a->random, 3);
    a->counts[K_OTHER]++;
    if (weft_ctx_value(r->nodes[n].ctx, &value_keys[k]) != expected_value(r, n, k))
        failf(r, "weft_ctx_value(node %d, key %d) is not the nearest value above", n, k);
    if (weft_ctx_deadline(r->nodes[n].ctx) != r->nodes[n].deadline)
        failf(r, "weft_ctx_deadline(node %d) changed", n);
}

/* ---- timers ------------------------------------------------------------- */

static void op_after(agent *a) {
    round *r = a->round;
    weft_time delay = WEFT_US(below(&a->random, 500));
    weft_time earliest = weft_now() + delay;
    set_doing(a, "weft_after", -1);
    weft_chan *chan = weft_after(delay);
    a->counts[K_TIMER]++;
    if (!chan) {
        failf(r, "weft_after returned NULL (errno %d)", errno);
        return;
    }
    weft_time fired = 0;
    uint32_t x = below(&a->random, 4);
    if (x < 2) {
        set_doing(a, "recv (weft_after)", -1);
        int err = weft_chan_recv(chan, &fired);
        if (err || fired < earliest || fired > weft_now())
            failf(r, "recv from weft_after(%" PRId64 " ns): %s, fired %" PRId64 " ns early", delay,
                  error_name(err), earliest - fired);
    } else if (x == 2) {
        weft_time deadline = weft_now() + WEFT_US(below(&a->random, 500));
        set_doing(a, "recv_until (weft_after)", -1);
        int err = weft_chan_recv_until(chan, &fired, deadline);
        if (err == 0 && (fired < earliest || fired > weft_now()))
            failf(r, "weft_after fired %" PRId64 " ns early", earliest - fired);
        else if (err)
            check_failure(a, "recv_until (weft_after)", -1, F_UNTIL, err, deadline, NULL, false);
    }
    weft_chan_release(chan); /* before it fired, sometimes: the timer keeps its own reference */
}

static void op_ticker(agent *a) {
    round *r = a->round;
    weft_time period = WEFT_US(20 + below(&a->random, 1000));
    weft_time started = weft_now();
    set_doing(a, "ticker_new", -1);
    weft_ticker *ticker = weft_ticker_new(period);
    a->counts[K_TIMER]++;
    if (!ticker) {
        failf(r, "weft_ticker_new returned NULL (errno %d)", errno);
        return;
    }
    weft_time previous = started;
    for (uint32_t ticks = 1 + below(&a->random, 4); ticks > 0; ticks--) {
        weft_time tick = 0;
        int err;
        if (chance(&a->random, 20)) {
            set_doing(a, "ticker_reset", -1);
            weft_ticker_reset(ticker, WEFT_US(20 + below(&a->random, 1000)));
        }
        if (chance(&a->random, 60)) {
            set_doing(a, "recv (ticker)", -1);
            err = weft_chan_recv(weft_ticker_chan(ticker), &tick);
        } else {
            weft_time deadline = weft_now() + WEFT_US(below(&a->random, 1500));
            set_doing(a, "recv_until (ticker)", -1);
            err = weft_chan_recv_until(weft_ticker_chan(ticker), &tick, deadline);
            if (err) {
                check_failure(a, "recv_until (ticker)", -1, F_UNTIL, err, deadline, NULL, false);
                continue;
            }
        }
        a->counts[K_TIMER]++;
        /* Ticks arrive in order, none from the future, none before the
         * first period (at least 20 us) has passed. */
        if (err || tick > weft_now() || tick < started + WEFT_US(20) || tick < previous)
            failf(r, "ticker: %s, tick at %" PRId64 " ns after the start (previous at %" PRId64 ")",
                  error_name(err), tick - started, previous - started);
        previous = tick;
    }
    set_doing(a, "ticker_stop", -1);
    weft_ticker_stop(ticker);
}

/* ---- tasks: WaitGroups and errgroups ----------------------------------- */

static void do_op(agent *a, int op);

static int pick_op(agent *a) {
    uint32_t x = below(&a->random, a->weight_total);
    for (int op = 0; op < OPS; op++) {
        if (x < a->weights[op]) return op;
        x -= a->weights[op];
    }
    return OP_RECV;
}

/* Stop what is still registered and say so. */
static void agent_finish(agent *a) {
    while (a->pending_count) stop_after(a, a->pending_count - 1);
    if (a->lease) {
        if (chance(&a->random, 50)) weft_ctx_cancel(a->lease);
        weft_ctx_release(a->lease);
        a->lease = NULL;
    }
    set_doing(a, "finished", -1);
    atomic_store(&a->finished, true);
}

/* A task: a few operations from task_weights. */
static void task_body(agent *t) {
    for (uint32_t ops = 1 + below(&t->random, 6); ops > 0; ops--) {
        if (chance(&t->random, 10) && weft_ctx_err(t->ctx)) break; /* as real tasks do */
        do_op(t, pick_op(t));
    }
}

typedef struct {
    agent *agent;
    weft_wg *wg;
    atomic_int *finished;
} wg_job;

static void wg_job_body(wg_job *job) {
    task_body(job->agent);
    atomic_fetch_add(job->finished, 1);
    agent_finish(job->agent);
}

static void wg_task(void *arg) { wg_job_body(arg); } /* weft_wg_go calls done */

static void wg_task_manual(void *arg) {
    wg_job *job = arg;
    weft_wg *wg = job->wg;
    wg_job_body(job);
    weft_wg_done(wg); /* the last touch of the job: the waiter may return */
}

static void *wg_task_thread(void *arg) {
    wg_job *job = arg;
    weft_wg *wg = job->wg;
    round *r = job->agent->round;
    wg_job_body(job);
    weft_wg_done(wg);
    atomic_fetch_sub(&r->detached, 1);
    return NULL;
}

static void op_waitgroup(agent *a) {
    round *r = a->round;
    weft_wg wg = WEFT_WG_INIT;
    if (chance(&a->random, 50)) weft_wg_init(&wg);
    atomic_int finished;
    atomic_init(&finished, 0);
    wg_job jobs[4];
    int count = 1 + (int)below(&a->random, 4), started = 0;
    a->counts[K_WAITGROUP]++;
    for (int i = 0; i < count; i++) {
        /* A node, not pick_ctx: the worker may renew (release) its lease meanwhile. */
        weft_ctx *home = r->nodes[below(&a->random, (uint32_t)r->nodes_count)].ctx;
        jobs[i] = (wg_job){agent_new(r, "wg task", home, next_random(&a->random)), &wg, &finished};
        uint32_t how = below(&a->random, 10);
        int err = 0;
        set_doing(a, "wg task start", (int)how);
        if (how < 4) {
            err = weft_wg_go(&wg, wg_task, &jobs[i]);
        } else if (how < 6 || (how < 8 && !r->pool)) {
            weft_wg_add(&wg, 1);
            err = weft_go(wg_task_manual, &jobs[i]);
            if (err) weft_wg_done(&wg);
        } else if (how < 8) {
            weft_wg_add(&wg, 1);
            err = weft_pool_go(r->pool, wg_task_manual, &jobs[i]);
            if (err) weft_wg_done(&wg);
            if (err == WEFT_EAGAIN) err = 1; /* max_threads tasks running: allowed */
        } else {
            weft_wg_add(&wg, 1);
            if (!start_detached(r, wg_task_thread, &jobs[i])) {
                weft_wg_done(&wg);
                err = 1; /* no thread: not weft's failure */
            }
        }
        if (err == 0) {
            started++;
            a->counts[K_GOROUTINE]++;
        } else {
            if (err < 0) failf(r, "starting a WaitGroup task failed: %s", error_name(err));
            agent_finish(jobs[i].agent);
        }
    }
    uint32_t how = below(&a->random, 3);
    if (how == 1) {
        for (int tries = 0; tries < 3; tries++) {
            weft_time deadline = weft_now() + WEFT_US(below(&a->random, 500));
            set_doing(a, "wg_wait_until", -1);
            int err = weft_wg_wait_until(&wg, deadline);
            if (err == 0) break;
            check_failure(a, "wg_wait_until", -1, F_UNTIL, err, deadline, NULL, false);
        }
    } else if (how == 2) {
        weft_ctx *ctx = pick_ctx(a);
        set_doing(a, "wg_wait_ctx", -1);
        int err = weft_wg_wait_ctx(&wg, ctx);
        if (err) check_failure(a, "wg_wait_ctx", -1, F_CTX, err, WEFT_FOREVER, ctx, false);
    }
    set_doing(a, "wg_wait", -1);
    weft_wg_wait(&wg);
    if (atomic_load(&finished) != started)
        failf(r, "weft_wg_wait returned with %d of %d tasks finished", atomic_load(&finished),
              started);
    weft_wg_destroy(&wg);
}

static int group_task(weft_ctx *ctx, void *arg) {
    agent *t = arg;
    if (ctx != t->ctx) failf(t->round, "a group task was not given the group's context");
    task_body(t);
    int error = t->task_error;
    agent_finish(t);
    return error;
}

static void op_group(agent *a) {
    round *r = a->round;
    int node = (int)below(&a->random, (uint32_t)r->nodes_count);
    set_doing(a, "group_new", node);
    weft_group *group = weft_group_new(r->nodes[node].ctx);
    a->counts[K_GROUP]++;
    if (!group) {
        failf(r, "weft_group_new returned NULL (errno %d)", errno);
        return;
    }
    int limit = chance(&a->random, 50) ? -1 : 1 + (int)below(&a->random, 3);
    if (limit > 0 || chance(&a->random, 10)) weft_group_set_limit(group, limit);
    weft_ctx *ctx = weft_group_ctx(group);
    agent *tasks[5];
    int count = 1 + (int)below(&a->random, 5), started = 0;
    for (int i = 0; i < count; i++) {
        agent *t = agent_new(r, "group task", ctx, next_random(&a->random));
        t->task_error = chance(&a->random, 20) ? 2000 + (int)below(&a->random, 1000) : 0;
        bool try_go = chance(&a->random, 30);
        set_doing(a, try_go ? "group_try_go" : "group_go", limit);
        int err =
            try_go ? weft_group_try_go(group, group_task, t) : weft_group_go(group, group_task, t);
        if (err == 0) {
            tasks[started++] = t;
            a->counts[K_GOROUTINE]++;
            continue;
        }
        if (!(err == WEFT_EAGAIN && try_go && limit > 0))
            failf(r, "weft_group_%s returned %s", try_go ? "try_go" : "go", error_name(err));
        agent_finish(t);
    }
    set_doing(a, "group_wait", started);
    int first = weft_group_wait(group);
    bool found = first == 0;
    bool any = false;
    for (int i = 0; i < started; i++) {
        if (tasks[i]->task_error) any = true;
        if (first && tasks[i]->task_error == first) found = true;
    }
    if (!found || (first == 0 && any))
        failf(r, "weft_group_wait returned %d, which no task returned first", first);
    if (!weft_ctx_err(ctx)) failf(r, "after weft_group_wait the group's context is live");
    if (chance(&a->random, 20)) { /* reuse after wait; free waits for it */
        agent *t = agent_new(r, "group task", ctx, next_random(&a->random));
        set_doing(a, "group_go (after wait)", -1);
        if (weft_group_go(group, group_task, t) == 0)
            a->counts[K_GOROUTINE]++;
        else
            agent_finish(t);
    }
    set_doing(a, "group_free", -1);
    weft_group_free(group);
}

/* ---- earliest free ------------------------------------------------------ */

/* The lifetime rule (DESIGN.md, "Lifetimes"; issue 12): once a thread has
 * seen another thread's operation on an object complete, it may free the
 * object at once, while the other thread's call is still returning. Each
 * shape below makes a private object (a channel of capacity 0, 1 or 16, a
 * context, a WaitGroup, a mutex), hands the bare pointer to a partner (a
 * goroutine or a detached pthread) that takes no reference, and frees the
 * object the moment it has seen the partner's operation finish. A library
 * call that touches the object after its effect is visible is then a use
 * after free (ASan) or a race with the free (TSan). The partner's job is
 * its own (it frees it); the checks of what it received are its own too,
 * reported with failf, so nothing of the partner's lives in the object.
 * The owner's and the partner's waits depend only on each other, never on
 * the round's stop. */

enum shape { E_RECEIVE, E_SEND, E_SELECT_BOTH, E_CANCEL, E_WAITGROUP, E_MUTEX, SHAPES };
static const char *const shape_names[SHAPES] = {
    "earliest free: receive", "earliest free: send",      "earliest free: select both ways",
    "earliest free: cancel",  "earliest free: waitgroup", "earliest free: mutex",
};

/* How one side makes its channel operation: F_BLOCK, F_TRY, F_UNTIL (in
 * short deadlines, retried), F_CTX (a context that never ends), or
 * E_SELECT: a select with two cases, both on the channel. */
enum { E_SELECT = F_CTX + 1, E_FORMS };

/* A WaitGroup or a mutex with what its partners write beside it: freed
 * together, the moment the wait returned or the lock was taken. */
typedef struct {
    weft_wg wg;
    atomic_int finished; /* partners that called weft_wg_done, counted before it */
} early_wg;

typedef struct {
    weft_mutex lock;
    uint64_t value; /* written by the partner under lock */
} early_mutex;

/* A partner's job: owned by the partner, which frees it. */
typedef struct {
    round *round;
    enum shape shape;
    int form;          /* the partner's form of its channel operation */
    weft_chan *chan;   /* borrowed: no reference */
    weft_ctx *ctx;     /* borrowed */
    early_wg *wg;      /* borrowed */
    early_mutex *lock; /* borrowed */
    size_t elem_size;
    int count;        /* E_RECEIVE: values to send */
    bool closes;      /* E_RECEIVE: close after the last send */
    bool locks;       /* E_MUTEX: lock, write, unlock (else: unlock the owner's hold) */
    bool owner_sends; /* E_SELECT_BOTH: which case the owner completes */
    uint64_t base;    /* the first value; then base + 1, ... */
} early_job;

/* The value's bytes as a channel of elem_size (8 or 24) carries them. */
static bool holds_value(const uint64_t *buffer, size_t elem_size, uint64_t value) {
    if (buffer[0] != value || buffer[3] != SENTINEL) return false;
    if (elem_size == 8) return buffer[1] == SENTINEL && buffer[2] == SENTINEL;
    return buffer[1] == ~value && buffer[2] == value * CHECK_MULTIPLIER;
}

/* A send of value on chan in the given form; 0 or the error. */
static int early_send(weft_chan *chan, uint64_t value, int form) {
    uint64_t buffer[4];
    encode(buffer, value);
    int err;
    switch (form) {
    case F_TRY:
        while ((err = weft_chan_try_send(chan, buffer)) == WEFT_EAGAIN) sched_yield();
        return err;
    case F_UNTIL:
        while ((err = weft_chan_send_until(chan, buffer, weft_now() + WEFT_US(20))) ==
                   WEFT_ETIMEDOUT ||
               err == WEFT_EAGAIN) {}
        return err;
    case F_CTX: return weft_chan_send_ctx(chan, buffer, weft_ctx_background());
    case E_SELECT: {
        weft_case cases[2] = {WEFT_SEND_CASE(chan, buffer), WEFT_SEND_CASE(chan, buffer)};
        int chosen = weft_select(cases, 2, WEFT_FOREVER);
        return chosen < 0 ? chosen : cases[chosen].err;
    }
    default: return weft_chan_send(chan, buffer);
    }
}

/* A receive on chan in the given form into buffer (SENTINEL-filled);
 * returns 0 or the error, and -1 when a select wrote a case it did not
 * choose. */
static int early_recv(weft_chan *chan, uint64_t *buffer, int form) {
    int err;
    fill_sentinel(buffer);
    switch (form) {
    case F_TRY:
        while ((err = weft_chan_try_recv(chan, buffer)) == WEFT_EAGAIN) sched_yield();
        return err;
    case F_UNTIL:
        while ((err = weft_chan_recv_until(chan, buffer, weft_now() + WEFT_US(20))) ==
                   WEFT_ETIMEDOUT ||
               err == WEFT_EAGAIN) {}
        return err;
    case F_CTX: return weft_chan_recv_ctx(chan, buffer, weft_ctx_background());
    case E_SELECT: {
        uint64_t other[4];
        fill_sentinel(other);
        weft_case cases[2] = {WEFT_RECV_CASE(chan, buffer), WEFT_RECV_CASE(chan, other)};
        int chosen = weft_select(cases, 2, WEFT_FOREVER);
        if (chosen < 0) return chosen;
        if (!untouched(chosen == 0 ? other : buffer)) return -1;
        if (chosen == 1) memcpy(buffer, other, sizeof other);
        return cases[chosen].err;
    }
    default: return weft_chan_recv(chan, buffer);
    }
}

static void early_partner(early_job *job) {
    round *r = job->round;
    const char *what = shape_names[job->shape];
    uint64_t buffer[4];
    int err;
    switch (job->shape) {
    case E_RECEIVE:
        for (int j = 0; j < job->count; j++)
            if ((err = early_send(job->chan, job->base + (uint64_t)j, job->form)) != 0)
                failf(r, "%s: the partner's send %d (form %d) returned %s", what, j, job->form,
                      error_name(err));
        if (job->closes && (err = weft_chan_close(job->chan)) != 0)
            failf(r, "%s: the partner's close returned %s", what, error_name(err));
        break;
    case E_SEND:
        err = early_recv(job->chan, buffer, job->form);
        if (err || !holds_value(buffer, job->elem_size, job->base))
            failf(r, "%s: the partner's receive (form %d) returned %s and %016" PRIx64, what,
                  job->form, error_name(err), buffer[0]);
        break;
    case E_SELECT_BOTH: {
        uint64_t value[4];
        encode(value, job->base + 1);
        fill_sentinel(buffer);
        weft_case cases[2] = {WEFT_RECV_CASE(job->chan, buffer), WEFT_SEND_CASE(job->chan, value)};
        if (job->form == F_CTX)
            err = weft_select_ctx(cases, 2, weft_ctx_background());
        else
            err = weft_select(cases, 2, WEFT_FOREVER);
        bool right = job->owner_sends ? err == 0 && holds_value(buffer, job->elem_size, job->base)
                                      : err == 1 && untouched(buffer);
        if (!right || (err >= 0 && cases[err].err != 0))
            failf(r, "%s: the owner %s, but the partner's select returned %d (err %d)", what,
                  job->owner_sends ? "sent" : "received", err, err >= 0 ? cases[err].err : 0);
        break;
    }
    case E_CANCEL:
        if (job->closes)
            weft_ctx_cancel_cause(job->ctx, 4000);
        else
            weft_ctx_cancel(job->ctx);
        break;
    case E_WAITGROUP: {
        early_wg *wg = job->wg;
        atomic_fetch_add(&wg->finished, 1);
        weft_wg_done(&wg->wg); /* the last touch: the owner may free it */
        break;
    }
    case E_MUTEX:
        if (job->locks) {
            weft_mutex_lock(&job->lock->lock);
            job->lock->value = job->base;
        }
        weft_mutex_unlock(&job->lock->lock); /* the last touch */
        break;
    case SHAPES: break;
    }
    free(job);
}

static void early_partner_goroutine(void *arg) { early_partner(arg); }

static void *early_partner_thread(void *arg) {
    round *r = ((early_job *)arg)->round;
    early_partner(arg);
    atomic_fetch_sub(&r->detached, 1);
    return NULL;
}

/* Start a partner on a copy of job: a goroutine, else a detached pthread.
 * False when neither could start (the job never ran). */
static bool start_partner(agent *a, const early_job *job) {
    early_job *copy = malloc(sizeof *copy);
    if (!copy) return false;
    *copy = *job;
    if (chance(&a->random, 60) && weft_go(early_partner_goroutine, copy) == 0) {
        a->counts[K_GOROUTINE]++;
        return true;
    }
    if (start_detached(a->round, early_partner_thread, copy)) return true;
    free(copy);
    return false;
}

/* Receive until the partner's values (and, if it closes, WEFT_ECLOSED)
 * have all arrived, in order, each once; then the channel is freed. */
static void early_receive(agent *a, early_job *job, int form) {
    round *r = a->round;
    const char *what = shape_names[E_RECEIVE];
    uint64_t buffer[4];
    int received = 0, err;
    while ((err = early_recv(job->chan, buffer, form)) == 0) {
        if (received >= job->count ||
            !holds_value(buffer, job->elem_size, job->base + (uint64_t)received)) {
            failf(r, "%s: value %d of %d (form %d) is %016" PRIx64 ", expected %016" PRIx64, what,
                  received, job->count, form, buffer[0], job->base + (uint64_t)received);
            return; /* the channel is leaked: the partner's state is unknown */
        }
        if (++received == job->count && !job->closes) break;
    }
    bool complete =
        job->closes ? err == WEFT_ECLOSED && received == job->count && untouched(buffer) : err == 0;
    if (!complete) {
        failf(r, "%s: %d of %d values, then %s (form %d)", what, received, job->count,
              error_name(err), form);
        return;
    }
    weft_chan_release(job->chan);
}

static void op_earliest_free(agent *a) {
    round *r = a->round;
    enum shape shape = (enum shape)below(&a->random, SHAPES);
    static const size_t early_caps[] = {0, 1, 16};
    early_job job = {.round = r, .shape = shape};
    job.elem_size = chance(&a->random, 70) ? 8 : 24;
    job.base = next_random(&a->random) >> 2;
    job.form = (int)below(&a->random, E_FORMS);
    int form = (int)below(&a->random, E_FORMS); /* the owner's */
    size_t cap = early_caps[below(&a->random, 3)];
    if (form == F_TRY && job.form == F_TRY) job.form = F_BLOCK; /* on cap 0 neither would park */
    set_doing(a, shape_names[shape], (int)cap);
    a->counts[K_EARLY_FREE]++;

    if (shape == E_RECEIVE || shape == E_SEND || shape == E_SELECT_BOTH) {
        if (shape == E_SELECT_BOTH) cap = 0;
        job.chan = weft_chan_make(job.elem_size, cap);
        if (!job.chan) {
            failf(r, "weft_chan_make returned NULL (errno %d)", errno);
            return;
        }
    }
    switch (shape) {
    case E_RECEIVE:
        /* A buffered result channel, a close-then-drain, an unbuffered
         * hand-off from the partner. */
        job.count = 1 + (int)below(&a->random, (uint32_t)cap + 2);
        job.closes = chance(&a->random, 50);
        if (!start_partner(a, &job)) break;
        early_receive(a, &job, form);
        return;
    case E_SEND: {
        /* The owner fills the buffer, so its send returns only once the
         * partner's receive has made room (unbuffered: has the value). */
        for (size_t j = 0; j < cap; j++) {
            uint64_t buffer[4];
            encode(buffer, job.base + j);
            if (weft_chan_try_send(job.chan, buffer) != 0) failf(r, "try_send into room failed");
        }
        if (!start_partner(a, &job)) break;
        if (chance(&a->random, 50)) sched_yield();
        int err = early_send(job.chan, job.base + cap, form);
        if (err) {
            failf(r, "%s: the owner's send (form %d) returned %s", shape_names[shape], form,
                  error_name(err));
            return; /* leaked */
        }
        weft_chan_release(job.chan);
        return;
    }
    case E_SELECT_BOTH: {
        /* The partner selects over a receive and a send on one unbuffered
         * channel; the owner completes one and frees the channel, so the
         * select must have withdrawn the other first. */
        job.owner_sends = chance(&a->random, 50);
        job.form = chance(&a->random, 30) ? F_CTX : F_BLOCK;
        if (!start_partner(a, &job)) break;
        uint64_t buffer[4];
        int err = job.owner_sends ? early_send(job.chan, job.base, form)
                                  : early_recv(job.chan, buffer, form);
        if (err || (!job.owner_sends && !holds_value(buffer, job.elem_size, job.base + 1))) {
            failf(r, "%s: the owner's %s (form %d) returned %s", shape_names[shape],
                  job.owner_sends ? "send" : "receive", form, error_name(err));
            return; /* leaked */
        }
        weft_chan_release(job.chan);
        return;
    }
    case E_CANCEL: {
        /* The partner cancels; the owner frees at the first sign of it.
         * Sometimes the owner watches a child and frees both. */
        job.ctx = weft_ctx_with_cancel(NULL);
        weft_ctx *child = chance(&a->random, 30) ? weft_ctx_with_cancel(job.ctx) : NULL;
        weft_ctx *watched = child ? child : job.ctx;
        weft_chan *idle = form == F_UNTIL ? weft_chan_make(0, 0) : NULL;
        if (!job.ctx || (form == F_UNTIL && !idle)) {
            failf(r, "making a context or channel failed (errno %d)", errno);
            return;
        }
        job.closes = chance(&a->random, 50); /* with a cause */
        if (!start_partner(a, &job)) {
            weft_ctx_cancel(job.ctx);
        } else {
            int err = 0;
            switch (form) {
            case F_BLOCK: err = weft_chan_recv(weft_ctx_done(watched), NULL); break;
            case F_TRY:
                while (!weft_ctx_err(watched)) sched_yield();
                err = WEFT_ECLOSED;
                break;
            case F_UNTIL: err = weft_chan_recv_ctx(idle, NULL, watched); break;
            case F_CTX: {
                weft_case cases[1] = {WEFT_RECV_CASE(NULL, NULL)};
                err = weft_select_ctx(cases, 1, watched);
                break;
            }
            default: {
                weft_wg never = WEFT_WG_INIT;
                weft_wg_add(&never, 1);
                err = weft_wg_wait_ctx(&never, watched);
                weft_wg_done(&never);
                break;
            }
            }
            int expected = form == F_BLOCK || form == F_TRY ? WEFT_ECLOSED : WEFT_ECANCELED;
            int cause = weft_ctx_cause(watched);
            if (err != expected || weft_ctx_err(watched) != WEFT_ECANCELED ||
                cause != (job.closes ? 4000 : WEFT_ECANCELED))
                failf(r, "%s: the owner's wait (form %d) returned %s, err %s, cause %d",
                      shape_names[shape], form, error_name(err), error_name(weft_ctx_err(watched)),
                      cause);
        }
        if (child) weft_ctx_release(child);
        weft_ctx_release(job.ctx);
        if (idle) weft_chan_release(idle);
        return;
    }
    case E_WAITGROUP: {
        early_wg *wg = malloc(sizeof *wg);
        if (!wg) return;
        weft_wg_init(&wg->wg);
        atomic_init(&wg->finished, 0);
        job.wg = wg;
        int partners = 1 + (int)below(&a->random, 3), started = 0;
        weft_wg_add(&wg->wg, partners);
        for (int i = 0; i < partners; i++)
            if (start_partner(a, &job))
                started++;
            else
                weft_wg_done(&wg->wg);
        int err = 0;
        if (form == F_UNTIL) {
            while ((err = weft_wg_wait_until(&wg->wg, weft_now() + WEFT_US(20))) != 0)
                if (err != WEFT_ETIMEDOUT && err != WEFT_EAGAIN) break;
        } else if (form == F_CTX) {
            err = weft_wg_wait_ctx(&wg->wg, weft_ctx_background());
        } else {
            weft_wg_wait(&wg->wg);
        }
        if (err || atomic_load(&wg->finished) != started)
            failf(r, "%s: the wait (form %d) returned %s with %d of %d partners done",
                  shape_names[shape], form, error_name(err), atomic_load(&wg->finished), started);
        if (chance(&a->random, 20)) weft_wg_destroy(&wg->wg); /* harmless, not needed */
        free(wg);
        return;
    }
    case E_MUTEX: {
        /* The partner unlocks the owner's hold, or locks, writes and
         * unlocks; the owner's next lock comes after that unlock. */
        early_mutex *lock = malloc(sizeof *lock);
        if (!lock) return;
        weft_mutex_init(&lock->lock);
        lock->value = 0;
        job.lock = lock;
        job.locks = chance(&a->random, 50);
        if (!job.locks) weft_mutex_lock(&lock->lock);
        if (!start_partner(a, &job)) {
            if (!job.locks) weft_mutex_unlock(&lock->lock);
        } else {
            for (bool seen = false; !seen;) {
                int err = 0;
                switch (form) {
                case F_TRY:
                    while ((err = weft_mutex_trylock(&lock->lock)) != 0) sched_yield();
                    break;
                case F_UNTIL:
                    while ((err = weft_mutex_lock_until(&lock->lock, weft_now() + WEFT_US(20))) ==
                               WEFT_ETIMEDOUT ||
                           err == WEFT_EAGAIN) {}
                    break;
                case F_CTX: err = weft_mutex_lock_ctx(&lock->lock, weft_ctx_background()); break;
                default: weft_mutex_lock(&lock->lock); break;
                }
                if (err)
                    failf(r, "%s: lock (form %d) returned %s", shape_names[shape], form,
                          error_name(err));
                seen = !job.locks || lock->value == job.base;
                weft_mutex_unlock(&lock->lock);
                if (!seen) sched_yield();
            }
        }
        weft_mutex_destroy(&lock->lock);
        free(lock);
        return;
    }
    case SHAPES: break;
    }
    /* No partner could start. */
    if (job.chan) weft_chan_release(job.chan);
}

/* ---- workers ------------------------------------------------------------ */

static void do_op(agent *a, int op) {
    round *r = a->round;
    switch (op) {
    case OP_SEND: op_send_or_recv(a, WEFT_SEND); break;
    case OP_RECV: op_send_or_recv(a, WEFT_RECV); break;
    case OP_SELECT: select_op(a, pick_ctx(a), true); break;
    case OP_CLOSE: close_chan(a, (int)below(&a->random, (uint32_t)r->chans_count)); break;
    case OP_CANCEL:
        /* not the root: that is the stop's (and, rarely, the chaos thread's) */
        if (r->nodes_count > 1)
            cancel_node(a, 1 + (int)below(&a->random, (uint32_t)r->nodes_count - 1));
        break;
    case OP_SUBCONTEXT: op_subcontext(a); break;
    case OP_CTX_WAIT: op_ctx_wait(a); break;
    case OP_MUTEX: op_mutex(a); break;
    case OP_RWMUTEX: op_rwmutex(a); break;
    case OP_SEMAPHORE: op_semaphore(a); break;
    case OP_WAITGROUP: op_waitgroup(a); break;
    case OP_GROUP: op_group(a); break;
    case OP_AFTER: op_after(a); break;
    case OP_TICKER: op_ticker(a); break;
    case OP_AFTER_FUNC: op_after_func(a); break;
    case OP_ONCE: op_once(a); break;
    case OP_VALUE: op_value(a); break;
    case OP_EARLY_FREE: op_earliest_free(a); break;
    }
}

static void worker_run(agent *a) {
    round *r = a->round;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) do_op(a, pick_op(a));
    agent_finish(a);
}

static void *worker_thread(void *arg) {
    worker_run(arg);
    return NULL;
}

static void worker_goroutine(void *arg) {
    agent *a = arg;
    weft_wg *wg = &a->round->goroutine_workers;
    worker_run(a);
    weft_wg_done(wg);
}

/* The chaos thread: closes and cancels at scheduled moments. */
static void *chaos_thread(void *arg) {
    round *r = arg;
    agent *a = r->chaos_agent;
    for (int i = 0; i < r->events_count; i++) {
        chaos_event *event = &r->events[i];
        set_doing(a, "sleeping", i);
        while (!atomic_load(&r->stop) && weft_now() < r->started + event->at) {
            struct timespec pause = {0, 200000};
            nanosleep(&pause, NULL);
        }
        if (atomic_load(&r->stop)) break;
        if (event->close)
            close_chan(a, event->index);
        else
            cancel_node(a, event->index);
    }
    agent_finish(a);
    return NULL;
}

static void stopper_run(stopper *s) {
    for (int i = 0; i < s->count; i++) {
        int action = s->actions[i];
        if (action >= 0)
            close_chan(s->agent, action);
        else
            cancel_node(s->agent, -1 - action);
    }
    agent_finish(s->agent);
}

static void *stopper_thread(void *arg) {
    stopper_run(arg);
    return NULL;
}

/* ---- building a round --------------------------------------------------- */

static round *round_build(uint64_t seed, long number) {
    round *r = calloc(1, sizeof *r);
    if (!r) {
        fprintf(stderr, "torture: out of memory\n");
        exit(2);
    }
    rng world = {seed};
    r->seed = seed;
    r->number = number;
    pthread_mutex_init(&r->failure_lock, NULL);
    atomic_init(&r->phase, "building");
    r->duration = WEFT_MS(2) + WEFT_US(below(&world, 38000));
    r->started = weft_now();

    r->chans_count = 1 + (int)below(&world, MAX_CHANS);
    for (int c = 0; c < r->chans_count; c++) {
        chan_slot *slot = &r->chans[c];
        uint32_t x = below(&world, 100);
        slot->cap = x < 35   ? 0
                    : x < 62 ? 1
                    : x < 90 ? 2 + below(&world, 63)
                    : x < 95 ? WEFT_UNBOUNDED
                             : 64 + below(&world, 2000);
        x = below(&world, 100);
        slot->elem_size = x < 60 ? 8 : x < 85 ? 24 : 0;
        slot->ctx_only = c > 0 && chance(&world, 15);
        if (!slot->ctx_only) r->normal[r->normal_count++] = c;
        slot->chan = slot->cap == WEFT_UNBOUNDED ? weft_chan_make_unbounded(slot->elem_size)
                                                 : weft_chan_make(slot->elem_size, slot->cap);
        if (!slot->chan) {
            fprintf(stderr, "torture: weft_chan_make(%zu, %zu) failed\n", slot->elem_size,
                    slot->cap);
            exit(1);
        }
    }

    r->nodes_count = 1 + (int)below(&world, MAX_NODES);
    for (int i = 0; i < r->nodes_count; i++) {
        ctx_node *node = &r->nodes[i];
        node->parent = i == 0 ? -1 : (int)below(&world, (uint32_t)i);
        weft_ctx *parent = i == 0 ? NULL : r->nodes[node->parent].ctx;
        weft_time inherited = i == 0 ? WEFT_FOREVER : r->nodes[node->parent].deadline;
        node->ancestors = (i == 0 ? 0 : r->nodes[node->parent].ancestors) | 1u << i;
        node->deadline = inherited;
        uint32_t x = below(&world, 100);
        if (i == 0 || x < 40) {
            node->kind = NODE_CANCEL;
            node->ctx = weft_ctx_with_cancel(parent);
        } else if (x < 70) {
            node->kind = NODE_DEADLINE;
            weft_time deadline = x < 65 ? r->started + r->duration * (10 + below(&world, 190)) / 100
                                        : r->started - 1; /* born timed out */
            if (deadline < node->deadline) node->deadline = deadline;
            node->ctx = weft_ctx_with_deadline(parent, deadline);
        } else {
            node->kind = NODE_VALUE;
            node->key = &value_keys[below(&world, 3)];
            node->ctx = weft_ctx_with_value(parent, node->key, node);
        }
        if (!node->ctx) {
            fprintf(stderr, "torture: making context %d failed (errno %d)\n", i, errno);
            exit(1);
        }
        if (weft_ctx_deadline(node->ctx) != node->deadline)
            failf(r, "node %d: weft_ctx_deadline is %" PRId64 ", expected %" PRId64, i,
                  weft_ctx_deadline(node->ctx), node->deadline);
    }

    r->ticker_started = weft_now();
    r->ticker = weft_ticker_new(WEFT_US(50 + below(&world, 2000)));
    if (!r->ticker) {
        fprintf(stderr, "torture: weft_ticker_new failed (errno %d)\n", errno);
        exit(1);
    }
    if (chance(&world, 30)) {
        r->pool_max_threads = 1 + (int)below(&world, 8);
        weft_pool_opts options = {.max_threads = r->pool_max_threads, .name = "torture"};
        options.min_threads = (int)below(&world, 2);
        options.idle_timeout = WEFT_MS(1 + below(&world, 20));
        options.stack_size = chance(&world, 50) ? 256 * 1024 : 0;
        r->pool = weft_pool_new(&options);
        if (!r->pool) {
            fprintf(stderr, "torture: weft_pool_new failed (errno %d)\n", errno);
            exit(1);
        }
    }
    weft_mutex_init(&r->mutex.lock);
    weft_rwmutex_init(&r->rw.lock);
    r->sem.capacity = 1 + below(&world, 8);
    weft_sem_init(&r->sem.sem, r->sem.capacity);
    r->once = (weft_once)WEFT_ONCE_INIT;
    weft_wg_init(&r->goroutine_workers);

    r->workers_count = 2 + (int)below(&world, MAX_WORKERS - 1);
    for (int w = 0; w < r->workers_count; w++) {
        bool goroutine = chance(&world, 50);
        agent *a = agent_new(r, goroutine ? "worker (goroutine)" : "worker (pthread)",
                             r->nodes[below(&world, (uint32_t)r->nodes_count)].ctx,
                             mix(seed, (uint64_t)w + 1));
        a->goroutine = goroutine;
        rng mixer = {mix(seed, (uint64_t)w + 100)};
        a->weights = a->own_weights;
        a->weight_total = 0;
        for (int op = 0; op < OPS; op++) {
            unsigned weight = 0, low = weight_spec[op].low, high = weight_spec[op].high;
            unsigned zero_percent = weight_spec[op].zero_percent;
            if (op == OP_EARLY_FREE && earliest_free) {
                low = earliest_free_spec.low;
                high = earliest_free_spec.high;
                zero_percent = earliest_free_spec.zero_percent;
            }
            if (!chance(&mixer, zero_percent)) weight = low + below(&mixer, high - low + 1);
            a->own_weights[op] = weight;
            a->weight_total += weight;
        }
        r->workers[w] = a;
    }

    r->chaos_agent = agent_new(r, "chaos", r->nodes[0].ctx, mix(seed, 7777));
    r->events_count = (int)below(&world, MAX_EVENTS + 1);
    for (int i = 0; i < r->events_count; i++) {
        chaos_event *event = &r->events[i];
        event->at = (weft_time)below(&world, (uint32_t)(r->duration / 1000)) * 1000;
        event->close = chance(&world, 30);
        event->index = event->close         ? (int)below(&world, (uint32_t)r->chans_count)
                       : chance(&world, 10) ? 0
                                            : (int)below(&world, (uint32_t)r->nodes_count);
    }
    for (int i = 1; i < r->events_count; i++) /* in time order */
        for (int j = i; j > 0 && r->events[j].at < r->events[j - 1].at; j--) {
            chaos_event swap = r->events[j];
            r->events[j] = r->events[j - 1];
            r->events[j - 1] = swap;
        }

    /* The stop: every ordinary channel closed and the root cancelled, each
     * by one stopper at least, some by two, in random orders, along with a
     * few other nodes. */
    r->stoppers_count = 1 + (int)below(&world, MAX_STOPPERS);
    for (int s = 0; s < r->stoppers_count; s++) {
        r->stoppers[s].round = r;
        r->stoppers[s].agent =
            agent_new(r, "stopper", r->nodes[0].ctx, mix(seed, 9000 + (uint64_t)s));
    }
    int actions[MAX_CHANS + MAX_NODES], actions_count = 0;
    for (int k = 0; k < r->normal_count; k++) actions[actions_count++] = r->normal[k];
    actions[actions_count++] = -1; /* the root */
    for (int j = 1; j < r->nodes_count; j++)
        if (chance(&world, 20)) actions[actions_count++] = -1 - j;
    for (int k = 0; k < actions_count; k++) {
        int s = (int)below(&world, (uint32_t)r->stoppers_count);
        r->stoppers[s].actions[r->stoppers[s].count++] = actions[k];
        int other = (int)below(&world, (uint32_t)r->stoppers_count);
        if (other != s && chance(&world, 30))
            r->stoppers[other].actions[r->stoppers[other].count++] = actions[k];
    }
    for (int s = 0; s < r->stoppers_count; s++) {
        stopper *st = &r->stoppers[s];
        for (int i = st->count - 1; i > 0; i--) {
            int j = (int)below(&world, (uint32_t)i + 1);
            int swap = st->actions[i];
            st->actions[i] = st->actions[j];
            st->actions[j] = swap;
        }
    }
    return r;
}

static void describe_world(const round *r) {
    fprintf(stderr, "torture:   %.1f ms, %d channels:", (double)r->duration / 1e6, r->chans_count);
    for (int c = 0; c < r->chans_count; c++)
        fprintf(stderr, " [%d: cap %zu, elem %zu%s]", c, r->chans[c].cap, r->chans[c].elem_size,
                r->chans[c].ctx_only ? ", ctx-only" : "");
    fprintf(stderr, "\ntorture:   contexts:");
    for (int i = 0; i < r->nodes_count; i++)
        fprintf(stderr, " [%d: %s under %d]", i, node_kind_names[r->nodes[i].kind],
                r->nodes[i].parent);
    fprintf(stderr, "\ntorture:   workers:");
    for (int w = 0; w < r->workers_count; w++)
        fprintf(stderr, " [%d: %s]", w, r->workers[w]->goroutine ? "goroutine" : "pthread");
    fprintf(stderr, "; semaphore capacity %" PRId64 "; %d chaos events, %d stoppers",
            r->sem.capacity, r->events_count, r->stoppers_count);
    if (r->pool) fprintf(stderr, "; a pool of at most %d threads", r->pool_max_threads);
    fputc('\n', stderr);
}

/* ---- the watchdog ------------------------------------------------------- */

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static round *current;       /* under current_lock */
static weft_time stop_time;  /* under current_lock; 0 before the stop */
static bool nodes_released;  /* under current_lock: current's contexts are gone */
static weft_time hang_limit; /* set once by main */

static void *watchdog_thread(void *unused) {
    (void)unused;
    for (;;) {
        struct timespec pause = {0, 100000000};
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&current_lock);
        round *r = current;
        weft_time now = weft_now();
        /* Measured from the stop; before it, from when the stop was due. */
        weft_time since = stop_time ? stop_time : (r ? r->started + r->duration : 0);
        if (r && now > since + hang_limit) {
            fprintf(stderr,
                    "torture: FAILED seed=%" PRIu64 " round=%ld: hang: the round has not finished "
                    "%.1f s after its stop (main thread: %s)\n",
                    r->seed, r->number, (double)(now - since) / 1e9, atomic_load(&r->phase));
            for (agent *a = atomic_load(&r->agents); a; a = a->next)
                if (!atomic_load(&a->finished))
                    fprintf(stderr, "torture:   %s %d is in %s (%d)\n", a->role, a->id,
                            atomic_load(&a->doing), atomic_load(&a->doing_chan));
            for (int c = 0; c < r->chans_count; c++)
                fprintf(stderr, "torture:   channel %d: cap %zu, len %zu, closes %d\n", c,
                        r->chans[c].cap, weft_chan_len(r->chans[c].chan),
                        atomic_load(&r->chans[c].closes));
            for (int i = 0; i < r->nodes_count && !nodes_released; i++)
                fprintf(stderr, "torture:   node %d: err %s\n", i,
                        error_name(weft_ctx_err(r->nodes[i].ctx)));
            fprintf(stderr, "torture:   goroutines %d, timers pending %zu, detached threads %d\n",
                    weft_goroutines(), weft__timer_pending(), atomic_load(&r->detached));
            describe_world(r);
            fprintf(stderr, "torture: replay: torture%s --round %" PRIu64 "\n",
                    earliest_free ? " --earliest-free" : "", r->seed);
            _exit(1);
        }
        pthread_mutex_unlock(&current_lock);
    }
    return NULL;
}

/* ---- end-of-round checks ------------------------------------------------ */

typedef struct {
    uint64_t value;
    uint32_t sequence;
    bool drained;
} seen;

static int compare_seen_by_value(const void *a, const void *b) {
    const seen *x = a, *y = b;
    if (x->value != y->value) return (x->value > y->value) - (x->value < y->value);
    return (x->drained > y->drained) - (x->drained < y->drained);
}

static int compare_seen_by_sender(const void *a, const void *b) {
    const seen *x = a, *y = b;
    uint64_t kx = x->value >> CHANNEL_SHIFT, ky = y->value >> CHANNEL_SHIFT;
    if (kx != ky) return (kx > ky) - (kx < ky);
    return (x->sequence > y->sequence) - (x->sequence < y->sequence);
}

static void describe_value(char *text, size_t size, uint64_t value) {
    snprintf(text, size, "%016" PRIx64 " (producer %" PRIu64 ", channel %" PRIu64 ", #%" PRIu64 ")",
             value, value >> PRODUCER_SHIFT, (value >> CHANNEL_SHIFT) & 15, value & COUNTER_MASK);
}

/* Each receiver saw each sender's values on a channel in the order sent. */
static void check_receiver_order(round *r, agent *a) {
    size_t n = a->received.count;
    if (n < 2) return;
    seen *entries = malloc(n * sizeof *entries);
    if (!entries) exit(2);
    for (size_t i = 0; i < n; i++) entries[i] = (seen){a->received.values[i], (uint32_t)i, false};
    qsort(entries, n, sizeof *entries, compare_seen_by_sender);
    for (size_t i = 1; i < n; i++) {
        if (entries[i].value >> CHANNEL_SHIFT != entries[i - 1].value >> CHANNEL_SHIFT) continue;
        if (entries[i].value <= entries[i - 1].value) {
            char first[96], second[96];
            describe_value(first, sizeof first, entries[i - 1].value);
            describe_value(second, sizeof second, entries[i].value);
            failf(r, "FIFO: %s %d received %s before %s", a->role, a->id, first, second);
            break;
        }
    }
    free(entries);
}

static void check_exactly_once(round *r, agent *drain) {
    size_t sent_count = 0, failed_count = 0, seen_count = 0;
    for (agent *a = atomic_load(&r->agents); a; a = a->next) {
        sent_count += a->sent.count;
        failed_count += a->failed.count;
        seen_count += a->received.count;
    }
    uint64_t *sent = malloc((sent_count + 1) * sizeof *sent);
    uint64_t *failed = malloc((failed_count + 1) * sizeof *failed);
    seen *all = malloc((seen_count + 1) * sizeof *all);
    if (!sent || !failed || !all) exit(2);
    size_t s = 0, f = 0, k = 0;
    for (agent *a = atomic_load(&r->agents); a; a = a->next) {
        if (a->sent.count) memcpy(sent + s, a->sent.values, a->sent.count * sizeof *sent);
        s += a->sent.count;
        if (a->failed.count) memcpy(failed + f, a->failed.values, a->failed.count * sizeof *failed);
        f += a->failed.count;
        for (size_t i = 0; i < a->received.count; i++)
            all[k++] = (seen){a->received.values[i], 0, a == drain};
        check_receiver_order(r, a);
    }
    qsort(sent, sent_count, sizeof *sent, compare_u64);
    qsort(failed, failed_count, sizeof *failed, compare_u64);
    qsort(all, seen_count, sizeof *all, compare_seen_by_value);

    int reports = 0;
    char text[96];
    size_t i = 0, j = 0;
    while ((i < sent_count || j < seen_count) && reports < 5) {
        if (j < seen_count && j > 0 && all[j].value == all[j - 1].value) {
            describe_value(text, sizeof text, all[j].value);
            failf(r, "exactly once: %s was received twice", text);
            reports++;
            j++;
        } else if (i < sent_count && (j == seen_count || sent[i] < all[j].value)) {
            describe_value(text, sizeof text, sent[i]);
            failf(r, "exactly once: %s was sent but never received nor left in its channel", text);
            reports++;
            i++;
        } else if (i == sent_count || all[j].value < sent[i]) {
            describe_value(text, sizeof text, all[j].value);
            bool was_failed =
                bsearch(&all[j].value, failed, failed_count, sizeof *failed, compare_u64) != NULL;
            failf(r, "exactly once: %s was %s but its send %s", text,
                  all[j].drained ? "left in the channel" : "received",
                  was_failed ? "failed (or its select case was not chosen)" : "never happened");
            reports++;
            j++;
        } else {
            i++;
            j++;
        }
    }
    /* No value was still buffered while a later one of its sender's (on the
     * same channel) had been received. */
    for (size_t n = 1; n < seen_count && reports < 6; n++) {
        if (all[n].value >> CHANNEL_SHIFT == all[n - 1].value >> CHANNEL_SHIFT &&
            all[n - 1].drained && !all[n].drained) {
            describe_value(text, sizeof text, all[n - 1].value);
            failf(r,
                  "FIFO: %s was still in its channel after a later value of its sender had been "
                  "received",
                  text);
            reports++;
        }
    }
    free(sent);
    free(failed);
    free(all);

    for (int c = 0; c < r->chans_count; c++) {
        if (r->chans[c].elem_size != 0) continue;
        uint64_t sent_signals = 0, received_signals = 0;
        for (agent *a = atomic_load(&r->agents); a; a = a->next) {
            sent_signals += a->signals_sent[c];
            received_signals += a->signals_received[c];
        }
        if (sent_signals != received_signals)
            failf(r,
                  "signal channel %d: %" PRIu64 " sends succeeded, %" PRIu64
                  " values received or drained",
                  c, sent_signals, received_signals);
    }
}

/* Close the ctx-only channels, then drain every channel into drain. */
static void drain_channels(round *r, agent *drain) {
    for (int c = 0; c < r->chans_count; c++) {
        chan_slot *slot = &r->chans[c];
        if (slot->ctx_only) close_chan(drain, c);
        size_t length = weft_chan_len(slot->chan), drained = 0;
        uint64_t buffer[4];
        int err;
        for (;;) {
            fill_sentinel(buffer);
            err = weft_chan_try_recv(slot->chan, buffer);
            if (err != 0) break;
            note_received(drain, c, buffer, "drain");
            drained++;
        }
        if (err != WEFT_ECLOSED)
            failf(r, "drain of closed channel %d ended with %s", c, error_name(err));
        if (drained != length)
            failf(r, "channel %d: len said %zu before the drain, which found %zu", c, length,
                  drained);
        if (!untouched(buffer)) failf(r, "channel %d: a failed try_recv wrote its buffer", c);
        encode(buffer, SENTINEL >> 1);
        int send = weft_chan_try_send(slot->chan, buffer);
        int recv = weft_chan_recv(slot->chan, buffer);
        int until = weft_chan_recv_until(slot->chan, buffer, weft_deadline(WEFT_SEC(1)));
        int again = weft_chan_close(slot->chan);
        if (send != WEFT_ECLOSED || recv != WEFT_ECLOSED || until != WEFT_ECLOSED ||
            again != WEFT_ECLOSED)
            failf(r, "closed, drained channel %d: try_send %s, recv %s, recv_until %s, close %s", c,
                  error_name(send), error_name(recv), error_name(until), error_name(again));
        int closes = atomic_load(&slot->closes);
        if (closes != 1) failf(r, "channel %d: %d closes returned 0 (expected 1)", c, closes);
    }
}

static void check_contexts(round *r) {
    weft_time now = weft_now();
    for (int d = 0; d < r->nodes_count; d++) {
        weft_ctx *ctx = r->nodes[d].ctx;
        int err = weft_ctx_err(ctx), cause = weft_ctx_cause(ctx);
        if (weft_chan_try_recv(weft_ctx_done(ctx), NULL) != WEFT_ECLOSED)
            failf(r, "node %d: done channel not closed after the root was cancelled", d);
        if (err == WEFT_ETIMEDOUT) {
            if (cause != WEFT_ETIMEDOUT) failf(r, "node %d timed out with cause %d", d, cause);
            if (weft_ctx_deadline(ctx) > now) failf(r, "node %d timed out before its deadline", d);
        } else if (err == WEFT_ECANCELED) {
            int j = cause - FIRST_CAUSE;
            bool ok = cause == WEFT_ECANCELED ||
                      (j >= 0 && j < r->nodes_count && (r->nodes[d].ancestors & (1u << j)) &&
                       r->nodes[j].kind != NODE_VALUE && weft_ctx_cause(r->nodes[j].ctx) == cause);
            if (!ok)
                failf(r, "node %d: canceled with cause %d, which no context at or above it had", d,
                      cause);
        } else {
            failf(r, "node %d: error %s after the root was cancelled", d, error_name(err));
        }
    }
}

/* Poll until done() is true, for at most limit; false if it never was. */
static bool eventually(bool (*done)(round *), round *r, weft_time limit) {
    weft_time give_up = weft_now() + limit;
    while (!done(r)) {
        if (weft_now() > give_up) return false;
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    return true;
}

static size_t timer_baseline;

static bool no_goroutines(round *r) {
    (void)r;
    return weft_goroutines() == 0;
}

static bool no_detached(round *r) { return atomic_load(&r->detached) == 0; }

static bool timers_at_baseline(round *r) {
    (void)r;
    return weft__timer_pending() == timer_baseline;
}

static bool afters_all_ran(round *r) {
    uint64_t started = 0;
    for (agent *a = atomic_load(&r->agents); a; a = a->next) started += a->after_started;
    return (uint64_t)atomic_load(&r->after_ran) >= started;
}

/* ---- running a round ---------------------------------------------------- */

typedef struct {
    long rounds;
    uint64_t counts[KINDS];
} totals;

static void set_phase(round *r, const char *phase) { atomic_store(&r->phase, phase); }

static bool run_round(uint64_t seed, long number, totals *sum, bool verbose) {
    crash_line_length =
        (size_t)snprintf(crash_line, sizeof crash_line,
                         "torture: FAILED seed=%" PRIu64 " round=%ld: crashed\n", seed, number);
    round *r = round_build(seed, number);
    pthread_mutex_lock(&current_lock);
    current = r;
    stop_time = 0;
    nodes_released = false;
    pthread_mutex_unlock(&current_lock);

    set_phase(r, "starting workers");
    for (int w = 0; w < r->workers_count; w++) {
        agent *a = r->workers[w];
        if (a->goroutine) {
            weft_wg_add(&r->goroutine_workers, 1);
            int err = weft_go(worker_goroutine, a);
            if (err == 0) continue;
            weft_wg_done(&r->goroutine_workers);
            failf(r, "weft_go (worker %d) returned %s", w, error_name(err));
            a->goroutine = false;
        }
        int error = pthread_create(&a->thread, NULL, worker_thread, a);
        if (error) {
            fprintf(stderr, "torture: pthread_create: %s\n", strerror(error));
            exit(2);
        }
    }
    pthread_t chaos;
    if (pthread_create(&chaos, NULL, chaos_thread, r) != 0) {
        fprintf(stderr, "torture: pthread_create failed\n");
        exit(2);
    }

    set_phase(r, "running");
    weft_time stop_at = r->started + r->duration;
    for (weft_time now = weft_now(); now < stop_at; now = weft_now()) {
        struct timespec pause = {0, (long)(stop_at - now)};
        nanosleep(&pause, NULL);
    }

    set_phase(r, "stopping");
    pthread_mutex_lock(&current_lock);
    stop_time = weft_now();
    pthread_mutex_unlock(&current_lock);
    atomic_store(&r->stop, true);
    for (int s = 1; s < r->stoppers_count; s++)
        r->stoppers[s].joinable =
            pthread_create(&r->stoppers[s].thread, NULL, stopper_thread, &r->stoppers[s]) == 0;
    stopper_run(&r->stoppers[0]);
    for (int s = 1; s < r->stoppers_count; s++) {
        if (r->stoppers[s].joinable)
            pthread_join(r->stoppers[s].thread, NULL);
        else
            stopper_run(&r->stoppers[s]);
    }

    set_phase(r, "joining workers");
    for (int w = 0; w < r->workers_count; w++)
        if (!r->workers[w]->goroutine) pthread_join(r->workers[w]->thread, NULL);
    weft_wg_wait(&r->goroutine_workers);
    pthread_join(chaos, NULL);
    set_phase(r, "stopping the round's ticker");
    weft_ticker_stop(r->ticker);
    if (r->pool) {
        set_phase(r, "closing the round's pool");
        int err = weft_pool_close(r->pool);
        if (err) failf(r, "weft_pool_close returned %s", error_name(err));
    }

    set_phase(r, "draining");
    agent *drain = agent_new(r, "drain", NULL, 0);
    drain_channels(r, drain);
    set_phase(r, "checking exactly-once");
    check_exactly_once(r, drain);
    agent_finish(drain);

    set_phase(r, "checking");
    check_contexts(r);
    uint64_t holds = 0, writes = 0;
    for (agent *a = atomic_load(&r->agents); a; a = a->next) {
        holds += a->mutex_holds;
        writes += a->rw_writes;
    }
    if (r->mutex.first != holds || r->mutex.second != holds)
        failf(r, "mutex: %" PRIu64 " holds, but the pair says %" PRIu64 "/%" PRIu64, holds,
              r->mutex.first, r->mutex.second);
    if (weft_mutex_trylock(&r->mutex.lock) != 0)
        failf(r, "the mutex is still locked at the end of the round");
    else
        weft_mutex_unlock(&r->mutex.lock);
    if (r->rw.first != writes || r->rw.second != writes)
        failf(r, "rwmutex: %" PRIu64 " write holds, but the pair says %" PRIu64 "/%" PRIu64, writes,
              r->rw.first, r->rw.second);
    if (weft_rwmutex_trylock(&r->rw.lock) != 0)
        failf(r, "the rwmutex is still held at the end of the round");
    else
        weft_rwmutex_unlock(&r->rw.lock);
    if (atomic_load(&r->sem.held) != 0 || weft_sem_try_acquire(&r->sem.sem, r->sem.capacity) != 0)
        failf(r, "semaphore: not every unit came back (%lld held by the count)",
              (long long)atomic_load(&r->sem.held));
    else
        weft_sem_release(&r->sem.sem, r->sem.capacity);
    if (atomic_load(&r->once_runs) > 1)
        failf(r, "once: fn ran %d times", atomic_load(&r->once_runs));

    set_phase(r, "waiting for goroutines");
    weft_time patience = hang_limit / 2; /* the watchdog would report a hang at hang_limit */
    if (!eventually(no_goroutines, r, patience))
        failf(r, "leak: weft_goroutines() is %d %.0f s after the round", weft_goroutines(),
              (double)patience / 1e9);
    set_phase(r, "waiting for detached threads");
    if (!eventually(no_detached, r, patience))
        failf(r, "%d detached threads still running %.0f s after the round",
              atomic_load(&r->detached), (double)patience / 1e9);
    set_phase(r, "waiting for after-functions");
    eventually(afters_all_ran, r, patience);
    uint64_t after_started = 0;
    for (agent *a = atomic_load(&r->agents); a; a = a->next) after_started += a->after_started;
    if ((uint64_t)atomic_load(&r->after_ran) != after_started)
        failf(r, "after-functions: %ld ran, weft_ctx_after_stop said %" PRIu64 " had started",
              atomic_load(&r->after_ran), after_started);

    set_phase(r, "releasing contexts");
    pthread_mutex_lock(&current_lock);
    nodes_released = true;
    pthread_mutex_unlock(&current_lock);
    for (int i = r->nodes_count - 1; i >= 0; i--) weft_ctx_release(r->nodes[i].ctx);
    set_phase(r, "waiting for timers");
    if (!eventually(timers_at_baseline, r, patience))
        failf(r, "leak: %zu timers pending after the round (baseline %zu)", weft__timer_pending(),
              timer_baseline);

    set_phase(r, "freeing");
    pthread_mutex_lock(&current_lock); /* nothing left can hang; the watchdog looks away */
    current = NULL;
    pthread_mutex_unlock(&current_lock);
    for (int c = 0; c < r->chans_count; c++) weft_chan_release(r->chans[c].chan);
    weft_mutex_destroy(&r->mutex.lock);
    weft_rwmutex_destroy(&r->rw.lock);
    weft_sem_destroy(&r->sem.sem);
    weft_wg_destroy(&r->goroutine_workers);

    uint64_t operations = 0;
    for (agent *a = atomic_load(&r->agents); a; a = a->next)
        for (int k = 0; k < KINDS; k++) {
            sum->counts[k] += a->counts[k];
            operations += a->counts[k];
        }
    sum->rounds++;

    int failures = atomic_load(&r->failures);
    if (verbose || failures)
        fprintf(stderr,
                "torture: round %ld seed %" PRIu64 ": %d channels, %d contexts, %d workers, "
                "%.1f ms, %" PRIu64 " operations%s\n",
                number, seed, r->chans_count, r->nodes_count, r->workers_count,
                (double)r->duration / 1e6, operations, failures ? "" : ": OK");
    if (failures) {
        for (int i = 0; i < failures && i < MAX_MESSAGES; i++)
            fprintf(stderr, "torture: FAILED seed=%" PRIu64 " round=%ld: %s\n", seed, number,
                    r->messages[i]);
        if (failures > MAX_MESSAGES)
            fprintf(stderr, "torture:   ... and %d more failures\n", failures - MAX_MESSAGES);
        describe_world(r);
        fprintf(stderr, "torture: replay: torture%s --round %" PRIu64 "\n",
                earliest_free ? " --earliest-free" : "", seed);
    }

    while (r->agents) {
        agent *a = r->agents;
        r->agents = a->next;
        while (a->afters) {
            after_record *record = a->afters;
            a->afters = record->next;
            free(record);
        }
        log_free(&a->sent);
        log_free(&a->failed);
        log_free(&a->received);
        free(a);
    }
    pthread_mutex_destroy(&r->failure_lock);
    free(r);
    return failures == 0;
}

/* ---- main --------------------------------------------------------------- */

static void usage(void) {
    fprintf(stderr, "usage: torture [--seed N] [--seconds S] [--round SEED] [--hang S] "
                    "[--earliest-free] [--verbose]\n");
    exit(2);
}

/* "1234567" -> "1,234,567" */
static const char *with_commas(uint64_t n, char *text) {
    char digits[32];
    int length = snprintf(digits, sizeof digits, "%" PRIu64, n), out = 0;
    for (int i = 0; i < length; i++) {
        if (i > 0 && (length - i) % 3 == 0) text[out++] = ',';
        text[out++] = digits[i];
    }
    text[out] = '\0';
    return text;
}

static bool parse_u64(const char *text, uint64_t *value) {
    char *end;
    errno = 0;
    unsigned long long parsed = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-') return false;
    *value = parsed;
    return true;
}

static bool parse_seconds(const char *text, double *value) {
    char *end;
    double parsed = strtod(text, &end);
    if (end == text || *end || !(parsed >= 0) || parsed > 1e7) return false;
    *value = parsed;
    return true;
}

int main(int argc, char **argv) {
    uint64_t seed = 0, replay = 0;
    bool seed_given = false, replaying = false, seconds_given = false, verbose = false;
    double seconds = 10;
#ifdef TORTURE_SANITIZED
    double hang = 120;
#else
    double hang = 30;
#endif
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "--verbose") || !strcmp(arg, "-v")) {
            verbose = true;
            continue;
        }
        if (!strcmp(arg, "--earliest-free")) {
            earliest_free = true;
            continue;
        }
        if (!value) usage();
        i++;
        if (!strcmp(arg, "--seed")) {
            if (!parse_u64(value, &seed)) usage();
            seed_given = true;
        } else if (!strcmp(arg, "--round")) {
            if (!parse_u64(value, &replay)) usage();
            replaying = true;
        } else if (!strcmp(arg, "--seconds")) {
            if (!parse_seconds(value, &seconds)) usage();
            seconds_given = true;
        } else if (!strcmp(arg, "--hang")) {
            if (!parse_seconds(value, &hang) || hang < 1) usage();
        } else {
            usage();
        }
    }
    if (!seed_given) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        seed = ((uint64_t)now.tv_sec * 1000003u ^ (uint64_t)now.tv_nsec ^ (uint64_t)getpid()) %
               1000000000u;
    }
    hang_limit = (weft_time)(hang * 1e9);

    signal(SIGABRT, on_fatal_signal);
#ifdef TORTURE_SANITIZED
    __sanitizer_set_death_callback(print_crash_line);
#else
    signal(SIGSEGV, on_fatal_signal);
    signal(SIGBUS, on_fatal_signal);
    signal(SIGFPE, on_fatal_signal);
#endif
    timer_baseline = weft__timer_pending();
    pthread_t watchdog;
    if (pthread_create(&watchdog, NULL, watchdog_thread, NULL) != 0) {
        fprintf(stderr, "torture: cannot start the watchdog\n");
        return 2;
    }
    pthread_detach(watchdog);

    if (replaying)
        fprintf(stderr, "torture: replaying round seed %" PRIu64 "%s\n", replay,
                seconds_given ? " repeatedly" : "");
    else
        fprintf(stderr, "torture: seed %" PRIu64 ", %.1f s%s\n", seed, seconds,
                earliest_free ? ", earliest-free shapes weighted" : "");

    totals sum = {0};
    weft_time start = weft_now(), limit = (weft_time)(seconds * 1e9);
    long number = 0;
    do {
        number++;
        uint64_t round_seed = replaying ? replay : mix(seed, (uint64_t)number);
        if (!run_round(round_seed, number, &sum, verbose)) return 1;
    } while ((!replaying || seconds_given) && weft_now() - start < limit);
    double elapsed = (double)(weft_now() - start) / 1e9;
    crash_line_length = 0; /* a report from here on (leaks at exit) is not a round's */

    uint64_t operations = 0;
    for (int k = 0; k < KINDS; k++) operations += sum.counts[k];
    char text[40];
    fprintf(stdout, "torture: %ld rounds, %.1f s, %s operations (", sum.rounds, elapsed,
            with_commas(operations, text));
    for (int k = 0; k < KINDS; k++)
        fprintf(stdout, "%s%s %s", k ? ", " : "", kind_names[k], with_commas(sum.counts[k], text));
    if (replaying)
        fprintf(stdout, "), round seed %" PRIu64 ": OK\n", replay);
    else
        fprintf(stdout, "), seed %" PRIu64 ": OK\n", seed);
    return 0;
}
