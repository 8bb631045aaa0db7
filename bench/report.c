/* report.c — statistics over repetitions and the table, CSV and JSON
 * printers of weft-bench.
 *
 * Rates come from times: the median rate is messages / median seconds,
 * the min rate comes from the slowest run, the max from the fastest. A
 * peer's ratio is its median rate over the baseline's median rate in the
 * same case (above 1: faster than the baseline). */
#include "report.h"

#include <stdlib.h>
#include <string.h>

struct bench_report {
    report_context context;
    case_result *cases;
    size_t case_count, case_capacity;
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

case_result *report_add_case(bench_report *report, const char *workload, size_t capacity,
                             bool capacity_is_messages, long messages, int threads,
                             size_t peer_count, const char *const *peer_names,
                             const bool *is_baseline, int repeat) {
    if (report->case_count == report->case_capacity) {
        size_t grown = report->case_capacity ? 2 * report->case_capacity : 16;
        case_result *cases = realloc(report->cases, grown * sizeof *cases);
        if (cases == NULL) {
            fputs("weft-bench: out of memory\n", stderr);
            exit(2);
        }
        report->cases = cases;
        report->case_capacity = grown;
    }
    case_result *added = &report->cases[report->case_count++];
    *added = (case_result){workload,
                           capacity,
                           capacity_is_messages,
                           messages,
                           threads,
                           peer_count,
                           allocate(peer_count, sizeof(peer_result))};
    for (size_t i = 0; i < peer_count; i++) {
        added->peers[i].peer = peer_names[i];
        added->peers[i].is_baseline = is_baseline != NULL && is_baseline[i];
        added->peers[i].seconds = allocate((size_t)repeat, sizeof(double));
        added->peers[i].cpu_seconds = allocate((size_t)repeat, sizeof(double));
    }
    return added;
}

void report_free(bench_report *report) {
    if (report == NULL) return;
    for (size_t c = 0; c < report->case_count; c++) {
        for (size_t p = 0; p < report->cases[c].peer_count; p++) {
            free(report->cases[c].peers[p].seconds);
            free(report->cases[c].peers[p].cpu_seconds);
        }
        free(report->cases[c].peers);
    }
    free(report->cases);
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

/* The baseline of a case, or NULL when it did not run there. */
static const peer_result *baseline_of(const case_result *result) {
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
    const peer_result *baseline = baseline_of(result);
    out->has_ratio = baseline != NULL && !peer->is_baseline;
    if (out->has_ratio) {
        run_summary base;
        report_summarize(baseline, result->messages, &base);
        out->ratio = out->summary.median_rate / base.median_rate;
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

static void capacity_text(const case_result *result, char *buffer, size_t size) {
    if (result->capacity_is_messages)
        snprintf(buffer, size, "N");
    else
        snprintf(buffer, size, "%zu", result->capacity);
}

static void print_table(const bench_report *report, FILE *out) {
    const report_context *context = &report->context;
    fprintf(out,
            "weft-bench: %d threads (T), %d repetitions per case (median, min-max), %ld CPUs, "
            "load average %.2f at start\n",
            context->threads, context->repeat, context->cpus, context->load_average);
    fprintf(out,
            "messages: %s; capacity N = messages\n"
            "A run's time covers channel make, thread start, transfer, join and release.\n"
            "CPU s/M: user+system seconds of all threads per million messages.\n"
            "vs %s: median rate over the baseline's median, same case, same run.\n\n",
            context->messages_note, context->baseline);
    char ratio_title[64];
    snprintf(ratio_title, sizeof ratio_title, "vs %s", context->baseline);
    fprintf(out, "%-12s %-4s %8s  %-8s %8s  %-13s %8s %8s  %s\n", "workload", "cap", "messages",
            "peer", "M msg/s", "(min-max)", "ns/msg", "CPU s/M", ratio_title);
    const char *last_workload = NULL;
    for (size_t c = 0; c < report->case_count; c++) {
        const case_result *result = &report->cases[c];
        if (last_workload != NULL && strcmp(last_workload, result->workload) != 0) fputc('\n', out);
        last_workload = result->workload;
        char capacity[32];
        capacity_text(result, capacity, sizeof capacity);
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
            fprintf(out, "%-12s %-4s %8ld  %-8s %8s  %-13s %8s %8s", result->workload, capacity,
                    result->messages, line.peer->peer, rate, spread, ns, cpu);
            if (ratio[0] != '\0') fprintf(out, "  %s", ratio);
            fputc('\n', out);
        }
    }
}

/* ---- CSV ---------------------------------------------------------------- */

static void print_csv(const bench_report *report, FILE *out) {
    fprintf(out,
            "workload,capacity,capacity_is_messages,messages,threads,peer,runs,"
            "median_seconds,min_seconds,max_seconds,median_mmsgs_per_second,"
            "min_mmsgs_per_second,max_mmsgs_per_second,ns_per_message,"
            "cpu_seconds_per_mmsg,ratio_to_%s\n",
            report->context.baseline);
    for (size_t c = 0; c < report->case_count; c++) {
        const case_result *result = &report->cases[c];
        for (size_t p = 0; p < result->peer_count; p++) {
            if (result->peers[p].runs == 0) continue;
            row line;
            compute_row(result, &result->peers[p], &line);
            fprintf(out, "%s,%zu,%d,%ld,%d,%s,%d,%.6f,%.6f,%.6f,%.4f,%.4f,%.4f,%.2f,%.5f,",
                    result->workload, result->capacity, result->capacity_is_messages,
                    result->messages, result->threads, line.peer->peer, line.peer->runs,
                    line.summary.median_seconds, line.summary.min_seconds, line.summary.max_seconds,
                    line.summary.median_rate / 1e6, line.summary.min_rate / 1e6,
                    line.summary.max_rate / 1e6, line.ns_per_message, line.cpu_seconds_per_million);
            if (line.has_ratio) fprintf(out, "%.4f", line.ratio);
            fputc('\n', out);
        }
    }
}

/* ---- JSON --------------------------------------------------------------- */

static void print_json_array(FILE *out, const double *values, int count) {
    fputc('[', out);
    for (int i = 0; i < count; i++) fprintf(out, "%s%.6f", i ? ", " : "", values[i]);
    fputc(']', out);
}

/* Names and notes are ours (no quotes or control characters), so they go
 * out verbatim. */
static void print_json(const bench_report *report, FILE *out) {
    const report_context *context = &report->context;
    fprintf(out,
            "{\n  \"tool\": \"weft-bench\",\n  \"threads\": %d,\n  \"repeat\": %d,\n"
            "  \"cpus\": %ld,\n  \"load_average\": %.2f,\n  \"baseline\": \"%s\",\n  \"messages\": "
            "\"%s\",\n"
            "  \"results\": [",
            context->threads, context->repeat, context->cpus, context->load_average,
            context->baseline, context->messages_note);
    bool first = true;
    for (size_t c = 0; c < report->case_count; c++) {
        const case_result *result = &report->cases[c];
        for (size_t p = 0; p < result->peer_count; p++) {
            if (result->peers[p].runs == 0) continue;
            row line;
            compute_row(result, &result->peers[p], &line);
            fprintf(out,
                    "%s\n    {\"workload\": \"%s\", \"capacity\": %zu, "
                    "\"capacity_is_messages\": %s, \"messages\": %ld, \"threads\": %d, "
                    "\"peer\": \"%s\",\n     \"seconds\": ",
                    first ? "" : ",", result->workload, result->capacity,
                    result->capacity_is_messages ? "true" : "false", result->messages,
                    result->threads, line.peer->peer);
            print_json_array(out, line.peer->seconds, line.peer->runs);
            fputs(", \"cpu_seconds\": ", out);
            print_json_array(out, line.peer->cpu_seconds, line.peer->runs);
            fprintf(out,
                    ",\n     \"mmsgs_per_second\": {\"median\": %.4f, \"min\": %.4f, "
                    "\"max\": %.4f}, \"ns_per_message\": %.2f, "
                    "\"cpu_seconds_per_mmsg\": %.5f, \"ratio_to_baseline\": ",
                    line.summary.median_rate / 1e6, line.summary.min_rate / 1e6,
                    line.summary.max_rate / 1e6, line.ns_per_message, line.cpu_seconds_per_million);
            if (line.has_ratio)
                fprintf(out, "%.4f}", line.ratio);
            else
                fputs("null}", out);
            first = false;
        }
    }
    fputs("\n  ]\n}\n", out);
}

void report_print(const bench_report *report, report_format format, FILE *out) {
    switch (format) {
    case FORMAT_TABLE: print_table(report, out); break;
    case FORMAT_CSV: print_csv(report, out); break;
    case FORMAT_JSON: print_json(report, out); break;
    }
    fflush(out);
}
