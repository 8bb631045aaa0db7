/* echo_server_threads — the floor of any one-thread-per-connection
 * design, for bench/echo/echo_load.c to run beside the weft and Go
 * servers: the same line echo protocol, command line and output, served by
 * a pthread per connection sleeping in a plain blocking read(2). No
 * context, no poll, no eventfd: one syscall to wait, the fewest a 1:1
 * server can make. Whatever it loses to Go is what kernel threads cost on
 * the machine, and no 1:1 library can do better.
 *
 *     echo_server_threads [--max-connections N] [--idle-timeout-ms MS] PORT
 *
 * Prints "listening on 127.0.0.1:PORT" first and, after SIGINT or
 * SIGTERM, "accepted A connections, closed C (I idle), received R
 * requests, answered W". The idle timeout is SO_RCVTIMEO; the shutdown
 * wakes every blocked read with shutdown(2). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { LINE_MAX_BYTES = 4096, STACK_BYTES = 64 * 1024 };

static atomic_long accepted, closed_count, idle_count, received, answered;

/* Open connections, so the shutdown can wake their reads. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t all_closed = PTHREAD_COND_INITIALIZER;
static int *open_fds;
static int open_capacity, open_count;

static bool remember(int fd) {
    pthread_mutex_lock(&open_lock);
    bool room = open_count < open_capacity;
    if (room) open_fds[open_count++] = fd;
    pthread_mutex_unlock(&open_lock);
    return room;
}

static void forget(int fd) {
    pthread_mutex_lock(&open_lock);
    for (int i = 0; i < open_count; i++)
        if (open_fds[i] == fd) {
            open_fds[i] = open_fds[--open_count];
            break;
        }
    if (open_count == 0) pthread_cond_broadcast(&all_closed);
    pthread_mutex_unlock(&open_lock);
}

static bool write_all(int fd, const char *bytes, size_t length) {
    while (length > 0) {
        ssize_t wrote = write(fd, bytes, length);
        if (wrote < 0 && errno == EINTR) continue;
        if (wrote <= 0) return false;
        bytes += wrote;
        length -= (size_t)wrote;
    }
    return true;
}

/* Echo each complete line until the client closes, stays idle or the
 * server stops; a line longer than LINE_MAX_BYTES closes the connection. */
static void *serve(void *argument) {
    int fd = (int)(intptr_t)argument;
    char buffer[LINE_MAX_BYTES];
    size_t length = 0;
    for (;;) {
        ssize_t got = read(fd, buffer + length, sizeof buffer - length);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) idle_count++;
        if (got <= 0) break;
        length += (size_t)got;
        char *end = memrchr(buffer, '\n', length);
        if (!end) {
            if (length == sizeof buffer) break;
            continue;
        }
        size_t whole = (size_t)(end - buffer) + 1;
        long lines = 0;
        for (size_t i = 0; i < whole; i++) lines += buffer[i] == '\n';
        received += lines;
        if (!write_all(fd, buffer, whole)) break;
        answered += lines;
        memmove(buffer, buffer + whole, length - whole);
        length -= whole;
    }
    forget(fd);
    close(fd);
    closed_count++;
    return NULL;
}

typedef struct {
    int listener;
    long idle_timeout_ms;
} acceptor_arguments;

static void *accept_loop(void *argument) {
    const acceptor_arguments *arguments = argument;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attributes, STACK_BYTES);
    struct timeval timeout = {arguments->idle_timeout_ms / 1000,
                              arguments->idle_timeout_ms % 1000 * 1000};
    for (;;) {
        int fd = accept(arguments->listener, NULL, NULL);
        if (fd < 0) {
            if (errno == EINVAL) return NULL; /* the listener was shut down */
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        accepted++;
        pthread_t thread;
        if (!remember(fd) || pthread_create(&thread, &attributes, serve, (void *)(intptr_t)fd)) {
            forget(fd);
            close(fd);
            closed_count++;
        }
    }
}

int main(int argc, char **argv) {
    long max_connections = 4096, idle_timeout_ms = 10000;
    int port = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--max-connections") == 0 && i + 1 < argc)
            max_connections = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--idle-timeout-ms") == 0 && i + 1 < argc)
            idle_timeout_ms = strtol(argv[++i], NULL, 10);
        else
            port = (int)strtol(argv[i], NULL, 10);
    }
    if (port < 0 || port > 65535 || max_connections < 1 || idle_timeout_ms < 1) {
        fprintf(stderr, "usage: echo_server_threads [--max-connections N] "
                        "[--idle-timeout-ms MS] PORT\n");
        return 2;
    }
    open_capacity = (int)max_connections;
    open_fds = calloc((size_t)open_capacity, sizeof *open_fds);
    if (!open_fds) return 1;

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL); /* threads made below inherit it */
    signal(SIGPIPE, SIG_IGN);

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) != 0 ||
        listen(listener, 4096) != 0 ||
        getsockname(listener, (struct sockaddr *)&address, &length) != 0) {
        perror("echo_server_threads");
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", ntohs(address.sin_port));
    fflush(stdout);

    acceptor_arguments arguments = {listener, idle_timeout_ms};
    pthread_t acceptor;
    if (pthread_create(&acceptor, NULL, accept_loop, &arguments) != 0) return 1;
    int signal_number;
    sigwait(&stop_signals, &signal_number);

    shutdown(listener, SHUT_RDWR);
    pthread_join(acceptor, NULL);
    pthread_mutex_lock(&open_lock); /* the acceptor is gone: no fd joins the list now */
    for (int i = 0; i < open_count; i++) shutdown(open_fds[i], SHUT_RDWR);
    while (open_count > 0) pthread_cond_wait(&all_closed, &open_lock);
    pthread_mutex_unlock(&open_lock);
    close(listener);
    /* closed_count is bumped after forget(): let the last servers finish. */
    while (closed_count < accepted) usleep(1000);
    printf("accepted %ld connections, closed %ld (%ld idle), received %ld requests, "
           "answered %ld\n",
           (long)accepted, (long)closed_count, (long)idle_count, (long)received, (long)answered);
    return 0;
}
