/* Private time helpers shared by the modules that sleep. */
#ifndef WEFT_LIB_TIME_INTERNAL_H
#define WEFT_LIB_TIME_INTERNAL_H

#include <time.h>

#include "weft/time.h"

/* A CLOCK_MONOTONIC time point as a timespec, for pthread_cond_timedwait
 * on a condition variable whose clock is CLOCK_MONOTONIC. */
struct timespec weft__timespec(weft_time t);

/* Test hook: a weft_timer's fire calls hook() on the timer thread just
 * before it sends its value (lib/weft_timer.c), so that a test can hold
 * a fire between leaving the heap and sending. NULL: no hook. */
void weft__timer_send_hook(void (*hook)(void));

#endif
