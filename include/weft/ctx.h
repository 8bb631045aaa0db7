/* weft/ctx.h — cancellation trees with deadlines and values, as Go's
 * context package (go1.21: causes, AfterFunc, WithoutCancel).
 *
 * A context is canceled once, by weft_ctx_cancel, by its deadline, or by
 * its parent; canceling it cancels its whole subtree with the same error
 * and cause, and closes its done channel, which wakes every weft call
 * blocked on it: the _ctx forms of channel operations, select and the
 * sync primitives, and any weft_select with a receive case on
 * weft_ctx_done.
 *
 * Ownership: each with_* constructor returns one reference; the owner
 * drops it with weft_ctx_release. Releasing never cancels a context others
 * still hold; the last release detaches the context from its parent and
 * from its pending deadline and frees it. Go's
 *     ctx, cancel := context.WithCancel(parent); defer cancel()
 * is weft_ctx_with_cancel(parent) and, at the end of the owner's scope,
 *     weft_ctx_cancel(ctx); weft_ctx_release(ctx);
 * A goroutine that outlives its caller's scope retains the context it is
 * given and releases it when done. Children keep their parents alive.
 * The background context is static: retain and release ignore it, and
 * passing NULL wherever a context is taken means background.
 * Once a thread has seen a context end (weft_ctx_err non-zero, its done
 * channel closed, a _ctx call returning its error) or seen an
 * after-function run, it may release its reference at once, even the
 * last, while the canceling thread (the timer thread, for a deadline) or
 * the goroutine that ran the after-function is still returning.
 *
 * Errors: weft_ctx_err is 0 while the context is live, then WEFT_ECANCELED
 * (canceled, by itself or an ancestor) or WEFT_ETIMEDOUT (a deadline
 * passed); it never changes again. A constructor whose parent has already
 * ended returns a child that is born finished with the parent's error.
 *
 * Cost: creating a cancelable context allocates it and its done channel
 * and takes the parent's lock to link it; a deadline adds an O(log n)
 * insertion into the timer thread's heap. weft_ctx_err is two loads.
 * Canceling takes each descendant's lock in turn, parent before child (so
 * trees may be canceled from many threads at once), and runs in time
 * proportional to the subtree; its recursion is as deep as the tree.
 *
 * Every function is safe from any thread. */
#ifndef WEFT_CTX_H
#define WEFT_CTX_H

#include <stdbool.h>

#include "weft/chan.h"
#include "weft/error.h"
#include "weft/go.h" /* weft_fn */
#include "weft/time.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef WEFT_CTX_TYPEDEF
#define WEFT_CTX_TYPEDEF
typedef struct weft_ctx weft_ctx;
#endif

/* The root: never canceled, no deadline, no values. Static. */
weft_ctx *weft_ctx_background(void);

/* A child that is canceled by weft_ctx_cancel or with its parent.
 * Returns NULL with errno ENOMEM when memory runs out. */
weft_ctx *weft_ctx_with_cancel(weft_ctx *parent);

/* As with_cancel, and canceled with WEFT_ETIMEDOUT at deadline (the
 * parent's deadline if that is earlier). A deadline at or before now gives
 * a child born finished with WEFT_ETIMEDOUT. NULL/ENOMEM as with_cancel;
 * errno EAGAIN when the timer thread cannot be started. */
weft_ctx *weft_ctx_with_deadline(weft_ctx *parent, weft_time deadline);

/* with_deadline(parent, weft_deadline(timeout)). */
weft_ctx *weft_ctx_with_timeout(weft_ctx *parent, weft_time timeout);

/* A child that carries key -> value and is otherwise its parent: same
 * error, done channel and deadline. Lookups compare key pointers (use the
 * address of a static object as a key). NULL/ENOMEM as with_cancel. */
weft_ctx *weft_ctx_with_value(weft_ctx *parent, const void *key, void *value);

/* A child that keeps its parent's values but is never canceled by it: no
 * error, no done channel, no deadline (Go's WithoutCancel). */
weft_ctx *weft_ctx_without_cancel(weft_ctx *parent);

/* Cancel ctx and every descendant with WEFT_ECANCELED, close their done
 * channels, start their after-functions, and unlink ctx from its parent.
 * Idempotent: a finished context keeps its first error. Only contexts
 * made by with_cancel, with_deadline and with_timeout can be canceled;
 * for the others (background, with_value, without_cancel) it does
 * nothing. Never blocks on anything but short internal locks. */
void weft_ctx_cancel(weft_ctx *ctx);

/* As weft_ctx_cancel, recording cause (any int; 0 means "none", and the
 * cause is then the error) for weft_ctx_cause of ctx and its subtree. */
void weft_ctx_cancel_cause(weft_ctx *ctx, int cause);

/* 0 while live; then WEFT_ECANCELED or WEFT_ETIMEDOUT, forever. */
int weft_ctx_err(weft_ctx *ctx);

/* Why ctx ended: the cause given to weft_ctx_cancel_cause (inherited by
 * descendants), else the error itself. 0 while live. */
int weft_ctx_cause(weft_ctx *ctx);

/* A channel closed when ctx ends, for weft_select (elem_size 0). Borrowed:
 * valid while ctx is; do not release it. Receive-only, as Go's Done():
 * weft_chan_close on it, or a send (direct or in a select), prints a
 * "weft: ..." line and aborts. NULL for a context that can never be
 * canceled (background, values over it, without_cancel). For a poll or
 * epoll loop, weft_ctx_fd (weft/io.h) gives an fd that says the same. */
weft_chan *weft_ctx_done(weft_ctx *ctx);

/* The value of the nearest context in ctx's chain made with key, or NULL. */
void *weft_ctx_value(weft_ctx *ctx, const void *key);

/* The deadline ctx ends at (the earliest in its chain), or WEFT_FOREVER. */
weft_time weft_ctx_deadline(weft_ctx *ctx);

/* Add a reference; drop one. The last release unlinks ctx from its parent
 * and its deadline and frees it (without canceling descendants, which hold
 * references of their own). NULL and background are ignored. */
void weft_ctx_retain(weft_ctx *ctx);
void weft_ctx_release(weft_ctx *ctx);

/* A registration made by weft_ctx_after_func. */
typedef struct weft_ctx_after weft_ctx_after;

/* Arrange for fn(arg) to run in its own goroutine once ctx ends (at once
 * if it has ended already). The registration keeps ctx alive until fn
 * starts or the registration is stopped. Returns the handle, which the
 * caller must pass to weft_ctx_after_stop exactly once, whether fn ran or
 * not; NULL with errno ENOMEM. Should no goroutine be available when ctx
 * ends, fn runs on a new detached thread, or as a last resort on the thread
 * that ended ctx: it is never skipped. */
weft_ctx_after *weft_ctx_after_func(weft_ctx *ctx, weft_fn fn, void *arg);

/* Prevent fn from starting, if it has not started, and free the handle.
 * Returns true if this call prevented it; false if fn has started (it may
 * still be running). */
bool weft_ctx_after_stop(weft_ctx_after *after);

#ifdef __cplusplus
}
#endif
#endif
