/* weft/time.h — time points and durations.
 *
 * weft_time counts nanoseconds on CLOCK_MONOTONIC. Blocking calls take an
 * absolute deadline: WEFT_FOREVER blocks without limit, a deadline at or
 * before now (WEFT_NOWAIT is 0) tries once and never blocks. */
#ifndef WEFT_TIME_H
#define WEFT_TIME_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int64_t weft_time;

#define WEFT_FOREVER INT64_MAX
#define WEFT_NOWAIT ((weft_time)0)

/* clang-format off */
#define WEFT_US(x) ((weft_time)(x) * 1000)
#define WEFT_MS(x) ((weft_time)(x) * 1000000)
#define WEFT_SEC(x) ((weft_time)(x) * 1000000000)
/* clang-format on */

struct weft_chan;
struct weft_ctx;

/* The current CLOCK_MONOTONIC time in nanoseconds. Never blocks. */
weft_time weft_now(void);

/* now + timeout, saturating at WEFT_FOREVER; a timeout <= 0 gives now
 * (a deadline that has passed: "try once"). WEFT_FOREVER stays WEFT_FOREVER. */
weft_time weft_deadline(weft_time timeout);

/* Block the calling thread for d nanoseconds, as Go's time.Sleep: returns
 * no sooner than d after the call (by weft_now), riding out signals. A
 * d <= 0 returns at once. */
void weft_sleep(weft_time d);

/* As weft_sleep, until ctx ends at the latest (NULL: never). Returns 0
 * once d has passed, or ctx's error (WEFT_ECANCELED, WEFT_ETIMEDOUT) as
 * soon as ctx ends; at once, without blocking, if ctx has already ended.
 * A ctx that can never end (background) just sleeps. */
int weft_sleep_ctx(weft_time d, struct weft_ctx *ctx);

/* ---- Timers ------------------------------------------------------------
 * One timer thread, started on first use, keeps a heap of pending
 * deadlines (context deadlines, weft_after, tickers, weft_timer): starting or stopping
 * one costs O(log n) under the timer lock, and a pending timer costs its
 * owner's memory and nothing while it waits. Once weft_after's value or a
 * tick has been received, the channel may be released, or the ticker
 * stopped, at once, while the timer thread's send may still be returning. */

/* A channel (capacity 1, elem_size sizeof(weft_time)) that receives the
 * time it fired at, once, d nanoseconds from now (d <= 0: at once), as
 * Go's time.After. The value waits in the buffer for a late reader. The
 * caller owns one reference and releases it, even before it fires; the
 * pending timer holds its own until it fires. NULL with errno ENOMEM, or
 * EAGAIN when the timer thread cannot be started. */
struct weft_chan *weft_after(weft_time d);

/* As Go's time.Ticker: its channel (capacity 1) receives the current time
 * every period; a reader that falls behind misses ticks rather than
 * queueing them, and the ticker keeps its phase. */
typedef struct weft_ticker weft_ticker;

/* A ticker whose first tick comes one period from now. period must be
 * > 0 (else NULL, errno EINVAL); NULL with errno ENOMEM or EAGAIN too. */
weft_ticker *weft_ticker_new(weft_time period);

/* The channel the ticks arrive on. Borrowed: valid until weft_ticker_stop. */
struct weft_chan *weft_ticker_chan(weft_ticker *t);

/* Change the period; the next tick comes one new period from now.
 * A period <= 0, or a NULL t, prints "weft: ..." and aborts, as Go panics. */
void weft_ticker_reset(weft_ticker *t, weft_time period);

/* Stop the ticker and free it (and its channel: a thread still blocked
 * receiving from it is a bug). No tick is sent after this returns. */
void weft_ticker_stop(weft_ticker *t);

/* As Go's time.Timer, with Go 1.23's Stop and Reset: a timer either
 * sends the time it fired at on its channel (weft_timer_new) or runs a
 * function in its own goroutine (weft_after_func), once per setting.
 * After weft_timer_stop or weft_timer_reset returns, no value of the old
 * setting is received: one the timer sent that nobody took is taken back
 * out of the channel. Stop, reset and chan may be called from any thread,
 * also concurrently with each other; free must not race with them. */
typedef struct weft_timer weft_timer;

/* A timer whose channel receives the time it fired at (weft_now(), no
 * sooner than d from now; d <= 0: at once), once. NULL with errno ENOMEM,
 * or EAGAIN when the timer thread cannot be started. Free it with
 * weft_timer_free. */
weft_timer *weft_timer_new(weft_time d);

/* A timer that runs fn(arg) in its own goroutine (weft_go) d from now, as
 * Go's time.AfterFunc; fn is a weft_fn (weft/go.h). If no goroutine can
 * be started then (max_threads are running, or no thread can be made),
 * fn is not skipped: the timer tries again a little later (1 ms, doubling
 * up to a second), and until fn has been handed to a goroutine, stop
 * prevents it. NULL with errno EINVAL (fn NULL), ENOMEM or EAGAIN. */
weft_timer *weft_after_func(weft_time d, void (*fn)(void *arg), void *arg);

/* The channel (capacity 1, elem_size sizeof(weft_time)) the firing time
 * arrives on; NULL for an after_func timer or a NULL t. Borrowed: valid
 * until weft_timer_free. A value waits in it for a late reader until
 * stop or reset takes it back. */
struct weft_chan *weft_timer_chan(weft_timer *t);

/* Stop the timer. Returns true if this call stopped it from delivering:
 * no value of the current setting had been received, and none will be
 * (it was pending, or its unreceived value was taken back); false if it
 * had already delivered, had been stopped, or its function had already
 * been handed to a goroutine (which it does not wait for). Waits only for
 * a fire running on the timer thread at that moment (a send, or a
 * weft_go) to return; never allocates. A NULL t prints "weft: ..." and
 * aborts, as Go panics. */
bool weft_timer_stop(weft_timer *t);

/* Stop the timer as weft_timer_stop does, then set it to fire d from now
 * (d <= 0: at once); an after_func timer runs fn again. Returns what the
 * stop would have: true if the timer had been active (pending, or its
 * value unreceived). Never allocates and cannot fail. A NULL t prints
 * "weft: ..." and aborts. */
bool weft_timer_reset(weft_timer *t, weft_time d);

/* Stop the timer and free it, and its channel (a thread still blocked
 * receiving from it is a bug). An after_func's fn never runs after this
 * returns unless it had already been handed to a goroutine. NULL: no-op. */
void weft_timer_free(weft_timer *t);

#ifdef __cplusplus
}
#endif
#endif
