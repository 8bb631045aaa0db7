/* condvar_queue.h — the baseline weft-bench measures weft against: a
 * bounded queue of longs built the way a C programmer writes one by hand,
 * with one pthread mutex and condition variables.
 *
 * capacity >= 1: a ring of `capacity` slots; a sender waits while the ring
 * is full, a receiver while it is empty.
 * capacity == 0: rendezvous, as an unbuffered channel: one slot, and a
 * sender returns only after a receiver has taken its value.
 *
 * Every operation takes the mutex; a waiting thread sleeps on a condition
 * variable (no spinning). Safe for any number of senders and receivers. */
#ifndef WEFT_BENCH_CONDVAR_QUEUE_H
#define WEFT_BENCH_CONDVAR_QUEUE_H

#include <stddef.h>

typedef struct condvar_queue condvar_queue;

/* A new, empty queue. Returns NULL (errno set) when memory runs out or
 * the ring size overflows. */
condvar_queue *condvar_queue_make(size_t capacity);

/* Frees the queue; no thread may still use it. NULL is ignored. */
void condvar_queue_free(condvar_queue *queue);

/* Blocks until value is in the ring (capacity >= 1) or has been taken by
 * a receiver (capacity 0). Cannot fail. */
void condvar_queue_send(condvar_queue *queue, long value);

/* Blocks until a value is available and returns it. Cannot fail. */
long condvar_queue_receive(condvar_queue *queue);

#endif
