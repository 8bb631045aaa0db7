/* Jobs over REQ/REP: weft_nng_jobs (the producer's side) and
 * weft_nng_serve (the workers' side). See weft/nng.h.
 *
 * Each slot has its own NNG context (nng_ctx), so opts.workers requests
 * are in flight at once on one socket. REQ sends a request again when no
 * reply came within NNG_OPT_REQ_RESENDTIME, or at once when the
 * connection carrying it is lost, and takes only the reply to its latest
 * request: so each job gets one result here, while a handler may run
 * more than once for it at the workers. A worker answers a request it
 * cannot take with an ERROR frame, which stops the producer's bridge with
 * the worker's words. */
#include "bridge.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

typedef struct {
    nng_ctx ctx;
    nng_msg *msg;
} ctx_op;

static void start_ctx_send(void *arg, nng_aio *aio) {
    ctx_op *op = arg;
    nng_aio_set_msg(aio, op->msg);
    nng_ctx_send(op->ctx, aio);
}

static void start_ctx_recv(void *arg, nng_aio *aio) {
    ctx_op *op = arg;
    nng_ctx_recv(op->ctx, aio);
}

/* An NNG failure of a slot: the stop's error, or an NNG error. */
static void slot_failed(bridge *b, int rc, const char *doing) {
    if (rc == NNG_ECANCELED || rc == NNG_ECLOSED || weft__bridge_stopping(b))
        weft__bridge_stopped(b);
    else
        weft__bridge_fail(b, WEFT_NNG_ENNG, "weft_nng: %s %s: %s", doing, b->url, nng_strerror(rc));
}

static int open_contexts(bridge *b) {
    for (int i = 0; i < b->nslots; i++) {
        int rc = nng_ctx_open(&b->slots[i].nctx, b->sock);
        if (rc != 0) {
            weft__bridge_last_error("weft_nng: cannot open an NNG context: %s", nng_strerror(rc));
            return -1;
        }
        b->slots[i].has_nctx = true;
    }
    return 0;
}

/* What a jobs or serve goroutine works with: the codecs of the two
 * directions and a buffer for one job and one result. */
typedef struct {
    const weft_nng_codec *codec, *result_codec;
    unsigned char *job, *result;
} exchange;

/* False (the bridge failed with WEFT_ENOMEM) when a buffer is missing. */
static bool exchange_open(bridge *b, exchange *x) {
    *x = (exchange){b->has_codec ? &b->codec : NULL, b->has_result_codec ? &b->result_codec : NULL,
                    malloc(b->in_size ? b->in_size : 1), malloc(b->out_size ? b->out_size : 1)};
    if (x->job && x->result) return true;
    weft__bridge_fail(b, WEFT_ENOMEM, "weft_nng: out of memory");
    free(x->job);
    free(x->result);
    return false;
}

static void exchange_close(exchange *x) {
    free(x->job);
    free(x->result);
}

/* ---- Producer side */

static void jobs_body(bridge_slot *s) {
    bridge *b = s->b;
    exchange x;
    if (!exchange_open(b, &x)) return;
    const weft_nng_codec *codec = x.codec, *result_codec = x.result_codec;
    unsigned char *job = x.job, *result = x.result;
    for (uint64_t n = 0;; n++) {
        int rc = weft_chan_recv_ctx(b->in, job, b->ctx);
        if (rc == WEFT_ECLOSED) break;
        if (rc != 0) {
            weft__bridge_stopped(b);
            break;
        }
        ctx_op op = {s->nctx, weft__bridge_message(b, FRAME_DATA, codec, job, b->in_size, n)};
        if (!op.msg) {
            weft__bridge_fail(b, codec ? WEFT_EINVAL : WEFT_ENOMEM,
                              codec ? "weft_nng: the codec refused a job"
                                    : "weft_nng: out of memory");
            break;
        }
        rc = weft__bridge_run_aio(s, start_ctx_send, &op);
        if (rc != 0) {
            nng_msg_free(op.msg);
            slot_failed(b, rc, "sending a job to");
            break;
        }
        rc = weft__bridge_run_aio(s, start_ctx_recv, &op);
        if (rc != 0) {
            slot_failed(b, rc, "waiting for a result from");
            break;
        }
        nng_msg *reply = nng_aio_get_msg(s->aio);
        frame f;
        frame_reject why = weft__bridge_take(result_codec, b->out_size, reply, result, &f);
        if (why == FRAME_OK && f.kind == FRAME_ERROR) {
            int len = f.body_len > 200 ? 200 : (int)f.body_len;
            weft__bridge_fail(b, WEFT_NNG_EPROTO, "weft_nng: a worker at %s refused a job: %.*s",
                              b->url, len, (const char *)f.body);
            nng_msg_free(reply);
            break;
        }
        if (why == FRAME_OK && f.kind != FRAME_DATA) why = FRAME_KIND;
        if (why != FRAME_OK) {
            frame_expect expect = {(uint32_t)b->out_size, (uint32_t)b->out_size, result_codec};
            char what[200];
            weft__frame_describe(why, &f, &expect, what, sizeof what);
            weft__bridge_note_reject(b, what);
            weft__bridge_fail(b, WEFT_NNG_EPROTO, "weft_nng: a worker at %s sent a result: %s",
                              b->url, what);
            nng_msg_free(reply);
            break;
        }
        nng_msg_free(reply);
        rc = weft_chan_send_ctx(b->out, result, b->ctx);
        if (rc != 0) {
            if (rc == WEFT_ECLOSED)
                weft__bridge_fail(b, WEFT_EINVAL,
                                  "weft_nng: the results channel was closed by someone else");
            else
                weft__bridge_stopped(b);
            break;
        }
        weft__bridge_count(s);
    }
    exchange_close(&x);
}

weft_nng_bridge *weft_nng_jobs(weft_chan *jobs, weft_chan *results, const weft_nng_opts *opts,
                               weft_ctx *ctx) {
    if (!jobs || !results || (opts && (opts->workers < 0 || opts->resend < 0))) {
        weft__bridge_last_error("weft_nng_jobs: no channel, or a negative option");
        errno = EINVAL;
        return NULL;
    }
    bridge *b = weft__bridge_new(opts, ctx, opts && opts->workers ? opts->workers : 16);
    if (!b) return NULL;
    weft_chan_retain(jobs);
    weft_chan_retain(results);
    b->in = jobs;
    b->in_size = weft_chan_elem_size(jobs);
    b->out_size = weft_chan_elem_size(results);
    b->out = results;
    size_t max = b->has_result_codec ? b->result_codec.max_size : b->out_size;
    if (weft__bridge_connect(b, nng_req0_open, NULL, max < 256 ? 256 : max, true) != 0) goto fail;
    weft_time resend = b->opts.resend > 0 ? b->opts.resend : WEFT_SEC(60);
    nng_socket_set_ms(b->sock, NNG_OPT_REQ_RESENDTIME, (nng_duration)(resend / 1000000));
    if (open_contexts(b) != 0 || weft__bridge_start(b, jobs_body) != 0) goto fail;
    return b;
fail:
    b->out = NULL; /* not closed: the caller keeps it */
    weft_chan_release(results);
    weft__bridge_free(b);
    errno = EIO;
    return NULL;
}

/* ---- Worker side */

static void reply_error(bridge_slot *s, const char *what) {
    bridge *b = s->b;
    size_t len = strlen(what);
    nng_msg *m;
    if (nng_msg_alloc(&m, FRAME_HEADER + len) != 0) return;
    unsigned char *p = nng_msg_body(m);
    weft__frame_header(p, FRAME_ERROR, weft__frame_host_order(), (uint32_t)b->in_size,
                       (uint32_t)len, b->stream_id, 0);
    memcpy(p + FRAME_HEADER, what, len);
    ctx_op op = {s->nctx, m};
    if (weft__bridge_run_aio(s, start_ctx_send, &op) != 0) nng_msg_free(m);
}

static void serve_body(bridge_slot *s) {
    bridge *b = s->b;
    exchange x;
    if (!exchange_open(b, &x)) return;
    const weft_nng_codec *codec = x.codec, *result_codec = x.result_codec;
    unsigned char *job = x.job, *result = x.result;
    for (;;) {
        ctx_op op = {s->nctx, NULL};
        int rc = weft__bridge_run_aio(s, start_ctx_recv, &op);
        if (rc != 0) {
            slot_failed(b, rc, "waiting for jobs on");
            break;
        }
        nng_msg *request = nng_aio_get_msg(s->aio);
        frame f;
        frame_reject why = weft__bridge_take(codec, b->in_size, request, job, &f);
        if (why == FRAME_OK && f.kind != FRAME_DATA) why = FRAME_KIND;
        nng_msg_free(request);
        if (why != FRAME_OK) {
            frame_expect expect = {(uint32_t)b->in_size, (uint32_t)b->in_size, codec != NULL};
            char what[200];
            weft__frame_describe(why, &f, &expect, what, sizeof what);
            weft__bridge_note_reject(b, what);
            reply_error(s, what);
            continue;
        }
        memset(result, 0, b->out_size);
        b->fn(job, result, b->fn_arg);
        op.msg = weft__bridge_message(b, FRAME_DATA, result_codec, result, b->out_size, f.seq);
        if (!op.msg) {
            reply_error(s, "the worker's codec refused the result");
            continue;
        }
        rc = weft__bridge_run_aio(s, start_ctx_send, &op);
        if (rc != 0) {
            nng_msg_free(op.msg);
            if (rc == NNG_ECANCELED || rc == NNG_ECLOSED || weft__bridge_stopping(b)) {
                weft__bridge_stopped(b);
                break;
            }
            continue; /* the producer went away: its REQ sends the job again */
        }
        weft__bridge_count(s);
    }
    exchange_close(&x);
}

weft_nng_bridge *weft_nng_serve(size_t job_size, size_t result_size, weft_nng_job_fn fn, void *arg,
                                const weft_nng_opts *opts, weft_ctx *ctx) {
    if (!fn || (opts && opts->workers < 0) || job_size > FRAME_MAX_BODY ||
        result_size > FRAME_MAX_BODY) {
        weft__bridge_last_error("weft_nng_serve: no function, or a bad size or option");
        errno = EINVAL;
        return NULL;
    }
    bridge *b = weft__bridge_new(opts, ctx, opts && opts->workers ? opts->workers : 4);
    if (!b) return NULL;
    b->in_size = job_size;
    b->out_size = result_size;
    b->fn = fn;
    b->fn_arg = arg;
    size_t max = b->has_codec ? b->codec.max_size : job_size;
    if (weft__bridge_connect(b, nng_rep0_open, NULL, max < 256 ? 256 : max, true) != 0 ||
        open_contexts(b) != 0 || weft__bridge_start(b, serve_body) != 0) {
        weft__bridge_free(b);
        errno = EIO;
        return NULL;
    }
    return b;
}
