/* A libuv loop that reads lines from a TCP client, hands each to a pool
 * of goroutines doing slow work, and writes their results back from the
 * loop thread (examples/offload.h has the weft half and the protocol).
 *
 * The channels join the loop as uv_poll_t handles on their poll fds:
 * results (WEFT_RECV) always, jobs (WEFT_SEND) only while reading is
 * paused because the jobs channel was full. uv_poll is level-triggered,
 * so a callback may take as few results as it likes.
 * Built by `make examples` when libuv is installed (Debian: libuv1-dev). */
#include <uv.h>

#include "offload.h"

typedef struct {
    uv_loop_t *loop;
    uv_tcp_t listener, client;
    uv_poll_t results, jobs; /* the channels' poll fds */
    uv_shutdown_t shutdown;
    bool paused;
    offload work;
} server;

typedef struct {
    uv_write_t request;
    char bytes[OFFLOAD_LINE_MAX + 1];
} output;

static void written(uv_write_t *request, int status) {
    (void)status;
    free(request); /* request is the first member of its output */
}

static void queue_output(const char *bytes, size_t length, void *arg) {
    server *self = arg;
    output *out = malloc(sizeof *out);
    if (!out) exit(1);
    memcpy(out->bytes, bytes, length);
    uv_buf_t buffer = uv_buf_init(out->bytes, (unsigned)length);
    if (uv_write(&out->request, (uv_stream_t *)&self->client, &buffer, 1, written) != 0) free(out);
}

static void take_room(uv_handle_t *handle, size_t suggested, uv_buf_t *buffer) {
    static char bytes[65536];
    server *self = handle->data;
    size_t room = offload_input_room(&self->work);
    (void)suggested;
    *buffer = uv_buf_init(bytes, (unsigned)(room < sizeof bytes ? room : sizeof bytes));
}

static void read_lines(uv_stream_t *stream, ssize_t got, const uv_buf_t *buffer);

static void jobs_have_room(uv_poll_t *handle, int status, int events);

/* Hand lines over; a full jobs channel pauses reading until its send fd
 * says there is room. */
static void feed(server *self) {
    bool paused = !offload_feed(&self->work);
    if (paused && !self->paused) {
        uv_read_stop((uv_stream_t *)&self->client);
        uv_poll_start(&self->jobs, UV_READABLE, jobs_have_room);
    } else if (!paused && self->paused) {
        uv_poll_stop(&self->jobs);
        if (!self->work.input_ended)
            uv_read_start((uv_stream_t *)&self->client, take_room, read_lines);
    }
    self->paused = paused;
}

static void jobs_have_room(uv_poll_t *handle, int status, int events) {
    (void)status;
    (void)events;
    feed(handle->data);
}

static void read_lines(uv_stream_t *stream, ssize_t got, const uv_buf_t *buffer) {
    server *self = stream->data;
    if (got == 0) return;              /* nothing this time (EAGAIN) */
    if (got < 0) uv_read_stop(stream); /* UV_EOF, or an error: the input is over */
    offload_take_input(&self->work, buffer->base, got > 0 ? (size_t)got : 0);
    feed(self);
}

static void closed(uv_handle_t *handle) { (void)handle; }

static void client_done(uv_shutdown_t *request, int status) {
    (void)status;
    uv_close((uv_handle_t *)request->handle, closed);
}

static void results_ready(uv_poll_t *handle, int status, int events) {
    server *self = handle->data;
    (void)status;
    (void)events;
    if (!offload_collect(&self->work, queue_output, self)) return;
    /* Every result is queued: close the channel handles, and the client
     * once its writes are out; uv_run then returns. */
    uv_close((uv_handle_t *)&self->results, closed);
    uv_close((uv_handle_t *)&self->jobs, closed);
    uv_shutdown(&self->shutdown, (uv_stream_t *)&self->client, client_done);
}

static void accept_client(uv_stream_t *listener, int status) {
    server *self = listener->data;
    if (status != 0 || uv_accept(listener, (uv_stream_t *)&self->client) != 0) exit(1);
    uv_close((uv_handle_t *)&self->listener, closed); /* one client */
    uv_read_start((uv_stream_t *)&self->client, take_room, read_lines);
}

int main(int argc, char **argv) {
    static server self; /* its handles must outlive the loop */
    offload_start(&self.work, argc, argv);
    self.loop = uv_default_loop();
    int results_fd = weft_chan_pollfd(self.work.results, WEFT_RECV);
    int jobs_fd = weft_chan_pollfd(self.work.jobs, WEFT_SEND);
    if (results_fd < 0 || jobs_fd < 0) return 1;
    uv_tcp_init(self.loop, &self.listener);
    uv_tcp_init(self.loop, &self.client);
    uv_poll_init(self.loop, &self.results, results_fd);
    uv_poll_init(self.loop, &self.jobs, jobs_fd);
    self.listener.data = self.client.data = self.results.data = self.jobs.data = &self;
    if (uv_tcp_open(&self.listener, offload_listen()) != 0 ||
        uv_listen((uv_stream_t *)&self.listener, 16, accept_client) != 0)
        return 1;
    uv_poll_start(&self.results, UV_READABLE, results_ready);
    uv_run(self.loop, UV_RUN_DEFAULT);
    uv_loop_close(self.loop);
    return offload_finish(&self.work);
}
