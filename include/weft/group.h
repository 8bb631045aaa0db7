/* weft/group.h — a group of tasks with a shared context and the first
 * error, as golang.org/x/sync/errgroup.
 *
 * Each task runs in its own goroutine and gets the group's context. The
 * first task to return non-zero records that error and cancels the
 * context with it as the cause (weft_ctx_cause), so the others can stop
 * early. weft_group_wait waits for every task, then cancels the context
 * and returns the first error. A group made over a parent context is
 * canceled with it.
 *
 * Every function is safe from any thread; weft_group_wait and
 * weft_group_free from one owner thread. */
#ifndef WEFT_GROUP_H
#define WEFT_GROUP_H

#include "weft/ctx.h"
#include "weft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_group weft_group;

/* A task: returns 0 or an error (any non-zero int). */
typedef int (*weft_task)(weft_ctx *ctx, void *arg);

/* A group whose context is a child of parent (NULL: background).
 * NULL with errno ENOMEM. */
weft_group *weft_group_new(weft_ctx *parent);

/* The group's context. Borrowed: valid until weft_group_free. */
weft_ctx *weft_group_ctx(weft_group *g);

/* At most n tasks run at once (n < 0: no limit, the default). Changing the
 * limit while tasks run, or while a go or try_go is in progress, prints
 * "weft: ..." and aborts, as Go panics. */
void weft_group_set_limit(weft_group *g, int n);

/* Run fn(ctx, arg) in a new goroutine, first waiting for a free slot when
 * the group is at its limit. Returns 0; WEFT_EINVAL for a NULL fn or a
 * limit of 0 (it would wait forever); or the error of weft_go
 * (WEFT_EAGAIN, WEFT_ENOMEM) or WEFT_ENOMEM for the task's record (one
 * small allocation, freed when fn starts): then fn does not run and the
 * group is unchanged. */
int weft_group_go(weft_group *g, weft_task fn, void *arg);

/* As weft_group_go, but WEFT_EAGAIN instead of waiting at the limit
 * (and at a limit of 0). */
int weft_group_try_go(weft_group *g, weft_task fn, void *arg);

/* Wait for every task started so far, cancel the context, and return the
 * first non-zero error (0 if none). */
int weft_group_wait(weft_group *g);

/* Wait for every task still running (a group may be reused after
 * weft_group_wait), cancel and release the context, and free the group.
 * NULL is ignored. Safe as soon as weft_group_wait returned (or at any
 * time from the owner): no task touches the group after its end counts. */
void weft_group_free(weft_group *g);

#ifdef __cplusplus
}
#endif
#endif
