/* hello.cpp — weft used from C++.
 *
 * `make cxx-check` builds it with CXX (g++ by default) against
 * lib/libweft.a in every C++ standard from C++11 to C++20, warnings as
 * errors; test/install/check.sh builds it against an installed weft. It
 * first checks that C++ sees each public struct with the layout the C
 * library has (layout.h), then runs every module once through C++:
 *  - four goroutines started by a WaitGroup send 1,000 ints each on a
 *    typed channel (WEFT_CHAN_DEFINE), counting under a static mutex,
 *    through a semaphore, after a once; a fifth closes the channel when
 *    the WaitGroup is done;
 *  - main receives with weft_select, a typed receive case beside a
 *    context's done channel, and checks each value arrived exactly once;
 *  - an rwmutex, a canceled context with a cause, a timer and a task
 *    group whose failing task cancels its context;
 *  - the headers' version matches the library's.
 * Prints OK and exits 0, or names each failed check and exits 1. */
#include <weft.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <vector>

#include "layout.h"

WEFT_CHAN_DEFINE(int_chan, int)

namespace {

std::atomic<int> failures(0);

#define EXPECT(condition)                                                              \
    do {                                                                               \
        if (!(condition)) {                                                            \
            std::fprintf(stderr, "hello.cpp:%d: expected %s\n", __LINE__, #condition); \
            failures++;                                                                \
        }                                                                              \
    } while (0)

const int producers = 4;
const int per_producer = 1000;

// Static primitives, initialized by the C headers' constant initializers.
weft_mutex sent_lock = WEFT_MUTEX_INIT;
int sent_count = 0; // under sent_lock
weft_once setup_once = WEFT_ONCE_INIT;
std::atomic<int> setup_runs(0);
weft_sem senders = WEFT_SEM_INIT(2); // at most two producers inside send at once
weft_wg producing = WEFT_WG_INIT;
weft_wg closing = WEFT_WG_INIT;

struct producer_args {
    int_chan numbers;
    int first;
};

void setup(void *) { setup_runs++; }

void produce(void *arg) {
    const producer_args *args = static_cast<const producer_args *>(arg);
    weft_once_do(&setup_once, setup, nullptr);
    for (int i = 0; i < per_producer; i++) {
        EXPECT(weft_sem_acquire(&senders, 1, nullptr) == WEFT_OK);
        EXPECT(int_chan_send(args->numbers, args->first + i) == WEFT_OK);
        weft_sem_release(&senders, 1);
        weft_mutex_lock(&sent_lock);
        sent_count++;
        weft_mutex_unlock(&sent_lock);
    }
}

// Owns the reference it is given.
void close_when_done(void *arg) {
    int_chan numbers = {static_cast<weft_chan *>(arg)};
    weft_wg_wait(&producing);
    EXPECT(int_chan_close(numbers) == WEFT_OK);
    int_chan_release(numbers);
}

void check_layout() {
    static const layout_entry cxx_layout[] = {LAYOUT_FIELDS(LAYOUT_ENTRY)};
    const size_t count = sizeof cxx_layout / sizeof cxx_layout[0];
    EXPECT(count == c_layout_count);
    for (size_t i = 0; i < count && i < c_layout_count; i++) {
        const layout_entry &c = c_layout[i], &cxx = cxx_layout[i];
        if (c.type_size != cxx.type_size || c.type_align != cxx.type_align ||
            c.field_offset != cxx.field_offset || c.field_size != cxx.field_size) {
            std::fprintf(stderr,
                         "hello.cpp: %s: C sees size %zu align %zu offset %zu field size %zu, "
                         "C++ %zu %zu %zu %zu\n",
                         c.name, c.type_size, c.type_align, c.field_offset, c.field_size,
                         cxx.type_size, cxx.type_align, cxx.field_offset, cxx.field_size);
            failures++;
        }
    }
}

void check_channels_goroutines_select() {
    int_chan numbers = int_chan_make(16);
    EXPECT(numbers.ch != nullptr);
    if (!numbers.ch) return;
    EXPECT(int_chan_cap(numbers) == 16);

    std::vector<producer_args> args(producers);
    for (int p = 0; p < producers; p++) {
        args[p].numbers = numbers;
        args[p].first = p * per_producer;
        EXPECT(weft_wg_go(&producing, produce, &args[p]) == WEFT_OK);
    }
    int_chan_retain(numbers);
    EXPECT(weft_wg_go(&closing, close_when_done, numbers.ch) == WEFT_OK);

    // A generous limit: a stuck program fails instead of hanging CI.
    weft_ctx *limit = weft_ctx_with_timeout(nullptr, WEFT_SEC(120));
    EXPECT(limit != nullptr);
    std::vector<int> seen(producers * per_producer, 0);
    int value = -1;
    for (;;) {
        weft_case cases[] = {int_chan_recv_case(numbers, &value),
                             WEFT_RECV_CASE(weft_ctx_done(limit), nullptr)};
        int chosen = weft_select(cases, 2, WEFT_FOREVER);
        EXPECT(chosen == 0);
        if (chosen != 0 || cases[0].err == WEFT_ECLOSED) break;
        EXPECT(value >= 0 && value < producers * per_producer);
        if (value >= 0 && value < producers * per_producer) seen[value]++;
    }
    for (size_t i = 0; i < seen.size(); i++) EXPECT(seen[i] == 1);
    weft_ctx_cancel(limit);
    weft_ctx_release(limit);

    // Every producer has passed its last send; wait for its last count too.
    weft_wg_wait(&producing);
    weft_wg_wait(&closing);
    weft_mutex_lock(&sent_lock);
    EXPECT(sent_count == producers * per_producer);
    weft_mutex_unlock(&sent_lock);
    EXPECT(setup_runs.load() == 1);
    EXPECT(weft_sem_try_acquire(&senders, 2) == WEFT_OK);
    weft_sem_release(&senders, 2);
    int_chan_release(numbers);
}

void check_rwmutex() {
    weft_rwmutex table;
    weft_rwmutex_init(&table);
    weft_rwmutex_rlock(&table);
    EXPECT(weft_rwmutex_tryrlock(&table) == WEFT_OK);
    EXPECT(weft_rwmutex_trylock(&table) == WEFT_EAGAIN);
    weft_rwmutex_runlock(&table);
    weft_rwmutex_runlock(&table);
    EXPECT(weft_rwmutex_trylock(&table) == WEFT_OK);
    EXPECT(weft_rwmutex_tryrlock(&table) == WEFT_EAGAIN);
    weft_rwmutex_unlock(&table);
    weft_rwmutex_destroy(&table);
}

void check_context() {
    weft_ctx *ctx = weft_ctx_with_cancel(nullptr);
    EXPECT(ctx != nullptr);
    if (!ctx) return;
    int_chan empty = int_chan_make(0);
    EXPECT(empty.ch != nullptr);
    EXPECT(weft_ctx_err(ctx) == 0);
    weft_ctx_cancel_cause(ctx, 7);
    EXPECT(weft_ctx_err(ctx) == WEFT_ECANCELED);
    EXPECT(weft_ctx_cause(ctx) == 7);
    int value = 0;
    EXPECT(int_chan_recv_ctx(empty, &value, ctx) == WEFT_ECANCELED);
    weft_case done[] = {WEFT_RECV_CASE(weft_ctx_done(ctx), nullptr)};
    EXPECT(weft_select(done, 1, WEFT_NOWAIT) == 0);
    int_chan_release(empty);
    weft_ctx_release(ctx);
}

void check_timer() {
    weft_time start = weft_now();
    weft_chan *timer = weft_after(WEFT_MS(1));
    EXPECT(timer != nullptr);
    if (!timer) return;
    weft_time fired = 0;
    EXPECT(weft_chan_recv(timer, &fired) == WEFT_OK);
    EXPECT(fired >= start + WEFT_MS(1));
    weft_chan_release(timer);
}

int succeed(weft_ctx *, void *) { return 0; }
int fail_with_five(weft_ctx *, void *) { return 5; }

void check_group() {
    weft_group *group = weft_group_new(nullptr);
    EXPECT(group != nullptr);
    if (!group) return;
    EXPECT(weft_group_go(group, succeed, nullptr) == WEFT_OK);
    EXPECT(weft_group_go(group, fail_with_five, nullptr) == WEFT_OK);
    EXPECT(weft_group_go(group, succeed, nullptr) == WEFT_OK);
    EXPECT(weft_group_wait(group) == 5);
    EXPECT(weft_ctx_cause(weft_group_ctx(group)) == 5);
    weft_group_free(group);
}

void check_version() {
    EXPECT(std::strcmp(weft_version(), WEFT_VERSION_STRING) == 0);
    EXPECT(weft_version_number() == WEFT_VERSION_NUMBER);
    EXPECT(std::strcmp(weft_strerror(WEFT_ECLOSED), weft_strerror(WEFT_EAGAIN)) != 0);
}

} // namespace

int main() {
    check_layout();
    check_version();
    check_channels_goroutines_select();
    check_rwmutex();
    check_context();
    check_timer();
    check_group();
    if (failures.load() != 0) {
        std::fprintf(stderr, "hello.cpp: %d check(s) failed\n", failures.load());
        return 1;
    }
    std::puts("OK");
    return 0;
}
