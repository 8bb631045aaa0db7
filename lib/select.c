/* Select over channels and fds (weft/select.h, weft/io.h).
 *
 * weft_select first tries each case once, in a fresh random permutation
 * (Fisher-Yates over a per-thread xorshift generator), so that the choice
 * among ready cases is uniform. With WEFT_NOWAIT it answers "nothing
 * ready" only after a double collect of channel versions shows that held
 * at one instant (an fd's readiness has no version: for fd cases the
 * answer is about the moment each was polled). If some case is on a ring
 * it spins briefly, retrying the cases whose channels changed; an
 * unbuffered partner can only find a registered waiter, so over
 * unbuffered channels alone it blocks at once. Blocking is the engine's
 * (engine.h), with the channel and the fd as its sources. */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "chan_internal.h"
#include "engine.h"
#include "fd_source.h"

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

static const weft__source_kinds kinds = {NULL, &weft__chan_source, &weft__chan_source,
                                         &weft__fd_source};

static int try_all(weft_case *cases, size_t n, const unsigned *order, const weft__parker *self) {
    return weft__engine_attempt_all(cases, n, order, self, kinds);
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

/* 0 for a case select can take, else WEFT_EINVAL: a direction it does
 * not know, a send of nothing on a channel of values, an fd case without
 * its weft_fdwait, with a negative fd, or asking for no event. Inlined,
 * channel directions first: it runs on every case of every select, and
 * out of line it cost a tenth of select_both's instructions. */
static inline __attribute__((always_inline)) int check_case(const weft_case *c) {
    if (c->dir == WEFT_RECV) return 0;
    if (c->dir == WEFT_SEND)
        return c->ch && !c->elem && weft_chan_elem_size(c->ch) > 0 ? WEFT_EINVAL : 0;
    if (c->dir != WEFT_FD) return WEFT_EINVAL;
    const weft_fdwait *wait = c->elem;
    if (c->ch || !wait || wait->fd < 0 || !weft__fd_events_valid(wait->events)) return WEFT_EINVAL;
    return 0;
}

/* Go's `select { case op: default: }`, which Go compiles to a plain
 * non-blocking operation: one attempt, nothing else. */
static int try_one(weft_case *only) {
    int invalid = check_case(only);
    if (invalid) return invalid;
    int result = kinds[only->dir]->attempt(only, NULL);
    if (result == WEFT_EAGAIN) return WEFT_EAGAIN;
    only->err = result;
    return 0;
}

__attribute__((noinline)) static int select_cases(weft_case *cases, size_t n, weft_time deadline,
                                                  bool biased) {
    if (n > 0 && !cases) return WEFT_EINVAL;
    if (n > (size_t)INT32_MAX) return WEFT_EINVAL;
    size_t active = 0; /* cases that may ever be ready: on a channel or an fd */
    for (size_t i = 0; i < n; i++) {
        int invalid = check_case(&cases[i]);
        if (invalid) return invalid;
        if (cases[i].ch || cases[i].dir == WEFT_FD) active++;
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
    weft__parker *self = NULL; /* set when it waits awake (below) */
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
    /* Wait awake unregistered only if a ring might fill or drain soon. An
     * unbuffered partner can only find us once we are registered, so a
     * select over unbuffered channels alone registers at once (and its
     * parker waits awake instead). */
    bool any_ring = false;
    for (size_t i = 0; i < n; i++) any_ring |= cases[i].ch && weft_chan_cap(cases[i].ch) > 0;
    if (any_ring) self = weft__parker_self();
    for (bool first = true; self && weft__parker_wait_awake(self, first); first = false) {
        chosen = poll_all(cases, n, order, versions);
        if (chosen >= 0) goto out;
    }
    chosen = weft__engine_wait(cases, n, order, deadline, kinds, "weft_select", cases);
out:
    if (self) weft__parker_wait_done(self);
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
