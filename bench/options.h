/* options.h — weft-bench's command line: what to run and how to report. */
#ifndef WEFT_BENCH_OPTIONS_H
#define WEFT_BENCH_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "report.h"

/* A capacity list entry meaning "as many as the case's messages" (N). */
#define CAPACITY_MESSAGES (-1L)

#define MAX_CAPACITIES 32
#define MAX_WORKLOADS 32
#define MAX_CTX_CASES 8
#define MAX_PEERS 8

/* The grid's messages per case. Go's benchmarks and spawn have defaults
 * of their own (bench_workload's default_messages), chosen so that each
 * case takes 0.5-2 s on the 2-CPU project machine. */
#define DEFAULT_MESSAGES 1000000L
/* At capacity 0 and 1 the condvar baseline sleeps and wakes on every
 * message (0.03-0.1 M msgs/s on the 2-CPU project machine), so the default
 * grid sends fewer there and finishes in about a minute. */
#define DEFAULT_SMALL_CAPACITY_MESSAGES 50000L
#define DEFAULT_THREADS 4
#define DEFAULT_REPEAT 3
#define DEFAULT_TIMEOUT_SECONDS 120

typedef struct bench_options {
    bool workload_selected[MAX_WORKLOADS]; /* indexed like workloads[] */
    bool ctx_case_selected[MAX_CTX_CASES]; /* indexed like ctx_cases[] */
    bool peer_selected[MAX_PEERS];         /* indexed like peers[] */
    long capacities[MAX_CAPACITIES];       /* >= 0, or CAPACITY_MESSAGES */
    size_t capacity_count;
    long messages; /* 0: the defaults above */
    int threads;
    int repeat;
    int timeout_seconds; /* per run; 0: none */
    report_format format;
    const char *svg_path;         /* --svg: the chart's file; NULL: no chart */
    const char *latency_svg_path; /* --latency-svg: the latency chart's; NULL: none */
    bool list;
    bool help;
    bool quiet;
} bench_options;

/* Fills options from argv. Returns 0, or 2 after printing a one-line
 * error and the usage to stderr. */
int options_parse(bench_options *options, int argc, char **argv);

/* The usage text (--help). */
void options_usage(FILE *out);

/* Prints "weft-bench: <message>" and the usage to stderr; returns 2, the
 * exit status of bad usage. */
int options_error(const char *format, ...) __attribute__((format(printf, 1, 2)));

struct bench_workload;

/* The messages of a case of workload at this capacity entry
 * (CAPACITY_MESSAGES allowed): --messages if given, else the workload's
 * own default (Go's benchmarks, spawn), else the grid's defaults above. */
long options_messages_for(const bench_options *options, const struct bench_workload *workload,
                          long capacity);

#endif
