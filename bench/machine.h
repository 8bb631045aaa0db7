/* machine.h — what weft-bench prints about the machine beside its
 * tables: the CPU model and the cost of moving a cache line between two
 * cores, the floor of any hand-off between two running threads. */
#ifndef WEFT_BENCH_MACHINE_H
#define WEFT_BENCH_MACHINE_H

#include <stddef.h>

/* The first "model name" of /proc/cpuinfo into out (letters, digits and
 * plain punctuation only, so that it can go into JSON and SVG as it is),
 * or "unknown CPU". */
void machine_cpu_model(char *out, size_t size);

/* Two threads bounce one cache line, spinning: the median over batches of
 * one batch's time per round trip, in ns. About 100,000 round trips, cut
 * short after 0.2 s on a machine too busy to give both threads a core.
 * NAN with one CPU online, where spinning would wait for the scheduler,
 * and when not one batch finished in time. */
double machine_round_trip_ns(void);

#endif
