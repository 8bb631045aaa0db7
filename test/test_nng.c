/* The NNG bridges (weft/nng.h): the frame decoder alone, streams and jobs
 * over loopback only (inproc://, ipc:// in a temporary directory,
 * tcp://127.0.0.1:0 with the bound port read back), peers in other
 * processes killed with SIGKILL, cancellation and the fork story.
 *
 * Other processes are this program run again (/proc/self/exe) with a
 * role as its first argument, never a forked copy: NNG refuses to run in
 * a forked child. The runner's own process never touches NNG before Check
 * forks a test, for the same reason. Every wait is bounded. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "testutil.h"
#include "weft.h"
#include "weft/nng.h"
#include "nng/frame.h"

#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>

/* How long a bridge may take to finish once its work is done. */
#define FINISH WEFT_SEC(20)

/* ---- Helpers */

typedef struct {
    char dir[64];
    char url[128];
} ipc_place;

static void ipc_make(ipc_place *place, const char *name) {
    snprintf(place->dir, sizeof place->dir, "/tmp/weft-nng.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(place->dir));
    snprintf(place->url, sizeof place->url, "ipc://%s/%s", place->dir, name);
}

static void ipc_remove(ipc_place *place) {
    char command[256]; /* the directory and the socket files NNG leaves in it */
    snprintf(command, sizeof command, "rm -rf '%s'", place->dir);
    ck_assert_int_eq(system(command), 0);
}

static weft_nng_opts opts_for(const char *url, bool listen) {
    weft_nng_opts opts = {0};
    opts.url = url;
    opts.listen = listen;
    return opts;
}

static void self_path(char *path, size_t size) {
    ssize_t length = readlink("/proc/self/exe", path, size - 1);
    ck_assert_int_gt(length, 0);
    path[length] = '\0';
}

/* Start this program again as role with two arguments. */
static pid_t spawn(const char *role, const char *a, const char *b) {
    char self[PATH_MAX];
    self_path(self, sizeof self);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl(self, self, role, a, b, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void reap(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
}

/* A file of n uint64 counters shared with the processes this test starts. */
static _Atomic uint64_t *shared_counters(const char *path, size_t n) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)(n * sizeof(uint64_t))), 0);
    void *map = mmap(NULL, n * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    ck_assert_ptr_ne(map, MAP_FAILED);
    return map;
}

/* In a child role: the counters a test made with shared_counters at path,
 * all of them, or NULL (the child then exits with a code the test reports;
 * Check's asserts belong to the test process). */
static _Atomic uint64_t *open_shared_counters(const char *path) {
    int fd = open(path, O_RDWR);
    if (fd < 0) return NULL;
    struct stat st;
    void *map = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size > 0)
        map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return map == MAP_FAILED ? NULL : map;
}

/* ---- The frame decoder, alone */

static size_t make_frame(unsigned char *buf, int kind, uint32_t elem_size, const void *body,
                         uint32_t body_len) {
    weft__frame_header(buf, kind, weft__frame_host_order(), elem_size, body_len, 7, 1);
    if (body_len) memcpy(buf + FRAME_HEADER, body, body_len);
    return FRAME_HEADER + body_len;
}

START_TEST(test_frame_decoder_takes_what_it_wrote) {
    unsigned char buf[64];
    uint64_t value = 0x1122334455667788u;
    size_t len = make_frame(buf, FRAME_DATA, 8, &value, 8);
    frame_expect expect = {8, 8, false};
    frame f;
    ck_assert_int_eq(weft__frame_decode(buf, len, &expect, &f), FRAME_OK);
    ck_assert_int_eq(f.kind, FRAME_DATA);
    ck_assert_uint_eq(f.stream, 7);
    ck_assert_uint_eq(f.seq, 1);
    ck_assert_int_eq(memcmp(f.body, &value, 8), 0);
    len = make_frame(buf, FRAME_END, 8, NULL, 0);
    ck_assert_int_eq(weft__frame_decode(buf, len, &expect, &f), FRAME_OK);
    ck_assert_int_eq(f.kind, FRAME_END);
}
END_TEST

START_TEST(test_frame_decoder_rejects_each_bad_shape) {
    unsigned char buf[128];
    uint64_t value = 1;
    frame_expect expect = {8, 8, false};
    frame f;
    char words[200];
    size_t len = make_frame(buf, FRAME_DATA, 8, &value, 8);
    ck_assert_int_eq(weft__frame_decode(buf, 10, &expect, &f), FRAME_SHORT);
    ck_assert_int_eq(weft__frame_decode(buf, len - 1, &expect, &f), FRAME_TRUNCATED);
    ck_assert_int_eq(weft__frame_decode(buf, len + 1, &expect, &f), FRAME_TRAILING);
    buf[0] = 'W';
    ck_assert_int_eq(weft__frame_decode(buf, len, &expect, &f), FRAME_MAGIC);
    buf[0] = 'w';
    buf[4] = 2;
    ck_assert_int_eq(weft__frame_decode(buf, len, &expect, &f), FRAME_VERSION_MISMATCH);
    buf[4] = FRAME_VERSION;
    buf[5] = 9;
    ck_assert_int_eq(weft__frame_decode(buf, len, &expect, &f), FRAME_KIND);
    buf[5] = FRAME_DATA;
    buf[7] = 0x80;
    ck_assert_int_eq(weft__frame_decode(buf, len, &expect, &f), FRAME_FLAGS);
    buf[7] = 0;
    buf[6] ^= FRAME_BIG_ENDIAN;
    ck_assert_int_eq(weft__frame_decode(buf, len, &expect, &f), FRAME_ORDER_MISMATCH);
    buf[6] ^= FRAME_BIG_ENDIAN;
    buf[6] |= FRAME_ENCODED;
    ck_assert_int_eq(weft__frame_decode(buf, len, &expect, &f), FRAME_CODEC_MISMATCH);
    buf[6] &= (unsigned char)~FRAME_ENCODED;
    unsigned char big[24] = {0};
    len = make_frame(buf, FRAME_DATA, 8, big, 24);
    ck_assert_int_eq(weft__frame_decode(buf, len, &expect, &f), FRAME_OVERSIZED);
    len = make_frame(buf, FRAME_DATA, 16, big, 8);
    ck_assert_int_eq(weft__frame_decode(buf, len, &expect, &f), FRAME_SIZE_MISMATCH);
    weft__frame_describe(FRAME_SIZE_MISMATCH, &f, &expect, words, sizeof words);
    ck_assert_msg(strstr(words, "element size mismatch") && strstr(words, "16") &&
                      strstr(words, "8"),
                  "%s", words);
    len = make_frame(buf, FRAME_END, 8, big, 4);
    ck_assert_int_eq(weft__frame_decode(buf, len, &expect, &f), FRAME_BAD_BODY);
    /* An announced length far beyond the bytes: no read outside them. */
    len = make_frame(buf, FRAME_DATA, 8, &value, 8);
    buf[15] = 0xff;
    ck_assert_int_eq(weft__frame_decode(buf, len, &expect, &f), FRAME_OVERSIZED);
}
END_TEST

/* ---- Streams */

typedef struct {
    weft_chan *ch;
    long count;
    uint64_t base;
} producer_arg;

static void *produce(void *arg) {
    producer_arg *p = arg;
    for (long i = 0; i < p->count; i++) {
        uint64_t v = p->base + (uint64_t)i;
        WORKER_EXPECT(weft_chan_send_until(p->ch, &v, weft_deadline(WEFT_SEC(20))) == 0);
    }
    weft_chan_close(p->ch);
    return NULL;
}

/* Receive from ch until closed (bounded): check per-sender order (the
 * sender is value >> 32) and count. */
static long consume_in_order(weft_chan *ch, int senders, long *per_sender) {
    uint64_t next[8] = {0};
    long total = 0;
    uint64_t v;
    weft_time give_up = weft_deadline(WEFT_SEC(100));
    for (;;) {
        int rc = weft_chan_recv_until(ch, &v, give_up);
        if (rc == WEFT_ECLOSED) break;
        ck_assert_int_eq(rc, 0);
        unsigned s = (unsigned)(v >> 32);
        ck_assert_int_lt(s, senders);
        ck_assert_msg((v & 0xffffffffu) == next[s], "sender %u: got %llu, expected %llu", s,
                      (unsigned long long)(v & 0xffffffffu), (unsigned long long)next[s]);
        next[s]++;
        total++;
    }
    for (int s = 0; s < senders; s++) per_sender[s] = (long)next[s];
    return total;
}

/* n senders into one receiver at url (the receiver listens), each sending
 * count values; the receiver is told `expect_senders` (0: dynamic). */
static void stream_run(const char *url, int n, long count, int expect_senders) {
    weft_chan *to = weft_chan_make(sizeof(uint64_t), 64);
    weft_nng_opts ropts = opts_for(url, true);
    ropts.senders = expect_senders;
    weft_nng_bridge *rb = weft_nng_stream_recv(to, &ropts, NULL);
    ck_assert_msg(rb != NULL, "%s", weft_nng_last_error());
    char bound[128];
    ck_assert_int_eq(weft_nng_url(rb, bound, sizeof bound), 0);
    if (strncmp(url, "tcp://", 6) == 0) ck_assert_msg(strstr(bound, ":0") == NULL, "%s", bound);

    weft_nng_bridge *sb[8];
    producer_arg pa[8];
    pthread_t threads[8];
    for (int i = 0; i < n; i++) {
        pa[i] = (producer_arg){weft_chan_make(sizeof(uint64_t), 64), count, (uint64_t)i << 32};
        weft_nng_opts sopts = opts_for(bound, false);
        sb[i] = weft_nng_stream_send(pa[i].ch, &sopts, NULL);
        ck_assert_msg(sb[i] != NULL, "%s", weft_nng_last_error());
        start_thread(&threads[i], produce, &pa[i]);
    }
    long per_sender[8];
    long total = consume_in_order(to, n, per_sender);
    for (int i = 0; i < n; i++) join_thread(threads[i]);
    check_worker_failures();
    for (int i = 0; i < n; i++) ck_assert_int_eq(per_sender[i], count);
    ck_assert_int_eq(total, n * count);
    ck_assert_msg(weft_nng_wait(rb, weft_deadline(FINISH)) == 0, "%s", weft_nng_text(rb));
    weft_nng_stats stats;
    weft_nng_get_stats(rb, &stats);
    ck_assert_uint_eq(stats.values, (uint64_t)(n * count));
    ck_assert_uint_eq(stats.ended, (uint64_t)n);
    ck_assert_uint_eq(stats.rejected, 0);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(weft_nng_wait(sb[i], weft_deadline(FINISH)) == 0, "%s", weft_nng_text(sb[i]));
        weft_nng_get_stats(sb[i], &stats);
        ck_assert_uint_eq(stats.values, (uint64_t)count);
        weft_nng_release(sb[i]);
        weft_chan_release(pa[i].ch);
    }
    weft_nng_release(rb);
    weft_chan_release(to);
}

START_TEST(test_stream_inproc_delivers_each_value_once_in_order) {
    stream_run("inproc://weft-once", 1, scaled(50000), 1);
}
END_TEST

START_TEST(test_stream_ipc_three_senders_end_the_stream) {
    ipc_place place;
    ipc_make(&place, "three");
    stream_run(place.url, 3, scaled(20000), 3);
    ipc_remove(&place);
}
END_TEST

START_TEST(test_stream_tcp_port_zero_one_sender_ends_dynamic_receiver) {
    stream_run("tcp://127.0.0.1:0", 1, scaled(20000), 0);
}
END_TEST

START_TEST(test_stream_three_senders_dynamic_receiver_waits_for_all) {
    stream_run("inproc://weft-three-dynamic", 3, scaled(10000), 0);
}
END_TEST

/* A receiver that does not read: the producer stalls with at most the
 * window in flight (both channels, NNG's buffers, the bridges' hands). */
START_TEST(test_stream_slow_receiver_bounds_what_is_in_flight) {
    enum { CAP = 16, BUFFER = 8 };
    weft_chan *to = weft_chan_make(sizeof(uint64_t), CAP);
    weft_chan *from = weft_chan_make(sizeof(uint64_t), CAP);
    weft_nng_opts ropts = opts_for("inproc://weft-slow", true);
    ropts.buffer = BUFFER;
    weft_nng_bridge *rb = weft_nng_stream_recv(to, &ropts, NULL);
    ck_assert_ptr_nonnull(rb);
    weft_nng_opts sopts = opts_for("inproc://weft-slow", false);
    sopts.buffer = BUFFER;
    weft_nng_bridge *sb = weft_nng_stream_send(from, &sopts, NULL);
    ck_assert_ptr_nonnull(sb);
    long sent = 0;
    for (; sent < 100000; sent++) {
        uint64_t v = (uint64_t)sent;
        if (weft_chan_send_until(from, &v, weft_deadline(WEFT_MS(300))) != 0) break;
    }
    long window = 2 * CAP + 2 * BUFFER + 8; /* + a message in each hand and in NNG's pipes */
    printf("nng: slow receiver: the producer stalled after %ld values (window bound %ld)\n", sent,
           window);
    ck_assert_int_lt(sent, window);
    /* Reading resumes the flow: everything sent arrives. */
    weft_chan_close(from);
    long per_sender[1];
    ck_assert_int_eq(consume_in_order(to, 1, per_sender), sent);
    ck_assert_int_eq(weft_nng_wait(rb, weft_deadline(FINISH)), 0);
    ck_assert_int_eq(weft_nng_wait(sb, weft_deadline(FINISH)), 0);
    weft_nng_release(sb);
    weft_nng_release(rb);
    weft_chan_release(from);
    weft_chan_release(to);
}
END_TEST

START_TEST(test_stream_size_mismatch_is_an_error_at_both_ends) {
    weft_chan *to = weft_chan_make(sizeof(uint64_t), 4);
    weft_chan *from = weft_chan_make(16, 4);
    weft_nng_opts ropts = opts_for("inproc://weft-mismatch", true);
    weft_nng_bridge *rb = weft_nng_stream_recv(to, &ropts, NULL);
    weft_nng_opts sopts = opts_for("inproc://weft-mismatch", false);
    weft_nng_bridge *sb = weft_nng_stream_send(from, &sopts, NULL);
    ck_assert_ptr_nonnull(rb);
    ck_assert_ptr_nonnull(sb);
    char value[16] = {1};
    ck_assert_int_eq(weft_chan_send(from, value), 0);
    ck_assert_int_eq(weft_nng_wait(rb, weft_deadline(FINISH)), WEFT_NNG_EPROTO);
    ck_assert_msg(strstr(weft_nng_text(rb),
                         "element size mismatch: the peer's values are 16 bytes, "
                         "this end's 8"),
                  "%s", weft_nng_text(rb));
    uint64_t got;
    ck_assert_int_eq(weft_chan_recv_until(to, &got, weft_deadline(FINISH)), WEFT_ECLOSED);
    ck_assert_int_eq(weft_nng_wait(sb, weft_deadline(FINISH)), WEFT_NNG_ECONNRESET);
    ck_assert_msg(strstr(weft_nng_text(sb), "rejected"), "%s", weft_nng_text(sb));
    weft_nng_release(sb);
    weft_nng_release(rb);
    weft_chan_release(from);
    weft_chan_release(to);
}
END_TEST

/* Garbage from a raw PUSH socket is counted and rejected; the stream of a
 * real sender is unaffected. */
START_TEST(test_stream_garbled_frames_are_counted_and_rejected) {
    weft_chan *to = weft_chan_make(sizeof(uint64_t), 16);
    weft_nng_opts ropts = opts_for("inproc://weft-garbled", true);
    ropts.senders = 1;
    weft_nng_bridge *rb = weft_nng_stream_recv(to, &ropts, NULL);
    ck_assert_ptr_nonnull(rb);
    unsigned char good[64];
    uint64_t value = 5;
    size_t good_len = make_frame(good, FRAME_DATA, 8, &value, 8);
    struct {
        const void *bytes;
        size_t len;
    } junk[] = {{"hi", 2},
                {"GET / HTTP/1.1\r\nHost: x\r\n\r\nxxxxxxxxxxxxxxxxxxxx", 46},
                {good, good_len - 3},
                {good, FRAME_HEADER}};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        nng_socket raw;
        ck_assert_int_eq(nng_push0_open(&raw), 0);
        ck_assert_int_eq(nng_dial(raw, "inproc://weft-garbled", NULL, 0), 0);
        ck_assert_int_eq(nng_send(raw, (void *)junk[i].bytes, junk[i].len, 0), 0);
        weft_nng_stats stats;
        weft_time give_up = weft_deadline(WEFT_SEC(10));
        do {
            sleep_ms(1);
            weft_nng_get_stats(rb, &stats);
        } while (stats.rejected < i + 1 && weft_now() < give_up);
        ck_assert_uint_eq(stats.rejected, i + 1);
        nng_close(raw);
    }
    ck_assert_msg(strstr(weft_nng_text(rb), "rejected"), "%s", weft_nng_text(rb));
    ck_assert_int_eq(weft_nng_err(rb), 0);
    weft_chan *from = weft_chan_make(sizeof(uint64_t), 16);
    weft_nng_opts sopts = opts_for("inproc://weft-garbled", false);
    weft_nng_bridge *sb = weft_nng_stream_send(from, &sopts, NULL);
    producer_arg pa = {from, 100, 0};
    pthread_t thread;
    start_thread(&thread, produce, &pa);
    long per_sender[1];
    ck_assert_int_eq(consume_in_order(to, 1, per_sender), 100);
    join_thread(thread);
    ck_assert_msg(weft_nng_wait(rb, weft_deadline(FINISH)) == 0, "%s", weft_nng_text(rb));
    ck_assert_int_eq(weft_nng_wait(sb, weft_deadline(FINISH)), 0);
    weft_nng_release(sb);
    weft_nng_release(rb);
    weft_chan_release(from);
    weft_chan_release(to);
}
END_TEST

/* A codec carries values that hold pointers. */
typedef struct {
    char *text;
} note;

static long note_encode(const void *elem, void *buf, size_t cap, void *arg) {
    (void)arg;
    const note *n = elem;
    size_t len = strlen(n->text);
    if (len > cap) return -1;
    memcpy(buf, n->text, len);
    return (long)len;
}

static int note_decode(const void *buf, size_t len, void *elem, void *arg) {
    (void)arg;
    note *n = elem;
    n->text = malloc(len + 1);
    if (!n->text) return -1;
    memcpy(n->text, buf, len);
    n->text[len] = '\0';
    return 0;
}

START_TEST(test_stream_codec_carries_values_with_pointers) {
    weft_nng_codec codec = {note_encode, note_decode, NULL, 64};
    weft_chan *to = weft_chan_make(sizeof(note), 4);
    weft_chan *from = weft_chan_make(sizeof(note), 4);
    weft_nng_opts ropts = opts_for("inproc://weft-codec", true);
    ropts.codec = &codec;
    weft_nng_bridge *rb = weft_nng_stream_recv(to, &ropts, NULL);
    weft_nng_opts sopts = opts_for("inproc://weft-codec", false);
    sopts.codec = &codec;
    weft_nng_bridge *sb = weft_nng_stream_send(from, &sopts, NULL);
    ck_assert_ptr_nonnull(rb);
    ck_assert_ptr_nonnull(sb);
    static char words[3][8] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++) {
        note n = {words[i]};
        ck_assert_int_eq(weft_chan_send(from, &n), 0);
    }
    weft_chan_close(from);
    for (int i = 0; i < 3; i++) {
        note n;
        ck_assert_int_eq(weft_chan_recv_until(to, &n, weft_deadline(FINISH)), 0);
        ck_assert_str_eq(n.text, words[i]);
        ck_assert_ptr_ne(n.text, words[i]);
        free(n.text);
    }
    ck_assert_int_eq(weft_nng_wait(rb, weft_deadline(FINISH)), 0);
    weft_nng_release(sb);
    weft_nng_release(rb);
    weft_chan_release(from);
    weft_chan_release(to);
}
END_TEST

/* The sender role (another process): stream 0, 1, 2, ... to argv[2],
 * counting in the shared file argv[3] each value handed to the bridge. */
static int run_sender(const char *url, const char *counter_file) {
    _Atomic uint64_t *handed = open_shared_counters(counter_file);
    if (!handed) return 2;
    weft_chan *from = weft_chan_make(sizeof(uint64_t), 16);
    weft_nng_opts opts = opts_for(url, false);
    weft_nng_bridge *b = weft_nng_stream_send(from, &opts, NULL);
    if (!b) return 3;
    for (uint64_t v = 0;; v++) {
        if (weft_chan_send(from, &v) != 0) return 4;
        atomic_store(handed, v + 1);
    }
}

static long socket_buffer_bytes(void) {
    long total = 0;
    const char *files[] = {"/proc/sys/net/core/wmem_max", "/proc/sys/net/core/rmem_max"};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "r");
        long v = 1 << 20;
        if (f) {
            if (fscanf(f, "%ld", &v) != 1) v = 1 << 20;
            fclose(f);
        }
        total += 2 * v; /* the kernel doubles what it is given */
    }
    return total;
}

START_TEST(test_stream_sender_killed_mid_stream_is_an_error_losing_at_most_the_window) {
    ipc_place place;
    ipc_make(&place, "killed");
    char counter_file[128];
    snprintf(counter_file, sizeof counter_file, "%s/handed", place.dir);
    _Atomic uint64_t *handed = shared_counters(counter_file, 1);
    weft_chan *to = weft_chan_make(sizeof(uint64_t), 16);
    weft_nng_opts ropts = opts_for(place.url, true);
    ropts.senders = 1;
    weft_nng_bridge *rb = weft_nng_stream_recv(to, &ropts, NULL);
    ck_assert_ptr_nonnull(rb);
    pid_t child = spawn("--nng-sender", place.url, counter_file);
    uint64_t expect = 0, v;
    weft_time give_up = weft_deadline(WEFT_SEC(60));
    int rc;
    while ((rc = weft_chan_recv_until(to, &v, give_up)) == 0) {
        ck_assert_uint_eq(v, expect); /* no gap: nothing lost while it lives */
        expect++;
        if (expect == 2000) kill(child, SIGKILL);
    }
    ck_assert_int_eq(rc, WEFT_ECLOSED);
    reap(child);
    ck_assert_int_eq(weft_nng_wait(rb, weft_deadline(FINISH)), WEFT_NNG_ECONNRESET);
    ck_assert_msg(strstr(weft_nng_text(rb), "went away without ending its stream"), "%s",
                  weft_nng_text(rb));
    weft_nng_stats stats;
    weft_nng_get_stats(rb, &stats);
    ck_assert_uint_eq(stats.lost, 1);
    long lost = (long)(atomic_load(handed) - expect);
    long window = 16 + 1 + 16 + socket_buffer_bytes() / (FRAME_HEADER + 8);
    printf("nng: sender killed: %llu values received, %ld lost (window bound %ld)\n",
           (unsigned long long)expect, lost, window);
    ck_assert_int_ge(lost, 0);
    ck_assert_int_le(lost, window);
    weft_nng_release(rb);
    weft_chan_release(to);
    munmap((void *)handed, sizeof(uint64_t));
    ipc_remove(&place);
}
END_TEST

/* ---- Jobs */

typedef struct {
    uint32_t id;
    uint32_t pad;
    uint64_t input;
} job;

typedef struct {
    uint32_t id;
    int32_t worker;
    uint64_t output;
} result;

static _Atomic uint64_t *executions; /* a worker process's shared counters, by job id */

static void square(const void *in, void *out, void *arg) {
    (void)arg;
    const job *j = in;
    result *r = out;
    r->id = j->id;
    r->worker = (int32_t)getpid();
    r->output = j->input * j->input;
    if (executions) atomic_fetch_add(&executions[j->id], 1);
    if (executions) sleep_ms(1);
}

static void *feed_jobs(void *arg) {
    producer_arg *p = arg;
    for (long i = 0; i < p->count; i++) {
        job j = {(uint32_t)i, 0, (uint64_t)i + 1};
        WORKER_EXPECT(weft_chan_send_until(p->ch, &j, weft_deadline(WEFT_SEC(60))) == 0);
    }
    weft_chan_close(p->ch);
    return NULL;
}

START_TEST(test_jobs_inproc_every_job_gets_its_result) {
    long count = scaled(2000);
    weft_nng_opts wopts = opts_for("inproc://weft-jobs", true);
    wopts.workers = 4;
    weft_nng_bridge *serve =
        weft_nng_serve(sizeof(job), sizeof(result), square, NULL, &wopts, NULL);
    ck_assert_msg(serve != NULL, "%s", weft_nng_last_error());
    weft_chan *jobs = weft_chan_make(sizeof(job), 16);
    weft_chan *results = weft_chan_make(sizeof(result), 16);
    weft_nng_opts jopts = opts_for("inproc://weft-jobs", false);
    jopts.workers = 8;
    weft_nng_bridge *jb = weft_nng_jobs(jobs, results, &jopts, NULL);
    ck_assert_ptr_nonnull(jb);
    producer_arg pa = {jobs, count, 0};
    pthread_t thread;
    start_thread(&thread, feed_jobs, &pa);
    unsigned char *seen = calloc((size_t)count, 1);
    result r;
    long got = 0;
    while (weft_chan_recv_until(results, &r, weft_deadline(WEFT_SEC(60))) == 0) {
        ck_assert_uint_lt(r.id, count);
        ck_assert_uint_eq(r.output, ((uint64_t)r.id + 1) * ((uint64_t)r.id + 1));
        seen[r.id]++;
        got++;
    }
    join_thread(thread);
    check_worker_failures();
    ck_assert_int_eq(got, count);
    for (long i = 0; i < count; i++) ck_assert_int_eq(seen[i], 1);
    free(seen);
    ck_assert_msg(weft_nng_wait(jb, weft_deadline(FINISH)) == 0, "%s", weft_nng_text(jb));
    weft_nng_release(jb);
    weft_nng_release(serve);
    weft_chan_release(jobs);
    weft_chan_release(results);
}
END_TEST

START_TEST(test_jobs_size_mismatch_is_an_error_at_both_ends) {
    weft_nng_opts wopts = opts_for("inproc://weft-jobs-mismatch", true);
    weft_nng_bridge *serve = weft_nng_serve(8, sizeof(result), square, NULL, &wopts, NULL);
    ck_assert_ptr_nonnull(serve);
    weft_chan *jobs = weft_chan_make(sizeof(job), 1);
    weft_chan *results = weft_chan_make(sizeof(result), 1);
    weft_nng_opts jopts = opts_for("inproc://weft-jobs-mismatch", false);
    weft_nng_bridge *jb = weft_nng_jobs(jobs, results, &jopts, NULL);
    job j = {1, 0, 2};
    ck_assert_int_eq(weft_chan_send(jobs, &j), 0);
    ck_assert_int_eq(weft_nng_wait(jb, weft_deadline(FINISH)), WEFT_NNG_EPROTO);
    ck_assert_msg(strstr(weft_nng_text(jb), "refused a job: element size mismatch: the peer's "
                                            "values are 16 bytes, this end's 8"),
                  "%s", weft_nng_text(jb));
    weft_nng_stats stats;
    weft_nng_get_stats(serve, &stats);
    ck_assert_uint_eq(stats.rejected, 1);
    ck_assert_msg(strstr(weft_nng_text(serve), "element size mismatch"), "%s",
                  weft_nng_text(serve));
    weft_nng_release(jb);
    weft_nng_release(serve);
    weft_chan_release(jobs);
    weft_chan_release(results);
}
END_TEST

/* The worker role (another process): serve argv[2], counting executions
 * in the shared file argv[3]. Runs until killed. */
static int run_worker(const char *url, const char *counter_file) {
    executions = open_shared_counters(counter_file);
    if (!executions) return 2;
    weft_nng_opts opts = opts_for(url, false);
    opts.workers = 2;
    weft_nng_bridge *b = weft_nng_serve(sizeof(job), sizeof(result), square, NULL, &opts, NULL);
    if (!b) return 3;
    weft_nng_wait(b, WEFT_FOREVER);
    return 4;
}

START_TEST(test_jobs_three_worker_processes_one_killed_every_job_has_a_result) {
    enum { WORKERS = 3 };
    long count = 600;
    ipc_place place;
    ipc_make(&place, "jobs");
    char counter_file[128];
    snprintf(counter_file, sizeof counter_file, "%s/executions", place.dir);
    _Atomic uint64_t *runs = shared_counters(counter_file, (size_t)count);
    weft_chan *jobs = weft_chan_make(sizeof(job), 16);
    weft_chan *results = weft_chan_make(sizeof(result), 16);
    weft_nng_opts jopts = opts_for(place.url, true);
    jopts.workers = 6;
    jopts.resend = WEFT_MS(500);
    weft_nng_bridge *jb = weft_nng_jobs(jobs, results, &jopts, NULL);
    ck_assert_msg(jb != NULL, "%s", weft_nng_last_error());
    pid_t workers[WORKERS];
    for (int i = 0; i < WORKERS; i++) workers[i] = spawn("--nng-worker", place.url, counter_file);
    producer_arg pa = {jobs, count, 0};
    pthread_t thread;
    start_thread(&thread, feed_jobs, &pa);
    unsigned char *seen = calloc((size_t)count, 1);
    result r;
    long got = 0, by_killed = 0;
    while (weft_chan_recv_until(results, &r, weft_deadline(WEFT_SEC(60))) == 0) {
        ck_assert_uint_lt(r.id, count);
        ck_assert_uint_eq(r.output, ((uint64_t)r.id + 1) * ((uint64_t)r.id + 1));
        seen[r.id]++;
        got++;
        if (r.worker == workers[0]) by_killed++;
        if (got == count / 4) kill(workers[0], SIGKILL);
    }
    join_thread(thread);
    check_worker_failures();
    uint64_t executed = 0;
    for (long i = 0; i < count; i++) {
        ck_assert_msg(seen[i] == 1, "job %ld: %d results", i, seen[i]);
        ck_assert_uint_ge(atomic_load(&runs[i]), 1);
        executed += atomic_load(&runs[i]);
    }
    printf("nng: jobs: %ld jobs, %ld results (%ld from the killed worker), %llu executions, "
           "%llu duplicates\n",
           count, got, by_killed, (unsigned long long)executed,
           (unsigned long long)(executed - (uint64_t)count));
    ck_assert_int_eq(got, count);
    ck_assert_msg(weft_nng_wait(jb, weft_deadline(FINISH)) == 0, "%s", weft_nng_text(jb));
    for (int i = 0; i < WORKERS; i++) {
        if (i) kill(workers[i], SIGKILL);
        reap(workers[i]);
    }
    free(seen);
    weft_nng_release(jb);
    weft_chan_release(jobs);
    weft_chan_release(results);
    munmap((void *)runs, (size_t)count * sizeof(uint64_t));
    ipc_remove(&place);
}
END_TEST

/* The example spans processes: a producer and three workers it starts. */
START_TEST(test_distributed_pool_example_gives_every_job_one_result) {
    char program[PATH_MAX], command[PATH_MAX + 32], output[4096] = "";
    built_program_path("build/release/examples/distributed_pool", program, sizeof program);
    snprintf(command, sizeof command, "%s 3 300 2>/dev/null", program);
    FILE *out = popen(command, "r");
    ck_assert_ptr_nonnull(out);
    size_t length = fread(output, 1, sizeof output - 1, out);
    output[length] = '\0';
    int status = pclose(out);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit %d: %s", status, output);
    ck_assert_msg(strstr(output, "300 results for 300 jobs (0 missing, 0 twice)"), "%s", output);
}
END_TEST

/* ---- Lifetimes */

START_TEST(test_cancel_stops_every_bridge_promptly) {
    weft_ctx *ctx = weft_ctx_with_cancel(NULL);
    weft_chan *a = weft_chan_make(sizeof(uint64_t), 1);
    weft_chan *b = weft_chan_make(sizeof(uint64_t), 1);
    weft_chan *c = weft_chan_make(sizeof(job), 1);
    weft_chan *d = weft_chan_make(sizeof(result), 1);
    weft_nng_opts o1 = opts_for("inproc://weft-nobody", false);
    weft_nng_opts o2 = opts_for("tcp://127.0.0.1:0", true);
    weft_nng_opts o3 = opts_for("inproc://weft-noworker", false);
    weft_nng_opts o4 = opts_for("inproc://weft-nojobs", true);
    weft_nng_bridge *bridges[5] = {
        weft_nng_stream_send(a, &o1, ctx), weft_nng_stream_recv(b, &o2, ctx),
        weft_nng_jobs(c, d, &o3, ctx),
        weft_nng_serve(sizeof(job), sizeof(result), square, NULL, &o4, ctx), NULL};
    weft_chan *e = weft_chan_make(sizeof(uint64_t), 1);
    weft_nng_opts o5 = opts_for("inproc://weft-blocked", false);
    bridges[4] = weft_nng_stream_send(e, &o5, ctx);
    uint64_t v = 1;
    ck_assert_int_eq(weft_chan_send(e, &v), 0); /* this one blocks in NNG's send */
    ck_assert_int_eq(weft_chan_send(a, &v), 0);
    job j = {0, 0, 1};
    ck_assert_int_eq(weft_chan_send(c, &j), 0); /* this one waits for a worker */
    for (int i = 0; i < 5; i++) {
        ck_assert_ptr_nonnull(bridges[i]);
        ck_assert_int_eq(weft_nng_wait(bridges[i], weft_deadline(WEFT_MS(50))), WEFT_EAGAIN);
    }
    weft_time start = weft_now();
    weft_ctx_cancel(ctx);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(weft_nng_wait(bridges[i], weft_deadline(WEFT_SEC(10))), WEFT_ECANCELED);
    printf("nng: cancel stopped 5 bridges in %.1f ms\n", (double)(weft_now() - start) / 1e6);
    ck_assert_int_eq(weft_chan_recv_until(b, &v, weft_deadline(WEFT_SEC(1))), WEFT_ECLOSED);
    for (int i = 0; i < 5; i++) weft_nng_release(bridges[i]);
    weft_ctx_release(ctx);
    weft_chan_release(a);
    weft_chan_release(b);
    weft_chan_release(c);
    weft_chan_release(d);
    weft_chan_release(e);
}
END_TEST

START_TEST(test_release_stops_a_running_bridge) {
    weft_chan *to = weft_chan_make(sizeof(uint64_t), 1);
    weft_nng_opts opts = opts_for("inproc://weft-release", true);
    weft_nng_bridge *b = weft_nng_stream_recv(to, &opts, NULL);
    ck_assert_ptr_nonnull(b);
    weft_nng_release(b); /* blocked in a receive: stopped, waited for, freed */
    weft_chan_release(to);
}
END_TEST

START_TEST(test_bad_arguments_return_null_with_a_reason) {
    weft_chan *ch = weft_chan_make(8, 1);
    weft_nng_opts none = {0};
    errno = 0;
    ck_assert_ptr_null(weft_nng_stream_send(ch, &none, NULL));
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_null(weft_nng_stream_recv(NULL, &none, NULL));
    ck_assert_int_eq(errno, EINVAL);
    weft_nng_opts bad = opts_for("nonsense://x", false);
    ck_assert_ptr_null(weft_nng_stream_send(ch, &bad, NULL));
    ck_assert_int_eq(errno, EIO);
    ck_assert_msg(strstr(weft_nng_last_error(), "nonsense://x"), "%s", weft_nng_last_error());
    weft_nng_opts taken = opts_for("inproc://weft-taken", true);
    weft_nng_bridge *first = weft_nng_stream_recv(ch, &taken, NULL);
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_null(weft_nng_stream_recv(ch, &taken, NULL));
    ck_assert_msg(strstr(weft_nng_last_error(), "cannot listen on inproc://weft-taken"), "%s",
                  weft_nng_last_error());
    weft_nng_release(first);
    weft_chan_release(ch);
}
END_TEST

/* NNG marks a forked child as unusable for itself; weft's own fork
 * handling must still give the child working goroutines and channels. */
static void bounce(void *arg) {
    int one = 1;
    weft_chan_send(arg, &one);
}

START_TEST(test_fork_after_bridges_leaves_weft_working_in_the_child) {
#if defined(UNDER_TSAN) || defined(UNDER_ASAN)
    /* ThreadSanitizer cannot follow a fork of a threaded process; gcc 12's
     * ASan allocator is not fork-safe (an NNG thread inside it at the fork
     * leaves its lock held for the child's new goroutine: test_fork.c). */
    return;
#endif
    /* Under valgrind (the WEFT_TEST_SCALE run), whose threads NNG's child
     * inherits mid-lock, the child aborts in NNG: CI runs test_fork.c
     * outside valgrind for the same reason. */
    if (test_scale() > 1) return;
    weft_chan *to = weft_chan_make(sizeof(uint64_t), 1);
    weft_nng_opts opts = opts_for("inproc://weft-fork", true);
    weft_nng_bridge *b = weft_nng_stream_recv(to, &opts, NULL);
    ck_assert_ptr_nonnull(b);
    fflush(NULL);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        alarm(20);
        weft_chan *ch = weft_chan_make(sizeof(int), 0);
        int v = 0;
        if (!ch || weft_go(bounce, ch) != 0) _exit(1);
        int rc = weft_chan_recv_until(ch, &v, weft_deadline(WEFT_SEC(5)));
        if (rc != 0) _exit(10 - rc);
        if (v != 1) _exit(3);
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d (exit %d)",
                  status, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    weft_nng_release(b);
    weft_chan_release(to);
}
END_TEST

/* NNG_TEST=name runs only the test of that name (while working on one). */
#define add_test(tc, fn)                                               \
    do {                                                               \
        const char *only_ = getenv("NNG_TEST");                        \
        if (!only_ || strcmp(only_, #fn) == 0) tcase_add_test(tc, fn); \
    } while (0)

static Suite *nng_suite(void) {
    Suite *suite = suite_create("nng");
    TCase *frames = new_case(suite, "frames");
    add_test(frames, test_frame_decoder_takes_what_it_wrote);
    add_test(frames, test_frame_decoder_rejects_each_bad_shape);
    TCase *streams = new_case(suite, "streams");
    add_test(streams, test_stream_inproc_delivers_each_value_once_in_order);
    add_test(streams, test_stream_ipc_three_senders_end_the_stream);
    add_test(streams, test_stream_tcp_port_zero_one_sender_ends_dynamic_receiver);
    add_test(streams, test_stream_three_senders_dynamic_receiver_waits_for_all);
    add_test(streams, test_stream_slow_receiver_bounds_what_is_in_flight);
    add_test(streams, test_stream_size_mismatch_is_an_error_at_both_ends);
    add_test(streams, test_stream_garbled_frames_are_counted_and_rejected);
    add_test(streams, test_stream_codec_carries_values_with_pointers);
    add_test(streams, test_stream_sender_killed_mid_stream_is_an_error_losing_at_most_the_window);
    TCase *jobs = new_case(suite, "jobs");
    add_test(jobs, test_jobs_inproc_every_job_gets_its_result);
    add_test(jobs, test_jobs_size_mismatch_is_an_error_at_both_ends);
    add_test(jobs, test_jobs_three_worker_processes_one_killed_every_job_has_a_result);
    add_test(jobs, test_distributed_pool_example_gives_every_job_one_result);
    TCase *lifetimes = new_case(suite, "lifetimes");
    add_test(lifetimes, test_cancel_stops_every_bridge_promptly);
    add_test(lifetimes, test_release_stops_a_running_bridge);
    add_test(lifetimes, test_bad_arguments_return_null_with_a_reason);
    add_test(lifetimes, test_fork_after_bridges_leaves_weft_working_in_the_child);
    return suite;
}

int main(int argc, char **argv) {
    /* NNG frees a closed socket's dialers and pipes on its reaper thread
     * after nng_close returns; nng_fini drains that at exit, before
     * LeakSanitizer looks, as NNG recommends for memory checkers. */
    atexit(nng_fini);
    if (argc == 4 && strcmp(argv[1], "--nng-sender") == 0) return run_sender(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "--nng-worker") == 0) return run_worker(argv[2], argv[3]);
    SRunner *runner = srunner_create(nng_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
