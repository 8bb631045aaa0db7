/* weft/go.h — goroutines on pooled threads.
 *
 * A goroutine is a function call, fn(arg), that runs on a thread of a
 * pool. It owns that thread until it returns, so it may block on anything
 * (a channel, a mutex, read(2)) without holding up other goroutines.
 *
 * weft_pool_go hands the call to an idle thread of the pool, the one that
 * went idle most recently (its cache is warmest). When no thread is idle it
 * starts a new one, so goroutines that block never starve each other; when
 * max_threads threads are all busy it returns WEFT_EAGAIN and queues
 * nothing. A thread that has been idle for idle_timeout exits, unless that
 * would leave fewer than min_threads threads. Threads are named
 * "<pool name>/<n>" (for example "weft/3"), cut to 15 characters, so gdb,
 * top and perf show which pool they belong to.
 *
 * weft_go uses the default pool, which starts on the first call and is
 * never closed: its idle threads simply time out. Its options are
 *     min_threads   0
 *     max_threads   4096
 *     idle_timeout  10 seconds
 *     stack_size    the system's default for new threads
 *     name          "weft"
 * and these environment variables, read once when it starts, override them:
 *     WEFT_MIN_THREADS      threads kept when idle (>= 0)
 *     WEFT_MAX_THREADS      most threads at once (>= 1)
 *     WEFT_IDLE_TIMEOUT_MS  milliseconds an idle thread waits before it exits (>= 1)
 *     WEFT_STACK_SIZE       bytes of stack per thread (>= PTHREAD_STACK_MIN)
 * A value that is not a decimal number in range is ignored, as is a set of
 * values that contradict each other (WEFT_MIN_THREADS above
 * WEFT_MAX_THREADS): the default pool then uses the defaults above.
 *
 * Threads do not survive fork(), but pools do: weft's fork handlers empty
 * each pool of the threads the child lost, so a child may go on starting
 * goroutines, on the default pool or any other. An object another thread
 * was using at the moment of the fork (a channel, a lock) may be left
 * locked in the child: use only what no other thread touched across it.
 *
 * A goroutine must return from its function: pthread_exit() in one would
 * take a pool thread away with the goroutine still counted. Nor may a
 * thread be cancelled (pthread_cancel) while inside a weft call: weft
 * sleeps in pthread_cond_wait, a cancellation point, and installs no
 * cleanup handler, so a cancelled waiter would leave its queue entry and
 * locks behind.
 *
 * Lifetime: weft only passes arg to fn, so arg may be freed once another
 * thread has seen fn's last use of it (a send, a close, a weft_wg_done);
 * once weft_pool_close has returned, every goroutine of the pool has
 * returned, and what they used may be freed.
 *
 * Every function is safe to call from any thread, goroutine or not. */
#ifndef WEFT_GO_H
#define WEFT_GO_H

#include <stdbool.h>
#include <stddef.h>

#include "weft/error.h"
#include "weft/time.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*weft_fn)(void *arg);

/* Run fn(arg) on a thread of the default pool (starting the pool on the
 * first call). Never waits for fn; blocks only for a thread start when no
 * thread is idle. Returns 0 when fn has been handed to a thread,
 * WEFT_EINVAL when fn is NULL, WEFT_EAGAIN when max_threads goroutines are
 * running already, WEFT_ENOMEM when no thread could be started (memory or
 * the system's thread limit ran out); on an error fn never runs and the
 * pool stays usable. */
int weft_go(weft_fn fn, void *arg);

/* The number of goroutines running now, in all pools: calls handed to a
 * thread that have not yet returned. Idle pooled threads and weft's own
 * internal threads are not counted. A goroutine counts from before
 * weft_go returns, so weft_go(...) followed by weft_goroutines() in the
 * same thread sees at least 1. When it reads 0, everything the finished
 * goroutines wrote is visible to the caller. Never blocks. */
int weft_goroutines(void);

typedef struct weft_pool weft_pool;

/* Options for weft_pool_new. A field left 0 takes its default (see the top
 * of this file; the default name is "weft"). */
typedef struct {
    int min_threads; /* idle threads kept without timing out */
    int max_threads; /* at most this many goroutines at once; at least min_threads */
    weft_time
        idle_timeout;  /* an idle thread above min_threads exits after this; WEFT_FOREVER: never */
    size_t stack_size; /* bytes of stack per thread; 0: the system's default */
    const char *name;  /* thread name prefix, copied (first 15 bytes kept) */
} weft_pool_opts;

/* A new pool with no threads yet (threads start as work arrives). opts
 * may be NULL: all defaults. Returns NULL with errno EINVAL when an option
 * is out of range (a negative count or timeout, min_threads above
 * max_threads, a stack_size the system refuses), ENOMEM when memory runs
 * out. */
weft_pool *weft_pool_new(const weft_pool_opts *opts);

/* Run fn(arg) on a thread of pool p, as weft_go does for the default
 * pool. Returns 0, WEFT_EINVAL (p or fn NULL), WEFT_ECLOSED (weft_pool_close
 * has begun), WEFT_EAGAIN (max_threads goroutines running; nothing is
 * queued), or WEFT_ENOMEM (a thread could not be started); on an error fn
 * never runs and the pool stays usable. */
int weft_pool_go(weft_pool *p, weft_fn fn, void *arg);

/* Close pool p: from now on weft_pool_go on it returns WEFT_ECLOSED; wait
 * for every goroutine running on it to return (blocking without limit),
 * then stop and join its threads and free it. Returns 0, or WEFT_EINVAL
 * when p is NULL or when called from one of p's own goroutines (which
 * would wait for itself forever); p is then left open and unchanged.
 * Closing a pool twice, or using it after close returned, is a bug. */
int weft_pool_close(weft_pool *p);

/* Deadlock detection, Go's "all goroutines are asleep - deadlock!"; off
 * unless turned on by this call or by WEFT_DEBUG=deadlock in the
 * environment (read once, when the program starts; a comma-separated
 * list, where "deadlock=0" turns it off; this call overrides it).
 *
 * When on, weft watches for the moment at which every goroutine, and at
 * least one other thread (say main, waiting for them), is blocked on a
 * weft object without limit: a channel operation, select, WaitGroup,
 * mutex, rwmutex, once or semaphore with no deadline, or a _ctx form
 * whose context has no deadline; and no timer (weft_after, a ticker, a
 * context's deadline) is pending that could still wake one of them. If
 * that lasts half a second with nothing changing, it prints
 *     weft: all goroutines are asleep - deadlock!
 * to stderr, then one line per blocked thread saying what it waits on:
 *       thread "weft/3" (goroutine): weft_chan_send on channel 0x... (unbuffered)
 *       thread "server" (main): weft_wg_wait on 0x...
 * and aborts. Waits with a deadline, idle pooled threads, weft_pool_close
 * and everything outside weft are never counted as blocked.
 *
 * weft cannot see threads that are not blocked in weft: a plain thread
 * that is computing, sleeping or blocked in read(2) and will later wake a
 * blocked thread (a send, a cancel, a weft_wg_done) makes the report
 * wrong if it takes longer than the half second. Turn detection on only
 * in programs whose wake-ups come from goroutines, timers and threads
 * that themselves block in weft.
 *
 * Off, it costs nothing on the fast paths and one predictable branch when
 * a thread is about to sleep. On, a thread that goes to sleep without a
 * deadline, and the one that wakes it, each take one global lock, and a
 * watchdog thread ("weft/deadlock") is started the first time everything
 * looks blocked. Safe to call from any thread at any time; waits already
 * asleep when it is turned on are not counted until they wake. */
void weft_debug_deadlock(bool on);

/* Go's SIGQUIT dump: write to fd, one line each, every goroutine (blocked
 * or running user code) and every other thread blocked in weft: its
 * thread id, pool and name, and for a blocked one the call it is blocked
 * in (weft_chan_recv, weft_select, weft_mutex_lock, weft_read_ctx, ...),
 * the object's address and kind with what weft knows of it (a channel's
 * capacity and length, a select's cases, an fd), and how long it has
 * waited, in milliseconds:
 *     weft: dump-begin version=1 pid=4242 goroutines=2 threads=1
 *     weft: goroutine tid=4250 pool=weft name=weft/1 state=blocked call=weft_chan_recv
 *           object=0x5581c0a4e2c0 kind=chan cap=0 len=0 waited_ms=1503
 *     weft: goroutine tid=4251 pool=weft name=weft/2 state=running
 *     weft: thread tid=4242 pool=- name=server state=blocked call=weft_wg_wait
 *           object=0x7ffc1d2e5a10 kind=waitgroup waited_ms=1510
 *     weft: dump-end lines=3 truncated=0
 * (each record on one line). Every line is "weft:", its type, then
 * key=value fields; names are percent-encoded so that no value holds a
 * space or "="; weft_go(3) lists every field. A snapshot, not a stop of
 * the world: a thread that blocks or wakes meanwhile may be shown either
 * way. The objects are never read (one may be freed meanwhile): a
 * channel's length is the one it had when the wait began. Takes locks
 * (briefly: no other thread waits on the writes) and may allocate, so it
 * must not be called from a signal handler; with WEFT_DEBUG=dump in the
 * environment at start-up, weft installs a SIGQUIT handler that only
 * wakes a thread of its own ("weft/dump"), which writes the dump to
 * stderr; the program goes on.
 *
 * Cost, whether or not a dump is ever taken: nothing on the fast paths; a
 * call about to block records what it waits on in its thread's parker (a
 * coarse clock read and a few plain stores, no atomic read-modify-write)
 * and clears it after. WEFT_DEBUG=dump adds the dump thread, sleeping in
 * read(2), and a pipe. Safe to call from any thread at any time. */
void weft_debug_dump(int fd);

#ifdef __cplusplus
}
#endif
#endif
