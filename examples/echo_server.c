/* A line echo server on 127.0.0.1: every line a client sends is written
 * back to it. It shows a real service built on weft:
 *
 *   - one goroutine accepts; each connection is served by a goroutine of
 *     its own, holding a context that is a child of the server's root;
 *   - a semaphore bounds the connections served at once: the acceptor
 *     takes a slot before it accepts, the connection gives it back when it
 *     ends, so a client beyond the limit waits in the listen backlog;
 *   - a connection that sends nothing for the idle timeout is closed;
 *   - SIGINT or SIGTERM shuts the server down gracefully.
 *
 *     echo_server [--max-connections N] [--idle-timeout-ms MS]
 *                 [--shutdown-timeout-ms MS] PORT
 *
 * PORT 0 lets the kernel choose. The first line on stdout, flushed, is
 * "listening on 127.0.0.1:PORT"; the last, after a shutdown, is
 *     accepted A connections, closed C (I idle), received R requests, answered W
 * where a request is a complete line the server has read, and answered
 * counts the echoes it wrote in full.
 *
 * Waking blocked goroutines. Every blocking call takes a context:
 * weft_accept_ctx, weft_read_ctx and weft_write_ctx (weft/io.h) return the
 * context's error as soon as it ends, so canceling the root wakes the
 * acceptor and every connection wherever it waits, with no file
 * descriptor of our own to poll. The contexts form a tree:
 *
 *     root (canceled by the shutdown)
 *       connection (canceled when its goroutine ends: Go's defer cancel())
 *         idle (a deadline: idle timeout after the read began; one per read)
 *
 * A read waits on the idle context, so it ends with WEFT_ETIMEDOUT when the
 * client stays quiet too long and with WEFT_ECANCELED when the server stops:
 * one call, two reasons to give up, told apart by the error. A new idle
 * context per read is what "renewed per message" means; it is Go's
 *     ctx, cancel := context.WithTimeout(connCtx, idle); defer cancel()
 * around each read, and costs an allocation and a timer insertion.
 *
 * Ready beats ended: a read or write that can proceed does, even on an
 * ended context (weft/io.h). So a loop that only waited would keep
 * serving a client that never pauses; each loop therefore asks its
 * context first whether to go on, and the I/O calls' contexts only get
 * goroutines out of their waits to look.
 *
 * The shutdown sequence. SIGINT and SIGTERM are blocked in every thread
 * (main blocks them before weft starts any), and main, which has nothing
 * else to do, waits for them with sigwait(2): no signal handler runs, so
 * the shutdown is ordinary code that may call anything. Then:
 *   1. cancel the root context: the acceptor stops waiting for a slot or a
 *      client and closes the listening socket (clients still in the
 *      backlog are refused); each connection finishes the lines it has
 *      read, answering every one it can write at once, and closes;
 *   2. wait for the acceptor and the connections with a WaitGroup, giving
 *      up after the shutdown timeout (exit 1: something is stuck);
 *   3. wait for weft_goroutines() to read 0, so no goroutine is left;
 *   4. print the summary, free everything and exit 0. */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft.h>
#include <weft/io.h>

enum { LINE_MAX_BYTES = 4096 }; /* a longer line breaks the protocol: the connection is closed */

typedef struct {
    int listener;           /* the listening socket; the acceptor closes it */
    weft_ctx *root;         /* canceled by the shutdown */
    weft_sem slots;         /* one unit per connection being served */
    weft_wg tasks;          /* the acceptor and every connection */
    weft_time idle_timeout; /* from the command line; read-only */
    atomic_long accepted, closed, idle, received, answered; /* the summary */
} server;

typedef struct {
    server *server;
    int socket;    /* non-blocking; closed by the connection's goroutine */
    weft_ctx *ctx; /* owned: a child of server->root */
} connection;

/* Echo each complete line at the front of buffer, writing under ctx;
 * return the number of bytes consumed, or -1 when a reply could not be
 * written whole (the client is gone, stopped reading for the idle
 * timeout, or the server is stopping and the socket had no room). */
static long answer_lines(connection *conn, const char *buffer, size_t length, weft_ctx *ctx) {
    server *s = conn->server;
    size_t done = 0;
    const char *newline;
    while ((newline = memchr(buffer + done, '\n', length - done)) != NULL) {
        size_t line_length = (size_t)(newline + 1 - (buffer + done));
        atomic_fetch_add(&s->received, 1);
        /* All or a short count: short means ctx ended or the socket failed. */
        ssize_t sent = weft_write_ctx(conn->socket, buffer + done, line_length, ctx);
        if (sent != (ssize_t)line_length) return -1;
        atomic_fetch_add(&s->answered, 1);
        done += line_length;
    }
    return (long)done;
}

/* A connection's goroutine: read, echo every complete line, repeat until
 * the client closes, stays idle too long, or the server stops. A line is
 * answered as soon as it is complete, before the next read, so the server
 * never stops holding a line it has read but not answered; a partial line
 * is not a request yet and is dropped. */
static void serve(void *arg) {
    connection *conn = arg;
    server *s = conn->server;
    char buffer[LINE_MAX_BYTES];
    size_t length = 0;
    while (weft_ctx_err(conn->ctx) == WEFT_OK) {
        weft_ctx *idle = weft_ctx_with_timeout(conn->ctx, s->idle_timeout);
        if (!idle) break; /* out of memory: drop this client rather than the server */
        ssize_t got = weft_read_ctx(conn->socket, buffer + length, sizeof buffer - length, idle);
        long consumed = -1;
        if (got > 0) {
            length += (size_t)got;
            /* The reply's writes share the read's idle context: a client
             * that stops reading its echoes is idle too. */
            consumed = answer_lines(conn, buffer, length, idle);
        }
        weft_ctx_cancel(idle);
        weft_ctx_release(idle);
        /* The root has no deadline, so a timeout can only be idle's. */
        if (got == WEFT_ETIMEDOUT) atomic_fetch_add(&s->idle, 1);
        /* got: 0 the client closed; < 0 idle, stopping, or the connection broke. */
        if (consumed < 0) break;
        length -= (size_t)consumed;
        memmove(buffer, buffer + consumed, length);
        if (length == sizeof buffer) break; /* a line too long to hold */
    }
    close(conn->socket);
    atomic_fetch_add(&s->closed, 1);
    weft_ctx_cancel(conn->ctx); /* Go's defer cancel() */
    weft_ctx_release(conn->ctx);
    free(conn);
    weft_sem_release(&s->slots, 1); /* last: the acceptor may take the slot at once */
}

/* Start serving socket; on failure close it. Called with a slot held,
 * which the connection (or this function, on failure) gives back. */
static void start_connection(server *s, int socket) {
    int one = 1; /* echo each line at once rather than wait to batch small writes */
    setsockopt(socket, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    connection *conn = malloc(sizeof *conn);
    weft_ctx *ctx = weft_ctx_with_cancel(s->root);
    atomic_fetch_add(&s->accepted, 1);
    if (conn && ctx) {
        *conn = (connection){s, socket, ctx};
        if (weft_wg_go(&s->tasks, serve, conn) == WEFT_OK) return;
    }
    fprintf(stderr, "echo_server: cannot serve a connection: out of memory or threads\n");
    close(socket);
    atomic_fetch_add(&s->closed, 1);
    weft_ctx_release(ctx);
    free(conn);
    weft_sem_release(&s->slots, 1);
}

/* Out of file descriptors or memory is not one client's fault: it lasts
 * until connections end. Wait a while (or until the shutdown) and retry. */
static bool out_of_resources(int error) {
    return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

/* The acceptor's goroutine: take a slot, wait for a client, start its
 * goroutine; until the root context ends. */
static void accept_loop(void *arg) {
    server *s = arg;
    /* The explicit check: acquire and accept succeed on an ended context
     * when a slot or a client is there at once. */
    while (weft_ctx_err(s->root) == WEFT_OK && weft_sem_acquire(&s->slots, 1, s->root) == WEFT_OK) {
        int socket = weft_accept_ctx(s->listener, NULL, NULL, s->root);
        if (socket >= 0) {
            start_connection(s, socket);
            continue;
        }
        weft_sem_release(&s->slots, 1);
        if (socket == WEFT_ESYS && out_of_resources(errno)) {
            perror("echo_server: accept");
            weft_chan_recv_until(weft_ctx_done(s->root), NULL, weft_deadline(WEFT_MS(100)));
        }
        /* Otherwise: stopping (the loop's check ends it), or one client's
         * failure (weft_accept_ctx already skips aborted connections). */
    }
    close(s->listener); /* stop accepting: clients still in the backlog are refused */
}

/* A listening socket on 127.0.0.1:port, non-blocking; -1 on failure. The
 * port it got goes to *bound_port. */
static int listen_on(int port, int *bound_port) {
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0) return -1;
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    if (bind(listener, (struct sockaddr *)&address, size) != 0 ||
        listen(listener, SOMAXCONN) != 0 ||
        getsockname(listener, (struct sockaddr *)&address, &size) != 0) {
        close(listener);
        return -1;
    }
    *bound_port = ntohs(address.sin_port);
    return listener;
}

/* A number in [min, max], or -1. */
static long parse_number(const char *text, long min, long max) {
    char *end;
    errno = 0;
    long number = strtol(text, &end, 10);
    return errno == 0 && end != text && *end == '\0' && number >= min && number <= max ? number
                                                                                       : -1;
}

static int usage(const char *program) {
    fprintf(stderr,
            "usage: %s [--max-connections N] [--idle-timeout-ms MS] [--shutdown-timeout-ms MS] "
            "PORT\n",
            program);
    return 2;
}

int main(int argc, char **argv) {
    long max_connections = 64, idle_ms = 30000, shutdown_ms = 5000, port = -1;
    for (int i = 1; i < argc; i++) {
        long *option = strcmp(argv[i], "--max-connections") == 0       ? &max_connections
                       : strcmp(argv[i], "--idle-timeout-ms") == 0     ? &idle_ms
                       : strcmp(argv[i], "--shutdown-timeout-ms") == 0 ? &shutdown_ms
                                                                       : NULL;
        if (option && i + 1 < argc) {
            *option = parse_number(argv[++i], 1, INT_MAX);
        } else if (!option && port == -1) {
            port = parse_number(argv[i], 0, 65535);
            if (port < 0) return usage(argv[0]);
        } else {
            return usage(argv[0]);
        }
    }
    if (port < 0 || max_connections < 0 || idle_ms < 0 || shutdown_ms < 0) return usage(argv[0]);

    /* Before any thread starts, so every thread weft starts inherits it. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);

    static server s; /* static: its counters start at 0 */
    int bound_port;
    s.listener = listen_on((int)port, &bound_port);
    if (s.listener < 0) {
        perror("echo_server: listen");
        return 1;
    }
    s.root = weft_ctx_with_cancel(NULL);
    if (!s.root) {
        perror("echo_server: start");
        return 1;
    }
    weft_sem_init(&s.slots, max_connections);
    weft_wg_init(&s.tasks);
    s.idle_timeout = WEFT_MS(idle_ms);
    if (weft_wg_go(&s.tasks, accept_loop, &s) != WEFT_OK) {
        fprintf(stderr, "echo_server: cannot start the acceptor\n");
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", bound_port);
    fflush(stdout);

    int signal_number;
    sigwait(&signals, &signal_number);

    /* 1. Stop: every goroutine's blocking call waits on a descendant of root. */
    weft_ctx_cancel(s.root);
    /* 2. Wait for the goroutines, within the shutdown timeout. */
    weft_ctx *grace = weft_ctx_with_timeout(NULL, WEFT_MS(shutdown_ms));
    if (!grace) {
        perror("echo_server: shutdown");
        return 1;
    }
    if (weft_wg_wait_ctx(&s.tasks, grace) != WEFT_OK) {
        fprintf(stderr, "echo_server: connections still open after %ld ms\n", shutdown_ms);
        return 1; /* exit ends them; freeing what they use would be a bug */
    }
    /* 3. A goroutine calls weft_wg_done just before it returns: wait until
     * it has returned too. weft has no call that blocks for this; poll. */
    while (weft_goroutines() > 0 && weft_ctx_err(grace) == WEFT_OK) weft_sleep(WEFT_MS(1));
    int left = weft_goroutines();
    weft_ctx_release(grace);
    if (left > 0) {
        fprintf(stderr, "echo_server: %d goroutines left at exit\n", left);
        return 1;
    }
    /* 4. Report and clean up. */
    printf("accepted %ld connections, closed %ld (%ld idle), received %ld requests, answered %ld\n",
           atomic_load(&s.accepted), atomic_load(&s.closed), atomic_load(&s.idle),
           atomic_load(&s.received), atomic_load(&s.answered));
    weft_sem_destroy(&s.slots);
    weft_ctx_release(s.root);
    return 0;
}
