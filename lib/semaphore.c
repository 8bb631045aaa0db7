/* weft_sem: a weighted FIFO semaphore, as golang.org/x/sync/semaphore.
 *
 * Everything happens under s->lock, which guards s->held and s->queue
 * (s->capacity is fixed at init). A request for n units succeeds at once
 * when capacity - held >= n and nobody is queued; otherwise it queues a
 * waiter carrying n and parks. Requests are served strictly in queue
 * order: release (and a waiter leaving the queue) walks the queue from the
 * head and grants each request that fits, adding its n to held before
 * waking it, and stops at the first that does not fit. So a large request
 * at the head holds back smaller ones behind it: it is never starved by
 * a stream of small ones, at the price of idle units meanwhile (the
 * behaviour of x/sync/semaphore).
 *
 * No wake-up is lost: a waiter is queued under the lock after seeing too
 * few units, and every release takes the same lock, so it finds the
 * waiter. A granted waiter owns its units before it wakes.
 *
 * A waiter whose deadline passes claims its own parker and, under the
 * lock, leaves the queue. If it was at the head, the requests behind it
 * may fit now (they only waited for it): it runs the same grant walk.
 * If a release claimed it first, its units are granted and it returns 0.
 *
 * A semaphore lock is held for a few pointer moves and no system call
 * (unparks happen after it is dropped), so an uncontended acquire or
 * release costs one pthread mutex lock and unlock.
 *
 * Lifetime: every change is made under s->lock and the only access after
 * it is the unlock of s->lock, which an acquirer that sees the units must
 * wait for anyway, and weft_sem_destroy waits out; granted waiters learn
 * it from the unpark, after the releaser's last access. So s may be
 * destroyed and freed once an acquire that saw the release returned and
 * no one else uses s. */
#include "sync_internal.h"

typedef struct {
    weft__waiter base; /* first: the queue holds &base */
    int64_t units;     /* what it asks for; read-only while queued */
} sem_waiter;

int weft_sem_init(weft_sem *s, int64_t capacity) {
    if (capacity < 0) return WEFT_EINVAL;
    s->capacity = capacity;
    s->held = 0;
    weft__sync_lock_init(&s->lock);
    s->queue.first = s->queue.last = NULL;
    return 0;
}

void weft_sem_destroy(weft_sem *s) { weft__sync_lock_destroy(&s->lock); }

/* Under s->lock: grant the requests at the head of the queue that fit,
 * in order, onto *granted. Waiters met at the head whose wait another
 * party ended (a deadline, later a context) are unlinked; their owners
 * find them gone. */
static void grant_waiters(weft_sem *s, weft__waiter **granted) {
    sem_waiter *head;
    while ((head = (sem_waiter *)s->queue.first)) {
        if (weft__parker_claimed(head->base.parker) == WEFT__UNCLAIMED &&
            s->capacity - s->held < head->units)
            return; /* the head still waits and does not fit: everyone waits */
        bool won = weft__parker_claim(head->base.parker, head->base.token);
        weft__sync_queue_remove(&s->queue, &head->base);
        if (!won) continue;
        s->held += head->units;
        head->base.result = WEFT__SYNC_GRANTED;
        head->base.next = *granted;
        *granted = &head->base;
    }
}

static bool fits_now(const weft_sem *s, int64_t units) {
    return s->capacity - s->held >= units && weft__sync_queue_empty(&s->queue);
}

int weft_sem_try_acquire(weft_sem *s, int64_t units) {
    if (units < 0 || units > s->capacity) return WEFT_EINVAL;
    weft__sync_lock(&s->lock);
    bool taken = fits_now(s, units);
    if (taken) s->held += units;
    weft__sync_unlock(&s->lock);
    return taken ? 0 : WEFT_EAGAIN;
}

static int acquire_yielding(weft_sem *s, int64_t units, weft_time deadline, weft_ctx *ctx) {
    for (;;) {
        if (weft_sem_try_acquire(s, units) == 0) return 0;
        int error = weft__sync_limit(deadline, ctx);
        if (error) return error;
        weft__sync_yield();
    }
}

static int acquire(weft_sem *s, int64_t units, weft_time deadline, weft_ctx *ctx) {
    if (units < 0 || units > s->capacity) return WEFT_EINVAL;
    weft__sync_lock(&s->lock);
    if (fits_now(s, units)) {
        s->held += units;
        weft__sync_unlock(&s->lock);
        return 0;
    }
    if (deadline != WEFT_FOREVER && weft_now() >= deadline) {
        weft__sync_unlock(&s->lock);
        return WEFT_EAGAIN;
    }
    weft__parker *parker = weft__parker_self();
    if (!parker) {
        weft__sync_unlock(&s->lock);
        return acquire_yielding(s, units, deadline, ctx);
    }
    sem_waiter waiter = {.units = units};
    weft__sync_waiter_arm(&waiter.base, parker);
    weft__sync_queue_push(&s->queue, &waiter.base);
    weft__sync_unlock(&s->lock);

    int error = weft__sync_park(&waiter.base, deadline, ctx, "weft_sem_acquire", s);
    if (error) {
        weft__waiter *granted = NULL;
        weft__sync_lock(&s->lock);
        weft__sync_queue_remove(&s->queue, &waiter.base);
        grant_waiters(s, &granted); /* we may have held back those behind us */
        weft__sync_unlock(&s->lock);
        weft__sync_unpark_list(granted);
    }
    return error; /* 0: a release granted our units */
}

int weft_sem_acquire_until(weft_sem *s, int64_t units, weft_time deadline) {
    return acquire(s, units, deadline, NULL);
}

int weft_sem_acquire(weft_sem *s, int64_t units, weft_ctx *ctx) {
    if (units < 0 || units > s->capacity) return WEFT_EINVAL;
    int error = weft_ctx_err(ctx);
    if (error) return error;
    return acquire(s, units, WEFT_FOREVER, ctx);
}

void weft_sem_release(weft_sem *s, int64_t units) {
    if (units < 0) weft__panic("semaphore release of a negative count");
    weft__waiter *granted = NULL;
    weft__sync_lock(&s->lock);
    if (units > s->held) weft__panic("semaphore released more than held");
    s->held -= units;
    grant_waiters(s, &granted);
    weft__sync_unlock(&s->lock);
    weft__sync_unpark_list(granted);
}

int weft__sem_queued(weft_sem *s) {
    int count = 0;
    weft__sync_lock(&s->lock);
    for (const weft__waiter *waiter = s->queue.first; waiter; waiter = waiter->next) count++;
    weft__sync_unlock(&s->lock);
    return count;
}
