/* Private hooks into the goroutine pools (lib/go.c), for tests. */
#ifndef WEFT_LIB_GO_INTERNAL_H
#define WEFT_LIB_GO_INTERNAL_H

#include "weft/go.h"

/* The default pool that weft_go uses, started if it was not yet. */
weft_pool *weft__pool_default(void);

/* Threads that belong to pool p now: idle, running a goroutine, or being
 * started. Threads that timed out and left are not counted. */
int weft__pool_threads(weft_pool *p);

/* Threads pool p has started since it was made (a thread that fails to
 * start is not counted). */
long weft__pool_threads_started(weft_pool *p);

/* Test hook: the next count thread starts, in any pool, fail as if
 * pthread_create had returned EAGAIN. count 0 cancels the hook. */
void weft__pool_fail_thread_create(int count);

#endif
