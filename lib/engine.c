/* The blocking engine (engine.h): the one place where a weft wait over
 * channels, fds and deadlines enlists, parks and withdraws. */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "alloc.h"
#include "engine.h"

/* park_polling's words, beside the case indexes and error codes it also
 * returns: woken by an unpark; woken by events no source wants. */
enum { WEFT__UNPARKED = -1000, WEFT__SPURIOUS = -1001 };

static inline size_t case_at(const unsigned *order, size_t k) { return order ? order[k] : k; }

static inline const weft__source *source_of(const weft_case *c, const weft__source_kinds kinds) {
    return kinds[c->dir];
}

int weft__engine_attempt_all(weft_case *cases, size_t n, const unsigned *order,
                             const weft__parker *self, const weft__source_kinds kinds) {
    for (size_t k = 0; k < n; k++) {
        size_t i = case_at(order, k);
        int result = source_of(&cases[i], kinds)->attempt(&cases[i], self);
        if (result != WEFT_EAGAIN) {
            cases[i].err = result;
            return (int)i;
        }
    }
    return WEFT_EAGAIN;
}

/* Take back every waiter but those on the object of case chosen (-1:
 * nobody else completed a case, take back all). */
static void withdraw_all(const weft_case *cases, size_t n, weft__waiter *waiters, int chosen,
                         const weft__source_kinds kinds) {
    const void *claimed = NULL;
    if (chosen >= 0) claimed = source_of(&cases[chosen], kinds)->object(&cases[chosen]);
    for (size_t i = 0; i < n; i++) {
        const weft__source *source = source_of(&cases[i], kinds);
        if (claimed && source->object(&cases[i]) == claimed) continue;
        source->withdraw(&cases[i], &waiters[i]);
    }
}

/* Whether some object appears in more than one case. Past a few cases the
 * answer is a conservative yes: it only makes a claimer look through the
 * object's queues for our other waiters. */
static bool objects_repeat(const weft_case *cases, size_t n, const weft__source_kinds kinds) {
    enum { EXACT_UP_TO = 16 };
    if (n > EXACT_UP_TO) return true;
    for (size_t i = 0; i < n; i++) {
        const void *object = source_of(&cases[i], kinds)->object(&cases[i]);
        if (!object) continue;
        for (size_t j = i + 1; j < n; j++)
            if (source_of(&cases[j], kinds)->object(&cases[j]) == object) return true;
    }
    return false;
}

/* Without a parker (its one-time allocation failed) a thread cannot sleep
 * on a waiter; it still blocks correctly by retrying, yielding the CPU
 * between attempts, as the sync primitives do. */
static int poll_yielding(weft_case *cases, size_t n, const unsigned *order, weft_time deadline,
                         const weft__source_kinds kinds) {
    for (;;) {
        int chosen = weft__engine_attempt_all(cases, n, order, NULL, kinds);
        if (chosen >= 0) return chosen;
        if (deadline != WEFT_FOREVER && weft_now() >= deadline) return WEFT_ETIMEDOUT;
        sched_yield();
    }
}

/* Per-case scratch of one wait: a waiter per case, and for the cases the
 * kernel reports on a pollfd (one more slot for the parker's eventfd) and
 * the case it stands for. */
typedef struct {
    weft__waiter *waiters;
    struct pollfd *fds;
    unsigned *fd_case;
    void *allocated;
} scratch;

static bool scratch_make(scratch *s, size_t n, weft__waiter *waiters, struct pollfd *fds,
                         unsigned *fd_case) {
    *s = (scratch){waiters, fds, fd_case, NULL};
    if (n <= WEFT_SELECT_STACK_CASES) return true;
    size_t bytes = n * sizeof *waiters + (n + 1) * sizeof *fds + n * sizeof *fd_case;
    unsigned char *memory = weft__malloc(bytes);
    if (!memory) return false;
    s->allocated = memory;
    s->waiters = (weft__waiter *)memory;
    s->fds = (struct pollfd *)(memory + n * sizeof *waiters);
    s->fd_case = (unsigned *)(memory + n * sizeof *waiters + (n + 1) * sizeof *fds);
    return true;
}

/* Sleep in poll until a claimer unparks us, the deadline, or an fd is
 * ready. Returns the index of the case poll found ready, after claiming
 * ourselves with it; WEFT_ETIMEDOUT after claiming ourselves for the
 * deadline; WEFT_ESYS likewise for a failure; WEFT__UNPARKED when a
 * claimer's unpark woke us; or WEFT_EAGAIN when another claimer won but
 * its unpark may still be on its way (park for it). */
static int park_polling(weft__parker *self, weft_case *cases, const scratch *s, size_t polled,
                        weft_time deadline, const weft__source_kinds kinds) {
    int result = weft__parker_park_polling(self, s->fds, polled, deadline);
    if (result == 0) return WEFT__UNPARKED; /* and consumed: do not park again */
    if (result > 0) {
        for (size_t k = 0; k < polled; k++) {
            size_t i = s->fd_case[k];
            if (!s->fds[k].revents) continue;
            if (!source_of(&cases[i], kinds)->polled(&cases[i], s->fds[k].revents)) continue;
            return weft__parker_claim(self, (int)i) ? (int)i : WEFT_EAGAIN;
        }
        /* Only events the sources ignore: say so as a spurious wake-up. */
        return weft__parker_claim(self, WEFT__CLAIM_SELF) ? WEFT__SPURIOUS : WEFT_EAGAIN;
    }
    return weft__parker_claim(self, WEFT__CLAIM_SELF) ? result : WEFT_EAGAIN;
}

int weft__engine_wait(weft_case *cases, size_t n, const unsigned *order, weft_time deadline,
                      const weft__source_kinds kinds, const char *what, const void *object) {
    weft__parker *self = weft__parker_self();
    if (!self) return poll_yielding(cases, n, order, deadline, kinds);
    weft__waiter stack_waiters[WEFT_SELECT_STACK_CASES];
    struct pollfd stack_fds[WEFT_SELECT_STACK_CASES + 1];
    unsigned stack_fd_case[WEFT_SELECT_STACK_CASES];
    scratch s;
    if (!scratch_make(&s, n, stack_waiters, stack_fds, stack_fd_case)) return WEFT_ENOMEM;

    weft__wait_begin(self, what, object, n, 0);
    bool repeats = objects_repeat(cases, n, kinds);
    int chosen;
    for (;;) {
        weft__parker_arm(self);
        bool ready = false;
        size_t polled = 0;
        for (size_t i = 0; i < n; i++)
            s.waiters[i] = (weft__waiter){
                .parker = self, .elem = cases[i].elem, .token = (int)i, .shares_channel = repeats};
        for (size_t k = 0; k < n; k++) {
            size_t i = case_at(order, k);
            const weft__source *source = source_of(&cases[i], kinds);
            if (source->enlist(cases, n, i, s.waiters)) ready = true;
            if (source->pollfd && source->pollfd(&cases[i], &s.fds[polled]))
                s.fd_case[polled++] = (unsigned)i;
        }
        if (ready && weft__parker_claim(self, WEFT__CLAIM_SELF)) {
            withdraw_all(cases, n, s.waiters, -1, kinds);
            chosen = weft__engine_attempt_all(cases, n, order, self, kinds);
            if (chosen >= 0) break;
            continue;
        }
        if (!ready && polled > 0) {
            int woken = park_polling(self, cases, &s, polled, deadline, kinds);
            if (woken == WEFT_EAGAIN) {
                ready = true; /* another claimer won: its unpark is coming */
            } else if (woken != WEFT__UNPARKED) {
                /* We claimed ourselves: nobody completed a case. */
                withdraw_all(cases, n, s.waiters, -1, kinds);
                if (woken == WEFT__SPURIOUS) continue;
                chosen = woken;
                if (chosen >= 0) cases[chosen].err = 0;
                break;
            }
            /* WEFT__UNPARKED: the unpark is consumed; on to the claimed case. */
        } else if (!ready && weft__parker_park(self, deadline) == WEFT_ETIMEDOUT) {
            if (weft__parker_claim(self, WEFT__CLAIM_SELF)) {
                withdraw_all(cases, n, s.waiters, -1, kinds);
                chosen = WEFT_ETIMEDOUT;
                break;
            }
            ready = true; /* a claimer beat the deadline: its unpark is coming */
        }
        if (ready) weft__parker_park(self, WEFT_FOREVER);

        chosen = weft__parker_claimed(self);
        withdraw_all(cases, n, s.waiters, chosen, kinds);
        int result = s.waiters[chosen].result;
        if (result != WEFT__RETRY) {
            cases[chosen].err = result;
            break;
        }
        /* Woken for room, a value or a close: that case first, then all. */
        weft_case *woken = &cases[chosen];
        result = source_of(woken, kinds)->attempt(woken, self);
        if (result != WEFT_EAGAIN) {
            woken->err = result;
            break;
        }
        chosen = weft__engine_attempt_all(cases, n, order, self, kinds);
        if (chosen >= 0) break;
    }

    weft__wait_end(self);
    if (s.allocated) weft__free(s.allocated);
    return chosen;
}
