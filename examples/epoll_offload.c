/* A hand-written epoll loop (as Redis's ae or nginx's) that hands lines
 * from a TCP client to goroutines and writes their results back from the
 * loop thread (examples/offload.h has the weft half and the protocol).
 *
 * The loop watches four fds: the listening socket, the client, and two
 * channel poll fds: results (WEFT_RECV, always) and jobs (WEFT_SEND, only
 * while the jobs channel was full). Channel fds are level-triggered
 * (epoll's default): a turn may take as few values as it likes. */
#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>

#include "offload.h"

typedef struct {
    int epoll, listener, client;
    int results_fd, jobs_fd; /* the channels' poll fds */
    bool paused;             /* the jobs channel was full: jobs_fd is watched */
    offload work;
    char output[1 << 20]; /* results not yet written to the client */
    size_t output_length;
} server;

static void watch(server *self, int op, int fd, uint32_t events) {
    struct epoll_event event = {.events = events, .data.fd = fd};
    if (epoll_ctl(self->epoll, op, fd, &event) != 0) {
        perror("epoll_ctl");
        exit(1);
    }
}

/* Write what the client will take now; EPOLLOUT while some is left. */
static void flush_output(server *self) {
    size_t done = 0;
    while (done < self->output_length) {
        ssize_t wrote = write(self->client, self->output + done, self->output_length - done);
        if (wrote < 0 && errno == EINTR) continue;
        if (wrote <= 0) break; /* EAGAIN: wait for EPOLLOUT */
        done += (size_t)wrote;
    }
    memmove(self->output, self->output + done, self->output_length - done);
    self->output_length -= done;
}

static void queue_output(const char *bytes, size_t length, void *arg) {
    server *self = arg;
    if (length > sizeof self->output - self->output_length) flush_output(self);
    if (length > sizeof self->output - self->output_length) exit(1); /* client not reading */
    memcpy(self->output + self->output_length, bytes, length);
    self->output_length += length;
}

/* The client fd: EPOLLIN while we read (input open, jobs channel not
 * full), EPOLLOUT while output waits. */
static void update_client_events(server *self) {
    bool reading = !self->paused && !self->work.input_ended;
    uint32_t events = (reading ? EPOLLIN : 0) | (self->output_length ? EPOLLOUT : 0);
    watch(self, EPOLL_CTL_MOD, self->client, events);
}

/* Hand lines over; a full jobs channel pauses reading the client, and
 * its send fd is watched until it has room. */
static void feed(server *self) {
    bool paused = !offload_feed(&self->work);
    if (paused != self->paused)
        watch(self, paused ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, self->jobs_fd, EPOLLIN);
    self->paused = paused;
}

static void read_client(server *self) {
    char buffer[4096];
    size_t room = offload_input_room(&self->work);
    if (self->paused || self->work.input_ended) return;
    ssize_t got = read(self->client, buffer, room < sizeof buffer ? room : sizeof buffer);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    offload_take_input(&self->work, buffer, got > 0 ? (size_t)got : 0);
    feed(self);
}

int main(int argc, char **argv) {
    static server self; /* big: not on the stack */
    offload_start(&self.work, argc, argv);
    self.listener = offload_listen();
    self.client = -1;
    self.epoll = epoll_create1(EPOLL_CLOEXEC);
    self.results_fd = weft_chan_pollfd(self.work.results, WEFT_RECV);
    self.jobs_fd = weft_chan_pollfd(self.work.jobs, WEFT_SEND);
    if (self.epoll < 0 || self.results_fd < 0 || self.jobs_fd < 0) return 1;
    watch(&self, EPOLL_CTL_ADD, self.listener, EPOLLIN);
    watch(&self, EPOLL_CTL_ADD, self.results_fd, EPOLLIN);

    bool done = false;
    while (!done || self.output_length > 0) {
        struct epoll_event events[8];
        int n = epoll_wait(self.epoll, events, 8, -1);
        if (n < 0 && errno == EINTR) continue;
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == self.listener) {
                self.client = accept4(self.listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (self.client < 0) continue;
                watch(&self, EPOLL_CTL_DEL, self.listener, 0); /* one client */
                watch(&self, EPOLL_CTL_ADD, self.client, EPOLLIN);
            } else if (fd == self.client) {
                if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_client(&self);
                if (events[i].events & EPOLLOUT) flush_output(&self);
            } else if (fd == self.results_fd) {
                done = offload_collect(&self.work, queue_output, &self);
                if (done) watch(&self, EPOLL_CTL_DEL, self.results_fd, 0);
            } else {
                feed(&self); /* the jobs channel has room again */
            }
        }
        if (self.client >= 0) {
            flush_output(&self);
            update_client_events(&self);
        }
    }
    close(self.client);
    close(self.listener);
    close(self.epoll);
    return offload_finish(&self.work);
}
