/* weft/time.h — time points and durations.
 *
 * weft_time counts nanoseconds on CLOCK_MONOTONIC. Blocking calls take an
 * absolute deadline: WEFT_FOREVER blocks without limit, a deadline at or
 * before now (WEFT_NOWAIT is 0) tries once and never blocks. */
#ifndef WEFT_TIME_H
#define WEFT_TIME_H

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
 * deadlines (context deadlines, weft_after, tickers): starting or stopping
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

#ifdef __cplusplus
}
#endif
#endif
