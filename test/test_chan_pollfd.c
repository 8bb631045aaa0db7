/* weft_chan_pollfd: the fd polls readable while a try operation in its
 * direction could succeed, and for good after close; a WEFT_EAGAIN clears
 * it; no readiness is lost when producers race the loop's drain; one
 * eventfd write per not-ready-to-ready change; the fd goes with the
 * channel; a forked child never wakes the parent's loop. */
#include <dirent.h>
#include <poll.h>

#include "chan_poll.h"
#include "testutil.h"
#include "weft.h"

enum { PRODUCERS = 8 };

/* A poll longer than this without readiness, with values outstanding, is
 * a lost wake-up. */
#define LOST_MS 10000

static bool readable(int fd, int timeout_ms) {
    struct pollfd entry = {.fd = fd, .events = POLLIN};
    int ready;
    while ((ready = poll(&entry, 1, timeout_ms)) < 0 && errno == EINTR) continue;
    return ready == 1 && (entry.revents & POLLIN);
}

static int open_fds(void) {
    DIR *directory = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(directory);
    int count = 0;
    while (readdir(directory)) count++;
    closedir(directory);
    return count;
}

static weft_chan *make_chan(size_t cap) {
    weft_chan *channel = cap == WEFT_UNBOUNDED ? weft_chan_make_unbounded(sizeof(long))
                                               : weft_chan_make(sizeof(long), cap);
    ck_assert_ptr_nonnull(channel);
    return channel;
}

START_TEST(test_pollfd_refuses_a_bad_direction_and_null) {
    weft_chan *channel = make_chan(1);
    ck_assert_int_eq(weft_chan_pollfd(channel, 0), WEFT_EINVAL);
    ck_assert_int_eq(weft_chan_pollfd(channel, WEFT_FD), WEFT_EINVAL);
    ck_assert_int_eq(weft_chan_pollfd(NULL, WEFT_RECV), WEFT_EINVAL);
    weft_chan_release(channel);
}
END_TEST

START_TEST(test_pollfd_is_one_fd_per_direction) {
    weft_chan *channel = make_chan(1);
    int recv_fd = weft_chan_pollfd(channel, WEFT_RECV);
    int send_fd = weft_chan_pollfd(channel, WEFT_SEND);
    ck_assert_int_ge(recv_fd, 0);
    ck_assert_int_ge(send_fd, 0);
    ck_assert_int_ne(recv_fd, send_fd);
    ck_assert_int_eq(weft_chan_pollfd(channel, WEFT_RECV), recv_fd);
    ck_assert_int_eq(weft_chan_pollfd(channel, WEFT_SEND), send_fd);
    weft_chan_release(channel);
}
END_TEST

START_TEST(test_recv_fd_is_readable_after_a_send_and_clears_at_eagain) {
    weft_chan *channel = make_chan(4);
    int fd = weft_chan_pollfd(channel, WEFT_RECV);
    ck_assert(!readable(fd, 0));
    long value = 7;
    ck_assert_int_eq(weft_chan_send(channel, &value), 0);
    ck_assert(readable(fd, 0));
    ck_assert_int_eq(weft_chan_try_recv(channel, &value), 0);
    ck_assert_int_eq(value, 7);
    ck_assert(readable(fd, 0)); /* a successful receive does not clear it */
    ck_assert_int_eq(weft_chan_try_recv(channel, &value), WEFT_EAGAIN);
    ck_assert(!readable(fd, 0));
    weft_chan_release(channel);
}
END_TEST

START_TEST(test_recv_fd_is_readable_at_once_when_made_on_a_ready_channel) {
    weft_chan *channel = make_chan(4);
    long value = 1;
    ck_assert_int_eq(weft_chan_send(channel, &value), 0);
    ck_assert(readable(weft_chan_pollfd(channel, WEFT_RECV), 0));
    weft_chan_release(channel);
}
END_TEST

/* Both directions, buffered and unbuffered: a close raises the fds, and
 * they stay readable. */
START_TEST(test_both_fds_are_readable_for_good_after_close) {
    size_t caps[] = {0, 3};
    for (size_t i = 0; i < 2; i++) {
        weft_chan *channel = make_chan(caps[i]);
        int recv_fd = weft_chan_pollfd(channel, WEFT_RECV);
        int send_fd = weft_chan_pollfd(channel, WEFT_SEND);
        ck_assert(!readable(recv_fd, 0));
        ck_assert_int_eq(readable(send_fd, 0), caps[i] > 0); /* room in the ring */
        ck_assert_int_eq(weft_chan_close(channel), 0);
        long value = 0;
        for (int round = 0; round < 3; round++) {
            ck_assert(readable(recv_fd, 0));
            ck_assert(readable(send_fd, 0));
            ck_assert_int_eq(weft_chan_try_recv(channel, &value), WEFT_ECLOSED);
            ck_assert_int_eq(weft_chan_try_send(channel, &value), WEFT_ECLOSED);
        }
        weft_chan_release(channel);
    }
}
END_TEST

START_TEST(test_send_fd_of_a_full_channel_is_readable_when_room_appears) {
    weft_chan *channel = make_chan(2);
    int fd = weft_chan_pollfd(channel, WEFT_SEND);
    long value = 1;
    ck_assert(readable(fd, 0));
    while (weft_chan_try_send(channel, &value) == 0) continue; /* full; EAGAIN clears */
    ck_assert(!readable(fd, 0));
    ck_assert_int_eq(weft_chan_recv(channel, &value), 0);
    ck_assert(readable(fd, 0));
    ck_assert_int_eq(weft_chan_try_send(channel, &value), 0);
    ck_assert_int_eq(weft_chan_try_send(channel, &value), WEFT_EAGAIN);
    ck_assert(!readable(fd, 0));
    weft_chan_release(channel);
}
END_TEST

/* Unbuffered: receive-ready while a sender is parked, send-ready while a
 * receiver is. */
static void *send_one_long(void *arg) {
    long value = 42;
    WORKER_EXPECT(weft_chan_send(arg, &value) == 0);
    return NULL;
}

static void *receive_one_long(void *arg) {
    long value = 0;
    WORKER_EXPECT(weft_chan_recv(arg, &value) == 0);
    WORKER_EXPECT(value == 42);
    return NULL;
}

static int try_in(int dir, weft_chan *channel, long *value) {
    return dir == WEFT_RECV ? weft_chan_try_recv(channel, value)
                            : weft_chan_try_send(channel, value);
}

/* dir's fd rises once a partner parks; the try in dir then pairs with it,
 * and the next one (WEFT_EAGAIN) clears the fd. */
static void fd_rises_while_a_partner_is_parked(int dir) {
    weft_chan *channel = make_chan(0);
    int fd = weft_chan_pollfd(channel, dir);
    ck_assert(!readable(fd, 0));
    pthread_t partner;
    start_thread(&partner, dir == WEFT_RECV ? send_one_long : receive_one_long, channel);
    ck_assert(readable(fd, LOST_MS));
    long value = dir == WEFT_RECV ? 0 : 42;
    while (try_in(dir, channel, &value) == WEFT_EAGAIN) sleep_ms(1);
    ck_assert_int_eq(value, 42);
    join_thread(partner);
    check_worker_failures();
    ck_assert_int_eq(try_in(dir, channel, &value), WEFT_EAGAIN);
    ck_assert(!readable(fd, 0));
    weft_chan_release(channel);
}

START_TEST(test_unbuffered_recv_fd_is_readable_while_a_sender_is_parked) {
    fd_rises_while_a_partner_is_parked(WEFT_RECV);
}
END_TEST

START_TEST(test_unbuffered_send_fd_is_readable_while_a_receiver_is_parked) {
    fd_rises_while_a_partner_is_parked(WEFT_SEND);
}
END_TEST

/* Threads that make a channel's first call at once all get one fd. */
enum { FIRST_CALLERS = 4 };

typedef struct {
    weft_chan *channel;
    atomic_int *arrived;
    int fd;
} first_caller;

static void *call_pollfd(void *arg) {
    first_caller *self = arg;
    atomic_fetch_add(self->arrived, 1);
    while (atomic_load(self->arrived) < FIRST_CALLERS) continue; /* start together */
    self->fd = weft_chan_pollfd(self->channel, WEFT_RECV);
    return NULL;
}

START_TEST(test_racing_first_calls_make_one_fd) {
    int before = open_fds();
    for (int round = 0; round < scaled(300); round++) {
        weft_chan *channel = make_chan((size_t)(round % 2));
        atomic_int arrived = 0;
        first_caller callers[FIRST_CALLERS];
        pthread_t threads[FIRST_CALLERS];
        for (int i = 0; i < FIRST_CALLERS; i++) {
            callers[i] = (first_caller){channel, &arrived, -1};
            start_thread(&threads[i], call_pollfd, &callers[i]);
        }
        for (int i = 0; i < FIRST_CALLERS; i++) join_thread(threads[i]);
        ck_assert_int_ge(callers[0].fd, 0);
        for (int i = 1; i < FIRST_CALLERS; i++) ck_assert_int_eq(callers[i].fd, callers[0].fd);
        ck_assert_int_eq(open_fds(), before + 1);
        weft_chan_release(channel);
    }
}
END_TEST

/* A thousand sends into a ring nobody drains: one not-ready-to-ready
 * change, so one write. */
START_TEST(test_many_sends_raise_the_fd_with_one_write) {
    weft_chan *channel = make_chan(1000);
    (void)weft_chan_pollfd(channel, WEFT_RECV);
    long before = atomic_load(&weft__chan_pollfd_writes);
    for (long i = 0; i < 1000; i++) ck_assert_int_eq(weft_chan_send(channel, &i), 0);
    long writes = atomic_load(&weft__chan_pollfd_writes) - before;
    ck_assert_int_eq(writes, 1);
    weft_chan_release(channel);
}
END_TEST

/* ---- producers racing a loop ------------------------------------------ */

typedef struct {
    weft_chan *channel;
    long first, count;
    atomic_int *running;
} producer;

static void *produce(void *arg) {
    producer *self = arg;
    for (long i = 0; i < self->count; i++)
        WORKER_EXPECT(weft_chan_send(self->channel, &(long){self->first + i}) == 0);
    if (atomic_fetch_sub(self->running, 1) == 1) weft_chan_close(self->channel);
    return NULL;
}

typedef struct {
    long received, empty_wakes, wakes;
    bool lost; /* a poll waited LOST_MS with the channel not done */
} loop_result;

/* An event loop of one fd: wait for readiness, then take up to per_turn
 * values (0: until WEFT_EAGAIN), until WEFT_ECLOSED. */
static loop_result run_loop(weft_chan *channel, int per_turn, _Atomic unsigned char *seen) {
    int fd = weft_chan_pollfd(channel, WEFT_RECV);
    loop_result result = {0};
    for (;;) {
        if (!readable(fd, LOST_MS)) {
            result.lost = true;
            return result;
        }
        result.wakes++;
        long taken = 0, value;
        int status = 0;
        while ((per_turn == 0 || taken < per_turn) &&
               (status = weft_chan_try_recv(channel, &value)) == 0) {
            atomic_fetch_add(&seen[value], 1);
            taken++;
        }
        result.received += taken;
        if (taken == 0 && status == WEFT_EAGAIN) result.empty_wakes++;
        if (taken < per_turn || per_turn == 0) {
            if (status == WEFT_ECLOSED) return result;
            WORKER_EXPECT(status == WEFT_EAGAIN);
        }
    }
}

/* PRODUCERS threads send count values each on a channel of capacity cap
 * while a loop drains it; every value arrives once and the loop never
 * waits in vain. Returns the writes per million messages. */
static double producers_race_the_loop(size_t cap, int per_turn, long count) {
    weft_chan *channel = make_chan(cap);
    long total = PRODUCERS * count;
    _Atomic unsigned char *seen = calloc((size_t)total, 1);
    ck_assert_ptr_nonnull(seen);
    atomic_int running = PRODUCERS;
    producer producers[PRODUCERS];
    pthread_t threads[PRODUCERS];
    (void)weft_chan_pollfd(channel, WEFT_RECV);
    long writes_before = atomic_load(&weft__chan_pollfd_writes);
    for (int i = 0; i < PRODUCERS; i++) {
        producers[i] = (producer){channel, i * count, count, &running};
        start_thread(&threads[i], produce, &producers[i]);
    }
    loop_result result = run_loop(channel, per_turn, seen);
    ck_assert_msg(!result.lost,
                  "the loop waited %d ms for a readiness that never came (%ld of %ld)", LOST_MS,
                  result.received, total);
    for (int i = 0; i < PRODUCERS; i++) join_thread(threads[i]);
    check_worker_failures();
    double writes = (double)(atomic_load(&weft__chan_pollfd_writes) - writes_before);
    ck_assert_int_eq(result.received, total);
    assert_each_seen_once(seen, (size_t)total);
    free(seen);
    weft_chan_release(channel);
    printf("pollfd: cap %zu, %s: %ld messages, %ld wakes (%ld empty), %.0f writes per million\n",
           cap, per_turn ? "one per turn" : "drain", total, result.wakes, result.empty_wakes,
           writes * 1e6 / (double)total);
    return writes * 1e6 / (double)total;
}

START_TEST(test_no_readiness_is_lost_when_producers_race_the_drain) {
    double writes = producers_race_the_loop(64, 0, scaled(50000));
    ck_assert(writes <= 1e6);
}
END_TEST

START_TEST(test_unbounded_recv_fd_rises_after_a_send_and_for_good_after_close) {
    weft_chan *channel = make_chan(WEFT_UNBOUNDED);
    int fd = weft_chan_pollfd(channel, WEFT_RECV);
    ck_assert(!readable(fd, 0));
    long value = 5;
    ck_assert_int_eq(weft_chan_send(channel, &value), 0);
    ck_assert(readable(fd, 0));
    ck_assert_int_eq(weft_chan_try_recv(channel, &value), 0);
    ck_assert_int_eq(weft_chan_try_recv(channel, &value), WEFT_EAGAIN);
    ck_assert(!readable(fd, 0));
    ck_assert_int_eq(weft_chan_close(channel), 0);
    ck_assert(readable(fd, 0));
    ck_assert_int_eq(weft_chan_try_recv(channel, &value), WEFT_ECLOSED);
    ck_assert(readable(fd, 0));
    weft_chan_release(channel);
}
END_TEST

START_TEST(test_unbounded_send_fd_is_readable_while_open) {
    weft_chan *channel = make_chan(WEFT_UNBOUNDED);
    int fd = weft_chan_pollfd(channel, WEFT_SEND);
    ck_assert(readable(fd, 0)); /* a send never waits */
    weft_chan_release(channel);
}
END_TEST

START_TEST(test_no_readiness_is_lost_when_producers_race_an_unbounded_drain) {
    producers_race_the_loop(WEFT_UNBOUNDED, 0, scaled(50000));
}
END_TEST

START_TEST(test_a_loop_taking_one_value_per_turn_never_hangs) {
    producers_race_the_loop(16, 1, scaled(5000));
}
END_TEST

START_TEST(test_unbuffered_producers_race_the_drain_losing_nothing) {
    producers_race_the_loop(0, 0, scaled(5000));
}
END_TEST

/* One producer sends its next value the moment the loop has taken the
 * last one, racing the loop's final try (WEFT_EAGAIN) and its re-arming:
 * a readiness lost in that window leaves the loop waiting for a value
 * already in the channel, with nothing else to come. */
typedef struct {
    weft_chan *channel;
    long count;
    atomic_long taken; /* values the loop has taken */
} ping;

static void *send_after_each_ack(void *arg) {
    ping *self = arg;
    for (long i = 0; i < self->count; i++) {
        WORKER_EXPECT(weft_chan_send(self->channel, &i) == 0);
        /* Spin, not yield, to race the drain; yield now and then for
         * schedulers that run one thread at a time (valgrind). */
        for (long spins = 1; atomic_load(&self->taken) <= i; spins++)
            if (spins % 4096 == 0) sched_yield();
    }
    return NULL;
}

START_TEST(test_no_readiness_is_lost_when_a_producer_races_each_drain) {
    ping state = {make_chan(4), scaled(50000), 0};
    int fd = weft_chan_pollfd(state.channel, WEFT_RECV);
    pthread_t thread;
    start_thread(&thread, send_after_each_ack, &state);
    long value;
    while (atomic_load(&state.taken) < state.count) {
        if (!readable(fd, LOST_MS)) {
            weft_chan_close(state.channel); /* free the producer: it fails */
            ck_abort_msg("value %ld was sent but the fd never rose", atomic_load(&state.taken));
        }
        while (weft_chan_try_recv(state.channel, &value) == 0) {
            ck_assert_int_eq(value, atomic_load(&state.taken));
            atomic_fetch_add(&state.taken, 1);
        }
    }
    join_thread(thread);
    check_worker_failures();
    weft_chan_release(state.channel);
}
END_TEST

/* Two loops polling one fd race for each value: one of them often wakes
 * to find nothing. Such a spurious readiness must end in WEFT_EAGAIN and
 * never cost a value. */
typedef struct {
    weft_chan *channel;
    _Atomic unsigned char *seen;
    loop_result result;
} loop_thread;

static void *run_loop_thread(void *arg) {
    loop_thread *self = arg;
    self->result = run_loop(self->channel, 0, self->seen);
    return NULL;
}

START_TEST(test_spurious_readiness_ends_in_eagain_and_loses_no_value) {
    long count = scaled(20000), total = PRODUCERS * count;
    weft_chan *channel = make_chan(8);
    _Atomic unsigned char *seen = calloc((size_t)total, 1);
    ck_assert_ptr_nonnull(seen);
    atomic_int running = PRODUCERS;
    producer producers[PRODUCERS];
    pthread_t threads[PRODUCERS], loops[2];
    loop_thread loop_state[2] = {{channel, seen, {0}}, {channel, seen, {0}}};
    for (int i = 0; i < 2; i++) start_thread(&loops[i], run_loop_thread, &loop_state[i]);
    for (int i = 0; i < PRODUCERS; i++) {
        producers[i] = (producer){channel, i * count, count, &running};
        start_thread(&threads[i], produce, &producers[i]);
    }
    for (int i = 0; i < 2; i++) join_thread(loops[i]);
    for (int i = 0; i < 2; i++) ck_assert(!loop_state[i].result.lost);
    for (int i = 0; i < PRODUCERS; i++) join_thread(threads[i]);
    check_worker_failures();
    ck_assert_int_eq(loop_state[0].result.received + loop_state[1].result.received, total);
    assert_each_seen_once(seen, (size_t)total);
    printf("pollfd: two loops, %ld messages: %ld and %ld empty wakes\n", total,
           loop_state[0].result.empty_wakes, loop_state[1].result.empty_wakes);
    free(seen);
    weft_chan_release(channel);
}
END_TEST

/* ---- the fd goes with the channel ------------------------------------- */

START_TEST(test_no_fd_leaks_over_ten_thousand_polled_channels) {
    int before = open_fds();
    for (int i = 0; i < 10000; i++) {
        weft_chan *channel = make_chan((size_t)(i % 3));
        ck_assert_int_ge(weft_chan_pollfd(channel, WEFT_RECV), 0);
        if (i % 2) ck_assert_int_ge(weft_chan_pollfd(channel, WEFT_SEND), 0);
        if (i % 5 == 0) weft_chan_close(channel);
        weft_chan_release(channel);
    }
    ck_assert_int_eq(open_fds(), before);
}
END_TEST

/* ---- fork ------------------------------------------------------------- */

/* The parent's loop polls recv_fd; the child, forked with the channel
 * armed, sends: its own fd (the same number) rises, the parent's not. */
START_TEST(test_a_forked_child_never_wakes_the_parents_loop) {
    weft_chan *channel = make_chan(4);
    int fd = weft_chan_pollfd(channel, WEFT_RECV);
    ck_assert(!readable(fd, 0));
    fflush(NULL);
    pid_t child = fork();
    ck_assert_int_ne(child, -1);
    if (child == 0) {
        signal(SIGALRM, SIG_DFL); /* not Check's handler: die of a hang */
        alarm(20);
        long value = 5;
        if (weft_chan_send(channel, &value) != 0) _exit(1);
        if (!readable(fd, 0)) _exit(2); /* the child's own fd rose; left so, not drained */
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    ck_assert_msg(!readable(fd, 0), "the child's send woke the parent's fd");
    long value = 6;
    ck_assert_int_eq(weft_chan_send(channel, &value), 0); /* the parent's own still works */
    ck_assert(readable(fd, 0));
    weft_chan_release(channel);
}
END_TEST

static Suite *pollfd_suite(void) {
    Suite *suite = suite_create("chan_pollfd");
    TCase *tc = new_case(suite, "readiness");
    tcase_add_test(tc, test_pollfd_refuses_a_bad_direction_and_null);
    tcase_add_test(tc, test_pollfd_is_one_fd_per_direction);
    tcase_add_test(tc, test_racing_first_calls_make_one_fd);
    tcase_add_test(tc, test_recv_fd_is_readable_after_a_send_and_clears_at_eagain);
    tcase_add_test(tc, test_recv_fd_is_readable_at_once_when_made_on_a_ready_channel);
    tcase_add_test(tc, test_both_fds_are_readable_for_good_after_close);
    tcase_add_test(tc, test_unbounded_recv_fd_rises_after_a_send_and_for_good_after_close);
    tcase_add_test(tc, test_unbounded_send_fd_is_readable_while_open);
    tcase_add_test(tc, test_send_fd_of_a_full_channel_is_readable_when_room_appears);
    tcase_add_test(tc, test_unbuffered_recv_fd_is_readable_while_a_sender_is_parked);
    tcase_add_test(tc, test_unbuffered_send_fd_is_readable_while_a_receiver_is_parked);
    tcase_add_test(tc, test_many_sends_raise_the_fd_with_one_write);

    tc = new_case(suite, "races");
    tcase_add_test(tc, test_no_readiness_is_lost_when_producers_race_the_drain);
    tcase_add_test(tc, test_no_readiness_is_lost_when_producers_race_an_unbounded_drain);
    tcase_add_test(tc, test_no_readiness_is_lost_when_a_producer_races_each_drain);
    tcase_add_test(tc, test_a_loop_taking_one_value_per_turn_never_hangs);
    tcase_add_test(tc, test_unbuffered_producers_race_the_drain_losing_nothing);
    tcase_add_test(tc, test_spurious_readiness_ends_in_eagain_and_loses_no_value);

    tc = new_case(suite, "lifetime");
    tcase_add_test(tc, test_no_fd_leaks_over_ten_thousand_polled_channels);
    tcase_add_test(tc, test_a_forked_child_never_wakes_the_parents_loop);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(pollfd_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
