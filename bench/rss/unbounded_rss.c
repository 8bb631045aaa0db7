/* Memory of an unbounded channel through a burst: the resident set before,
 * at the peak (N 8-byte values queued) and after draining, then after
 * malloc_trim(0), which asks glibc to hand its free memory back.
 *
 *     make bench-rss            (or: build/release/bench/rss/unbounded_rss [N] [thread])
 *
 * With "thread", a second thread sends (its blocks come from a glibc arena
 * of that thread's own) while the main thread receives afterwards. */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft.h"

static long resident_kib(void) {
    FILE *statm = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (!statm || fscanf(statm, "%ld %ld", &size, &resident) != 2) resident = -1;
    if (statm) fclose(statm);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef struct {
    weft_chan *channel;
    uint64_t count;
} burst;

static void *send_all(void *arg) {
    burst *b = arg;
    for (uint64_t v = 0; v < b->count; v++)
        if (weft_chan_send(b->channel, &v) != 0) {
            fprintf(stderr, "send failed at %llu\n", (unsigned long long)v);
            exit(1);
        }
    return NULL;
}

int main(int argc, char **argv) {
    uint64_t count = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
    bool threaded = argc > 2 && strcmp(argv[2], "thread") == 0;
    burst b = {weft_chan_make_unbounded(sizeof(uint64_t)), count};
    if (!b.channel) return 1;
    long before = resident_kib();
    weft_time start = weft_now();
    if (threaded) {
        pthread_t sender;
        pthread_create(&sender, NULL, send_all, &b);
        pthread_join(sender, NULL);
    } else {
        send_all(&b);
    }
    weft_time sent = weft_now();
    long peak = resident_kib();
    for (uint64_t v = 0; v < count; v++) {
        uint64_t got;
        if (weft_chan_recv(b.channel, &got) != 0 || got != v) {
            fprintf(stderr, "receive %llu failed\n", (unsigned long long)v);
            return 1;
        }
    }
    weft_time drained = weft_now();
    long after = resident_kib();
    malloc_trim(0);
    long trimmed = resident_kib();
    printf("unbounded_rss: %llu values of 8 bytes, sent by %s: RSS before %ld KiB, queued %ld KiB "
           "(%.1f bytes/value), drained %ld KiB, after malloc_trim %ld KiB; send %.1f ns/value, "
           "receive %.1f ns/value\n",
           (unsigned long long)count, threaded ? "another thread" : "the main thread", before, peak,
           (peak - before) * 1024.0 / (double)count, after, trimmed,
           (double)(sent - start) / (double)count, (double)(drained - sent) / (double)count);
    weft_chan_release(b.channel);
    return 0;
}
