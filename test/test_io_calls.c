/* The byte calls and weft_ctx_fd, written from the contract in
 * include/weft/io.h and DESIGN.md ("I/O"), not from the implementation.
 *
 * Fds are socketpairs (AF_UNIX, stream), pipes, and TCP sockets on
 * 127.0.0.1 with ephemeral ports. A "full" fd has had its buffer filled
 * with non-blocking writes first. Timing is asserted only as "never
 * early" (elapsed >= the deadline) and as generous upper bounds for a
 * wake-up after a cancel. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft/ctx.h"
#include "weft/error.h"
#include "weft/io.h"
#include "weft/time.h"

#include "testutil.h"

/* A wake-up after a cancel comes within this (far above what it needs). */
#define WAKE_LIMIT WEFT_MS(200)

/* ---------------------------------------------------------------------
 * Helpers */

static void make_socketpair(int fds[2]) {
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
}

static void make_pipe(int fds[2], int flags) { ck_assert_int_eq(pipe2(fds, flags), 0); }

static void close_pair(int fds[2]) {
    close(fds[0]);
    close(fds[1]);
}

static int fd_flags(int fd) {
    int flags = fcntl(fd, F_GETFL);
    ck_assert_int_ge(flags, 0);
    return flags;
}

static void put(int fd, const char *text) {
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
}

/* Whether fd polls readable right now. */
static bool readable(int fd) {
    struct pollfd entry = {.fd = fd, .events = POLLIN};
    int found = poll(&entry, 1, 0);
    ck_assert_int_ge(found, 0);
    return found == 1 && (entry.revents & POLLIN);
}

/* Fill fd's buffer (fd made non-blocking for it, then restored) with
 * bytes of pattern at offset 0...; returns how many went in. */
static size_t fill(int fd, const unsigned char *pattern, size_t size) {
    int flags = fd_flags(fd);
    ck_assert_int_eq(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
    size_t total = 0;
    for (;;) {
        ssize_t put_now = write(fd, pattern + total, size - total);
        if (put_now < 0) {
            ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);
            break;
        }
        total += (size_t)put_now;
        ck_assert_uint_lt(total, size);
    }
    ck_assert_int_eq(fcntl(fd, F_SETFL, flags), 0);
    return total;
}

/* Read everything fd holds now (non-blocking) into buf; returns the count. */
static size_t drain(int fd, unsigned char *buf, size_t size) {
    int flags = fd_flags(fd);
    ck_assert_int_eq(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
    size_t total = 0;
    for (;;) {
        ssize_t got = read(fd, buf + total, size - total);
        if (got < 0) {
            ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);
            break;
        }
        if (got == 0) break;
        total += (size_t)got;
    }
    ck_assert_int_eq(fcntl(fd, F_SETFL, flags), 0);
    return total;
}

static unsigned char *pattern_of(size_t size) {
    unsigned char *pattern = malloc(size);
    ck_assert_ptr_nonnull(pattern);
    uint64_t state = size;
    for (size_t i = 0; i < size; i++) pattern[i] = (unsigned char)test_random(&state);
    return pattern;
}

/* A listening TCP socket on 127.0.0.1 (blocking), its address in *addr. */
static int listen_loopback(struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)addr, sizeof *addr), 0);
    socklen_t len = sizeof *addr;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    return fd;
}

/* Cancel a context from another thread after a delay, noting when. */
typedef struct {
    weft_ctx *ctx;
    long delay_ms;
    _Atomic weft_time canceled_at;
} canceler;

static void *cancel_later(void *arg) {
    canceler *c = arg;
    sleep_ms(c->delay_ms);
    atomic_store(&c->canceled_at, weft_now());
    weft_ctx_cancel(c->ctx);
    return NULL;
}

/* ---------------------------------------------------------------------
 * read */

START_TEST(test_read_on_socketpair_returns_the_available_bytes) {
    int fds[2];
    make_socketpair(fds);
    put(fds[1], "hello");
    char buf[16] = {0};
    ck_assert_int_eq(weft_read_until(fds[0], buf, sizeof buf, weft_deadline(WEFT_SEC(5))), 5);
    ck_assert_str_eq(buf, "hello");
    close_pair(fds);
}
END_TEST

START_TEST(test_read_on_nonblocking_pipe_returns_the_available_bytes) {
    int fds[2];
    make_pipe(fds, O_NONBLOCK);
    put(fds[1], "pipe");
    char buf[16] = {0};
    ck_assert_int_eq(weft_read_ctx(fds[0], buf, sizeof buf, NULL), 4);
    ck_assert_str_eq(buf, "pipe");
    close_pair(fds);
}
END_TEST

typedef struct {
    int fd;
    long delay_ms;
} late_writer;

static void *write_later(void *arg) {
    late_writer *job = arg;
    sleep_ms(job->delay_ms);
    if (write(job->fd, "late", 4) != 4) abort();
    return NULL;
}

START_TEST(test_read_waits_for_bytes_written_later) {
    int fds[2];
    make_pipe(fds, O_NONBLOCK);
    weft_ctx *ctx = weft_ctx_with_timeout(NULL, WEFT_SEC(10));
    ck_assert_ptr_nonnull(ctx);
    late_writer job = {fds[1], 30};
    pthread_t thread;
    start_thread(&thread, write_later, &job);
    char buf[8] = {0};
    ck_assert_int_eq(weft_read_ctx(fds[0], buf, sizeof buf, ctx), 4);
    ck_assert_str_eq(buf, "late");
    join_thread(thread);
    weft_ctx_release(ctx);
    close_pair(fds);
}
END_TEST

START_TEST(test_read_on_blocking_pipe_is_einval_and_consumes_nothing) {
    int fds[2];
    make_pipe(fds, 0);
    put(fds[1], "kept");
    char buf[16] = {0};
    ck_assert_int_eq(weft_read_until(fds[0], buf, sizeof buf, WEFT_FOREVER), WEFT_EINVAL);
    ck_assert_int_eq(weft_read_ctx(fds[0], buf, sizeof buf, NULL), WEFT_EINVAL);
    ck_assert_int_eq(read(fds[0], buf, sizeof buf), 4);
    ck_assert_int_eq(memcmp(buf, "kept", 4), 0);
    ck_assert_int_eq(fd_flags(fds[0]) & O_NONBLOCK, 0);
    close_pair(fds);
}
END_TEST

START_TEST(test_write_on_blocking_pipe_is_einval_and_writes_nothing) {
    int fds[2];
    make_pipe(fds, 0);
    ck_assert_int_eq(weft_write_until(fds[1], "x", 1, WEFT_FOREVER), WEFT_EINVAL);
    ck_assert(!readable(fds[0]));
    close_pair(fds);
}
END_TEST

START_TEST(test_read_blocked_forever_times_out_not_before_its_deadline) {
    int fds[2];
    make_socketpair(fds);
    char buf[16];
    weft_time deadline = weft_deadline(WEFT_MS(50));
    ck_assert_int_eq(weft_read_until(fds[0], buf, sizeof buf, deadline), WEFT_ETIMEDOUT);
    ck_assert_int_ge(weft_now(), deadline);
    close_pair(fds);
}
END_TEST

START_TEST(test_read_with_passed_deadline_and_nothing_ready_is_eagain) {
    int fds[2];
    make_socketpair(fds);
    char buf[16];
    ck_assert_int_eq(weft_read_until(fds[0], buf, sizeof buf, WEFT_NOWAIT), WEFT_EAGAIN);
    close_pair(fds);
}
END_TEST

START_TEST(test_read_with_data_and_passed_deadline_returns_the_data) {
    int fds[2];
    make_socketpair(fds);
    put(fds[1], "ready");
    char buf[16];
    ck_assert_int_eq(weft_read_until(fds[0], buf, sizeof buf, WEFT_NOWAIT), 5);
    close_pair(fds);
}
END_TEST

START_TEST(test_read_with_data_and_ctx_already_canceled_returns_the_data) {
    int fds[2];
    make_socketpair(fds);
    put(fds[1], "ready");
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    weft_ctx_cancel(ctx);
    char buf[16] = {0};
    ck_assert_int_eq(weft_read_ctx(fds[0], buf, sizeof buf, ctx), 5);
    ck_assert_str_eq(buf, "ready");
    ck_assert_int_eq(weft_read_ctx(fds[0], buf, sizeof buf, ctx), WEFT_ECANCELED);
    weft_ctx_release(ctx);
    close_pair(fds);
}
END_TEST

START_TEST(test_read_ctx_returns_ctx_error_soon_after_a_cancel_from_another_thread) {
    int fds[2];
    make_socketpair(fds);
    canceler c = {.ctx = weft_ctx_with_cancel(NULL), .delay_ms = 50};
    ck_assert_ptr_nonnull(c.ctx);
    pthread_t thread;
    start_thread(&thread, cancel_later, &c);
    char buf[16];
    ck_assert_int_eq(weft_read_ctx(fds[0], buf, sizeof buf, c.ctx), WEFT_ECANCELED);
    weft_time returned = weft_now();
    join_thread(thread);
    ck_assert_int_lt(returned - atomic_load(&c.canceled_at), WAKE_LIMIT);
    weft_ctx_release(c.ctx);
    close_pair(fds);
}
END_TEST

START_TEST(test_read_ctx_with_expired_ctx_deadline_is_etimedout) {
    int fds[2];
    make_socketpair(fds);
    weft_time deadline = weft_deadline(WEFT_MS(30));
    weft_ctx *ctx = weft_ctx_with_deadline(NULL, deadline);
    ck_assert_ptr_nonnull(ctx);
    char buf[16];
    ck_assert_int_eq(weft_read_ctx(fds[0], buf, sizeof buf, ctx), WEFT_ETIMEDOUT);
    ck_assert_int_ge(weft_now(), deadline);
    weft_ctx_release(ctx);
    close_pair(fds);
}
END_TEST

START_TEST(test_read_returns_zero_at_end_of_file) {
    int fds[2];
    make_pipe(fds, O_NONBLOCK);
    close(fds[1]);
    char buf[16];
    ck_assert_int_eq(weft_read_until(fds[0], buf, sizeof buf, weft_deadline(WEFT_SEC(5))), 0);
    close(fds[0]);
}
END_TEST

START_TEST(test_read_of_a_bad_fd_is_esys_ebadf) {
    char buf[16];
    int fds[2];
    make_pipe(fds, 0);
    close_pair(fds); /* fds[0] is now closed */
    errno = 0;
    ck_assert_int_eq(weft_read_until(fds[0], buf, sizeof buf, WEFT_FOREVER), WEFT_ESYS);
    ck_assert_int_eq(errno, EBADF);
}
END_TEST

/* ---------------------------------------------------------------------
 * write */

/* A writer of size bytes of pattern into fd, on its own thread. */
typedef struct {
    int fd;
    const unsigned char *pattern;
    size_t size;
    weft_ctx *ctx;
    ssize_t result;
} writer_job;

static void *write_all(void *arg) {
    writer_job *job = arg;
    job->result = weft_write_ctx(job->fd, job->pattern, job->size, job->ctx);
    return NULL;
}

START_TEST(test_write_into_full_pipe_timed_out_returns_the_partial_count) {
    int fds[2];
    make_pipe(fds, O_NONBLOCK);
    ck_assert_int_ge(fcntl(fds[1], F_SETPIPE_SZ, 4096), 4096);
    size_t size = 1 << 20;
    unsigned char *pattern = pattern_of(size), *got = malloc(size);
    ck_assert_ptr_nonnull(got);
    weft_time deadline = weft_deadline(WEFT_MS(50));
    ssize_t written = weft_write_until(fds[1], pattern, size, deadline);
    ck_assert_int_ge(weft_now(), deadline);
    ck_assert_int_gt(written, 0);
    ck_assert_int_lt(written, (ssize_t)size);
    ck_assert_uint_eq(drain(fds[0], got, size), (size_t)written);
    ck_assert_int_eq(memcmp(got, pattern, (size_t)written), 0);
    free(pattern);
    free(got);
    close_pair(fds);
}
END_TEST

START_TEST(test_write_into_full_pipe_with_nothing_written_times_out) {
    int fds[2];
    make_pipe(fds, O_NONBLOCK);
    size_t size = 1 << 20;
    unsigned char *pattern = pattern_of(size);
    size_t filled = fill(fds[1], pattern, size);
    ck_assert_int_eq(weft_write_until(fds[1], "x", 1, WEFT_NOWAIT), WEFT_EAGAIN);
    weft_time deadline = weft_deadline(WEFT_MS(30));
    ck_assert_int_eq(weft_write_until(fds[1], "x", 1, deadline), WEFT_ETIMEDOUT);
    ck_assert_int_ge(weft_now(), deadline);
    unsigned char *got = malloc(size);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(drain(fds[0], got, size), filled);
    free(pattern);
    free(got);
    close_pair(fds);
}
END_TEST

START_TEST(test_write_into_full_socketpair_canceled_returns_the_partial_count) {
    int fds[2];
    make_socketpair(fds);
    int small = 4096;
    ck_assert_int_eq(setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    size_t size = 4 << 20;
    unsigned char *pattern = pattern_of(size), *got = malloc(size);
    ck_assert_ptr_nonnull(got);
    canceler c = {.ctx = weft_ctx_with_cancel(NULL), .delay_ms = 50};
    ck_assert_ptr_nonnull(c.ctx);
    pthread_t thread;
    start_thread(&thread, cancel_later, &c);
    ssize_t written = weft_write_ctx(fds[1], pattern, size, c.ctx);
    weft_time returned = weft_now();
    join_thread(thread);
    ck_assert_int_lt(returned - atomic_load(&c.canceled_at), WAKE_LIMIT);
    ck_assert_int_gt(written, 0);
    ck_assert_int_lt(written, (ssize_t)size);
    ck_assert_uint_eq(drain(fds[0], got, size), (size_t)written);
    ck_assert_int_eq(memcmp(got, pattern, (size_t)written), 0);
    weft_ctx_release(c.ctx);
    free(pattern);
    free(got);
    close_pair(fds);
}
END_TEST

START_TEST(test_write_delivers_all_bytes_to_a_slow_reader) {
    int fds[2];
    make_socketpair(fds);
    size_t size = 2 << 20;
    unsigned char *pattern = pattern_of(size), *got = malloc(size);
    ck_assert_ptr_nonnull(got);
    writer_job job = {.fd = fds[1], .pattern = pattern, .size = size};
    pthread_t thread;
    start_thread(&thread, write_all, &job);
    size_t total = 0;
    while (total < size) {
        ssize_t chunk =
            weft_read_until(fds[0], got + total, size - total < 1000 ? size - total : 1000,
                            weft_deadline(WEFT_SEC(30)));
        ck_assert_int_gt(chunk, 0);
        total += (size_t)chunk;
    }
    join_thread(thread);
    ck_assert_int_eq(job.result, (ssize_t)size);
    ck_assert_int_eq(memcmp(got, pattern, size), 0);
    free(pattern);
    free(got);
    close_pair(fds);
}
END_TEST

START_TEST(test_send_to_a_closed_peer_is_epipe_without_sigpipe) {
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill the test */
    int fds[2];
    make_socketpair(fds);
    close(fds[0]);
    errno = 0;
    ck_assert_int_eq(weft_send_until(fds[1], "x", 1, 0, WEFT_FOREVER), WEFT_ESYS);
    ck_assert_int_eq(errno, EPIPE);
    errno = 0;
    ck_assert_int_eq(weft_write_ctx(fds[1], "x", 1, NULL), WEFT_ESYS);
    ck_assert_int_eq(errno, EPIPE);
    close(fds[1]);
}
END_TEST

/* ---------------------------------------------------------------------
 * recv, send */

START_TEST(test_recv_with_msg_peek_leaves_the_data) {
    int fds[2];
    make_socketpair(fds);
    put(fds[1], "peek");
    char buf[16] = {0};
    ck_assert_int_eq(weft_recv_until(fds[0], buf, sizeof buf, MSG_PEEK, WEFT_FOREVER), 4);
    ck_assert_str_eq(buf, "peek");
    memset(buf, 0, sizeof buf);
    ck_assert_int_eq(weft_recv_ctx(fds[0], buf, sizeof buf, 0, NULL), 4);
    ck_assert_str_eq(buf, "peek");
    ck_assert(!readable(fds[0]));
    close_pair(fds);
}
END_TEST

START_TEST(test_recv_on_a_pipe_is_esys_enotsock) {
    int fds[2];
    make_pipe(fds, O_NONBLOCK);
    put(fds[1], "x");
    char buf[4];
    errno = 0;
    ck_assert_int_eq(weft_recv_until(fds[0], buf, sizeof buf, 0, WEFT_FOREVER), WEFT_ESYS);
    ck_assert_int_eq(errno, ENOTSOCK);
    ck_assert(readable(fds[0]));
    close_pair(fds);
}
END_TEST

START_TEST(test_send_and_recv_round_trip) {
    int fds[2];
    make_socketpair(fds);
    ck_assert_int_eq(weft_send_ctx(fds[1], "ping", 4, 0, NULL), 4);
    char buf[8] = {0};
    ck_assert_int_eq(weft_recv_until(fds[0], buf, sizeof buf, 0, weft_deadline(WEFT_SEC(5))), 4);
    ck_assert_str_eq(buf, "ping");
    close_pair(fds);
}
END_TEST

/* ---------------------------------------------------------------------
 * Flags */

START_TEST(test_fd_flags_are_unchanged_by_every_call_on_blocking_sockets) {
    int fds[2];
    make_socketpair(fds);
    int flags[2] = {fd_flags(fds[0]), fd_flags(fds[1])};
    ck_assert_int_eq(flags[0] & O_NONBLOCK, 0);
    char buf[16];
    ck_assert_int_eq(weft_write_until(fds[1], "abc", 3, WEFT_FOREVER), 3);
    ck_assert_int_eq(fd_flags(fds[1]), flags[1]);
    ck_assert_int_eq(weft_read_until(fds[0], buf, 1, WEFT_FOREVER), 1);
    ck_assert_int_eq(fd_flags(fds[0]), flags[0]);
    ck_assert_int_eq(weft_recv_ctx(fds[0], buf, sizeof buf, 0, NULL), 2);
    ck_assert_int_eq(fd_flags(fds[0]), flags[0]);
    ck_assert_int_eq(weft_send_ctx(fds[1], "d", 1, 0, NULL), 1);
    ck_assert_int_eq(fd_flags(fds[1]), flags[1]);
    ck_assert_int_eq(weft_read_ctx(fds[0], buf, sizeof buf, NULL), 1);
    ck_assert_int_eq(weft_read_until(fds[0], buf, sizeof buf, weft_deadline(WEFT_MS(10))),
                     WEFT_ETIMEDOUT);
    ck_assert_int_eq(fd_flags(fds[0]), flags[0]);

    struct sockaddr_in addr;
    int listener = listen_loopback(&addr);
    int listener_flags = fd_flags(listener);
    ck_assert_int_eq(weft_accept_until(listener, NULL, NULL, weft_deadline(WEFT_MS(10))),
                     WEFT_ETIMEDOUT);
    ck_assert_int_eq(fd_flags(listener), listener_flags);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(client, 0);
    int client_flags = fd_flags(client);
    ck_assert_int_eq(weft_connect_ctx(client, (struct sockaddr *)&addr, sizeof addr, NULL), 0);
    ck_assert_int_eq(fd_flags(client), client_flags);
    int accepted = weft_accept_ctx(listener, NULL, NULL, NULL);
    ck_assert_int_ge(accepted, 0);
    ck_assert_int_eq(fd_flags(listener), listener_flags);
    close(accepted);
    close(client);
    close(listener);
    close_pair(fds);
}
END_TEST

/* ---------------------------------------------------------------------
 * accept, connect */

START_TEST(test_accept_and_connect_on_loopback_give_a_nonblocking_cloexec_fd) {
    struct sockaddr_in addr;
    int listener = listen_loopback(&addr);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(client, 0);
    ck_assert_int_eq(weft_connect_until(client, (struct sockaddr *)&addr, sizeof addr,
                                        weft_deadline(WEFT_SEC(5))),
                     0);
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    int accepted =
        weft_accept_until(listener, (struct sockaddr *)&peer, &len, weft_deadline(WEFT_SEC(5)));
    ck_assert_int_ge(accepted, 0);
    ck_assert_uint_eq(len, sizeof peer);
    ck_assert_uint_eq(peer.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    ck_assert_int_ne(fd_flags(accepted) & O_NONBLOCK, 0);
    ck_assert_int_ne(fcntl(accepted, F_GETFD) & FD_CLOEXEC, 0);
    /* The connection works both ways. */
    ck_assert_int_eq(weft_write_until(client, "hi", 2, WEFT_FOREVER), 2);
    char buf[4] = {0};
    ck_assert_int_eq(weft_read_until(accepted, buf, sizeof buf, weft_deadline(WEFT_SEC(5))), 2);
    ck_assert_str_eq(buf, "hi");
    close(accepted);
    close(client);
    close(listener);
}
END_TEST

typedef struct {
    struct sockaddr_in addr;
    long delay_ms;
    int result;
} late_client;

static void *connect_later(void *arg) {
    late_client *job = arg;
    sleep_ms(job->delay_ms);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    job->result = weft_connect_until(fd, (struct sockaddr *)&job->addr, sizeof job->addr,
                                     weft_deadline(WEFT_SEC(10)));
    sleep_ms(50); /* let the accept see it before the close */
    close(fd);
    return NULL;
}

START_TEST(test_accept_waits_for_a_connection_made_later) {
    late_client job = {.delay_ms = 30};
    int listener = listen_loopback(&job.addr);
    pthread_t thread;
    start_thread(&thread, connect_later, &job);
    int accepted = weft_accept_ctx(listener, NULL, NULL, NULL);
    join_thread(thread);
    ck_assert_int_ge(accepted, 0);
    ck_assert_int_eq(job.result, 0);
    close(accepted);
    close(listener);
}
END_TEST

START_TEST(test_accept_ctx_returns_ctx_error_soon_after_a_cancel) {
    struct sockaddr_in addr;
    int listener = listen_loopback(&addr);
    canceler c = {.ctx = weft_ctx_with_cancel(NULL), .delay_ms = 30};
    ck_assert_ptr_nonnull(c.ctx);
    pthread_t thread;
    start_thread(&thread, cancel_later, &c);
    ck_assert_int_eq(weft_accept_ctx(listener, NULL, NULL, c.ctx), WEFT_ECANCELED);
    weft_time returned = weft_now();
    join_thread(thread);
    ck_assert_int_lt(returned - atomic_load(&c.canceled_at), WAKE_LIMIT);
    ck_assert_int_eq(fd_flags(listener) & O_NONBLOCK, 0);
    weft_ctx_release(c.ctx);
    close(listener);
}
END_TEST

START_TEST(test_connect_to_a_port_nobody_listens_on_is_econnrefused) {
    /* A bound socket that does not listen holds the port. */
    int holder = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(holder, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(holder, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    ck_assert_int_eq(getsockname(holder, (struct sockaddr *)&addr, &len), 0);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(client, 0);
    int flags = fd_flags(client);
    errno = 0;
    ck_assert_int_eq(weft_connect_until(client, (struct sockaddr *)&addr, sizeof addr,
                                        weft_deadline(WEFT_SEC(5))),
                     WEFT_ESYS);
    ck_assert_int_eq(errno, ECONNREFUSED);
    ck_assert_int_eq(fd_flags(client), flags);
    close(client);
    close(holder);
}
END_TEST

START_TEST(test_accept_on_a_socket_not_listening_is_esys) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    errno = 0;
    ck_assert_int_eq(weft_accept_until(fd, NULL, NULL, WEFT_FOREVER), WEFT_ESYS);
    ck_assert_int_eq(errno, EINVAL);
    close(fd);
}
END_TEST

/* Acceptors sharing one blocking listener: the first to return must not
 * put the listener back to blocking under the others, or one woken by
 * a connection another took would sleep in accept(2), out of the
 * context's reach. */
typedef struct {
    int listener;
    weft_ctx *ctx;
    weft_time deadline; /* WEFT_FOREVER: the _ctx form */
    int result;
    atomic_bool done;
} acceptor;

static void *accept_one(void *arg) {
    acceptor *job = arg;
    job->result = job->deadline == WEFT_FOREVER
                      ? weft_accept_ctx(job->listener, NULL, NULL, job->ctx)
                      : weft_accept_until(job->listener, NULL, NULL, job->deadline);
    atomic_store(&job->done, true);
    return NULL;
}

START_TEST(test_concurrent_accepts_on_a_blocking_listener_all_end_with_their_ctx) {
    struct sockaddr_in addr;
    int listener = listen_loopback(&addr);
    int flags = fd_flags(listener);
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    acceptor first = {.listener = listener, .deadline = weft_deadline(WEFT_MS(40))};
    acceptor late[2] = {{.listener = listener, .ctx = ctx, .deadline = WEFT_FOREVER},
                        {.listener = listener, .ctx = ctx, .deadline = WEFT_FOREVER}};
    pthread_t threads[3];
    start_thread(&threads[0], accept_one, &first);
    sleep_ms(5);
    for (int i = 0; i < 2; i++) start_thread(&threads[1 + i], accept_one, &late[i]);
    join_thread(threads[0]);
    ck_assert_int_eq(first.result, WEFT_ETIMEDOUT);
    sleep_ms(SETTLE_MS);
    /* The others still wait: the first's return left it non-blocking. */
    ck_assert_int_ne(fd_flags(listener) & O_NONBLOCK, 0);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(client, 0);
    ck_assert_int_eq(weft_connect_ctx(client, (struct sockaddr *)&addr, sizeof addr, NULL), 0);
    sleep_ms(SETTLE_MS); /* one took the connection */
    weft_ctx_cancel(ctx);
    weft_time give_up = weft_deadline(WEFT_SEC(5));
    while ((!atomic_load(&late[0].done) || !atomic_load(&late[1].done)) && weft_now() < give_up)
        sleep_ms(1);
    bool all_done = atomic_load(&late[0].done) && atomic_load(&late[1].done);
    int spare = -1;
    if (!all_done) { /* unstick the one asleep in accept(2) before failing */
        spare = socket(AF_INET, SOCK_STREAM, 0);
        connect(spare, (struct sockaddr *)&addr, sizeof addr);
    }
    for (int i = 0; i < 2; i++) join_thread(threads[1 + i]);
    if (spare >= 0) close(spare);
    ck_assert_msg(all_done, "an acceptor did not end with its context");
    int accepted = late[0].result >= 0 ? late[0].result : late[1].result;
    int other = late[0].result >= 0 ? late[1].result : late[0].result;
    ck_assert_int_ge(accepted, 0);
    ck_assert_int_eq(other, WEFT_ECANCELED);
    ck_assert_int_eq(fd_flags(listener), flags);
    close(accepted);
    close(client);
    weft_ctx_release(ctx);
    close(listener);
}
END_TEST

/* Readers racing for one byte: the loser, woken for nothing, meets its
 * deadline as a timeout (it waited), never as "would block". */
typedef struct {
    int fd;
    weft_time deadline;
    ssize_t result;
} racing_reader;

static void *read_one(void *arg) {
    racing_reader *job = arg;
    char byte;
    job->result = weft_read_until(job->fd, &byte, 1, job->deadline);
    return NULL;
}

START_TEST(test_reader_that_loses_a_race_for_the_data_times_out_not_eagain) {
    for (int round = 0; round < 10; round++) {
        int fds[2];
        make_socketpair(fds);
        weft_time deadline = weft_deadline(WEFT_MS(40));
        racing_reader readers[2] = {{fds[0], deadline, 99}, {fds[0], deadline, 99}};
        pthread_t threads[2];
        for (int i = 0; i < 2; i++) start_thread(&threads[i], read_one, &readers[i]);
        sleep_ms(10);
        put(fds[1], "x");
        for (int i = 0; i < 2; i++) join_thread(threads[i]);
        ssize_t results[2] = {readers[0].result, readers[1].result};
        ck_assert_msg((results[0] == 1 && results[1] == WEFT_ETIMEDOUT) ||
                          (results[1] == 1 && results[0] == WEFT_ETIMEDOUT),
                      "round %d: results %zd, %zd", round, results[0], results[1]);
        ck_assert_int_ge(weft_now(), deadline);
        close_pair(fds);
    }
}
END_TEST

/* ---------------------------------------------------------------------
 * EINTR: a storm of signals without SA_RESTART */

static void on_alarm(int signal_number) { (void)signal_number; }

typedef struct {
    pthread_t targets[2];
    atomic_bool stop;
    atomic_long sent;
} storm;

static void *signal_storm(void *arg) {
    storm *s = arg;
    while (!atomic_load(&s->stop)) {
        for (int i = 0; i < 2; i++) pthread_kill(s->targets[i], SIGALRM);
        atomic_fetch_add(&s->sent, 1);
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

START_TEST(test_signal_storm_causes_no_spurious_error_and_data_arrives_intact) {
    struct sigaction action = {.sa_handler = on_alarm}; /* no SA_RESTART */
    sigemptyset(&action.sa_mask);
    ck_assert_int_eq(sigaction(SIGALRM, &action, NULL), 0);
    int fds[2];
    make_socketpair(fds);
    size_t size = (size_t)scaled(8 << 20);
    unsigned char *pattern = pattern_of(size), *got = malloc(size);
    ck_assert_ptr_nonnull(got);
    writer_job job = {.fd = fds[1], .pattern = pattern, .size = size};
    storm s = {.targets[1] = pthread_self()};
    pthread_t writer, stormer;
    start_thread(&writer, write_all, &job);
    s.targets[0] = writer;
    start_thread(&stormer, signal_storm, &s);
    size_t total = 0;
    while (total < size) {
        ssize_t chunk =
            weft_read_until(fds[0], got + total, size - total < 4096 ? size - total : 4096,
                            weft_deadline(WEFT_SEC(60)));
        ck_assert_msg(chunk > 0, "read returned %zd (errno %d)", chunk, errno);
        total += (size_t)chunk;
        if (total % (64 << 10) < 4096) sleep_ms(1); /* let the writer block now and then */
    }
    join_thread(writer);
    atomic_store(&s.stop, true);
    join_thread(stormer);
    ck_assert_int_eq(job.result, (ssize_t)size);
    ck_assert_int_eq(memcmp(got, pattern, size), 0);
    ck_assert_int_gt(atomic_load(&s.sent), 10);
    signal(SIGALRM, SIG_IGN);
    free(pattern);
    free(got);
    close_pair(fds);
}
END_TEST

/* ---------------------------------------------------------------------
 * weft_ctx_fd */

START_TEST(test_ctx_fd_is_readable_only_after_the_cancel_and_stays_so) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    int fd = weft_ctx_fd(ctx);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(weft_ctx_fd(ctx), fd);
    ck_assert(!readable(fd));
    weft_ctx_cancel(ctx);
    ck_assert(readable(fd));
    ck_assert(readable(fd));
    weft_ctx_cancel(ctx);
    ck_assert(readable(fd));
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_ctx_fd_of_an_ended_ctx_is_readable_at_once) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    weft_ctx_cancel(ctx);
    int fd = weft_ctx_fd(ctx);
    ck_assert_int_ge(fd, 0);
    ck_assert(readable(fd));
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_ctx_fd_is_readable_after_the_deadline) {
    weft_time deadline = weft_deadline(WEFT_MS(30));
    weft_ctx *ctx = weft_ctx_with_deadline(NULL, deadline);
    ck_assert_ptr_nonnull(ctx);
    int fd = weft_ctx_fd(ctx);
    ck_assert_int_ge(fd, 0);
    ck_assert(!readable(fd));
    struct pollfd entry = {.fd = fd, .events = POLLIN};
    ck_assert_int_eq(poll(&entry, 1, 10000), 1);
    ck_assert_int_ge(weft_now(), deadline);
    ck_assert_int_eq(weft_ctx_err(ctx), WEFT_ETIMEDOUT);
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_ctx_fd_of_a_child_is_readable_after_its_parent_is_canceled) {
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(parent);
    weft_ctx *child = weft_ctx_with_cancel(parent);
    ck_assert_ptr_nonnull(child);
    weft_ctx *value = weft_ctx_with_value(child, &parent, NULL);
    ck_assert_ptr_nonnull(value);
    int fd = weft_ctx_fd(value);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(weft_ctx_fd(child), fd); /* a value context's end is its canceler's */
    ck_assert(!readable(fd));
    weft_ctx_cancel(parent);
    ck_assert(readable(fd));
    weft_ctx_release(value);
    weft_ctx_release(child);
    weft_ctx_release(parent);
}
END_TEST

START_TEST(test_ctx_fd_of_a_ctx_that_can_never_end_is_einval) {
    ck_assert_int_eq(weft_ctx_fd(NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_ctx_fd(weft_ctx_background()), WEFT_EINVAL);
    weft_ctx *value = weft_ctx_with_value(NULL, &value, NULL);
    ck_assert_ptr_nonnull(value);
    ck_assert_int_eq(weft_ctx_fd(value), WEFT_EINVAL);
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(parent);
    weft_ctx *detached = weft_ctx_without_cancel(parent);
    ck_assert_ptr_nonnull(detached);
    ck_assert_int_eq(weft_ctx_fd(detached), WEFT_EINVAL);
    weft_ctx_release(detached);
    weft_ctx_release(parent);
    weft_ctx_release(value);
}
END_TEST

START_TEST(test_ctx_fd_without_fds_left_is_esys_emfile) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    struct rlimit saved;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int lowest_free = dup(0);
    ck_assert_int_ge(lowest_free, 0);
    close(lowest_free);
    struct rlimit lowered = {.rlim_cur = (rlim_t)lowest_free, .rlim_max = saved.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lowered), 0);
    errno = 0;
    int result = weft_ctx_fd(ctx);
    int error = errno;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
    ck_assert_int_eq(result, WEFT_ESYS);
    ck_assert_int_eq(error, EMFILE);
    int fd = weft_ctx_fd(ctx); /* with fds again, it is made */
    ck_assert_int_ge(fd, 0);
    weft_ctx_cancel(ctx);
    ck_assert(readable(fd));
    weft_ctx_release(ctx);
}
END_TEST

START_TEST(test_ctx_fd_is_closed_when_the_ctx_is_freed) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(ctx);
    int fd = weft_ctx_fd(ctx);
    ck_assert_int_ge(fd, 0);
    weft_ctx_release(ctx);
    ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
    ck_assert_int_eq(errno, EBADF);
}
END_TEST

/* The owner releases the context the moment it sees the fd readable,
 * while the canceling thread may still be inside the cancel. */
static void *cancel_now(void *arg) {
    weft_ctx_cancel(arg);
    return NULL;
}

START_TEST(test_ctx_fd_owner_may_release_as_soon_as_it_sees_the_end) {
    for (int round = 0; round < scaled(300); round++) {
        weft_ctx *ctx = weft_ctx_with_cancel(NULL);
        ck_assert_ptr_nonnull(ctx);
        int fd = weft_ctx_fd(ctx);
        ck_assert_int_ge(fd, 0);
        pthread_t thread;
        start_thread(&thread, cancel_now, ctx);
        struct pollfd entry = {.fd = fd, .events = POLLIN};
        ck_assert_int_eq(poll(&entry, 1, 10000), 1);
        ck_assert_int_ne(weft_ctx_err(ctx), 0);
        weft_ctx_release(ctx);
        join_thread(thread);
    }
}
END_TEST

static Suite *io_calls_suite(void) {
    Suite *suite = suite_create("io_calls");
    TCase *tc = new_case(suite, "read");
    tcase_add_test(tc, test_read_on_socketpair_returns_the_available_bytes);
    tcase_add_test(tc, test_read_on_nonblocking_pipe_returns_the_available_bytes);
    tcase_add_test(tc, test_read_waits_for_bytes_written_later);
    tcase_add_test(tc, test_read_on_blocking_pipe_is_einval_and_consumes_nothing);
    tcase_add_test(tc, test_write_on_blocking_pipe_is_einval_and_writes_nothing);
    tcase_add_test(tc, test_read_blocked_forever_times_out_not_before_its_deadline);
    tcase_add_test(tc, test_read_with_passed_deadline_and_nothing_ready_is_eagain);
    tcase_add_test(tc, test_read_with_data_and_passed_deadline_returns_the_data);
    tcase_add_test(tc, test_read_with_data_and_ctx_already_canceled_returns_the_data);
    tcase_add_test(tc, test_read_ctx_returns_ctx_error_soon_after_a_cancel_from_another_thread);
    tcase_add_test(tc, test_read_ctx_with_expired_ctx_deadline_is_etimedout);
    tcase_add_test(tc, test_read_returns_zero_at_end_of_file);
    tcase_add_test(tc, test_read_of_a_bad_fd_is_esys_ebadf);
    tcase_add_test(tc, test_reader_that_loses_a_race_for_the_data_times_out_not_eagain);

    tc = new_case(suite, "write");
    tcase_add_test(tc, test_write_into_full_pipe_timed_out_returns_the_partial_count);
    tcase_add_test(tc, test_write_into_full_pipe_with_nothing_written_times_out);
    tcase_add_test(tc, test_write_into_full_socketpair_canceled_returns_the_partial_count);
    tcase_add_test(tc, test_write_delivers_all_bytes_to_a_slow_reader);
    tcase_add_test(tc, test_send_to_a_closed_peer_is_epipe_without_sigpipe);

    tc = new_case(suite, "recv_send");
    tcase_add_test(tc, test_recv_with_msg_peek_leaves_the_data);
    tcase_add_test(tc, test_recv_on_a_pipe_is_esys_enotsock);
    tcase_add_test(tc, test_send_and_recv_round_trip);

    tc = new_case(suite, "flags");
    tcase_add_test(tc, test_fd_flags_are_unchanged_by_every_call_on_blocking_sockets);

    tc = new_case(suite, "accept_connect");
    tcase_add_test(tc, test_accept_and_connect_on_loopback_give_a_nonblocking_cloexec_fd);
    tcase_add_test(tc, test_accept_waits_for_a_connection_made_later);
    tcase_add_test(tc, test_accept_ctx_returns_ctx_error_soon_after_a_cancel);
    tcase_add_test(tc, test_connect_to_a_port_nobody_listens_on_is_econnrefused);
    tcase_add_test(tc, test_accept_on_a_socket_not_listening_is_esys);
    tcase_add_test(tc, test_concurrent_accepts_on_a_blocking_listener_all_end_with_their_ctx);

    tc = new_case(suite, "eintr");
    tcase_add_test(tc, test_signal_storm_causes_no_spurious_error_and_data_arrives_intact);

    tc = new_case(suite, "ctx_fd");
    tcase_add_test(tc, test_ctx_fd_is_readable_only_after_the_cancel_and_stays_so);
    tcase_add_test(tc, test_ctx_fd_of_an_ended_ctx_is_readable_at_once);
    tcase_add_test(tc, test_ctx_fd_is_readable_after_the_deadline);
    tcase_add_test(tc, test_ctx_fd_of_a_child_is_readable_after_its_parent_is_canceled);
    tcase_add_test(tc, test_ctx_fd_of_a_ctx_that_can_never_end_is_einval);
    tcase_add_test(tc, test_ctx_fd_without_fds_left_is_esys_emfile);
    tcase_add_test(tc, test_ctx_fd_is_closed_when_the_ctx_is_freed);
    tcase_add_test(tc, test_ctx_fd_owner_may_release_as_soon_as_it_sees_the_end);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(io_calls_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
