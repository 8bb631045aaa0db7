/* I/O readiness tests: weft_fd_wait_until / _ctx, weft_fd_close, and
 * WEFT_FD_CASE in weft_select / weft_select_ctx, written from the contract
 * in include/weft/io.h, include/weft/select.h and DESIGN.md ("I/O",
 * "Select", "Lifetimes"), not from the implementation.
 *
 * Waiters run as goroutines (weft_go) or, where a thread must be fresh
 * (no eventfd of its own yet), as plain pthreads. Timing assertions are
 * only "not before the deadline" and generous "within" bounds (scaled
 * under the sanitizers). Heavy tests honour WEFT_TEST_SCALE. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft/chan.h"
#include "weft/ctx.h"
#include "weft/error.h"
#include "weft/go.h"
#include "weft/io.h"
#include "weft/select.h"
#include "weft/time.h"

#include "testutil.h"

/* The byte calls (weft_read_until, weft_write_until) come from lib/io.c;
 * the stream test needs them. */
#ifndef WEFT_TEST_HAVE_BYTE_CALLS
#define WEFT_TEST_HAVE_BYTE_CALLS 1
#endif

/* Sanitizers slow everything down: "within" bounds grow by this much. */
#if defined(UNDER_TSAN) || defined(UNDER_ASAN)
#define SLOWDOWN 5
#else
#define SLOWDOWN 1
#endif

/* A wake-up (cancel, data, close) that takes longer than this was lost
 * and only noticed by some later event. */
#define WAKE_LIMIT WEFT_SEC(2)

/* ---------------------------------------------------------------------
 * Helpers */

static void make_pipe(int fds[2]) {
    ck_assert_msg(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
}

/* A connected stream socket pair; flags 0 leaves them blocking. */
static void make_socketpair(int fds[2], int flags) {
    ck_assert_msg(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0, fds) == 0,
                  "socketpair: %s", strerror(errno));
}

static void close_pair(int fds[2]) {
    if (fds[0] >= 0) close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
}

static void put_byte(int fd, char byte) { ck_assert_int_eq(write(fd, &byte, 1), 1); }

/* Bytes waiting to be read on a pipe or socket, without reading them. */
static int pending_bytes(int fd) {
    int count = -1;
    ck_assert_msg(ioctl(fd, FIONREAD, &count) == 0, "FIONREAD: %s", strerror(errno));
    return count;
}

static bool fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

static int open_fd_count(void) {
    DIR *dir = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(dir);
    int count = 0;
    for (struct dirent *entry; (entry = readdir(dir));)
        if (entry->d_name[0] != '.') count++;
    closedir(dir);
    return count - 1; /* the directory's own fd */
}

static weft_chan *make_int_chan(size_t cap) {
    weft_chan *c = weft_chan_make(sizeof(int), cap);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* ---------------------------------------------------------------------
 * One waiting call on a goroutine (or a pthread). */

enum op_kind { OP_WAIT_UNTIL, OP_WAIT_CTX, OP_SELECT, OP_SELECT_CTX };

typedef struct {
    enum op_kind kind;
    int fd, events;     /* the fd waits */
    weft_time deadline; /* OP_WAIT_UNTIL, OP_SELECT */
    weft_ctx *ctx;      /* OP_WAIT_CTX, OP_SELECT_CTX */
    weft_case *cases;   /* the selects */
    size_t n;
    atomic_int arrived; /* bumped just before the call */
    atomic_int done;    /* set just after it */
    int result, error_number;
    atomic_llong returned_at;
} fd_op;

static void fd_op_init(fd_op *op, enum op_kind kind) {
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->fd = -1;
    op->deadline = WEFT_FOREVER;
    op->result = 12345;
    atomic_init(&op->arrived, 0);
    atomic_init(&op->done, 0);
    atomic_init(&op->returned_at, 0);
}

static void fd_op_run(void *arg) {
    fd_op *op = arg;
    atomic_fetch_add(&op->arrived, 1);
    errno = 0;
    switch (op->kind) {
    case OP_WAIT_UNTIL: op->result = weft_fd_wait_until(op->fd, op->events, op->deadline); break;
    case OP_WAIT_CTX: op->result = weft_fd_wait_ctx(op->fd, op->events, op->ctx); break;
    case OP_SELECT: op->result = weft_select(op->cases, op->n, op->deadline); break;
    case OP_SELECT_CTX: op->result = weft_select_ctx(op->cases, op->n, op->ctx); break;
    }
    op->error_number = errno;
    atomic_store(&op->returned_at, weft_now());
    atomic_store(&op->done, 1);
}

/* Start op as a goroutine and wait until it is (very likely) blocked. */
static void start_blocked(fd_op *op) {
    ck_assert_int_eq(weft_go(fd_op_run, op), 0);
    wait_for_count(&op->arrived, 1);
    ck_assert_msg(!atomic_load(&op->done), "the wait returned at once (%d)", op->result);
}

static void finish(fd_op *op) {
    ck_assert_msg(int_becomes(&op->done, 1), "the wait never returned");
}

/* ---------------------------------------------------------------------
 * weft_fd_wait_until */

START_TEST(test_fd_wait_until_reports_in_when_a_pipe_has_data) {
    int fds[2];
    make_pipe(fds);
    put_byte(fds[1], 'x');
    ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_IN, weft_deadline(WEFT_SEC(5))),
                     WEFT_FD_IN);
    ck_assert_int_eq(pending_bytes(fds[0]), 1); /* it read nothing */
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_wait_until_reports_out_on_a_writable_socket) {
    int fds[2];
    make_socketpair(fds, SOCK_NONBLOCK);
    ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_OUT, weft_deadline(WEFT_SEC(5))),
                     WEFT_FD_OUT);
    /* Asked for both, with no data: only OUT is ready. */
    ck_assert_int_eq(
        weft_fd_wait_until(fds[0], WEFT_FD_IN | WEFT_FD_OUT, weft_deadline(WEFT_SEC(5))),
        WEFT_FD_OUT);
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_wait_until_reports_only_the_events_asked_for) {
    int fds[2];
    make_socketpair(fds, SOCK_NONBLOCK);
    put_byte(fds[1], 'x');
    ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_IN, WEFT_NOWAIT), WEFT_FD_IN);
    ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_OUT, WEFT_NOWAIT), WEFT_FD_OUT);
    ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_IN | WEFT_FD_OUT, WEFT_NOWAIT),
                     WEFT_FD_IN | WEFT_FD_OUT);
    ck_assert_int_eq(pending_bytes(fds[0]), 1);
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_wait_until_serves_a_ready_fd_after_its_deadline) {
    int fds[2];
    make_pipe(fds);
    put_byte(fds[1], 'x');
    ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_IN, WEFT_NOWAIT), WEFT_FD_IN);
    ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_IN, weft_now() - WEFT_SEC(1)), WEFT_FD_IN);
    ck_assert_int_eq(pending_bytes(fds[0]), 1);
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_wait_until_with_a_passed_deadline_and_not_ready_is_eagain) {
    int fds[2];
    make_pipe(fds);
    weft_time start = weft_now();
    ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_IN, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_IN, weft_now()), WEFT_EAGAIN);
    ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_IN, weft_now() - WEFT_SEC(1)), WEFT_EAGAIN);
    ck_assert_msg(weft_now() - start < WEFT_SEC(1), "a try-once wait blocked");
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_wait_until_times_out_never_early) {
    int fds[2];
    make_pipe(fds);
    for (int round = 0; round < 3; round++) {
        weft_time timeout = WEFT_MS(10 * (round + 1)), start = weft_now();
        weft_time deadline = start + timeout;
        ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_IN, deadline), WEFT_ETIMEDOUT);
        weft_time elapsed = weft_now() - start;
        ck_assert_msg(elapsed >= timeout, "timed out after %lld ns of %lld", (long long)elapsed,
                      (long long)timeout);
        ck_assert(weft_now() >= deadline);
    }
    close_pair(fds);
}
END_TEST

START_TEST(test_blocked_fd_wait_until_wakes_when_data_arrives) {
    int fds[2];
    make_pipe(fds);
    fd_op op;
    fd_op_init(&op, OP_WAIT_UNTIL);
    op.fd = fds[0];
    op.events = WEFT_FD_IN;
    op.deadline = weft_deadline(WEFT_SEC(60));
    start_blocked(&op);
    weft_time sent_at = weft_now();
    put_byte(fds[1], 'x');
    finish(&op);
    ck_assert_int_eq(op.result, WEFT_FD_IN);
    ck_assert(atomic_load(&op.returned_at) - sent_at < WAKE_LIMIT * SLOWDOWN);
    ck_assert_int_eq(pending_bytes(fds[0]), 1);
    close_pair(fds);
}
END_TEST

START_TEST(test_blocked_fd_wait_for_out_wakes_when_room_appears) {
    int fds[2];
    make_socketpair(fds, SOCK_NONBLOCK);
    char block[4096];
    memset(block, 'f', sizeof block);
    while (send(fds[0], block, sizeof block, MSG_DONTWAIT) > 0) {}
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_OUT, WEFT_NOWAIT), WEFT_EAGAIN);
    fd_op op;
    fd_op_init(&op, OP_WAIT_UNTIL);
    op.fd = fds[0];
    op.events = WEFT_FD_OUT;
    op.deadline = weft_deadline(WEFT_SEC(60));
    start_blocked(&op);
    while (recv(fds[1], block, sizeof block, MSG_DONTWAIT) > 0) {}
    finish(&op);
    ck_assert_int_eq(op.result, WEFT_FD_OUT);
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_wait_until_on_a_hung_up_pipe_reports_err_or_in) {
    int fds[2];
    make_pipe(fds);
    close(fds[1]);
    fds[1] = -1;
    /* poll says POLLHUP: weft reports WEFT_FD_ERR (or IN: a read would see EOF). */
    int rc = weft_fd_wait_until(fds[0], WEFT_FD_IN, weft_deadline(WEFT_SEC(5)));
    ck_assert_msg(rc > 0 && (rc & (WEFT_FD_ERR | WEFT_FD_IN)), "hang-up gave %d", rc);
    ck_assert_msg((rc & ~(WEFT_FD_ERR | WEFT_FD_IN)) == 0, "hang-up gave %d", rc);
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_wait_until_for_out_on_a_pipe_without_reader_reports_err) {
    int fds[2];
    make_pipe(fds);
    close(fds[0]);
    fds[0] = -1;
    int rc = weft_fd_wait_until(fds[1], WEFT_FD_OUT, weft_deadline(WEFT_SEC(5)));
    ck_assert_msg(rc > 0 && (rc & WEFT_FD_ERR), "broken pipe gave %d", rc);
    close_pair(fds);
}
END_TEST

START_TEST(test_blocked_fd_wait_wakes_when_the_peer_hangs_up) {
    int fds[2];
    make_socketpair(fds, SOCK_NONBLOCK);
    fd_op op;
    fd_op_init(&op, OP_WAIT_UNTIL);
    op.fd = fds[0];
    op.events = WEFT_FD_IN;
    op.deadline = weft_deadline(WEFT_SEC(60));
    start_blocked(&op);
    close(fds[1]);
    fds[1] = -1;
    finish(&op);
    ck_assert_msg(op.result > 0 && (op.result & (WEFT_FD_ERR | WEFT_FD_IN)), "hang-up gave %d",
                  op.result);
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_wait_until_on_a_closed_fd_reports_err) {
    int fds[2];
    make_pipe(fds);
    int stale = fds[0];
    close_pair(fds);
    /* POLLNVAL: "WEFT_FD_ERR is reported for ... an invalid fd". */
    int rc = weft_fd_wait_until(stale, WEFT_FD_IN, weft_deadline(WEFT_SEC(2)));
    ck_assert_msg(rc > 0 && (rc & WEFT_FD_ERR), "a closed fd gave %d", rc);
}
END_TEST

START_TEST(test_fd_wait_until_with_a_negative_fd_is_einval) {
    /* Finite deadlines: a wait that ignored the bad fd would time out, not hang. */
    ck_assert_int_eq(weft_fd_wait_until(-1, WEFT_FD_IN, weft_deadline(WEFT_MS(500))), WEFT_EINVAL);
    ck_assert_int_eq(weft_fd_wait_until(-5, WEFT_FD_OUT, WEFT_NOWAIT), WEFT_EINVAL);
    ck_assert_int_eq(weft_fd_wait_ctx(-1, WEFT_FD_IN, NULL), WEFT_EINVAL);
}
END_TEST

START_TEST(test_fd_wait_until_with_no_events_is_einval) {
    int fds[2];
    make_pipe(fds);
    put_byte(fds[1], 'x'); /* ready or not, the call is wrong */
    ck_assert_int_eq(weft_fd_wait_until(fds[0], 0, weft_deadline(WEFT_MS(500))), WEFT_EINVAL);
    ck_assert_int_eq(weft_fd_wait_until(fds[0], 0, WEFT_NOWAIT), WEFT_EINVAL);
    ck_assert_int_eq(weft_fd_wait_until(fds[1], 0, weft_deadline(WEFT_MS(500))), WEFT_EINVAL);
    weft_ctx *ctx = weft_ctx_with_timeout(NULL, WEFT_MS(500));
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(weft_fd_wait_ctx(fds[0], 0, ctx), WEFT_EINVAL);
    weft_ctx_release(ctx);
    ck_assert_int_eq(pending_bytes(fds[0]), 1);
    close_pair(fds);
}
END_TEST

static void on_signal(int signal_number) { (void)signal_number; }

static void *fd_op_thread(void *arg) {
    fd_op_run(arg);
    return NULL;
}

/* EINTR is retried: signals (with a handler, no SA_RESTART) neither end
 * the wait early nor turn into an error. */
START_TEST(test_fd_wait_until_is_not_ended_by_signals) {
    struct sigaction action = {.sa_handler = on_signal}, saved;
    sigemptyset(&action.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR1, &action, &saved), 0);
    int fds[2];
    make_pipe(fds);
    fd_op op;
    fd_op_init(&op, OP_WAIT_UNTIL);
    op.fd = fds[0];
    op.events = WEFT_FD_IN;
    weft_time timeout = WEFT_MS(200), start = weft_now();
    op.deadline = start + timeout;
    pthread_t thread;
    start_thread(&thread, fd_op_thread, &op);
    wait_for_count(&op.arrived, 1);
    for (int k = 0; k < 5 && !atomic_load(&op.done); k++) {
        pthread_kill(thread, SIGUSR1);
        sleep_ms(20);
    }
    join_thread(thread);
    ck_assert_int_eq(op.result, WEFT_ETIMEDOUT);
    ck_assert(atomic_load(&op.returned_at) >= op.deadline);
    ck_assert_int_eq(sigaction(SIGUSR1, &saved, NULL), 0);
    close_pair(fds);
}
END_TEST

/* Readiness is level-triggered and nothing is read: every waiter on one
 * fd sees it ready. */
START_TEST(test_every_wait_on_one_fd_wakes_when_it_becomes_ready) {
    enum { WAITERS = 4 };
    int fds[2];
    make_pipe(fds);
    fd_op ops[WAITERS];
    for (int k = 0; k < WAITERS; k++) {
        fd_op_init(&ops[k], k % 2 ? OP_WAIT_CTX : OP_WAIT_UNTIL);
        ops[k].fd = fds[0];
        ops[k].events = WEFT_FD_IN;
        ops[k].deadline = weft_deadline(WEFT_SEC(60));
        start_blocked(&ops[k]);
    }
    put_byte(fds[1], 'x');
    for (int k = 0; k < WAITERS; k++) {
        finish(&ops[k]);
        ck_assert_int_eq(ops[k].result, WEFT_FD_IN);
    }
    ck_assert_int_eq(pending_bytes(fds[0]), 1);
    close_pair(fds);
}
END_TEST

/* ---------------------------------------------------------------------
 * weft_fd_wait_ctx */

typedef struct {
    weft_ctx *ctx;
    weft_time delay;
    atomic_llong cancelled_at;
} canceller;

static void cancel_later(void *arg) {
    canceller *self = arg;
    sleep_ms((long)(self->delay / WEFT_MS(1)));
    atomic_store(&self->cancelled_at, weft_now());
    weft_ctx_cancel(self->ctx);
}

static int compare_time(const void *a, const void *b) {
    weft_time x = *(const weft_time *)a, y = *(const weft_time *)b;
    return (x > y) - (x < y);
}

/* A wait with no deadline ends soon after another goroutine's cancel:
 * every round under WAKE_LIMIT, the median under 50 ms (a wake-up, not a
 * poll loop that looks now and then). */
START_TEST(test_fd_wait_ctx_returns_ecanceled_soon_after_a_cancel) {
    enum { ROUNDS = 5 };
    int fds[2];
    make_pipe(fds);
    weft_time latency[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        fd_op op;
        fd_op_init(&op, OP_WAIT_CTX);
        op.fd = fds[0];
        op.events = WEFT_FD_IN;
        op.ctx = weft_ctx_with_cancel(NULL);
        ck_assert_ptr_nonnull(op.ctx);
        start_blocked(&op);
        canceller cancel = {.ctx = op.ctx, .delay = WEFT_MS(5)};
        atomic_init(&cancel.cancelled_at, 0);
        ck_assert_int_eq(weft_go(cancel_later, &cancel), 0);
        finish(&op);
        ck_assert_int_eq(op.result, WEFT_ECANCELED);
        weft_time cancelled_at = atomic_load(&cancel.cancelled_at);
        ck_assert(cancelled_at != 0);
        latency[round] = atomic_load(&op.returned_at) - cancelled_at;
        ck_assert_msg(latency[round] < WAKE_LIMIT * SLOWDOWN,
                      "round %d: woke %lld ns after the cancel", round, (long long)latency[round]);
        weft_ctx_release(op.ctx);
    }
    qsort(latency, ROUNDS, sizeof *latency, compare_time);
    ck_assert_msg(latency[ROUNDS / 2] < WEFT_MS(50) * SLOWDOWN,
                  "median wake-up %lld ns after the cancel", (long long)latency[ROUNDS / 2]);
    ck_assert_int_eq(pending_bytes(fds[0]), 0);
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_wait_ctx_with_a_deadline_times_out_never_early) {
    int fds[2];
    make_pipe(fds);
    weft_time start = weft_now(), timeout = WEFT_MS(30);
    weft_ctx *ctx = weft_ctx_with_timeout(NULL, timeout);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(weft_fd_wait_ctx(fds[0], WEFT_FD_IN, ctx), WEFT_ETIMEDOUT);
    ck_assert(weft_now() - start >= timeout);
    ck_assert(weft_now() >= weft_ctx_deadline(ctx));
    weft_ctx_release(ctx);
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_wait_ctx_serves_a_ready_fd_over_an_ended_ctx) {
    int fds[2];
    make_pipe(fds);
    put_byte(fds[1], 'x');
    weft_ctx *cancelled = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(cancelled);
    weft_ctx_cancel(cancelled);
    ck_assert_int_eq(weft_fd_wait_ctx(fds[0], WEFT_FD_IN, cancelled), WEFT_FD_IN);
    weft_ctx *expired = weft_ctx_with_deadline(NULL, weft_now() - WEFT_SEC(1));
    ck_assert_ptr_nonnull(expired);
    ck_assert_int_eq(weft_fd_wait_ctx(fds[0], WEFT_FD_IN, expired), WEFT_FD_IN);
    ck_assert_int_eq(weft_fd_wait_ctx(fds[0], WEFT_FD_IN, NULL), WEFT_FD_IN);
    ck_assert_int_eq(pending_bytes(fds[0]), 1);
    weft_ctx_release(cancelled);
    weft_ctx_release(expired);
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_wait_ctx_with_an_ended_ctx_and_nothing_ready_returns_its_error) {
    int fds[2];
    make_pipe(fds);
    weft_ctx *cancelled = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(cancelled);
    weft_ctx_cancel(cancelled);
    ck_assert_int_eq(weft_fd_wait_ctx(fds[0], WEFT_FD_IN, cancelled), WEFT_ECANCELED);
    weft_ctx *expired = weft_ctx_with_deadline(NULL, weft_now() - WEFT_SEC(1));
    ck_assert_ptr_nonnull(expired);
    ck_assert_int_eq(weft_fd_wait_ctx(fds[0], WEFT_FD_IN, expired), WEFT_ETIMEDOUT);
    weft_ctx_release(cancelled);
    weft_ctx_release(expired);
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_wait_ctx_on_a_child_ends_when_the_parent_is_cancelled) {
    int fds[2];
    make_pipe(fds);
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(parent);
    fd_op op;
    fd_op_init(&op, OP_WAIT_CTX);
    op.fd = fds[0];
    op.events = WEFT_FD_IN;
    op.ctx = weft_ctx_with_value(parent, &op, &op);
    ck_assert_ptr_nonnull(op.ctx);
    start_blocked(&op);
    weft_ctx_cancel(parent);
    finish(&op);
    ck_assert_int_eq(op.result, WEFT_ECANCELED);
    weft_ctx_release(op.ctx);
    weft_ctx_release(parent);
    close_pair(fds);
}
END_TEST

/* ---------------------------------------------------------------------
 * weft_fd_close */

/* weft_fd_close may only begin once the wait is registered; give the
 * waiter more than SETTLE_MS to get there. */
#define CLOSE_SETTLE_MS 50

START_TEST(test_fd_close_wakes_a_goroutine_blocked_in_fd_wait_ctx) {
    int fds[2];
    make_pipe(fds);
    fd_op op;
    fd_op_init(&op, OP_WAIT_CTX);
    op.fd = fds[0];
    op.events = WEFT_FD_IN;
    op.ctx = NULL; /* nothing else can end it */
    start_blocked(&op);
    sleep_ms(CLOSE_SETTLE_MS);
    ck_assert_int_eq(weft_fd_close(fds[0]), 0);
    finish(&op);
    ck_assert_int_eq(op.result, WEFT_ECLOSED);
    ck_assert(!fd_is_open(fds[0]));
    fds[0] = -1;
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_close_wakes_every_wait_on_the_fd) {
    enum { WAITERS = 3 };
    int fds[2];
    make_pipe(fds);
    fd_op ops[WAITERS];
    for (int k = 0; k < WAITERS; k++) {
        fd_op_init(&ops[k], k == 0 ? OP_WAIT_UNTIL : OP_WAIT_CTX);
        ops[k].fd = fds[0];
        ops[k].events = k == 2 ? WEFT_FD_IN | WEFT_FD_OUT : WEFT_FD_IN;
        ops[k].deadline = weft_deadline(WEFT_SEC(60));
        start_blocked(&ops[k]);
    }
    sleep_ms(CLOSE_SETTLE_MS);
    ck_assert_int_eq(weft_fd_close(fds[0]), 0);
    for (int k = 0; k < WAITERS; k++) {
        finish(&ops[k]);
        ck_assert_msg(ops[k].result == WEFT_ECLOSED, "waiter %d got %d", k, ops[k].result);
    }
    fds[0] = -1;
    close_pair(fds);
}
END_TEST

START_TEST(test_fd_close_wakes_a_select_blocked_on_its_fd_case) {
    int fds[2];
    make_pipe(fds);
    weft_chan *never = make_int_chan(0);
    int value = -1;
    weft_fdwait wait = {.fd = fds[0], .events = WEFT_FD_IN, .revents = 0};
    weft_case cases[2] = {WEFT_RECV_CASE(never, &value), WEFT_FD_CASE(&wait)};
    fd_op op;
    fd_op_init(&op, OP_SELECT);
    op.cases = cases;
    op.n = 2;
    op.deadline = weft_deadline(WEFT_SEC(60));
    start_blocked(&op);
    sleep_ms(CLOSE_SETTLE_MS);
    ck_assert_int_eq(weft_fd_close(fds[0]), 0);
    finish(&op);
    ck_assert_int_eq(op.result, 1);
    ck_assert_int_eq(cases[1].err, WEFT_ECLOSED);
    ck_assert_int_eq(value, -1);
    fds[0] = -1;
    close_pair(fds);
    weft_chan_release(never);
}
END_TEST

START_TEST(test_fd_close_wakes_a_select_ctx_blocked_on_its_fd_case) {
    int fds[2];
    make_pipe(fds);
    weft_chan *never = make_int_chan(1);
    int value = -1;
    weft_fdwait wait = {.fd = fds[0], .events = WEFT_FD_IN, .revents = 0};
    weft_case cases[2] = {WEFT_FD_CASE(&wait), WEFT_RECV_CASE(never, &value)};
    fd_op op;
    fd_op_init(&op, OP_SELECT_CTX);
    op.cases = cases;
    op.n = 2;
    op.ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(op.ctx);
    start_blocked(&op);
    sleep_ms(CLOSE_SETTLE_MS);
    ck_assert_int_eq(weft_fd_close(fds[0]), 0);
    finish(&op);
    ck_assert_int_eq(op.result, 0);
    ck_assert_int_eq(cases[0].err, WEFT_ECLOSED);
    ck_assert_int_eq(weft_ctx_err(op.ctx), 0);
    weft_ctx_cancel(op.ctx);
    weft_ctx_release(op.ctx);
    fds[0] = -1;
    close_pair(fds);
    weft_chan_release(never);
}
END_TEST

START_TEST(test_fd_close_with_no_waiter_closes_the_fd) {
    int fds[2];
    make_pipe(fds);
    ck_assert_int_eq(weft_fd_close(fds[0]), 0);
    ck_assert(!fd_is_open(fds[0]));
    ck_assert_int_eq(weft_fd_close(fds[1]), 0);
    ck_assert(!fd_is_open(fds[1]));
}
END_TEST

START_TEST(test_fd_close_of_a_bad_fd_is_esys_with_ebadf) {
    int fds[2];
    make_pipe(fds);
    int stale = fds[0];
    close_pair(fds);
    errno = 0;
    ck_assert_int_eq(weft_fd_close(stale), WEFT_ESYS);
    ck_assert_int_eq(errno, EBADF);
}
END_TEST

/* ---------------------------------------------------------------------
 * Select over channels, fds and a context */

/* A goroutine that sends one int on a channel and records the result. */
typedef struct {
    weft_chan *chan;
    int value;
    atomic_int arrived, done;
    int result;
} sender;

static void send_value(void *arg) {
    sender *self = arg;
    atomic_fetch_add(&self->arrived, 1);
    self->result = weft_chan_send_until(self->chan, &self->value, weft_deadline(WEFT_SEC(60)));
    atomic_store(&self->done, 1);
}

static void start_sender(sender *s, weft_chan *chan, int value) {
    s->chan = chan;
    s->value = value;
    s->result = 12345;
    atomic_init(&s->arrived, 0);
    atomic_init(&s->done, 0);
    ck_assert_int_eq(weft_go(send_value, s), 0);
}

enum source { FROM_CHAN, FROM_FD, FROM_CANCEL, SOURCES };

/* The three ways a blocked select_ctx over {RECV(chan), FD(pipe)} can
 * end. _i picks which source fires first and the channel's capacity; the
 * other two fire after the select has returned. The winner decides the
 * result; the losers consume nothing: the byte stays in the pipe, the
 * value stays with its sender (unbuffered) or in the buffer. */
START_TEST(test_blocked_select_ctx_takes_whichever_source_fires_first) {
    enum source first = (enum source)(_i % SOURCES);
    size_t cap = (size_t)(_i / SOURCES);
    int fds[2];
    make_pipe(fds);
    weft_chan *chan = make_int_chan(cap);
    int received = -1;
    weft_fdwait wait = {.fd = fds[0], .events = WEFT_FD_IN, .revents = 0};
    weft_case cases[2] = {WEFT_RECV_CASE(chan, &received), WEFT_FD_CASE(&wait)};
    fd_op op;
    fd_op_init(&op, OP_SELECT_CTX);
    op.cases = cases;
    op.n = 2;
    op.ctx = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(op.ctx);
    start_blocked(&op);

    sender s;
    bool sent = false, written = false, cancelled = false;
    for (int step = 0; step < SOURCES; step++) {
        enum source now = (enum source)((first + step) % SOURCES);
        switch (now) {
        case FROM_CHAN:
            if (cap == 0) {
                start_sender(&s, chan, 77);
                wait_for_count(&s.arrived, 1);
            } else {
                int value = 77;
                ck_assert_int_eq(weft_chan_try_send(chan, &value), 0);
            }
            sent = true;
            break;
        case FROM_FD:
            put_byte(fds[1], 'x');
            written = true;
            break;
        case FROM_CANCEL:
            weft_ctx_cancel(op.ctx);
            cancelled = true;
            break;
        default: break;
        }
        if (step == 0) {
            finish(&op);
            ck_assert_int_eq(op.result, first == FROM_CHAN ? 0
                                        : first == FROM_FD ? 1
                                                           : WEFT_ECANCELED);
        }
    }
    ck_assert(sent && written && cancelled);
    if (first == FROM_CHAN) {
        ck_assert_int_eq(received, 77);
        ck_assert_int_eq(cases[0].err, 0);
    } else {
        ck_assert_int_eq(received, -1); /* the loser stored nothing */
        int value = -1;
        ck_assert_int_eq(weft_chan_recv_until(chan, &value, weft_deadline(WEFT_SEC(10))), 0);
        ck_assert_int_eq(value, 77);
    }
    if (first == FROM_FD) {
        ck_assert_int_eq(wait.revents, WEFT_FD_IN);
        ck_assert_int_eq(cases[1].err, 0);
    }
    /* Whoever won, the byte was never read. */
    ck_assert_int_eq(pending_bytes(fds[0]), 1);
    if (cap == 0) {
        ck_assert(int_becomes(&s.done, 1));
        ck_assert_int_eq(s.result, 0);
    }
    weft_ctx_release(op.ctx);
    close_pair(fds);
    weft_chan_release(chan);
}
END_TEST

/* All three sources fire together, in a random order and without waiting
 * for the select in between: any of them may win, but nothing is lost or
 * duplicated. The sender's value is received exactly once (by the select
 * or afterwards), the byte is always still in the pipe. */
START_TEST(test_select_ctx_racing_chan_fd_and_cancel_loses_nothing) {
    long rounds = scaled(300);
    uint64_t random_state = 0x1234 + (uint64_t)_i;
    int wins[3] = {0};
    for (long round = 0; round < rounds; round++) {
        int fds[2];
        make_pipe(fds);
        weft_chan *chan = make_int_chan(0);
        int received = -1;
        weft_fdwait wait = {.fd = fds[0], .events = WEFT_FD_IN, .revents = 0};
        weft_case cases[2] = {WEFT_FD_CASE(&wait), WEFT_RECV_CASE(chan, &received)};
        fd_op op;
        fd_op_init(&op, OP_SELECT_CTX);
        op.cases = cases;
        op.n = 2;
        op.ctx = weft_ctx_with_cancel(NULL);
        ck_assert_ptr_nonnull(op.ctx);
        ck_assert_int_eq(weft_go(fd_op_run, &op), 0);
        if (test_random(&random_state) % 2) sleep_ms(1);
        int order = (int)(test_random(&random_state) % 6);
        static const enum source orders[6][3] = {
            {FROM_CHAN, FROM_FD, FROM_CANCEL}, {FROM_CHAN, FROM_CANCEL, FROM_FD},
            {FROM_FD, FROM_CHAN, FROM_CANCEL}, {FROM_FD, FROM_CANCEL, FROM_CHAN},
            {FROM_CANCEL, FROM_CHAN, FROM_FD}, {FROM_CANCEL, FROM_FD, FROM_CHAN}};
        sender s;
        for (int step = 0; step < 3; step++) {
            switch (orders[order][step]) {
            case FROM_CHAN: start_sender(&s, chan, (int)round); break;
            case FROM_FD: put_byte(fds[1], 'x'); break;
            case FROM_CANCEL: weft_ctx_cancel(op.ctx); break;
            default: break;
            }
        }
        finish(&op);
        ck_assert_msg(op.result == 0 || op.result == 1 || op.result == WEFT_ECANCELED,
                      "round %ld: %d", round, op.result);
        if (op.result == 1) {
            ck_assert_int_eq(received, (int)round);
            wins[1]++;
        } else {
            ck_assert_int_eq(received, -1);
            int value = -1;
            ck_assert_int_eq(weft_chan_recv_until(chan, &value, weft_deadline(WEFT_SEC(10))), 0);
            ck_assert_int_eq(value, (int)round);
            if (op.result == 0) {
                ck_assert_int_eq(wait.revents, WEFT_FD_IN);
                wins[0]++;
            } else {
                wins[2]++;
            }
        }
        ck_assert(int_becomes(&s.done, 1));
        ck_assert_int_eq(s.result, 0);
        ck_assert_int_eq(pending_bytes(fds[0]), 1);
        weft_ctx_release(op.ctx);
        close_pair(fds);
        weft_chan_release(chan);
    }
    ck_assert_int_eq(wins[0] + wins[1] + wins[2], (int)rounds);
}
END_TEST

/* An fd and a channel, both always ready: each wins 40-60% of 10,000
 * non-blocking selects (5000 +- 1000 is over 20 sigma). */
START_TEST(test_select_is_fair_between_a_ready_fd_and_a_ready_channel) {
    enum { TRIALS = 10000 };
    int fds[2];
    make_pipe(fds);
    put_byte(fds[1], 'x');
    weft_chan *chan = make_int_chan(1);
    int value = 5;
    ck_assert_int_eq(weft_chan_try_send(chan, &value), 0);
    weft_fdwait wait = {.fd = fds[0], .events = WEFT_FD_IN, .revents = 0};
    int received = -1;
    weft_case cases[2] = {WEFT_FD_CASE(&wait), WEFT_RECV_CASE(chan, &received)};
    int counts[2] = {0};
    for (int t = 0; t < TRIALS; t++) {
        wait.revents = 0;
        int rc = weft_select(cases, 2, WEFT_NOWAIT);
        ck_assert_msg(rc == 0 || rc == 1, "trial %d: %d", t, rc);
        counts[rc]++;
        if (rc == 0)
            ck_assert_int_eq(wait.revents, WEFT_FD_IN);
        else
            ck_assert_int_eq(weft_chan_try_send(chan, &value), 0);
    }
    for (int k = 0; k < 2; k++)
        ck_assert_msg(counts[k] >= TRIALS * 4 / 10 && counts[k] <= TRIALS * 6 / 10,
                      "case %d chosen %d of %d times", k, counts[k], TRIALS);
    ck_assert_int_eq(pending_bytes(fds[0]), 1);
    close_pair(fds);
    weft_chan_release(chan);
}
END_TEST

START_TEST(test_select_with_nowait_takes_a_ready_fd) {
    int pipe_fds[2], socket_fds[2];
    make_pipe(pipe_fds);
    make_socketpair(socket_fds, SOCK_NONBLOCK);
    weft_chan *empty = make_int_chan(1);
    int received = -1;
    weft_fdwait readable = {.fd = pipe_fds[0], .events = WEFT_FD_IN, .revents = 0};
    weft_fdwait writable = {.fd = socket_fds[0], .events = WEFT_FD_OUT, .revents = 0};
    weft_case cases[3] = {WEFT_RECV_CASE(empty, &received), WEFT_FD_CASE(&readable),
                          WEFT_FD_CASE(&writable)};
    /* The socket is writable; the pipe has nothing. */
    ck_assert_int_eq(weft_select(cases, 3, WEFT_NOWAIT), 2);
    ck_assert_int_eq(cases[2].err, 0);
    ck_assert_int_eq(writable.revents, WEFT_FD_OUT);
    /* Now only the pipe. */
    put_byte(pipe_fds[1], 'x');
    ck_assert_int_eq(weft_select(cases, 2, WEFT_NOWAIT), 1);
    ck_assert_int_eq(cases[1].err, 0);
    ck_assert_int_eq(readable.revents, WEFT_FD_IN);
    ck_assert_int_eq(pending_bytes(pipe_fds[0]), 1);
    ck_assert_int_eq(received, -1);
    close_pair(pipe_fds);
    close_pair(socket_fds);
    weft_chan_release(empty);
}
END_TEST

START_TEST(test_select_with_nowait_and_no_ready_fd_is_eagain) {
    int fds[2];
    make_pipe(fds);
    weft_chan *empty = make_int_chan(0);
    int received = -1;
    weft_fdwait wait = {.fd = fds[0], .events = WEFT_FD_IN, .revents = 0};
    weft_case cases[2] = {WEFT_FD_CASE(&wait), WEFT_RECV_CASE(empty, &received)};
    ck_assert_int_eq(weft_select(cases, 2, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(weft_select(cases, 2, weft_now() - WEFT_SEC(1)), WEFT_EAGAIN);
    ck_assert_int_eq(weft_select(cases, 1, WEFT_NOWAIT), WEFT_EAGAIN);
    ck_assert_int_eq(received, -1);
    close_pair(fds);
    weft_chan_release(empty);
}
END_TEST

START_TEST(test_select_with_only_an_fd_case_times_out_never_early) {
    int fds[2];
    make_pipe(fds);
    weft_fdwait wait = {.fd = fds[0], .events = WEFT_FD_IN, .revents = 0};
    weft_case cases[1] = {WEFT_FD_CASE(&wait)};
    weft_time start = weft_now(), timeout = WEFT_MS(30);
    ck_assert_int_eq(weft_select(cases, 1, start + timeout), WEFT_ETIMEDOUT);
    ck_assert(weft_now() - start >= timeout);
    weft_ctx *ctx = weft_ctx_with_timeout(NULL, timeout);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(weft_select_ctx(cases, 1, ctx), WEFT_ETIMEDOUT);
    ck_assert(weft_now() >= weft_ctx_deadline(ctx));
    weft_ctx_release(ctx);
    close_pair(fds);
}
END_TEST

START_TEST(test_blocked_select_wakes_when_its_fd_becomes_ready) {
    int fds[2];
    make_socketpair(fds, SOCK_NONBLOCK);
    weft_chan *never = make_int_chan(0);
    int received = -1;
    weft_fdwait wait = {.fd = fds[0], .events = WEFT_FD_IN, .revents = 0};
    weft_case cases[2] = {WEFT_RECV_CASE(never, &received), WEFT_FD_CASE(&wait)};
    fd_op op;
    fd_op_init(&op, OP_SELECT);
    op.cases = cases;
    op.n = 2;
    op.deadline = weft_deadline(WEFT_SEC(60));
    start_blocked(&op);
    put_byte(fds[1], 'x');
    finish(&op);
    ck_assert_int_eq(op.result, 1);
    ck_assert_int_eq(cases[1].err, 0);
    ck_assert_int_eq(wait.revents, WEFT_FD_IN);
    ck_assert_int_eq(pending_bytes(fds[0]), 1);
    close_pair(fds);
    weft_chan_release(never);
}
END_TEST

typedef struct {
    weft_chan *chan;
    int sent;
} late_sender;

static void *send_after_a_moment(void *arg) {
    late_sender *sender = arg;
    sleep_ms(2);
    int value = 7;
    sender->sent = weft_chan_send(sender->chan, &value);
    return NULL;
}

/* A channel partner wakes a select that sleeps in poll through the
 * thread's eventfd. Whatever count that leaves behind must not end the
 * thread's next fd wait before its deadline. */
START_TEST(test_a_poll_woken_by_a_channel_leaves_the_next_fd_wait_its_whole_deadline) {
    int fds[2];
    make_pipe(fds);
    weft_chan *chan = make_int_chan(0);
    for (long round = 0; round < scaled(20); round++) {
        late_sender sender = {chan, -1};
        pthread_t thread;
        ck_assert_int_eq(pthread_create(&thread, NULL, send_after_a_moment, &sender), 0);
        int received = -1;
        weft_fdwait wait = {.fd = fds[0], .events = WEFT_FD_IN, .revents = 0};
        weft_case cases[2] = {WEFT_RECV_CASE(chan, &received), WEFT_FD_CASE(&wait)};
        ck_assert_int_eq(weft_select(cases, 2, weft_deadline(WEFT_SEC(30))), 0);
        ck_assert_int_eq(received, 7);
        ck_assert_int_eq(pthread_join(thread, NULL), 0);
        ck_assert_int_eq(sender.sent, 0);
        weft_time deadline = weft_deadline(WEFT_MS(5));
        ck_assert_int_eq(weft_fd_wait_until(fds[0], WEFT_FD_IN, deadline), WEFT_ETIMEDOUT);
        ck_assert(weft_now() >= deadline);
    }
    close_pair(fds);
    weft_chan_release(chan);
}
END_TEST

START_TEST(test_biased_select_takes_a_ready_fd_case_in_array_order) {
    int fds[2];
    make_pipe(fds);
    put_byte(fds[1], 'x');
    weft_chan *chan = make_int_chan(1);
    int value = 8, received = -1;
    ck_assert_int_eq(weft_chan_try_send(chan, &value), 0);
    weft_fdwait wait = {.fd = fds[0], .events = WEFT_FD_IN, .revents = 0};
    weft_case fd_first[2] = {WEFT_FD_CASE(&wait), WEFT_RECV_CASE(chan, &received)};
    for (int t = 0; t < 100; t++) ck_assert_int_eq(weft_select_biased(fd_first, 2, WEFT_NOWAIT), 0);
    ck_assert_int_eq(received, -1);
    weft_case chan_first[2] = {WEFT_RECV_CASE(chan, &received), WEFT_FD_CASE(&wait)};
    ck_assert_int_eq(weft_select_biased(chan_first, 2, WEFT_NOWAIT), 0);
    ck_assert_int_eq(received, 8);
    ck_assert_int_eq(weft_select_biased(chan_first, 2, WEFT_NOWAIT), 1);
    ck_assert_int_eq(pending_bytes(fds[0]), 1);
    close_pair(fds);
    weft_chan_release(chan);
}
END_TEST

START_TEST(test_select_fd_case_on_a_hung_up_pipe_is_ready_with_err) {
    int fds[2];
    make_pipe(fds);
    close(fds[1]);
    fds[1] = -1;
    weft_chan *never = make_int_chan(0);
    weft_fdwait wait = {.fd = fds[0], .events = WEFT_FD_IN, .revents = 0};
    weft_case cases[2] = {WEFT_RECV_CASE(never, NULL), WEFT_FD_CASE(&wait)};
    ck_assert_int_eq(weft_select(cases, 2, weft_deadline(WEFT_SEC(5))), 1);
    ck_assert_int_eq(cases[1].err, 0);
    ck_assert_msg(wait.revents & (WEFT_FD_ERR | WEFT_FD_IN), "revents %d", wait.revents);
    close_pair(fds);
    weft_chan_release(never);
}
END_TEST

/* More cases than WEFT_SELECT_STACK_CASES, all fds: the ready one is
 * found, whether ready at the call or later. */
enum { MANY_FDS = 100 };

START_TEST(test_select_over_100_fd_cases_returns_the_ready_index) {
    int(*pipes)[2] = calloc(MANY_FDS, sizeof *pipes);
    weft_fdwait *waits = calloc(MANY_FDS, sizeof *waits);
    weft_case *cases = calloc(MANY_FDS, sizeof *cases);
    ck_assert(pipes && waits && cases);
    for (int k = 0; k < MANY_FDS; k++) {
        make_pipe(pipes[k]);
        waits[k] = (weft_fdwait){.fd = pipes[k][0], .events = WEFT_FD_IN, .revents = 0};
        cases[k] = (weft_case)WEFT_FD_CASE(&waits[k]);
    }
    ck_assert_int_eq(weft_select(cases, MANY_FDS, WEFT_NOWAIT), WEFT_EAGAIN);
    put_byte(pipes[73][1], 'x');
    ck_assert_int_eq(weft_select(cases, MANY_FDS, WEFT_NOWAIT), 73);
    ck_assert_int_eq(waits[73].revents, WEFT_FD_IN);
    /* Blocked, then woken by index 91. */
    ck_assert_int_eq(read(pipes[73][0], &(char){0}, 1), 1);
    fd_op op;
    fd_op_init(&op, OP_SELECT);
    op.cases = cases;
    op.n = MANY_FDS;
    op.deadline = weft_deadline(WEFT_SEC(60));
    start_blocked(&op);
    put_byte(pipes[91][1], 'y');
    finish(&op);
    ck_assert_int_eq(op.result, 91);
    ck_assert_int_eq(waits[91].revents, WEFT_FD_IN);
    for (int k = 0; k < MANY_FDS; k++) close_pair(pipes[k]);
    free(pipes);
    free(waits);
    free(cases);
}
END_TEST

/* The contract names WEFT_EINVAL for a bad case; an fd case with no
 * weft_fdwait, or one that asks for no event (weft_fd_wait's rule), is
 * one. Rejected as a whole, even beside a ready case, and nothing moves. */
START_TEST(test_select_with_a_null_fdwait_is_einval) {
    weft_chan *ready = make_int_chan(1);
    int value = 3, received = -1;
    ck_assert_int_eq(weft_chan_try_send(ready, &value), 0);
    weft_case alone[1] = {WEFT_FD_CASE(NULL)};
    ck_assert_int_eq(weft_select(alone, 1, weft_deadline(WEFT_MS(500))), WEFT_EINVAL);
    ck_assert_int_eq(weft_select(alone, 1, WEFT_NOWAIT), WEFT_EINVAL);
    weft_case mixed[2] = {WEFT_RECV_CASE(ready, &received), WEFT_FD_CASE(NULL)};
    ck_assert_int_eq(weft_select(mixed, 2, WEFT_NOWAIT), WEFT_EINVAL);
    ck_assert_int_eq(weft_select_ctx(mixed, 2, NULL), WEFT_EINVAL);
    ck_assert_int_eq(received, -1);
    ck_assert_uint_eq(weft_chan_len(ready), 1);
    weft_chan_release(ready);
}
END_TEST

START_TEST(test_select_with_an_fd_case_asking_no_event_is_einval) {
    int fds[2];
    make_pipe(fds);
    put_byte(fds[1], 'x');
    weft_chan *ready = make_int_chan(1);
    int value = 3, received = -1;
    ck_assert_int_eq(weft_chan_try_send(ready, &value), 0);
    weft_fdwait nothing = {.fd = fds[0], .events = 0, .revents = 0};
    weft_case alone[1] = {WEFT_FD_CASE(&nothing)};
    ck_assert_int_eq(weft_select(alone, 1, weft_deadline(WEFT_MS(500))), WEFT_EINVAL);
    weft_case mixed[2] = {WEFT_RECV_CASE(ready, &received), WEFT_FD_CASE(&nothing)};
    ck_assert_int_eq(weft_select(mixed, 2, WEFT_NOWAIT), WEFT_EINVAL);
    ck_assert_int_eq(received, -1);
    ck_assert_uint_eq(weft_chan_len(ready), 1);
    ck_assert_int_eq(pending_bytes(fds[0]), 1);
    weft_chan_release(ready);
    close_pair(fds);
}
END_TEST

/* ---------------------------------------------------------------------
 * Many waiters */

typedef struct {
    int fd;
    weft_ctx *ctx;
    atomic_int *arrived;
    int result;
} mass_waiter;

static void mass_wait(void *arg) {
    mass_waiter *self = arg;
    atomic_fetch_add(self->arrived, 1);
    self->result = weft_fd_wait_ctx(self->fd, WEFT_FD_IN, self->ctx);
}

/* Raise the soft fd limit to the hard one if need be; false if even that
 * is below need. Leaves the old limit in *saved. */
static bool have_fds(rlim_t need, struct rlimit *saved) {
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, saved), 0);
    if (saved->rlim_cur >= need) return true;
    if (saved->rlim_max != RLIM_INFINITY && saved->rlim_max < need) return false;
    struct rlimit raised = {saved->rlim_max, saved->rlim_max};
    return setrlimit(RLIMIT_NOFILE, &raised) == 0;
}

START_TEST(test_one_cancel_releases_a_thousand_goroutines_blocked_on_pipes) {
    int count = (int)scaled(1000);
    /* Two pipe ends per waiter and one eventfd per waiting thread. */
    struct rlimit saved;
    if (!have_fds((rlim_t)count * 3 + 100, &saved)) {
        printf("test_io: skipping the %d-waiter test: RLIMIT_NOFILE hard limit %lu is too low\n",
               count, (unsigned long)saved.rlim_max);
        return;
    }
    int baseline = weft_goroutines();
    int fds_before = open_fd_count();
    int(*pipes)[2] = calloc((size_t)count, sizeof *pipes);
    mass_waiter *waiters = calloc((size_t)count, sizeof *waiters);
    ck_assert(pipes && waiters);
    weft_ctx *parent = weft_ctx_with_cancel(NULL);
    ck_assert_ptr_nonnull(parent);
    atomic_int arrived = 0;
    for (int k = 0; k < count; k++) {
        make_pipe(pipes[k]);
        waiters[k].fd = pipes[k][0];
        /* Half wait on the parent itself, half on a child of it. */
        waiters[k].ctx = k % 2 ? weft_ctx_with_cancel(parent) : parent;
        ck_assert_ptr_nonnull(waiters[k].ctx);
        waiters[k].arrived = &arrived;
        waiters[k].result = 12345;
        ck_assert_int_eq(weft_go(mass_wait, &waiters[k]), 0);
    }
    wait_for_count(&arrived, count);
    sleep_ms(100); /* a thousand threads reach poll */
    ck_assert_int_eq(weft_goroutines(), baseline + count);
    weft_ctx_cancel(parent);
    ck_assert_msg(goroutines_become(baseline), "%d goroutines still running",
                  weft_goroutines() - baseline);
    for (int k = 0; k < count; k++) {
        ck_assert_msg(waiters[k].result == WEFT_ECANCELED, "waiter %d: %d", k, waiters[k].result);
        if (waiters[k].ctx != parent) weft_ctx_release(waiters[k].ctx);
        close_pair(pipes[k]);
    }
    weft_ctx_release(parent);
    /* What is left is at most one eventfd per pool thread that waited. */
    int fds_after = open_fd_count();
    ck_assert_msg(fds_after <= fds_before + count + 8, "%d fds before, %d after", fds_before,
                  fds_after);
    free(pipes);
    free(waiters);
    setrlimit(RLIMIT_NOFILE, &saved);
}
END_TEST

/* ---------------------------------------------------------------------
 * The thread's eventfd cannot be made */

typedef struct {
    int fd;                     /* an empty pipe's read end, made before the limit drops */
    int write_fd;               /* its write end */
    bool use_select;            /* wait with a select on an fd case, not weft_fd_wait_until */
    int setup_errno;            /* errno of a dup() under the lowered limit: EMFILE */
    int starved, starved_errno; /* the first wait, with no fd to spare */
    int timed, with_data;       /* the same waits after the limit is back */
    int revents;
} emfile_probe;

static int probe_wait(emfile_probe *probe, weft_time deadline) {
    if (!probe->use_select) return weft_fd_wait_until(probe->fd, WEFT_FD_IN, deadline);
    weft_fdwait wait = {.fd = probe->fd, .events = WEFT_FD_IN, .revents = 0};
    weft_case cases[1] = {WEFT_FD_CASE(&wait)};
    int rc = weft_select(cases, 1, deadline);
    if (rc == 0) rc = wait.revents;
    return rc;
}

static void *emfile_thread(void *arg) {
    emfile_probe *probe = arg;
    struct rlimit saved;
    if (getrlimit(RLIMIT_NOFILE, &saved) != 0) return NULL;
    /* The lowest free fd becomes the limit: no new fd can be made. */
    int lowest = fcntl(0, F_DUPFD, 0);
    if (lowest < 0) return NULL;
    close(lowest);
    struct rlimit lowered = {(rlim_t)lowest, saved.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &lowered) != 0) return NULL;
    int extra = dup(0);
    probe->setup_errno = extra < 0 ? errno : 0;
    if (extra >= 0) close(extra);
    errno = 0;
    probe->starved = probe_wait(probe, weft_deadline(WEFT_MS(200)));
    probe->starved_errno = errno;
    setrlimit(RLIMIT_NOFILE, &saved);

    probe->timed = probe_wait(probe, weft_deadline(WEFT_MS(20)));
    char byte = 'x';
    if (write(probe->write_fd, &byte, 1) != 1) return NULL;
    probe->with_data = probe_wait(probe, weft_deadline(WEFT_SEC(5)));
    return NULL;
}

/* valgrind keeps its own descriptors and emulates RLIMIT_NOFILE, so the
 * lowered limit does not starve the wait's eventfd the same way there. */
static bool under_valgrind(void) {
    const char *preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload");
}

static void run_emfile_probe(bool use_select) {
    if (under_valgrind()) return;
    int fds[2];
    make_pipe(fds);
    emfile_probe probe = {.fd = fds[0],
                          .write_fd = fds[1],
                          .use_select = use_select,
                          .setup_errno = -1,
                          .starved = 12345,
                          .timed = 12345,
                          .with_data = 12345};
    pthread_t thread; /* fresh: it has never waited on an fd */
    start_thread(&thread, emfile_thread, &probe);
    join_thread(thread);
    ck_assert_msg(probe.setup_errno == EMFILE, "the lowered limit did not starve dup (%d)",
                  probe.setup_errno);
    ck_assert_msg(probe.starved == WEFT_ESYS, "the starved wait gave %d", probe.starved);
    ck_assert_int_eq(probe.starved_errno, EMFILE);
    ck_assert_int_eq(probe.timed, WEFT_ETIMEDOUT);
    ck_assert_int_eq(probe.with_data, WEFT_FD_IN);
    close_pair(fds);
}

START_TEST(test_fd_wait_without_an_fd_for_the_eventfd_is_esys_emfile_then_works) {
    run_emfile_probe(false);
}
END_TEST

START_TEST(test_fd_select_without_an_fd_for_the_eventfd_is_esys_emfile_then_works) {
    run_emfile_probe(true);
}
END_TEST

/* ---------------------------------------------------------------------
 * fork: the child's waits are its own; the parent's are not disturbed */

enum { CHILD_ALARM_SECONDS = 20 };

enum {
    CHILD_OK = 0,
    CHILD_SETUP = 10,
    CHILD_OWN_DATA,
    CHILD_SELECT,
    CHILD_CANCEL,
    CHILD_CANCEL_LATE
};

typedef struct {
    int fd;
    weft_time delay;
} delayed_write;

static void write_later(void *arg) {
    delayed_write *self = arg;
    sleep_ms((long)(self->delay / WEFT_MS(1)));
    char byte = 'c';
    if (write(self->fd, &byte, 1) != 1) abort();
}

typedef struct {
    weft_chan *chan;
    int fd;
    int result, received;
    atomic_int done;
} child_select;

static void child_select_main(void *arg) {
    child_select *self = arg;
    weft_fdwait wait = {.fd = self->fd, .events = WEFT_FD_IN, .revents = 0};
    weft_case cases[2] = {WEFT_FD_CASE(&wait), WEFT_RECV_CASE(self->chan, &self->received)};
    self->result = weft_select(cases, 2, weft_deadline(WEFT_SEC(10)));
    atomic_store(&self->done, 1);
}

static int child_body(void) {
    int own[2], quiet[2];
    if (pipe2(own, O_NONBLOCK) != 0 || pipe2(quiet, O_NONBLOCK) != 0) return CHILD_SETUP;
    /* 1. woken by its own data, written by a goroutine of the child */
    delayed_write writer = {.fd = own[1], .delay = WEFT_MS(20)};
    if (weft_go(write_later, &writer) != 0) return CHILD_SETUP;
    if (weft_fd_wait_until(own[0], WEFT_FD_IN, weft_deadline(WEFT_SEC(5))) != WEFT_FD_IN)
        return CHILD_OWN_DATA;
    /* 2. a goroutine's select on an fd and a channel, woken by the child's send */
    child_select selecting = {.fd = quiet[0], .result = 12345, .received = -1};
    atomic_init(&selecting.done, 0);
    selecting.chan = weft_chan_make(sizeof(int), 0);
    if (!selecting.chan) return CHILD_SETUP;
    if (weft_go(child_select_main, &selecting) != 0) return CHILD_SETUP;
    int value = 42;
    if (weft_chan_send_until(selecting.chan, &value, weft_deadline(WEFT_SEC(5))) != 0)
        return CHILD_SELECT;
    if (!int_becomes(&selecting.done, 1) || selecting.result != 1 || selecting.received != 42)
        return CHILD_SELECT;
    /* 3. this thread (the copy of the parent's, eventfd and all) blocked in
     * ctx waits, each cancelled by a goroutine: ten wake-ups while the
     * parent's thread sleeps */
    for (int round = 0; round < 10; round++) {
        weft_ctx *ctx = weft_ctx_with_cancel(NULL);
        if (!ctx) return CHILD_SETUP;
        canceller cancel = {.ctx = ctx, .delay = WEFT_MS(10)};
        atomic_init(&cancel.cancelled_at, 0);
        if (weft_go(cancel_later, &cancel) != 0) return CHILD_SETUP;
        weft_time start = weft_now();
        if (weft_fd_wait_ctx(quiet[0], WEFT_FD_IN, ctx) != WEFT_ECANCELED) return CHILD_CANCEL;
        if (weft_now() - start > WAKE_LIMIT * SLOWDOWN) return CHILD_CANCEL_LATE;
        if (!goroutines_become(0)) return CHILD_SETUP; /* the canceller is done with ctx */
        weft_ctx_release(ctx);
    }
    return CHILD_OK;
}

START_TEST(test_fork_child_waits_on_its_own_and_leaves_the_parent_undisturbed) {
    int warm[2], quiet[2];
    make_pipe(warm);
    make_pipe(quiet);
    /* This thread has waited on an fd: it has its eventfd, which the
     * child inherits. */
    ck_assert_int_eq(weft_fd_wait_until(warm[0], WEFT_FD_IN, weft_deadline(WEFT_MS(5))),
                     WEFT_ETIMEDOUT);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        signal(SIGALRM, SIG_DFL);
        alarm(CHILD_ALARM_SECONDS);
        _exit(child_body());
    }
    /* While the child wakes its threads (its copy of this one among them),
     * this thread waits 300 ms on a pipe nobody writes. */
    weft_time timeout = WEFT_MS(300), start = weft_now();
    int rc = weft_fd_wait_until(quiet[0], WEFT_FD_IN, start + timeout);
    weft_time elapsed = weft_now() - start;
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "the child died of signal %d", WTERMSIG(status));
    ck_assert_msg(WEXITSTATUS(status) == CHILD_OK, "the child failed at step %d",
                  WEXITSTATUS(status));
    ck_assert_msg(rc == WEFT_ETIMEDOUT, "the parent's wait gave %d", rc);
    ck_assert_msg(elapsed >= timeout, "the parent's wait ended after %lld ns of %lld",
                  (long long)elapsed, (long long)timeout);
    /* And it still waits properly afterwards. */
    start = weft_now();
    ck_assert_int_eq(weft_fd_wait_until(quiet[0], WEFT_FD_IN, start + WEFT_MS(20)), WEFT_ETIMEDOUT);
    ck_assert(weft_now() - start >= WEFT_MS(20));
    put_byte(quiet[1], 'p');
    ck_assert_int_eq(weft_fd_wait_until(quiet[0], WEFT_FD_IN, weft_deadline(WEFT_SEC(5))),
                     WEFT_FD_IN);
    close_pair(warm);
    close_pair(quiet);
}
END_TEST

/* ---------------------------------------------------------------------
 * A byte stream through a socketpair, with random deadlines */

#if WEFT_TEST_HAVE_BYTE_CALLS
enum { STREAM_BYTES = 1 << 20 };

static unsigned char stream_byte(size_t offset) {
    return (unsigned char)((offset * 2654435761u) >> 13 ^ offset);
}

typedef struct {
    int fd;
    unsigned char *data;
    uint64_t random_state;
    long timeouts;
    atomic_int done;
} stream_end;

/* A deadline from already passed to half a millisecond away. */
static weft_time random_deadline(uint64_t *state) {
    if (test_random(state) % 4 == 0) return WEFT_NOWAIT;
    return weft_deadline((weft_time)(test_random(state) % WEFT_US(500)));
}

static void stream_writer(void *arg) {
    stream_end *self = arg;
    size_t sent = 0;
    while (sent < STREAM_BYTES) {
        size_t chunk = 1 + test_random(&self->random_state) % 65536;
        if (chunk > STREAM_BYTES - sent) chunk = STREAM_BYTES - sent;
        weft_time deadline = random_deadline(&self->random_state);
        ssize_t rc = weft_write_until(self->fd, self->data + sent, chunk, deadline);
        if (rc > 0) {
            WORKER_EXPECT((size_t)rc <= chunk);
            /* A short write only once the deadline has passed. */
            if ((size_t)rc < chunk) WORKER_EXPECT(weft_now() >= deadline);
            sent += (size_t)rc;
        } else {
            WORKER_EXPECT(rc == WEFT_ETIMEDOUT || rc == WEFT_EAGAIN);
            if (rc == WEFT_ETIMEDOUT) WORKER_EXPECT(weft_now() >= deadline);
            if (rc != WEFT_ETIMEDOUT && rc != WEFT_EAGAIN) break;
            self->timeouts++;
        }
    }
    WORKER_EXPECT(shutdown(self->fd, SHUT_WR) == 0);
    atomic_store(&self->done, 1);
}

static void stream_reader(void *arg) {
    stream_end *self = arg;
    size_t got = 0;
    for (;;) {
        size_t want = 1 + test_random(&self->random_state) % 100000;
        if (want > STREAM_BYTES + 1 - got) want = STREAM_BYTES + 1 - got; /* room to see more */
        weft_time deadline = random_deadline(&self->random_state);
        ssize_t rc = weft_read_until(self->fd, self->data + got, want, deadline);
        if (rc == 0) break;
        if (rc > 0) {
            WORKER_EXPECT((size_t)rc <= want);
            got += (size_t)rc;
            if (got > STREAM_BYTES) break;
        } else {
            WORKER_EXPECT(rc == WEFT_ETIMEDOUT || rc == WEFT_EAGAIN);
            if (rc != WEFT_ETIMEDOUT && rc != WEFT_EAGAIN) break;
            self->timeouts++;
        }
        if (test_random(&self->random_state) % 8 == 0) sleep_ms(1); /* let the writer time out */
    }
    WORKER_EXPECT(got == STREAM_BYTES);
    shutdown(self->fd, SHUT_RDWR); /* a writer still going fails instead of blocking */
    atomic_store(&self->done, 1);
}

START_TEST(test_stream_through_a_socketpair_with_random_deadlines_arrives_intact) {
    int fds[2];
    make_socketpair(fds, 0); /* blocking sockets: weft must not need O_NONBLOCK */
    int small = 4096;
    ck_assert_int_eq(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    int flags[2] = {fcntl(fds[0], F_GETFL), fcntl(fds[1], F_GETFL)};
    unsigned char *sent = malloc(STREAM_BYTES), *received = malloc(STREAM_BYTES + 1);
    ck_assert(sent && received);
    for (size_t k = 0; k < STREAM_BYTES; k++) sent[k] = stream_byte(k);
    memset(received, 0, STREAM_BYTES + 1);
    stream_end writer = {.fd = fds[0], .data = sent, .random_state = 11};
    stream_end reader = {.fd = fds[1], .data = received, .random_state = 29};
    atomic_init(&writer.done, 0);
    atomic_init(&reader.done, 0);
    ck_assert_int_eq(weft_go(stream_writer, &writer), 0);
    ck_assert_int_eq(weft_go(stream_reader, &reader), 0);
    bool finished = int_becomes(&reader.done, 1) && int_becomes(&writer.done, 1);
    check_worker_failures();
    ck_assert_msg(finished, "the stream never ended");
    size_t first_difference = 0;
    while (first_difference < STREAM_BYTES && sent[first_difference] == received[first_difference])
        first_difference++;
    ck_assert_msg(first_difference == STREAM_BYTES, "the streams differ from byte %zu",
                  first_difference);
    ck_assert_int_eq(fcntl(fds[0], F_GETFL), flags[0]);
    ck_assert_int_eq(fcntl(fds[1], F_GETFL), flags[1]);
    printf("test_io: stream: %ld writer and %ld reader timeouts\n", writer.timeouts,
           reader.timeouts);
    free(sent);
    free(received);
    close_pair(fds);
}
END_TEST
#endif

/* --------------------------------------------------------------------- */

static Suite *io_suite(void) {
    Suite *suite = suite_create("io");
    TCase *tc;

    tc = new_case(suite, "wait_until");
    tcase_add_test(tc, test_fd_wait_until_reports_in_when_a_pipe_has_data);
    tcase_add_test(tc, test_fd_wait_until_reports_out_on_a_writable_socket);
    tcase_add_test(tc, test_fd_wait_until_reports_only_the_events_asked_for);
    tcase_add_test(tc, test_fd_wait_until_serves_a_ready_fd_after_its_deadline);
    tcase_add_test(tc, test_fd_wait_until_with_a_passed_deadline_and_not_ready_is_eagain);
    tcase_add_test(tc, test_fd_wait_until_times_out_never_early);
    tcase_add_test(tc, test_blocked_fd_wait_until_wakes_when_data_arrives);
    tcase_add_test(tc, test_blocked_fd_wait_for_out_wakes_when_room_appears);
    tcase_add_test(tc, test_fd_wait_until_on_a_hung_up_pipe_reports_err_or_in);
    tcase_add_test(tc, test_fd_wait_until_for_out_on_a_pipe_without_reader_reports_err);
    tcase_add_test(tc, test_blocked_fd_wait_wakes_when_the_peer_hangs_up);
    tcase_add_test(tc, test_fd_wait_until_on_a_closed_fd_reports_err);
    tcase_add_test(tc, test_fd_wait_until_with_a_negative_fd_is_einval);
    tcase_add_test(tc, test_fd_wait_until_with_no_events_is_einval);
    tcase_add_test(tc, test_every_wait_on_one_fd_wakes_when_it_becomes_ready);
    tcase_add_test(tc, test_fd_wait_until_is_not_ended_by_signals);

    tc = new_case(suite, "wait_ctx");
    tcase_add_test(tc, test_fd_wait_ctx_returns_ecanceled_soon_after_a_cancel);
    tcase_add_test(tc, test_fd_wait_ctx_with_a_deadline_times_out_never_early);
    tcase_add_test(tc, test_fd_wait_ctx_serves_a_ready_fd_over_an_ended_ctx);
    tcase_add_test(tc, test_fd_wait_ctx_with_an_ended_ctx_and_nothing_ready_returns_its_error);
    tcase_add_test(tc, test_fd_wait_ctx_on_a_child_ends_when_the_parent_is_cancelled);

    tc = new_case(suite, "close");
    tcase_add_test(tc, test_fd_close_wakes_a_goroutine_blocked_in_fd_wait_ctx);
    tcase_add_test(tc, test_fd_close_wakes_every_wait_on_the_fd);
    tcase_add_test(tc, test_fd_close_wakes_a_select_blocked_on_its_fd_case);
    tcase_add_test(tc, test_fd_close_wakes_a_select_ctx_blocked_on_its_fd_case);
    tcase_add_test(tc, test_fd_close_with_no_waiter_closes_the_fd);
    tcase_add_test(tc, test_fd_close_of_a_bad_fd_is_esys_with_ebadf);

    tc = new_case(suite, "select");
    tcase_add_loop_test(tc, test_blocked_select_ctx_takes_whichever_source_fires_first, 0,
                        2 * SOURCES);
    tcase_add_loop_test(tc, test_select_ctx_racing_chan_fd_and_cancel_loses_nothing, 0, 2);
    tcase_add_test(tc, test_select_is_fair_between_a_ready_fd_and_a_ready_channel);
    tcase_add_test(tc, test_select_with_nowait_takes_a_ready_fd);
    tcase_add_test(tc, test_select_with_nowait_and_no_ready_fd_is_eagain);
    tcase_add_test(tc, test_select_with_only_an_fd_case_times_out_never_early);
    tcase_add_test(tc, test_blocked_select_wakes_when_its_fd_becomes_ready);
    tcase_add_test(tc, test_a_poll_woken_by_a_channel_leaves_the_next_fd_wait_its_whole_deadline);
    tcase_add_test(tc, test_biased_select_takes_a_ready_fd_case_in_array_order);
    tcase_add_test(tc, test_select_fd_case_on_a_hung_up_pipe_is_ready_with_err);
    tcase_add_test(tc, test_select_over_100_fd_cases_returns_the_ready_index);
    tcase_add_test(tc, test_select_with_a_null_fdwait_is_einval);
    tcase_add_test(tc, test_select_with_an_fd_case_asking_no_event_is_einval);

    tc = new_case(suite, "many");
    tcase_add_test(tc, test_one_cancel_releases_a_thousand_goroutines_blocked_on_pipes);

    tc = new_case(suite, "eventfd");
    tcase_add_test(tc, test_fd_wait_without_an_fd_for_the_eventfd_is_esys_emfile_then_works);
    tcase_add_test(tc, test_fd_select_without_an_fd_for_the_eventfd_is_esys_emfile_then_works);

#ifndef UNDER_TSAN
    /* ThreadSanitizer starts no threads in the child of a multi-threaded
     * process; the child here starts goroutines. */
    tc = new_case(suite, "fork");
    tcase_add_test(tc, test_fork_child_waits_on_its_own_and_leaves_the_parent_undisturbed);
#else
    (void)test_fork_child_waits_on_its_own_and_leaves_the_parent_undisturbed;
#endif

#if WEFT_TEST_HAVE_BYTE_CALLS
    tc = new_case(suite, "stream");
    tcase_add_test(tc, test_stream_through_a_socketpair_with_random_deadlines_arrives_intact);
#endif
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(io_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
