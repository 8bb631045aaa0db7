/* weft_after: a channel that receives the time, once, after a duration.
 *
 * The pending timer lives in a small heap-allocated struct that holds its
 * own reference to the channel, so the caller may release its reference
 * at any time, even before the timer fires: the channel then lives on
 * until the fire, which sends into the buffer (nobody will read it),
 * drops the last reference and frees the struct. The send never blocks:
 * the channel has capacity 1 and this is its only sender. */
#include <errno.h>

#include "alloc.h"
#include "timer.h"
#include "weft/chan.h"
#include "weft/error.h"
#include "weft/time.h"

typedef struct {
    weft__timer timer; /* first: fire gets a pointer to it */
    weft_chan *chan;   /* the timer's own reference; written before start */
} after_timer;

static void after_fire(weft__timer *timer) {
    after_timer *self = (after_timer *)timer;
    weft_time now = weft_now();
    (void)weft_chan_try_send(self->chan, &now);
    weft_chan_release(self->chan);
    weft__free(self);
}

weft_chan *weft_after(weft_time d) {
    weft_chan *chan = weft_chan_make(sizeof(weft_time), 1);
    if (!chan) return NULL; /* errno is ENOMEM */
    after_timer *self = weft__malloc(sizeof *self);
    if (!self) {
        weft_chan_release(chan);
        errno = ENOMEM;
        return NULL;
    }
    weft__timer_init(&self->timer, after_fire);
    weft_chan_retain(chan);
    self->chan = chan;
    int error = weft__timer_start(&self->timer, weft_deadline(d));
    if (error != 0) {
        weft_chan_release(chan); /* the timer's reference */
        weft__free(self);
        weft_chan_release(chan); /* the caller's */
        errno = error == WEFT_ENOMEM ? ENOMEM : EAGAIN;
        return NULL;
    }
    /* self may already have fired and been freed: touch only chan. */
    return chan;
}
