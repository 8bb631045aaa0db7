/* weft/select.h — wait on several channel operations, proceed with one.
 *
 * weft_select tries the cases in a fresh random order, so the choice among
 * ready cases is uniform; if none is ready it blocks on all of them at once
 * (one waiter per channel, claimed by whichever channel fires first) until
 * one proceeds or the deadline passes. A NULL channel's case is never
 * ready (Go's nil channel). A closed channel makes its cases ready: the
 * chosen case's err says WEFT_ECLOSED (a receive leaves *elem untouched; a
 * send delivered nothing). The same channel may appear in several cases
 * and in both directions; a select never pairs with itself.
 *
 * Cost: no allocation for up to WEFT_SELECT_STACK_CASES cases; above that
 * each call allocates (and frees) an array of per-case bookkeeping, and a
 * second one if it blocks. A select that finds nothing ready with
 * WEFT_NOWAIT reads each channel's version twice, so that "nothing was
 * ready" held at one instant, as Go's select (which locks every channel)
 * guarantees.
 *
 * Lifetime: a thread whose send or receive a select completed may release
 * that channel as soon as its own call returns, but the select's other
 * channels stay in use until the select returns; after that, the select's
 * thread is done with every channel in cases. */
#ifndef WEFT_SELECT_H
#define WEFT_SELECT_H

#include <stddef.h>

#include "weft/error.h"
#include "weft/time.h"

#ifdef __cplusplus
extern "C" {
#endif

struct weft_chan;
struct weft_ctx;

/* A case's dir: a channel send or receive, or (weft/io.h) an fd's readiness. */
enum { WEFT_SEND = 1, WEFT_RECV = 2, WEFT_FD = 3 };

typedef struct {
    struct weft_chan *ch; /* NULL: never ready (an fd case: NULL, see WEFT_FD_CASE) */
    int dir;              /* WEFT_SEND, WEFT_RECV or WEFT_FD */
    void *elem;           /* send: the value; recv: where to store it (may be NULL);
                             WEFT_FD: the weft_fdwait */
    int err;              /* out: 0, or WEFT_ECLOSED when the chosen case met a closed channel */
} weft_case;

/* clang-format off */
#define WEFT_SEND_CASE(ch, ptr) {(ch), WEFT_SEND, (void *)(ptr), 0}
#define WEFT_RECV_CASE(ch, ptr) {(ch), WEFT_RECV, (void *)(ptr), 0}
/* clang-format on */

#define WEFT_SELECT_STACK_CASES 64

/* Proceed with one of cases[0..n) and return its index; its err is set
 * (0 or WEFT_ECLOSED). Otherwise returns WEFT_EAGAIN when deadline is at
 * or before now and nothing is ready (Go's default:), WEFT_ETIMEDOUT when
 * the deadline passed while blocked, WEFT_EINVAL for a bad dir or NULL
 * cases with n > 0, WEFT_ENOMEM when n > WEFT_SELECT_STACK_CASES and the
 * bookkeeping cannot be allocated. n == 0 (or only NULL channels) with
 * WEFT_FOREVER blocks forever, like Go's empty select. */
int weft_select(weft_case *cases, size_t n, weft_time deadline);

/* As weft_select, but ready cases are taken in array order: the first
 * ready case wins (priority select). When blocked, the first case a
 * partner completes wins, whatever its position. */
int weft_select_biased(weft_case *cases, size_t n, weft_time deadline);

/* As weft_select with no deadline, but ends when ctx does (NULL: never):
 * returns ctx's error (WEFT_ECANCELED or WEFT_ETIMEDOUT) if it has ended
 * before the call or while blocked, and then no case proceeded. n == 0
 * waits for ctx to end. Cost: as weft_select with one more case (ctx's
 * done channel). */
int weft_select_ctx(weft_case *cases, size_t n, struct weft_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
