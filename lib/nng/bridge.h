/* What the bridges of lib/nng/ share (private): the bridge record, its
 * lifetime, errors, frames in NNG messages. Built only into libweft-nng;
 * it uses weft's public API alone.
 *
 * A bridge runs one goroutine per slot (one for a stream, opts.workers
 * for jobs and serve), each with an NNG aio. It owns a context, a child
 * of the caller's, that stops it: its after-function sets `stopping` and
 * cancels every slot's aio under the bridge's lock, and a slot starts an
 * aio only under that lock after checking `stopping`, so no operation
 * begins after the cancel. An error is recorded (the first one wins) and
 * then the context is canceled, which stops the other slots. The last
 * slot to return closes the output channel (if any), then done. */
#ifndef WEFT_LIB_NNG_BRIDGE_H
#define WEFT_LIB_NNG_BRIDGE_H

#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/nng.h"
#include "frame.h"

/* A connection the receiving side of a stream has seen. */
typedef struct {
    uint32_t id;  /* nng_pipe_id */
    bool valid;   /* it sent a valid frame: it is a sender */
    bool ended;   /* it sent end-of-stream */
    bool removed; /* NNG removed it */
} peer;

typedef struct bridge_slot {
    struct weft_nng_bridge *b;
    nng_aio *aio;
    nng_ctx nctx; /* jobs and serve */
    bool has_nctx;
    _Atomic uint64_t values; /* written by its goroutine alone */
} bridge_slot;

struct weft_nng_bridge {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* pipe events (stream_send's linger), after_done */
    nng_socket sock;
    bool sock_open;
    bool listening;
    nng_listener listener;
    nng_dialer dialer;
    bool dialing;
    char bound[160]; /* weft_nng_url's answer, found at connect */
    char *url;
    weft_nng_opts opts;
    weft_nng_codec codec, result_codec;
    bool has_codec, has_result_codec;
    weft_chan *in, *out; /* retained; NULL where unused */
    size_t in_size, out_size;
    weft_ctx *ctx; /* owned, a child of the caller's */
    weft_ctx_after *after;
    bool after_done; /* the after-function has finished; under mu */
    weft_chan *done;
    weft_nng_job_fn fn; /* serve */
    void *fn_arg;
    uint64_t stream_id;
    void (*body)(bridge_slot *);

    int nslots;
    bridge_slot *slots;
    int running; /* slots whose goroutine has not finished; under mu */

    /* Under mu: */
    bool stopping;
    bool closing; /* release is closing the socket: pipe events are ignored */
    int result;
    char text[320];
    uint64_t rejected, peers, ended, lost;
    /* stream_recv: */
    peer *peer_list;
    int npeers, peer_cap;
    bool pending_removal;
    uint64_t *ended_ids; /* the streams that ended, each counted once */
    int nended_ids, ended_cap;
    /* stream_send: */
    int pipes;
    bool ending;
    uint64_t removed_after_end;
};

typedef struct weft_nng_bridge bridge;

/* Count one value through slot s: a plain increment, since only the
 * slot's goroutine writes it, atomic for weft_nng_get_stats's reads. */
static inline void weft__bridge_count(bridge_slot *s) {
    atomic_store_explicit(&s->values, atomic_load_explicit(&s->values, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Allocate a bridge with nslots slots; opts copied (url too); ctx a child
 * of parent. NULL with errno and the thread's last error set. */
bridge *weft__bridge_new(const weft_nng_opts *opts, weft_ctx *parent, int nslots);

/* Open the socket with open_fn, set its options, register the pipe
 * callback (NULL: none), dial or listen. 0, or -1 with the last error set
 * (and the bridge still to be freed by bridge_free). */
int weft__bridge_connect(bridge *b, int (*open_fn)(nng_socket *), nng_pipe_cb on_pipe,
                         size_t max_body, bool receives);

/* Start slot i's goroutine running body; then the bridge is live. 0 or -1
 * (errno, last error). */
int weft__bridge_start(bridge *b, void (*body)(bridge_slot *));

/* Free a bridge that never started. */
void weft__bridge_free(bridge *b);

/* Record err with a message (printf-style), unless a result is already
 * recorded, then stop the bridge. */
void weft__bridge_fail(bridge *b, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record a rejected frame's description (the first kept in text when no
 * error is); under no lock. */
void weft__bridge_note_reject(bridge *b, const char *what);

/* Start an aio operation under the lock unless the bridge is stopping:
 * start(arg, aio). Then wait for it. Returns its NNG result, or
 * NNG_ECANCELED when the bridge was stopping before it began. */
int weft__bridge_run_aio(bridge_slot *s, void (*start)(void *, nng_aio *), void *arg);

/* The frame of value elem (elem_size bytes, through codec if any) as a new
 * message; NULL when the codec refuses it or memory runs out. */
nng_msg *weft__bridge_message(bridge *b, int kind, const weft_nng_codec *codec, const void *elem,
                              size_t elem_size, uint64_t seq);

/* Decode msg against the element size and codec into elem (when DATA):
 * FRAME_OK, or why it is rejected; *f describes it. */
frame_reject weft__bridge_take(const weft_nng_codec *codec, size_t elem_size, nng_msg *msg,
                               void *elem, frame *f);

/* Set the calling thread's last error (weft_nng_last_error). */
void weft__bridge_last_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Whether the bridge is stopping (under its lock). */
bool weft__bridge_stopping(bridge *b);

/* The result for a slot that saw its channel operation or aio stop:
 * records the context's error when none is recorded. */
void weft__bridge_stopped(bridge *b);

#endif
