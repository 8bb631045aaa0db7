/* Task groups (errgroup): a WaitGroup for the tasks, a context canceled
 * at the first error, and an optional semaphore for the limit.
 *
 * The first error is recorded under the group's lock; the task that
 * records it cancels the context with the error as its cause after
 * dropping the lock. Each task's record is allocated by go and freed by
 * the task before it returns, so a group costs nothing per finished task.
 *
 * Lifetime: weft_group_free may run as soon as weft_group_wait returned,
 * which happens once the tasks' WaitGroup reaches zero. So a task's
 * weft_wg_done is its last touch of the group (the slot release, the
 * error record and the cancel come before it), and so is the done that
 * undoes the add when weft_go fails; weft_wg_done itself touches the
 * WaitGroup no more once a wait can see zero (lib/waitgroup.c). */
#include <errno.h>
#include <stdbool.h>

#include "weft/group.h"
#include "weft/sync.h"
#include "alloc.h"
#include "panic.h"

struct weft_group {
    weft_ctx *ctx; /* owned: the tasks' context */
    weft_wg tasks; /* one count per started task */
    weft_mutex lock;
    int first_error; /* under lock */
    int active;      /* calls of go/try_go in progress plus running tasks; under lock */
    int limit;       /* < 0: none; under lock, and changed only while active == 0 */
    weft_sem slots;  /* limit units when limit > 0 */
};

typedef struct {
    weft_group *group;
    weft_task fn;
    void *arg;
    bool holds_slot; /* took a unit of slots, to give back at the end */
} task;

weft_group *weft_group_new(weft_ctx *parent) {
    weft_group *group = weft__calloc(1, sizeof *group);
    if (!group) {
        errno = ENOMEM;
        return NULL;
    }
    group->ctx = weft_ctx_with_cancel(parent);
    if (!group->ctx) {
        weft__free(group);
        errno = ENOMEM;
        return NULL;
    }
    weft_wg_init(&group->tasks);
    weft_mutex_init(&group->lock);
    group->limit = -1;
    return group;
}

weft_ctx *weft_group_ctx(weft_group *g) { return g->ctx; }

void weft_group_set_limit(weft_group *g, int n) {
    weft_mutex_lock(&g->lock);
    if (g->active) weft__panic("weft_group_set_limit while tasks run");
    if (g->limit > 0) weft_sem_destroy(&g->slots);
    g->limit = n < 0 ? -1 : n;
    if (g->limit > 0) weft_sem_init(&g->slots, g->limit);
    weft_mutex_unlock(&g->lock);
}

/* Under no lock: the call or task is over. */
static void leave(weft_group *g, int error) {
    weft_mutex_lock(&g->lock);
    bool first = error && g->first_error == 0;
    if (first) g->first_error = error;
    g->active--;
    weft_mutex_unlock(&g->lock);
    if (first) weft_ctx_cancel_cause(g->ctx, error);
}

static void run_task(void *arg) {
    task job = *(task *)arg;
    weft__free(arg);
    weft_group *group = job.group;
    int error = job.fn(group->ctx, job.arg);
    if (job.holds_slot) weft_sem_release(&group->slots, 1);
    leave(group, error);
    weft_wg_done(&group->tasks); /* the last touch: wait may return and free */
}

/* Start fn in a goroutine (a slot, if holds_slot, already taken). */
static int start(weft_group *g, weft_task fn, void *arg, bool holds_slot) {
    int error = WEFT_ENOMEM;
    task *job = weft__malloc(sizeof *job);
    bool added = job != NULL;
    if (added) {
        *job = (task){g, fn, arg, holds_slot};
        weft_wg_add(&g->tasks, 1);
        error = weft_go(run_task, job);
        if (!error) return 0;
        weft__free(job);
    }
    if (holds_slot) weft_sem_release(&g->slots, 1);
    leave(g, 0);
    /* Last, as in run_task: a wait that this done releases may free g. */
    if (added) weft_wg_done(&g->tasks);
    return error;
}

/* Count the caller in (set_limit may not change the limit under it) and
 * return the limit. */
static int enter(weft_group *g) {
    weft_mutex_lock(&g->lock);
    g->active++;
    int limit = g->limit;
    weft_mutex_unlock(&g->lock);
    return limit;
}

int weft_group_go(weft_group *g, weft_task fn, void *arg) {
    if (!fn) return WEFT_EINVAL;
    int limit = enter(g);
    if (limit == 0) { /* would wait forever */
        leave(g, 0);
        return WEFT_EINVAL;
    }
    if (limit > 0) weft_sem_acquire(&g->slots, 1, NULL);
    return start(g, fn, arg, limit > 0);
}

int weft_group_try_go(weft_group *g, weft_task fn, void *arg) {
    if (!fn) return WEFT_EINVAL;
    int limit = enter(g);
    if (limit == 0 || (limit > 0 && weft_sem_try_acquire(&g->slots, 1) != 0)) {
        leave(g, 0);
        return WEFT_EAGAIN;
    }
    return start(g, fn, arg, limit > 0);
}

int weft_group_wait(weft_group *g) {
    weft_wg_wait(&g->tasks);
    weft_mutex_lock(&g->lock);
    int error = g->first_error;
    weft_mutex_unlock(&g->lock);
    weft_ctx_cancel_cause(g->ctx, error);
    return error;
}

void weft_group_free(weft_group *g) {
    if (!g) return;
    weft_group_wait(g);
    weft_ctx_release(g->ctx);
    if (g->limit > 0) weft_sem_destroy(&g->slots);
    weft_mutex_destroy(&g->lock);
    weft_wg_destroy(&g->tasks);
    weft__free(g);
}
