/* Check suite for the goroutine dump (weft_debug_dump, WEFT_DEBUG=dump).
 *
 * Each test parses the whole dump, line by line, as a program would: a
 * dump-begin line, goroutine and thread lines, a dump-end line, each
 * "weft: TYPE key=value ...", with the counts the first and last lines
 * announce. A test never sleeps to let a goroutine block: it takes dumps
 * until the line it expects appears (dump_until), within BECOME_LIMIT_MS.
 *
 * The SIGQUIT test executes this program again with WEFT_DEBUG=dump (read
 * before main, so it cannot be set in a forked child) and the scenario in
 * WEFT_TEST_SCENARIO. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft.h"
#include "weft/io.h"
#include "testutil.h"

extern char **environ;

/* ==== Parsing a dump ================================================== */

enum { MAX_FIELDS = 24, MAX_RECORDS = 256, FIELD_SIZE = 160 };

typedef struct {
    char type[24];
    int fields;
    char key[MAX_FIELDS][32];
    char value[MAX_FIELDS][FIELD_SIZE];
} record;

typedef struct {
    int count; /* records between dump-begin and dump-end */
    record begin, end;
    record line[MAX_RECORDS];
} dump;

/* The value of key in r, or NULL. */
static const char *field(const record *r, const char *key) {
    for (int i = 0; i < r->fields; i++)
        if (strcmp(r->key[i], key) == 0) return r->value[i];
    return NULL;
}

static long number(const record *r, const char *key) {
    const char *value = field(r, key);
    ck_assert_msg(value, "no %s= in a %s line", key, r->type);
    char *end;
    long result = strtol(value, &end, 10);
    ck_assert_msg(*end == '\0', "%s=%s is not a number", key, value);
    return result;
}

/* One line, without its newline: "weft: TYPE" then " key=value" fields,
 * with non-empty keys and values and no "=" or space in either. */
static void parse_line(const char *text, size_t length, record *out) {
    char copy[1024];
    ck_assert_uint_lt(length, sizeof copy);
    memcpy(copy, text, length);
    copy[length] = '\0';
    ck_assert_msg(strncmp(copy, "weft: ", 6) == 0, "line without \"weft: \": %s", copy);
    memset(out, 0, sizeof *out);
    char *cursor = copy + 6;
    size_t type_length = strcspn(cursor, " ");
    ck_assert_msg(type_length > 0 && type_length < sizeof out->type, "bad type: %s", copy);
    memcpy(out->type, cursor, type_length);
    cursor += type_length;
    while (*cursor) {
        ck_assert_msg(*cursor == ' ', "fields are not separated by one space: %s", copy);
        cursor++;
        size_t token = strcspn(cursor, " ");
        char *equals = memchr(cursor, '=', token);
        ck_assert_msg(equals && equals > cursor && equals < cursor + token - 1,
                      "not key=value: %.*s in %s", (int)token, cursor, copy);
        ck_assert_msg(!memchr(equals + 1, '=', (size_t)(cursor + token - equals - 1)),
                      "two = in one field: %s", copy);
        ck_assert_int_lt(out->fields, MAX_FIELDS);
        size_t key_length = (size_t)(equals - cursor);
        size_t value_length = token - key_length - 1;
        ck_assert_uint_lt(key_length, sizeof out->key[0]);
        ck_assert_uint_lt(value_length, sizeof out->value[0]);
        memcpy(out->key[out->fields], cursor, key_length);
        memcpy(out->value[out->fields], equals + 1, value_length);
        out->fields++;
        cursor += token;
    }
}

/* Parse a whole dump: dump-begin, the records it announces, dump-end. */
static void parse_dump(const char *text, dump *out) {
    const char *cursor = text;
    int lines = 0;
    bool ended = false;
    out->count = 0;
    while (*cursor) {
        const char *newline = strchr(cursor, '\n');
        ck_assert_msg(newline, "unterminated line: %s", cursor);
        ck_assert_msg(!ended, "a line after dump-end: %s", cursor);
        record *into = lines == 0 ? &out->begin : &out->line[out->count];
        parse_line(cursor, (size_t)(newline - cursor), into);
        if (lines == 0) {
            ck_assert_str_eq(into->type, "dump-begin");
        } else if (strcmp(into->type, "dump-end") == 0) {
            out->end = *into;
            ended = true;
        } else {
            ck_assert_msg(strcmp(into->type, "goroutine") == 0 || strcmp(into->type, "thread") == 0,
                          "unknown line type %s", into->type);
            ck_assert_int_lt(out->count, MAX_RECORDS - 1);
            out->count++;
        }
        lines++;
        cursor = newline + 1;
    }
    ck_assert_msg(ended, "no dump-end line in: %s", text);
    ck_assert_int_eq(number(&out->begin, "version"), 1);
    ck_assert_int_eq(number(&out->begin, "pid"), getpid());
    ck_assert_int_eq(number(&out->end, "lines"), out->count);
    ck_assert_int_eq(number(&out->end, "truncated"), 0);
    long goroutines = 0, threads = 0;
    for (int i = 0; i < out->count; i++) {
        const record *r = &out->line[i];
        if (strcmp(r->type, "goroutine") == 0) goroutines++;
        if (strcmp(r->type, "thread") == 0) threads++;
        ck_assert_ptr_nonnull(field(r, "tid"));
        ck_assert_ptr_nonnull(field(r, "pool"));
        ck_assert_ptr_nonnull(field(r, "name"));
        const char *state = field(r, "state");
        ck_assert_ptr_nonnull(state);
        if (strcmp(state, "blocked") == 0) {
            ck_assert_ptr_nonnull(field(r, "call"));
            ck_assert_ptr_nonnull(field(r, "object"));
            ck_assert_ptr_nonnull(field(r, "kind"));
            ck_assert_int_ge(number(r, "waited_ms"), 0);
        }
    }
    ck_assert_int_eq(number(&out->begin, "goroutines"), goroutines);
    ck_assert_int_eq(number(&out->begin, "threads"), threads);
}

/* weft_debug_dump into memory, then parsed. */
static void take_dump(dump *out) {
    static char text[MAX_RECORDS * 512];
    int fd = memfd_create("dump", MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    weft_debug_dump(fd);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    ssize_t got = read(fd, text, sizeof text - 1);
    ck_assert_int_gt(got, 0);
    text[got] = '\0';
    close(fd);
    parse_dump(text, out);
}

static void address(const void *object, char *text, size_t size) {
    snprintf(text, size, "0x%" PRIxPTR, (uintptr_t)object);
}

/* The record of type blocked in call on object, or NULL. */
static const record *find(const dump *d, const char *type, const char *call, const void *object) {
    char wanted[32];
    address(object, wanted, sizeof wanted);
    for (int i = 0; i < d->count; i++) {
        const record *r = &d->line[i];
        const char *its_call = field(r, "call"), *its_object = field(r, "object");
        if (strcmp(r->type, type) == 0 && its_call && strcmp(its_call, call) == 0 && its_object &&
            strcmp(its_object, wanted) == 0)
            return r;
    }
    return NULL;
}

/* Take dumps until one shows that record; fail after BECOME_LIMIT_MS. */
static const record *dump_until(dump *d, const char *type, const char *call, const void *object) {
    weft_time give_up = weft_deadline(WEFT_MS(BECOME_LIMIT_MS));
    for (;;) {
        take_dump(d);
        const record *r = find(d, type, call, object);
        if (r) return r;
        ck_assert_msg(weft_now() < give_up, "no %s blocked in %s on %p in the dump", type, call,
                      object);
        sleep_ms(5);
    }
}

/* ==== Goroutines blocked in each kind of call ========================= */

/* What every blocking goroutine below shares. */
static weft_chan *unbuffered, *full, *empty;
static weft_mutex mutex;
static weft_rwmutex rwmutex;
static weft_cond cond;
static bool cond_ready;
static weft_wg group;
static weft_sem semaphore_storage, *semaphore = &semaphore_storage;
static weft_ctx *context;
static int pipe_ends[2];
static weft_case select_cases[3];
static int select_value;

static void recv_unbuffered(void *unused) {
    (void)unused;
    int value;
    WORKER_EXPECT(weft_chan_recv(unbuffered, &value) == WEFT_ECLOSED);
}

static void send_full(void *unused) {
    (void)unused;
    int value = 3;
    WORKER_EXPECT(weft_chan_send(full, &value) == WEFT_ECLOSED);
}

static void select_three(void *unused) {
    (void)unused;
    select_cases[0] = (weft_case)WEFT_RECV_CASE(unbuffered, &select_value);
    select_cases[1] = (weft_case)WEFT_RECV_CASE(empty, &select_value);
    select_cases[2] = (weft_case)WEFT_SEND_CASE(full, &select_value);
    WORKER_EXPECT(weft_select(select_cases, 3, WEFT_FOREVER) >= 0);
}

static void lock_mutex(void *unused) {
    (void)unused;
    weft_mutex_lock(&mutex);
    weft_mutex_unlock(&mutex);
}

static void lock_rwmutex(void *unused) {
    (void)unused;
    weft_rwmutex_lock(&rwmutex);
    weft_rwmutex_unlock(&rwmutex);
}

static void wait_cond(void *unused) {
    (void)unused;
    weft_mutex_lock(&mutex);
    while (!cond_ready) weft_cond_wait(&cond, &mutex);
    weft_mutex_unlock(&mutex);
}

static void wait_group(void *unused) {
    (void)unused;
    weft_wg_wait(&group);
}

static void acquire_semaphore(void *unused) {
    (void)unused;
    WORKER_EXPECT(weft_sem_acquire(semaphore, 1, NULL) == 0);
    weft_sem_release(semaphore, 1);
}

static void read_pipe(void *unused) {
    (void)unused;
    char byte;
    WORKER_EXPECT(weft_read_ctx(pipe_ends[0], &byte, 1, context) == WEFT_ECANCELED);
}

static void sleep_ctx(void *unused) {
    (void)unused;
    WORKER_EXPECT(weft_sleep_ctx(WEFT_SEC(60), context) == WEFT_ECANCELED);
}

static void sleep_plain(void *unused) {
    (void)unused;
    weft_sleep(WEFT_SEC(2));
}

static void wait_fd(void *unused) {
    (void)unused;
    WORKER_EXPECT(weft_fd_wait_ctx(pipe_ends[0], WEFT_FD_IN, context) == WEFT_ECANCELED);
}

static void setup_objects(void) {
    unbuffered = weft_chan_make(sizeof(int), 0);
    full = weft_chan_make(sizeof(int), 2);
    empty = weft_chan_make(sizeof(int), 4);
    int value = 1;
    ck_assert_int_eq(weft_chan_send(full, &value), 0);
    ck_assert_int_eq(weft_chan_send(full, &value), 0);
    weft_mutex_init(&mutex);
    weft_rwmutex_init(&rwmutex);
    weft_cond_init(&cond);
    cond_ready = false;
    weft_wg_init(&group);
    ck_assert_int_eq(weft_sem_init(semaphore, 1), 0);
    context = weft_ctx_with_cancel(weft_ctx_background());
    ck_assert_ptr_nonnull(context);
    ck_assert_int_eq(pipe2(pipe_ends, O_NONBLOCK | O_CLOEXEC), 0);
}

/* Wake everything setup_objects' goroutines may block on, wait for them
 * all to return, and free. */
static void release_objects(void) {
    weft_chan_close(unbuffered);
    weft_chan_close(full);
    weft_chan_close(empty);
    weft_mutex_lock(&mutex);
    cond_ready = true;
    weft_cond_broadcast(&cond);
    weft_mutex_unlock(&mutex);
    weft_ctx_cancel(context);
    ck_assert(goroutines_become(0));
    check_worker_failures();
    weft_chan_release(unbuffered);
    weft_chan_release(full);
    weft_chan_release(empty);
    weft_cond_destroy(&cond);
    weft_sem_destroy(semaphore);
    weft_ctx_release(context);
    close(pipe_ends[0]);
    close(pipe_ends[1]);
}

typedef struct {
    weft_fn blocks;       /* the goroutine */
    void (*hold)(void);   /* run before it starts: what makes it block */
    void (*let_go)(void); /* run after the dump: what lets it return (or NULL) */
    const char *call, *kind;
    const void *const *object; /* where the object's address is */
    const char *extra[2][2];   /* further fields and values expected */
} blocking_call;

static void hold_mutex(void) { weft_mutex_lock(&mutex); }
static void free_mutex(void) { weft_mutex_unlock(&mutex); }
static void hold_rwmutex(void) { weft_rwmutex_rlock(&rwmutex); }
static void free_rwmutex(void) { weft_rwmutex_runlock(&rwmutex); }
static void hold_group(void) { weft_wg_add(&group, 1); }
static void free_group(void) { weft_wg_done(&group); }
static void hold_semaphore(void) { ck_assert_int_eq(weft_sem_acquire(semaphore, 1, NULL), 0); }
static void free_semaphore(void) { weft_sem_release(semaphore, 1); }

static const void *unbuffered_object, *full_object, *select_object, *mutex_object, *rwmutex_object,
    *cond_object, *group_object, *semaphore_object, *no_object, *context_object;
static char pipe_fd_text[16];

static const blocking_call calls[] = {
    {recv_unbuffered,
     NULL,
     NULL,
     "weft_chan_recv",
     "chan",
     &unbuffered_object,
     {{"cap", "0"}, {"len", "0"}}},
    {send_full, NULL, NULL, "weft_chan_send", "chan", &full_object, {{"cap", "2"}, {"len", "2"}}},
    {select_three, NULL, NULL, "weft_select", "select", &select_object, {{"cases", "3"}}},
    {lock_mutex, hold_mutex, free_mutex, "weft_mutex_lock", "mutex", &mutex_object, {{NULL}}},
    {lock_rwmutex,
     hold_rwmutex,
     free_rwmutex,
     "weft_rwmutex_lock",
     "rwmutex",
     &rwmutex_object,
     {{NULL}}},
    {wait_cond, NULL, NULL, "weft_cond_wait", "cond", &cond_object, {{NULL}}},
    {wait_group, hold_group, free_group, "weft_wg_wait", "waitgroup", &group_object, {{NULL}}},
    {acquire_semaphore,
     hold_semaphore,
     free_semaphore,
     "weft_sem_acquire",
     "semaphore",
     &semaphore_object,
     {{NULL}}},
    {read_pipe,
     NULL,
     NULL,
     "weft_read_ctx",
     "fd",
     &no_object,
     {{"fd", pipe_fd_text}, {"events", "in"}}},
    {wait_fd,
     NULL,
     NULL,
     "weft_fd_wait_ctx",
     "fd",
     &no_object,
     {{"fd", pipe_fd_text}, {"events", "in"}}},
    {sleep_ctx, NULL, NULL, "weft_sleep_ctx", "sleep", &context_object, {{"duration_ms", "60000"}}},
    {sleep_plain, NULL, NULL, "weft_sleep", "sleep", &no_object, {{"duration_ms", "2000"}}},
};

START_TEST(test_dump_shows_goroutine_blocked_in_each_kind_of_call) {
    const blocking_call *c = &calls[_i];
    setup_objects();
    unbuffered_object = unbuffered;
    full_object = full;
    select_object = select_cases;
    mutex_object = &mutex;
    rwmutex_object = &rwmutex;
    cond_object = &cond;
    group_object = &group;
    semaphore_object = semaphore;
    no_object = NULL;
    context_object = context;
    snprintf(pipe_fd_text, sizeof pipe_fd_text, "%d", pipe_ends[0]);
    if (c->hold) c->hold();
    ck_assert_int_eq(weft_go(c->blocks, NULL), 0);

    static dump d;
    const record *r = dump_until(&d, "goroutine", c->call, *c->object);
    ck_assert_str_eq(field(r, "state"), "blocked");
    ck_assert_str_eq(field(r, "kind"), c->kind);
    ck_assert_str_eq(field(r, "pool"), "weft");
    ck_assert_int_gt(number(r, "tid"), 0);
    for (int i = 0; i < 2 && c->extra[i][0]; i++) {
        const char *value = field(r, c->extra[i][0]);
        ck_assert_msg(value, "%s: no %s=", c->call, c->extra[i][0]);
        ck_assert_str_eq(value, c->extra[i][1]);
    }

    if (c->let_go) c->let_go();
    release_objects();
}
END_TEST

/* ==== Running goroutines, other threads, names, time ================== */

static atomic_int spinning, stop_spinning;

static void spin(void *unused) {
    (void)unused;
    atomic_store(&spinning, 1);
    while (!atomic_load(&stop_spinning)) sched_yield();
}

START_TEST(test_dump_shows_running_goroutine_as_running) {
    atomic_store(&spinning, 0);
    atomic_store(&stop_spinning, 0);
    ck_assert_int_eq(weft_go(spin, NULL), 0);
    ck_assert(int_becomes(&spinning, 1));
    static dump d;
    take_dump(&d);
    int running = 0;
    for (int i = 0; i < d.count; i++) {
        const record *r = &d.line[i];
        if (strcmp(r->type, "goroutine") != 0) continue;
        ck_assert_str_eq(field(r, "state"), "running");
        ck_assert_ptr_null(field(r, "call"));
        ck_assert_str_eq(field(r, "pool"), "weft");
        running++;
    }
    ck_assert_int_eq(running, 1);
    atomic_store(&stop_spinning, 1);
    ck_assert(goroutines_become(0));
}
END_TEST

static weft_chan *thread_channel;

static void *recv_on_thread(void *unused) {
    (void)unused;
    int value;
    WORKER_EXPECT(weft_chan_recv(thread_channel, &value) == WEFT_ECLOSED);
    return NULL;
}

START_TEST(test_dump_shows_plain_thread_blocked_in_weft) {
    thread_channel = weft_chan_make(sizeof(int), 0);
    pthread_t thread;
    start_thread(&thread, recv_on_thread, NULL);
    static dump d;
    const record *r = dump_until(&d, "thread", "weft_chan_recv", thread_channel);
    ck_assert_str_eq(field(r, "pool"), "-");
    ck_assert_str_eq(field(r, "state"), "blocked");
    ck_assert_str_eq(field(r, "kind"), "chan");
    ck_assert_int_eq(number(&d.begin, "goroutines"), 0);
    weft_chan_close(thread_channel);
    join_thread(thread);
    check_worker_failures();
    weft_chan_release(thread_channel);
}
END_TEST

static void *sleep_named(void *unused) {
    (void)unused;
    pthread_setname_np(pthread_self(), "a b=c%");
    int value;
    WORKER_EXPECT(weft_chan_recv(thread_channel, &value) == WEFT_ECLOSED);
    return NULL;
}

START_TEST(test_dump_percent_encodes_names) {
    thread_channel = weft_chan_make(sizeof(int), 0);
    pthread_t thread;
    start_thread(&thread, sleep_named, NULL);
    static dump d;
    /* The thread named itself before it blocked. */
    const record *r = dump_until(&d, "thread", "weft_chan_recv", thread_channel);
    ck_assert_str_eq(field(r, "name"), "a%20b%3Dc%25");
    weft_chan_close(thread_channel);
    join_thread(thread);
    check_worker_failures();
    weft_chan_release(thread_channel);
}
END_TEST

START_TEST(test_dump_waited_time_grows) {
    thread_channel = weft_chan_make(sizeof(int), 0);
    pthread_t thread;
    start_thread(&thread, recv_on_thread, NULL);
    static dump d;
    long first = number(dump_until(&d, "thread", "weft_chan_recv", thread_channel), "waited_ms");
    sleep_ms(100);
    long second = number(dump_until(&d, "thread", "weft_chan_recv", thread_channel), "waited_ms");
    /* The coarse clock ticks every few milliseconds at worst. */
    ck_assert_int_ge(second, first + 80);
    weft_chan_close(thread_channel);
    join_thread(thread);
    check_worker_failures();
    weft_chan_release(thread_channel);
}
END_TEST

START_TEST(test_dump_with_no_goroutines_has_only_its_frame) {
    ck_assert(goroutines_become(0));
    static dump d;
    take_dump(&d);
    ck_assert_int_eq(d.count, 0);
    ck_assert_int_eq(number(&d.begin, "goroutines"), 0);
    ck_assert_int_eq(number(&d.begin, "threads"), 0);
    ck_assert_int_eq(number(&d.end, "lines"), 0);
}
END_TEST

/* A wait that is over leaves nothing behind: its thread is not listed. */
START_TEST(test_dump_forgets_a_wait_once_it_is_over) {
    weft_chan *channel = weft_chan_make(sizeof(int), 0);
    int value = 0;
    ck_assert_int_eq(weft_chan_recv_until(channel, &value, weft_deadline(WEFT_MS(20))),
                     WEFT_ETIMEDOUT);
    weft_sleep(WEFT_MS(1));
    static dump d;
    take_dump(&d);
    ck_assert_int_eq(d.count, 0);
    weft_chan_release(channel);
}
END_TEST

/* Dumps taken while goroutines block and wake all the time parse, and
 * (under ThreadSanitizer) read the records without a race. */
enum { PAIRS = 2 };
static weft_chan *ping[PAIRS], *pong[PAIRS];
static atomic_int finished;
static long rounds;

static void pinger(void *arg) {
    long pair = (long)(intptr_t)arg;
    for (long i = 0; i < rounds; i++) {
        int value = (int)i, back;
        WORKER_EXPECT(weft_chan_send(ping[pair], &value) == 0);
        WORKER_EXPECT(weft_chan_recv(pong[pair], &back) == 0 && back == value);
    }
    atomic_fetch_add(&finished, 1);
}

static void ponger(void *arg) {
    long pair = (long)(intptr_t)arg;
    for (long i = 0; i < rounds; i++) {
        int value;
        WORKER_EXPECT(weft_chan_recv(ping[pair], &value) == 0);
        WORKER_EXPECT(weft_chan_send(pong[pair], &value) == 0);
    }
    atomic_fetch_add(&finished, 1);
}

START_TEST(test_dump_while_goroutines_block_and_wake_parses) {
    rounds = scaled(20000);
    atomic_store(&finished, 0);
    for (long pair = 0; pair < PAIRS; pair++) {
        ping[pair] = weft_chan_make(sizeof(int), 0);
        pong[pair] = weft_chan_make(sizeof(int), pair); /* unbuffered and buffered */
        ck_assert_int_eq(weft_go(pinger, (void *)(intptr_t)pair), 0);
        ck_assert_int_eq(weft_go(ponger, (void *)(intptr_t)pair), 0);
    }
    static dump d;
    long dumps = 0;
    while (atomic_load(&finished) < 2 * PAIRS) {
        take_dump(&d);
        ck_assert_int_le(number(&d.begin, "goroutines"), 2 * PAIRS);
        for (int i = 0; i < d.count; i++) {
            const char *call = field(&d.line[i], "call");
            if (call)
                ck_assert_msg(strcmp(call, "weft_chan_send") == 0 ||
                                  strcmp(call, "weft_chan_recv") == 0,
                              "unexpected call %s", call);
        }
        dumps++;
    }
    ck_assert(goroutines_become(0));
    check_worker_failures();
    ck_assert_int_gt(dumps, 0);
    for (long pair = 0; pair < PAIRS; pair++) {
        weft_chan_release(ping[pair]);
        weft_chan_release(pong[pair]);
    }
}
END_TEST

/* ==== WEFT_DEBUG=dump and SIGQUIT ===================================== */

/* In the child: a goroutine blocked on a channel, then SIGQUIT; once the
 * parent has read the dump it writes a byte to our stdin, and we must
 * still be running to say so on stdout. */
static weft_chan *child_channel;

static void child_recv(void *unused) {
    (void)unused;
    int value;
    weft_chan_recv(child_channel, &value);
}

static int scenario_sigquit(void) {
    child_channel = weft_chan_make(sizeof(int), 0);
    printf("channel=0x%" PRIxPTR "\n", (uintptr_t)child_channel);
    fflush(stdout);
    if (weft_go(child_recv, NULL) != 0) return 2;
    /* Wait until it is blocked, as the dump itself shows. */
    for (;;) {
        char text[4096];
        int fd = memfd_create("dump", MFD_CLOEXEC);
        weft_debug_dump(fd);
        lseek(fd, 0, SEEK_SET);
        ssize_t got = read(fd, text, sizeof text - 1);
        close(fd);
        text[got > 0 ? got : 0] = '\0';
        if (strstr(text, "call=weft_chan_recv")) break;
        weft_sleep(WEFT_MS(5));
    }
    raise(SIGQUIT);
    char byte;
    while (read(STDIN_FILENO, &byte, 1) < 0 && errno == EINTR) continue;
    printf("continued\n");
    fflush(stdout);
    weft_chan_close(child_channel);
    return 0;
}

/* A forked child of a WEFT_DEBUG=dump process: its SIGQUIT gives its
 * own dump, not its parent's. Both then wait for a byte each on stdin. */
static int scenario_sigquit_fork(void) {
    weft_debug_dump(open("/dev/null", O_WRONLY | O_CLOEXEC)); /* the parent used weft */
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return 2;
    char byte;
    if (pid == 0) {
        printf("forked=%ld\n", (long)getpid());
        fflush(stdout);
        raise(SIGQUIT);
        while (read(STDIN_FILENO, &byte, 1) < 0 && errno == EINTR) continue;
        _exit(0);
    }
    while (read(STDIN_FILENO, &byte, 1) < 0 && errno == EINTR) continue;
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 3;
    printf("continued\n");
    fflush(stdout);
    return 0;
}

typedef scenario_child child;

/* This program again, with WEFT_DEBUG=dump and WEFT_TEST_SCENARIO=scenario. */
static child start_child(const char *scenario) { return start_scenario(scenario, "dump"); }

/* Read the child's stderr into text until it holds a whole dump. */
static void read_dump(const child *running, char *text, size_t size) {
    size_t got = 0;
    text[0] = '\0';
    weft_time give_up = weft_deadline(WEFT_MS(BECOME_LIMIT_MS));
    while (!strstr(text, "weft: dump-end")) {
        struct pollfd ready = {.fd = running->err, .events = POLLIN};
        int left = (int)((give_up - weft_now()) / WEFT_MS(1));
        ck_assert_msg(left > 0 && poll(&ready, 1, left) > 0, "no dump on stderr: %s", text);
        ssize_t count = read(running->err, text + got, size - 1 - got);
        ck_assert_msg(count > 0, "stderr ended before the dump: %s", text);
        got += (size_t)count;
        text[got] = '\0';
    }
}

/* Send the child bytes on stdin, read its stdout to the end, and wait
 * for it to exit 0 having said "continued". */
static void finish_child(const child *running, const char *bytes, char *output, size_t size) {
    ck_assert_int_eq(write(running->in, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
    size_t used = 0;
    ssize_t count;
    while ((count = read(running->out, output + used, size - 1 - used)) > 0) used += (size_t)count;
    output[used] = '\0';
    int status;
    ck_assert_int_eq(waitpid(running->pid, &status, 0), running->pid);
    close(running->in);
    close(running->out);
    close(running->err);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x: %s", status,
                  output);
    ck_assert_msg(strstr(output, "continued\n"), "the child did not go on: %s", output);
}

START_TEST(test_sigquit_with_weft_debug_dump_writes_dump_and_continues) {
    child running = start_child("sigquit");
    static char text[MAX_RECORDS * 512];
    read_dump(&running, text, sizeof text);
    char output[256];
    finish_child(&running, "x", output, sizeof output);
    pid_t pid = running.pid;

    /* The dump is the child's, and shows its goroutine. */
    char *line_start = strstr(text, "weft: dump-begin");
    ck_assert_ptr_nonnull(line_start);
    char channel[32] = "";
    ck_assert_int_eq(sscanf(output, "channel=%31s", channel), 1);
    record begin;
    const char *newline = strchr(line_start, '\n');
    parse_line(line_start, (size_t)(newline - line_start), &begin);
    ck_assert_int_eq(number(&begin, "pid"), pid);
    bool seen = false;
    for (const char *cursor = newline + 1; *cursor; cursor = strchr(cursor, '\n') + 1) {
        record r;
        parse_line(cursor, (size_t)(strchr(cursor, '\n') - cursor), &r);
        if (strcmp(r.type, "dump-end") == 0) break;
        if (strcmp(r.type, "goroutine") == 0 && field(&r, "object") &&
            strcmp(field(&r, "object"), channel) == 0)
            seen = strcmp(field(&r, "call"), "weft_chan_recv") == 0;
    }
    ck_assert_msg(seen, "the child's blocked goroutine is not in its dump: %s", text);
}
END_TEST

#if !defined(UNDER_TSAN) && !defined(UNDER_ASAN)
START_TEST(test_sigquit_in_forked_child_dumps_the_child) {
    child running = start_child("sigquit_fork");
    static char text[MAX_RECORDS * 512];
    read_dump(&running, text, sizeof text);
    char output[256];
    finish_child(&running, "xx", output, sizeof output);
    long forked = 0;
    ck_assert_int_eq(sscanf(output, "forked=%ld", &forked), 1);
    char *begin_line = strstr(text, "weft: dump-begin");
    ck_assert_ptr_nonnull(begin_line);
    record begin;
    parse_line(begin_line, (size_t)(strchr(begin_line, '\n') - begin_line), &begin);
    ck_assert_int_eq(number(&begin, "pid"), forked);
    ck_assert_ptr_null(
        strstr(strchr(begin_line, '\n'), "dump-begin")); /* the parent's stays quiet */
}
END_TEST
#endif

static Suite *debug_suite(void) {
    Suite *suite = suite_create("debug");
    TCase *kinds = new_case(suite, "blocked calls");
    tcase_add_loop_test(kinds, test_dump_shows_goroutine_blocked_in_each_kind_of_call, 0,
                        (int)(sizeof calls / sizeof calls[0]));
    TCase *threads = new_case(suite, "threads");
    tcase_add_test(threads, test_dump_shows_running_goroutine_as_running);
    tcase_add_test(threads, test_dump_shows_plain_thread_blocked_in_weft);
    tcase_add_test(threads, test_dump_percent_encodes_names);
    tcase_add_test(threads, test_dump_waited_time_grows);
    tcase_add_test(threads, test_dump_with_no_goroutines_has_only_its_frame);
    tcase_add_test(threads, test_dump_forgets_a_wait_once_it_is_over);
    tcase_add_test(threads, test_dump_while_goroutines_block_and_wake_parses);
    TCase *signal = new_case(suite, "sigquit");
    tcase_add_test(signal, test_sigquit_with_weft_debug_dump_writes_dump_and_continues);
#if !defined(UNDER_TSAN) && !defined(UNDER_ASAN)
    /* ThreadSanitizer refuses to start threads in the child of a
     * multi-threaded process, which the child's dump thread is; gcc 12's
     * ASan allocator is not fork-safe (test_fork.c), and the child's dump
     * thread can block in it. */
    tcase_add_test(signal, test_sigquit_in_forked_child_dumps_the_child);
#endif
    return suite;
}

int main(void) {
    const char *scenario = getenv("WEFT_TEST_SCENARIO");
    if (scenario && strcmp(scenario, "sigquit") == 0) return scenario_sigquit();
    if (scenario && strcmp(scenario, "sigquit_fork") == 0) return scenario_sigquit_fork();
    SRunner *runner = srunner_create(debug_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
