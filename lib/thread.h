/* Private helpers for weft's own threads and condition variables. */
#ifndef WEFT_LIB_THREAD_H
#define WEFT_LIB_THREAD_H

#include <pthread.h>

/* Initialize a condition variable whose timed waits use CLOCK_MONOTONIC,
 * so a wall-clock step never stretches or cuts a deadline. Returns 0 or
 * the pthread error. */
int weft__monotonic_cond_init(pthread_cond_t *cond);

/* Start a detached internal thread (the timer thread, the deadlock
 * watchdog) with every signal blocked: the thread inherits its creator's
 * mask, and a process signal must never be delivered to a thread the
 * program does not know exists. Returns 0 or the pthread_create error. */
int weft__start_service_thread(void *(*body)(void *));

#endif
