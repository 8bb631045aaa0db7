/* machine.c — the CPU model and the cache-line round trip (machine.h).
 *
 * The round trip as the anchors' pingpong measures it: a counter on a
 * cache line of its own; the main thread stores an odd value and spins
 * until the echo thread has stored the next even one. Each round trip
 * moves the line to the other core and back. Batches of ROUND_TRIPS are
 * timed one by one and the median batch is reported, so that a batch in
 * which the scheduler took one of the threads away does not count. The
 * echo thread answers with a compare-and-swap, so that it cannot
 * overwrite the main thread's -1 (stop) when the probe gives up. */
#include "machine.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft/time.h"

enum { ROUND_TRIPS = 1000, MAX_BATCHES = 100 };
#define PROBE_LIMIT_NS 200000000L /* 0.2 s */

void machine_cpu_model(char *out, size_t size) {
    snprintf(out, size, "unknown CPU");
    FILE *file = fopen("/proc/cpuinfo", "r");
    if (file == NULL) return;
    char line[256];
    while (fgets(line, sizeof line, file) != NULL) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || colon == NULL) continue;
        const char *model = colon + 1;
        while (*model == ' ' || *model == '\t') model++;
        size_t used = 0;
        for (; *model != '\0' && *model != '\n' && used + 1 < size; model++) {
            bool plain = (*model >= 'a' && *model <= 'z') || (*model >= 'A' && *model <= 'Z') ||
                         (*model >= '0' && *model <= '9') || strchr(" -_.,/:()@+", *model) != NULL;
            out[used++] = plain ? *model : ' ';
        }
        out[used] = '\0';
        if (used == 0) snprintf(out, size, "unknown CPU");
        break;
    }
    fclose(file);
}

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* The bounced line: the main thread stores odd values, the echo even
 * ones; a negative value tells the echo thread to return. */
typedef struct probe {
    _Alignas(64) atomic_long counter;
    char pad[64 - sizeof(atomic_long)];
} probe;

static void *echo_main(void *argument) {
    probe *line = argument;
    for (long seen = 0;;) {
        long value;
        while ((value = atomic_load_explicit(&line->counter, memory_order_acquire)) == seen)
            relax();
        if (value < 0) return NULL;
        seen = value + 1; /* unless the main thread gave up meanwhile (-1) */
        if (!atomic_compare_exchange_strong_explicit(&line->counter, &value, seen,
                                                     memory_order_acq_rel, memory_order_acquire))
            return NULL;
    }
}

static int compare_doubles(const void *left, const void *right) {
    double a = *(const double *)left, b = *(const double *)right;
    return (a > b) - (a < b);
}

double machine_round_trip_ns(void) {
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) return NAN;
    probe *line = aligned_alloc(64, sizeof *line);
    if (line == NULL) return NAN;
    atomic_init(&line->counter, 0);
    pthread_t echo;
    if (pthread_create(&echo, NULL, echo_main, line) != 0) {
        free(line);
        return NAN;
    }
    double batches[MAX_BATCHES];
    int count = 0;
    long value = 0;
    weft_time started = weft_now();
    bool late = false;
    while (count < MAX_BATCHES && !late) {
        weft_time before = weft_now();
        for (int i = 0; i < ROUND_TRIPS && !late; i++) {
            atomic_store_explicit(&line->counter, ++value, memory_order_release);
            /* the clock only now and then: the echo thread may have no core */
            for (unsigned spins = 1;
                 atomic_load_explicit(&line->counter, memory_order_acquire) == value; spins++) {
                relax();
                if (spins % 4096 == 0 && weft_now() - started > PROBE_LIMIT_NS) late = true;
                if (late) break;
            }
            value++;
        }
        if (!late) batches[count++] = (double)(weft_now() - before) / ROUND_TRIPS;
        late |= weft_now() - started > PROBE_LIMIT_NS;
    }
    atomic_store_explicit(&line->counter, -1, memory_order_release);
    pthread_join(echo, NULL);
    free(line);
    if (count == 0) return NAN;
    qsort(batches, (size_t)count, sizeof *batches, compare_doubles);
    return batches[count / 2];
}
