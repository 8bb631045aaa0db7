/* peers.c — the peer table: the condvar baseline, weft, and plain
 * pthreads (the baseline of spawning), each wrapped into the operations
 * of struct bench_peer. */
#include "peers.h"

#include <pthread.h>
#include <string.h>

#include "condvar_queue.h"
#include "weft/chan.h"
#include "weft/go.h"
#include "weft/sync.h"

/* ---- condvar: channel operations ---------------------------------------- */

static void *condvar_make(size_t capacity) { return condvar_queue_make(capacity); }

static void condvar_release(void *channel) { condvar_queue_free(channel); }

static int condvar_send(void *channel, long value) {
    condvar_queue_send(channel, value);
    return 0;
}

static int condvar_receive(void *channel, long *value) {
    *value = condvar_queue_receive(channel);
    return 0;
}

/* ---- weft: channel operations and goroutines ----------------------------- */

static void *weft_make(size_t capacity) { return weft_chan_make(sizeof(long), capacity); }

static void weft_release(void *channel) { weft_chan_release(channel); }

static int weft_send(void *channel, long value) { return weft_chan_send(channel, &value); }

static int weft_receive(void *channel, long *value) { return weft_chan_recv(channel, value); }

/* What every goroutine of one weft_spawn call shares (read-only but for
 * the WaitGroup). */
typedef struct spawn_batch {
    bench_task *task;
    void *argument;
    weft_wg group;
} spawn_batch;

static void weft_goroutine(void *argument) {
    spawn_batch *batch = argument;
    batch->task(batch->argument);
    weft_wg_done(&batch->group);
}

/* One weft_wg_add for the batch, a weft_go per task, one weft_wg_wait: the
 * Go idiom without weft_wg_go's allocation per task. */
static int weft_spawn(int count, bench_task *task, void *argument) {
    spawn_batch batch = {task, argument, WEFT_WG_INIT};
    weft_wg_add(&batch.group, count);
    int result = 0;
    for (int i = 0; i < count; i++) {
        result = weft_go(weft_goroutine, &batch);
        if (result != 0) {
            weft_wg_add(&batch.group, -(int64_t)(count - i)); /* the tasks never started */
            break;
        }
    }
    weft_wg_wait(&batch.group);
    weft_wg_destroy(&batch.group);
    return result;
}

/* ---- pthread: a thread per task ------------------------------------------ */

typedef struct thread_task {
    bench_task *task;
    void *argument;
} thread_task;

static void *thread_main(void *argument) {
    const thread_task *what = argument;
    what->task(what->argument);
    return NULL;
}

/* pthread_create each, then pthread_join each: what a C programmer writes
 * without a pool. */
static int pthread_spawn(int count, bench_task *task, void *argument) {
    thread_task what = {task, argument};
    pthread_t threads[count];
    int started = 0, result = 0;
    for (; started < count; started++) {
        result = pthread_create(&threads[started], NULL, thread_main, &what);
        if (result != 0) break;
    }
    for (int i = 0; i < started; i++) {
        int joined = pthread_join(threads[i], NULL);
        if (result == 0) result = joined;
    }
    return result;
}

/* ---- the table ------------------------------------------------------------ */

const bench_peer peers[] = {
    {"condvar", "ring + pthread mutex + condvars; one slot and a hand-off wait at capacity 0",
     PEER_CHANNEL, PEER_CHANNEL | PEER_WEFT, condvar_make, condvar_release, condvar_send,
     condvar_receive, NULL},
    {"weft", "weft_chan_*, weft_select, weft_go", PEER_CHANNEL | PEER_WEFT | PEER_SPAWN, 0,
     weft_make, weft_release, weft_send, weft_receive, weft_spawn},
    {"pthread", "pthread_create + pthread_join per task (spawn only)", PEER_SPAWN, PEER_SPAWN, NULL,
     NULL, NULL, NULL, pthread_spawn},
};

const size_t peer_count = sizeof peers / sizeof peers[0];

const bench_peer *peer_find(const char *name) {
    for (size_t i = 0; i < peer_count; i++)
        if (strcmp(peers[i].name, name) == 0) return &peers[i];
    return NULL;
}

const bench_peer *peer_baseline(unsigned capability) {
    for (size_t i = 0; i < peer_count; i++)
        if (peers[i].baseline_for & capability) return &peers[i];
    return NULL;
}
