/* fd readiness as an engine source; see fd_source.h. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>

#include "fd_source.h"
#include "panic.h"
#include "waitq.h"

/* Waiters by fd, for weft_fd_close. A bucket's lock is held only to link,
 * unlink or scan, never across a wait. */
enum { BUCKETS = 256 };

typedef struct {
    pthread_mutex_t lock;
    weft__waitq waiters;
} bucket;

static bucket table[BUCKETS]; /* made by setup */

static bucket *bucket_of(int fd) { return &table[(unsigned)fd % BUCKETS]; }

static const weft_fdwait *fdwait_of(const void *elem) { return elem; }

/* Also the fork child handler: in a forked child no thread waits, and a
 * lost thread may have held a lock or been half way through a link, so
 * every bucket starts afresh. */
static void make_table(void) {
    for (size_t i = 0; i < BUCKETS; i++) {
        pthread_mutex_init(&table[i].lock, NULL);
        table[i].waiters = (weft__waitq){NULL, NULL};
    }
}

static pthread_once_t table_made = PTHREAD_ONCE_INIT;

static void setup(void) {
    make_table();
    int error = pthread_atfork(NULL, NULL, make_table);
    if (error) weft__panic_errno("pthread_atfork", error);
}

static short poll_events(int events) {
    return (short)(((events & WEFT_FD_IN) ? POLLIN : 0) | ((events & WEFT_FD_OUT) ? POLLOUT : 0));
}

static int weft_events(short revents) {
    int events = 0;
    if (revents & (POLLIN | POLLPRI)) events |= WEFT_FD_IN;
    if (revents & POLLOUT) events |= WEFT_FD_OUT;
    if (revents & (POLLERR | POLLHUP | POLLNVAL)) events |= WEFT_FD_ERR;
    return events;
}

static bool source_polled(weft_case *c, short revents) {
    int events = weft_events(revents);
    if (!events) return false;
    ((weft_fdwait *)c->elem)->revents = events;
    return true;
}

/* A failed poll (ENOMEM) counts as not ready: the wait's own poll will
 * report the failure. */
static int source_attempt(weft_case *c, const weft__parker *self) {
    (void)self;
    const weft_fdwait *wait = fdwait_of(c->elem);
    struct pollfd probe = {.fd = wait->fd, .events = poll_events(wait->events)};
    int ready;
    do ready = poll(&probe, 1, 0);
    while (ready < 0 && errno == EINTR);
    if (ready <= 0 || !source_polled(c, probe.revents)) return WEFT_EAGAIN;
    return 0;
}

/* Readiness that comes between the attempt and the sleep is not lost:
 * poll is level-triggered, so the wait's own poll sees it. */
static bool source_enlist(const weft_case *cases, size_t n, size_t i, weft__waiter *waiters) {
    (void)n;
    pthread_once(&table_made, setup);
    bucket *home = bucket_of(fdwait_of(cases[i].elem)->fd);
    pthread_mutex_lock(&home->lock);
    weft__waitq_push(&home->waiters, &waiters[i]);
    pthread_mutex_unlock(&home->lock);
    return false;
}

static void source_withdraw(const weft_case *c, weft__waiter *waiter) {
    bucket *home = bucket_of(fdwait_of(c->elem)->fd);
    pthread_mutex_lock(&home->lock);
    weft__waitq_remove(&home->waiters, waiter);
    pthread_mutex_unlock(&home->lock);
}

static const void *source_object(const weft_case *c) {
    (void)c;
    return NULL;
}

static bool source_pollfd(const weft_case *c, struct pollfd *slot) {
    const weft_fdwait *wait = fdwait_of(c->elem);
    *slot = (struct pollfd){.fd = wait->fd, .events = poll_events(wait->events)};
    return true;
}

const weft__source weft__fd_source = {
    .attempt = source_attempt,
    .enlist = source_enlist,
    .withdraw = source_withdraw,
    .object = source_object,
    .pollfd = source_pollfd,
    .polled = source_polled,
};

void weft__fd_wake_closed(int fd) {
    pthread_once(&table_made, setup);
    bucket *home = bucket_of(fd);
    weft__waiter *wake = NULL;
    pthread_mutex_lock(&home->lock);
    weft__waiter *waiter = home->waiters.first;
    while (waiter) {
        weft__waiter *next = waiter->next;
        if (fdwait_of(waiter->elem)->fd == fd) {
            bool won = weft__parker_claim(waiter->parker, waiter->token);
            weft__waitq_remove(&home->waiters, waiter);
            if (won) { /* the waiter is ours until the unpark */
                waiter->result = WEFT_ECLOSED;
                waiter->next = wake;
                wake = waiter;
            }
        }
        waiter = next;
    }
    pthread_mutex_unlock(&home->lock);
    while (wake) {
        weft__waiter *next = wake->next;
        weft__parker_unpark(wake->parker);
        wake = next;
    }
}
