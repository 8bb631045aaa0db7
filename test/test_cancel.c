/* Cancellation of every blocking call's _ctx form, written from the
 * contracts in include/weft/chan.h, select.h, sync.h and ctx.h.
 *
 * The contract, for each call below: a context that has already ended
 * makes the call return its error at once, without doing the operation;
 * one that ends while the call is blocked makes it return WEFT_ECANCELED
 * (cancel, of the context or of an ancestor) or WEFT_ETIMEDOUT (deadline,
 * never early), and the operation did not happen; a partner that completed
 * the call before the cancel wins; NULL and the background context never
 * end.
 *
 * The calls ("kinds") are a table: weft_chan_send_ctx and
 * weft_chan_recv_ctx at capacity 0, 1 and 16 (a send blocks on a full
 * buffer), weft_select_ctx, weft_wg_wait_ctx, weft_mutex_lock_ctx,
 * weft_rwmutex_rlock_ctx (held back by a writer), weft_rwmutex_lock_ctx
 * (held back by a reader) and weft_sem_acquire. Most tests are loop tests
 * over that table: _i is the kind, and every message names it. For each
 * kind a blocked_call knows how to make the call block, how a partner lets
 * it through, and how to check afterwards that it happened exactly (or did
 * not happen at all and left the object working).
 *
 * "The call is blocked" is known from a test hook where there is one (a
 * waiter queued on a mutex, rwmutex or semaphore; an unbuffered channel's
 * version moving when a waiter is queued), else from the call's thread
 * announcing itself plus SETTLE_MS (see testutil.h): a short settle only
 * weakens a test, it never makes one fail.
 *
 * The race tests run hundreds of rounds (WEFT_TEST_SCALE divides them) of
 * a _ctx call against a partner and a cancel scheduled to collide, and
 * check exactly-once: what the call reported done was done once, what it
 * reported cancelled never happened (see "races" below). Timing is
 * asserted only as "never early" and as generous upper bounds. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/error.h"
#include "weft/go.h"
#include "weft/select.h"
#include "weft/sync.h"
#include "weft/time.h"

#include "chan_internal.h" /* weft__chan_version: a waiter queued on an unbuffered channel */
#include "sync_internal.h" /* weft__mutex_has_waiters, weft__rwmutex_readers_queued, weft__sem_queued */
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------- */

enum { WAIT_MS = 10000 }; /* bound on any wait; far above what a healthy run needs */

/* "At once": far above a call that does not block, far below one that does. */
#define AT_ONCE WEFT_MS(500)

enum {
    SENT = 7,           /* the value a blocked call sends, or its partner sends it */
    FILLER_BASE = 1000, /* values that fill a buffer so that a send blocks */
    UNTOUCHED = -1,     /* a receive destination's value before the receive */
    OTHER_VALUE = 99,   /* a value sent afterwards, to show the object still works */
    SEM_CAPACITY = 4,   /* the semaphore's units; the blocked call wants SEM_REQUEST */
    SEM_REQUEST = 2,
};

static weft_time in_ms(long ms) { return weft_deadline(WEFT_MS(ms)); }

/* Busy-wait until when (sub-millisecond schedules in the races). */
static void spin_until(weft_time when) {
    while (weft_now() < when) {}
}

/* A duration in [0, most), from the caller's generator. */
static weft_time random_duration(uint64_t *seed, weft_time most) {
    return (weft_time)(test_random(seed) % (uint64_t)most);
}

static weft_chan *make_int_chan(size_t cap) {
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* Send count ints base, base+1, ... without blocking (into the buffer). */
static void fill_ints(weft_chan *c, size_t count, int base) {
    for (size_t i = 0; i < count; i++) {
        int v = base + (int)i;
        ck_assert_int_eq(weft_chan_try_send(c, &v), 0);
    }
}

/* Receive count ints and check they are base, base+1, ... in order. */
static void drain_ints(weft_chan *c, size_t count, int base) {
    for (size_t i = 0; i < count; i++) {
        int v = UNTOUCHED;
        ck_assert_int_eq(weft_chan_try_recv(c, &v), 0);
        ck_assert_int_eq(v, base + (int)i);
    }
}

static weft_ctx *new_cancel_ctx(weft_ctx *parent) {
    weft_ctx *ctx = weft_ctx_with_cancel(parent);
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

static void *cancel_thread_main(void *ctx) {
    weft_ctx_cancel(ctx);
    return NULL;
}

/* A goroutine outlives the caller's hold on ctx (cancel still touches ctx
 * after the done channel has woken everyone): the caller retains ctx for
 * it, and it releases ctx when done. */
static void cancel_and_release_goroutine(void *ctx) {
    weft_ctx_cancel(ctx);
    weft_ctx_release(ctx);
}

/* Poll until an unbuffered channel's version leaves baseline: a waiter
 * has been queued on it (its partner may now find it). */
static void wait_for_handoff_waiter(weft_chan *c, uint64_t baseline) {
    weft_time give_up = in_ms(WAIT_MS);
    while (weft__chan_version(c) == baseline) {
        ck_assert_msg(weft_now() < give_up, "no waiter was ever queued on the channel");
        sleep_ms(1);
    }
}

/* ---- a plain channel operation on its own thread ------------------------ */

typedef struct {
    weft_chan *chan;
    int dir;    /* WEFT_SEND or WEFT_RECV */
    int value;  /* send: the value; recv: preset UNTOUCHED, then what arrived */
    int result; /* the _until call's result */
    atomic_int done;
    pthread_t thread;
} chan_partner;

static void *chan_partner_main(void *arg) {
    chan_partner *partner = arg;
    weft_time deadline = in_ms(WAIT_MS);
    partner->result = partner->dir == WEFT_SEND
                          ? weft_chan_send_until(partner->chan, &partner->value, deadline)
                          : weft_chan_recv_until(partner->chan, &partner->value, deadline);
    atomic_store(&partner->done, 1);
    return NULL;
}

static void start_partner(chan_partner *partner, weft_chan *c, int dir, int value) {
    partner->chan = c;
    partner->dir = dir;
    partner->value = value;
    partner->result = 12345;
    atomic_init(&partner->done, 0);
    start_thread(&partner->thread, chan_partner_main, partner);
}

static void finish_partner(chan_partner *partner) { join_thread(partner->thread); }

/* An empty channel carries a value sent now to a receiver, and is empty
 * again afterwards. */
static void check_chan_carries(weft_chan *c, const char *name) {
    chan_partner receiver;
    start_partner(&receiver, c, WEFT_RECV, UNTOUCHED);
    int v = OTHER_VALUE;
    ck_assert_msg(weft_chan_send_until(c, &v, in_ms(WAIT_MS)) == 0, "%s: later send failed", name);
    finish_partner(&receiver);
    ck_assert_msg(receiver.result == 0 && receiver.value == OTHER_VALUE,
                  "%s: later receive got %d (result %d), expected %d", name, receiver.value,
                  receiver.result, OTHER_VALUE);
    ck_assert_int_eq(weft_chan_try_recv(c, &v), WEFT_EAGAIN);
}

/* ---- the table of blocking calls --------------------------------------- */

typedef enum {
    KIND_SEND_CAP0,
    KIND_SEND_CAP1,
    KIND_SEND_CAP16,
    KIND_RECV_CAP0,
    KIND_RECV_CAP1,
    KIND_RECV_CAP16,
    KIND_SELECT,
    KIND_WG_WAIT,
    KIND_MUTEX_LOCK,
    KIND_RWMUTEX_RLOCK,
    KIND_RWMUTEX_LOCK,
    KIND_SEM_ACQUIRE,
    KIND_COUNT
} call_kind;

static const char *const kind_names[KIND_COUNT] = {
    "chan_send_ctx cap 0", "chan_send_ctx cap 1",  "chan_send_ctx cap 16", "chan_recv_ctx cap 0",
    "chan_recv_ctx cap 1", "chan_recv_ctx cap 16", "select_ctx",           "wg_wait_ctx",
    "mutex_lock_ctx",      "rwmutex_rlock_ctx",    "rwmutex_lock_ctx",     "sem_acquire",
};

static bool is_send_kind(call_kind kind) { return kind <= KIND_SEND_CAP16; }
static bool is_recv_kind(call_kind kind) {
    return kind >= KIND_RECV_CAP0 && kind <= KIND_RECV_CAP16;
}

static size_t kind_cap(call_kind kind) {
    static const size_t caps[] = {0, 1, 16};
    if (is_send_kind(kind)) return caps[kind - KIND_SEND_CAP0];
    if (is_recv_kind(kind)) return caps[kind - KIND_RECV_CAP0];
    return 0;
}

/* One _ctx call that blocks, its objects, and its outcome. */
typedef struct {
    call_kind kind;
    const char *name;
    size_t cap;

    weft_chan *chan;  /* channel kinds; select: the unbuffered channel of its receive case */
    weft_chan *full;  /* select: a capacity-1 channel holding FILLER_BASE (its send case) */
    uint64_t version; /* unbuffered: chan's version before the call */
    weft_case cases[2];
    int select_send_value;
    weft_wg wg;
    weft_mutex mutex;
    weft_rwmutex rwmutex;
    weft_sem sem;

    weft_ctx *ctx;
    int value;       /* send: SENT; receive: preset UNTOUCHED, then what arrived */
    int chosen;      /* select: the case that proceeded */
    int partner_got; /* a send's partner: what its receive took */
    int result;      /* the call's result (select: 0 when a case proceeded) */
    weft_time returned_at;
    bool on_goroutine;
    pthread_t thread;
    atomic_int arrived; /* set just before the call */
    atomic_int done;    /* set after the call returned and result was written */
} blocked_call;

/* Put the objects of kind in a state where its call must block. */
static void call_setup(blocked_call *call, call_kind kind) {
    memset(call, 0, sizeof *call);
    call->kind = kind;
    call->name = kind_names[kind];
    call->cap = kind_cap(kind);
    call->value = UNTOUCHED;
    call->chosen = -1;
    call->partner_got = UNTOUCHED;
    call->result = 12345;
    atomic_init(&call->arrived, 0);
    atomic_init(&call->done, 0);
    switch (kind) {
    case KIND_SEND_CAP0:
    case KIND_SEND_CAP1:
    case KIND_SEND_CAP16:
        call->chan = make_int_chan(call->cap);
        fill_ints(call->chan, call->cap, FILLER_BASE);
        call->value = SENT;
        break;
    case KIND_RECV_CAP0:
    case KIND_RECV_CAP1:
    case KIND_RECV_CAP16: call->chan = make_int_chan(call->cap); break;
    case KIND_SELECT:
        call->chan = make_int_chan(0);
        call->full = make_int_chan(1);
        fill_ints(call->full, 1, FILLER_BASE);
        call->select_send_value = SENT + 1;
        call->cases[0] = (weft_case)WEFT_RECV_CASE(call->chan, &call->value);
        call->cases[1] = (weft_case)WEFT_SEND_CASE(call->full, &call->select_send_value);
        break;
    case KIND_WG_WAIT:
        weft_wg_init(&call->wg);
        weft_wg_add(&call->wg, 1);
        break;
    case KIND_MUTEX_LOCK:
        weft_mutex_init(&call->mutex);
        weft_mutex_lock(&call->mutex); /* the holder: the test thread */
        break;
    case KIND_RWMUTEX_RLOCK:
        weft_rwmutex_init(&call->rwmutex);
        weft_rwmutex_lock(&call->rwmutex); /* a writer holds readers back */
        break;
    case KIND_RWMUTEX_LOCK:
        weft_rwmutex_init(&call->rwmutex);
        weft_rwmutex_rlock(&call->rwmutex); /* a reader holds the writer back */
        break;
    case KIND_SEM_ACQUIRE:
        ck_assert_int_eq(weft_sem_init(&call->sem, SEM_CAPACITY), 0);
        ck_assert_int_eq(weft_sem_try_acquire(&call->sem, SEM_CAPACITY), 0); /* all held */
        break;
    case KIND_COUNT: break;
    }
    if (call->chan && call->cap == 0) call->version = weft__chan_version(call->chan);
}

static void call_teardown(blocked_call *call) {
    weft_chan_release(call->chan);
    weft_chan_release(call->full);
    switch (call->kind) {
    case KIND_WG_WAIT: weft_wg_destroy(&call->wg); break;
    case KIND_MUTEX_LOCK: weft_mutex_destroy(&call->mutex); break;
    case KIND_RWMUTEX_RLOCK:
    case KIND_RWMUTEX_LOCK: weft_rwmutex_destroy(&call->rwmutex); break;
    case KIND_SEM_ACQUIRE: weft_sem_destroy(&call->sem); break;
    default: break;
    }
}

/* The _ctx call itself. */
static int call_run(blocked_call *call, weft_ctx *ctx) {
    switch (call->kind) {
    case KIND_SEND_CAP0:
    case KIND_SEND_CAP1:
    case KIND_SEND_CAP16: return weft_chan_send_ctx(call->chan, &call->value, ctx);
    case KIND_RECV_CAP0:
    case KIND_RECV_CAP1:
    case KIND_RECV_CAP16: return weft_chan_recv_ctx(call->chan, &call->value, ctx);
    case KIND_SELECT: {
        int chosen = weft_select_ctx(call->cases, 2, ctx);
        if (chosen < 0) return chosen;
        call->chosen = chosen;
        return 0;
    }
    case KIND_WG_WAIT: return weft_wg_wait_ctx(&call->wg, ctx);
    case KIND_MUTEX_LOCK: return weft_mutex_lock_ctx(&call->mutex, ctx);
    case KIND_RWMUTEX_RLOCK: return weft_rwmutex_rlock_ctx(&call->rwmutex, ctx);
    case KIND_RWMUTEX_LOCK: return weft_rwmutex_lock_ctx(&call->rwmutex, ctx);
    case KIND_SEM_ACQUIRE: return weft_sem_acquire(&call->sem, SEM_REQUEST, ctx);
    case KIND_COUNT: break;
    }
    return 12345;
}

static void call_body(blocked_call *call) {
    atomic_store(&call->arrived, 1);
    int result = call_run(call, call->ctx);
    call->result = result;
    call->returned_at = weft_now();
    atomic_store(&call->done, 1); /* the last touch of call */
}

static void *call_thread_main(void *arg) {
    call_body(arg);
    return NULL;
}

static void call_goroutine_main(void *arg) { call_body(arg); }

/* Start the call with ctx on a pthread or a weft_go goroutine. */
static void call_start(blocked_call *call, weft_ctx *ctx, bool on_goroutine) {
    call->ctx = ctx;
    call->on_goroutine = on_goroutine;
    if (on_goroutine)
        ck_assert_int_eq(weft_go(call_goroutine_main, call), 0);
    else
        start_thread(&call->thread, call_thread_main, call);
}

/* Whether a test hook shows the call queued (parked or about to park):
 * 1 yes, 0 not yet, -1 no hook for this kind. */
static int call_queued(blocked_call *call) {
    switch (call->kind) {
    case KIND_SEND_CAP0:
    case KIND_RECV_CAP0:
    case KIND_SELECT: return weft__chan_version(call->chan) != call->version;
    case KIND_MUTEX_LOCK: return weft__mutex_has_waiters(&call->mutex);
    case KIND_RWMUTEX_RLOCK: return weft__rwmutex_readers_queued(&call->rwmutex);
    case KIND_RWMUTEX_LOCK:
        /* A queued writer holds new readers back. */
        if (weft_rwmutex_tryrlock(&call->rwmutex) == WEFT_EAGAIN) return 1;
        weft_rwmutex_runlock(&call->rwmutex);
        return 0;
    case KIND_SEM_ACQUIRE: return weft__sem_queued(&call->sem) > 0;
    default: return -1;
    }
}

/* Wait until the call has started and, where a hook tells, queued.
 * Returns whether a hook told; if not, the caller settles. */
static bool call_wait_queued(blocked_call *call) {
    weft_time give_up = in_ms(WAIT_MS);
    while (!atomic_load(&call->arrived)) {
        ck_assert_msg(weft_now() < give_up, "%s: the call never started", call->name);
        sleep_ms(1);
    }
    int queued;
    while ((queued = call_queued(call)) == 0) {
        ck_assert_msg(weft_now() < give_up, "%s: the call never queued", call->name);
        ck_assert_msg(!atomic_load(&call->done), "%s: returned %d (%s) instead of blocking",
                      call->name, call->result, weft_strerror(call->result));
        sleep_ms(1);
    }
    return queued > 0;
}

static void assert_still_blocked(blocked_call *call) {
    ck_assert_msg(!atomic_load(&call->done), "%s: returned %d (%s) instead of blocking", call->name,
                  call->result, weft_strerror(call->result));
}

/* Wait until the call is (as far as can be told) blocked. */
static void call_wait_blocked(blocked_call *call) {
    if (!call_wait_queued(call)) sleep_ms(SETTLE_MS);
    assert_still_blocked(call);
}

/* Wait (at most WAIT_MS) for the call to return; join its thread. */
static void call_wait_returned(blocked_call *call) {
    weft_time give_up = in_ms(WAIT_MS);
    while (!atomic_load(&call->done)) {
        ck_assert_msg(weft_now() < give_up, "%s: still blocked %d ms later", call->name,
                      (int)WAIT_MS);
        sleep_ms(1);
    }
    if (!call->on_goroutine) join_thread(call->thread);
}

static void assert_call_result(blocked_call *call, int expected) {
    ck_assert_msg(call->result == expected, "%s: returned %d (%s), expected %d (%s)", call->name,
                  call->result, weft_strerror(call->result), expected, weft_strerror(expected));
}

/* The partner that lets the blocked call through, from the test thread. */
static void call_let_through(blocked_call *call) {
    int v = SENT;
    switch (call->kind) {
    case KIND_SEND_CAP0:
    case KIND_SEND_CAP1:
    case KIND_SEND_CAP16:
        ck_assert_int_eq(weft_chan_recv_until(call->chan, &call->partner_got, in_ms(WAIT_MS)), 0);
        break;
    case KIND_RECV_CAP0:
    case KIND_RECV_CAP1:
    case KIND_RECV_CAP16:
    case KIND_SELECT:
        ck_assert_int_eq(weft_chan_send_until(call->chan, &v, in_ms(WAIT_MS)), 0);
        break;
    case KIND_WG_WAIT: weft_wg_done(&call->wg); break;
    case KIND_MUTEX_LOCK: weft_mutex_unlock(&call->mutex); break;
    case KIND_RWMUTEX_RLOCK: weft_rwmutex_unlock(&call->rwmutex); break;
    case KIND_RWMUTEX_LOCK: weft_rwmutex_runlock(&call->rwmutex); break;
    case KIND_SEM_ACQUIRE: weft_sem_release(&call->sem, SEM_REQUEST); break;
    case KIND_COUNT: break;
    }
}

/* After the call returned 0: it did its operation, exactly once; then
 * undo what it holds. */
static void check_call_happened(blocked_call *call) {
    int v = UNTOUCHED;
    switch (call->kind) {
    case KIND_SEND_CAP0: ck_assert_int_eq(call->partner_got, SENT); break;
    case KIND_SEND_CAP1:
    case KIND_SEND_CAP16:
        ck_assert_int_eq(call->partner_got, FILLER_BASE); /* the oldest value */
        drain_ints(call->chan, call->cap - 1, FILLER_BASE + 1);
        drain_ints(call->chan, 1, SENT); /* then the blocked send's */
        break;
    case KIND_RECV_CAP0:
    case KIND_RECV_CAP1:
    case KIND_RECV_CAP16: ck_assert_int_eq(call->value, SENT); break;
    case KIND_SELECT:
        ck_assert_int_eq(call->chosen, 0);
        ck_assert_int_eq(call->cases[0].err, 0);
        ck_assert_int_eq(call->value, SENT);
        drain_ints(call->full, 1, FILLER_BASE); /* the send case did not proceed too */
        ck_assert_int_eq(weft_chan_try_recv(call->full, &v), WEFT_EAGAIN);
        break;
    case KIND_WG_WAIT: ck_assert_int_eq(weft_wg_wait_until(&call->wg, WEFT_NOWAIT), 0); break;
    case KIND_MUTEX_LOCK:
        ck_assert_int_eq(weft_mutex_trylock(&call->mutex), WEFT_EAGAIN); /* the call holds it */
        weft_mutex_unlock(&call->mutex);
        ck_assert_int_eq(weft_mutex_trylock(&call->mutex), 0);
        weft_mutex_unlock(&call->mutex);
        break;
    case KIND_RWMUTEX_RLOCK:
        ck_assert_int_eq(weft_rwmutex_trylock(&call->rwmutex), WEFT_EAGAIN); /* a reader in */
        weft_rwmutex_runlock(&call->rwmutex);
        ck_assert_int_eq(weft_rwmutex_trylock(&call->rwmutex), 0);
        weft_rwmutex_unlock(&call->rwmutex);
        break;
    case KIND_RWMUTEX_LOCK:
        ck_assert_int_eq(weft_rwmutex_tryrlock(&call->rwmutex), WEFT_EAGAIN); /* the writer in */
        weft_rwmutex_unlock(&call->rwmutex);
        ck_assert_int_eq(weft_rwmutex_trylock(&call->rwmutex), 0);
        weft_rwmutex_unlock(&call->rwmutex);
        break;
    case KIND_SEM_ACQUIRE:
        ck_assert_int_eq(weft_sem_try_acquire(&call->sem, 1), WEFT_EAGAIN); /* all held again */
        weft_sem_release(&call->sem, SEM_CAPACITY); /* the call's units and the holder's */
        ck_assert_int_eq(weft_sem_try_acquire(&call->sem, SEM_CAPACITY), 0);
        weft_sem_release(&call->sem, SEM_CAPACITY);
        break;
    case KIND_COUNT: break;
    }
    if (call->chan) ck_assert_int_eq(weft_chan_try_recv(call->chan, &v), WEFT_EAGAIN);
}

static void *wg_wait_main(void *arg) {
    WORKER_EXPECT(weft_wg_wait_until(arg, in_ms(WAIT_MS)) == 0);
    return NULL;
}

/* After the call failed: its operation did not happen, nothing of it is
 * left behind, and a later plain operation works normally. Releases what
 * the test thread held. */
static void check_call_did_not_happen(blocked_call *call) {
    int v = UNTOUCHED;
    switch (call->kind) {
    case KIND_SEND_CAP0:
    case KIND_SEND_CAP1:
    case KIND_SEND_CAP16:
        drain_ints(call->chan, call->cap, FILLER_BASE);
        /* Not delivered later, not even to a receiver that waits for it. */
        ck_assert_msg(weft_chan_recv_until(call->chan, &v, in_ms(20)) == WEFT_ETIMEDOUT,
                      "%s: the failed send's value %d arrived later", call->name, v);
        check_chan_carries(call->chan, call->name);
        break;
    case KIND_RECV_CAP0:
    case KIND_RECV_CAP1:
    case KIND_RECV_CAP16:
        ck_assert_msg(call->value == UNTOUCHED, "%s: failed receive wrote %d", call->name,
                      call->value);
        if (call->cap == 0) {
            /* No receiver was left behind to take a value. */
            ck_assert_int_eq(weft_chan_try_send(call->chan, &v), WEFT_EAGAIN);
        } else {
            /* A value sent now stays for us: no phantom receiver takes it. */
            fill_ints(call->chan, 1, OTHER_VALUE);
            sleep_ms(5);
            drain_ints(call->chan, 1, OTHER_VALUE);
        }
        check_chan_carries(call->chan, call->name);
        break;
    case KIND_SELECT:
        ck_assert_msg(call->value == UNTOUCHED, "%s: failed select received %d", call->name,
                      call->value);
        ck_assert_int_eq(weft_chan_try_send(call->chan, &v), WEFT_EAGAIN); /* no receiver left */
        drain_ints(call->full, 1, FILLER_BASE); /* the send case did not proceed */
        ck_assert_int_eq(weft_chan_try_recv(call->full, &v), WEFT_EAGAIN);
        check_chan_carries(call->chan, call->name);
        break;
    case KIND_WG_WAIT: {
        ck_assert_int_eq(weft_wg_wait_until(&call->wg, WEFT_NOWAIT), WEFT_EAGAIN); /* still 1 */
        pthread_t waiter;
        start_thread(&waiter, wg_wait_main, &call->wg);
        sleep_ms(SETTLE_MS);
        weft_wg_done(&call->wg); /* releases the new waiter; the failed one is gone */
        join_thread(waiter);
        check_worker_failures();
        break;
    }
    case KIND_MUTEX_LOCK:
        ck_assert_int_eq(weft_mutex_trylock(&call->mutex), WEFT_EAGAIN); /* still the holder's */
        ck_assert_msg(!weft__mutex_has_waiters(&call->mutex), "%s: a waiter left queued",
                      call->name);
        weft_mutex_unlock(&call->mutex);
        /* If the failed call had taken the lock, nobody would give it back. */
        ck_assert_int_eq(weft_mutex_lock_until(&call->mutex, in_ms(1000)), 0);
        weft_mutex_unlock(&call->mutex);
        break;
    case KIND_RWMUTEX_RLOCK:
        ck_assert_int_eq(weft_rwmutex_tryrlock(&call->rwmutex), WEFT_EAGAIN); /* writer's */
        ck_assert_msg(!weft__rwmutex_readers_queued(&call->rwmutex), "%s: a reader left queued",
                      call->name);
        weft_rwmutex_unlock(&call->rwmutex);
        /* A read lock the failed call had counted would keep writers out. */
        ck_assert_int_eq(weft_rwmutex_lock_until(&call->rwmutex, in_ms(1000)), 0);
        weft_rwmutex_unlock(&call->rwmutex);
        break;
    case KIND_RWMUTEX_LOCK:
        ck_assert_int_eq(weft_rwmutex_trylock(&call->rwmutex), WEFT_EAGAIN); /* reader's */
        /* The withdrawn writer no longer holds new readers back. */
        ck_assert_int_eq(weft_rwmutex_tryrlock(&call->rwmutex), 0);
        weft_rwmutex_runlock(&call->rwmutex);
        weft_rwmutex_runlock(&call->rwmutex);
        ck_assert_int_eq(weft_rwmutex_lock_until(&call->rwmutex, in_ms(1000)), 0);
        weft_rwmutex_unlock(&call->rwmutex);
        break;
    case KIND_SEM_ACQUIRE:
        ck_assert_int_eq(weft__sem_queued(&call->sem), 0);
        ck_assert_int_eq(weft_sem_try_acquire(&call->sem, 1), WEFT_EAGAIN); /* holder has all */
        weft_sem_release(&call->sem, SEM_CAPACITY);
        /* Every unit is back: the failed call took none. */
        ck_assert_int_eq(weft_sem_try_acquire(&call->sem, SEM_CAPACITY), 0);
        weft_sem_release(&call->sem, SEM_CAPACITY);
        break;
    case KIND_COUNT: break;
    }
}

/* ==== a context that has already ended ================================= */

#define assert_fails_at_once(name, call_expr, expected)                                        \
    do {                                                                                       \
        weft_time started_ = weft_now();                                                       \
        int result_ = (call_expr);                                                             \
        weft_time took_ = weft_now() - started_;                                               \
        ck_assert_msg(result_ == (expected), "%s: returned %d (%s), expected %d (%s)", (name), \
                      result_, weft_strerror(result_), (expected), weft_strerror(expected));   \
        ck_assert_msg(took_ < AT_ONCE, "%s: took %lld ms, not at once", (name),                \
                      (long long)(took_ / 1000000));                                           \
    } while (0)

/* With ctx already ended, call kind in a state where it could proceed at
 * once: it must return expected at once and leave everything as it was. */
static void check_ended_ctx_refuses_ready_call(call_kind kind, weft_ctx *ctx, int expected) {
    const char *name = kind_names[kind];
    size_t cap = kind_cap(kind);
    int v = UNTOUCHED;
    switch (kind) {
    case KIND_SEND_CAP0: {
        weft_chan *c = make_int_chan(0);
        uint64_t baseline = weft__chan_version(c);
        chan_partner receiver;
        start_partner(&receiver, c, WEFT_RECV, UNTOUCHED);
        wait_for_handoff_waiter(c, baseline); /* a receiver waits: the send could proceed */
        v = SENT;
        assert_fails_at_once(name, weft_chan_send_ctx(c, &v, ctx), expected);
        sleep_ms(5);
        ck_assert_msg(!atomic_load(&receiver.done), "%s: the receiver was handed a value", name);
        v = OTHER_VALUE;
        ck_assert_int_eq(weft_chan_send_until(c, &v, in_ms(WAIT_MS)), 0);
        finish_partner(&receiver);
        ck_assert_int_eq(receiver.result, 0);
        ck_assert_int_eq(receiver.value, OTHER_VALUE);
        weft_chan_release(c);
        break;
    }
    case KIND_SEND_CAP1:
    case KIND_SEND_CAP16: {
        weft_chan *c = make_int_chan(cap); /* empty: room for the send */
        v = SENT;
        assert_fails_at_once(name, weft_chan_send_ctx(c, &v, ctx), expected);
        ck_assert_uint_eq(weft_chan_len(c), 0);
        ck_assert_int_eq(weft_chan_try_recv(c, &v), WEFT_EAGAIN);
        weft_chan_release(c);
        break;
    }
    case KIND_RECV_CAP0: {
        weft_chan *c = make_int_chan(0);
        uint64_t baseline = weft__chan_version(c);
        chan_partner sender;
        start_partner(&sender, c, WEFT_SEND, SENT);
        wait_for_handoff_waiter(c, baseline); /* a sender waits: the receive could proceed */
        assert_fails_at_once(name, weft_chan_recv_ctx(c, &v, ctx), expected);
        ck_assert_int_eq(v, UNTOUCHED);
        sleep_ms(5);
        ck_assert_msg(!atomic_load(&sender.done), "%s: the sender's value was taken", name);
        ck_assert_int_eq(weft_chan_recv_until(c, &v, in_ms(WAIT_MS)), 0);
        ck_assert_int_eq(v, SENT);
        finish_partner(&sender);
        ck_assert_int_eq(sender.result, 0);
        weft_chan_release(c);
        break;
    }
    case KIND_RECV_CAP1:
    case KIND_RECV_CAP16: {
        weft_chan *c = make_int_chan(cap);
        fill_ints(c, 1, SENT); /* a value waits */
        assert_fails_at_once(name, weft_chan_recv_ctx(c, &v, ctx), expected);
        ck_assert_int_eq(v, UNTOUCHED);
        ck_assert_uint_eq(weft_chan_len(c), 1);
        drain_ints(c, 1, SENT);
        weft_chan_release(c);
        break;
    }
    case KIND_SELECT: {
        weft_chan *holding = make_int_chan(1), *empty = make_int_chan(1);
        fill_ints(holding, 1, SENT);
        int send_value = OTHER_VALUE;
        weft_case cases[] = {WEFT_RECV_CASE(holding, &v), WEFT_SEND_CASE(empty, &send_value)};
        assert_fails_at_once(name, weft_select_ctx(cases, 2, ctx), expected); /* both ready */
        ck_assert_int_eq(v, UNTOUCHED);
        drain_ints(holding, 1, SENT);
        ck_assert_uint_eq(weft_chan_len(empty), 0);
        weft_chan_release(holding);
        weft_chan_release(empty);
        break;
    }
    case KIND_WG_WAIT: {
        /* A wait can only "proceed" on a zero counter, which the header
         * answers with 0 (see test_wg_wait_ctx_on_zero_counter_returns_0);
         * here the counter is not zero, and the ended ctx must not wait. */
        weft_wg wg = WEFT_WG_INIT;
        weft_wg_add(&wg, 1);
        assert_fails_at_once(name, weft_wg_wait_ctx(&wg, ctx), expected);
        weft_wg_done(&wg);
        ck_assert_int_eq(weft_wg_wait_until(&wg, WEFT_NOWAIT), 0);
        weft_wg_destroy(&wg);
        break;
    }
    case KIND_MUTEX_LOCK: {
        weft_mutex mutex = WEFT_MUTEX_INIT; /* free */
        assert_fails_at_once(name, weft_mutex_lock_ctx(&mutex, ctx), expected);
        ck_assert_int_eq(weft_mutex_trylock(&mutex), 0); /* still free */
        weft_mutex_unlock(&mutex);
        weft_mutex_destroy(&mutex);
        break;
    }
    case KIND_RWMUTEX_RLOCK:
    case KIND_RWMUTEX_LOCK: {
        weft_rwmutex rwmutex = WEFT_RWMUTEX_INIT; /* free */
        assert_fails_at_once(name,
                             kind == KIND_RWMUTEX_RLOCK ? weft_rwmutex_rlock_ctx(&rwmutex, ctx)
                                                        : weft_rwmutex_lock_ctx(&rwmutex, ctx),
                             expected);
        ck_assert_int_eq(weft_rwmutex_trylock(&rwmutex), 0); /* no reader or writer in */
        weft_rwmutex_unlock(&rwmutex);
        weft_rwmutex_destroy(&rwmutex);
        break;
    }
    case KIND_SEM_ACQUIRE: {
        weft_sem sem = WEFT_SEM_INIT(SEM_CAPACITY); /* every unit free */
        assert_fails_at_once(name, weft_sem_acquire(&sem, SEM_REQUEST, ctx), expected);
        ck_assert_int_eq(weft_sem_try_acquire(&sem, SEM_CAPACITY), 0); /* all still there */
        weft_sem_release(&sem, SEM_CAPACITY);
        weft_sem_destroy(&sem);
        break;
    }
    case KIND_COUNT: break;
    }
}

START_TEST(test_canceled_ctx_fails_at_once_even_when_call_could_proceed) {
    weft_ctx *ctx = new_cancel_ctx(NULL);
    weft_ctx_cancel(ctx);
    check_ended_ctx_refuses_ready_call((call_kind)_i, ctx, WEFT_ECANCELED);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_expired_deadline_ctx_fails_at_once_with_etimedout) {
    weft_ctx *ctx = weft_ctx_with_deadline(NULL, weft_now() - 1);
    ck_assert_ptr_nonnull(ctx);
    check_ended_ctx_refuses_ready_call((call_kind)_i, ctx, WEFT_ETIMEDOUT);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_ctx_of_canceled_parent_fails_at_once) {
    weft_ctx *parent = new_cancel_ctx(NULL);
    weft_ctx *child = new_cancel_ctx(parent);
    weft_ctx_cancel(parent);
    check_ended_ctx_refuses_ready_call((call_kind)_i, child, WEFT_ECANCELED);
    weft_ctx_release(child);
    weft_ctx_release(parent);
}
END_TEST

/* sync.h: "Returns 0 once the counter is zero, else ctx's error": a zero
 * counter is not a wait, whatever the context. */
START_TEST(test_wg_wait_ctx_on_zero_counter_returns_0) {
    weft_wg wg = WEFT_WG_INIT;
    weft_ctx *ctx = new_cancel_ctx(NULL);
    weft_ctx_cancel(ctx);
    ck_assert_int_eq(weft_wg_wait_ctx(&wg, ctx), 0);
    ck_assert_int_eq(weft_wg_wait_ctx(&wg, NULL), 0);
    weft_ctx_release(ctx);
    weft_wg_destroy(&wg);
}
END_TEST

/* ==== a context that ends while the call is blocked ===================== */

/* Blocked on a pthread, cancelled by another pthread. */
START_TEST(test_cancel_while_blocked_wakes_call_with_ecanceled) {
    blocked_call call;
    call_setup(&call, (call_kind)_i);
    weft_ctx *ctx = new_cancel_ctx(NULL);
    call_start(&call, ctx, false);
    call_wait_blocked(&call);
    pthread_t canceller;
    start_thread(&canceller, cancel_thread_main, ctx);
    call_wait_returned(&call);
    join_thread(canceller);
    assert_call_result(&call, WEFT_ECANCELED);
    ck_assert_int_eq(weft_ctx_err(ctx), WEFT_ECANCELED);
    check_call_did_not_happen(&call);
    call_teardown(&call);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_deadline_while_blocked_gives_etimedout_never_early) {
    blocked_call call;
    call_setup(&call, (call_kind)_i);
    weft_ctx *ctx = weft_ctx_with_timeout(NULL, WEFT_MS(20));
    ck_assert_ptr_nonnull(ctx);
    weft_time deadline = weft_ctx_deadline(ctx);
    ck_assert(deadline != WEFT_FOREVER);
    call_start(&call, ctx, false);
    call_wait_returned(&call);
    assert_call_result(&call, WEFT_ETIMEDOUT);
    ck_assert_msg(call.returned_at >= deadline, "%s: returned %lld us before the deadline",
                  call.name, (long long)((deadline - call.returned_at) / 1000));
    ck_assert_msg(call.returned_at - deadline < WEFT_SEC(5), "%s: returned %lld ms late", call.name,
                  (long long)((call.returned_at - deadline) / 1000000));
    check_call_did_not_happen(&call);
    call_teardown(&call);
    weft_ctx_release(ctx);
}
END_TEST

/* Blocked on a goroutine; the test thread cancels the parent. */
START_TEST(test_parent_cancel_wakes_call_blocked_on_child) {
    blocked_call call;
    call_setup(&call, (call_kind)_i);
    weft_ctx *parent = new_cancel_ctx(NULL);
    weft_ctx *child = new_cancel_ctx(parent);
    call_start(&call, child, true);
    call_wait_blocked(&call);
    weft_ctx_cancel(parent);
    call_wait_returned(&call);
    assert_call_result(&call, WEFT_ECANCELED);
    ck_assert_int_eq(weft_ctx_err(child), WEFT_ECANCELED);
    check_call_did_not_happen(&call);
    call_teardown(&call);
    weft_ctx_release(child);
    weft_ctx_release(parent);
    ck_assert(goroutines_become(0));
}
END_TEST

/* The partner completes the call, then the context is cancelled at once:
 * the call reports what happened, 0. */
START_TEST(test_partner_before_cancel_wins) {
    blocked_call call;
    call_setup(&call, (call_kind)_i);
    weft_ctx *ctx = new_cancel_ctx(NULL);
    call_start(&call, ctx, false);
    call_wait_blocked(&call);
    call_let_through(&call);
    weft_ctx_cancel(ctx);
    call_wait_returned(&call);
    assert_call_result(&call, 0);
    check_call_happened(&call);
    call_teardown(&call);
    weft_ctx_release(ctx);
}
END_TEST

/* NULL and the background context never end: the call blocks until its
 * partner comes, as the plain call does. */
START_TEST(test_never_ending_ctx_blocks_like_the_plain_call) {
    weft_ctx *never[] = {NULL, weft_ctx_background()};
    for (size_t k = 0; k < sizeof never / sizeof never[0]; k++) {
        blocked_call call;
        call_setup(&call, (call_kind)_i);
        call_start(&call, never[k], false);
        call_wait_blocked(&call);
        sleep_ms(SETTLE_MS);
        ck_assert_msg(!atomic_load(&call.done), "%s with %s ctx: returned %d without a partner",
                      call.name, never[k] ? "background" : "NULL", call.result);
        call_let_through(&call);
        call_wait_returned(&call);
        assert_call_result(&call, 0);
        check_call_happened(&call);
        call_teardown(&call);
    }
}
END_TEST

/* ==== typed channels ===================================================== */

WEFT_CHAN_DEFINE(int_chan, int)

START_TEST(test_typed_ctx_forms_refuse_ended_ctx) {
    int_chan c = int_chan_make(1);
    ck_assert_ptr_nonnull(c.ch);
    weft_ctx *ended = new_cancel_ctx(NULL);
    weft_ctx_cancel(ended);
    ck_assert_int_eq(int_chan_send_ctx(c, 5, ended), WEFT_ECANCELED);
    ck_assert_uint_eq(int_chan_len(c), 0);
    ck_assert_int_eq(int_chan_send_ctx(c, 5, NULL), 0);
    int v = UNTOUCHED;
    ck_assert_int_eq(int_chan_recv_ctx(c, &v, ended), WEFT_ECANCELED);
    ck_assert_int_eq(v, UNTOUCHED);
    ck_assert_uint_eq(int_chan_len(c), 1);
    ck_assert_int_eq(int_chan_recv_ctx(c, &v, weft_ctx_background()), 0);
    ck_assert_int_eq(v, 5);
    weft_ctx_release(ended);
    int_chan_release(c);
}
END_TEST

typedef struct {
    int_chan chan;
    weft_ctx *ctx;
    int value;
    int result;
} typed_receiver;

static void *typed_receiver_main(void *arg) {
    typed_receiver *receiver = arg;
    receiver->result = int_chan_recv_ctx(receiver->chan, &receiver->value, receiver->ctx);
    return NULL;
}

/* Cancelled by a weft_go goroutine. */
START_TEST(test_typed_recv_ctx_woken_by_cancel) {
    typed_receiver receiver = {int_chan_make(0), new_cancel_ctx(NULL), UNTOUCHED, 12345};
    ck_assert_ptr_nonnull(receiver.chan.ch);
    uint64_t baseline = weft__chan_version(receiver.chan.ch);
    pthread_t thread;
    start_thread(&thread, typed_receiver_main, &receiver);
    wait_for_handoff_waiter(receiver.chan.ch, baseline);
    weft_ctx_retain(receiver.ctx);
    ck_assert_int_eq(weft_go(cancel_and_release_goroutine, receiver.ctx), 0);
    join_thread(thread);
    ck_assert(goroutines_become(0));
    ck_assert_int_eq(receiver.result, WEFT_ECANCELED);
    ck_assert_int_eq(receiver.value, UNTOUCHED);
    ck_assert_int_eq(int_chan_try_send(receiver.chan, 1), WEFT_EAGAIN); /* no receiver left */
    weft_ctx_release(receiver.ctx);
    int_chan_release(receiver.chan);
}
END_TEST

/* ==== one cancel wakes many ============================================== */

START_TEST(test_one_cancel_wakes_many_goroutines_blocked_on_different_objects) {
    enum { GOROUTINES = 50 };
    ck_assert(goroutines_become(0));
    blocked_call *calls = calloc(GOROUTINES, sizeof *calls);
    ck_assert_ptr_nonnull(calls);
    weft_ctx *ctx = new_cancel_ctx(NULL);
    for (int g = 0; g < GOROUTINES; g++) {
        call_setup(&calls[g], (call_kind)(g % KIND_COUNT));
        call_start(&calls[g], ctx, true);
    }
    bool settle = false;
    for (int g = 0; g < GOROUTINES; g++) settle |= !call_wait_queued(&calls[g]);
    if (settle) sleep_ms(SETTLE_MS);
    for (int g = 0; g < GOROUTINES; g++) assert_still_blocked(&calls[g]);
    ck_assert_int_eq(weft_goroutines(), GOROUTINES);
    weft_ctx_cancel(ctx);
    for (int g = 0; g < GOROUTINES; g++) {
        call_wait_returned(&calls[g]);
        assert_call_result(&calls[g], WEFT_ECANCELED);
    }
    ck_assert(goroutines_become(0));
    for (int g = 0; g < GOROUTINES; g++) {
        check_call_did_not_happen(&calls[g]);
        call_teardown(&calls[g]);
    }
    weft_ctx_release(ctx);
    free(calls);
}
END_TEST

/* ==== races: exactly once under cancellation ============================= */

/* Each round of a race is planned by the test thread before the parties
 * meet at the start barrier: absolute times, from an epoch a little after
 * the barrier so that every party is awake by then, at which the _ctx call
 * starts, the context is cancelled, and the partner acts (within 150 us of
 * the cancel, before or after, so that the two collide often; a stretch
 * factor scales the last two). A race runs at least `rounds` rounds and
 * goes on, up to 4 times as many, until both outcomes (the call succeeded,
 * the call was cancelled) have been seen: otherwise it did not race. */
typedef struct {
    uint32_t rounds, max_rounds;
    pthread_barrier_t start, finish;
    bool running;         /* this round runs (false: the parties return) */
    weft_ctx *ctx;        /* this round's context */
    weft_time call_at;    /* when the _ctx call starts */
    weft_time cancel_at;  /* when the context is cancelled */
    weft_time partner_at; /* when the partner acts */
    int *results;         /* per round: the _ctx call's result */
    uint64_t seed;        /* the test thread's generator */
    int stretch;          /* the cancel and partner times are stretched by this factor */
    long succeeded, cancelled;
} race_schedule;

static void race_init(race_schedule *race, long rounds, int stretch, uint64_t seed) {
    race->rounds = (uint32_t)scaled(rounds);
    race->max_rounds = 4 * race->rounds;
    race->results = calloc(race->max_rounds, sizeof *race->results);
    ck_assert_ptr_nonnull(race->results);
    race->seed = seed;
    race->stretch = stretch;
    race->succeeded = race->cancelled = 0;
    ck_assert_int_eq(pthread_barrier_init(&race->start, NULL, 3), 0);
    ck_assert_int_eq(pthread_barrier_init(&race->finish, NULL, 3), 0);
}

/* Test thread: whether round `round` is to run; if so, plan it (a new
 * context, the times). Then set the objects up and call race_go. */
static bool race_plan(race_schedule *race, uint32_t round) {
    race->running = round < race->rounds ||
                    (round < race->max_rounds && (race->succeeded == 0 || race->cancelled == 0));
    if (race->running) {
        race->ctx = new_cancel_ctx(NULL);
        weft_time epoch = weft_now() + WEFT_US(200);
        race->call_at = epoch + random_duration(&race->seed, WEFT_US(50));
        weft_time cancel = random_duration(&race->seed, WEFT_US(400));
        weft_time partner = cancel + random_duration(&race->seed, WEFT_US(300)) - WEFT_US(150);
        race->cancel_at = epoch + cancel * race->stretch;
        race->partner_at = epoch + partner * race->stretch;
    }
    return race->running;
}

/* Test thread: let the parties go (or return, if the round does not run). */
static void race_go(race_schedule *race) { pthread_barrier_wait(&race->start); }

/* Test thread, after the finish barrier: count the round's outcome. */
static void race_end(race_schedule *race, uint32_t round) {
    if (race->results[round] == 0)
        race->succeeded++;
    else
        race->cancelled++;
    weft_ctx_release(race->ctx);
}

/* The other parties: wait for the next round; false when there is none. */
static bool race_next(race_schedule *race) {
    pthread_barrier_wait(&race->start);
    return race->running;
}

/* After the parties returned: every result was 0 or WEFT_ECANCELED, and
 * both happened (where timing allows). Returns the number of rounds run. */
static uint32_t race_finish(race_schedule *race) {
    uint32_t rounds = (uint32_t)(race->succeeded + race->cancelled);
    for (uint32_t i = 0; i < rounds; i++)
        ck_assert_msg(race->results[i] == 0 || race->results[i] == WEFT_ECANCELED,
                      "round %u: the _ctx call gave %d", i, race->results[i]);
    /* Under valgrind (WEFT_TEST_SCALE > 1) threads run one at a time and
     * the timing that makes both outcomes happen is gone; the
     * exactly-once checks still hold there. */
    if (test_scale() == 1)
        ck_assert_msg(race->succeeded > 0 && race->cancelled > 0,
                      "not raced in %u rounds: succeeded %ld, cancelled %ld", rounds,
                      race->succeeded, race->cancelled);
    pthread_barrier_destroy(&race->start);
    pthread_barrier_destroy(&race->finish);
    return rounds;
}

#define FILLER UINT32_MAX        /* a buffer's filler in the channel races, never counted */
#define NOTHING (UINT32_MAX - 1) /* a receive destination's value before the receive */

/* Channel races: the ctx side makes one _ctx call per round (send or
 * receive, plain or in a select), the partner the opposite plain call with
 * a short deadline, and the test thread cancels. Values are round numbers;
 * the test thread drains the channel after each round. */
typedef struct {
    race_schedule schedule;
    weft_chan *chan;
    size_t cap;
    int dir;                     /* the ctx side's direction: WEFT_SEND or WEFT_RECV */
    bool use_select;             /* the ctx side uses weft_select_ctx */
    int *partner_results;        /* per round: the partner's send result (dir WEFT_RECV) */
    _Atomic unsigned char *seen; /* per value (= round): times received */
} chan_race;

/* A value v received in round i: count it; it must be round i's. */
static void race_count(chan_race *race, uint32_t v, uint32_t i) {
    if (v == FILLER) return;
    WORKER_EXPECT(v == i);
    if (v < race->schedule.max_rounds) atomic_fetch_add(&race->seen[v], 1);
}

static void *race_ctx_side_main(void *arg) {
    chan_race *race = arg;
    for (uint32_t i = 0; race_next(&race->schedule); i++) {
        spin_until(race->schedule.call_at);
        uint32_t value = race->dir == WEFT_SEND ? i : NOTHING;
        weft_ctx *ctx = race->schedule.ctx;
        int result;
        if (race->use_select) {
            weft_case cases[] = {{race->chan, race->dir, &value, 0}, WEFT_RECV_CASE(NULL, NULL)};
            result = weft_select_ctx(cases, 2, ctx);
            if (result >= 0) {
                WORKER_EXPECT(result == 0 && cases[0].err == 0);
                result = 0;
            }
        } else {
            result = race->dir == WEFT_SEND ? weft_chan_send_ctx(race->chan, &value, ctx)
                                            : weft_chan_recv_ctx(race->chan, &value, ctx);
        }
        race->schedule.results[i] = result;
        if (race->dir == WEFT_RECV) {
            if (result == 0)
                race_count(race, value, i);
            else
                WORKER_EXPECT(value == NOTHING); /* a failed receive wrote nothing */
        }
        pthread_barrier_wait(&race->schedule.finish);
    }
    return NULL;
}

static void *race_partner_main(void *arg) {
    chan_race *race = arg;
    for (uint32_t i = 0; race_next(&race->schedule); i++) {
        spin_until(race->schedule.partner_at);
        if (race->dir == WEFT_SEND) {
            /* Receive until the channel stays empty for a moment. */
            uint32_t v;
            while (weft_chan_recv_until(race->chan, &v, weft_deadline(WEFT_US(200))) == 0)
                race_count(race, v, i);
        } else {
            race->partner_results[i] =
                weft_chan_send_until(race->chan, &i, weft_deadline(WEFT_US(200)));
        }
        pthread_barrier_wait(&race->schedule.finish);
    }
    return NULL;
}

static void run_chan_race(size_t cap, int dir, bool use_select) {
    chan_race race = {.cap = cap, .dir = dir, .use_select = use_select};
    race_init(&race.schedule, 500, 1, 0x5eed0001u + cap + 2u * (unsigned)dir + 8u * use_select);
    uint32_t max_rounds = race.schedule.max_rounds;
    race.chan = weft_chan_make(sizeof(uint32_t), cap);
    ck_assert_ptr_nonnull(race.chan);
    race.partner_results = calloc(max_rounds, sizeof *race.partner_results);
    race.seen = calloc(max_rounds, sizeof *race.seen);
    ck_assert(race.partner_results && race.seen);
    pthread_t ctx_side, partner;
    start_thread(&ctx_side, race_ctx_side_main, &race);
    start_thread(&partner, race_partner_main, &race);

    for (uint32_t i = 0;; i++) {
        bool running = race_plan(&race.schedule, i);
        /* A send blocks only on a full buffer. */
        uint32_t filler = FILLER;
        if (running && dir == WEFT_SEND && cap > 0)
            ck_assert_int_eq(weft_chan_try_send(race.chan, &filler), 0);
        race_go(&race.schedule);
        if (!running) break;
        spin_until(race.schedule.cancel_at);
        weft_ctx_cancel(race.schedule.ctx);
        pthread_barrier_wait(&race.schedule.finish);
        uint32_t v;
        while (weft_chan_try_recv(race.chan, &v) == 0) race_count(&race, v, i);
        race_end(&race.schedule, i);
    }
    join_thread(ctx_side);
    join_thread(partner);
    check_worker_failures();
    uint32_t rounds = race_finish(&race.schedule);

    for (uint32_t i = 0; i < rounds; i++) {
        int result = race.schedule.results[i];
        int seen = atomic_load(&race.seen[i]);
        if (dir == WEFT_SEND) {
            ck_assert_msg(seen == (result == 0),
                          "round %u: send_ctx gave %d but its value was received %d times", i,
                          result, seen);
        } else {
            int sent = race.partner_results[i];
            /* EAGAIN: the 200 us deadline had passed before the call (a
             * slow run, valgrind): a send that did not happen either. */
            ck_assert_msg(sent == 0 || sent == WEFT_ETIMEDOUT || sent == WEFT_EAGAIN,
                          "round %u: send_until gave %d", i, sent);
            ck_assert_msg(seen == (sent == 0),
                          "round %u: send gave %d, recv_ctx %d, the value was received %d times", i,
                          sent, result, seen);
        }
    }
    sleep_ms(10);
    uint32_t v;
    ck_assert_int_eq(weft_chan_try_recv(race.chan, &v), WEFT_EAGAIN); /* nothing arrives later */

    free(race.schedule.results);
    free(race.partner_results);
    free(race.seen);
    weft_chan_release(race.chan);
}

static const size_t race_caps[] = {0, 1};

START_TEST(test_send_ctx_racing_cancel_delivers_exactly_the_sends_that_succeeded) {
    run_chan_race(race_caps[_i], WEFT_SEND, false);
}
END_TEST

START_TEST(test_recv_ctx_racing_cancel_takes_only_what_it_reports) {
    run_chan_race(race_caps[_i], WEFT_RECV, false);
}
END_TEST

START_TEST(test_select_ctx_send_racing_cancel_delivers_exactly_the_sends_that_succeeded) {
    run_chan_race(race_caps[_i], WEFT_SEND, true);
}
END_TEST

START_TEST(test_select_ctx_recv_racing_cancel_takes_only_what_it_reports) {
    run_chan_race(race_caps[_i], WEFT_RECV, true);
}
END_TEST

/* Sync races: the test thread holds the object and lets go of it at the
 * partner's time, a canceller thread cancels, and a third thread makes the
 * _ctx call. The mutex race stretches its schedule to 2 ms, so that a
 * waiter sometimes waits past the mutex's 1 ms starvation threshold and is
 * handed the lock directly by the unlock, racing the cancel. */
typedef struct {
    race_schedule schedule;
    weft_mutex mutex;
    weft_sem sem;
    atomic_int held_by_main; /* mutex race: the test thread is inside */
} sync_race;

static void *race_canceller_main(void *arg) {
    sync_race *race = arg;
    while (race_next(&race->schedule)) {
        spin_until(race->schedule.cancel_at);
        weft_ctx_cancel(race->schedule.ctx);
        pthread_barrier_wait(&race->schedule.finish);
    }
    return NULL;
}

static void *race_locker_main(void *arg) {
    sync_race *race = arg;
    for (uint32_t i = 0; race_next(&race->schedule); i++) {
        spin_until(race->schedule.call_at);
        int result = weft_mutex_lock_ctx(&race->mutex, race->schedule.ctx);
        race->schedule.results[i] = result;
        if (result == 0) {
            WORKER_EXPECT(!atomic_load(&race->held_by_main)); /* we own it alone */
            weft_mutex_unlock(&race->mutex);
        }
        pthread_barrier_wait(&race->schedule.finish);
    }
    return NULL;
}

static void *race_acquirer_main(void *arg) {
    sync_race *race = arg;
    for (uint32_t i = 0; race_next(&race->schedule); i++) {
        spin_until(race->schedule.call_at);
        int result = weft_sem_acquire(&race->sem, SEM_REQUEST, race->schedule.ctx);
        race->schedule.results[i] = result;
        /* Releasing units we were not granted would abort. */
        if (result == 0) weft_sem_release(&race->sem, SEM_REQUEST);
        pthread_barrier_wait(&race->schedule.finish);
    }
    return NULL;
}

START_TEST(test_mutex_lock_ctx_racing_unlock_owns_the_mutex_iff_it_reports_0) {
    sync_race race = {0};
    weft_mutex_init(&race.mutex);
    race_init(&race.schedule, 300, 5, 0x5eed0007u);
    pthread_t canceller, locker;
    start_thread(&canceller, race_canceller_main, &race);
    start_thread(&locker, race_locker_main, &race);
    for (uint32_t i = 0;; i++) {
        bool running = race_plan(&race.schedule, i);
        if (running) {
            weft_mutex_lock(&race.mutex);
            atomic_store(&race.held_by_main, 1);
        }
        race_go(&race.schedule);
        if (!running) break;
        spin_until(race.schedule.partner_at);
        atomic_store(&race.held_by_main, 0);
        weft_mutex_unlock(&race.mutex);
        pthread_barrier_wait(&race.schedule.finish);
        /* A lock_ctx that reported 0 unlocked; one that failed owns nothing,
         * so the mutex is free for us (a leaked ownership times out). */
        ck_assert_msg(weft_mutex_lock_until(&race.mutex, in_ms(1000)) == 0,
                      "round %u: mutex left locked after lock_ctx gave %d", i,
                      race.schedule.results[i]);
        weft_mutex_unlock(&race.mutex);
        race_end(&race.schedule, i);
    }
    join_thread(canceller);
    join_thread(locker);
    check_worker_failures();
    race_finish(&race.schedule);
    ck_assert(!weft__mutex_has_waiters(&race.mutex));
    free(race.schedule.results);
    weft_mutex_destroy(&race.mutex);
}
END_TEST

START_TEST(test_sem_acquire_racing_release_conserves_units) {
    sync_race race = {0};
    ck_assert_int_eq(weft_sem_init(&race.sem, SEM_CAPACITY), 0);
    race_init(&race.schedule, 500, 1, 0x5eed0008u);
    pthread_t canceller, acquirer;
    start_thread(&canceller, race_canceller_main, &race);
    start_thread(&acquirer, race_acquirer_main, &race);
    for (uint32_t i = 0;; i++) {
        bool running = race_plan(&race.schedule, i);
        if (running) ck_assert_int_eq(weft_sem_try_acquire(&race.sem, SEM_CAPACITY), 0); /* all */
        race_go(&race.schedule);
        if (!running) break;
        spin_until(race.schedule.partner_at);
        weft_sem_release(&race.sem, SEM_REQUEST); /* room for the request */
        pthread_barrier_wait(&race.schedule.finish);
        weft_sem_release(&race.sem, SEM_CAPACITY - SEM_REQUEST);
        /* Every unit is back (the acquirer returned what it was granted)
         * and nobody is queued. */
        ck_assert_msg(weft__sem_queued(&race.sem) == 0, "round %u: a request left queued", i);
        ck_assert_msg(weft_sem_try_acquire(&race.sem, SEM_CAPACITY) == 0,
                      "round %u: units missing after sem_acquire gave %d", i,
                      race.schedule.results[i]);
        weft_sem_release(&race.sem, SEM_CAPACITY);
        race_end(&race.schedule, i);
    }
    join_thread(canceller);
    join_thread(acquirer);
    check_worker_failures();
    race_finish(&race.schedule);
    free(race.schedule.results);
    weft_sem_destroy(&race.sem);
}
END_TEST

/* ---- suite ------------------------------------------------------------- */

static Suite *cancel_suite(void) {
    Suite *suite = suite_create("cancel");

    TCase *tc = new_case(suite, "ended");
    tcase_add_loop_test(tc, test_canceled_ctx_fails_at_once_even_when_call_could_proceed, 0,
                        KIND_COUNT);
    tcase_add_loop_test(tc, test_expired_deadline_ctx_fails_at_once_with_etimedout, 0, KIND_COUNT);
    tcase_add_loop_test(tc, test_ctx_of_canceled_parent_fails_at_once, 0, KIND_COUNT);
    tcase_add_test(tc, test_wg_wait_ctx_on_zero_counter_returns_0);

    tc = new_case(suite, "blocked");
    tcase_add_loop_test(tc, test_cancel_while_blocked_wakes_call_with_ecanceled, 0, KIND_COUNT);
    tcase_add_loop_test(tc, test_deadline_while_blocked_gives_etimedout_never_early, 0, KIND_COUNT);
    tcase_add_loop_test(tc, test_parent_cancel_wakes_call_blocked_on_child, 0, KIND_COUNT);
    tcase_add_loop_test(tc, test_partner_before_cancel_wins, 0, KIND_COUNT);
    tcase_add_loop_test(tc, test_never_ending_ctx_blocks_like_the_plain_call, 0, KIND_COUNT);

    tc = new_case(suite, "typed");
    tcase_add_test(tc, test_typed_ctx_forms_refuse_ended_ctx);
    tcase_add_test(tc, test_typed_recv_ctx_woken_by_cancel);

    tc = new_case(suite, "many");
    tcase_add_test(tc, test_one_cancel_wakes_many_goroutines_blocked_on_different_objects);

    tc = new_case(suite, "race");
    tcase_add_loop_test(tc, test_send_ctx_racing_cancel_delivers_exactly_the_sends_that_succeeded,
                        0, 2);
    tcase_add_loop_test(tc, test_recv_ctx_racing_cancel_takes_only_what_it_reports, 0, 2);
    tcase_add_loop_test(
        tc, test_select_ctx_send_racing_cancel_delivers_exactly_the_sends_that_succeeded, 0, 2);
    tcase_add_loop_test(tc, test_select_ctx_recv_racing_cancel_takes_only_what_it_reports, 0, 2);
    tcase_add_test(tc, test_mutex_lock_ctx_racing_unlock_owns_the_mutex_iff_it_reports_0);
    tcase_add_test(tc, test_sem_acquire_racing_release_conserves_units);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(cancel_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
