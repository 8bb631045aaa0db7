/* layout.h — the public structs' layouts, as one compiler sees them.
 *
 * weft/sync.h shows C++ a plain field where C has an _Atomic one
 * (WEFT__ATOMIC_FIELD). A C++ program passes these structs to the C
 * library by pointer and initializes them with the _INIT macros, so both
 * languages must agree on every size, alignment and field offset.
 * layout.c records them as the C compiler sees them; hello.cpp computes
 * the same table and compares. */
#ifndef WEFT_TEST_INSTALL_LAYOUT_H
#define WEFT_TEST_INSTALL_LAYOUT_H

#include <stddef.h>

#include <weft.h>

#ifdef __cplusplus
#define LAYOUT_ALIGNOF(type) alignof(type)
extern "C" {
#else
#define LAYOUT_ALIGNOF(type) _Alignof(type)
#endif

/* X(type, field) for every field of every public struct. */
/* clang-format off */
#define LAYOUT_FIELDS(X)                                                                  \
    X(weft__sync_queue, first) X(weft__sync_queue, last)                                 \
    X(weft_wg, state) X(weft_wg, lock) X(weft_wg, queue)                                 \
    X(weft_mutex, state) X(weft_mutex, lock) X(weft_mutex, queue)                        \
    X(weft_rwmutex, state) X(weft_rwmutex, lock) X(weft_rwmutex, readers)                \
    X(weft_rwmutex, writers)                                                             \
    X(weft_once, state) X(weft_once, lock) X(weft_once, queue)                           \
    X(weft_sem, capacity) X(weft_sem, held) X(weft_sem, lock) X(weft_sem, queue)         \
    X(weft_cond, lock) X(weft_cond, queue)                                               \
    X(weft_case, ch) X(weft_case, dir) X(weft_case, elem) X(weft_case, err)              \
    X(weft_pool_opts, min_threads) X(weft_pool_opts, max_threads)                        \
    X(weft_pool_opts, idle_timeout) X(weft_pool_opts, stack_size) X(weft_pool_opts, name)
/* clang-format on */

struct layout_entry {
    const char *name; /* "type.field" */
    size_t type_size, type_align, field_offset, field_size;
};

#define LAYOUT_ENTRY(type, field)                                                 \
    {#type "." #field, sizeof(type), LAYOUT_ALIGNOF(type), offsetof(type, field), \
     sizeof(((type *)0)->field)},

/* The table as the C compiler sees it (layout.c). */
extern const struct layout_entry c_layout[];
extern const size_t c_layout_count;

#ifdef __cplusplus
}
#endif
#endif
