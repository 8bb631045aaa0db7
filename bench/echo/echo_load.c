/* echo_load — a real service under load: examples/echo_server (weft) beside
 * bench/echo/echo_server.go (Go), over loopback, in the same run; and, when
 * given, bench/echo/echo_server_threads.c (a pthread per connection in a
 * blocking read: the floor of any 1:1 design).
 *
 *     echo_load --weft PATH [--go PATH] [--threads PATH]
 *               [--connections 1,100,1000] [--reps 5]
 *               [--seconds S] [--requests N] [--message-bytes B] [--idle N]
 *
 * Busy connections. For each connection count, N keep-alive connections
 * each send a B-byte line, wait for its echo (checked byte for byte) and
 * send the next: a closed loop, so requests/s and latency are what one
 * client per connection would see. A repetition runs until --requests
 * echoes or --seconds have passed, whichever first, then lets the requests
 * in flight finish. The servers take turns repetition by repetition
 * (weft first in the first, Go in the second, ...), so a drift of the
 * machine touches all. Each repetition reports requests/s, the 50th and
 * 99th percentile round trip, and the server's CPU time (utime + stime
 * from /proc/PID/stat, in clock ticks) per request; the table gives the
 * median over repetitions with the range, and the ratios to Go (weft/Go,
 * threads/Go) are the medians of the ratios of the paired repetitions.
 *
 * The load is one thread on epoll, the same for every server. On a
 * machine with two CPUs it takes about one of them, so the figures are
 * those of a server that has one CPU to itself and shares the other.
 *
 * Idle connections. --idle N connections are opened (in batches, each
 * connection echoing one line, so the server has a goroutine on each) and
 * held; the server's VmRSS (/proc/PID/status) before and after gives the
 * memory per connection. The weft server needs a thread and two fds per
 * connection (its socket and the thread's eventfd), so the file limit is
 * raised (to the hard limit, and above it when root with CAP_SYS_RESOURCE;
 * if it cannot be raised enough, N is cut to what fits, and said so) and
 * the weft server runs with WEFT_MAX_THREADS above N (the default pool
 * stops at 4096).
 *
 * Exit status: 0, or 1 when a server misbehaved (a wrong echo, a refused
 * connection, a summary that disagrees) or a limit could not be raised. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MAX_COUNTS = 8, MAX_REPS = 64, WAIT_SECONDS = 30, IDLE_BATCH = 250 };
enum { WEFT, GO, THREADS, SERVERS };

typedef struct {
    const char *server_path[SERVERS]; /* [WEFT], [GO], [THREADS] (NULL: not run) */
    int counts[MAX_COUNTS];           /* connection counts */
    int count_count;
    int reps;
    double seconds;       /* per repetition, at most */
    long requests;        /* per repetition, at most */
    size_t message_bytes; /* the line, '\n' included */
    int idle;             /* idle connections to hold; 0: none */
} options;

static const char *const server_name[SERVERS] = {"weft", "go", "thr"};

/* Print "echo_load: ..." and exit 1. */
__attribute__((format(printf, 1, 2))) static _Noreturn void fail(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    fprintf(stderr, "echo_load: ");
    vfprintf(stderr, format, arguments);
    fprintf(stderr, "\n");
    va_end(arguments);
    exit(1);
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ---- Servers as child processes --------------------------------------- */

typedef struct {
    const char *name;
    pid_t pid;
    int port;
    int output;      /* read end of its stdout */
    char text[1024]; /* what it printed */
    size_t length;
} server;

/* Read the server's output until a newline (or, if until_eof, its end). */
static void read_output(server *s, bool until_eof) {
    double give_up = now_seconds() + WAIT_SECONDS;
    while (until_eof || !memchr(s->text, '\n', s->length)) {
        if (now_seconds() > give_up) fail("%s server: no output in time", s->name);
        struct pollfd ready = {s->output, POLLIN, 0};
        if (poll(&ready, 1, 100) <= 0) continue;
        ssize_t got = read(s->output, s->text + s->length, sizeof s->text - 1 - s->length);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        s->length += (size_t)got;
        s->text[s->length] = '\0';
    }
}

static void start_server(server *s, const char *name, const char *path, int max_threads) {
    char connections[32], threads[64];
    snprintf(connections, sizeof connections, "%d", max_threads);
    snprintf(threads, sizeof threads, "%d", max_threads + 64);
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) fail("pipe: %s", strerror(errno));
    *s = (server){.name = name};
    fflush(NULL);
    s->pid = fork();
    if (s->pid < 0) fail("fork: %s", strerror(errno));
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* should we die, the server goes too */
        dup2(pipe_fds[1], STDOUT_FILENO);
        setenv("WEFT_MAX_THREADS", threads, 1); /* the weft server's pool; Go ignores it */
        execl(path, path, "--max-connections", connections, "--idle-timeout-ms", "3600000", "0",
              (char *)NULL);
        _exit(127);
    }
    close(pipe_fds[1]);
    s->output = pipe_fds[0];
    read_output(s, false);
    if (sscanf(s->text, "listening on 127.0.0.1:%d", &s->port) != 1)
        fail("no \"listening on\" from %s", path);
    s->length = 0;
}

/* SIGTERM, then check it exits 0 and answered every request it read. */
static void stop_server(server *s) {
    kill(s->pid, SIGTERM);
    read_output(s, true);
    int status;
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("the %s server did not exit 0", s->name);
    long accepted, closed, idle, received, answered;
    const char *summary = strstr(s->text, "accepted ");
    if (!summary || sscanf(summary,
                           "accepted %ld connections, closed %ld (%ld idle), received %ld "
                           "requests, answered %ld",
                           &accepted, &closed, &idle, &received, &answered) != 5)
        fail("no summary from the %s server", s->name);
    if (accepted != closed || received != answered || idle != 0)
        fail("the %s server's summary disagrees: %s", s->name, summary);
    printf("%-4s server: %s", s->name, summary);
    close(s->output);
}

/* utime + stime of pid, in seconds. */
static double cpu_seconds(pid_t pid) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *file = fopen(path, "r");
    if (!file) fail("cannot open %s", path);
    size_t length = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[length] = '\0';
    const char *after_name = strrchr(text, ')'); /* the name may hold spaces */
    unsigned long user = 0, system = 0;
    if (!after_name || sscanf(after_name + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                              &user, &system) != 2)
        fail("cannot parse %s", path);
    return (double)(user + system) / (double)sysconf(_SC_CLK_TCK);
}

/* A number field ("VmRSS:", "Threads:") of /proc/pid/status. */
static long status_field(pid_t pid, const char *field) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *file = fopen(path, "r");
    if (!file) fail("cannot open %s", path);
    long value = -1;
    while (fgets(line, sizeof line, file))
        if (strncmp(line, field, strlen(field)) == 0)
            value = strtol(line + strlen(field), NULL, 10);
    fclose(file);
    return value;
}

/* ---- Connections -------------------------------------------------------- */

typedef struct {
    int fd;
    long sequence;  /* of the line in flight */
    size_t got;     /* bytes of its echo so far */
    uint64_t start; /* when it was sent, ns */
    char line[512];
    char echo[512];
} connection;

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket: %s", strerror(errno));
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    while (connect(fd, (struct sockaddr *)&address, sizeof address) != 0)
        if (errno != EINTR) fail("connect: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Fill conn->line with its next line: who and which, padded, '\n'. */
static void next_line(connection *conn, int id, size_t bytes) {
    conn->sequence++;
    int length = snprintf(conn->line, sizeof conn->line, "%d %ld ", id, conn->sequence);
    memset(conn->line + length, 'a' + (int)(conn->sequence % 26), bytes - 1 - (size_t)length);
    conn->line[bytes - 1] = '\n';
    conn->got = 0;
}

static void send_line(connection *conn, size_t bytes) {
    conn->start = now_ns();
    ssize_t sent = send(conn->fd, conn->line, bytes, MSG_NOSIGNAL);
    /* Lockstep: the socket's buffer is empty, so a short line goes whole. */
    if (sent != (ssize_t)bytes) fail("send: %s", sent < 0 ? strerror(errno) : "short");
}

/* Receive what is there of conn's echo; true when it is whole (and right). */
static bool receive_echo(connection *conn, size_t bytes) {
    ssize_t got = recv(conn->fd, conn->echo + conn->got, bytes - conn->got, MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return false;
    if (got <= 0) fail("recv: %s", got < 0 ? strerror(errno) : "the server closed");
    conn->got += (size_t)got;
    if (conn->got < bytes) return false;
    if (memcmp(conn->echo, conn->line, bytes) != 0) fail("a wrong echo: %.40s", conn->echo);
    return true;
}

/* One exchange, blocking (within WAIT_SECONDS). */
static void exchange(connection *conn, int id, size_t bytes) {
    next_line(conn, id, bytes);
    send_line(conn, bytes);
    while (!receive_echo(conn, bytes)) {
        struct pollfd ready = {conn->fd, POLLIN, 0};
        if (poll(&ready, 1, WAIT_SECONDS * 1000) == 0) fail("no echo within %d s", WAIT_SECONDS);
    }
}

/* ---- A busy repetition -------------------------------------------------- */

typedef struct {
    double requests_per_second, p50_us, p99_us, server_cpu_us; /* cpu: per request */
} figures;

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static figures run_busy(const server *s, int count, const options *opt) {
    connection *conns = calloc((size_t)count, sizeof *conns);
    long capacity = opt->requests + count;
    uint64_t *latency = malloc((size_t)capacity * sizeof *latency);
    int epoll = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || !latency || epoll < 0) fail("out of memory or fds (%s)", strerror(errno));
    size_t bytes = opt->message_bytes;
    for (int i = 0; i < count; i++) {
        conns[i].fd = connect_to(s->port);
        exchange(&conns[i], i, bytes); /* served: accepted, its goroutine running */
        struct epoll_event event = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epoll, EPOLL_CTL_ADD, conns[i].fd, &event) != 0)
            fail("epoll_ctl: %s", strerror(errno));
    }

    double cpu_before = cpu_seconds(s->pid), start = now_seconds();
    double stop_at = start + opt->seconds;
    long completed = 0, in_flight = 0;
    for (int i = 0; i < count; i++) {
        next_line(&conns[i], i, bytes);
        send_line(&conns[i], bytes);
        in_flight++;
    }
    bool issuing = true;
    double last_progress = start;
    while (in_flight > 0) {
        struct epoll_event events[256];
        int ready = epoll_wait(epoll, events, 256, 100);
        if (ready < 0 && errno != EINTR) fail("epoll_wait: %s", strerror(errno));
        double now = now_seconds();
        if (ready <= 0 && now - last_progress > WAIT_SECONDS) fail("%s: no echo for long", s->name);
        for (int e = 0; e < ready; e++) {
            connection *conn = &conns[events[e].data.u32];
            if (!receive_echo(conn, bytes)) continue;
            latency[completed++] = now_ns() - conn->start;
            in_flight--;
            last_progress = now;
            if (issuing && (completed + in_flight >= opt->requests || now >= stop_at))
                issuing = false;
            if (issuing) {
                next_line(conn, (int)events[e].data.u32, bytes);
                send_line(conn, bytes);
                in_flight++;
            }
        }
    }
    double elapsed = now_seconds() - start;
    double cpu = cpu_seconds(s->pid) - cpu_before;
    for (int i = 0; i < count; i++) close(conns[i].fd);
    close(epoll);

    qsort(latency, (size_t)completed, sizeof *latency, compare_u64);
    figures result = {
        .requests_per_second = (double)completed / elapsed,
        .p50_us = (double)latency[completed / 2] / 1e3,
        .p99_us = (double)latency[completed * 99 / 100] / 1e3,
        .server_cpu_us = cpu / (double)completed * 1e6,
    };
    free(latency);
    free(conns);
    return result;
}

/* ---- Report ------------------------------------------------------------- */

static double median(double *values, int n) {
    for (int i = 1; i < n; i++) /* insertion sort: a handful of values */
        for (int j = i; j > 0 && values[j - 1] > values[j]; j--) {
            double t = values[j];
            values[j] = values[j - 1];
            values[j - 1] = t;
        }
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/* "median (min..max)" of n values (sorts them). */
static void print_spread(double *values, int n, const char *format) {
    double middle = median(values, n);
    char cell[24], low[24], high[24];
    snprintf(cell, sizeof cell, format, middle);
    snprintf(low, sizeof low, format, values[0]);
    snprintf(high, sizeof high, format, values[n - 1]);
    char all[96];
    snprintf(all, sizeof all, "%s (%s..%s)", cell, low, high);
    printf(" %-31s", all);
}

enum { RATE, P50, P99, CPU, FIELDS };

static double field(const figures *f, int which) {
    return which == RATE  ? f->requests_per_second
           : which == P50 ? f->p50_us
           : which == P99 ? f->p99_us
                          : f->server_cpu_us;
}

static void report(int count, figures results[SERVERS][MAX_REPS], const bool *runs, int reps) {
    static const char *const formats[FIELDS] = {"%.0f", "%.1f", "%.1f", "%.1f"};
    printf("\n%d connection%s, %d reps: median (min..max)\n", count, count == 1 ? "" : "s", reps);
    printf("        %-31s %-31s %-31s %-31s\n", "requests/s", "p50 us", "p99 us",
           "server CPU us/request");
    for (int k = 0; k < SERVERS; k++) {
        if (!runs[k]) continue;
        printf("  %-5s", server_name[k]);
        for (int which = 0; which < FIELDS; which++) {
            double values[MAX_REPS];
            for (int r = 0; r < reps; r++) values[r] = field(&results[k][r], which);
            print_spread(values, reps, formats[which]);
        }
        printf("\n");
    }
    if (!runs[GO]) return;
    static const char *const ratio_name[SERVERS] = {"w/go", "", "thr/go"};
    for (int k = 0; k < SERVERS; k++) {
        if (!runs[k] || k == GO) continue;
        printf("  %-5s", ratio_name[k]);
        for (int which = 0; which < FIELDS; which++) {
            double values[MAX_REPS];
            for (int r = 0; r < reps; r++)
                values[r] = field(&results[k][r], which) / field(&results[GO][r], which);
            print_spread(values, reps, "%.2f");
        }
        printf("\n");
    }
}

/* ---- Idle connections --------------------------------------------------- */

static void run_idle(const server *s, int count, size_t bytes) {
    long before = status_field(s->pid, "VmRSS:");
    long threads_before = status_field(s->pid, "Threads:");
    connection *conns = calloc((size_t)count, sizeof *conns);
    if (!conns) fail("out of memory");
    double start = now_seconds();
    for (int i = 0; i < count; i++) {
        conns[i].fd = connect_to(s->port);
        /* Every IDLE_BATCH connections, echo a line on each: the server has
         * accepted them and has a goroutine on each before the next batch,
         * so the listen backlog never overflows. */
        if ((i + 1) % IDLE_BATCH == 0 || i + 1 == count)
            for (int j = i - (i % IDLE_BATCH); j <= i; j++) exchange(&conns[j], j, bytes);
    }
    double opened = now_seconds() - start;
    long after = status_field(s->pid, "VmRSS:");
    long threads_after = status_field(s->pid, "Threads:");
    printf("  %-5s %d idle: VmRSS %.1f -> %.1f MiB, %.1f KiB per connection; threads %ld -> %ld; "
           "opened in %.1f s\n",
           s->name, count, before / 1024.0, after / 1024.0, (double)(after - before) / count,
           threads_before, threads_after, opened);
    for (int i = 0; i < count; i++) close(conns[i].fd);
    free(conns);
}

/* ---- Setup -------------------------------------------------------------- */

/* Raise RLIMIT_NOFILE (which the children inherit) towards want: to the
 * hard limit, and past it when the process may (CAP_SYS_RESOURCE).
 * Returns the soft limit now in force. */
static rlim_t raise_file_limit(rlim_t want) {
    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    struct rlimit above = {want, want};
    if (limit.rlim_max >= want || setrlimit(RLIMIT_NOFILE, &above) != 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    getrlimit(RLIMIT_NOFILE, &limit);
    return limit.rlim_cur;
}

static void print_machine(void) {
    char line[256], model[256] = "unknown";
    FILE *file = fopen("/proc/cpuinfo", "r");
    while (file && fgets(line, sizeof line, file))
        if (strncmp(line, "model name", 10) == 0) {
            const char *colon = strchr(line, ':');
            snprintf(model, sizeof model, "%s", colon ? colon + 2 : line);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    if (file) fclose(file);
    printf("echo over loopback; CPU: %s, %ld online\n", model, sysconf(_SC_NPROCESSORS_ONLN));
}

static int usage(void) {
    fprintf(stderr, "usage: echo_load --weft PATH [--go PATH] [--threads PATH] "
                    "[--connections 1,100,1000] [--reps N] [--seconds S] [--requests N] "
                    "[--message-bytes B] [--idle N]\n");
    return 2;
}

static bool parse_options(int argc, char **argv, options *opt) {
    *opt = (options){.counts = {1, 100, 1000},
                     .count_count = 3,
                     .reps = 5,
                     .seconds = 2,
                     .requests = 1000000,
                     .message_bytes = 64,
                     .idle = 10000};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *name = argv[i], *value = argv[i + 1];
        char *end;
        if (strcmp(name, "--weft") == 0) {
            opt->server_path[WEFT] = value;
        } else if (strcmp(name, "--go") == 0) {
            opt->server_path[GO] = value;
        } else if (strcmp(name, "--threads") == 0) {
            opt->server_path[THREADS] = value;
        } else if (strcmp(name, "--connections") == 0) {
            opt->count_count = 0;
            for (const char *p = value; *p && opt->count_count < MAX_COUNTS;
                 p = end + (*end == ',')) {
                long count = strtol(p, &end, 10);
                if (end == p || count < 1 || count > 100000) return false;
                opt->counts[opt->count_count++] = (int)count;
            }
        } else if (strcmp(name, "--reps") == 0) {
            opt->reps = (int)strtol(value, &end, 10);
            if (*end || opt->reps < 1 || opt->reps > MAX_REPS) return false;
        } else if (strcmp(name, "--seconds") == 0) {
            opt->seconds = strtod(value, &end);
            if (*end || opt->seconds <= 0) return false;
        } else if (strcmp(name, "--requests") == 0) {
            opt->requests = strtol(value, &end, 10);
            if (*end || opt->requests < 1) return false;
        } else if (strcmp(name, "--message-bytes") == 0) {
            opt->message_bytes = (size_t)strtol(value, &end, 10);
            if (*end || opt->message_bytes < 24 || opt->message_bytes > 512) return false;
        } else if (strcmp(name, "--idle") == 0) {
            opt->idle = (int)strtol(value, &end, 10);
            if (*end || opt->idle < 0 || opt->idle > 1000000) return false;
        } else {
            return false;
        }
    }
    return argc % 2 == 1 && opt->server_path[WEFT] && opt->count_count > 0;
}

int main(int argc, char **argv) {
    options opt;
    if (!parse_options(argc, argv, &opt)) return usage();
    bool runs[SERVERS];
    int order[SERVERS], servers = 0; /* the servers that run, in turn order */
    for (int k = 0; k < SERVERS; k++)
        if ((runs[k] = opt.server_path[k] != NULL)) order[servers++] = k;
    int most = opt.idle;
    for (int c = 0; c < opt.count_count; c++)
        if (opt.counts[c] > most) most = opt.counts[c];
    /* Ours: a socket per connection; the weft server's: two per connection
     * (the socket and its thread's eventfd), and a few of its own. */
    rlim_t files = raise_file_limit((rlim_t)most * 2 + 256);
    if (files < (rlim_t)most * 2 + 256) {
        int fits = (int)((files - 256) / 2);
        printf("file limit %lu (cannot raise it further): at most %d connections\n",
               (unsigned long)files, fits);
        for (int c = 0; c < opt.count_count; c++)
            if (opt.counts[c] > fits) fail("%d connections do not fit", opt.counts[c]);
        if (opt.idle > fits) opt.idle = fits;
        most = fits;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0); /* a long run shows its progress */
    print_machine();
    printf("%zu-byte lines, lockstep per connection; each rep at most %.1f s or %ld requests\n",
           opt.message_bytes, opt.seconds, opt.requests);

    server running[SERVERS];
    for (int i = 0; i < servers; i++)
        start_server(&running[order[i]], server_name[order[i]], opt.server_path[order[i]],
                     most + 16);
    static figures results[SERVERS][MAX_REPS];
    for (int c = 0; c < opt.count_count; c++) {
        for (int r = 0; r < opt.reps; r++)
            for (int turn = 0; turn < servers; turn++) {
                int k = order[(turn + r) % servers]; /* who goes first rotates */
                results[k][r] = run_busy(&running[k], opt.counts[c], &opt);
            }
        report(opt.counts[c], results, runs, opt.reps);
    }
    if (opt.idle > 0) {
        printf("\nidle connections (each echoed one line, then held)\n");
        for (int i = 0; i < servers; i++) run_idle(&running[order[i]], opt.idle, opt.message_bytes);
    }
    printf("\n");
    for (int i = 0; i < servers; i++) stop_server(&running[order[i]]);
    return 0;
}
