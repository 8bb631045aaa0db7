/* condvar_queue.c — the mutex + condition variable baseline queue.
 *
 * The mutex guards head, count, deposited, taken_count and the ring's
 * contents; capacity and the ring pointer are fixed at make.
 *
 * Buffered (capacity >= 1): a ring with head (next to receive) and count.
 * A sender waits on `not_full` while count == capacity, stores, and
 * signals `not_empty`; a receiver mirrors it. Both signal on every
 * operation, whether or not anyone waits: the plain textbook queue.
 *
 * Rendezvous (capacity 0): one slot. A sender waits on `not_full` until
 * the slot is free, stores its value, takes a ticket (the number of values
 * deposited so far, its own included) and signals `not_empty`; then it
 * waits on `taken` until the count of values taken reaches its ticket.
 * A receiver waits on `not_empty` for a full slot, empties it, counts the
 * take, and wakes both the depositor (broadcast on `taken`: a second
 * depositor may already be waiting there for a later ticket) and one
 * sender waiting for the free slot. */
#include "condvar_queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct condvar_queue {
    pthread_mutex_t mutex;
    pthread_cond_t not_full;   /* buffered: a slot freed; rendezvous: the slot emptied */
    pthread_cond_t not_empty;  /* a value is available */
    pthread_cond_t taken;      /* rendezvous only: a deposited value was taken */
    size_t capacity;           /* 0: rendezvous; fixed at make */
    size_t head;               /* buffered: index of the oldest value */
    size_t count;              /* buffered: values in the ring; rendezvous: 0 or 1 */
    unsigned long deposited;   /* rendezvous: values ever put in the slot */
    unsigned long taken_count; /* rendezvous: values ever taken from the slot */
    long *ring;                /* capacity slots, or one for rendezvous */
};

/* pthread mutex and condvar calls fail only on a broken program. */
static void check(int result, const char *what) {
    if (result != 0) {
        fprintf(stderr, "weft-bench: condvar_queue: %s failed (error %d)\n", what, result);
        abort();
    }
}

condvar_queue *condvar_queue_make(size_t capacity) {
    size_t slots = capacity > 0 ? capacity : 1;
    if (slots > SIZE_MAX / sizeof(long)) {
        errno = EINVAL;
        return NULL;
    }
    condvar_queue *queue = calloc(1, sizeof *queue);
    if (queue == NULL) goto fail_queue;
    queue->ring = malloc(slots * sizeof(long));
    if (queue->ring == NULL) goto fail_ring;
    queue->capacity = capacity;
    check(pthread_mutex_init(&queue->mutex, NULL), "pthread_mutex_init");
    check(pthread_cond_init(&queue->not_full, NULL), "pthread_cond_init");
    check(pthread_cond_init(&queue->not_empty, NULL), "pthread_cond_init");
    check(pthread_cond_init(&queue->taken, NULL), "pthread_cond_init");
    return queue;

fail_ring:
    free(queue);
fail_queue:
    errno = ENOMEM;
    return NULL;
}

void condvar_queue_free(condvar_queue *queue) {
    if (queue == NULL) return;
    pthread_cond_destroy(&queue->taken);
    pthread_cond_destroy(&queue->not_empty);
    pthread_cond_destroy(&queue->not_full);
    pthread_mutex_destroy(&queue->mutex);
    free(queue->ring);
    free(queue);
}

static void wait_on(pthread_cond_t *condition, pthread_mutex_t *mutex) {
    check(pthread_cond_wait(condition, mutex), "pthread_cond_wait");
}

void condvar_queue_send(condvar_queue *queue, long value) {
    check(pthread_mutex_lock(&queue->mutex), "pthread_mutex_lock");
    if (queue->capacity == 0) {
        while (queue->count != 0) wait_on(&queue->not_full, &queue->mutex);
        queue->ring[0] = value;
        queue->count = 1;
        unsigned long ticket = ++queue->deposited;
        pthread_cond_signal(&queue->not_empty);
        while (queue->taken_count < ticket) wait_on(&queue->taken, &queue->mutex);
    } else {
        while (queue->count == queue->capacity) wait_on(&queue->not_full, &queue->mutex);
        size_t tail = queue->head + queue->count;
        if (tail >= queue->capacity) tail -= queue->capacity;
        queue->ring[tail] = value;
        queue->count++;
        pthread_cond_signal(&queue->not_empty);
    }
    check(pthread_mutex_unlock(&queue->mutex), "pthread_mutex_unlock");
}

long condvar_queue_receive(condvar_queue *queue) {
    long value;
    check(pthread_mutex_lock(&queue->mutex), "pthread_mutex_lock");
    while (queue->count == 0) wait_on(&queue->not_empty, &queue->mutex);
    if (queue->capacity == 0) {
        value = queue->ring[0];
        queue->count = 0;
        queue->taken_count++;
        pthread_cond_broadcast(&queue->taken);
    } else {
        value = queue->ring[queue->head];
        queue->head = queue->head + 1 == queue->capacity ? 0 : queue->head + 1;
        queue->count--;
    }
    pthread_cond_signal(&queue->not_full);
    check(pthread_mutex_unlock(&queue->mutex), "pthread_mutex_unlock");
    return value;
}
