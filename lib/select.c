/* Select, and the blocking engine that select and buffered channel
 * operations park through (an unbuffered single operation parks in
 * chan.c's handoff, with the same claim protocol).
 *
 * weft_select first tries each case once, in a fresh random permutation
 * (Fisher-Yates over a per-thread xorshift generator), so that the choice
 * among ready cases is uniform. With WEFT_NOWAIT it answers "nothing
 * ready" only after a double collect of channel versions shows that held
 * at one instant. If some case is on a ring it spins briefly, retrying the
 * cases whose channels changed; an unbuffered partner can only find a
 * registered waiter, so over unbuffered channels alone it blocks at once:
 *
 *   1. arm the thread's parker (claim word := WEFT__UNCLAIMED);
 *   2. publish one waiter per case on its channel (each channel's lock is
 *      taken and released in turn: no two are ever held together), and
 *      with it learn whether the case could proceed now: a case that became
 *      ready before its waiter was visible would otherwise never wake us.
 *   3. if one could, claim ourselves (WEFT__CLAIM_SELF), withdraw, retry;
 *   4. park. Whoever claims the parker first (a partner, a close, a wake-up
 *      for room or a value) wins; every other channel that looks at one of
 *      our waiters sees the claim taken and drops the waiter;
 *   5. withdraw every other waiter (under each channel's lock, so none
 *      outlives this stack frame), except those on the winning case's
 *      channel: its claimer unlinked them, and once that case has
 *      completed the channel may already be freed. Then act on the winning waiter's result: 0 or
 * WEFT_ECLOSED means an unbuffered partner already completed the case; WEFT__RETRY means try that
 * case first, then all of them again.
 *
 * On a deadline the thread claims itself; if that fails a claimer is
 * completing a case right now, so it waits for the unpark and reports that
 * case: the operation happened, and must not be reported as timed out. */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "backoff.h"
#include "chan_internal.h"
#include "weft/ctx.h"

static _Thread_local uint64_t random_state;

/* A number below bound, uniform to within bound / 2^32. */
static uint32_t random_below(uint32_t bound) {
    uint64_t x = random_state;
    if (x == 0) x = (uint64_t)(uintptr_t)&random_state ^ (uint64_t)weft_now() ^ 0x9e3779b97f4a7c15u;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    random_state = x;
    uint32_t bits = (uint32_t)((x * 0x2545f4914f6cdd1dull) >> 32);
    return (uint32_t)(((uint64_t)bits * bound) >> 32);
}

static inline size_t case_at(const unsigned *order, size_t k) { return order ? order[k] : k; }

/* Take back every waiter but those on the channel of case chosen (-1:
 * none was claimed, take back all). Whoever claimed the chosen case
 * unlinked our waiters on its channel (see weft__waiter.shares_channel),
 * and once that case has completed, its channel may already be freed. */
static void withdraw(weft_case *cases, size_t n, weft__waiter *waiters, int chosen) {
    const weft_chan *claimed = chosen >= 0 ? cases[chosen].ch : NULL;
    for (size_t i = 0; i < n; i++)
        if (cases[i].ch && cases[i].ch != claimed)
            weft__chan_unregister(cases[i].ch, cases[i].dir, &waiters[i]);
}

/* Whether case i is the first (in array order) on its channel: the one
 * whose turn registers every case on that channel at once. */
static bool first_case_on(const weft_case *cases, size_t i) {
    for (size_t j = 0; j < i; j++)
        if (cases[j].ch == cases[i].ch) return false;
    return true;
}

/* Whether some channel appears in more than one case. Past a few cases
 * the answer is a conservative yes: it only makes a claimer look through
 * the channel's queues for our other waiters. */
static bool channel_repeats(const weft_case *cases, size_t n) {
    enum { EXACT_UP_TO = 16 };
    if (n > EXACT_UP_TO) return true;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (cases[i].ch && cases[i].ch == cases[j].ch) return true;
    return false;
}

/* One attempt at every case in order: the index of the first that
 * proceeds (its err set), or WEFT_EAGAIN. */
static int try_all(weft_case *cases, size_t n, const unsigned *order, const weft__parker *self) {
    for (size_t k = 0; k < n; k++) {
        size_t i = case_at(order, k);
        if (!cases[i].ch) continue;
        int result = weft__chan_try(cases[i].ch, cases[i].dir, cases[i].elem, self);
        if (result != WEFT_EAGAIN) {
            cases[i].err = result;
            return (int)i;
        }
    }
    return WEFT_EAGAIN;
}

/* Without a parker (its one-time allocation failed) a thread cannot sleep
 * on a waiter; it still blocks correctly by retrying, yielding the CPU
 * between attempts, as the sync primitives do. */
static int poll_yielding(weft_case *cases, size_t n, const unsigned *order, weft_time deadline) {
    for (;;) {
        int chosen = try_all(cases, n, order, NULL);
        if (chosen >= 0) return chosen;
        if (deadline != WEFT_FOREVER && weft_now() >= deadline) return WEFT_ETIMEDOUT;
        sched_yield();
    }
}

int weft__select_block(weft_case *cases, size_t n, const unsigned *order, weft_time deadline) {
    weft__parker *self = weft__parker_self();
    if (!self) return poll_yielding(cases, n, order, deadline);
    weft__waiter stack_waiters[WEFT_SELECT_STACK_CASES];
    weft__waiter *waiters = stack_waiters;
    if (n > WEFT_SELECT_STACK_CASES) {
        waiters = weft__malloc(n * sizeof *waiters);
        if (!waiters) return WEFT_ENOMEM;
    }

    /* For the deadlock report: one case is a channel operation (operate). */
    if (n == 1 && cases[0].ch) {
        weft__parker_note(self, cases[0].dir == WEFT_SEND ? "weft_chan_send" : "weft_chan_recv",
                          cases[0].ch);
    } else {
        weft__parker_note(self, "weft_select", cases);
        self->cases = n;
    }

    bool repeats = channel_repeats(cases, n);
    int chosen;
    for (;;) {
        weft__parker_arm(self);
        bool ready = false;
        for (size_t i = 0; i < n; i++)
            waiters[i] = (weft__waiter){
                .parker = self, .elem = cases[i].elem, .token = (int)i, .shares_channel = repeats};
        for (size_t k = 0; k < n; k++) {
            size_t i = case_at(order, k);
            if (!cases[i].ch) continue;
            if (!repeats) {
                if (weft__chan_register(cases[i].ch, cases[i].dir, &waiters[i])) ready = true;
            } else if (first_case_on(cases, i) &&
                       weft__chan_register_cases(cases[i].ch, cases, waiters, n)) {
                ready = true;
            }
        }
        if (ready && weft__parker_claim(self, WEFT__CLAIM_SELF)) {
            withdraw(cases, n, waiters, -1);
            chosen = try_all(cases, n, order, self);
            if (chosen >= 0) break;
            continue;
        }
        if (!ready && weft__parker_park(self, deadline) == WEFT_ETIMEDOUT) {
            if (weft__parker_claim(self, WEFT__CLAIM_SELF)) {
                withdraw(cases, n, waiters, -1);
                chosen = WEFT_ETIMEDOUT;
                break;
            }
            ready = true; /* a claimer beat the deadline: its unpark is coming */
        }
        if (ready) weft__parker_park(self, WEFT_FOREVER);

        chosen = weft__parker_claimed(self);
        withdraw(cases, n, waiters, chosen);
        int result = waiters[chosen].result;
        if (result != WEFT__RETRY) {
            cases[chosen].err = result;
            break;
        }
        /* Woken for room, a value or a close: that case first, then all. */
        weft_case *woken = &cases[chosen];
        result = weft__chan_try(woken->ch, woken->dir, woken->elem, self);
        if (result != WEFT_EAGAIN) {
            woken->err = result;
            break;
        }
        chosen = try_all(cases, n, order, self);
        if (chosen >= 0) break;
    }

    if (waiters != stack_waiters) weft__free(waiters);
    return chosen;
}

/* While spinning: attempt only the cases whose channels show a change
 * (see weft__chan_may_be_ready), so that polling stays off the partners'
 * cache lines and locks. */
static int poll_all(weft_case *cases, size_t n, const unsigned *order, uint64_t *seen) {
    for (size_t k = 0; k < n; k++) {
        size_t i = case_at(order, k);
        if (!cases[i].ch || !weft__chan_may_be_ready(cases[i].ch, cases[i].dir, &seen[i])) continue;
        int result = weft__chan_try(cases[i].ch, cases[i].dir, cases[i].elem, NULL);
        if (result != WEFT_EAGAIN) {
            cases[i].err = result;
            return (int)i;
        }
    }
    return WEFT_EAGAIN;
}

/* Record every case's channel version into versions; return whether they
 * all equal what versions held before. */
static bool versions_unchanged(const weft_case *cases, size_t n, uint64_t *versions) {
    bool same = true;
    for (size_t i = 0; i < n; i++) {
        if (!cases[i].ch) continue;
        uint64_t now = weft__chan_version(cases[i].ch);
        if (now != versions[i]) same = false;
        versions[i] = now;
    }
    return same;
}

/* Go's default: report WEFT_EAGAIN only if there was a moment at which no
 * case was ready. Each pass looks at the cases one after another, so a case
 * may become ready after it was looked at while another stops being ready
 * before it is. Versions read before and after a pass that found nothing
 * (a double collect) prove that no case became ready during it. */
static int try_all_at_once(weft_case *cases, size_t n, const unsigned *order, uint64_t *versions) {
    versions_unchanged(cases, n, versions);
    for (;;) {
        int chosen = try_all(cases, n, order, NULL);
        if (chosen >= 0) return chosen;
        if (versions_unchanged(cases, n, versions)) return WEFT_EAGAIN;
    }
}

/* Go's `select { case op: default: }`, which Go compiles to a plain
 * non-blocking operation: one attempt, nothing else. */
static int try_one(weft_case *only) {
    if (only->dir != WEFT_SEND && only->dir != WEFT_RECV) return WEFT_EINVAL;
    if (!only->ch) return WEFT_EAGAIN;
    if (only->dir == WEFT_SEND && !only->elem && weft_chan_elem_size(only->ch) > 0)
        return WEFT_EINVAL;
    int result = weft__chan_try(only->ch, only->dir, only->elem, NULL);
    if (result == WEFT_EAGAIN) return WEFT_EAGAIN;
    only->err = result;
    return 0;
}

__attribute__((noinline)) static int select_cases(weft_case *cases, size_t n, weft_time deadline,
                                                  bool biased) {
    if (n > 0 && !cases) return WEFT_EINVAL;
    if (n > (size_t)INT32_MAX) return WEFT_EINVAL;
    size_t active = 0; /* cases with a channel */
    for (size_t i = 0; i < n; i++) {
        if (cases[i].dir != WEFT_SEND && cases[i].dir != WEFT_RECV) return WEFT_EINVAL;
        if (!cases[i].ch) continue;
        if (cases[i].dir == WEFT_SEND && !cases[i].elem && weft_chan_elem_size(cases[i].ch) > 0)
            return WEFT_EINVAL;
        active++;
    }

    /* Per-case scratch: the try order, and channel versions. */
    unsigned stack_order[WEFT_SELECT_STACK_CASES];
    uint64_t stack_versions[WEFT_SELECT_STACK_CASES];
    unsigned *order = stack_order;
    uint64_t *versions = stack_versions;
    void *scratch = NULL;
    if (n > WEFT_SELECT_STACK_CASES) {
        scratch = weft__malloc(n * (sizeof *order + sizeof *versions));
        if (!scratch) return WEFT_ENOMEM;
        versions = scratch;
        order = (unsigned *)(versions + n);
    }
    if (biased || active <= 1) {
        order = NULL; /* array order */
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t j = random_below((uint32_t)i + 1); /* inside-out Fisher-Yates */
            if (j != i) order[i] = order[j];
            order[j] = (unsigned)i;
        }
    }

    int chosen;
    bool may_block = deadline > 0 && (deadline == WEFT_FOREVER || weft_now() < deadline);
    if (!may_block) {
        /* One case: a failed attempt is itself a moment of "not ready". */
        chosen = active <= 1 ? try_all(cases, n, order, NULL)
                             : try_all_at_once(cases, n, order, versions);
        goto out;
    }
    chosen = try_all(cases, n, order, NULL);
    if (chosen >= 0) goto out;
    memset(versions, 0, n * sizeof *versions); /* poll_all: first look tries every case */
    /* Spin only if a ring might fill or drain soon. An unbuffered partner
     * can only find us once we are registered, so a select over unbuffered
     * channels alone registers at once (and its parker spins instead). */
    bool any_ring = false;
    for (size_t i = 0; i < n; i++) any_ring |= cases[i].ch && weft_chan_cap(cases[i].ch) > 0;
    for (weft__backoff backoff = {0}; any_ring && !weft__backoff_done(&backoff);) {
        weft__backoff_snooze(&backoff);
        chosen = poll_all(cases, n, order, versions);
        if (chosen >= 0) goto out;
    }
    chosen = weft__select_block(cases, n, order, deadline);
out:
    if (scratch) weft__free(scratch);
    return chosen;
}

int weft_select(weft_case *cases, size_t n, weft_time deadline) {
    if (n == 1 && cases && deadline <= 0) return try_one(cases);
    return select_cases(cases, n, deadline, false);
}

int weft_select_biased(weft_case *cases, size_t n, weft_time deadline) {
    if (n == 1 && cases && deadline <= 0) return try_one(cases);
    return select_cases(cases, n, deadline, true);
}

/* The context's done channel joins the select as one more receive case,
 * so a cancel wakes it like any channel would. */
int weft_select_ctx(weft_case *cases, size_t n, weft_ctx *ctx) {
    int error = weft_ctx_err(ctx);
    if (error) return error;
    weft_chan *done = weft_ctx_done(ctx);
    if (!done) return select_cases(cases, n, WEFT_FOREVER, false);
    if (n > 0 && !cases) return WEFT_EINVAL;
    if (n >= (size_t)INT32_MAX) return WEFT_EINVAL;

    weft_case stack_cases[WEFT_SELECT_STACK_CASES];
    weft_case *all = stack_cases;
    if (n + 1 > WEFT_SELECT_STACK_CASES) {
        all = weft__malloc((n + 1) * sizeof *all);
        if (!all) return WEFT_ENOMEM;
    }
    if (n > 0) memcpy(all, cases, n * sizeof *all);
    all[n] = (weft_case)WEFT_RECV_CASE(done, NULL);
    int chosen = select_cases(all, n + 1, WEFT_FOREVER, false);
    if (chosen >= 0 && (size_t)chosen < n)
        cases[chosen].err = all[chosen].err;
    else if ((size_t)chosen == n)
        chosen = weft_ctx_err(ctx);
    if (all != stack_cases) weft__free(all);
    return chosen;
}
