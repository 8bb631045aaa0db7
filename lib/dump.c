/* The goroutine dump: weft_debug_dump (weft/go.h) and the SIGQUIT handler
 * of WEFT_DEBUG=dump. How the snapshots are taken, why nothing they name
 * is ever read, and how the handler stays async-signal-safe: dump.h.
 *
 * The format (one line each, also in weft_go(3))
 *   weft: dump-begin version=1 pid=P goroutines=G threads=T
 *   weft: goroutine tid=N pool=NAME name=NAME state=running
 *   weft: goroutine tid=N pool=NAME name=NAME state=blocked call=C object=0x.. kind=K ...
 * waited_ms=W weft: thread tid=N pool=- name=NAME state=blocked call=C object=0x.. kind=K ...
 * waited_ms=W weft: dump-end lines=L truncated=0 Every line is "weft:", a type, then key=value
 * fields separated by one space. No value holds a space or an "=": names are percent-encoded (every
 * byte outside '!'..'~', and '%' and '=', as %XX). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "dump.h"
#include "panic.h"
#include "parker.h"
#include "thread.h"
#include "waitrecord.h"
#include "weft/go.h"
#include "weft/io.h"

enum {
    STACK_ROOM =
        32, /* entries of each snapshot kept on the stack, and all we show without memory */
    LINE_SIZE = 512,
    NAME_SIZE = 16, /* Linux thread names: 15 characters and the NUL */
};

/* ---- Kinds of call ---- */

typedef enum { CHAN, SELECT, FD, SLEEP, OTHER } shape;

/* The kind shown for each blocking call, by the start of its name, and
 * which numbers of the record it shows (waitrecord.h). */
static const struct {
    const char *prefix;
    const char *kind;
    shape numbers;
} kinds[] = {
    {"weft_chan_", "chan", CHAN},      {"weft_select", "select", SELECT},
    {"weft_fd_wait", "fd", FD},        {"weft_read", "fd", FD},
    {"weft_write", "fd", FD},          {"weft_recv", "fd", FD},
    {"weft_send", "fd", FD},           {"weft_accept", "fd", FD},
    {"weft_connect", "fd", FD},        {"weft_sleep", "sleep", SLEEP},
    {"weft_mutex_", "mutex", OTHER},   {"weft_rwmutex_", "rwmutex", OTHER},
    {"weft_cond_", "cond", OTHER},     {"weft_wg_", "waitgroup", OTHER},
    {"weft_sem_", "semaphore", OTHER}, {"weft_once_", "once", OTHER},
};

/* ---- Writing lines ---- */

typedef struct {
    char text[LINE_SIZE];
    size_t used;
} line;

/* Append to the line, cutting at its end (a cut line still ends in a
 * newline, and the cut never falls inside a field a parser needs first). */
__attribute__((format(printf, 2, 3))) static void add(line *out, const char *format, ...) {
    if (out->used >= LINE_SIZE - 2) return;
    va_list arguments;
    va_start(arguments, format);
    int added = vsnprintf(out->text + out->used, LINE_SIZE - 1 - out->used, format, arguments);
    va_end(arguments);
    if (added < 0) return;
    size_t room = LINE_SIZE - 2 - out->used;
    out->used += (size_t)added < room ? (size_t)added : room;
}

/* Append " key=" and value, percent-encoded so that it holds no space
 * and no '='. */
static void add_name(line *out, const char *key, const char *value) {
    add(out, " %s=", key);
    if (!*value) add(out, "-");
    for (const unsigned char *c = (const unsigned char *)value; *c; c++) {
        if (*c > ' ' && *c <= '~' && *c != '%' && *c != '=')
            add(out, "%c", *c);
        else
            add(out, "%%%02X", *c);
    }
}

/* One write(2) per line: a line is far below PIPE_BUF, so lines of two
 * dumps, or of a dump and another writer, never interleave on a pipe. */
static void emit(int fd, line *out) {
    out->text[out->used++] = '\n';
    size_t done = 0;
    while (done < out->used) {
        ssize_t written = write(fd, out->text + done, out->used - done);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) return;
        done += (size_t)written;
    }
}

/* The thread's name, from /proc (the thread may be gone: then "?"). */
static void thread_name(long thread_id, char name[NAME_SIZE]) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/comm", thread_id);
    strcpy(name, "?");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t got;
    do got = read(fd, name, NAME_SIZE - 1);
    while (got < 0 && errno == EINTR);
    close(fd);
    if (got <= 0) {
        strcpy(name, "?");
        return;
    }
    name[got] = '\0';
    name[strcspn(name, "\n")] = '\0';
}

static void add_wait(line *out, const weft__wait_snapshot *wait, int64_t now) {
    const char *kind = "other";
    shape numbers = OTHER;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strncmp(wait->call, kinds[i].prefix, strlen(kinds[i].prefix)) == 0) {
            kind = kinds[i].kind;
            numbers = kinds[i].numbers;
            break;
        }
    }
    add(out, " state=blocked call=%s object=0x%" PRIxPTR " kind=%s", wait->call,
        (uintptr_t)wait->object, kind);
    switch (numbers) {
    case CHAN:
        if (wait->count == SIZE_MAX)
            add(out, " cap=unbounded len=%zu", wait->length);
        else
            add(out, " cap=%zu len=%zu", wait->count, wait->length);
        break;
    case SELECT: add(out, " cases=%zu", wait->count); break;
    case FD:
        add(out, " fd=%zu events=%s", wait->count,
            wait->length == (WEFT_FD_IN | WEFT_FD_OUT) ? "in,out"
            : wait->length == WEFT_FD_OUT              ? "out"
                                                       : "in");
        break;
    case SLEEP: add(out, " duration_ms=%zu", wait->count); break;
    case OTHER: break;
    }
    int64_t waited = now > wait->since ? now - wait->since : 0;
    add(out, " waited_ms=%" PRId64, waited / 1000000);
}

/* Start a goroutine or thread line: its type, id, pool and name. */
static void add_thread(line *out, const char *type, long thread_id, const char *pool) {
    add(out, "weft: %s tid=%ld", type, thread_id);
    add_name(out, "pool", pool);
    char name[NAME_SIZE];
    if (thread_id > 0)
        thread_name(thread_id, name);
    else
        strcpy(name, "?");
    add_name(out, "name", name);
}

/* ---- Snapshots ---- */

/* Fill *items through take(out, room), growing from the stack's room into
 * allocated memory as far as needed. Returns how many are in *items;
 * *truncated when memory ran out and fewer than all are. */
static size_t snapshot(void **items, size_t size, size_t (*take)(void *, size_t), void *stack,
                       bool *truncated, void **allocated) {
    *items = stack;
    *allocated = NULL;
    size_t room = STACK_ROOM;
    for (;;) {
        size_t found = take(*items, room);
        if (found <= room) return found;
        weft__free(*allocated);
        room = found + found / 2;
        *allocated = weft__malloc(room * size);
        if (!*allocated) {
            *items = stack;
            *truncated = true;
            size_t kept = take(stack, STACK_ROOM);
            return kept < STACK_ROOM ? kept : STACK_ROOM;
        }
        *items = *allocated;
    }
}

static size_t take_goroutines(void *out, size_t room) { return weft__pool_goroutines(out, room); }

static size_t take_waits(void *out, size_t room) { return weft__parker_waits(out, room); }

static int by_goroutine_thread(const void *a, const void *b) {
    long x = ((const weft__goroutine_snapshot *)a)->thread_id;
    long y = ((const weft__goroutine_snapshot *)b)->thread_id;
    return (x > y) - (x < y);
}

static int by_wait_thread(const void *a, const void *b) {
    long x = ((const weft__wait_snapshot *)a)->thread_id;
    long y = ((const weft__wait_snapshot *)b)->thread_id;
    return (x > y) - (x < y);
}

/* The record of thread_id's wait, or NULL; marks it shown. */
static const weft__wait_snapshot *wait_of(long thread_id, weft__wait_snapshot *waits, size_t n,
                                          bool *shown) {
    for (size_t i = 0; i < n; i++) {
        if (waits[i].thread_id != thread_id || thread_id == 0) continue;
        shown[i] = true;
        return &waits[i];
    }
    return NULL;
}

void weft_debug_dump(int fd) {
    weft__goroutine_snapshot goroutine_stack[STACK_ROOM];
    weft__wait_snapshot wait_stack[STACK_ROOM];
    bool shown_stack[STACK_ROOM];
    void *goroutine_memory, *wait_memory, *items;
    bool truncated = false;

    size_t goroutines = snapshot(&items, sizeof goroutine_stack[0], take_goroutines,
                                 goroutine_stack, &truncated, &goroutine_memory);
    weft__goroutine_snapshot *goroutine = items;
    size_t waits =
        snapshot(&items, sizeof wait_stack[0], take_waits, wait_stack, &truncated, &wait_memory);
    weft__wait_snapshot *wait = items;
    int64_t now = weft__coarse_now();
    bool *shown = shown_stack;
    if (waits > STACK_ROOM) {
        shown = weft__calloc(waits, sizeof *shown);
        if (!shown) {
            shown = shown_stack;
            waits = STACK_ROOM;
            truncated = true;
        }
    }
    if (shown == shown_stack) memset(shown_stack, 0, sizeof shown_stack);
    qsort(goroutine, goroutines, sizeof *goroutine, by_goroutine_thread);
    qsort(wait, waits, sizeof *wait, by_wait_thread);

    /* Threads: the records that belong to no goroutine. */
    size_t threads = waits;
    for (size_t i = 0; i < goroutines; i++)
        if (wait_of(goroutine[i].thread_id, wait, waits, shown)) threads--;

    line out = {.used = 0};
    add(&out, "weft: dump-begin version=1 pid=%ld goroutines=%zu threads=%zu", (long)getpid(),
        goroutines, threads);
    emit(fd, &out);
    size_t lines = 0;
    for (size_t i = 0; i < goroutines; i++, lines++) {
        out.used = 0;
        add_thread(&out, "goroutine", goroutine[i].thread_id, goroutine[i].pool);
        const weft__wait_snapshot *blocked = wait_of(goroutine[i].thread_id, wait, waits, shown);
        if (blocked)
            add_wait(&out, blocked, now);
        else
            add(&out, " state=%s", goroutine[i].thread_id ? "running" : "starting");
        emit(fd, &out);
    }
    for (size_t j = 0; j < waits; j++) {
        if (shown[j]) continue;
        out.used = 0;
        add_thread(&out, "thread", wait[j].thread_id, "");
        add_wait(&out, &wait[j], now);
        emit(fd, &out);
        lines++;
    }
    out.used = 0;
    add(&out, "weft: dump-end lines=%zu truncated=%d", lines, truncated ? 1 : 0);
    emit(fd, &out);

    if (shown != shown_stack) weft__free(shown);
    weft__free(goroutine_memory);
    weft__free(wait_memory);
}

/* ---- WEFT_DEBUG=dump: the SIGQUIT handler and the dump thread ---- */

static pthread_once_t install_once = PTHREAD_ONCE_INIT;
/* The pipe's ends: the handler writes wake_write; the dump thread reads
 * wake_read. Set before the handler is installed and in a forked child's
 * handler (one thread); atomic, so the handler reads them lock-free. */
static atomic_int wake_read = -1, wake_write = -1;

static void on_sigquit(int signal_number) {
    (void)signal_number;
    int saved = errno;
    char byte = 1;
    ssize_t ignored = write(atomic_load_explicit(&wake_write, memory_order_relaxed), &byte, 1);
    (void)ignored; /* EAGAIN: the pipe is full, a dump is coming anyway */
    errno = saved;
}

static void *dump_main(void *unused) {
    (void)unused;
    pthread_setname_np(pthread_self(), "weft/dump");
    int fd = atomic_load_explicit(&wake_read, memory_order_relaxed);
    for (;;) {
        char bytes[64];
        ssize_t got = read(fd, bytes, sizeof bytes);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return NULL; /* the pipe was closed: a forked child's old copy */
        weft_debug_dump(STDERR_FILENO);
    }
}

/* The pipe and the thread that reads it. */
static void start_dump_thread(void) {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) weft__panic_errno("WEFT_DEBUG=dump: pipe", errno);
    int flags = fcntl(ends[1], F_GETFL);
    fcntl(ends[1], F_SETFL, flags | O_NONBLOCK);
    atomic_store_explicit(&wake_read, ends[0], memory_order_relaxed);
    atomic_store_explicit(&wake_write, ends[1], memory_order_relaxed);
    int error = weft__start_service_thread(dump_main);
    if (error) weft__panic_errno("WEFT_DEBUG=dump: starting the dump thread", error);
}

/* A forked child: the pipe is the parent's (a write would wake the
 * parent's dump thread) and the dump thread did not survive. */
static void fork_child(void) {
    close(atomic_load_explicit(&wake_read, memory_order_relaxed));
    close(atomic_load_explicit(&wake_write, memory_order_relaxed));
    start_dump_thread();
}

static void install(void) {
    start_dump_thread();
    int error = pthread_atfork(NULL, NULL, fork_child);
    if (error) weft__panic_errno("pthread_atfork", error);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_sigquit;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGQUIT, &action, NULL) != 0) weft__panic_errno("sigaction", errno);
}

void weft__dump_on_sigquit(void) { pthread_once(&install_once, install); }
