/* How long a blocked thread stays awake before it sleeps (lib/patience.h):
 * the learning rule, the awake wait's bounds, and the slow mode the rule
 * exists to prevent, in which an unbuffered pair sleeps on every message
 * because each wake-up outlasts the other side's patience. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "parker.h"
#include "patience.h"
#include "weft/chan.h"
#include "weft/error.h"
#include "weft/time.h"

#include "testutil.h"

/* ---- the learning rule -------------------------------------------------- */

START_TEST(test_a_sleep_shorter_than_its_cost_grows_patience_to_cover_it) {
    /* Asleep 20 us past a 5 us patience, at a wake-up latency of 30 us. */
    weft_time learned = weft__patience_learn(5000, 25000, 30000);
    ck_assert_int_ge(learned, 25000);
    ck_assert_int_le(learned, WEFT__PATIENCE_MAX);
}
END_TEST

START_TEST(test_a_sleep_longer_than_its_cost_halves_patience) {
    /* Asleep 95 us past a 40 us patience, at a wake-up latency of 10 us. */
    ck_assert_int_eq(weft__patience_learn(40000, 135000, 10000), 20000);
}
END_TEST

START_TEST(test_a_sleep_past_the_longest_patience_halves_it) {
    ck_assert_int_eq(weft__patience_learn(100000, 5000000, 5000000), 50000);
}
END_TEST

START_TEST(test_patience_never_falls_below_the_least) {
    weft_time patience = WEFT__PATIENCE_FIRST;
    for (int i = 0; i < 64; i++) patience = weft__patience_learn(patience, 10000000, 1000);
    ck_assert_int_eq(patience, WEFT__PATIENCE_MIN);
}
END_TEST

START_TEST(test_patience_never_grows_past_the_most) {
    weft_time patience =
        weft__patience_learn(WEFT__PATIENCE_MAX - 1000, WEFT__PATIENCE_MAX, WEFT__PATIENCE_MAX);
    ck_assert_int_eq(patience, WEFT__PATIENCE_MAX);
}
END_TEST

START_TEST(test_a_wait_cut_short_keeps_a_larger_patience) {
    /* A sleep begun before the patience was spent (a busy core, a
     * deadline) and ended soon does not lower what was learned. */
    ck_assert_int_eq(weft__patience_learn(120000, 40000, 30000), 120000);
}
END_TEST

START_TEST(test_a_wait_on_a_crowded_core_quarters_patience) {
    ck_assert_int_eq(weft__patience_crowded(80000), 20000);
    ck_assert_int_eq(weft__patience_crowded(WEFT__PATIENCE_MIN), WEFT__PATIENCE_MIN);
}
END_TEST

/* ---- the awake wait ----------------------------------------------------- */

START_TEST(test_an_awake_wait_ends_once_its_budget_is_spent) {
    enum { BUDGET = 300000 };
    weft__patience patience;
    weft__patience_begin(&patience, BUDGET, true);
    while (weft__patience_wait(&patience)) continue;
    /* Early only when a yield found the core wanted; never much later
     * than the budget, whatever the load, but for one time slice away. */
    ck_assert_int_lt(weft_now() - patience.began, BUDGET + 100 * 1000 * 1000);
}
END_TEST

START_TEST(test_a_poll_only_wait_never_yields) {
    /* Budget within the polling time: pauses only, so it ends at once
     * after the budget (a yield could keep it away for a time slice). */
    weft__patience patience;
    weft__patience_begin(&patience, WEFT__POLL_TIME / 2, true);
    while (weft__patience_wait(&patience)) ck_assert_uint_ne(patience.polls, UINT_MAX);
    ck_assert_int_ge(weft_now() - patience.began, WEFT__POLL_TIME / 2);
}
END_TEST

START_TEST(test_a_wait_banned_from_yielding_only_polls) {
    weft__patience patience;
    weft__patience_begin(&patience, 100000, false);
    while (weft__patience_wait(&patience)) ck_assert_uint_ne(patience.polls, UINT_MAX);
    ck_assert(!patience.yielded);
}
END_TEST

/* A crowded wait as weft__patience_wait leaves it: given up in a yield
 * that kept it off the core for a time slice. */
static weft__patience crowded_in_a_yield(void) {
    weft__patience patience;
    weft__patience_begin(&patience, 100000, true);
    patience.polls = UINT_MAX;
    patience.crowded = true;
    patience.lost_slice = true;
    return patience;
}

START_TEST(test_a_yield_that_lost_less_than_a_slice_bans_nothing) {
    weft__patience_memory memory = {.patience = 80000};
    weft__patience crowded = crowded_in_a_yield();
    crowded.lost_slice = false;
    weft__patience_end(&memory, &crowded);
    ck_assert_int_eq(memory.patience, 20000); /* but it sleeps sooner */
    ck_assert_int_eq(memory.yield_ban, 0);
    ck_assert_int_eq(memory.no_yield_until, 0);
}
END_TEST

START_TEST(test_a_yield_that_lost_the_core_bans_yields_a_while) {
    weft__patience_memory memory = {.patience = 80000};
    weft__patience crowded = crowded_in_a_yield();
    weft_time before = weft_now();
    weft__patience_end(&memory, &crowded);
    ck_assert_int_eq(memory.patience, 20000);
    ck_assert_int_eq(memory.yield_ban, WEFT__YIELD_BAN_FIRST);
    ck_assert_int_ge(memory.no_yield_until, before + WEFT__YIELD_BAN_FIRST);
    weft__patience next;
    weft__patience_start(&next, &memory);
    ck_assert(!next.may_yield);
}
END_TEST

START_TEST(test_yields_that_keep_losing_the_core_ban_twice_as_long_each_time) {
    weft__patience_memory memory = {0};
    weft__patience crowded = crowded_in_a_yield();
    for (int i = 0; i < 40; i++) weft__patience_end(&memory, &crowded);
    ck_assert_int_eq(memory.yield_ban, WEFT__YIELD_BAN_MAX);
    memory.yield_ban = WEFT__YIELD_BAN_FIRST;
    weft__patience_end(&memory, &crowded);
    ck_assert_int_eq(memory.yield_ban, 2 * WEFT__YIELD_BAN_FIRST);
}
END_TEST

START_TEST(test_a_cheap_yield_lifts_the_doubling) {
    weft__patience_memory memory = {.patience = 80000, .yield_ban = 4 * WEFT__YIELD_BAN_FIRST};
    weft__patience cheap;
    weft__patience_begin(&cheap, 100000, true);
    cheap.yielded = true;
    weft__patience_end(&memory, &cheap);
    ck_assert_int_eq(memory.yield_ban, 0);
    ck_assert_int_eq(memory.patience, 80000);
}
END_TEST

/* ---- in the parker ------------------------------------------------------ */

typedef struct {
    weft__parker *parker;
    atomic_int round;
    int rounds;
    long delay_ms;
} late_waker;

/* Unparks the main thread's parker delay_ms after each round begins. */
static void *wake_late(void *arg) {
    late_waker *waker = arg;
    for (int i = 1; i <= waker->rounds; i++) {
        while (atomic_load(&waker->round) < i) sched_yield();
        sleep_ms(waker->delay_ms);
        weft__parker_unpark(waker->parker);
    }
    return NULL;
}

START_TEST(test_a_thread_whose_partner_comes_late_learns_to_sleep_sooner) {
    weft__parker *self = weft__parker_self();
    ck_assert_ptr_nonnull(self);
    late_waker waker = {.parker = self, .rounds = 12, .delay_ms = 2};
    pthread_t thread;
    start_thread(&thread, wake_late, &waker);
    for (int i = 1; i <= waker.rounds; i++) {
        atomic_store(&waker.round, i);
        ck_assert_int_eq(weft__parker_park(self, WEFT_FOREVER), 0);
    }
    join_thread(thread);
    /* Each 2 ms sleep is past the longest patience: halved every round. */
    ck_assert_int_eq(self->learned.patience, WEFT__PATIENCE_MIN);
}
END_TEST

START_TEST(test_a_park_with_a_deadline_is_not_overslept_awake) {
    weft__parker *self = weft__parker_self();
    ck_assert_ptr_nonnull(self);
    self->learned.patience = WEFT__PATIENCE_MAX;
    weft_time start = weft_now();
    ck_assert_int_eq(weft__parker_park(self, start + 20000), WEFT_ETIMEDOUT);
    ck_assert_int_ge(weft_now() - start, 20000);
}
END_TEST

/* ---- the slow mode ------------------------------------------------------ */

enum { RUN_NS = 300 * 1000 * 1000 }; /* each run of the pair */

static long thread_sleeps(void) {
    struct rusage usage;
    getrusage(RUSAGE_THREAD, &usage);
    return usage.ru_nvcsw; /* voluntary context switches */
}

/* CPU time the whole machine spent busy, and this process's share, in ns. */
static void cpu_busy(weft_time *machine, weft_time *ours) {
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                       steal = 0;
    FILE *stat = fopen("/proc/stat", "r");
    if (stat) {
        if (fscanf(stat, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system,
                   &idle, &iowait, &irq, &softirq, &steal) != 8)
            user = nice = system = irq = softirq = steal = 0;
        fclose(stat);
    }
    long tick = sysconf(_SC_CLK_TCK);
    *machine = (weft_time)(user + nice + system + irq + softirq + steal) *
               (1000000000 / (tick > 0 ? tick : 100));
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    *ours = ((weft_time)usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000000 +
            ((weft_time)usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1000;
}

typedef struct {
    weft_chan *channel;
    long received;
    long sleeps;
} receiver_side;

static void *receive_all(void *arg) {
    receiver_side *side = arg;
    long before = thread_sleeps();
    long value;
    while (weft_chan_recv(side->channel, &value) == 0) {
        WORKER_EXPECT(value == side->received);
        side->received++;
    }
    side->sleeps = thread_sleeps() - before;
    return NULL;
}

typedef struct {
    long handoffs, sleeps;
    weft_time others; /* CPU time other processes took meanwhile */
} pair_run;

/* The pair hands values over an unbuffered channel for RUN_NS. */
static pair_run handoff_run(void) {
    receiver_side side = {.channel = weft_chan_make(sizeof(long), 0)};
    weft_time machine, ours;
    cpu_busy(&machine, &ours);
    pthread_t receiver;
    start_thread(&receiver, receive_all, &side);
    long before = thread_sleeps();
    weft_time end = weft_now() + RUN_NS;
    long sent = 0;
    while (weft_now() < end) {
        ck_assert_int_eq(weft_chan_send(side.channel, &sent), 0);
        sent++;
    }
    long sender_sleeps = thread_sleeps() - before;
    weft_chan_close(side.channel);
    join_thread(receiver);
    check_worker_failures();
    ck_assert_int_eq(side.received, sent);
    weft_chan_release(side.channel);
    weft_time machine_after, ours_after;
    cpu_busy(&machine_after, &ours_after);
    return (pair_run){sent, sender_sleeps + side.sleeps,
                      (machine_after - machine) - (ours_after - ours)};
}

/* With a fixed spin, a pair whose wake-ups took longer than the spin slept
 * on every hand-off (0.37 sleeps a message on a host whose halted vCPU
 * took ~27 us to wake), in every run. Learned patience keeps the pair
 * awake. Other processes taking a core from the pair make sleeping right
 * (and look the same), so a run during which they used more than a fifth
 * of a core says nothing: up to eight runs are made until one is left
 * alone (by /proc/stat, to its 10 ms ticks), and that one must sleep on
 * few of its hand-offs. */
START_TEST(test_an_unbuffered_pair_does_not_sleep_on_every_handoff) {
#ifdef UNDER_TSAN
    return; /* its run-time stretches each hand-off past what is being tested */
#endif
    if (test_scale() > 1) return; /* valgrind runs one thread at a time */
    for (int run = 0; run < 8; run++) {
        pair_run counted = handoff_run();
        if (counted.others > RUN_NS / 5) continue; /* not left alone */
        ck_assert_msg(counted.sleeps < counted.handoffs / 10,
                      "%ld sleeps for %ld hand-offs (others used %lld ms of CPU)", counted.sleeps,
                      counted.handoffs, (long long)(counted.others / 1000000));
        return;
    }
    fprintf(stderr, "test_patience: other processes never left the pair alone; nothing judged\n");
}
END_TEST

static Suite *patience_suite(void) {
    Suite *suite = suite_create("patience");
    TCase *tc = new_case(suite, "learning");
    tcase_add_test(tc, test_a_sleep_shorter_than_its_cost_grows_patience_to_cover_it);
    tcase_add_test(tc, test_a_sleep_longer_than_its_cost_halves_patience);
    tcase_add_test(tc, test_a_sleep_past_the_longest_patience_halves_it);
    tcase_add_test(tc, test_patience_never_falls_below_the_least);
    tcase_add_test(tc, test_patience_never_grows_past_the_most);
    tcase_add_test(tc, test_a_wait_cut_short_keeps_a_larger_patience);
    tcase_add_test(tc, test_a_wait_on_a_crowded_core_quarters_patience);
    tc = new_case(suite, "awake");
    tcase_add_test(tc, test_an_awake_wait_ends_once_its_budget_is_spent);
    tcase_add_test(tc, test_a_poll_only_wait_never_yields);
    tcase_add_test(tc, test_a_wait_banned_from_yielding_only_polls);
    tcase_add_test(tc, test_a_yield_that_lost_the_core_bans_yields_a_while);
    tcase_add_test(tc, test_a_yield_that_lost_less_than_a_slice_bans_nothing);
    tcase_add_test(tc, test_yields_that_keep_losing_the_core_ban_twice_as_long_each_time);
    tcase_add_test(tc, test_a_cheap_yield_lifts_the_doubling);
    tc = new_case(suite, "parker");
    tcase_add_test(tc, test_a_thread_whose_partner_comes_late_learns_to_sleep_sooner);
    tcase_add_test(tc, test_a_park_with_a_deadline_is_not_overslept_awake);
    tc = new_case(suite, "slow mode");
    tcase_add_test(tc, test_an_unbuffered_pair_does_not_sleep_on_every_handoff);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(patience_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
