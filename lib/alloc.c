/* Allocation wrappers with a failure-injection hook for tests. Until a test
 * sets the hook, an allocation pays one relaxed load of a flag that is
 * never written: counting every allocation in one shared counter would
 * bounce its cache line between all the threads that make channels. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "alloc.h"

static atomic_bool hooked;    /* a test has used the hook: count from now on */
static atomic_long fail_from; /* 0: never fail; k: the k-th and later fail */
static atomic_long attempts;  /* allocations since the hook was set */

static int should_fail(void) {
    if (!atomic_load_explicit(&hooked, memory_order_relaxed)) return 0;
    long count = atomic_fetch_add_explicit(&attempts, 1, memory_order_relaxed) + 1;
    long k = atomic_load_explicit(&fail_from, memory_order_relaxed);
    return k > 0 && count >= k;
}

void *weft__malloc(size_t size) {
    if (should_fail()) return NULL;
    return malloc(size);
}

void *weft__calloc(size_t count, size_t size) {
    if (should_fail()) return NULL;
    return calloc(count, size);
}

void *weft__aligned_alloc(size_t alignment, size_t size) {
    if (should_fail()) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, alignment, size ? size : alignment) != 0) return NULL;
    return p;
}

void weft__free(void *p) { free(p); }

void weft__alloc_fail_from(long k) {
    atomic_store(&hooked, true);
    atomic_store(&attempts, 0);
    atomic_store(&fail_from, k);
}

long weft__alloc_count(void) {
    if (!atomic_load(&hooked)) {
        atomic_store(&hooked, true);
        return 0;
    }
    return atomic_load(&attempts);
}
