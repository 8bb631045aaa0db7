/* ctx_cases.h — the context group of weft-bench (`-w ctx`): what
 * contexts cost.
 *
 * These are not channel-throughput workloads: each case runs on the
 * calling thread alone, through weft only (the condvar baseline has no
 * contexts), and reports a few named figures per repetition (ns per
 * operation, bytes, a count) instead of a message rate. --cap,
 * --messages and --threads do not apply; their sizes are fixed below, as
 * issue 4 asks for them. Each repetition interleaves what it compares
 * (plain and _ctx receives, background and parent) block by block, and
 * takes the median over its blocks, so that a preemption spoils one block
 * rather than the figure; the report then gives the median, min and max
 * over --repeat repetitions. A difference (recv_ctx - recv, say) is
 * computed within each repetition and reported as a measure of its own. */
#ifndef WEFT_BENCH_CTX_CASES_H
#define WEFT_BENCH_CTX_CASES_H

#include <stddef.h>

#include "report.h"

#define CTX_MAX_MEASURES 8

/* One repetition of a case: stores one value per measure in values[]
 * (NAN where the platform cannot tell, e.g. without mallinfo2). A failed
 * check (a context not canceled, a timer count off) prints one line to
 * stderr and exits with status 1; no memory, status 2. */
typedef void ctx_case_run(double *values);

typedef struct ctx_case {
    const char *name;
    const char *summary; /* one line for --list */
    size_t measure_count;
    measure_spec measures[CTX_MAX_MEASURES];
    ctx_case_run *run;
} ctx_case;

extern const ctx_case ctx_cases[];
extern const size_t ctx_case_count;

#endif
