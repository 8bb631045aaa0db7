/* The weft half of examples/uv_offload.c, event_offload.c and
 * epoll_offload.c: an event loop reads lines from one TCP client and
 * hands each to a pool of goroutines doing slow work (here: upper-casing
 * it, after a sleep); their results come back through a channel that
 * the loop polls (weft_chan_pollfd), and the loop writes them to the
 * client. The loop never blocks on weft: it hands lines over with
 * weft_chan_try_send, and when the jobs channel is full it stops reading
 * the client and polls the channel's send fd instead (back-pressure).
 *
 * Shutdown: the client's end of input closes the jobs channel once every
 * line is handed over; the workers finish, the last one closes the
 * results channel, whose fd then stays readable; the loop sees
 * WEFT_ECLOSED, stops, and the program checks that no goroutine is left.
 *
 * Each program: NAME [--one-per-turn] [--work-us N]; it prints
 * "listening on 127.0.0.1:PORT", serves one client, then prints how many
 * lines it served and how many goroutines are still running (0). */
#ifndef WEFT_EXAMPLES_OFFLOAD_H
#define WEFT_EXAMPLES_OFFLOAD_H

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft.h"

enum { OFFLOAD_WORKERS = 8, OFFLOAD_LINE_MAX = 256, OFFLOAD_QUEUE = 64 };

typedef struct {
    size_t length;
    char text[OFFLOAD_LINE_MAX]; /* no newline */
} offload_line;

typedef struct {
    weft_chan *jobs;    /* loop -> workers; the loop polls its send fd when it is full */
    weft_chan *results; /* workers -> loop; the loop polls its receive fd */
    atomic_int workers_running;
    weft_time work;    /* how long each line's "slow work" takes */
    bool one_per_turn; /* take one result per loop turn, not all that are ready */
    char input[65536]; /* bytes read from the client, not yet handed over */
    size_t input_length;
    bool input_ended; /* the client shut its side */
    long served;      /* results written back */
} offload;

static void offload_work(void *arg) {
    offload *self = arg;
    offload_line line;
    while (weft_chan_recv(self->jobs, &line) == 0) {
        weft_sleep(self->work);
        for (size_t i = 0; i < line.length; i++)
            line.text[i] = (char)toupper((unsigned char)line.text[i]);
        if (weft_chan_send(self->results, &line) != 0) break;
    }
    if (atomic_fetch_sub(&self->workers_running, 1) == 1) weft_chan_close(self->results);
}

/* Parse the arguments and start the workers; exits with a usage line on
 * bad arguments. */
static void offload_start(offload *self, int argc, char **argv) {
    long work_us = 1000;
    memset(self, 0, sizeof *self);
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--one-per-turn") == 0) {
            self->one_per_turn = true;
        } else if (strcmp(argv[i], "--work-us") == 0 && i + 1 < argc &&
                   (work_us = strtol(argv[++i], &end, 10)) >= 0 && *end == '\0') {
            continue;
        } else {
            fprintf(stderr, "usage: %s [--one-per-turn] [--work-us N]\n", argv[0]);
            exit(2);
        }
    }
    self->work = WEFT_US(work_us);
    self->jobs = weft_chan_make(sizeof(offload_line), OFFLOAD_QUEUE);
    self->results = weft_chan_make(sizeof(offload_line), OFFLOAD_QUEUE);
    if (!self->jobs || !self->results) exit(1);
    atomic_init(&self->workers_running, OFFLOAD_WORKERS);
    for (int i = 0; i < OFFLOAD_WORKERS; i++)
        if (weft_go(offload_work, self) != 0) exit(1);
}

/* A listening TCP socket on 127.0.0.1 and a free port, which it prints. */
static int offload_listen(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof address) != 0 ||
        listen(fd, 16) != 0 || getsockname(fd, (struct sockaddr *)&address, &length) != 0) {
        perror("listen");
        exit(1);
    }
    printf("listening on 127.0.0.1:%d\n", ntohs(address.sin_port));
    fflush(stdout);
    return fd;
}

/* Bytes the loop read from the client (length 0: its end of input). */
static void offload_take_input(offload *self, const char *bytes, size_t length) {
    if (length == 0) {
        self->input_ended = true;
        return;
    }
    if (length > sizeof self->input - self->input_length) exit(1); /* read at most the room */
    memcpy(self->input + self->input_length, bytes, length);
    self->input_length += length;
}

/* Room for this many more input bytes: the loop reads at most that. */
static size_t offload_input_room(const offload *self) {
    return sizeof self->input - self->input_length;
}

/* Hand every complete line read so far to the workers, without blocking.
 * Returns false when the jobs channel is full: stop reading the client,
 * wait for weft_chan_pollfd(jobs, WEFT_SEND), and call again. Once input
 * has ended and every line is handed over, closes the jobs channel. */
static bool offload_feed(offload *self) {
    size_t start = 0;
    bool room = true;
    for (;;) {
        char *newline = memchr(self->input + start, '\n', self->input_length - start);
        if (!newline) break;
        offload_line line = {.length = (size_t)(newline - (self->input + start))};
        if (line.length >= OFFLOAD_LINE_MAX) line.length = OFFLOAD_LINE_MAX - 1;
        memcpy(line.text, self->input + start, line.length);
        if (weft_chan_try_send(self->jobs, &line) != 0) {
            room = false;
            break;
        }
        start = (size_t)(newline + 1 - self->input);
    }
    memmove(self->input, self->input + start, self->input_length - start);
    self->input_length -= start;
    if (room && self->input_ended) weft_chan_close(self->jobs); /* WEFT_ECLOSED the 2nd time */
    return room;
}

/* Take the results that are ready (one, with --one-per-turn) and give
 * each, newline added, to write(bytes, length, arg). Returns true once
 * the results channel is closed and drained: the loop may stop. */
static bool offload_collect(offload *self, void (*write)(const char *, size_t, void *), void *arg) {
    offload_line line;
    int status;
    while ((status = weft_chan_try_recv(self->results, &line)) == 0) {
        line.text[line.length] = '\n';
        write(line.text, line.length + 1, arg);
        self->served++;
        if (self->one_per_turn) return false; /* the fd stays readable: next turn */
    }
    return status == WEFT_ECLOSED;
}

/* After the loop: every goroutine has ended; free the channels. */
static int offload_finish(offload *self) {
    while (weft_goroutines() != 0) weft_sleep(WEFT_MS(1));
    printf("served %ld lines\ngoroutines running: %d\n", self->served, weft_goroutines());
    weft_chan_release(self->jobs);
    weft_chan_release(self->results);
    return 0;
}

#endif
