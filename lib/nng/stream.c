/* Streams: PUSH from a local channel, PULL into one (see weft/nng.h and
 * docs/distributed.md).
 *
 * End-of-stream is a handshake by hang-up. The sender, once its channel is
 * closed and drained, sends an END frame and waits; the receiver, on END
 * from a connection, has taken every value sent before it on that
 * connection (NNG keeps a connection's order), so it closes the
 * connection. The sender sees its connection removed and finishes. With
 * several receivers, each removal after END while connections remain
 * sends another END, for the next receiver. A connection removed before
 * END is a broken stream on both sides.
 *
 * The receiver learns of a removal in NNG's pipe callback, but the
 * removed connection's last frames (its END, perhaps) may still wait in
 * the socket's queue; so the callback only marks it and cancels the
 * receive, and the loop drains the queue without waiting before it
 * judges. */
#include "bridge.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>

typedef struct {
    nng_socket sock;
    nng_msg *msg;
} io_op;

static void start_send(void *arg, nng_aio *aio) {
    io_op *op = arg;
    nng_aio_set_msg(aio, op->msg);
    nng_send_aio(op->sock, aio);
}

static void start_recv(void *arg, nng_aio *aio) {
    io_op *op = arg;
    nng_recv_aio(op->sock, aio);
}

/* ---- Send side */

static void send_on_pipe(nng_pipe pipe, nng_pipe_ev ev, void *arg) {
    (void)pipe;
    bridge *b = arg;
    bool lost = false;
    pthread_mutex_lock(&b->mu);
    if (b->closing) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    if (ev == NNG_PIPE_EV_ADD_POST) {
        b->pipes++;
        b->peers++;
    } else {
        b->pipes--;
        if (b->ending) {
            b->removed_after_end++;
        } else if (!b->stopping) {
            b->lost++;
            lost = true;
        }
    }
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (lost)
        weft__bridge_fail(
            b, WEFT_NNG_ECONNRESET,
            "weft_nng: the receiver at %s hung up before end-of-stream (it went away, or it "
            "rejected this end's values: see its error); values in flight are lost",
            b->url);
}

/* Send one message, freeing it unless it was sent. 0, or -1 (recorded). */
static int send_frame(bridge_slot *s, nng_msg *msg, weft_time timeout) {
    bridge *b = s->b;
    io_op op = {b->sock, msg};
    nng_aio_set_timeout(s->aio, timeout == WEFT_FOREVER ? NNG_DURATION_INFINITE
                                                        : (nng_duration)(timeout / 1000000));
    int rc = weft__bridge_run_aio(s, start_send, &op);
    if (rc == 0) return 0;
    nng_msg_free(msg);
    if (rc == NNG_ECANCELED || rc == NNG_ECLOSED) {
        weft__bridge_stopped(b);
    } else if (rc == NNG_ETIMEDOUT) {
        weft__bridge_fail(b, WEFT_ETIMEDOUT, "weft_nng: no receiver took end-of-stream at %s",
                          b->url);
    } else {
        weft__bridge_fail(b, WEFT_NNG_ENNG, "weft_nng: sending to %s: %s", b->url,
                          nng_strerror(rc));
    }
    return -1;
}

/* The end-of-stream handshake (see the top). */
static void send_end(bridge_slot *s, uint64_t count) {
    bridge *b = s->b;
    weft_time linger = b->opts.linger > 0 ? b->opts.linger : WEFT_SEC(10);
    weft_time give_up = weft_deadline(linger);
    pthread_mutex_lock(&b->mu);
    b->ending = true;
    pthread_mutex_unlock(&b->mu);
    uint64_t removals_seen = 0;
    for (bool send = true;;) {
        if (send) {
            nng_msg *end = weft__bridge_message(b, FRAME_END, NULL, NULL, b->in_size, count);
            if (!end) {
                weft__bridge_fail(b, WEFT_ENOMEM, "weft_nng: out of memory");
                return;
            }
            weft_time left = give_up - weft_now();
            if (left <= 0 || send_frame(s, end, left) != 0) {
                if (left <= 0)
                    weft__bridge_fail(b, WEFT_ETIMEDOUT,
                                      "weft_nng: no receiver took end-of-stream at %s", b->url);
                return;
            }
        }
        pthread_mutex_lock(&b->mu);
        send = false;
        for (;;) {
            if (b->stopping) break;
            if (b->removed_after_end > removals_seen) {
                bool first = removals_seen == 0;
                removals_seen = b->removed_after_end;
                if (first && b->dialing) {
                    /* A dialer has one connection at a time: the receiver
                     * took END. Dial no more (a new connection would only be
                     * handed END again). */
                    pthread_mutex_unlock(&b->mu);
                    nng_dialer_close(b->dialer);
                    return;
                }
                if (b->pipes == 0) {
                    pthread_mutex_unlock(&b->mu);
                    return; /* every receiver took its END */
                }
                send = true;
                break;
            }
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            weft_time left = give_up - weft_now();
            if (left <= 0) break;
            until.tv_sec += left / 1000000000;
            until.tv_nsec += left % 1000000000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&b->cv, &b->mu, &until);
        }
        bool stopping = b->stopping;
        pthread_mutex_unlock(&b->mu);
        if (stopping) {
            weft__bridge_stopped(b);
            return;
        }
        if (!send) {
            weft__bridge_fail(
                b, WEFT_ETIMEDOUT,
                "weft_nng: the receiver at %s did not take end-of-stream within linger", b->url);
            return;
        }
    }
}

static void send_body(bridge_slot *s) {
    bridge *b = s->b;
    const weft_nng_codec *codec = b->has_codec ? &b->codec : NULL;
    unsigned char *elem = malloc(b->in_size ? b->in_size : 1);
    if (!elem) {
        weft__bridge_fail(b, WEFT_ENOMEM, "weft_nng: out of memory");
        return;
    }
    uint64_t seq = 0;
    for (;;) {
        int rc = weft_chan_recv_ctx(b->in, elem, b->ctx);
        if (rc == WEFT_ECLOSED) {
            send_end(s, seq);
            break;
        }
        if (rc != 0) {
            weft__bridge_stopped(b);
            break;
        }
        nng_msg *msg = weft__bridge_message(b, FRAME_DATA, codec, elem, b->in_size, seq);
        if (!msg) {
            weft__bridge_fail(b, codec ? WEFT_EINVAL : WEFT_ENOMEM,
                              codec ? "weft_nng: the codec refused value %llu"
                                    : "weft_nng: out of memory (value %llu)",
                              (unsigned long long)seq);
            break;
        }
        if (send_frame(s, msg, WEFT_FOREVER) != 0) break;
        seq++;
        atomic_store_explicit(&s->values, seq, memory_order_relaxed);
    }
    free(elem);
}

weft_nng_bridge *weft_nng_stream_send(weft_chan *from, const weft_nng_opts *opts, weft_ctx *ctx) {
    if (!from) {
        weft__bridge_last_error("weft_nng_stream_send: no channel");
        errno = EINVAL;
        return NULL;
    }
    bridge *b = weft__bridge_new(opts, ctx, 1);
    if (!b) return NULL;
    weft_chan_retain(from);
    b->in = from;
    b->in_size = weft_chan_elem_size(from);
    if (weft__bridge_connect(b, nng_push0_open, send_on_pipe, 0, false) != 0 ||
        weft__bridge_start(b, send_body) != 0) {
        weft__bridge_free(b);
        errno = EIO;
        return NULL;
    }
    return b;
}

/* ---- Receive side */

static peer *find_peer(bridge *b, uint32_t id) {
    for (int i = 0; i < b->npeers; i++)
        if (b->peer_list[i].id == id) return &b->peer_list[i];
    return NULL;
}

static peer *add_peer(bridge *b, uint32_t id) {
    if (b->npeers == b->peer_cap) {
        int cap = b->peer_cap ? 2 * b->peer_cap : 8;
        peer *list = realloc(b->peer_list, (size_t)cap * sizeof *list);
        if (!list) return NULL;
        b->peer_list = list;
        b->peer_cap = cap;
    }
    peer *p = &b->peer_list[b->npeers++];
    memset(p, 0, sizeof *p);
    p->id = id;
    return p;
}

static void drop_peer(bridge *b, peer *p) { *p = b->peer_list[--b->npeers]; }

static void recv_on_pipe(nng_pipe pipe, nng_pipe_ev ev, void *arg) {
    bridge *b = arg;
    uint32_t id = (uint32_t)nng_pipe_id(pipe);
    pthread_mutex_lock(&b->mu);
    if (!b->closing) {
        peer *p = find_peer(b, id);
        if (ev == NNG_PIPE_EV_ADD_POST) {
            b->peers++;
            if (!p) add_peer(b, id);
        } else {
            if (!p) p = add_peer(b, id); /* its frames beat its ADD_POST */
            if (p) p->removed = true;
            b->pending_removal = true;
            nng_aio_cancel(b->slots[0].aio);
        }
    }
    pthread_mutex_unlock(&b->mu);
}

/* Whether the stream is complete (under mu). */
static bool all_ended(bridge *b) {
    if (b->opts.senders > 0) return b->ended >= (uint64_t)b->opts.senders;
    if (b->ended == 0) return false;
    for (int i = 0; i < b->npeers; i++)
        if (!b->peer_list[i].ended && !b->peer_list[i].removed) {
            return false;
        }
    return true;
}

enum { GO_ON = 0, FINISHED = 1, STOP = -1 };

/* Whether stream id ended before; if not, remember that it has now
 * (under mu). A sender's END may come twice: once on a connection that
 * then closed, once more on the one its dialer made meanwhile. */
static bool stream_ended_before(bridge *b, uint64_t id) {
    for (int i = 0; i < b->nended_ids; i++)
        if (b->ended_ids[i] == id) return true;
    if (b->nended_ids == b->ended_cap) {
        int cap = b->ended_cap ? 2 * b->ended_cap : 8;
        uint64_t *ids = realloc(b->ended_ids, (size_t)cap * sizeof *ids);
        if (!ids) return false;
        b->ended_ids = ids;
        b->ended_cap = cap;
    }
    b->ended_ids[b->nended_ids++] = id;
    return false;
}

/* Judge the removed connections once the queue is drained (under mu):
 * a sender gone before END breaks the stream. */
static int judge_removals(bridge *b, char *why, size_t len) {
    for (int i = 0; i < b->npeers;) {
        peer *p = &b->peer_list[i];
        if (!p->removed) {
            i++;
            continue;
        }
        if (p->valid && !p->ended) {
            b->lost++;
            snprintf(why, len,
                     "weft_nng: a sender (connection %u to %s) went away without ending its "
                     "stream; values in flight are lost",
                     p->id, b->url);
            return STOP;
        }
        drop_peer(b, p);
    }
    return all_ended(b) ? FINISHED : GO_ON;
}

/* Handle one frame; the message is freed. */
static int recv_frame(bridge_slot *s, nng_msg *msg, unsigned char *elem, uint32_t *cached) {
    bridge *b = s->b;
    nng_pipe pipe = nng_msg_get_pipe(msg);
    uint32_t id = (uint32_t)nng_pipe_id(pipe);
    frame f;
    frame_reject why =
        weft__bridge_take(b->has_codec ? &b->codec : NULL, b->out_size, msg, elem, &f);
    nng_msg_free(msg);
    if (why == FRAME_OK && f.kind == FRAME_ERROR) why = FRAME_KIND;
    if (why != FRAME_OK) {
        frame_expect expect = {(uint32_t)b->out_size,
                               (uint32_t)(b->has_codec ? b->codec.max_size : b->out_size),
                               b->has_codec};
        char what[200];
        weft__frame_describe(why, &f, &expect, what, sizeof what);
        weft__bridge_note_reject(b, what);
        pthread_mutex_lock(&b->mu);
        peer *p = find_peer(b, id);
        bool sender = p && p->valid;
        if (p && !sender) drop_peer(b, p); /* not a sender: forget it */
        *cached = 0;
        pthread_mutex_unlock(&b->mu);
        nng_pipe_close(pipe);
        if (weft__frame_is_mismatch(why) || sender) {
            weft__bridge_fail(b, WEFT_NNG_EPROTO, "weft_nng: a sender on %s: %s", b->url, what);
            return STOP;
        }
        return GO_ON;
    }
    if (f.kind == FRAME_END) {
        pthread_mutex_lock(&b->mu);
        peer *p = find_peer(b, id);
        if (!p) p = add_peer(b, id);
        if (p) {
            p->valid = true;
            p->ended = true;
        }
        if (!stream_ended_before(b, f.stream)) b->ended++; /* its END again, on a new pipe */
        *cached = 0;
        bool done = all_ended(b);
        pthread_mutex_unlock(&b->mu);
        nng_pipe_close(pipe); /* the sender's signal that all arrived */
        return done ? FINISHED : GO_ON;
    }
    if (*cached != id) { /* a sender's first frame, or senders interleaved */
        pthread_mutex_lock(&b->mu);
        peer *p = find_peer(b, id);
        if (!p) p = add_peer(b, id);
        if (p) p->valid = true;
        pthread_mutex_unlock(&b->mu);
        *cached = id;
    }
    int rc = weft_chan_send_ctx(b->out, elem, b->ctx);
    if (rc != 0) {
        if (rc == WEFT_ECLOSED)
            weft__bridge_fail(b, WEFT_EINVAL,
                              "weft_nng: the receiving channel was closed by someone else");
        else
            weft__bridge_stopped(b);
        return STOP;
    }
    weft__bridge_count(s);
    return GO_ON;
}

static void recv_body(bridge_slot *s) {
    bridge *b = s->b;
    unsigned char *elem = malloc(b->out_size ? b->out_size : 1);
    if (!elem) {
        weft__bridge_fail(b, WEFT_ENOMEM, "weft_nng: out of memory");
        return;
    }
    io_op op = {b->sock, NULL};
    uint32_t cached = 0;
    for (int state = GO_ON; state == GO_ON;) {
        pthread_mutex_lock(&b->mu);
        bool removal = b->pending_removal;
        b->pending_removal = false;
        pthread_mutex_unlock(&b->mu);
        if (removal) {
            /* Take what waits in the queue, then judge the removed. */
            nng_msg *msg;
            while (state == GO_ON && nng_recvmsg(b->sock, &msg, NNG_FLAG_NONBLOCK) == 0)
                state = recv_frame(s, msg, elem, &cached);
            if (state != GO_ON) break;
            char why[320] = "";
            pthread_mutex_lock(&b->mu);
            cached = 0;
            state = judge_removals(b, why, sizeof why);
            pthread_mutex_unlock(&b->mu);
            if (state == STOP) weft__bridge_fail(b, WEFT_NNG_ECONNRESET, "%s", why);
            continue;
        }
        int rc = weft__bridge_run_aio(s, start_recv, &op);
        if (rc == NNG_ECANCELED || rc == NNG_ETIMEDOUT) {
            if (weft__bridge_stopping(b)) {
                weft__bridge_stopped(b);
                break;
            }
            continue; /* a removal to judge */
        }
        if (rc != 0) {
            if (weft__bridge_stopping(b))
                weft__bridge_stopped(b);
            else
                weft__bridge_fail(b, WEFT_NNG_ENNG, "weft_nng: receiving on %s: %s", b->url,
                                  nng_strerror(rc));
            break;
        }
        state = recv_frame(s, nng_aio_get_msg(s->aio), elem, &cached);
    }
    free(elem);
}

weft_nng_bridge *weft_nng_stream_recv(weft_chan *to, const weft_nng_opts *opts, weft_ctx *ctx) {
    if (!to) {
        weft__bridge_last_error("weft_nng_stream_recv: no channel");
        errno = EINVAL;
        return NULL;
    }
    if (opts && opts->senders < 0) {
        weft__bridge_last_error("weft_nng_stream_recv: senders < 0");
        errno = EINVAL;
        return NULL;
    }
    bridge *b = weft__bridge_new(opts, ctx, 1);
    if (!b) return NULL;
    weft_chan_retain(to);
    b->out = to;
    b->out_size = weft_chan_elem_size(to);
    size_t max_body = b->has_codec ? b->codec.max_size : b->out_size;
    if (weft__bridge_connect(b, nng_pull0_open, recv_on_pipe, max_body < 256 ? 256 : max_body,
                             true) != 0 ||
        weft__bridge_start(b, recv_body) != 0) {
        b->out = NULL;
        weft_chan_release(to);
        weft__bridge_free(b);
        errno = EIO;
        return NULL;
    }
    return b;
}
