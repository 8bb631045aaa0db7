/* The event-loop examples (examples/epoll_offload.c, uv_offload.c,
 * event_offload.c; examples/offload.h) served as a client would use them:
 * each is started on port 0, sent numbered lines while its 8 worker
 * goroutines answer through a polled channel, and must answer every line
 * exactly once, then exit cleanly with no goroutine left when the client
 * ends its input. uv_offload and event_offload are built only when libuv
 * and libevent are installed (the Makefile's optional examples); without
 * their programs, their tests say so and pass. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "testutil.h"

enum { WAIT_SECONDS = 60 };

typedef struct {
    pid_t pid;
    int output;      /* the read end of its stdout */
    char text[1024]; /* what it printed */
    size_t length;
} example_process;

static void read_printed(example_process *example, bool until_eof) {
    read_child_output(example->output, example->text, sizeof example->text, &example->length,
                      until_eof, WAIT_SECONDS);
}

/* The path of build/release/examples/<name>, or false if it was not built. */
static bool built(const char *name, char *path, size_t size) {
    char self[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert(length > 0);
    self[length] = '\0';
    for (int up = 0; up < 4; up++) *strrchr(self, '/') = '\0';
    int written = snprintf(path, size, "%s/build/release/examples/%s", self, name);
    ck_assert_msg(written > 0 && (size_t)written < size, "path too long");
    return access(path, X_OK) == 0;
}

/* Start it with one option (or NULL); returns the port it listens on. */
static int start_example(example_process *example, const char *path, const char *option) {
    const char *argv[] = {path, option, NULL};
    *example = (example_process){0};
    example->pid = spawn_with_output(argv, &example->output);
    read_printed(example, false);
    int port = 0;
    ck_assert_msg(sscanf(example->text, "listening on 127.0.0.1:%d\n", &port) == 1,
                  "it printed \"%s\"", example->text);
    return port;
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&address, sizeof address), 0);
    return fd;
}

typedef struct {
    int fd;
    long lines;
} writer;

/* Send "line 0\n" ... then end the input (the example's cue to finish). */
static void *write_lines(void *arg) {
    writer *self = arg;
    char line[32];
    for (long i = 0; i < self->lines; i++) {
        size_t length = (size_t)snprintf(line, sizeof line, "line %ld\n", i);
        for (size_t sent = 0; sent < length;) {
            ssize_t n = send(self->fd, line + sent, length - sent, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            WORKER_EXPECT(n > 0);
            if (n <= 0) return NULL;
            sent += (size_t)n;
        }
    }
    WORKER_EXPECT(shutdown(self->fd, SHUT_WR) == 0);
    return NULL;
}

/* Mark each "LINE n" answer in seen, until the example closes. */
static void read_answers(int fd, _Atomic unsigned char *seen, long lines) {
    char buffer[8192];
    size_t held = 0;
    for (;;) {
        struct pollfd ready = {fd, POLLIN, 0};
        ck_assert_msg(poll(&ready, 1, WAIT_SECONDS * 1000) == 1, "no answer for %d s",
                      WAIT_SECONDS);
        ssize_t got = read(fd, buffer + held, sizeof buffer - held);
        if (got < 0 && errno == EINTR) continue;
        ck_assert_msg(got >= 0, "read: %s", strerror(errno));
        if (got == 0) break;
        held += (size_t)got;
        char *start = buffer, *newline;
        while ((newline = memchr(start, '\n', held - (size_t)(start - buffer)))) {
            long n = -1;
            *newline = '\0';
            ck_assert_msg(sscanf(start, "LINE %ld", &n) == 1 && n >= 0 && n < lines,
                          "bad answer \"%s\"", start);
            atomic_fetch_add(&seen[n], 1);
            start = newline + 1;
        }
        held -= (size_t)(start - buffer);
        memmove(buffer, start, held);
    }
    ck_assert_int_eq(held, 0);
}

/* Serve lines through examples/<name> (with option, or NULL): each
 * answered once, then a clean exit with no goroutine left. */
static void serve_lines(const char *name, const char *option, long lines) {
    char path[PATH_MAX];
    if (!built(name, path, sizeof path)) {
        printf("%s: not built (its library is not installed); skipped\n", name);
        return;
    }
    example_process example;
    int fd = connect_to(start_example(&example, path, option));
    _Atomic unsigned char *seen = calloc((size_t)lines, 1);
    ck_assert_ptr_nonnull(seen);
    writer input = {fd, lines};
    pthread_t thread;
    start_thread(&thread, write_lines, &input);
    read_answers(fd, seen, lines);
    join_thread(thread);
    check_worker_failures();
    close(fd);
    assert_each_seen_once(seen, (size_t)lines);
    free(seen);

    read_printed(&example, true);
    close(example.output);
    int status;
    ck_assert_int_eq(waitpid(example.pid, &status, 0), example.pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s exited badly (%d)", name,
                  status);
    char expected[128];
    snprintf(expected, sizeof expected, "served %ld lines\ngoroutines running: 0\n", lines);
    ck_assert_msg(strstr(example.text, expected) != NULL, "%s printed \"%s\"", name, example.text);
}

/* The examples, one per kind of loop: each test runs for every one
 * (Check's loop tests, _i the index). */
static const char *const examples[] = {"epoll_offload", "uv_offload", "event_offload"};
enum { EXAMPLES = sizeof examples / sizeof examples[0] };

START_TEST(test_offload_answers_each_line_once_and_exits_cleanly) {
    serve_lines(examples[_i], NULL, scaled(2000));
}
END_TEST

START_TEST(test_offload_taking_one_result_per_turn_never_hangs) {
    serve_lines(examples[_i], "--one-per-turn", scaled(1000));
}
END_TEST

static Suite *event_loops_suite(void) {
    Suite *suite = suite_create("event_loops");
    TCase *tc = new_case(suite, "offload");
    tcase_add_loop_test(tc, test_offload_answers_each_line_once_and_exits_cleanly, 0, EXAMPLES);
    tcase_add_loop_test(tc, test_offload_taking_one_result_per_turn_never_hangs, 0, EXAMPLES);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(event_loops_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
