/* report.h — weft-bench's results and how they are printed.
 *
 * The runner records, per case (workload x capacity) and per peer, the
 * wall seconds and CPU seconds of every repetition; the report turns them
 * into messages per second (median, min, max), ns per message, CPU
 * seconds per million messages, and each peer's ratio to the baseline
 * measured in the same case, and prints them as a table, CSV or JSON.
 * Cases of the context group carry named measures instead (below), and
 * latency cases percentiles of send-to-receive times (below). */
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
    /* Latency cases: LATENCY_POINTS values per run, run r's at
     * [r * LATENCY_POINTS]; else NULL. */
    double *latency_ns;
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

/* Latency cases (workloads latency, latency_loaded) keep, per run, the
 * send-to-receive time in ns at each of these quantiles of the run's
 * samples: latency_quantiles[i] of them took at most the i-th value
 * (nearest rank; 0 is the fastest sample, 1 the slowest). */
#define LATENCY_POINTS 11
extern const double latency_quantiles[LATENCY_POINTS];
enum { LATENCY_MIN = 0, LATENCY_P50 = 2, LATENCY_P99 = 6, LATENCY_P999 = 8, LATENCY_MAX = 10 };

/* Sorts samples[0..count) (ns, count >= 1) and stores their value at each
 * of latency_quantiles in points[]. */
void report_latency_points(long *samples, size_t count, double *points);

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
    const char *cpu_model;     /* /proc/cpuinfo's model name (machine.h) */
    double round_trip_ns;      /* cache-line round trip between two threads; NAN: not measured */
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

/* Adds a latency case, as report_add_case does a channel case, with room
 * for `repeat` runs of LATENCY_POINTS per peer. Latency cases are kept
 * apart from the channel cases: printed in a section of their own and
 * drawn by chart_write_latency_svg. Valid until report_free. */
case_result *report_add_latency_case(bench_report *report, const char *workload, size_t capacity,
                                     bool capacity_is_messages, long messages, int threads,
                                     size_t peer_count, const char *const *peer_names,
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

/* The latency cases in the order added (index < report_latency_case_count). */
size_t report_latency_case_count(const bench_report *report);
const case_result *report_latency_case(const bench_report *report, size_t index);

/* The peer of a case that the others' ratios divide by, when it ran;
 * else NULL. */
const peer_result *report_baseline_of(const case_result *result);

/* The capacity as the table shows it: the label, N, or the number. */
const char *report_capacity_text(const case_result *result, char *buffer, size_t size);

/* Median, min and max over the runs recorded in result (runs >= 1). */
void report_summarize(const peer_result *result, long messages, run_summary *summary);

void report_summarize_measure(const measure_result *result, measure_summary *summary);

/* Median, min and max over the runs recorded in result (runs >= 1, a
 * latency case's) of its value at latency_quantiles[point], in ns. */
void report_summarize_latency(const peer_result *result, size_t point, measure_summary *summary);

/* Prints every case in the given format: the channel cases, then the
 * latency cases and then those of the context group, each in a section of
 * their own (table), a block of their own after a blank line with its own
 * header (CSV), or "latency_results" and "context_results" beside
 * "results" (JSON). */
void report_print(const bench_report *report, report_format format, FILE *out);

void report_free(bench_report *report);

#endif
