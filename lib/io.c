/* The byte calls of weft/io.h: read, write, recv, send, accept, connect,
 * each with a deadline or a context.
 *
 * Shape. Every call is "try, and wait only when it would block": the
 * system call runs first, and only EAGAIN sends us to a readiness wait
 * (the forms of weft_fd_wait_until and _ctx in lib/fdwait.h), after which we
 * try again. Trying first is what makes ready beat ended: data already
 * there is returned even when the deadline has passed or the context has
 * ended, because the wait, which is where those are checked, is never
 * reached. This file knows nothing of poll, eventfds or wake-ups; it
 * only knows which event each call waits for and what each wait result
 * means to it. A wait's > 0 result (WEFT_FD_ERR among the events or not)
 * only says "try again": the retried call reports the real error.
 *
 * One loop, `transfer`, serves read, write, recv and send: a call reads
 * at most once (any count > 0 ends it) but writes until all n bytes are
 * out, and once a write has made progress it returns that count for
 * whatever ends it (deadline, context, error), because the caller must
 * learn how much went out; the error, if any, comes back on the next
 * call. Accept and connect have loops of their own.
 *
 * Flags. Sockets are driven with MSG_DONTWAIT (and MSG_NOSIGNAL on the
 * way out), so the caller's O_NONBLOCK never matters and never changes.
 * weft_read and weft_write try recv/send first and learn from ENOTSOCK
 * that the fd is something else (a pipe, a tty, an eventfd); that fd must
 * already be O_NONBLOCK, checked before anything is read or written (a
 * blocking read would park the thread where no deadline reaches it).
 * accept4 and connect have no per-call "don't wait" flag, so on a
 * blocking socket they set O_NONBLOCK for the length of the call (the
 * `borrow` below) and put the caller's flags back. Concurrent weft calls
 * on one fd share one borrow: the first sets the flag, the last restores
 * it, so no call restores "blocking" under another that still needs it
 * (the borrows are a list of stack nodes under one mutex, no allocation).
 *
 * Deadlines. A wait on a deadline already passed returns WEFT_EAGAIN.
 * When a call has waited once already and a later wait (after a retry
 * found nothing, say another reader was quicker) meets the deadline
 * passed, that is a timeout of this call, not a "would block": such a
 * WEFT_EAGAIN becomes WEFT_ETIMEDOUT. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdwait.h"
#include "panic.h"
#include "parker.h"
#include "weft/io.h"

/* How a call waits: until a deadline, or until a context ends. */
typedef struct {
    const char *call; /* the public call, for weft_debug_dump */
    weft_ctx *ctx;
    weft_time deadline;
    bool use_ctx;
    bool waited; /* a wait has returned ready once in this call */
} waiter;

static waiter until(const char *call, weft_time deadline) {
    return (waiter){.call = call, .deadline = deadline};
}

static waiter with_ctx(const char *call, weft_ctx *ctx) {
    return (waiter){.call = call, .ctx = ctx, .use_ctx = true};
}

/* Wait for events on fd, which a call has just found not ready (so the
 * wait need not poll before it sleeps, fdwait.h): > 0 to try again, or
 * the negative code that ends the call (WEFT_EAGAIN only if this call
 * has not waited before). */
static int wait_ready(int fd, int events, waiter *how) {
    weft__parker *self = weft__wait_begin_self(how->call, NULL, (size_t)fd, (size_t)events);
    int ready = how->use_ctx ? weft__fd_wait_unready_ctx(fd, events, how->ctx)
                             : weft__fd_wait_unready_until(fd, events, how->deadline);
    weft__wait_end(self);
    if (ready == WEFT_EAGAIN && how->waited) return WEFT_ETIMEDOUT;
    if (ready > 0) how->waited = true;
    return ready;
}

static bool would_block(int error) { return error == EAGAIN || error == EWOULDBLOCK; }

/* ---- read, write, recv, send -------------------------------------------- */

enum mode {
    PROBE,  /* weft_read / weft_write: a socket until ENOTSOCK says otherwise */
    SOCKET, /* recv / send with MSG_DONTWAIT */
    PLAIN,  /* read / write on an fd found O_NONBLOCK */
};

typedef struct {
    int fd;
    bool out;  /* write / send */
    int flags; /* the caller's recv / send flags */
    enum mode mode;
} transfer_op;

/* One system call, EINTR retried: the count, or -1 with errno. */
static ssize_t attempt(const transfer_op *op, char *buf, size_t n) {
    ssize_t count;
    do {
        if (op->mode == PLAIN)
            count = op->out ? write(op->fd, buf, n) : read(op->fd, buf, n);
        else if (op->out)
            count = send(op->fd, buf, n, op->flags | MSG_DONTWAIT | MSG_NOSIGNAL);
        else
            count = recv(op->fd, buf, n, op->flags | MSG_DONTWAIT);
    } while (count < 0 && errno == EINTR);
    return count;
}

/* 0 if fd is O_NONBLOCK, WEFT_EINVAL if not, WEFT_ESYS if fcntl failed. */
static int require_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return WEFT_ESYS;
    return flags & O_NONBLOCK ? 0 : WEFT_EINVAL;
}

/* The loop of every byte call: read once, or write all n bytes. Returns
 * the count, or (nothing moved) a negative code. */
static ssize_t transfer(transfer_op op, char *buf, size_t n, waiter how) {
    if (n > SSIZE_MAX) return WEFT_EINVAL;
    size_t done = 0;
    for (;;) {
        ssize_t count = attempt(&op, buf + done, n - done);
        if (count > 0 && op.out && done + (size_t)count < n) {
            done += (size_t)count; /* room for more: try again at once */
            continue;
        }
        if (count >= 0) return (ssize_t)(done + (size_t)count);
        if (op.mode == PROBE && errno == ENOTSOCK) {
            int invalid = require_nonblocking(op.fd);
            if (invalid) return invalid;
            op.mode = PLAIN;
            continue;
        }
        if (!would_block(errno)) return done ? (ssize_t)done : WEFT_ESYS;
        int ready = wait_ready(op.fd, op.out ? WEFT_FD_OUT : WEFT_FD_IN, &how);
        if (ready < 0) return done ? (ssize_t)done : ready;
    }
}

static transfer_op reader(int fd) { return (transfer_op){.fd = fd, .mode = PROBE}; }
static transfer_op writer(int fd) { return (transfer_op){.fd = fd, .out = true, .mode = PROBE}; }
static transfer_op receiver(int fd, int flags) {
    return (transfer_op){.fd = fd, .flags = flags, .mode = SOCKET};
}
static transfer_op sender(int fd, int flags) {
    return (transfer_op){.fd = fd, .out = true, .flags = flags, .mode = SOCKET};
}

ssize_t weft_read_until(int fd, void *buf, size_t n, weft_time deadline) {
    return transfer(reader(fd), buf, n, until(__func__, deadline));
}

ssize_t weft_read_ctx(int fd, void *buf, size_t n, weft_ctx *ctx) {
    return transfer(reader(fd), buf, n, with_ctx(__func__, ctx));
}

ssize_t weft_write_until(int fd, const void *buf, size_t n, weft_time deadline) {
    return transfer(writer(fd), (char *)buf, n, until(__func__, deadline));
}

ssize_t weft_write_ctx(int fd, const void *buf, size_t n, weft_ctx *ctx) {
    return transfer(writer(fd), (char *)buf, n, with_ctx(__func__, ctx));
}

ssize_t weft_recv_until(int fd, void *buf, size_t n, int flags, weft_time deadline) {
    return transfer(receiver(fd, flags), buf, n, until(__func__, deadline));
}

ssize_t weft_recv_ctx(int fd, void *buf, size_t n, int flags, weft_ctx *ctx) {
    return transfer(receiver(fd, flags), buf, n, with_ctx(__func__, ctx));
}

ssize_t weft_send_until(int fd, const void *buf, size_t n, int flags, weft_time deadline) {
    return transfer(sender(fd, flags), (char *)buf, n, until(__func__, deadline));
}

ssize_t weft_send_ctx(int fd, const void *buf, size_t n, int flags, weft_ctx *ctx) {
    return transfer(sender(fd, flags), (char *)buf, n, with_ctx(__func__, ctx));
}

/* ---- borrowing O_NONBLOCK (accept, connect) ----------------------------- */

/* One call's claim on O_NONBLOCK for fd, linked in `borrows` while the
 * call runs. All fields under borrows_lock. */
typedef struct borrow {
    struct borrow *next;
    int fd;
    int saved_flags; /* the caller's flags, to restore */
    bool listed;     /* false: fd was O_NONBLOCK already, nothing to undo */
} borrow;

static pthread_mutex_t borrows_lock = PTHREAD_MUTEX_INITIALIZER;
static borrow *borrows; /* the calls that hold fds O_NONBLOCK for now */

static void borrows_enter(void) {
    int error = pthread_mutex_lock(&borrows_lock);
    if (error) weft__panic_errno("pthread_mutex_lock", error);
}

static void borrows_leave(void) {
    int error = pthread_mutex_unlock(&borrows_lock);
    if (error) weft__panic_errno("pthread_mutex_unlock", error);
}

static borrow *borrow_of(int fd) {
    for (borrow *other = borrows; other; other = other->next)
        if (other->fd == fd) return other;
    return NULL;
}

/* Make fd O_NONBLOCK until nonblock_return(claim). 0, or WEFT_ESYS. */
static int nonblock_borrow(int fd, borrow *claim) {
    *claim = (borrow){.fd = fd};
    int result = 0;
    borrows_enter();
    borrow *other = borrow_of(fd);
    int flags = other ? other->saved_flags : fcntl(fd, F_GETFL);
    if (flags < 0)
        result = WEFT_ESYS;
    else if (other || !(flags & O_NONBLOCK)) {
        if (!other && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
            result = WEFT_ESYS;
        } else {
            claim->saved_flags = flags;
            claim->listed = true;
            claim->next = borrows;
            borrows = claim;
        }
    }
    borrows_leave();
    return result;
}

/* End claim; the last claim on its fd restores the caller's flags. errno
 * is kept (the call's result may be WEFT_ESYS). */
static void nonblock_return(borrow *claim) {
    if (!claim->listed) return;
    int saved_errno = errno;
    borrows_enter();
    borrow **link = &borrows;
    while (*link != claim) link = &(*link)->next;
    *link = claim->next;
    if (!borrow_of(claim->fd)) (void)fcntl(claim->fd, F_SETFL, claim->saved_flags);
    borrows_leave();
    errno = saved_errno;
}

/* ---- accept ------------------------------------------------------------- */

/* Errors of one pending connection that accept(2) reports instead of the
 * next one (Linux passes a new connection's network errors through):
 * skip it and take the next. EOPNOTSUPP is not among them, though Linux
 * lists it there: it is also accept's answer on a socket that is not a
 * stream socket, which no retry would ever change. */
static bool connection_failed(int error) {
    switch (error) {
    case ECONNABORTED:
    case EPROTO:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case ENETUNREACH: return true;
    default: return false;
    }
}

static int accept_loop(int fd, struct sockaddr *addr, socklen_t *len, waiter *how) {
    for (;;) {
        int accepted = accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (accepted >= 0) return accepted;
        if (errno == EINTR || connection_failed(errno)) continue;
        if (!would_block(errno)) return WEFT_ESYS;
        int ready = wait_ready(fd, WEFT_FD_IN, how);
        if (ready < 0) return ready;
    }
}

static int accept_on(int fd, struct sockaddr *addr, socklen_t *len, waiter how) {
    borrow claim;
    int result = nonblock_borrow(fd, &claim);
    if (result) return result;
    result = accept_loop(fd, addr, len, &how);
    nonblock_return(&claim);
    return result;
}

int weft_accept_until(int fd, struct sockaddr *addr, socklen_t *len, weft_time deadline) {
    return accept_on(fd, addr, len, until(__func__, deadline));
}

int weft_accept_ctx(int fd, struct sockaddr *addr, socklen_t *len, weft_ctx *ctx) {
    return accept_on(fd, addr, len, with_ctx(__func__, ctx));
}

/* ---- connect ------------------------------------------------------------ */

/* connect(2) once, EINTR not retried (the connect goes on without us):
 * 0 connected, 1 in progress, or WEFT_ESYS. */
static int connect_step(int fd, const struct sockaddr *addr, socklen_t len) {
    if (connect(fd, addr, len) == 0) return 0;
    switch (errno) {
    case EISCONN: return 0; /* an earlier step's connect completed */
    case EINPROGRESS:
    case EALREADY:
    case EINTR: return 1;
    default: return WEFT_ESYS;
    }
}

/* Once writable: the connect's own error (SO_ERROR, which reading
 * clears), or a connect to ask whether it is done. */
static int connect_outcome(int fd, const struct sockaddr *addr, socklen_t len) {
    int error = 0;
    socklen_t size = sizeof error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) < 0) return WEFT_ESYS;
    if (error) {
        errno = error;
        return WEFT_ESYS;
    }
    return connect_step(fd, addr, len);
}

static int connect_loop(int fd, const struct sockaddr *addr, socklen_t len, waiter *how) {
    int state = connect_step(fd, addr, len);
    while (state == 1) {
        int ready = wait_ready(fd, WEFT_FD_OUT, how);
        if (ready < 0) return ready;
        state = connect_outcome(fd, addr, len);
    }
    return state;
}

static int connect_on(int fd, const struct sockaddr *addr, socklen_t len, waiter how) {
    borrow claim;
    int result = nonblock_borrow(fd, &claim);
    if (result) return result;
    result = connect_loop(fd, addr, len, &how);
    nonblock_return(&claim);
    return result;
}

int weft_connect_until(int fd, const struct sockaddr *addr, socklen_t len, weft_time deadline) {
    return connect_on(fd, addr, len, until(__func__, deadline));
}

int weft_connect_ctx(int fd, const struct sockaddr *addr, socklen_t len, weft_ctx *ctx) {
    return connect_on(fd, addr, len, with_ctx(__func__, ctx));
}
