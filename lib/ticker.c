/* weft_ticker: a channel that receives the time every period.
 *
 * A ticker is one timer that restarts itself from its own fire. Its fire
 * (on the timer thread) sends weft_now() with a try-send into the
 * capacity-1 channel, so a reader that has not taken the last tick makes
 * the new one be dropped, as Go's Ticker does; then it moves `next` on by
 * whole periods until it is past now, which keeps the phase (ticks at
 * start + k * period) however late the fire ran, and restarts the timer at
 * `next`.
 *
 * Who touches what
 *   `period` and `next` are written by reset (and new) while the timer is
 *   neither pending nor firing, and by the fire while it runs. They never
 *   race: reset first calls weft__timer_stop, which returns only when the
 *   timer is not pending and no fire of it is running (it waits for a
 *   running fire to return, and removes the restart that fire made); and
 *   the timer lock, taken by reset's start and by the timer thread before
 *   it fires, orders reset's writes before the next fire's reads. The same
 *   stop makes weft_ticker_stop safe to free the ticker and release its
 *   channel while the timer thread might be ticking it: after stop no fire
 *   can run, so no tick is sent after weft_ticker_stop returns.
 *   Reset and stop of one ticker must not be called concurrently with each
 *   other (stop frees it); the channel itself is safe from any thread.
 *
 * A restart from the fire never fails for lack of memory: the timer
 * thread keeps a heap slot for a running fire's own timer (lib/timer.c).
 * Were it to fail anyway, the ticker would silently stop ticking until
 * the next reset; weft_ticker_stop stays correct either way. */
#include <errno.h>

#include "alloc.h"
#include "panic.h"
#include "timer.h"
#include "weft/chan.h"
#include "weft/error.h"
#include "weft/time.h"

struct weft_ticker {
    weft__timer timer; /* first: fire gets a pointer to it */
    weft_chan *chan;   /* capacity 1; the ticker's reference, released by stop */
    weft_time period;  /* > 0; see "Who touches what" */
    weft_time next;    /* when the next tick is due */
};

/* The first of from, from + period, from + 2 * period, ... that is later
 * than now, saturating at WEFT_FOREVER. */
static weft_time next_after(weft_time from, weft_time period, weft_time now) {
    if (from > now) return from;
    weft_time periods = (now - from) / period + 1;
    if (periods > (WEFT_FOREVER - from) / period) return WEFT_FOREVER;
    return from + periods * period;
}

static void ticker_fire(weft__timer *timer) {
    weft_ticker *ticker = (weft_ticker *)timer;
    weft_time now = weft_now();
    (void)weft_chan_try_send(ticker->chan, &now); /* full: this tick is dropped */
    ticker->next = next_after(ticker->next, ticker->period, now);
    (void)weft__timer_start(&ticker->timer, ticker->next); /* cannot fail: see the top */
}

weft_ticker *weft_ticker_new(weft_time period) {
    if (period <= 0) {
        errno = EINVAL;
        return NULL;
    }
    int error;
    weft_ticker *ticker = weft__malloc(sizeof *ticker);
    if (!ticker) goto no_ticker;
    ticker->chan = weft_chan_make(sizeof(weft_time), 1);
    if (!ticker->chan) goto no_chan;
    weft__timer_init(&ticker->timer, ticker_fire);
    ticker->period = period;
    ticker->next = weft_deadline(period);
    error = weft__timer_start(&ticker->timer, ticker->next);
    if (error != 0) goto no_timer;
    return ticker;

no_timer:
    weft_chan_release(ticker->chan);
    weft__free(ticker);
    errno = error == WEFT_ENOMEM ? ENOMEM : EAGAIN;
    return NULL;
no_chan:
    weft__free(ticker);
no_ticker:
    errno = ENOMEM;
    return NULL;
}

weft_chan *weft_ticker_chan(weft_ticker *t) { return t ? t->chan : NULL; }

void weft_ticker_reset(weft_ticker *t, weft_time period) {
    if (!t) weft__panic("weft_ticker_reset of a NULL ticker");
    if (period <= 0) weft__panic("weft_ticker_reset: non-positive period");
    weft__timer_stop(&t->timer);
    t->period = period;
    t->next = weft_deadline(period);
    /* Only running out of memory can make this start fail (the timer
     * thread runs already); the ticker then stops ticking until the next
     * reset, and weft_ticker_stop still works. */
    (void)weft__timer_start(&t->timer, t->next);
}

void weft_ticker_stop(weft_ticker *t) {
    if (!t) return;
    weft__timer_stop(&t->timer);
    weft_chan_release(t->chan);
    weft__free(t);
}
