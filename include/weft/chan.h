/* weft/chan.h — typed, buffered and unbuffered channels, as Go's, and
 * unbounded ones, as Rust's.
 *
 * A channel carries values of elem_size bytes, copied in on send and out on
 * receive. With cap > 0 it buffers up to cap values in a lock-free ring;
 * with cap == 0 every send waits for a receiver, which takes the value
 * straight from the sender. An unbounded channel (weft_chan_make_unbounded)
 * queues any number of values in blocks of 31 that it allocates as it
 * grows and frees as it drains, and a send on it never waits for a
 * receiver. elem_size 0 makes a signal-only channel.
 *
 * Semantics are Go's, with error codes where Go panics:
 *  - each value sent is received exactly once, in FIFO order per sender;
 *  - after close, buffered values are still received, then every receive
 *    returns WEFT_ECLOSED at once; a send on a closed channel, and every
 *    sender blocked when the channel is closed, gets WEFT_ECLOSED and its
 *    value is never delivered;
 *  - closed beats "would block": try and WEFT_NOWAIT forms report
 *    WEFT_ECLOSED on a closed (and, for receive, drained) channel;
 *  - a NULL channel gives WEFT_EINVAL.
 *
 * Cost: a buffered send or receive that need not wait is a few atomic
 * operations and no lock; it takes the channel's lock only when another
 * thread is parked on the channel. Unbuffered operations take the
 * channel's lock. An operation that must wait polls for a few
 * microseconds, yields the CPU a few times, then sleeps on a condition
 * variable until a partner or a close wakes it. No operation allocates
 * once the calling thread has made its first blocking call (which
 * allocates the thread's parker once; should that fail, blocking calls
 * still work, by yielding the CPU between attempts).
 * A receive on a closed, drained channel leaves *elem untouched.
 *
 * Lifetime: once a thread has seen another thread's operation on a channel
 * complete (a value received, WEFT_ECLOSED, its own send returned), it may
 * release the channel at once, even its last reference, while that other
 * thread, which may hold no reference, is still returning from its call
 * (docs/semantics.md, "Lifetimes").
 *
 * Every function is safe from any thread, pooled goroutine or not. */
#ifndef WEFT_CHAN_H
#define WEFT_CHAN_H

#include <stddef.h>
#include <stdint.h>

#include "weft/error.h"
#include "weft/select.h"
#include "weft/time.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_chan weft_chan;

#ifndef WEFT_CTX_TYPEDEF
#define WEFT_CTX_TYPEDEF
typedef struct weft_ctx weft_ctx; /* weft/ctx.h */
#endif

/* A new channel holding one reference. cap 0: unbuffered. As Go's make,
 * it commits the whole buffer at once (about cap * (elem_size + 8) bytes,
 * written now, so that no send pays a page fault later).
 * Returns NULL with errno EINVAL when elem_size * cap overflows, ENOMEM
 * when memory runs out. */
weft_chan *weft_chan_make(size_t elem_size, size_t cap);

/* What weft_chan_cap says of an unbounded channel. */
#define WEFT_UNBOUNDED SIZE_MAX

/* A new unbounded channel holding one reference: sends never wait for a
 * receiver; values are received in FIFO order per sender; close, select,
 * the _until and _ctx forms and weft_chan_len work as on any channel. It
 * allocates one block of 31 values when a send finds the last one full
 * (keeping one drained block for reuse, so a channel that stays short
 * allocates nothing), and frees blocks as they are drained. Such a send
 * returns WEFT_ENOMEM if the block cannot be allocated, and its value is
 * not queued.
 * Its try forms (try_send, try_recv, a WEFT_NOWAIT deadline, a
 * non-blocking select) never wait for another thread's half-finished
 * operation: a receive whose next value is still being written by a
 * sender that was preempted between reserving its slot and writing it
 * moves past that slot (the sender then queues its value again, still in
 * order after its earlier ones) and says WEFT_EAGAIN if nothing else is
 * there; a send that finds another sender linking a new block and not
 * finishing says WEFT_EAGAIN. Blocking forms wait for those instead.
 * Returns NULL with errno EINVAL when a block of elem_size values would
 * not fit in memory, ENOMEM when memory runs out. */
weft_chan *weft_chan_make_unbounded(size_t elem_size);

/* Add a reference. NULL is ignored. */
void weft_chan_retain(weft_chan *c);

/* Drop a reference; the last one frees the channel and any values still
 * buffered. The last release may come as soon as you have seen every
 * other thread's last operation on the channel complete (see Lifetime
 * above); releasing it while another thread may still start a call on it
 * through a reference it does not own is a bug. NULL is ignored. */
void weft_chan_release(weft_chan *c);

/* Send a copy of *elem (elem_size bytes; elem may be NULL when elem_size
 * is 0). Blocks until the value is buffered or taken by a receiver.
 * Returns 0, WEFT_ECLOSED, or WEFT_EINVAL (and, on an unbounded channel,
 * WEFT_ENOMEM). */
int weft_chan_send(weft_chan *c, const void *elem);

/* Receive into *elem (NULL: discard). Blocks until a value arrives or
 * the channel is closed and drained. Returns 0, WEFT_ECLOSED, WEFT_EINVAL. */
int weft_chan_recv(weft_chan *c, void *elem);

/* As send/recv, but never block: WEFT_EAGAIN when they would. */
int weft_chan_try_send(weft_chan *c, const void *elem);
int weft_chan_try_recv(weft_chan *c, void *elem);

/* As send/recv, blocking at most until deadline (weft_now() clock).
 * A deadline at or before now tries once: WEFT_EAGAIN when it would block.
 * A deadline that passes while blocked gives WEFT_ETIMEDOUT, never early. */
int weft_chan_send_until(weft_chan *c, const void *elem, weft_time deadline);
int weft_chan_recv_until(weft_chan *c, void *elem, weft_time deadline);

/* As send/recv, blocking until ctx ends at the latest (NULL: never).
 * A context that has already ended gives its error at once, without
 * trying the operation; one that ends while blocked gives its error
 * (WEFT_ECANCELED, or WEFT_ETIMEDOUT for a deadline) and the operation
 * did not happen: a cancelled send is never delivered later. Costs one
 * load of the context's error word more than send/recv when they need
 * not block. */
int weft_chan_send_ctx(weft_chan *c, const void *elem, weft_ctx *ctx);
int weft_chan_recv_ctx(weft_chan *c, void *elem, weft_ctx *ctx);

/* Close the channel and wake every thread blocked on it.
 * Returns 0, WEFT_ECLOSED if it was already closed, WEFT_EINVAL for NULL. */
int weft_chan_close(weft_chan *c);

/* For an event loop (libuv, libevent, epoll; docs/event-loops.md): an fd
 * that polls readable while a try operation in dir could succeed
 * (WEFT_RECV: weft_chan_try_recv; WEFT_SEND: weft_chan_try_send), and
 * for good once the channel is closed. Readiness may be spurious: after
 * it, try until WEFT_EAGAIN (or fewer: it stays readable while something
 * is left), and the WEFT_EAGAIN clears it unless something is ready again.
 * The fd is made on the first call for dir and owned by c: poll it for
 * reading only, never read, write or close it; it is closed when c is
 * freed. A forked child gets fresh fds under the same numbers, so it
 * never wakes the parent's loop. Never blocks. A channel nobody polls
 * pays nothing for this; a polled one, one eventfd write per
 * not-ready-to-ready change. Returns the fd (>= 0), WEFT_EINVAL (NULL
 * c, dir not WEFT_SEND or WEFT_RECV, WEFT_SEND on a context's done
 * channel), WEFT_ENOMEM, or WEFT_ESYS (errno from eventfd(2)). */
int weft_chan_pollfd(weft_chan *c, int dir);

/* Values buffered now (a snapshot; 0 for unbuffered and NULL channels;
 * on an unbounded channel it counts values whose send is under way). */
size_t weft_chan_len(const weft_chan *c);

/* The capacity given to weft_chan_make (0 for NULL), WEFT_UNBOUNDED for
 * an unbounded channel. */
size_t weft_chan_cap(const weft_chan *c);

/* The element size given to weft_chan_make (0 for NULL). */
size_t weft_chan_elem_size(const weft_chan *c);

/* WEFT_CHAN_DEFINE(name, T) defines, at file scope, a channel type whose
 * elements the compiler checks:
 *   typedef struct { weft_chan *ch; } name;
 *   name name_make(size_t cap);             .ch is NULL on failure (errno set)
 *   name name_make_unbounded(void);         likewise
 *   int  name_send(name c, T v);  int name_recv(name c, T *v);  ...
 * with every operation of this header, and for weft_select
 *   weft_case name_send_case(name c, const T *v), name_recv_case(name c, T *v).
 * Write it without a trailing semicolon. */
#if defined(__GNUC__) || defined(__clang__)
#define WEFT__CHAN_FN __attribute__((unused)) static inline
#else
#define WEFT__CHAN_FN static inline
#endif

#define WEFT_CHAN_DEFINE(name, T)                                                           \
    typedef struct {                                                                        \
        weft_chan *ch;                                                                      \
    } name;                                                                                 \
    WEFT__CHAN_FN name name##_make(size_t cap) {                                            \
        name c = {weft_chan_make(sizeof(T), cap)};                                          \
        return c;                                                                           \
    }                                                                                       \
    WEFT__CHAN_FN name name##_make_unbounded(void) {                                        \
        name c = {weft_chan_make_unbounded(sizeof(T))};                                     \
        return c;                                                                           \
    }                                                                                       \
    WEFT__CHAN_FN void name##_retain(name c) { weft_chan_retain(c.ch); }                    \
    WEFT__CHAN_FN void name##_release(name c) { weft_chan_release(c.ch); }                  \
    WEFT__CHAN_FN int name##_send(name c, T v) { return weft_chan_send(c.ch, &v); }         \
    WEFT__CHAN_FN int name##_recv(name c, T *v) { return weft_chan_recv(c.ch, v); }         \
    WEFT__CHAN_FN int name##_try_send(name c, T v) { return weft_chan_try_send(c.ch, &v); } \
    WEFT__CHAN_FN int name##_try_recv(name c, T *v) { return weft_chan_try_recv(c.ch, v); } \
    WEFT__CHAN_FN int name##_send_until(name c, T v, weft_time deadline) {                  \
        return weft_chan_send_until(c.ch, &v, deadline);                                    \
    }                                                                                       \
    WEFT__CHAN_FN int name##_recv_until(name c, T *v, weft_time deadline) {                 \
        return weft_chan_recv_until(c.ch, v, deadline);                                     \
    }                                                                                       \
    WEFT__CHAN_FN int name##_send_ctx(name c, T v, weft_ctx *ctx) {                         \
        return weft_chan_send_ctx(c.ch, &v, ctx);                                           \
    }                                                                                       \
    WEFT__CHAN_FN int name##_recv_ctx(name c, T *v, weft_ctx *ctx) {                        \
        return weft_chan_recv_ctx(c.ch, v, ctx);                                            \
    }                                                                                       \
    WEFT__CHAN_FN int name##_close(name c) { return weft_chan_close(c.ch); }                \
    WEFT__CHAN_FN size_t name##_len(name c) { return weft_chan_len(c.ch); }                 \
    WEFT__CHAN_FN size_t name##_cap(name c) { return weft_chan_cap(c.ch); }                 \
    WEFT__CHAN_FN weft_case name##_send_case(name c, const T *v) {                          \
        weft_case k = WEFT_SEND_CASE(c.ch, v);                                              \
        return k;                                                                           \
    }                                                                                       \
    WEFT__CHAN_FN weft_case name##_recv_case(name c, T *v) {                                \
        weft_case k = WEFT_RECV_CASE(c.ch, v);                                              \
        return k;                                                                           \
    }

#ifdef __cplusplus
}
#endif
#endif
