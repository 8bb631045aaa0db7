/* report.h — weft-bench's results and how they are printed.
 *
 * The runner records, per case (workload x capacity) and per peer, the
 * wall seconds and CPU seconds of every repetition; the report turns them
 * into messages per second (median, min, max), ns per message, CPU
 * seconds per million messages, and each peer's ratio to the baseline
 * measured in the same case, and prints them as a table, CSV or JSON.
 * Cases of the context group carry named measures instead (below). */
#ifndef WEFT_BENCH_REPORT_H
#define WEFT_BENCH_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum report_format { FORMAT_TABLE, FORMAT_CSV, FORMAT_JSON } report_format;

/* One peer's repetitions of one case. */
typedef struct peer_result {
    const char *peer;    /* static name */
    bool is_baseline;    /* ratios of the other peers divide by this one */
    int runs;            /* repetitions recorded so far */
    double *seconds;     /* wall time of each run */
    double *cpu_seconds; /* user + system time of the process during each run */
} peer_result;

/* Statistics over a peer_result's runs. */
typedef struct run_summary {
    double median_seconds, min_seconds, max_seconds;
    double median_cpu_seconds;
    double median_rate, min_rate, max_rate; /* messages per second */
} run_summary;

typedef struct case_result {
    const char *workload; /* static name */
    size_t capacity;
    bool capacity_is_messages;  /* capacity was given as N */
    const char *capacity_label; /* static; NULL: the number, or N (Go's: "100T", "0/1"...) */
    long messages;              /* transferred per run */
    int threads;
    size_t peer_count;
    peer_result *peers;
} case_result;

/* The context group (ctx_cases.h) reports named figures instead of a
 * message rate: one measure_result per figure, one value per repetition. */
typedef struct measure_spec {
    const char *name; /* what is measured, one line */
    const char *unit; /* "ns/op", "us/tree", "bytes", "count", ... */
    double limit;     /* > 0: the median should stay below it (the table says whether) */
} measure_spec;

typedef struct measure_result {
    const measure_spec *spec; /* static */
    int runs;                 /* repetitions recorded so far */
    double *values;           /* one per run; NAN: not measurable here */
} measure_result;

/* Median, min and max of a measure's values that are not NAN; all NAN
 * when none is. */
typedef struct measure_summary {
    double median, min, max;
} measure_summary;

typedef struct measures_result {
    const char *name; /* the case, static */
    size_t count;
    measure_result *measures;
} measures_result;

/* Facts about the whole run, printed in the header (table, JSON). */
typedef struct report_context {
    int threads;
    int repeat;
    long cpus;
    double load_average;       /* 1-minute load average at the start; < 0: unknown */
    const char *baseline;      /* name of the channel cases' baseline peer */
    const char *baseline_note; /* every baseline, e.g. "condvar; pthread for spawn" */
    const char *messages_note; /* e.g. "1000000 (50000 at capacity 0 and 1)" */
} report_context;

typedef struct bench_report bench_report;

/* A new, empty report. Exits with status 2 when memory runs out (as do
 * the other functions that allocate). */
bench_report *report_new(const report_context *context);

/* Adds a case with room for `repeat` runs of each of peer_count peers
 * (named by peer_names; is_baseline marks the baseline peer, or NULL);
 * returns it for the runner to fill in. Valid until report_free. */
case_result *report_add_case(bench_report *report, const char *workload, size_t capacity,
                             bool capacity_is_messages, const char *capacity_label, long messages,
                             int threads, size_t peer_count, const char *const *peer_names,
                             const bool *is_baseline, int repeat);

/* Adds a case of the context group with room for `repeat` values of each
 * of count measures (specs: static); returns it for the runner to fill in.
 * Valid until report_free. */
measures_result *report_add_measures(bench_report *report, const char *name, size_t count,
                                     const measure_spec *specs, int repeat);

/* The report's context, and its channel cases in the order added (index <
 * report_case_count): for other writers of the results (chart.c). */
const report_context *report_get_context(const bench_report *report);
size_t report_case_count(const bench_report *report);
const case_result *report_case(const bench_report *report, size_t index);

/* The peer of a case that the others' ratios divide by, when it ran;
 * else NULL. */
const peer_result *report_baseline_of(const case_result *result);

/* The capacity as the table shows it: the label, N, or the number. */
const char *report_capacity_text(const case_result *result, char *buffer, size_t size);

/* Median, min and max over the runs recorded in result (runs >= 1). */
void report_summarize(const peer_result *result, long messages, run_summary *summary);

void report_summarize_measure(const measure_result *result, measure_summary *summary);

/* Prints every case in the given format: the channel cases, then those of
 * the context group in a section of their own (table), a second block
 * after a blank line with its own header (CSV), or "context_results"
 * beside "results" (JSON). */
void report_print(const bench_report *report, report_format format, FILE *out);

void report_free(bench_report *report);

#endif
