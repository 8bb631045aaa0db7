/* What the bridges share: the record, its lifetime and errors, the
 * public calls on a bridge, frames in NNG messages. See bridge.h. */
#include "bridge.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char last_error[320];

void weft__bridge_last_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

const char *weft_nng_last_error(void) { return last_error; }

/* A stream id: random enough to tell senders apart in messages. */
static uint64_t new_stream_id(void) {
    static _Atomic uint64_t counter;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t x = (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 30) ^ ((uint64_t)getpid() << 40) ^
                 atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15u;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9u;
    return x ^ (x >> 29);
}

/* The context's end: stop every slot (see bridge.h). */
static void on_ctx_done(void *arg) {
    bridge *b = arg;
    pthread_mutex_lock(&b->mu);
    b->stopping = true;
    for (int i = 0; i < b->nslots; i++)
        if (b->slots[i].aio) nng_aio_cancel(b->slots[i].aio);
    b->after_done = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

bridge *weft__bridge_new(const weft_nng_opts *opts, weft_ctx *parent, int nslots) {
    if (!opts || !opts->url) {
        weft__bridge_last_error("weft_nng: no options or no url");
        errno = EINVAL;
        return NULL;
    }
    bridge *b = calloc(1, sizeof *b);
    if (!b) goto nomem;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->opts = *opts;
    b->url = strdup(opts->url);
    b->opts.url = b->url;
    if (opts->codec) {
        b->codec = *opts->codec;
        b->has_codec = true;
        if (!b->codec.max_size) b->codec.max_size = 64 * 1024;
    }
    if (opts->result_codec) {
        b->result_codec = *opts->result_codec;
        b->has_result_codec = true;
        if (!b->result_codec.max_size) b->result_codec.max_size = 64 * 1024;
    }
    if ((b->has_codec && (!b->codec.encode || !b->codec.decode)) ||
        (b->has_result_codec && (!b->result_codec.encode || !b->result_codec.decode))) {
        weft__bridge_last_error("weft_nng: a codec needs both encode and decode");
        weft__bridge_free(b);
        errno = EINVAL;
        return NULL;
    }
    b->stream_id = new_stream_id();
    b->nslots = nslots;
    b->slots = calloc((size_t)nslots, sizeof *b->slots);
    b->done = weft_chan_make(0, 0);
    b->ctx = weft_ctx_with_cancel(parent);
    if (!b->url || !b->slots || !b->done || !b->ctx) goto nomem_free;
    for (int i = 0; i < nslots; i++) {
        b->slots[i].b = b;
        if (nng_aio_alloc(&b->slots[i].aio, NULL, NULL) != 0) goto nomem_free;
    }
    return b;
nomem_free:
    weft__bridge_free(b);
nomem:
    weft__bridge_last_error("weft_nng: out of memory");
    errno = ENOMEM;
    return NULL;
}

/* Fill b->bound: the URL, with a listener's port filled in for tcp. */
static void find_bound_url(bridge *b) {
    char *buf = b->bound;
    size_t len = sizeof b->bound;
    int n = -1;
    nng_sockaddr sa;
    if (b->listening && strncmp(b->url, "tcp", 3) == 0 &&
        nng_listener_get_addr(b->listener, NNG_OPT_LOCADDR, &sa) == 0) {
        if (sa.s_family == NNG_AF_INET) {
            const unsigned char *a = (const unsigned char *)&sa.s_in.sa_addr;
            unsigned port = ((const unsigned char *)&sa.s_in.sa_port)[0] << 8 |
                            ((const unsigned char *)&sa.s_in.sa_port)[1];
            n = snprintf(buf, len, "tcp://%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], port);
        } else if (sa.s_family == NNG_AF_INET6) {
            const unsigned char *a = sa.s_in6.sa_addr;
            unsigned port = ((const unsigned char *)&sa.s_in6.sa_port)[0] << 8 |
                            ((const unsigned char *)&sa.s_in6.sa_port)[1];
            n = snprintf(buf, len, "tcp://[");
            for (int i = 0; i < 16 && n >= 0 && (size_t)n < len; i += 2)
                n += snprintf(buf + n, len - (size_t)n, "%s%x", i ? ":" : "", a[i] << 8 | a[i + 1]);
            if (n >= 0 && (size_t)n < len) n += snprintf(buf + n, len - (size_t)n, "]:%u", port);
        }
    }
    if (n < 0 || (size_t)n >= len) snprintf(buf, len, "%s", b->url);
}

int weft__bridge_connect(bridge *b, int (*open_fn)(nng_socket *), nng_pipe_cb on_pipe,
                         size_t max_body, bool receives) {
    int rc = open_fn(&b->sock);
    if (rc != 0) {
        weft__bridge_last_error("weft_nng: cannot open a socket: %s", nng_strerror(rc));
        return -1;
    }
    b->sock_open = true;
    if (receives) nng_socket_set_size(b->sock, NNG_OPT_RECVMAXSZ, FRAME_HEADER + max_body);
    if (b->opts.buffer > 0) {
        int size = b->opts.buffer > 8192 ? 8192 : b->opts.buffer;
        nng_socket_set_int(b->sock, NNG_OPT_SENDBUF, size);
        nng_socket_set_int(b->sock, NNG_OPT_RECVBUF, size);
    }
    if (on_pipe) {
        nng_pipe_notify(b->sock, NNG_PIPE_EV_ADD_POST, on_pipe, b);
        nng_pipe_notify(b->sock, NNG_PIPE_EV_REM_POST, on_pipe, b);
    }
    if (b->opts.listen) {
        rc = nng_listen(b->sock, b->url, &b->listener, 0);
        b->listening = rc == 0;
    } else {
        rc = nng_dial(b->sock, b->url, &b->dialer, NNG_FLAG_NONBLOCK);
        b->dialing = rc == 0;
    }
    if (rc != 0) {
        weft__bridge_last_error("weft_nng: cannot %s %s: %s", b->opts.listen ? "listen on" : "dial",
                                b->url, nng_strerror(rc));
        return -1;
    }
    find_bound_url(b);
    return 0;
}

/* Close the socket (once): pipe events are ignored from now on. */
static void close_socket(bridge *b) {
    pthread_mutex_lock(&b->mu);
    bool open = b->sock_open;
    b->sock_open = false;
    b->closing = true;
    pthread_mutex_unlock(&b->mu);
    if (!open) return;
    for (int i = 0; i < b->nslots; i++)
        if (b->slots[i].has_nctx) nng_ctx_close(b->slots[i].nctx);
    nng_close(b->sock);
}

/* The last slot out: close the output channel (if any), then done. The
 * bridge may be freed as soon as done is closed, so done is held here. */
static void bridge_finish(bridge *b) {
    weft_chan *done = b->done;
    weft_chan_retain(done);
    /* Hang up at once: a peer then sees the end now, not at release, and
     * its dialer stops coming back to a bridge that reads no more. */
    close_socket(b);
    if (b->out) weft_chan_close(b->out);
    weft_chan_close(done);
    weft_chan_release(done);
}

static void slot_main(void *arg) {
    bridge_slot *s = arg;
    bridge *b = s->b;
    b->body(s);
    pthread_mutex_lock(&b->mu);
    bool last = --b->running == 0;
    pthread_mutex_unlock(&b->mu);
    if (last) bridge_finish(b);
}

int weft__bridge_start(bridge *b, void (*body)(bridge_slot *)) {
    b->after = weft_ctx_after_func(b->ctx, on_ctx_done, b);
    if (!b->after) {
        weft__bridge_last_error("weft_nng: out of memory");
        errno = ENOMEM;
        return -1;
    }
    b->body = body;
    pthread_mutex_lock(&b->mu);
    b->running = 1; /* this call's own count, dropped below */
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < b->nslots; i++) {
        pthread_mutex_lock(&b->mu);
        b->running++;
        pthread_mutex_unlock(&b->mu);
        if (weft_go(slot_main, &b->slots[i]) != 0) {
            pthread_mutex_lock(&b->mu);
            b->running--;
            pthread_mutex_unlock(&b->mu);
            /* The slots started stop; the bridge reports the failure. */
            weft__bridge_fail(b, WEFT_ENOMEM, "weft_nng: cannot start the bridge's goroutine %d",
                              i);
            break;
        }
    }
    pthread_mutex_lock(&b->mu);
    bool last = --b->running == 0;
    pthread_mutex_unlock(&b->mu);
    if (last) bridge_finish(b);
    return 0;
}

void weft__bridge_free(bridge *b) {
    close_socket(b);
    if (b->after && !weft_ctx_after_stop(b->after)) {
        /* on_ctx_done has started: wait until it is out of b. */
        pthread_mutex_lock(&b->mu);
        while (!b->after_done) pthread_cond_wait(&b->cv, &b->mu);
        pthread_mutex_unlock(&b->mu);
    }
    for (int i = 0; b->slots && i < b->nslots; i++)
        if (b->slots[i].aio) nng_aio_free(b->slots[i].aio);
    free(b->slots);
    if (b->ctx) {
        weft_ctx_cancel(b->ctx);
        weft_ctx_release(b->ctx);
    }
    if (b->done) weft_chan_release(b->done);
    if (b->in) weft_chan_release(b->in);
    if (b->out) weft_chan_release(b->out);
    free(b->peer_list);
    free(b->ended_ids);
    free(b->url);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

void weft__bridge_fail(bridge *b, int err, const char *fmt, ...) {
    pthread_mutex_lock(&b->mu);
    bool first = b->result == 0 && !b->stopping;
    if (first) {
        b->result = err;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->text, sizeof b->text, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&b->mu);
    weft_ctx_cancel(b->ctx);
}

void weft__bridge_note_reject(bridge *b, const char *what) {
    pthread_mutex_lock(&b->mu);
    b->rejected++;
    if (b->result == 0 && b->text[0] == 0)
        snprintf(b->text, sizeof b->text, "weft_nng: rejected %s", what);
    pthread_mutex_unlock(&b->mu);
}

bool weft__bridge_stopping(bridge *b) {
    pthread_mutex_lock(&b->mu);
    bool stopping = b->stopping;
    pthread_mutex_unlock(&b->mu);
    return stopping;
}

void weft__bridge_stopped(bridge *b) {
    int err = weft_ctx_err(b->ctx);
    pthread_mutex_lock(&b->mu);
    if (b->result == 0 && err != 0) {
        b->result = err;
        if (b->text[0] == 0 || b->rejected)
            snprintf(b->text, sizeof b->text, "weft_nng: stopped: %s", weft_strerror(err));
    }
    pthread_mutex_unlock(&b->mu);
}

int weft__bridge_run_aio(bridge_slot *s, void (*start)(void *, nng_aio *), void *arg) {
    bridge *b = s->b;
    pthread_mutex_lock(&b->mu);
    if (b->stopping || b->pending_removal) { /* a removal: the receive loop judges it */
        pthread_mutex_unlock(&b->mu);
        return NNG_ECANCELED;
    }
    start(arg, s->aio);
    pthread_mutex_unlock(&b->mu);
    nng_aio_wait(s->aio);
    return nng_aio_result(s->aio);
}

nng_msg *weft__bridge_message(bridge *b, int kind, const weft_nng_codec *codec, const void *elem,
                              size_t elem_size, uint64_t seq) {
    size_t cap = kind != FRAME_DATA ? 0 : codec ? codec->max_size : elem_size;
    nng_msg *m;
    if (nng_msg_alloc(&m, FRAME_HEADER + cap) != 0) return NULL;
    unsigned char *p = nng_msg_body(m);
    size_t len = cap;
    if (kind == FRAME_DATA && codec) {
        long n = codec->encode(elem, p + FRAME_HEADER, cap, codec->arg);
        if (n < 0 || (size_t)n > cap) {
            nng_msg_free(m);
            return NULL;
        }
        len = (size_t)n;
        nng_msg_chop(m, cap - len);
    } else if (kind == FRAME_DATA) {
        memcpy(p + FRAME_HEADER, elem, elem_size);
    }
    unsigned flags = weft__frame_host_order() | (codec ? FRAME_ENCODED : 0);
    weft__frame_header(p, kind, flags, (uint32_t)elem_size, (uint32_t)len, b->stream_id, seq);
    return m;
}

frame_reject weft__bridge_take(const weft_nng_codec *codec, size_t elem_size, nng_msg *msg,
                               void *elem, frame *f) {
    frame_expect expect = {(uint32_t)elem_size, (uint32_t)(codec ? codec->max_size : elem_size),
                           codec != NULL};
    if (expect.max_body < 256) expect.max_body = 256; /* room for an ERROR frame's words */
    frame_reject why = weft__frame_decode(nng_msg_body(msg), nng_msg_len(msg), &expect, f);
    if (why != FRAME_OK || f->kind != FRAME_DATA) return why;
    if (codec) {
        if (codec->decode(f->body, f->body_len, elem, codec->arg) != 0) return FRAME_BAD_BODY;
    } else {
        memcpy(elem, f->body, elem_size);
    }
    return FRAME_OK;
}

/* ---- The public calls on any bridge. */

int weft_nng_wait(weft_nng_bridge *b, weft_time deadline) {
    int rc = weft_chan_recv_until(b->done, NULL, deadline);
    if (rc != WEFT_ECLOSED) return WEFT_EAGAIN;
    return weft_nng_err(b);
}

int weft_nng_err(weft_nng_bridge *b) {
    pthread_mutex_lock(&b->mu);
    int rc = b->result;
    pthread_mutex_unlock(&b->mu);
    return rc;
}

weft_chan *weft_nng_done(weft_nng_bridge *b) { return b->done; }

const char *weft_nng_text(weft_nng_bridge *b) {
    pthread_mutex_lock(&b->mu);
    const char *text = b->text;
    pthread_mutex_unlock(&b->mu);
    return text;
}

void weft_nng_get_stats(weft_nng_bridge *b, weft_nng_stats *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < b->nslots; i++) out->values += atomic_load(&b->slots[i].values);
    pthread_mutex_lock(&b->mu);
    out->rejected = b->rejected;
    out->peers = b->peers;
    out->ended = b->ended;
    out->lost = b->lost;
    pthread_mutex_unlock(&b->mu);
}

int weft_nng_url(weft_nng_bridge *b, char *buf, size_t len) {
    int n = snprintf(buf, len, "%s", b->bound[0] ? b->bound : b->url);
    return n >= 0 && (size_t)n < len ? 0 : WEFT_EINVAL;
}

void weft_nng_release(weft_nng_bridge *b) {
    if (!b) return;
    weft_ctx_cancel(b->ctx);
    weft_chan_recv(b->done, NULL);
    weft__bridge_free(b);
}
