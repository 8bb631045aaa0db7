/* report.c — statistics over repetitions and the table, CSV and JSON
 * printers of weft-bench.
 *
 * Rates come from times: the median rate is messages / median seconds,
 * the min rate comes from the slowest run, the max from the fastest. A
 * peer's ratio is its median rate over the baseline's median rate in the
 * same case (above 1: faster than the baseline). */
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "workloads.h" /* LATENCY_GAP_NS */

struct bench_report {
    report_context context;
    case_result *cases;
    size_t case_count, case_capacity;
    case_result *latency_cases;
    size_t latency_case_count, latency_case_capacity;
    measures_result *measure_cases; /* the context group */
    size_t measure_case_count, measure_case_capacity;
};

static void *allocate(size_t count, size_t size) {
    void *memory = calloc(count ? count : 1, size);
    if (memory == NULL) {
        fputs("weft-bench: out of memory\n", stderr);
        exit(2);
    }
    return memory;
}

bench_report *report_new(const report_context *context) {
    bench_report *result = allocate(1, sizeof *result);
    result->context = *context;
    return result;
}

/* A new case at the end of *cases (grown as needed), with room for
 * `repeat` runs of each peer. */
static case_result *add_case(case_result **cases, size_t *count, size_t *capacity,
                             const case_result *shape, const char *const *peer_names,
                             const bool *is_baseline, int repeat) {
    if (*count == *capacity) {
        size_t grown = *capacity ? 2 * *capacity : 16;
        case_result *bigger = realloc(*cases, grown * sizeof *bigger);
        if (bigger == NULL) {
            fputs("weft-bench: out of memory\n", stderr);
            exit(2);
        }
        *cases = bigger;
        *capacity = grown;
    }
    case_result *added = &(*cases)[(*count)++];
    *added = *shape;
    added->peers = allocate(shape->peer_count, sizeof(peer_result));
    for (size_t i = 0; i < shape->peer_count; i++) {
        added->peers[i].peer = peer_names[i];
        added->peers[i].is_baseline = is_baseline != NULL && is_baseline[i];
        added->peers[i].seconds = allocate((size_t)repeat, sizeof(double));
        added->peers[i].cpu_seconds = allocate((size_t)repeat, sizeof(double));
    }
    return added;
}

case_result *report_add_case(bench_report *report, const char *workload, size_t capacity,
                             bool capacity_is_messages, const char *capacity_label, long messages,
                             int threads, size_t peer_count, const char *const *peer_names,
                             const bool *is_baseline, int repeat) {
    case_result shape = {workload, capacity, capacity_is_messages, capacity_label,
                         messages, threads,  peer_count,           NULL};
    return add_case(&report->cases, &report->case_count, &report->case_capacity, &shape, peer_names,
                    is_baseline, repeat);
}

case_result *report_add_latency_case(bench_report *report, const char *workload, size_t capacity,
                                     bool capacity_is_messages, long messages, int threads,
                                     size_t peer_count, const char *const *peer_names,
                                     const bool *is_baseline, int repeat) {
    case_result shape = {workload, capacity, capacity_is_messages, NULL,
                         messages, threads,  peer_count,           NULL};
    case_result *added =
        add_case(&report->latency_cases, &report->latency_case_count,
                 &report->latency_case_capacity, &shape, peer_names, is_baseline, repeat);
    for (size_t i = 0; i < peer_count; i++)
        added->peers[i].latency_ns = allocate((size_t)repeat * LATENCY_POINTS, sizeof(double));
    return added;
}

measures_result *report_add_measures(bench_report *report, const char *name, size_t count,
                                     const measure_spec *specs, int repeat) {
    if (report->measure_case_count == report->measure_case_capacity) {
        size_t grown = report->measure_case_capacity ? 2 * report->measure_case_capacity : 8;
        measures_result *cases = realloc(report->measure_cases, grown * sizeof *cases);
        if (cases == NULL) {
            fputs("weft-bench: out of memory\n", stderr);
            exit(2);
        }
        report->measure_cases = cases;
        report->measure_case_capacity = grown;
    }
    measures_result *added = &report->measure_cases[report->measure_case_count++];
    *added = (measures_result){name, count, allocate(count, sizeof(measure_result))};
    for (size_t i = 0; i < count; i++) {
        added->measures[i].spec = &specs[i];
        added->measures[i].values = allocate((size_t)repeat, sizeof(double));
    }
    return added;
}

static void free_cases(case_result *cases, size_t count) {
    for (size_t c = 0; c < count; c++) {
        for (size_t p = 0; p < cases[c].peer_count; p++) {
            free(cases[c].peers[p].seconds);
            free(cases[c].peers[p].cpu_seconds);
            free(cases[c].peers[p].latency_ns);
        }
        free(cases[c].peers);
    }
    free(cases);
}

void report_free(bench_report *report) {
    if (report == NULL) return;
    free_cases(report->cases, report->case_count);
    free_cases(report->latency_cases, report->latency_case_count);
    for (size_t c = 0; c < report->measure_case_count; c++) {
        for (size_t m = 0; m < report->measure_cases[c].count; m++)
            free(report->measure_cases[c].measures[m].values);
        free(report->measure_cases[c].measures);
    }
    free(report->measure_cases);
    free(report);
}

/* ---- statistics --------------------------------------------------------- */

static int compare_doubles(const void *left, const void *right) {
    double a = *(const double *)left, b = *(const double *)right;
    return (a > b) - (a < b);
}

/* Median of values[0..count), count >= 1; sorts a copy. */
static double median(const double *values, int count) {
    double sorted[count];
    memcpy(sorted, values, (size_t)count * sizeof *values);
    qsort(sorted, (size_t)count, sizeof *sorted, compare_doubles);
    return count % 2 ? sorted[count / 2] : (sorted[count / 2 - 1] + sorted[count / 2]) / 2;
}

void report_summarize(const peer_result *result, long messages, run_summary *summary) {
    double minimum = result->seconds[0], maximum = result->seconds[0];
    for (int i = 1; i < result->runs; i++) {
        if (result->seconds[i] < minimum) minimum = result->seconds[i];
        if (result->seconds[i] > maximum) maximum = result->seconds[i];
    }
    summary->median_seconds = median(result->seconds, result->runs);
    summary->min_seconds = minimum;
    summary->max_seconds = maximum;
    summary->median_cpu_seconds = median(result->cpu_seconds, result->runs);
    summary->median_rate = (double)messages / summary->median_seconds;
    summary->min_rate = (double)messages / maximum;
    summary->max_rate = (double)messages / minimum;
}

/* Median, min and max of values[0..count) that are not NAN. */
static void summarize_values(const double *given, int count, measure_summary *summary) {
    double values[count > 0 ? count : 1];
    int kept = 0;
    for (int i = 0; i < count; i++)
        if (!isnan(given[i])) values[kept++] = given[i];
    if (kept == 0) {
        *summary = (measure_summary){NAN, NAN, NAN};
        return;
    }
    summary->median = median(values, kept);
    summary->min = summary->max = values[0];
    for (int i = 1; i < kept; i++) {
        if (values[i] < summary->min) summary->min = values[i];
        if (values[i] > summary->max) summary->max = values[i];
    }
}

void report_summarize_measure(const measure_result *result, measure_summary *summary) {
    summarize_values(result->values, result->runs, summary);
}

void report_summarize_latency(const peer_result *result, size_t point, measure_summary *summary) {
    double values[result->runs > 0 ? result->runs : 1];
    for (int run = 0; run < result->runs; run++)
        values[run] = result->latency_ns[(size_t)run * LATENCY_POINTS + point];
    summarize_values(values, result->runs, summary);
}

const double latency_quantiles[LATENCY_POINTS] = {0,    0.25,  0.5,   0.75,   0.9, 0.95,
                                                  0.99, 0.995, 0.999, 0.9999, 1};

static int compare_longs(const void *left, const void *right) {
    long a = *(const long *)left, b = *(const long *)right;
    return (a > b) - (a < b);
}

void report_latency_points(long *samples, size_t count, double *points) {
    qsort(samples, count, sizeof *samples, compare_longs);
    for (size_t i = 0; i < LATENCY_POINTS; i++) {
        /* nearest rank: the smallest sample with at least q * count at or below it */
        double rank = ceil(latency_quantiles[i] * (double)count);
        size_t index = rank >= 1 ? (size_t)rank - 1 : 0;
        if (index >= count) index = count - 1;
        points[i] = (double)samples[index];
    }
}

const report_context *report_get_context(const bench_report *report) { return &report->context; }

size_t report_case_count(const bench_report *report) { return report->case_count; }

const case_result *report_case(const bench_report *report, size_t index) {
    return &report->cases[index];
}

size_t report_latency_case_count(const bench_report *report) { return report->latency_case_count; }

const case_result *report_latency_case(const bench_report *report, size_t index) {
    return &report->latency_cases[index];
}

const peer_result *report_baseline_of(const case_result *result) {
    for (size_t i = 0; i < result->peer_count; i++)
        if (result->peers[i].is_baseline && result->peers[i].runs > 0) return &result->peers[i];
    return NULL;
}

/* The figures of one printed row. */
typedef struct row {
    const case_result *result;
    const peer_result *peer;
    run_summary summary;
    double ns_per_message;
    double cpu_seconds_per_million; /* CPU seconds per million messages */
    const char *baseline;           /* the case's baseline peer, or NULL */
    bool has_ratio;                 /* false for the baseline and where it did not run */
    double ratio;
} row;

static void compute_row(const case_result *result, const peer_result *peer, row *out) {
    out->result = result;
    out->peer = peer;
    report_summarize(peer, result->messages, &out->summary);
    out->ns_per_message = out->summary.median_seconds * 1e9 / (double)result->messages;
    out->cpu_seconds_per_million =
        out->summary.median_cpu_seconds / ((double)result->messages / 1e6);
    const peer_result *baseline = report_baseline_of(result);
    out->baseline = baseline ? baseline->peer : NULL;
    out->has_ratio = baseline != NULL && !peer->is_baseline;
    if (out->has_ratio) {
        run_summary base;
        report_summarize(baseline, result->messages, &base);
        out->ratio = out->summary.median_rate / base.median_rate;
    }
}

/* The figures of one printed latency row, in ns. */
typedef struct latency_row {
    const case_result *result;
    const peer_result *peer;
    measure_summary points[LATENCY_POINTS]; /* over the runs, at each quantile */
    const char *baseline;                   /* the case's baseline peer, or NULL */
    bool has_ratio;                         /* false for the baseline and where it did not run */
    double p50_ratio, p99_ratio;            /* the baseline's median over this peer's */
} latency_row;

static void compute_latency_row(const case_result *result, const peer_result *peer,
                                latency_row *out) {
    out->result = result;
    out->peer = peer;
    for (size_t i = 0; i < LATENCY_POINTS; i++) report_summarize_latency(peer, i, &out->points[i]);
    const peer_result *baseline = report_baseline_of(result);
    out->baseline = baseline ? baseline->peer : NULL;
    out->has_ratio = baseline != NULL && !peer->is_baseline;
    if (out->has_ratio) {
        measure_summary p50, p99;
        report_summarize_latency(baseline, LATENCY_P50, &p50);
        report_summarize_latency(baseline, LATENCY_P99, &p99);
        out->p50_ratio = p50.median / out->points[LATENCY_P50].median;
        out->p99_ratio = p99.median / out->points[LATENCY_P99].median;
    }
}

/* ---- table -------------------------------------------------------------- */

/* Three significant digits without an exponent, for values in about
 * 0.001 .. 100000. */
static const char *significant(double value, char *buffer, size_t size) {
    const char *format = value >= 100  ? "%.0f"
                         : value >= 10 ? "%.1f"
                         : value >= 1  ? "%.2f"
                                       : "%.3f";
    snprintf(buffer, size, format, value);
    return buffer;
}

const char *report_capacity_text(const case_result *result, char *buffer, size_t size) {
    if (result->capacity_label != NULL)
        snprintf(buffer, size, "%s", result->capacity_label);
    else if (result->capacity_is_messages)
        snprintf(buffer, size, "N");
    else
        snprintf(buffer, size, "%zu", result->capacity);
    return buffer;
}

/* "machine: <CPU model>, cache-line round trip 52 ns between two threads" */
static void print_machine(const report_context *context, FILE *out) {
    fprintf(out, "machine: %s, ", context->cpu_model);
    if (isnan(context->round_trip_ns))
        fputs("cache-line round trip not measured (one CPU, or no core to spare)\n", out);
    else
        fprintf(out, "cache-line round trip %.0f ns between two threads\n", context->round_trip_ns);
}

/* Microseconds, as significant. */
static const char *microseconds(double ns, char *buffer, size_t size) {
    return significant(ns / 1e3, buffer, size);
}

static void print_channel_table(const bench_report *report, FILE *out) {
    const report_context *context = &report->context;
    fprintf(out,
            "weft-bench: %d threads (T), %d repetitions per case (median, min-max), %ld CPUs, "
            "load average %.2f at start\n",
            context->threads, context->repeat, context->cpus, context->load_average);
    print_machine(context, out);
    fprintf(out,
            "messages: %s; capacity N = messages\n"
            "A run's time covers channel make, thread start, transfer, join and release.\n"
            "msg: one value sent and received; in Go's benchmarks (chan_*, select_*) and spawn,\n"
            "what --list says, with Go's own figure there in the same unit.\n"
            "CPU s/M: user+system seconds of all threads per million messages.\n"
            "vs base: median rate over the baseline's median (%s), same case, same run.\n\n",
            context->messages_note, context->baseline_note);
    fprintf(out, "%-18s %-4s %9s  %-8s %8s  %-13s %8s %8s  %s\n", "workload", "cap", "messages",
            "peer", "M msg/s", "(min-max)", "ns/msg", "CPU s/M", "vs base");
    const char *last_workload = NULL;
    for (size_t c = 0; c < report->case_count; c++) {
        const case_result *result = &report->cases[c];
        if (last_workload != NULL && strcmp(last_workload, result->workload) != 0) fputc('\n', out);
        last_workload = result->workload;
        char capacity[32];
        report_capacity_text(result, capacity, sizeof capacity);
        for (size_t p = 0; p < result->peer_count; p++) {
            if (result->peers[p].runs == 0) continue;
            row line;
            compute_row(result, &result->peers[p], &line);
            char rate[16], low[16], high[16], spread[40], ns[16], cpu[16], ratio[24];
            significant(line.summary.median_rate / 1e6, rate, sizeof rate);
            snprintf(spread, sizeof spread, "(%s-%s)",
                     significant(line.summary.min_rate / 1e6, low, sizeof low),
                     significant(line.summary.max_rate / 1e6, high, sizeof high));
            significant(line.ns_per_message, ns, sizeof ns);
            significant(line.cpu_seconds_per_million, cpu, sizeof cpu);
            if (line.has_ratio)
                snprintf(ratio, sizeof ratio, "%sx", significant(line.ratio, low, sizeof low));
            else
                snprintf(ratio, sizeof ratio, "%s", line.peer->is_baseline ? "" : "-");
            fprintf(out, "%-18s %-4s %9ld  %-8s %8s  %-13s %8s %8s", result->workload, capacity,
                    result->messages, line.peer->peer, rate, spread, ns, cpu);
            if (ratio[0] != '\0') fprintf(out, "  %s", ratio);
            fputc('\n', out);
        }
    }
}

/* As significant, for values of either sign; "n/a" for NAN. */
static const char *figure(double value, char *buffer, size_t size) {
    if (isnan(value)) {
        snprintf(buffer, size, "n/a");
        return buffer;
    }
    double magnitude = fabs(value);
    const char *format = magnitude >= 100  ? "%.0f"
                         : magnitude >= 10 ? "%.1f"
                         : magnitude >= 1  ? "%.2f"
                                           : "%.3f";
    snprintf(buffer, size, format, value);
    return buffer;
}

/* The context group: one row per measure, "-" where the channel table
 * has its ratio (the baseline has no contexts), and, for a measure with
 * a limit, whether the median stays below it. */
static void print_measure_table(const bench_report *report, FILE *out) {
    const report_context *context = &report->context;
    fprintf(out,
            "weft-bench contexts (-w ctx): weft only, one thread; %d repetitions per case "
            "(median, min-max), %ld CPUs, load average %.2f at start\n"
            "Each repetition interleaves what it compares block by block and takes the median "
            "block;\na difference (a - b) is the median of the paired blocks' differences.\n"
            "vs base: -, no baseline (%s) has contexts.\n",
            context->repeat, context->cpus, context->load_average, context->baseline_note);
    print_machine(context, out);
    fputc('\n', out);
    int measure_width = (int)strlen("measure");
    for (size_t c = 0; c < report->measure_case_count; c++)
        for (size_t m = 0; m < report->measure_cases[c].count; m++) {
            int width = (int)strlen(report->measure_cases[c].measures[m].spec->name);
            if (width > measure_width) measure_width = width;
        }
    fprintf(out, "%-18s %-*s %8s  %-19s %-8s %s\n", "case", measure_width, "measure", "median",
            "(min-max)", "unit", "vs base");
    for (size_t c = 0; c < report->measure_case_count; c++) {
        const measures_result *result = &report->measure_cases[c];
        if (c > 0) fputc('\n', out);
        for (size_t m = 0; m < result->count; m++) {
            const measure_result *measure = &result->measures[m];
            if (measure->runs == 0) continue;
            measure_summary summary;
            report_summarize_measure(measure, &summary);
            char median_text[24], low[24], high[24], spread[56];
            figure(summary.median, median_text, sizeof median_text);
            snprintf(spread, sizeof spread, "(%s-%s)", figure(summary.min, low, sizeof low),
                     figure(summary.max, high, sizeof high));
            fprintf(out, "%-18s %-*s %8s  %-19s %-8s -", result->name, measure_width,
                    measure->spec->name, median_text, spread, measure->spec->unit);
            if (measure->spec->limit > 0 && !isnan(summary.median))
                fprintf(out, "  limit %s: %s", figure(measure->spec->limit, low, sizeof low),
                        summary.median < measure->spec->limit ? "met" : "EXCEEDED");
            fputc('\n', out);
        }
    }
}

static void print_latency_table(const bench_report *report, FILE *out) {
    const report_context *context = &report->context;
    fprintf(
        out,
        "weft-bench latency (-w latency): microseconds from just before a send to just after\n"
        "its receive (one clock read included), every message of every run; per run its min,\n"
        "p50, p99, p99.9 and max; here the median over %d runs (min-max). latency_light: 1\n"
        "producer, a message every %ld us, so each finds the receiver idle (the wake-up path).\n"
        "latency_full: T producers back to back: hand-off plus time queued behind the\n"
        "others (at capacity N the whole backlog: it grows with the messages).\n"
        "vs base: the baseline's (%s) median p50 / p99 over this peer's; above 1: faster.\n",
        context->repeat, LATENCY_GAP_NS / 1000, context->baseline);
    print_machine(context, out);
    fprintf(out, "\n%-18s %-4s %9s  %-8s %8s %8s  %-15s %8s  %-15s %8s %8s  %s\n", "workload",
            "cap", "samples", "peer", "min", "p50", "(min-max)", "p99", "(min-max)", "p99.9", "max",
            "vs base p50/p99");
    const char *last_workload = NULL;
    for (size_t c = 0; c < report->latency_case_count; c++) {
        const case_result *result = &report->latency_cases[c];
        if (last_workload != NULL && strcmp(last_workload, result->workload) != 0) fputc('\n', out);
        last_workload = result->workload;
        char capacity[32];
        report_capacity_text(result, capacity, sizeof capacity);
        for (size_t p = 0; p < result->peer_count; p++) {
            if (result->peers[p].runs == 0) continue;
            latency_row line;
            compute_latency_row(result, &result->peers[p], &line);
            char text[LATENCY_POINTS][16], low[16], high[16], spread[2][40], ratio[40];
            for (size_t i = 0; i < LATENCY_POINTS; i++)
                microseconds(line.points[i].median, text[i], sizeof text[i]);
            static const size_t spread_points[2] = {LATENCY_P50, LATENCY_P99};
            for (size_t i = 0; i < 2; i++)
                snprintf(spread[i], sizeof spread[i], "(%s-%s)",
                         microseconds(line.points[spread_points[i]].min, low, sizeof low),
                         microseconds(line.points[spread_points[i]].max, high, sizeof high));
            if (line.has_ratio)
                snprintf(ratio, sizeof ratio, "%sx/%sx",
                         significant(line.p50_ratio, low, sizeof low),
                         significant(line.p99_ratio, high, sizeof high));
            else
                snprintf(ratio, sizeof ratio, "%s", line.peer->is_baseline ? "" : "-");
            fprintf(out, "%-18s %-4s %9ld  %-8s %8s %8s  %-15s %8s  %-15s %8s %8s",
                    result->workload, capacity, result->messages, line.peer->peer,
                    text[LATENCY_MIN], text[LATENCY_P50], spread[0], text[LATENCY_P99], spread[1],
                    text[LATENCY_P999], text[LATENCY_MAX]);
            if (ratio[0] != '\0') fprintf(out, "  %s", ratio);
            fputc('\n', out);
        }
    }
}

static void print_table(const bench_report *report, FILE *out) {
    if (report->case_count > 0) print_channel_table(report, out);
    if (report->latency_case_count > 0) {
        if (report->case_count > 0) fputc('\n', out);
        print_latency_table(report, out);
    }
    if (report->measure_case_count == 0) return;
    if (report->case_count + report->latency_case_count > 0) fputc('\n', out);
    print_measure_table(report, out);
}

/* ---- CSV ---------------------------------------------------------------- */

static void print_channel_csv(const bench_report *report, FILE *out) {
    fprintf(out, "workload,capacity,capacity_is_messages,capacity_label,messages,threads,peer,runs,"
                 "median_seconds,min_seconds,max_seconds,median_mmsgs_per_second,"
                 "min_mmsgs_per_second,max_mmsgs_per_second,ns_per_message,"
                 "cpu_seconds_per_mmsg,baseline,ratio_to_baseline\n");
    for (size_t c = 0; c < report->case_count; c++) {
        const case_result *result = &report->cases[c];
        char capacity[32];
        report_capacity_text(result, capacity, sizeof capacity);
        for (size_t p = 0; p < result->peer_count; p++) {
            if (result->peers[p].runs == 0) continue;
            row line;
            compute_row(result, &result->peers[p], &line);
            fprintf(out, "%s,%zu,%d,%s,%ld,%d,%s,%d,%.6f,%.6f,%.6f,%.4f,%.4f,%.4f,%.2f,%.5f,%s,",
                    result->workload, result->capacity, result->capacity_is_messages, capacity,
                    result->messages, result->threads, line.peer->peer, line.peer->runs,
                    line.summary.median_seconds, line.summary.min_seconds, line.summary.max_seconds,
                    line.summary.median_rate / 1e6, line.summary.min_rate / 1e6,
                    line.summary.max_rate / 1e6, line.ns_per_message, line.cpu_seconds_per_million,
                    line.baseline ? line.baseline : "");
            if (line.has_ratio) fprintf(out, "%.4f", line.ratio);
            fputc('\n', out);
        }
    }
}

/* A number, or nothing for NAN. */
static void print_csv_number(FILE *out, double value) {
    if (!isnan(value)) fprintf(out, "%.4f", value);
}

/* Measure names may hold commas: they are quoted (they hold no quotes). */
static void print_measure_csv(const bench_report *report, FILE *out) {
    fputs("case,measure,unit,runs,median,min,max,limit,ratio_to_baseline\n", out);
    for (size_t c = 0; c < report->measure_case_count; c++) {
        const measures_result *result = &report->measure_cases[c];
        for (size_t m = 0; m < result->count; m++) {
            const measure_result *measure = &result->measures[m];
            if (measure->runs == 0) continue;
            measure_summary summary;
            report_summarize_measure(measure, &summary);
            fprintf(out, "%s,\"%s\",%s,%d,", result->name, measure->spec->name, measure->spec->unit,
                    measure->runs);
            print_csv_number(out, summary.median);
            fputc(',', out);
            print_csv_number(out, summary.min);
            fputc(',', out);
            print_csv_number(out, summary.max);
            fputc(',', out);
            if (measure->spec->limit > 0) print_csv_number(out, measure->spec->limit);
            fputs(",\n", out); /* no ratio: the baseline has no contexts */
        }
    }
}

/* Latency in microseconds: min, p50 (median, min, max over the runs), p99
 * (the same), p99.9 and max (medians), then the ratios of p50 and p99. */
static void print_latency_csv(const bench_report *report, FILE *out) {
    fputs("workload,capacity,capacity_is_messages,capacity_label,samples,threads,peer,runs,"
          "min_us,p50_us,p50_min_us,p50_max_us,p99_us,p99_min_us,p99_max_us,p999_us,max_us,"
          "baseline,p50_ratio_to_baseline,p99_ratio_to_baseline\n",
          out);
    for (size_t c = 0; c < report->latency_case_count; c++) {
        const case_result *result = &report->latency_cases[c];
        char capacity[32];
        report_capacity_text(result, capacity, sizeof capacity);
        for (size_t p = 0; p < result->peer_count; p++) {
            if (result->peers[p].runs == 0) continue;
            latency_row line;
            compute_latency_row(result, &result->peers[p], &line);
            const measure_summary *points = line.points;
            fprintf(out,
                    "%s,%zu,%d,%s,%ld,%d,%s,%d,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%s,",
                    result->workload, result->capacity, result->capacity_is_messages, capacity,
                    result->messages, result->threads, line.peer->peer, line.peer->runs,
                    points[LATENCY_MIN].median / 1e3, points[LATENCY_P50].median / 1e3,
                    points[LATENCY_P50].min / 1e3, points[LATENCY_P50].max / 1e3,
                    points[LATENCY_P99].median / 1e3, points[LATENCY_P99].min / 1e3,
                    points[LATENCY_P99].max / 1e3, points[LATENCY_P999].median / 1e3,
                    points[LATENCY_MAX].median / 1e3, line.baseline ? line.baseline : "");
            if (line.has_ratio)
                fprintf(out, "%.4f,%.4f", line.p50_ratio, line.p99_ratio);
            else
                fputc(',', out);
            fputc('\n', out);
        }
    }
}

/* The channel block, the latency block and the context block, each with
 * its own header, a blank line between two; any alone when only it ran. */
static void print_csv(const bench_report *report, FILE *out) {
    if (report->case_count > 0) print_channel_csv(report, out);
    if (report->latency_case_count > 0) {
        if (report->case_count > 0) fputc('\n', out);
        print_latency_csv(report, out);
    }
    if (report->measure_case_count == 0) return;
    if (report->case_count + report->latency_case_count > 0) fputc('\n', out);
    print_measure_csv(report, out);
}

/* ---- JSON --------------------------------------------------------------- */

static void print_json_array(FILE *out, const double *values, int count) {
    fputc('[', out);
    for (int i = 0; i < count; i++) fprintf(out, "%s%.6f", i ? ", " : "", values[i]);
    fputc(']', out);
}

/* A number, or null for NAN (JSON has no NaN). */
static void print_json_number(FILE *out, double value) {
    if (isnan(value))
        fputs("null", out);
    else
        fprintf(out, "%.4f", value);
}

static void print_json_measures(const bench_report *report, FILE *out) {
    fputs(",\n  \"context_results\": [", out);
    bool first = true;
    for (size_t c = 0; c < report->measure_case_count; c++) {
        const measures_result *result = &report->measure_cases[c];
        for (size_t m = 0; m < result->count; m++) {
            const measure_result *measure = &result->measures[m];
            if (measure->runs == 0) continue;
            measure_summary summary;
            report_summarize_measure(measure, &summary);
            fprintf(out,
                    "%s\n    {\"case\": \"%s\", \"measure\": \"%s\", \"unit\": \"%s\",\n"
                    "     \"values\": [",
                    first ? "" : ",", result->name, measure->spec->name, measure->spec->unit);
            for (int i = 0; i < measure->runs; i++) {
                if (i > 0) fputs(", ", out);
                print_json_number(out, measure->values[i]);
            }
            fputs("], \"median\": ", out);
            print_json_number(out, summary.median);
            fputs(", \"min\": ", out);
            print_json_number(out, summary.min);
            fputs(", \"max\": ", out);
            print_json_number(out, summary.max);
            fputs(", \"limit\": ", out);
            if (measure->spec->limit > 0)
                print_json_number(out, measure->spec->limit);
            else
                fputs("null", out);
            fputs(", \"ratio_to_baseline\": null}", out);
            first = false;
        }
    }
    fputs("\n  ]", out);
}

/* {"median": m, "min": a, "max": b} in microseconds. */
static void print_json_spread(FILE *out, const measure_summary *summary) {
    fprintf(out, "{\"median\": %.4f, \"min\": %.4f, \"max\": %.4f}", summary->median / 1e3,
            summary->min / 1e3, summary->max / 1e3);
}

/* Each row: every run's value at every quantile ("us", one array per
 * run), their median per quantile, and the headline figures. */
static void print_json_latency(const bench_report *report, FILE *out) {
    fputs(",\n  \"latency_quantiles\": ", out);
    print_json_array(out, latency_quantiles, LATENCY_POINTS);
    fputs(",\n  \"latency_results\": [", out);
    bool first = true;
    for (size_t c = 0; c < report->latency_case_count; c++) {
        const case_result *result = &report->latency_cases[c];
        char capacity[32];
        report_capacity_text(result, capacity, sizeof capacity);
        for (size_t p = 0; p < result->peer_count; p++) {
            const peer_result *peer = &result->peers[p];
            if (peer->runs == 0) continue;
            latency_row line;
            compute_latency_row(result, peer, &line);
            fprintf(out,
                    "%s\n    {\"workload\": \"%s\", \"capacity\": %zu, "
                    "\"capacity_is_messages\": %s, \"capacity_label\": \"%s\", "
                    "\"samples\": %ld, \"threads\": %d, \"peer\": \"%s\",\n     \"us\": [",
                    first ? "" : ",", result->workload, result->capacity,
                    result->capacity_is_messages ? "true" : "false", capacity, result->messages,
                    result->threads, peer->peer);
            for (int run = 0; run < peer->runs; run++) {
                double values[LATENCY_POINTS];
                for (size_t i = 0; i < LATENCY_POINTS; i++)
                    values[i] = peer->latency_ns[(size_t)run * LATENCY_POINTS + i] / 1e3;
                fputs(run ? ", " : "", out);
                print_json_array(out, values, LATENCY_POINTS);
            }
            double medians[LATENCY_POINTS];
            for (size_t i = 0; i < LATENCY_POINTS; i++) medians[i] = line.points[i].median / 1e3;
            fputs("], \"median_us\": ", out);
            print_json_array(out, medians, LATENCY_POINTS);
            static const struct {
                const char *name;
                size_t point;
            } headline[] = {{"min_us", LATENCY_MIN},
                            {"p50_us", LATENCY_P50},
                            {"p99_us", LATENCY_P99},
                            {"p999_us", LATENCY_P999},
                            {"max_us", LATENCY_MAX}};
            for (size_t i = 0; i < sizeof headline / sizeof headline[0]; i++) {
                fprintf(out, ",%s\"%s\": ", i == 0 ? "\n     " : " ", headline[i].name);
                print_json_spread(out, &line.points[headline[i].point]);
            }
            fputs(",\n     \"baseline\": ", out);
            if (line.baseline)
                fprintf(out, "\"%s\"", line.baseline);
            else
                fputs("null", out);
            if (line.has_ratio)
                fprintf(out, ", \"p50_ratio_to_baseline\": %.4f, \"p99_ratio_to_baseline\": %.4f}",
                        line.p50_ratio, line.p99_ratio);
            else
                fputs(", \"p50_ratio_to_baseline\": null, \"p99_ratio_to_baseline\": null}", out);
            first = false;
        }
    }
    fputs("\n  ]", out);
}

/* Names and notes are ours (no quotes or control characters; machine.c
 * cleans the CPU model), so they go out verbatim. */
static void print_json(const bench_report *report, FILE *out) {
    const report_context *context = &report->context;
    fprintf(out,
            "{\n  \"tool\": \"weft-bench\",\n  \"threads\": %d,\n  \"repeat\": %d,\n"
            "  \"cpus\": %ld,\n  \"load_average\": %.2f,\n  \"baseline\": \"%s\",\n  \"messages\": "
            "\"%s\",\n  \"cpu_model\": \"%s\",\n  \"round_trip_ns\": ",
            context->threads, context->repeat, context->cpus, context->load_average,
            context->baseline, context->messages_note, context->cpu_model);
    if (isnan(context->round_trip_ns))
        fputs("null", out);
    else
        fprintf(out, "%.1f", context->round_trip_ns);
    fputs(",\n  \"results\": [", out);
    bool first = true;
    for (size_t c = 0; c < report->case_count; c++) {
        const case_result *result = &report->cases[c];
        for (size_t p = 0; p < result->peer_count; p++) {
            if (result->peers[p].runs == 0) continue;
            row line;
            compute_row(result, &result->peers[p], &line);
            char capacity[32];
            report_capacity_text(result, capacity, sizeof capacity);
            fprintf(out,
                    "%s\n    {\"workload\": \"%s\", \"capacity\": %zu, "
                    "\"capacity_is_messages\": %s, \"capacity_label\": \"%s\", "
                    "\"messages\": %ld, \"threads\": %d, \"peer\": \"%s\",\n     \"seconds\": ",
                    first ? "" : ",", result->workload, result->capacity,
                    result->capacity_is_messages ? "true" : "false", capacity, result->messages,
                    result->threads, line.peer->peer);
            print_json_array(out, line.peer->seconds, line.peer->runs);
            fputs(", \"cpu_seconds\": ", out);
            print_json_array(out, line.peer->cpu_seconds, line.peer->runs);
            fprintf(out,
                    ",\n     \"mmsgs_per_second\": {\"median\": %.4f, \"min\": %.4f, "
                    "\"max\": %.4f}, \"ns_per_message\": %.2f, "
                    "\"cpu_seconds_per_mmsg\": %.5f, \"baseline\": ",
                    line.summary.median_rate / 1e6, line.summary.min_rate / 1e6,
                    line.summary.max_rate / 1e6, line.ns_per_message, line.cpu_seconds_per_million);
            if (line.baseline)
                fprintf(out, "\"%s\"", line.baseline);
            else
                fputs("null", out);
            fputs(", \"ratio_to_baseline\": ", out);
            if (line.has_ratio)
                fprintf(out, "%.4f}", line.ratio);
            else
                fputs("null}", out);
            first = false;
        }
    }
    fputs("\n  ]", out);
    print_json_latency(report, out);
    print_json_measures(report, out);
    fputs("\n}\n", out);
}

void report_print(const bench_report *report, report_format format, FILE *out) {
    switch (format) {
    case FORMAT_TABLE: print_table(report, out); break;
    case FORMAT_CSV: print_csv(report, out); break;
    case FORMAT_JSON: print_json(report, out); break;
    }
    fflush(out);
}
