/* weft/nng.h — bridges between local weft channels and NNG sockets, to
 * other processes and hosts (the optional module libweft-nng: link with
 * `pkg-config --libs weft-nng`, or CMake's weft::nng; needs NNG 1.5).
 *
 * A bridge is not a remote channel: it is a pump goroutine between a real
 * local channel and a network socket, with its delivery stated and its
 * errors reported. Local send, receive, select, close and contexts keep
 * working unchanged on the local channel.
 *
 *   stream (PUSH/PULL)  at most once, in order per sender, with
 *                       back-pressure; end-of-stream travels in band
 *   jobs   (REQ/REP)    at least once: a job whose worker dies is sent
 *                       again, so a handler may run twice for one job;
 *                       the results channel receives one result per job
 *
 * docs/distributed.md has the delivery table, the failure modes, the loss
 * bound and a two-host recipe.
 *
 * Values travel as frames: a 32-byte header (magic "weft", a version, the
 * kind, the element size, the byte order, a stream id and a sequence
 * number) and the element's bytes, or what a codec made of them. The
 * element size, version and byte order must agree at both ends; a
 * mismatch stops the bridge with WEFT_NNG_EPROTO and a message saying
 * which. Everything that arrives is untrusted: a short, oversized,
 * truncated or garbled frame is counted, rejected, and its connection
 * hung up; no value is ever delivered half-written.
 *
 * Lifetime: a constructor starts the bridge and returns it; it runs until
 * its work is done, an error, or ctx ends. weft_nng_wait returns its
 * result; weft_nng_release stops it if it still runs, waits for it and
 * frees it (call it exactly once). The bridge retains the channels and
 * the context it is given, so the caller may release its own references
 * at once.
 *
 * NNG refuses to run in a forked child (it aborts there): create bridges
 * in the parent or after exec, never between fork and exec. weft's own
 * fork handling is unaffected by this module.
 *
 * Every function is safe from any thread. */
#ifndef WEFT_NNG_H
#define WEFT_NNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/chan.h"
#include "weft/error.h"
#include "weft/time.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef WEFT_CTX_TYPEDEF
#define WEFT_CTX_TYPEDEF
typedef struct weft_ctx weft_ctx; /* weft/ctx.h */
#endif

/* Error codes of this module, beside those of weft/error.h; weft_nng_text
 * says what happened in words. */
enum {
    WEFT_NNG_ECONNRESET = -32, /* a peer went away before it ended its stream */
    WEFT_NNG_EPROTO = -33,     /* a peer sent what this end cannot accept */
    WEFT_NNG_ENNG = -34,       /* an NNG call failed (bad URL, address in use...) */
};

/* Turns a value into bytes and back, for values that hold pointers.
 * encode writes at most cap bytes of elem into buf and returns how many,
 * or a negative number to refuse the value (the bridge stops with
 * WEFT_EINVAL). decode fills elem (the channel's element size) from len
 * bytes and returns 0, or a negative number to reject the frame (counted
 * as garbled). Both run on the bridge's goroutines. */
typedef struct {
    long (*encode)(const void *elem, void *buf, size_t cap, void *arg);
    int (*decode)(const void *buf, size_t len, void *elem, void *arg);
    void *arg;
    size_t max_size; /* the most bytes encode writes; 0: 64 KiB */
} weft_nng_codec;

/* Options of every bridge. Zero fields take their defaults. */
typedef struct {
    const char *url;             /* required: tcp://host:port, ipc:///path, inproc://name, ... */
    bool listen;                 /* listen on url (default: dial it, retrying until it answers) */
    int senders;                 /* stream_recv: close after this many senders have ended;
                                    0: once every connected sender has ended */
    weft_time linger;            /* stream_send: how long to wait, after end-of-stream, for the
                                    receiver to take it (default 10 s) */
    int buffer;                  /* NNG_OPT_SENDBUF / NNG_OPT_RECVBUF in messages (default NNG's) */
    int workers;                 /* jobs: requests in flight (default 16); serve: goroutines (4) */
    weft_time resend;            /* jobs: send a job again after this long without a result
                                    (NNG_OPT_REQ_RESENDTIME; default 60 s) */
    const weft_nng_codec *codec; /* stream values, jobs; NULL: raw bytes */
    const weft_nng_codec *result_codec; /* jobs' results; NULL: raw bytes */
} weft_nng_opts;

typedef struct weft_nng_bridge weft_nng_bridge;

/* What a bridge has done so far. */
typedef struct {
    uint64_t values;   /* values sent (send side) or delivered on the channel */
    uint64_t rejected; /* frames rejected: short, oversized, truncated, garbled, mismatched */
    uint64_t peers;    /* connections made */
    uint64_t ended;    /* stream_recv: senders that ended their stream */
    uint64_t lost;     /* connections lost before their stream ended */
} weft_nng_stats;

/* Stream, send side: receive every value from `from` and push it, framed,
 * to the PULL socket at opts->url (PUSH; several receivers share the
 * values). When `from` is closed and drained, send end-of-stream and wait
 * (up to opts->linger) for the receiver to hang up, which it does once it
 * has taken every value before it; the bridge then finishes with 0. A
 * full network blocks the bridge, and so, once `from` is full, the
 * producer: memory stays bounded. A receiver that goes away finishes it
 * with WEFT_NNG_ECONNRESET (values in flight are lost: at most
 * cap(from) + the NNG and kernel buffers). Never blocks. Returns NULL
 * with errno EINVAL (a NULL argument, no url), ENOMEM, or EIO when NNG
 * refused (a bad URL, an address in use): weft_nng_last_error says why. */
weft_nng_bridge *weft_nng_stream_send(weft_chan *from, const weft_nng_opts *opts, weft_ctx *ctx);

/* Stream, receive side: pull frames from opts->url (PULL) and send each
 * value on `to`, blocking while `to` is full (which stops the pull, so the
 * pressure reaches the senders). Each sender's values arrive in its order.
 * When opts->senders senders have ended (or, with 0, every connected one),
 * close `to` and finish with 0. A sender that goes away without ending
 * finishes the bridge with WEFT_NNG_ECONNRESET; a sender whose element
 * size, byte order or version differs, with WEFT_NNG_EPROTO; either way
 * `to` is closed too, so a consumer that sees `to` closed must call
 * weft_nng_wait to learn whether the stream ended or broke. Errors as for
 * weft_nng_stream_send. */
weft_nng_bridge *weft_nng_stream_recv(weft_chan *to, const weft_nng_opts *opts, weft_ctx *ctx);

/* Jobs, producer side: send each value received from `jobs` as a request
 * to the workers at opts->url (REQ, opts->workers requests in flight) and
 * send each reply on `results` (whose element size is the result's). A
 * job whose worker dies or is silent for opts->resend is sent again to
 * another. When `jobs` is closed and every job has its result, close
 * `results` and finish with 0. A worker that rejects the job (its size
 * differs) finishes the bridge with WEFT_NNG_EPROTO and closes `results`.
 * Errors as for weft_nng_stream_send. */
weft_nng_bridge *weft_nng_jobs(weft_chan *jobs, weft_chan *results, const weft_nng_opts *opts,
                               weft_ctx *ctx);

/* The function a worker runs for each job: read job (job_size bytes),
 * write result (result_size bytes, zeroed before the call). It may run
 * twice for one job (at-least-once): make it idempotent. */
typedef void (*weft_nng_job_fn)(const void *job, void *result, void *arg);

/* Jobs, worker side: serve requests at opts->url (REP) with
 * opts->workers goroutines, each running fn(job, result, arg) and
 * replying with the result. A request that is garbled or of another size
 * is counted and answered with an error the producer reports. Runs until
 * ctx ends (then finishes with WEFT_ECANCELED) or an NNG error. Errors as
 * for weft_nng_stream_send. */
weft_nng_bridge *weft_nng_serve(size_t job_size, size_t result_size, weft_nng_job_fn fn, void *arg,
                                const weft_nng_opts *opts, weft_ctx *ctx);

/* Wait until bridge b finishes or deadline passes (WEFT_FOREVER: no
 * limit). Returns the bridge's result: 0 (its work is done),
 * WEFT_ECANCELED or WEFT_ETIMEDOUT (its ctx ended), WEFT_NNG_ECONNRESET,
 * WEFT_NNG_EPROTO, WEFT_NNG_ENNG, WEFT_ENOMEM; or WEFT_EAGAIN when the
 * deadline passed first (it still runs). */
int weft_nng_wait(weft_nng_bridge *b, weft_time deadline);

/* The bridge's result so far without waiting: 0 while it runs well. */
int weft_nng_err(weft_nng_bridge *b);

/* A channel (element size 0) closed when the bridge finishes, for select.
 * Owned by the bridge: valid until weft_nng_release. */
weft_chan *weft_nng_done(weft_nng_bridge *b);

/* What went wrong, in words ("weft_nng: ..."), or "" while nothing has;
 * the first error is kept. A rejected frame is described here even when
 * it did not stop the bridge. The text may still change while the bridge
 * runs: read it once weft_nng_wait has returned its result. Valid until
 * weft_nng_release. */
const char *weft_nng_text(weft_nng_bridge *b);

/* Copy the bridge's counters into *out. Never blocks for long. */
void weft_nng_get_stats(weft_nng_bridge *b, weft_nng_stats *out);

/* The address a listening bridge is bound to, as a URL: for
 * tcp://host:0 the port the system chose is filled in. Dialing bridges
 * return opts->url. Writes at most len bytes including the NUL; returns
 * 0, or WEFT_EINVAL when it does not fit. */
int weft_nng_url(weft_nng_bridge *b, char *buf, size_t len);

/* Stop bridge b if it still runs (as if its ctx had ended), wait for it,
 * close its socket, drop its references and free it. NULL is ignored. */
void weft_nng_release(weft_nng_bridge *b);

/* Why the last constructor that returned NULL on this thread failed, in
 * words; "" if none has. */
const char *weft_nng_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
