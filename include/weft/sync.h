/* weft/sync.h — WaitGroup, Mutex, RWMutex, Once, Cond and a weighted
 * semaphore, as Go's sync package and golang.org/x/sync/semaphore.
 *
 * Every primitive is a plain struct that may live in static storage, on
 * the stack or inside another object: initialize it with its _INIT
 * constant or its _init function. The fields are public only so that the
 * compiler knows the size; they are private to weft.
 *
 * Cost: a lock, unlock or wait that need not block is one or two atomic
 * operations and never a system call (the semaphore takes a short internal
 * lock). A call that must block spins briefly, then parks the calling
 * thread on its parker (a condition variable); nothing here allocates on a
 * lock, unlock or wait path except the calling thread's parker, once, on
 * its first blocking call in weft. Should that allocation fail, blocking
 * calls still work by yielding the CPU in a loop.
 *
 * Deadlines follow weft/time.h: the _until forms take an absolute
 * weft_time; a deadline at or before now tries once and returns
 * WEFT_EAGAIN instead of blocking; a deadline that passes while blocked
 * returns WEFT_ETIMEDOUT, never early (afterwards weft_now() >= deadline).
 *
 * Misuse that Go turns into a panic (a negative WaitGroup counter, an
 * unlock of an unlocked mutex, releasing more of a semaphore than is held)
 * prints one line "weft: <what>" to stderr and aborts.
 *
 * Every function is safe from any thread, pooled goroutine or not. */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#ifndef __cplusplus
#include <stdatomic.h>
#endif

#include "weft/error.h"
#include "weft/go.h" /* weft_fn */
#include "weft/time.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The _ctx forms take a context of weft/ctx.h; ctx.h declares the same
 * typedef under the same guard. */
#ifndef WEFT_CTX_TYPEDEF
#define WEFT_CTX_TYPEDEF
typedef struct weft_ctx weft_ctx;
#endif

/* The queue of blocked callers of one primitive: the layout of lib/waiter.h's
 * weft__waitq, which this public header cannot include. Private. */
typedef struct weft__sync_queue {
    struct weft__waiter *first, *last;
} weft__sync_queue;

#define WEFT__SYNC_QUEUE_INIT \
    { NULL, NULL }

/* A private atomic field. C++ before C++23 cannot spell _Atomic(T), so C++
 * sees a plain T of the same size and alignment in its place: the layout
 * both languages agree on, which is all a C++ program needs, since only
 * the C library touches these fields. lib/sync_internal.h asserts that
 * _Atomic(T) has T's size and an alignment of sizeof(T) for every T used
 * here, and test/install/hello.cpp compares each struct's size, alignment
 * and field offsets as C++ sees them with what the C compiler sees. */
#ifdef __cplusplus
#define WEFT__ATOMIC_FIELD(T) alignas(sizeof(T)) T
#else
#define WEFT__ATOMIC_FIELD(T) _Atomic(T)
#endif

/* ---- WaitGroup --------------------------------------------------------- */

/* Waits for a collection of tasks to finish: add(n) before starting n
 * tasks, done() as each finishes, wait() until the counter is zero.
 * Reusable once every wait of the previous round has returned. Free it, or
 * let it go out of scope, once a weft_wg_wait returned and no other thread
 * uses it; no destroy is needed. */
typedef struct weft_wg {
    WEFT__ATOMIC_FIELD(int64_t) state; /* private: counter, wakers, queued bit (lib/waitgroup.c) */
    pthread_mutex_t lock;              /* private: guards queue and the queued bit */
    weft__sync_queue queue;            /* private: blocked waiters */
} weft_wg;

#define WEFT_WG_INIT \
    { 0, PTHREAD_MUTEX_INITIALIZER, WEFT__SYNC_QUEUE_INIT }

/* Initialize wg with a zero counter (as WEFT_WG_INIT). */
void weft_wg_init(weft_wg *wg);

/* Release wg's internal pthread mutex. No thread may be waiting on it or use
 * it later. Optional: a wait that returned has already waited out the
 * weft_wg_done that released it; call it where pthread mutexes hold
 * resources (a wg made by weft_wg_init on such a platform). */
void weft_wg_destroy(weft_wg *wg);

/* Add delta (which may be negative) to the counter; when it reaches zero,
 * every waiter is released. A counter going below zero aborts with
 * "weft: negative WaitGroup counter" (above 2^40 - 1: "weft: WaitGroup counter
 * overflow"). Never blocks. */
void weft_wg_add(weft_wg *wg, int64_t delta);

/* weft_wg_add(wg, -1). */
void weft_wg_done(weft_wg *wg);

/* Block until the counter is zero. Returns at once if it is zero now. */
void weft_wg_wait(weft_wg *wg);

/* As weft_wg_wait, but give up at deadline. Returns 0 once the counter is
 * zero, WEFT_EAGAIN when it is not and deadline is at or before now,
 * WEFT_ETIMEDOUT when deadline passed while waiting. */
int weft_wg_wait_until(weft_wg *wg, weft_time deadline);

/* As weft_wg_wait, but give up when ctx ends (NULL: never). Returns 0 once
 * the counter is zero (at once if it is zero now, whatever ctx), else
 * ctx's error (WEFT_ECANCELED, WEFT_ETIMEDOUT), at once if ctx has
 * already ended. */
int weft_wg_wait_ctx(weft_wg *wg, weft_ctx *ctx);

/* Go 1.25's wg.Go: add(1), then run fn(arg) on a goroutine (weft_go) that
 * calls done when fn returns. Returns 0; WEFT_EINVAL when fn is NULL;
 * WEFT_ENOMEM when the task record (one small allocation per call, freed
 * when fn starts) cannot be allocated; or weft_go's error (WEFT_EAGAIN,
 * WEFT_ENOMEM). On an error fn never runs and the counter is as before.
 * Never waits for fn; may wait for a thread to start, as weft_go does. */
int weft_wg_go(weft_wg *wg, weft_fn fn, void *arg);

/* ---- Mutex ------------------------------------------------------------- */

/* A mutual exclusion lock, not recursive. Uncontended lock and unlock are
 * one atomic operation each. Mostly FIFO: a caller may take a free lock
 * ahead of parked waiters, but a waiter that has waited 1 ms is handed the
 * lock directly by the next unlock, so no waiter starves. Like Go's, it
 * may be unlocked by a thread other than the one that locked it. Destroy
 * and free it once you hold it (or saw it free) and no one else will lock
 * it; weft_mutex_destroy waits for an unlock still finishing. */
typedef struct weft_mutex {
    WEFT__ATOMIC_FIELD(uint32_t) state; /* private: LOCKED and QUEUED bits (lib/mutex.c) */
    pthread_mutex_t lock;               /* private: guards queue and the QUEUED bit */
    weft__sync_queue queue;             /* private: blocked lockers */
} weft_mutex;

#define WEFT_MUTEX_INIT \
    { 0, PTHREAD_MUTEX_INITIALIZER, WEFT__SYNC_QUEUE_INIT }

/* Initialize m unlocked (as WEFT_MUTEX_INIT). */
void weft_mutex_init(weft_mutex *m);

/* Release m's resources. m must be unlocked, with no thread waiting.
 * Call it before freeing a mutex that is not static: it waits for an
 * unlock that has already freed m to finish with it. */
void weft_mutex_destroy(weft_mutex *m);

/* Lock m, blocking while another holder has it. */
void weft_mutex_lock(weft_mutex *m);

/* Lock m if it is free now. Returns 0, or WEFT_EAGAIN. Never blocks. */
int weft_mutex_trylock(weft_mutex *m);

/* Lock m, blocking at most until deadline. Returns 0 when locked,
 * WEFT_EAGAIN when m is held and deadline is at or before now,
 * WEFT_ETIMEDOUT when deadline passed while waiting. */
int weft_mutex_lock_until(weft_mutex *m, weft_time deadline);

/* Lock m, giving up when ctx ends (NULL: never). Returns 0 when locked,
 * else ctx's error (WEFT_ECANCELED, WEFT_ETIMEDOUT) and m is not locked by
 * this call; a ctx that has already ended fails at once. */
int weft_mutex_lock_ctx(weft_mutex *m, weft_ctx *ctx);

/* Unlock m, waking a waiter if there is one. Never blocks. Unlocking an
 * unlocked mutex aborts with "weft: unlock of unlocked mutex". */
void weft_mutex_unlock(weft_mutex *m);

/* ---- RWMutex ----------------------------------------------------------- */

/* A reader/writer lock: any number of readers or one writer. Writer
 * preferring, as Go's RWMutex: once a writer waits, new readers wait too
 * (so a recursive read lock can deadlock, as in Go). A writer's unlock
 * admits every reader that queued during its hold before the next writer;
 * writers are served in FIFO order. Uncontended rlock/runlock and
 * lock/unlock are one atomic operation each (rlock retries its
 * compare-and-swap while other readers race). As a mutex: destroy and free
 * it once you hold it and no one else will lock it; destroy waits for an
 * unlock still finishing. */
typedef struct weft_rwmutex {
    WEFT__ATOMIC_FIELD(uint32_t) state; /* private: reader count and queue bits (lib/rwmutex.c) */
    pthread_mutex_t lock;               /* private: guards both queues and the *_QUEUED bits */
    weft__sync_queue readers;           /* private: blocked readers */
    weft__sync_queue writers;           /* private: blocked writers */
} weft_rwmutex;

#define WEFT_RWMUTEX_INIT \
    { 0, PTHREAD_MUTEX_INITIALIZER, WEFT__SYNC_QUEUE_INIT, WEFT__SYNC_QUEUE_INIT }

/* Initialize m unlocked (as WEFT_RWMUTEX_INIT). */
void weft_rwmutex_init(weft_rwmutex *m);

/* Release m's resources. m must be unlocked, with no thread waiting.
 * As weft_mutex_destroy, it waits for an unlock still finishing. */
void weft_rwmutex_destroy(weft_rwmutex *m);

/* Lock m for reading, blocking while a writer holds it or waits for it. */
void weft_rwmutex_rlock(weft_rwmutex *m);

/* As rlock, but never block. Returns 0, or WEFT_EAGAIN when a writer holds
 * or waits for m. */
int weft_rwmutex_tryrlock(weft_rwmutex *m);

/* As rlock, blocking at most until deadline. Returns 0 when read-locked,
 * WEFT_EAGAIN when it would block and deadline is at or before now,
 * WEFT_ETIMEDOUT when deadline passed while waiting. */
int weft_rwmutex_rlock_until(weft_rwmutex *m, weft_time deadline);

/* As rlock, giving up when ctx ends: returns 0 or ctx's error, as
 * weft_mutex_lock_ctx. */
int weft_rwmutex_rlock_ctx(weft_rwmutex *m, weft_ctx *ctx);

/* Drop one read lock; the last reader out admits a waiting writer. Never
 * blocks. With no read lock held, aborts with
 * "weft: runlock of unlocked rwmutex". */
void weft_rwmutex_runlock(weft_rwmutex *m);

/* Lock m for writing, blocking while readers or another writer hold it. */
void weft_rwmutex_lock(weft_rwmutex *m);

/* As lock, but never block. Returns 0, or WEFT_EAGAIN when m is held or
 * writers are queued. */
int weft_rwmutex_trylock(weft_rwmutex *m);

/* As lock, blocking at most until deadline. Returns 0 when write-locked,
 * WEFT_EAGAIN when it would block and deadline is at or before now,
 * WEFT_ETIMEDOUT when deadline passed while waiting. */
int weft_rwmutex_lock_until(weft_rwmutex *m, weft_time deadline);

/* As lock, giving up when ctx ends: returns 0 or ctx's error, as
 * weft_mutex_lock_ctx. */
int weft_rwmutex_lock_ctx(weft_rwmutex *m, weft_ctx *ctx);

/* Drop the write lock, admitting the queued readers, or else the next
 * writer. Never blocks. When m is not write-locked, aborts with
 * "weft: unlock of unlocked rwmutex". */
void weft_rwmutex_unlock(weft_rwmutex *m);

/* ---- Once -------------------------------------------------------------- */

/* Runs a function exactly once. No destroy: free it once any weft_once_do
 * on it returned and no other call on it is in progress. */
typedef struct weft_once {
    WEFT__ATOMIC_FIELD(uint32_t) state; /* private: NEW, RUNNING, FINISHING or DONE (lib/once.c) */
    pthread_mutex_t lock;   /* private: guards queue and the RUNNING -> FINISHING step */
    weft__sync_queue queue; /* private: callers waiting for fn to finish */
} weft_once;

#define WEFT_ONCE_INIT \
    { 0, PTHREAD_MUTEX_INITIALIZER, WEFT__SYNC_QUEUE_INIT }

/* The first call on once runs fn(arg); every call, the first included,
 * returns only after that fn has returned, and sees everything fn wrote.
 * Later calls return at once (one atomic load). Blocks while fn runs on
 * another thread. fn must not call weft_once_do on the same once
 * (deadlock, as in Go). */
void weft_once_do(weft_once *once, weft_fn fn, void *arg);

/* ---- Cond -------------------------------------------------------------- */

/* A condition variable over a weft_mutex, as Go's sync.Cond: wait while a
 * predicate on data guarded by the mutex is false, signal or broadcast
 * after changing it. Waiters queue in FIFO order, so none starves; a wait
 * queues itself before it unlocks the mutex, so a signal sent after the
 * waiter's predicate check (by a thread that took the mutex to change the
 * data) is never lost. Wake-ups may be spurious: wait in a loop that
 * rechecks the predicate. Every wait returns with the mutex held, also on
 * a timeout or a cancel. Destroy and free it once no thread waits on it;
 * a wait woken by a signal has already seen that signal's last access. */
typedef struct weft_cond {
    pthread_mutex_t lock;   /* private: guards queue */
    weft__sync_queue queue; /* private: blocked waiters, FIFO (lib/cond.c) */
} weft_cond;

#define WEFT_COND_INIT \
    { PTHREAD_MUTEX_INITIALIZER, WEFT__SYNC_QUEUE_INIT }

/* Initialize c with no waiters (as WEFT_COND_INIT). */
void weft_cond_init(weft_cond *c);

/* Release c's resources. No thread may be waiting on it. It waits for a
 * signal or broadcast still finishing with c. */
void weft_cond_destroy(weft_cond *c);

/* With m held by the caller: unlock m, block until a signal or broadcast
 * wakes this waiter, and lock m again before returning. */
void weft_cond_wait(weft_cond *c, weft_mutex *m);

/* As weft_cond_wait, but give up at deadline. Returns 0 when woken,
 * WEFT_ETIMEDOUT when deadline passed first, never early (at once, without
 * unlocking m, when deadline is at or before now). A signal that chose
 * this waiter just as its deadline passed wins: the call returns 0. */
int weft_cond_wait_until(weft_cond *c, weft_mutex *m, weft_time deadline);

/* As weft_cond_wait, but give up when ctx ends (NULL: never). Returns 0
 * when woken, else ctx's error (WEFT_ECANCELED, WEFT_ETIMEDOUT), at once,
 * without unlocking m, when ctx has already ended. Returns holding m. */
int weft_cond_wait_ctx(weft_cond *c, weft_mutex *m, weft_ctx *ctx);

/* Wake the longest-waiting waiter, if any. Never blocks. The caller need
 * not hold the mutex (Go allows either). */
void weft_cond_signal(weft_cond *c);

/* Wake every waiter queued now. Never blocks. */
void weft_cond_broadcast(weft_cond *c);

/* ---- Semaphore --------------------------------------------------------- */

/* A weighted semaphore, as golang.org/x/sync/semaphore: capacity units,
 * taken n at a time. Strictly FIFO: a request waits behind every earlier
 * one, so a large request at the head blocks smaller later ones (it is
 * never starved by them). Destroy and free it once an acquire that saw the
 * last release returned and no one else uses it; weft_sem_destroy waits
 * for a release still finishing. */
typedef struct weft_sem {
    int64_t capacity;       /* private: set at init, read-only after */
    int64_t held;           /* private: units acquired now; under lock */
    pthread_mutex_t lock;   /* private: guards held and queue */
    weft__sync_queue queue; /* private: blocked acquirers, FIFO */
} weft_sem;

/* A constant initializer for a semaphore of capacity units (>= 0). */
#define WEFT_SEM_INIT(capacity) \
    { (capacity), 0, PTHREAD_MUTEX_INITIALIZER, WEFT__SYNC_QUEUE_INIT }

/* Initialize s with capacity units, none held. Returns 0, or WEFT_EINVAL
 * when capacity < 0. */
int weft_sem_init(weft_sem *s, int64_t capacity);

/* Release s's resources. No thread may be waiting on it. It waits for a
 * release still finishing with s. */
void weft_sem_destroy(weft_sem *s);

/* Acquire n units, blocking until they are free and every earlier request
 * is served, or until ctx ends (NULL: no limit). Returns 0; ctx's error
 * (WEFT_ECANCELED, WEFT_ETIMEDOUT), with nothing acquired, when ctx ends
 * first or had ended before the call; WEFT_EINVAL for n < 0 or
 * n > capacity (it could never succeed; Go would block forever). */
int weft_sem_acquire(weft_sem *s, int64_t n, weft_ctx *ctx);

/* As weft_sem_acquire, blocking at most until deadline. Returns 0,
 * WEFT_EINVAL as above, WEFT_EAGAIN when it would block and deadline is at
 * or before now, WEFT_ETIMEDOUT when deadline passed while waiting. */
int weft_sem_acquire_until(weft_sem *s, int64_t n, weft_time deadline);

/* Acquire n units if they are free now and nobody is queued. Returns 0,
 * WEFT_EAGAIN, or WEFT_EINVAL for n < 0 or n > capacity. Never blocks. */
int weft_sem_try_acquire(weft_sem *s, int64_t n);

/* Return n units, waking the queued requests that now fit, in order.
 * Never blocks. Releasing more than is held aborts with
 * "weft: semaphore released more than held" (n < 0 aborts too). */
void weft_sem_release(weft_sem *s, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
