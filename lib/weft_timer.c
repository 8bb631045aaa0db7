/* weft_timer: Go's time.Timer and time.AfterFunc, with Go 1.23's Stop and
 * Reset (lib/timer.c, the timer thread's heap, is what it is built on).
 *
 * The pieces
 *   A weft_timer is one weft__timer and either a channel (weft_timer_new)
 *   or a function and its argument (weft_after_func). A channel timer's
 *   fire try-sends weft_now() into the channel, which has capacity 1 and
 *   no other sender, so the send never blocks and never finds the buffer
 *   full: each setting fires at most once, and stop and reset empty the
 *   buffer before the next setting can fire. A function timer's fire
 *   hands fn(arg) to a goroutine with weft_go and returns.
 *
 * No value of an old setting after Stop or Reset (Go 1.23)
 *   Go's runtime (src/runtime/time.go) gets this with a per-timer send
 *   lock held across the fire's send, a sequence number that stop and
 *   reset bump so that a fire of an older setting sends nothing, an
 *   isSending count for a fire taken off the heap but not yet sending, and
 *   a drain of the channel's buffer. Here weft__timer_stop covers the
 *   first three: it returns only when the timer is not pending and no fire
 *   of it is running (it waits for one that is), so no send of the old
 *   setting can be under way or still to come. When it returns, the old
 *   setting's value is in one of three places:
 *     - nowhere: stop took the pending timer out of the heap (true);
 *     - received already, by a thread that took it from the buffer or was
 *       handed it by the send (false);
 *     - in the buffer: the try-receive that follows takes it back out
 *       (true: nobody received it and nobody will).
 *   The fire's send happened before stop returned (the timer lock orders
 *   them), so the try-receive sees the value if it is still there. A
 *   receiver racing with the try-receive either takes the value first (it
 *   received it; stop says false) or finds the buffer empty afterwards. A
 *   receiver woken by the send but not yet back at the buffer may lose
 *   the value to the try-receive: that is the guarantee, not a loss.
 *   Reset drains before it starts the new setting, so the drain can never
 *   take a value of the new setting.
 *
 * The function timer
 *   Stop returns weft__timer_stop's answer: true while the timer was
 *   pending, so fn had not been handed to a goroutine and now never is;
 *   false once the fire has run (fn started or finished; stop does not
 *   wait for fn, only for the weft_go call). fn gets arg, never the
 *   timer: once stop (or free) has returned, the timer thread is done
 *   with the struct. When weft_go fails (max_threads goroutines running,
 *   no thread could start), the fire restarts the timer `retry` later
 *   (1 ms, doubling up to RETRY_MAX) instead of dropping fn or running it
 *   on the timer thread: fn is late, never skipped, and stop still
 *   prevents it (it is pending again).
 *
 * Never allocating in stop or reset
 *   new reserves the timer's slot of the heap's array for the timer's
 *   whole life (weft__timer_reserve), so every start of it, reset's and
 *   a retry's, needs no memory and cannot fail.
 *
 * Who touches what
 *   `lock` serialises stop and reset of one timer, so that two resets
 *   racing cannot both start it. The fire never takes `lock`, so stop may
 *   wait for a fire while holding it. `retry` is written by new and reset
 *   while the timer is neither pending nor firing (after weft__timer_stop)
 *   and by the fire; the timer lock orders those writes, as in ticker.c.
 *   chan, fn and arg are written by the constructor only. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "alloc.h"
#include "panic.h"
#include "time_internal.h"
#include "timer.h"
#include "weft/chan.h"
#include "weft/error.h"
#include "weft/go.h"
#include "weft/time.h"

#define RETRY_FIRST WEFT_MS(1)
#define RETRY_MAX WEFT_SEC(1)

struct weft_timer {
    weft__timer timer;    /* first: fire gets a pointer to it */
    pthread_mutex_t lock; /* serialises stop and reset */
    weft_chan *chan;      /* capacity 1; NULL for an after_func timer */
    weft_fn fn;           /* after_func only */
    void *arg;
    weft_time retry; /* the next wait after weft_go fails; see "Who touches what" */
};

static _Atomic(void (*)(void)) send_hook; /* test hook; see time_internal.h */

void weft__timer_send_hook(void (*hook)(void)) { atomic_store(&send_hook, hook); }

static void chan_fire(weft__timer *timer) {
    weft_timer *self = (weft_timer *)timer;
    void (*hook)(void) = atomic_load_explicit(&send_hook, memory_order_relaxed);
    if (hook) hook();
    weft_time now = weft_now();
    (void)weft_chan_try_send(self->chan, &now); /* never full: see the top */
}

static void func_fire(weft__timer *timer) {
    weft_timer *self = (weft_timer *)timer;
    if (weft_go(self->fn, self->arg) == 0) return;
    weft_time wait = self->retry;
    self->retry = wait < RETRY_MAX / 2 ? wait * 2 : RETRY_MAX;
    (void)weft__timer_start(&self->timer, weft_deadline(wait)); /* reserved: cannot fail */
}

/* Make the timer, reserve its slot and start it; NULL with errno set. */
static weft_timer *timer_make(weft_time d, void (*fire)(weft__timer *), weft_chan *chan, weft_fn fn,
                              void *arg) {
    int error = WEFT_ENOMEM;
    weft_timer *self = weft__malloc(sizeof *self);
    if (!self) goto no_timer;
    weft__timer_init(&self->timer, fire);
    error = weft__timer_reserve(&self->timer);
    if (error != 0) goto no_slot;
    pthread_mutex_init(&self->lock, NULL);
    self->chan = chan;
    self->fn = fn;
    self->arg = arg;
    self->retry = RETRY_FIRST;
    (void)weft__timer_start(&self->timer, weft_deadline(d)); /* reserved: cannot fail */
    return self;

no_slot:
    weft__free(self);
no_timer:
    errno = error == WEFT_ENOMEM ? ENOMEM : EAGAIN;
    return NULL;
}

weft_timer *weft_timer_new(weft_time d) {
    weft_chan *chan = weft_chan_make(sizeof(weft_time), 1);
    if (!chan) return NULL; /* errno is ENOMEM */
    weft_timer *self = timer_make(d, chan_fire, chan, NULL, NULL);
    if (!self) weft_chan_release(chan); /* keeps errno */
    return self;
}

weft_timer *weft_after_func(weft_time d, weft_fn fn, void *arg) {
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    return timer_make(d, func_fire, NULL, fn, arg);
}

weft_chan *weft_timer_chan(weft_timer *t) { return t ? t->chan : NULL; }

/* Under t->lock: stop the current setting (see the top). */
static bool stop_locked(weft_timer *t) {
    bool stopped = weft__timer_stop(&t->timer);
    weft_time stale;
    if (t->chan && weft_chan_try_recv(t->chan, &stale) == 0) stopped = true;
    return stopped;
}

bool weft_timer_stop(weft_timer *t) {
    if (!t) weft__panic("weft_timer_stop of a NULL timer");
    pthread_mutex_lock(&t->lock);
    bool stopped = stop_locked(t);
    pthread_mutex_unlock(&t->lock);
    return stopped;
}

bool weft_timer_reset(weft_timer *t, weft_time d) {
    if (!t) weft__panic("weft_timer_reset of a NULL timer");
    pthread_mutex_lock(&t->lock);
    bool active = stop_locked(t);
    t->retry = RETRY_FIRST;
    (void)weft__timer_start(&t->timer, weft_deadline(d)); /* reserved: cannot fail */
    pthread_mutex_unlock(&t->lock);
    return active;
}

void weft_timer_free(weft_timer *t) {
    if (!t) return;
    weft__timer_stop(&t->timer); /* no fire runs after this */
    weft__timer_unreserve(&t->timer);
    if (t->chan) weft_chan_release(t->chan);
    pthread_mutex_destroy(&t->lock);
    weft__free(t);
}
