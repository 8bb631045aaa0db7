/* Contexts: cancellation trees with deadlines, values and causes.
 *
 * Kinds. A cancelable context (with_cancel, with_deadline) owns a lock,
 * an error word, a done channel and a list of listeners: its cancelable
 * children and its after-functions. A value context and a without_cancel
 * context own nothing that can change; they only point up the chain.
 * Every context caches `canceler`, the nearest cancelable context at or
 * above it whose end is its end (itself, for a cancelable one; NULL when
 * nothing above can end it), so err, cause, done and deadline are one
 * pointer and one load away whatever the depth of value contexts.
 *
 * Linking. A new cancelable context, or an after-function, registers a
 * listener with its parent's canceler, under that canceler's lock, unless
 * the canceler has already ended: then it is born finished with the same
 * error and cause. A child's own reference on its parent keeps every
 * ancestor alive, so the canceler it is linked to outlives the link.
 *
 * Canceling (cancel_tree) takes the context's lock, records error and
 * cause (cause first, then err with release order: a reader that loads a
 * non-zero err with acquire sees the cause), closes the done channel
 * (the close wakes every blocked _ctx call and select), empties the
 * listener list and cancels each child while still holding the lock,
 * parent before child. Two cancels racing over one tree meet in that
 * order only, so they cannot deadlock. A child canceled by itself (or by
 * its deadline) then unlinks from its parent; one canceled by its parent
 * is already out of the list.
 *
 * Freeing. The last release stops the deadline timer (weft__timer_stop
 * waits for a fire in progress, which is a cancel of this context), then
 * unlinks the context from its parent's canceler, and drops its reference
 * on its parent: chains are freed iteratively, never by recursion. A
 * context being freed may still sit in its parent's list while a cancel
 * runs over that list; the unlink waits for the parent's lock, so the
 * cancel finishes with it before its memory goes.
 *
 * No ctx lock is held while releasing references or starting
 * after-functions: a release that frees could otherwise wait for a timer
 * fire that waits for the lock we hold. Locks nest as ctx (parent, then
 * child) -> done channel's lock, and ctx -> timer lock; never the other
 * way. A cancel takes a pending deadline out of the timer heap at once
 * (weft__timer_cancel, which does not wait for a fire in progress: that
 * fire may be waiting for the lock the cancel holds).
 *
 * The end's fd (weft_ctx_fd, weft/io.h). A cancelable context may own an
 * eventfd, made on the first weft_ctx_fd under its lock and written once
 * when it ends: by end_locked, under the same lock, right after err is
 * stored (so whoever sees the fd readable sees err set), or at creation
 * when the context has ended already. The write falls inside the window
 * in which the ending call keeps the context alive (its own reference for
 * a cancel, the timer fire for a deadline, the parent's lock for a child
 * canceled by its parent: its free waits for that lock), so the owner may
 * release it the moment it sees the end. The fd is closed when the
 * context is freed. A value context's fd is its canceler's, which
 * outlives it. Known gap: no fork handler renews these fds, so a forked
 * child's copy of a context shares the parent's eventfd. */
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "weft/ctx.h"
#include "weft/io.h"
#include "alloc.h"
#include "chan_internal.h"
#include "panic.h"
#include "timer.h"

enum kind { BACKGROUND, CANCELABLE, VALUE, DETACHED };

/* An entry in a cancelable context's list: a child context or an
 * after-function. Fields under the lock of the context it is listed in. */
typedef struct listener {
    struct listener *prev, *next;
    bool linked;
    bool is_after; /* a weft_ctx_after, else a weft_ctx */
} listener;

struct weft_ctx {
    atomic_long references; /* the last release frees */
    enum kind kind;
    weft_ctx *parent;   /* referenced; NULL for background */
    weft_ctx *canceler; /* nearest cancelable at or above; NULL if none */

    const void *key; /* VALUE */
    void *value;

    /* CANCELABLE only. */
    pthread_mutex_t lock;
    atomic_int err;      /* 0 until canceled; written under lock, once */
    int cause;           /* written under lock before err */
    weft_chan *done;     /* closed at cancel */
    weft_time deadline;  /* the earliest in the chain; constant */
    weft__timer timer;   /* pending while the deadline is ahead */
    bool has_timer;      /* timer was started; under lock */
    listener *children;  /* under lock */
    listener link;       /* in the parent canceler's list, under its lock */
    weft_ctx *linked_to; /* that canceler; NULL if never linked */
    int end_fd;          /* weft_ctx_fd's eventfd, -1 until made; under lock */
};

struct weft_ctx_after {
    listener link;         /* in canceler's list, under its lock */
    atomic_int references; /* the caller's handle and the registration */
    weft_ctx *ctx;         /* referenced while registered */
    weft_ctx *canceler;    /* whose list; NULL: ctx can never end */
    weft_fn fn;
    void *arg;
    atomic_int state; /* WAITING, then STARTED (by the end) or STOPPED (by stop) */
    struct weft_ctx_after *launch_next; /* a cancel's list of fns to start */
};

/* weft_ctx_after.state: whoever moves it from WAITING decides whether fn
 * runs. A CAS, not the canceler's lock, because once fn has run the
 * registration's reference is gone and the canceler may be too: stop
 * must learn that without touching it. */
enum { WAITING, STARTED, STOPPED };

static weft_ctx background = {.kind = BACKGROUND};

weft_ctx *weft_ctx_background(void) { return &background; }

static inline weft_ctx *or_background(weft_ctx *ctx) { return ctx ? ctx : &background; }

static weft_ctx *context_of(listener *link) {
    return (weft_ctx *)((char *)link - offsetof(weft_ctx, link));
}

static weft_ctx_after *after_of(listener *link) {
    return (weft_ctx_after *)((char *)link - offsetof(weft_ctx_after, link));
}

/* ---- listener lists (under the owning context's lock) ------------------- */

static void list_add(weft_ctx *owner, listener *link) {
    link->prev = NULL;
    link->next = owner->children;
    if (owner->children) owner->children->prev = link;
    owner->children = link;
    link->linked = true;
}

static void list_remove(weft_ctx *owner, listener *link) {
    if (!link->linked) return;
    if (link->prev)
        link->prev->next = link->next;
    else
        owner->children = link->next;
    if (link->next) link->next->prev = link->prev;
    link->prev = link->next = NULL;
    link->linked = false;
}

static void lock(weft_ctx *ctx) {
    int error = pthread_mutex_lock(&ctx->lock);
    if (error) weft__panic_errno("pthread_mutex_lock", error);
}

static void unlock(weft_ctx *ctx) {
    int error = pthread_mutex_unlock(&ctx->lock);
    if (error) weft__panic_errno("pthread_mutex_unlock", error);
}

/* ---- canceling ---------------------------------------------------------- */

/* Under ctx's lock, once ctx has ended: make its end fd readable, if it
 * has one. Written once, so the counter never overflows and the write
 * never would block. */
static void signal_end_fd(weft_ctx *ctx) {
    if (ctx->end_fd < 0) return;
    uint64_t one = 1;
    while (write(ctx->end_fd, &one, sizeof one) < 0 && errno == EINTR) {}
}

/* Under ctx's lock: end ctx with err and cause, close its done channel,
 * and cancel its subtree, collecting after-functions to start into
 * *launch. Returns false if ctx had already ended. */
static bool end_locked(weft_ctx *ctx, int err, int cause, weft_ctx_after **launch) {
    if (atomic_load_explicit(&ctx->err, memory_order_relaxed)) return false;
    ctx->cause = cause;
    atomic_store_explicit(&ctx->err, err, memory_order_release);
    signal_end_fd(ctx);
    weft__chan_close_owned(ctx->done);
    if (ctx->has_timer) weft__timer_cancel(&ctx->timer); /* free its heap slot now */
    listener *link = ctx->children;
    ctx->children = NULL;
    while (link) {
        listener *next = link->next;
        link->prev = link->next = NULL;
        link->linked = false;
        if (link->is_after) {
            weft_ctx_after *after = after_of(link);
            int waiting = WAITING;
            if (atomic_compare_exchange_strong(&after->state, &waiting, STARTED)) {
                after->launch_next = *launch;
                *launch = after;
            } /* else a stop won, and is about to unlink it (already done) */
        } else {
            weft_ctx *child = context_of(link);
            lock(child);
            end_locked(child, err, cause, launch);
            unlock(child);
        }
        link = next;
    }
    return true;
}

static void launch_all(weft_ctx_after *launch);

/* Cancel ctx (cancelable) and its subtree; unlink it from its parent. */
static void cancel_tree(weft_ctx *ctx, int err, int cause) {
    weft_ctx_after *launch = NULL;
    lock(ctx);
    bool ended = end_locked(ctx, err, cause, &launch);
    unlock(ctx);
    if (!ended) return;
    weft_ctx *parent = ctx->linked_to;
    if (parent) {
        lock(parent);
        list_remove(parent, &ctx->link);
        unlock(parent);
    }
    launch_all(launch);
}

/* The cancel is visible (err, the done channel) before cancel_tree is
 * through with ctx: its owner may see it and drop the last reference
 * while this call still holds ctx's lock and walks its list. So the call
 * holds a reference of its own until it returns; the last release may
 * then be ours, and frees ctx here. (A deadline's cancel needs none: the
 * last release's weft__timer_stop waits for the fire to return.) */
void weft_ctx_cancel_cause(weft_ctx *ctx, int cause) {
    if (!ctx || ctx->kind != CANCELABLE) return;
    weft_ctx_retain(ctx);
    cancel_tree(ctx, WEFT_ECANCELED, cause ? cause : WEFT_ECANCELED);
    weft_ctx_release(ctx);
}

void weft_ctx_cancel(weft_ctx *ctx) { weft_ctx_cancel_cause(ctx, 0); }

static void deadline_passed(weft__timer *timer) {
    weft_ctx *ctx = (weft_ctx *)((char *)timer - offsetof(weft_ctx, timer));
    cancel_tree(ctx, WEFT_ETIMEDOUT, WEFT_ETIMEDOUT);
}

/* ---- queries ------------------------------------------------------------ */

int weft_ctx_err(weft_ctx *ctx) {
    weft_ctx *canceler = ctx ? ctx->canceler : NULL;
    return canceler ? atomic_load_explicit(&canceler->err, memory_order_acquire) : 0;
}

int weft_ctx_cause(weft_ctx *ctx) {
    weft_ctx *canceler = ctx ? ctx->canceler : NULL;
    if (!canceler || !atomic_load_explicit(&canceler->err, memory_order_acquire)) return 0;
    return canceler->cause;
}

weft_chan *weft_ctx_done(weft_ctx *ctx) {
    weft_ctx *canceler = ctx ? ctx->canceler : NULL;
    return canceler ? canceler->done : NULL;
}

weft_time weft_ctx_deadline(weft_ctx *ctx) {
    weft_ctx *canceler = ctx ? ctx->canceler : NULL;
    return canceler ? canceler->deadline : WEFT_FOREVER;
}

void *weft_ctx_value(weft_ctx *ctx, const void *key) {
    for (; ctx; ctx = ctx->parent)
        if (ctx->kind == VALUE && ctx->key == key) return ctx->value;
    return NULL;
}

/* The canceler's end fd, made now if it has none. */
int weft_ctx_fd(weft_ctx *ctx) {
    weft_ctx *canceler = ctx ? ctx->canceler : NULL;
    if (!canceler) return WEFT_EINVAL;
    int result;
    lock(canceler);
    if (canceler->end_fd < 0) {
        canceler->end_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (canceler->end_fd >= 0 && atomic_load_explicit(&canceler->err, memory_order_relaxed))
            signal_end_fd(canceler);
    }
    result = canceler->end_fd >= 0 ? canceler->end_fd : WEFT_ESYS;
    int saved_errno = errno;
    unlock(canceler);
    errno = saved_errno;
    return result;
}

/* ---- references --------------------------------------------------------- */

void weft_ctx_retain(weft_ctx *ctx) {
    if (!ctx || ctx->kind == BACKGROUND) return;
    atomic_fetch_add_explicit(&ctx->references, 1, memory_order_relaxed);
}

/* Free ctx, whose last reference is gone; returns its parent, whose
 * reference ctx held. */
static weft_ctx *destroy(weft_ctx *ctx) {
    if (ctx->kind == CANCELABLE) {
        weft__timer_stop(&ctx->timer);
        weft_ctx *parent = ctx->linked_to;
        if (parent) {
            lock(parent);
            list_remove(parent, &ctx->link);
            unlock(parent);
        }
        weft_chan_release(ctx->done);
        if (ctx->end_fd >= 0) close(ctx->end_fd);
        pthread_mutex_destroy(&ctx->lock);
    }
    weft_ctx *parent = ctx->parent;
    weft__free(ctx);
    return parent;
}

void weft_ctx_release(weft_ctx *ctx) {
    while (ctx && ctx->kind != BACKGROUND) {
        if (atomic_fetch_sub_explicit(&ctx->references, 1, memory_order_acq_rel) != 1) return;
        ctx = destroy(ctx);
    }
}

/* ---- constructors ------------------------------------------------------- */

/* A context of kind under parent (referenced), not yet linked. */
static weft_ctx *new_context(enum kind kind, weft_ctx *parent) {
    weft_ctx *ctx = weft__calloc(1, sizeof *ctx);
    if (!ctx) {
        errno = ENOMEM;
        return NULL;
    }
    atomic_init(&ctx->references, 1);
    ctx->kind = kind;
    ctx->parent = parent;
    ctx->canceler = kind == DETACHED ? NULL : parent->canceler;
    weft_ctx_retain(parent);
    return ctx;
}

/* A cancelable child of parent ending at deadline at the latest, linked
 * to the parent's canceler or born finished. The timer is not started. */
static weft_ctx *new_cancelable(weft_ctx *parent, weft_time deadline) {
    weft_ctx *ctx = new_context(CANCELABLE, parent);
    if (!ctx) return NULL;
    ctx->done = weft_chan_make(0, 0);
    if (!ctx->done) {
        weft_ctx_release(parent);
        weft__free(ctx);
        errno = ENOMEM;
        return NULL;
    }
    weft__chan_set_receive_only(ctx->done);
    int error = pthread_mutex_init(&ctx->lock, NULL);
    if (error) weft__panic_errno("pthread_mutex_init", error);
    weft__timer_init(&ctx->timer, deadline_passed);
    ctx->end_fd = -1;
    weft_time inherited = weft_ctx_deadline(parent);
    ctx->deadline = deadline < inherited ? deadline : inherited;
    ctx->canceler = ctx;

    weft_ctx *above = parent->canceler;
    if (above) {
        lock(above);
        int err = atomic_load_explicit(&above->err, memory_order_relaxed);
        if (err) {
            /* Born finished; nothing to cancel below a new context. */
            ctx->cause = above->cause;
            atomic_store_explicit(&ctx->err, err, memory_order_release);
            weft__chan_close_owned(ctx->done);
        } else {
            list_add(above, &ctx->link);
            ctx->linked_to = above;
        }
        unlock(above);
    }
    return ctx;
}

weft_ctx *weft_ctx_with_cancel(weft_ctx *parent) {
    return new_cancelable(or_background(parent), WEFT_FOREVER);
}

weft_ctx *weft_ctx_with_deadline(weft_ctx *parent, weft_time deadline) {
    parent = or_background(parent);
    /* A parent that ends first makes our own timer pointless. */
    bool own = deadline < weft_ctx_deadline(parent);
    weft_ctx *ctx = new_cancelable(parent, own ? deadline : WEFT_FOREVER);
    if (!ctx || weft_ctx_err(ctx)) return ctx;
    if (weft_now() >= deadline) {
        /* Born finished, even when the parent's earlier deadline has
         * passed too but its timer has not fired yet. */
        cancel_tree(ctx, WEFT_ETIMEDOUT, WEFT_ETIMEDOUT);
        return ctx;
    }
    if (!own) return ctx;
    lock(ctx);
    ctx->has_timer = true; /* a cancel from now on takes the timer out */
    unlock(ctx);
    int error = weft__timer_start(&ctx->timer, deadline);
    if (error) {
        weft_ctx_release(ctx);
        errno = error == WEFT_ENOMEM ? ENOMEM : EAGAIN;
        return NULL;
    }
    return ctx;
}

weft_ctx *weft_ctx_with_timeout(weft_ctx *parent, weft_time timeout) {
    return weft_ctx_with_deadline(parent, weft_deadline(timeout));
}

weft_ctx *weft_ctx_with_value(weft_ctx *parent, const void *key, void *value) {
    weft_ctx *ctx = new_context(VALUE, or_background(parent));
    if (!ctx) return NULL;
    ctx->key = key;
    ctx->value = value;
    return ctx;
}

weft_ctx *weft_ctx_without_cancel(weft_ctx *parent) {
    return new_context(DETACHED, or_background(parent));
}

/* ---- after-functions ---------------------------------------------------- */

/* Drop one of the handle's two references; the second frees it. */
static void after_unref(weft_ctx_after *after) {
    if (atomic_fetch_sub_explicit(&after->references, 1, memory_order_acq_rel) == 1)
        weft__free(after);
}

static void run_after(void *arg) {
    weft_ctx_after *after = arg;
    after->fn(after->arg);
    weft_ctx_release(after->ctx);
    after_unref(after);
}

static void *run_after_thread(void *arg) {
    run_after(arg);
    return NULL;
}

/* Start each fn of the list in its own goroutine; a detached thread if
 * the pools cannot take it; inline if even that fails (never skipped). */
static void launch_all(weft_ctx_after *launch) {
    while (launch) {
        weft_ctx_after *after = launch;
        launch = after->launch_next;
        if (weft_go(run_after, after) == 0) continue;
        pthread_t thread;
        pthread_attr_t attributes;
        bool started = false;
        if (pthread_attr_init(&attributes) == 0) {
            pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
            started = pthread_create(&thread, &attributes, run_after_thread, after) == 0;
            pthread_attr_destroy(&attributes);
        }
        if (!started) run_after(after);
    }
}

weft_ctx_after *weft_ctx_after_func(weft_ctx *ctx, weft_fn fn, void *arg) {
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    ctx = or_background(ctx);
    weft_ctx_after *after = weft__calloc(1, sizeof *after);
    if (!after) {
        errno = ENOMEM;
        return NULL;
    }
    atomic_init(&after->references, 2);
    after->link.is_after = true;
    after->fn = fn;
    after->arg = arg;
    after->ctx = ctx;
    after->canceler = ctx->canceler;
    atomic_init(&after->state, WAITING);
    weft_ctx_retain(ctx);
    weft_ctx *canceler = after->canceler;
    if (!canceler) return after; /* can never end: fn never runs */
    lock(canceler);
    bool ended = atomic_load_explicit(&canceler->err, memory_order_relaxed) != 0;
    if (ended)
        atomic_store(&after->state, STARTED);
    else
        list_add(canceler, &after->link);
    unlock(canceler);
    if (ended) {
        after->launch_next = NULL;
        launch_all(after);
    }
    return after;
}

bool weft_ctx_after_stop(weft_ctx_after *after) {
    if (!after) return false;
    int waiting = WAITING;
    bool prevented = atomic_compare_exchange_strong(&after->state, &waiting, STOPPED);
    weft_ctx *canceler = after->canceler;
    if (prevented && canceler) {
        /* Alive: the registration's reference on ctx is not dropped yet. */
        lock(canceler);
        list_remove(canceler, &after->link);
        unlock(canceler);
    }
    if (prevented) {
        /* The registration's reference: fn will never run to drop it. */
        weft_ctx_release(after->ctx);
        after_unref(after);
    }
    after_unref(after);
    return prevented;
}
