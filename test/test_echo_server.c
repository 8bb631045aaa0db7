/* The echo server (examples/echo_server.c) run as a user would run it: each
 * test starts the release build (found as test_examples.c finds the
 * examples: from this program's path) on port 0, reads the port it
 * printed, talks to it over loopback TCP, stops it with a signal and
 * checks its exit status and its summary line.
 *
 * The clients are lockstep: each sends a line and reads its echo whole
 * before sending the next. So when the server closes a connection, the
 * client has read every echo the server wrote on it, and the clients'
 * count of echoes must equal the server's count of answers exactly.
 *
 * The 100-client test runs the server under valgrind when valgrind is
 * installed and this program is not itself under valgrind (make valgrind
 * runs it so; the server then runs natively: valgrind does not follow
 * exec without --trace-children). Only leaks valgrind is sure of count
 * (definite, indirect): "possibly lost" is what glibc allocated for the
 * weft threads still parked when the process exits, as in make valgrind.
 *
 * Nothing here asserts on speed. Waits for what must happen are bounded
 * by WAIT_SECONDS only to turn a hang into a failure; the one check that
 * something does NOT happen (a client beyond the limit is not served)
 * waits a short while, which can only make it weaker, never wrong. */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "testutil.h"

enum {
    WAIT_SECONDS = 60,      /* for what must happen: a reply, an exit */
    CLIENTS = 100,          /* in the shutdown test */
    LINES_PER_CLIENT = 1000 /* at most; the shutdown comes long before */
};

/* The path of the server's release build; fails the test if missing. */
static void server_path(char *path, size_t size) {
    built_program_path("build/release/examples/echo_server", path, size);
}

/* True when valgrind is on PATH and this program does not run under it
 * (valgrind puts its vgpreload libraries in LD_PRELOAD). */
static bool valgrind_wanted(void) {
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload")) return false;
    const char *path = getenv("PATH");
    if (!path) return false;
    char candidate[PATH_MAX];
    for (const char *start = path; *start;) {
        size_t length = strcspn(start, ":");
        if (snprintf(candidate, sizeof candidate, "%.*s/valgrind", (int)length, start) <
                (int)sizeof candidate &&
            access(candidate, X_OK) == 0)
            return true;
        start += length + (start[length] == ':');
    }
    return false;
}

typedef struct {
    pid_t pid;
    int output;      /* the read end of the server's stdout */
    int port;        /* from its first line */
    char text[1024]; /* what it printed, NUL terminated */
    size_t length;
} server_process;

/* Read the server's stdout into server->text until a newline has come
 * (until_eof false) or the pipe is closed; fail after WAIT_SECONDS. */
static void read_output(server_process *server, bool until_eof) {
    read_child_output(server->output, server->text, sizeof server->text, &server->length, until_eof,
                      WAIT_SECONDS);
}

/* Start the server on port 0 with options (NULL-terminated), under
 * valgrind if asked, and read the port it listens on. */
static void start_server(server_process *server, const char *const *options, bool valgrind) {
    char path[PATH_MAX];
    server_path(path, sizeof path);
    const char *argv[16];
    int argc = 0;
    if (valgrind) {
        static const char *const tool[] = {"valgrind",
                                           "-q",
                                           "--leak-check=full",
                                           "--error-exitcode=99",
                                           "--errors-for-leak-kinds=definite,indirect",
                                           "--show-leak-kinds=definite,indirect"};
        for (size_t i = 0; i < sizeof tool / sizeof tool[0]; i++) argv[argc++] = tool[i];
    }
    argv[argc++] = path;
    for (; *options; options++) argv[argc++] = *options;
    argv[argc++] = "0";
    argv[argc] = NULL;

    *server = (server_process){0};
    server->pid = spawn_with_output(argv, &server->output);
    read_output(server, false);
    ck_assert_msg(sscanf(server->text, "listening on 127.0.0.1:%d\n", &server->port) == 1,
                  "the server printed \"%s\"", server->text);
    ck_assert_int_gt(server->port, 0);
}

/* The server's counts, from its last line. */
typedef struct {
    long accepted, closed, idle, received, answered;
} summary;

/* Send signal_number to the server, read everything it prints and wait
 * for it to exit (within WAIT_SECONDS); assert it exited 0 and return its
 * summary. */
static summary stop_server(server_process *server, int signal_number) {
    ck_assert_int_eq(kill(server->pid, signal_number), 0);
    read_output(server, true);
    close(server->output);
    weft_time give_up = weft_now() + WEFT_SEC(WAIT_SECONDS);
    int status;
    pid_t done;
    while ((done = waitpid(server->pid, &status, WNOHANG)) == 0 && weft_now() < give_up)
        sleep_ms(10);
    if (done == 0) kill(server->pid, SIGKILL);
    ck_assert_msg(done == server->pid, "the server did not exit within %d s", WAIT_SECONDS);
    ck_assert_msg(!WIFSIGNALED(status), "the server was killed by signal %d", WTERMSIG(status));
    ck_assert_msg(WEXITSTATUS(status) == 0, "the server exited %d (99: valgrind found errors)",
                  WEXITSTATUS(status));
    summary counts;
    const char *last = strstr(server->text, "\naccepted ");
    ck_assert_msg(last && sscanf(last + 1,
                                 "accepted %ld connections, closed %ld (%ld idle), received %ld "
                                 "requests, answered %ld\n",
                                 &counts.accepted, &counts.closed, &counts.idle, &counts.received,
                                 &counts.answered) == 5,
                  "no summary in \"%s\"", server->text);
    return counts;
}

/* A socket connected to the server, or -1. */
static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        close(fd);
        return -1;
    }
    int one = 1; /* a line sent in two writes must not wait for an ACK */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static bool send_all(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t sent = send(fd, data, length, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) return false;
        data += sent;
        length -= (size_t)sent;
    }
    return true;
}

/* How a line's exchange ended. CLOSED: the connection was closed (end of
 * file or reset) before any byte of the echo came; a correct end when the
 * server is stopping. BROKEN: anything else: a partial or wrong echo, or
 * no answer within WAIT_SECONDS. */
typedef enum { ECHOED, CLOSED, BROKEN } outcome;

/* Receive exactly length bytes and compare them with expected. */
static outcome receive_echo(int fd, const char *expected, size_t length) {
    char echo[512];
    size_t got = 0;
    while (got < length) {
        struct pollfd ready = {fd, POLLIN, 0};
        int polled = poll(&ready, 1, WAIT_SECONDS * 1000);
        if (polled < 0 && errno == EINTR) continue;
        if (polled <= 0) return BROKEN;
        ssize_t part = recv(fd, echo + got, length - got, 0);
        if (part < 0 && errno == EINTR) continue;
        if (part == 0 || (part < 0 && errno == ECONNRESET)) return got == 0 ? CLOSED : BROKEN;
        if (part < 0) return BROKEN;
        got += (size_t)part;
    }
    return memcmp(echo, expected, length) == 0 ? ECHOED : BROKEN;
}

/* Send line (ending in '\n', at most 512 bytes), in two writes cut at
 * split if split > 0, and read its echo. */
static outcome exchange(int fd, const char *line, size_t length, size_t split) {
    if (split > 0 && !send_all(fd, line, split)) return CLOSED;
    if (!send_all(fd, line + split, length - split)) return CLOSED;
    return receive_echo(fd, line, length);
}

static outcome exchange_text(int fd, const char *line) {
    return exchange(fd, line, strlen(line), 0);
}

typedef struct {
    int port;
    int id;
    long echoed; /* lines whose echo came back whole */
    bool cut;    /* the connection was refused or closed before the last line */
} client;

static atomic_long echoes; /* every client's echoed lines, watched by the test */

/* A client of the shutdown test: lines of different lengths, one in four
 * sent in two writes, each echo checked byte for byte. */
static void *client_main(void *arg) {
    client *self = arg;
    uint64_t random_state = (uint64_t)self->id * 7919 + 1;
    int fd = connect_to(self->port);
    if (fd < 0) { /* refused: the server had stopped listening */
        WORKER_EXPECT(errno == ECONNREFUSED);
        self->cut = true;
        return NULL;
    }
    for (long number = 0; number < LINES_PER_CLIENT; number++) {
        char line[512];
        int length = snprintf(line, sizeof line, "client %d line %ld ", self->id, number);
        int padding = (int)(test_random(&random_state) % 200);
        for (int i = 0; i < padding; i++)
            line[length++] = (char)('a' + test_random(&random_state) % 26);
        line[length++] = '\n';
        size_t split =
            number % 4 == 3 ? (size_t)(test_random(&random_state) % (length - 1)) + 1 : 0;
        outcome result = exchange(fd, line, (size_t)length, split);
        WORKER_EXPECT(result != BROKEN);
        if (result != ECHOED) {
            self->cut = true;
            break;
        }
        self->echoed++;
        atomic_fetch_add(&echoes, 1);
    }
    close(fd);
    return NULL;
}

/* 100 clients talk at once; SIGTERM comes once 500 lines have been
 * echoed. Every line the server read, it answered; every answer reached
 * its client whole; the server exits 0 with no goroutine left (it checks)
 * and, under valgrind, no leak. */
START_TEST(test_shutdown_mid_traffic_answers_every_request_it_read) {
    server_process server;
    /* 80 served at once: the other 20 clients wait in the backlog until the
     * shutdown refuses them. No connection is idle for 10 minutes. */
    static const char *const options[] = {"--max-connections",
                                          "80",
                                          "--idle-timeout-ms",
                                          "600000",
                                          "--shutdown-timeout-ms",
                                          "30000",
                                          NULL};
    start_server(&server, options, valgrind_wanted());

    static client clients[CLIENTS];
    pthread_t threads[CLIENTS];
    atomic_store(&echoes, 0);
    for (int i = 0; i < CLIENTS; i++) {
        clients[i] = (client){.port = server.port, .id = i};
        start_thread(&threads[i], client_main, &clients[i]);
    }
    wait_for_count_long(&echoes, 500);
    summary counts = stop_server(&server, SIGTERM);
    for (int i = 0; i < CLIENTS; i++) join_thread(threads[i]);
    check_worker_failures();

    long echoed = 0;
    int cut = 0;
    for (int i = 0; i < CLIENTS; i++) {
        echoed += clients[i].echoed;
        cut += clients[i].cut;
    }
    ck_assert_int_ge(echoed, 500);
    ck_assert_int_ge(cut, 1); /* the shutdown came mid-traffic */
    ck_assert_int_eq(counts.received, counts.answered);
    ck_assert_int_eq(counts.answered, echoed);
    ck_assert_int_eq(counts.accepted, counts.closed);
    ck_assert_int_ge(counts.accepted, 1);
    ck_assert_int_le(counts.accepted, CLIENTS);
    ck_assert_int_eq(counts.idle, 0);
}
END_TEST

/* Is fd readable within ms milliseconds? */
static bool readable_within(int fd, int ms) {
    struct pollfd ready = {fd, POLLIN, 0};
    return poll(&ready, 1, ms) > 0;
}

/* --max-connections 2: a third client is connected by the kernel (the
 * backlog) but not served until one of the first two leaves. */
START_TEST(test_connection_beyond_the_limit_waits_for_a_slot) {
    server_process server;
    static const char *const options[] = {"--max-connections", "2", NULL};
    start_server(&server, options, false);
    int first = connect_to(server.port), second = connect_to(server.port);
    ck_assert_int_ge(first, 0);
    ck_assert_int_ge(second, 0);
    ck_assert_int_eq(exchange_text(first, "first\n"), ECHOED);
    ck_assert_int_eq(exchange_text(second, "second\n"), ECHOED);

    int third = connect_to(server.port);
    ck_assert_int_ge(third, 0);
    ck_assert(send_all(third, "third\n", 6));
    ck_assert_msg(!readable_within(third, 500), "the third client was served beyond the limit");

    close(first); /* its slot goes to the third */
    ck_assert_int_eq(receive_echo(third, "third\n", 6), ECHOED);
    ck_assert_int_eq(exchange_text(second, "second again\n"), ECHOED);
    ck_assert_int_eq(exchange_text(third, "third again\n"), ECHOED);
    close(second);
    close(third);

    summary counts = stop_server(&server, SIGTERM);
    ck_assert_int_eq(counts.accepted, 3);
    ck_assert_int_eq(counts.closed, 3);
    ck_assert_int_eq(counts.idle, 0);
    ck_assert_int_eq(counts.received, 5);
    ck_assert_int_eq(counts.answered, 5);
}
END_TEST

/* --idle-timeout-ms 300: a client that goes quiet is disconnected, no
 * sooner than 300 ms after it last sent; SIGINT then stops the server. */
START_TEST(test_idle_connection_is_closed_after_the_timeout) {
    server_process server;
    static const char *const options[] = {"--idle-timeout-ms", "300", NULL};
    start_server(&server, options, false);
    weft_time connected = weft_now();
    int fd = connect_to(server.port);
    ck_assert_int_ge(fd, 0);
    weft_time sent = weft_now();
    outcome result = exchange_text(fd, "anyone there?\n");
    /* CLOSED only if this thread stalled 300 ms between connect and send. */
    ck_assert_int_ne(result, BROKEN);
    char byte;
    ck_assert_msg(readable_within(fd, WAIT_SECONDS * 1000), "the idle connection stayed open");
    ssize_t got = recv(fd, &byte, 1, 0);
    if (result == ECHOED) {
        ck_assert_int_eq(got, 0); /* a clean close: nothing was left unread */
        ck_assert_int_ge(weft_now() - sent, WEFT_MS(300));
    }
    ck_assert_int_ge(weft_now() - connected, WEFT_MS(300));
    close(fd);

    summary counts = stop_server(&server, SIGINT);
    ck_assert_int_eq(counts.accepted, 1);
    ck_assert_int_eq(counts.closed, 1);
    ck_assert_int_eq(counts.idle, 1);
    ck_assert_int_eq(counts.received, result == ECHOED);
    ck_assert_int_eq(counts.answered, result == ECHOED);
}
END_TEST

/* Bad command lines exit 2 without listening. */
START_TEST(test_bad_arguments_exit_2) {
    char path[PATH_MAX];
    server_path(path, sizeof path);
    static const char *const bad[][4] = {
        {"x", NULL},      {"70000", NULL}, {"--max-connections", "0", "0", NULL},
        {"1", "2", NULL}, {NULL},          {"--idle-timeout-ms", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *argv[6] = {path};
        for (int j = 0; bad[i][j]; j++) argv[j + 1] = bad[i][j];
        fflush(NULL);
        pid_t child = fork();
        ck_assert_int_ge(child, 0);
        if (child == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            execv(path, (char *const *)argv);
            _exit(127);
        }
        int status;
        while (waitpid(child, &status, 0) < 0) ck_assert_int_eq(errno, EINTR);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 2,
                      "command line %zu: status %#x, not exit 2", i, status);
    }
}
END_TEST

static Suite *echo_server_suite(void) {
    Suite *suite = suite_create("echo_server");
    TCase *tc = new_case(suite, "echo_server");
    tcase_add_test(tc, test_shutdown_mid_traffic_answers_every_request_it_read);
    tcase_add_test(tc, test_connection_beyond_the_limit_waits_for_a_slot);
    tcase_add_test(tc, test_idle_connection_is_closed_after_the_timeout);
    tcase_add_test(tc, test_bad_arguments_exit_2);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(echo_server_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
