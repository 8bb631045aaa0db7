/* A libevent loop that reads lines from a TCP client, hands each to a
 * pool of goroutines doing slow work, and writes their results back from
 * the loop thread (examples/offload.h has the weft half and the protocol).
 *
 * The channels join the loop as persistent read events on their poll fds:
 * results (WEFT_RECV) always, jobs (WEFT_SEND) only while reading is
 * paused because the jobs channel was full. libevent's backends report
 * such an event again while the fd stays readable, so a callback may take
 * as few results as it likes.
 * Built by `make examples` when libevent is installed (Debian: libevent-dev). */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "offload.h"

typedef struct {
    struct event_base *base;
    struct evconnlistener *listener;
    struct bufferevent *client;
    struct event *results, *jobs; /* the channels' poll fds */
    bool paused, eof, done;
    offload work;
} server;

static void queue_output(const char *bytes, size_t length, void *arg) {
    server *self = arg;
    bufferevent_write(self->client, bytes, length);
}

/* Move what the client sent into offload's input and hand lines over. A
 * full jobs channel pauses reading until its send fd says there is room;
 * what the client sent meanwhile waits in the bufferevent. */
static void feed(server *self) {
    struct evbuffer *input = bufferevent_get_input(self->client);
    for (;;) {
        char bytes[4096];
        size_t room = offload_input_room(&self->work);
        int got = evbuffer_remove(input, bytes, room < sizeof bytes ? room : sizeof bytes);
        if (got > 0) offload_take_input(&self->work, bytes, (size_t)got);
        if (got <= 0 && self->eof) offload_take_input(&self->work, NULL, 0);
        bool paused = !offload_feed(&self->work);
        if (paused != self->paused) {
            if (paused) {
                bufferevent_disable(self->client, EV_READ);
                event_add(self->jobs, NULL);
            } else {
                event_del(self->jobs);
                bufferevent_enable(self->client, EV_READ);
            }
            self->paused = paused;
        }
        if (paused || got <= 0) return;
    }
}

static void client_readable(struct bufferevent *client, void *arg) {
    (void)client;
    feed(arg);
}

static void jobs_have_room(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    feed(arg);
}

/* The end: every result written out. */
static void client_drained(struct bufferevent *client, void *arg) {
    server *self = arg;
    (void)client;
    if (self->done) event_base_loopexit(self->base, NULL);
}

static void client_event(struct bufferevent *client, short what, void *arg) {
    server *self = arg;
    (void)client;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        self->eof = true;
        feed(self);
    }
}

static void results_ready(evutil_socket_t fd, short what, void *arg) {
    server *self = arg;
    (void)fd;
    (void)what;
    if (!offload_collect(&self->work, queue_output, self)) return;
    self->done = true;
    event_del(self->results);
    if (evbuffer_get_length(bufferevent_get_output(self->client)) == 0)
        event_base_loopexit(self->base, NULL);
}

static void accept_client(struct evconnlistener *listener, evutil_socket_t fd,
                          struct sockaddr *address, int length, void *arg) {
    server *self = arg;
    (void)address;
    (void)length;
    self->client = bufferevent_socket_new(self->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!self->client) exit(1);
    bufferevent_setcb(self->client, client_readable, client_drained, client_event, self);
    bufferevent_enable(self->client, EV_READ | EV_WRITE);
    evconnlistener_disable(listener); /* one client */
}

int main(int argc, char **argv) {
    static server self;
    offload_start(&self.work, argc, argv);
    self.base = event_base_new();
    int results_fd = weft_chan_pollfd(self.work.results, WEFT_RECV);
    int jobs_fd = weft_chan_pollfd(self.work.jobs, WEFT_SEND);
    if (!self.base || results_fd < 0 || jobs_fd < 0) return 1;
    self.listener = evconnlistener_new(self.base, accept_client, &self, LEV_OPT_CLOSE_ON_FREE, 0,
                                       offload_listen());
    self.results = event_new(self.base, results_fd, EV_READ | EV_PERSIST, results_ready, &self);
    self.jobs = event_new(self.base, jobs_fd, EV_READ | EV_PERSIST, jobs_have_room, &self);
    if (!self.listener || !self.results || !self.jobs) return 1;
    event_add(self.results, NULL);
    event_base_dispatch(self.base);
    event_free(self.results);
    event_free(self.jobs);
    if (self.client) bufferevent_free(self.client);
    evconnlistener_free(self.listener);
    event_base_free(self.base);
    return offload_finish(&self.work);
}
