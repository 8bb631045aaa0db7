/* weft/io.h — waiting on file descriptors: deadlines, contexts, select.
 *
 * A goroutine blocked on a socket, a pipe or a database client's fd can be
 * woken by a deadline or a context, and weft_select can wait on fds and
 * channels together.
 *
 * Every call tries the system call first and waits only when it would
 * block. Sockets are driven with MSG_DONTWAIT, so the byte calls never
 * change a caller's fd flags (accept and connect may, for the length of
 * the call: see them); any other fd must already be O_NONBLOCK (else
 * WEFT_EINVAL, checked before anything is read or written). Interrupted
 * system calls (EINTR) are retried; any other failure is WEFT_ESYS with
 * errno set. The deadline and context rules of every blocking weft call
 * hold: WEFT_EAGAIN for a deadline already passed with nothing ready,
 * WEFT_ETIMEDOUT once a deadline has passed (never before it), the
 * context's error (WEFT_ECANCELED or WEFT_ETIMEDOUT) once it has ended.
 * Ready beats ended: an fd that is ready is served even when the deadline
 * has passed or the context has ended.
 *
 * Cost: a thread that waits on an fd sleeps in poll(2) over its fds and
 * one eventfd of its own, created on its first such wait and kept; when
 * the thread exits, the next thread reuses it (so the count is one fd per
 * thread that waits on I/O at the same time, at most). A wake-up
 * from another thread (a cancel, a channel partner in a select) writes that
 * eventfd. When it cannot be created the call returns WEFT_ESYS with errno
 * EMFILE (or ENFILE). A forked child gets a new one.
 *
 * Lifetime: every call is done with buf, addr and len when it returns;
 * the context must stay alive until the call returns. */
#ifndef WEFT_IO_H
#define WEFT_IO_H

#include <sys/socket.h>
#include <sys/types.h>

#include "weft/error.h"
#include "weft/select.h"
#include "weft/time.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef WEFT_CTX_TYPEDEF
#define WEFT_CTX_TYPEDEF
typedef struct weft_ctx weft_ctx; /* weft/ctx.h */
#endif

/* Events to wait for and events found (poll's POLLIN, POLLOUT; WEFT_FD_ERR
 * is reported for an error, a hang-up or an invalid fd, never waited for). */
enum { WEFT_FD_IN = 1, WEFT_FD_OUT = 2, WEFT_FD_ERR = 4 };

/* Wait until fd has one of events (WEFT_FD_IN, WEFT_FD_OUT) or deadline.
 * Returns the ready events (> 0, WEFT_FD_ERR among them for an error or a
 * hang-up), WEFT_EAGAIN (deadline passed, not ready), WEFT_ETIMEDOUT,
 * WEFT_ECLOSED (weft_fd_close of fd), WEFT_EINVAL (fd < 0, no event
 * asked), WEFT_ESYS. Blocks. Reads and writes nothing. */
int weft_fd_wait_until(int fd, int events, weft_time deadline);

/* As weft_fd_wait_until with no deadline, ending when ctx does (NULL:
 * never): then returns ctx's error. */
int weft_fd_wait_ctx(int fd, int events, weft_ctx *ctx);

/* read(2) of up to n bytes, waiting for fd to be readable. Returns the
 * count (0 at end of file) or a negative code as above (WEFT_EINVAL also
 * for n > SSIZE_MAX); fd must be a socket or O_NONBLOCK. Blocks until
 * some bytes, the end, or an error. */
ssize_t weft_read_until(int fd, void *buf, size_t n, weft_time deadline);
ssize_t weft_read_ctx(int fd, void *buf, size_t n, weft_ctx *ctx);

/* write(2) of all n bytes, waiting for room as often as needed. Returns n,
 * or, if the deadline passed or ctx ended after some bytes went out, the
 * count written so far (> 0); with nothing written, a negative code.
 * A failure after progress (EPIPE, say) also returns the count; the next
 * call reports the failure. Blocks until all is written or it ends.
 * Sockets are written with MSG_NOSIGNAL (a closed peer is EPIPE, no
 * SIGPIPE); a pipe whose reader has gone raises SIGPIPE, as write(2). */
ssize_t weft_write_until(int fd, const void *buf, size_t n, weft_time deadline);
ssize_t weft_write_ctx(int fd, const void *buf, size_t n, weft_ctx *ctx);

/* recv(2) on a socket with flags (MSG_DONTWAIT is added): as weft_read.
 * On an fd that is not a socket: WEFT_ESYS, errno ENOTSOCK. */
ssize_t weft_recv_until(int fd, void *buf, size_t n, int flags, weft_time deadline);
ssize_t weft_recv_ctx(int fd, void *buf, size_t n, int flags, weft_ctx *ctx);

/* send(2) on a socket with flags (MSG_DONTWAIT and MSG_NOSIGNAL are
 * added): as weft_write, all n bytes or the count so far. */
ssize_t weft_send_until(int fd, const void *buf, size_t n, int flags, weft_time deadline);
ssize_t weft_send_ctx(int fd, const void *buf, size_t n, int flags, weft_ctx *ctx);

/* accept(2) on a listening socket, waiting for a connection. Returns the
 * new fd (non-blocking and close-on-exec) or a negative code; addr and len
 * as accept's (may be NULL). A connection that failed before it was
 * accepted is skipped: ECONNABORTED, and the network errors Linux passes
 * through accept (EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH,
 * ENETUNREACH; not EOPNOTSUPP, which is also "not a stream socket").
 * A blocking listener is O_NONBLOCK during the call only (concurrent weft
 * calls on it share that, the last one restores the caller's flags;
 * other users of the same open file see it non-blocking meanwhile). */
int weft_accept_until(int fd, struct sockaddr *addr, socklen_t *len, weft_time deadline);
int weft_accept_ctx(int fd, struct sockaddr *addr, socklen_t *len, weft_ctx *ctx);

/* connect(2), waiting for the connection to complete. Returns 0 when
 * connected; WEFT_ESYS with errno (ECONNREFUSED, ...) when it failed; a
 * deadline or ctx error when it ended first, after which the socket's
 * state is unspecified: close it. A blocking socket is O_NONBLOCK during
 * the call only, as for accept. An AF_UNIX socket whose listener's
 * backlog is full fails at once with errno EAGAIN: Linux offers nothing
 * to wait for there. */
int weft_connect_until(int fd, const struct sockaddr *addr, socklen_t len, weft_time deadline);
int weft_connect_ctx(int fd, const struct sockaddr *addr, socklen_t len, weft_ctx *ctx);

/* Wake every weft wait on fd (each returns WEFT_ECLOSED, a select its fd
 * case with err WEFT_ECLOSED), then close(2) it. Returns 0, or WEFT_ESYS
 * (close's errno; the fd is closed all the same, as Linux's close). A
 * wait that starts on fd after this call began is the caller's bug, as
 * any use of a closed fd. */
int weft_fd_close(int fd);

/* An fd, owned by ctx and created on first call, that polls readable once
 * ctx has ended, and stays so; it is closed when ctx is freed. For
 * hand-written poll or epoll loops: never read, write or close it. A
 * value context's fd is that of the cancelable context above it (the
 * same fd). Returns the fd, WEFT_EINVAL for a context that can never end
 * (NULL, background, values or without_cancel over it: where
 * weft_ctx_done is NULL), WEFT_ESYS (errno EMFILE, ...) when no fd can
 * be made; a later call tries again. A forked child must not use an fd
 * it got before the fork: it is the parent's (one counter for both). */
int weft_ctx_fd(weft_ctx *ctx);

/* A select case on an fd's readiness: ready when fd has one of events.
 * When it is chosen, revents says what is ready and nothing has been
 * read or written, so a case that loses loses nothing. A select woken by
 * weft_fd_close of fd returns the case with err WEFT_ECLOSED. */
typedef struct {
    int fd;
    int events;  /* WEFT_FD_IN | WEFT_FD_OUT */
    int revents; /* out: the ready events, when the case is chosen */
} weft_fdwait;

/* clang-format off */
#define WEFT_FD_CASE(w) {NULL, WEFT_FD, (void *)(w), 0}
/* clang-format on */

#ifdef __cplusplus
}
#endif
#endif
