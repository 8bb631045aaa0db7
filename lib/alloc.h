/* Every allocation weft makes goes through here, so that tests can make
 * the k-th one fail and prove each constructor unwinds without a leak. */
#ifndef WEFT_LIB_ALLOC_H
#define WEFT_LIB_ALLOC_H

#include <stddef.h>

void *weft__malloc(size_t size);
void *weft__calloc(size_t count, size_t size);
void *weft__aligned_alloc(size_t alignment, size_t size); /* freed with weft__free */
void weft__free(void *p);

/* Test hook: the k-th allocation from now on (1-based) and every later
 * one fail, until the hook is reset with k == 0. Counts allocations from
 * every thread. */
void weft__alloc_fail_from(long k);

/* Allocations attempted since the last weft__alloc_fail_from call. Weft
 * counts only once a test has called one of these two: the first call
 * returns 0 and starts the count. */
long weft__alloc_count(void);

#endif
