/* chart.c — the SVG bar chart of a weft-bench run.
 *
 * One group per case (workload x capacity), one horizontal bar per peer
 * that ran it: the median rate in millions of messages per second, a
 * whisker from the slowest to the fastest run, the median and the ratio
 * to the case's baseline written after it. The rate axis is logarithmic:
 * one run spans 0.03 M/s (the condvar queue at capacity 0) to 100 M/s
 * (non-blocking receives), and on a linear axis everything at capacity 0
 * and 1 would be a sliver; a decade is a fixed width, so ratios read as
 * distances. Horizontal bars leave room for the case names.
 *
 * Everything is written with fprintf; text from outside (the command
 * line) is escaped for XML. */
#include "chart.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "workloads.h" /* LATENCY_GAP_NS */

/* Geometry, in SVG user units (pixels at 100%). */
enum {
    WIDTH = 1000,
    LABEL_RIGHT = 232, /* case names end here */
    PLOT_LEFT = 240,
    PLOT_RIGHT = 850, /* then room for "12.3 (45.6x)" */
    HEADER = 118,     /* title, subtitle, legend and the top axis labels */
    BAR_HEIGHT = 11,
    BAR_PITCH = 14,
    GROUP_PADDING = 6,
    FOOTER = 76,
};

/* Peer colours: the baselines grey and ochre, weft blue. */
static const char *peer_colour(const char *peer, size_t index) {
    static const char *const others[] = {"#6a3d9a", "#33a02c", "#e31a1c", "#b15928"};
    if (strcmp(peer, "weft") == 0) return "#2166ac";
    if (strcmp(peer, "condvar") == 0) return "#9e9e9e";
    if (strcmp(peer, "pthread") == 0) return "#d9a441";
    return others[index % (sizeof others / sizeof others[0])];
}

/* Writes text with XML's five special characters escaped. */
static void put_escaped(FILE *out, const char *text) {
    for (; *text != '\0'; text++) {
        switch (*text) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&apos;", out); break;
        default: fputc(*text, out);
        }
    }
}

/* The rate axis: [low, high] in M msgs/s, whole decades. */
typedef struct axis {
    double low_exponent, high_exponent; /* log10 of the ends */
} axis;

static double axis_x(const axis *scale, double rate) {
    double exponent = rate > 0 ? log10(rate) : scale->low_exponent;
    double fraction =
        (exponent - scale->low_exponent) / (scale->high_exponent - scale->low_exponent);
    if (fraction < 0) fraction = 0;
    if (fraction > 1) fraction = 1;
    return PLOT_LEFT + fraction * (PLOT_RIGHT - PLOT_LEFT);
}

static bool usable(double rate) { return isfinite(rate) && rate > 0; }

/* The decades that hold every median, min and max of the report. */
static axis axis_for(const bench_report *report) {
    double lowest = INFINITY, highest = 0;
    for (size_t c = 0; c < report_case_count(report); c++) {
        const case_result *result = report_case(report, c);
        for (size_t p = 0; p < result->peer_count; p++) {
            if (result->peers[p].runs == 0) continue;
            run_summary summary;
            report_summarize(&result->peers[p], result->messages, &summary);
            double rates[] = {summary.min_rate / 1e6, summary.median_rate / 1e6,
                              summary.max_rate / 1e6};
            for (size_t i = 0; i < 3; i++) {
                if (!usable(rates[i])) continue;
                if (rates[i] < lowest) lowest = rates[i];
                if (rates[i] > highest) highest = rates[i];
            }
        }
    }
    if (!(highest > 0)) return (axis){-2, 2};
    axis scale = {floor(log10(lowest)), ceil(log10(highest))};
    if (scale.high_exponent <= scale.low_exponent) scale.high_exponent = scale.low_exponent + 1;
    return scale;
}

/* "0.01", "0.1", "1", "10", "100", "1000" ... */
static void put_decade(FILE *out, double exponent) {
    if (exponent < 0)
        fprintf(out, "%.*f", (int)-exponent, pow(10, exponent));
    else
        fprintf(out, "%.0f", pow(10, exponent));
}

static void draw_axis(FILE *out, const axis *scale, double top, double bottom) {
    for (double exponent = scale->low_exponent; exponent <= scale->high_exponent; exponent++) {
        double x = axis_x(scale, pow(10, exponent));
        fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#bbbbbb\"/>\n",
                x, top, x, bottom);
        for (int edge = 0; edge < 2; edge++) {
            fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"tick\">", x,
                    edge == 0 ? top - 5 : bottom + 13);
            put_decade(out, exponent);
            fputs("</text>\n", out);
        }
        if (exponent == scale->high_exponent) break;
        for (int step = 2; step <= 5; step += 3) { /* minor lines at 2x and 5x */
            double minor = axis_x(scale, step * pow(10, exponent));
            fprintf(out,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e2e2e2\" "
                    "stroke-dasharray=\"3,3\"/>\n",
                    minor, top, minor, bottom);
        }
    }
}

/* The peers that ran in any case, in order of first appearance. */
static size_t peers_in(const bench_report *report, const char **names, size_t room) {
    size_t count = 0;
    for (size_t c = 0; c < report_case_count(report); c++) {
        const case_result *result = report_case(report, c);
        for (size_t p = 0; p < result->peer_count; p++) {
            if (result->peers[p].runs == 0) continue;
            bool known = false;
            for (size_t i = 0; i < count; i++)
                known |= strcmp(names[i], result->peers[p].peer) == 0;
            if (!known && count < room) names[count++] = result->peers[p].peer;
        }
    }
    return count;
}

static size_t peer_index(const char *const *names, size_t count, const char *peer) {
    for (size_t i = 0; i < count; i++)
        if (strcmp(names[i], peer) == 0) return i;
    return count;
}

static size_t rows_of(const case_result *result) {
    size_t rows = 0;
    for (size_t p = 0; p < result->peer_count; p++) rows += result->peers[p].runs > 0;
    return rows;
}

/* Three significant digits. */
static void put_rate(FILE *out, double rate) {
    fprintf(out, rate >= 100 ? "%.0f" : rate >= 10 ? "%.1f" : rate >= 1 ? "%.2f" : "%.3g", rate);
}

static double case_height(const case_result *result) {
    return (double)rows_of(result) * BAR_PITCH + 2 * GROUP_PADDING;
}

/* "(43x condvar)": the ratio with two or three significant digits. */
static void put_ratio(FILE *out, double ratio, const char *baseline) {
    fprintf(out,
            ratio >= 10  ? " <tspan class=\"ratio\">(%.0fx %s)</tspan>"
            : ratio >= 1 ? " <tspan class=\"ratio\">(%.1fx %s)</tspan>"
                         : " <tspan class=\"ratio\">(%.2fx %s)</tspan>",
            ratio, baseline);
}

/* Behind a case: a shaded band (every other case) and its name. */
static void draw_case_label(FILE *out, const case_result *result, double top, bool shaded) {
    double height = case_height(result);
    if (shaded)
        fprintf(out, "<rect x=\"0\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"#f4f6f8\"/>\n",
                top, WIDTH, height);
    fprintf(out, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" dominant-baseline=\"middle\">%s",
            LABEL_RIGHT, top + height / 2, result->workload);
    char capacity[32];
    report_capacity_text(result, capacity, sizeof capacity);
    if (strcmp(capacity, "-") != 0) fprintf(out, " <tspan class=\"cap\">cap %s</tspan>", capacity);
    fputs("</text>\n", out);
}

/* A case's bars, one per peer that ran it, with whisker, median and ratio. */
static void draw_case_bars(FILE *out, const axis *scale, const case_result *result, double top,
                           const char *const *names, size_t name_count) {
    char capacity[32];
    report_capacity_text(result, capacity, sizeof capacity);
    double y = top + GROUP_PADDING;
    const peer_result *baseline = report_baseline_of(result);
    run_summary base;
    if (baseline) report_summarize(baseline, result->messages, &base);
    for (size_t p = 0; p < result->peer_count; p++) {
        const peer_result *peer = &result->peers[p];
        if (peer->runs == 0) continue;
        run_summary summary;
        report_summarize(peer, result->messages, &summary);
        double median = summary.median_rate / 1e6, low = summary.min_rate / 1e6,
               high = summary.max_rate / 1e6;
        double bar_top = y + (BAR_PITCH - BAR_HEIGHT) / 2.0, middle = bar_top + BAR_HEIGHT / 2.0;
        double end = axis_x(scale, median);
        fprintf(out,
                "<rect x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"%s\">"
                "<title>%s %s cap %s: median %.4g M msg/s (min %.4g, max %.4g)</title></rect>\n",
                PLOT_LEFT, bar_top, end - PLOT_LEFT > 1 ? end - PLOT_LEFT : 1, BAR_HEIGHT,
                peer_colour(peer->peer, peer_index(names, name_count, peer->peer)),
                result->workload, peer->peer, capacity, median, low, high);
        double left = axis_x(scale, low), right = axis_x(scale, high);
        if (peer->runs > 1)
            fprintf(out,
                    "<path d=\"M%.1f %.1fH%.1fM%.1f %.1fV%.1fM%.1f %.1fV%.1f\" "
                    "class=\"whisker\"/>\n",
                    left, middle, right, left, middle - 3, middle + 3, right, middle - 3,
                    middle + 3);
        double label_x = (right > end ? right : end) + 5;
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" dominant-baseline=\"middle\" class=\"value\">",
                label_x, middle);
        put_rate(out, median);
        if (baseline != NULL && !peer->is_baseline)
            put_ratio(out, summary.median_rate / base.median_rate, baseline->peer);
        fputs("</text>\n", out);
        y += BAR_PITCH;
    }
}

int chart_write_svg(const bench_report *report, const chart_info *info, FILE *out) {
    const report_context *context = report_get_context(report);
    const char *names[16];
    size_t name_count = peers_in(report, names, sizeof names / sizeof names[0]);
    axis scale = axis_for(report);

    double plot_height = 0;
    for (size_t c = 0; c < report_case_count(report); c++)
        plot_height += (double)rows_of(report_case(report, c)) * BAR_PITCH + 2 * GROUP_PADDING;
    if (plot_height == 0) plot_height = 40;
    double height = HEADER + plot_height + FOOTER;

    fprintf(out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" "
            "viewBox=\"0 0 %d %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<title>weft-bench: throughput, M msg/s (log scale)</title>\n"
            "<style>.tick{font-size:10px;fill:#555}.cap{fill:#666}"
            ".value{font-size:10px;fill:#222}.ratio{fill:#666}"
            ".whisker{stroke:#222;stroke-width:1;fill:none}"
            ".note{font-size:11px;fill:#444}</style>\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
            WIDTH, height, WIDTH, height);
    fprintf(out, "<text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">weft-bench, ");
    put_escaped(out, info->date);
    fputs(": median throughput, M msg/s (log scale)</text>\n", out);
    fputs("<text x=\"10\" y=\"40\" class=\"note\">$ ", out);
    put_escaped(out, info->command);
    fputs("</text>\n", out);
    fprintf(out,
            "<text x=\"10\" y=\"56\" class=\"note\">%d threads (T), %d runs per case, %ld CPUs, "
            "load average %.2f at start; a msg per workload as in --list</text>\n",
            context->threads, context->repeat, context->cpus, context->load_average);

    double legend_x = 10;
    for (size_t i = 0; i < name_count; i++) {
        fprintf(out,
                "<rect x=\"%.0f\" y=\"66\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                "<text x=\"%.0f\" y=\"76\">",
                legend_x, peer_colour(names[i], i), legend_x + 16);
        put_escaped(out, names[i]);
        fputs("</text>\n", out);
        legend_x += 30 + 8 * (double)strlen(names[i]);
    }

    /* Bands and names, then the grid over them, then the bars over both. */
    double top = HEADER, bottom = HEADER + plot_height;
    if (report_case_count(report) == 0)
        fprintf(out, "<text x=\"%d\" y=\"%.0f\">no channel cases in this run</text>\n", PLOT_LEFT,
                top + 24);
    for (size_t c = 0; c < report_case_count(report); c++) {
        draw_case_label(out, report_case(report, c), top, c % 2 == 1);
        top += case_height(report_case(report, c));
    }
    draw_axis(out, &scale, HEADER, bottom);
    top = HEADER;
    for (size_t c = 0; c < report_case_count(report); c++) {
        draw_case_bars(out, &scale, report_case(report, c), top, names, name_count);
        top += case_height(report_case(report, c));
    }
    fprintf(out,
            "<text x=\"%d\" y=\"%.0f\" text-anchor=\"middle\" class=\"note\">million messages "
            "per second, log scale (gridlines at 1, 2, 5 x 10^k)</text>\n",
            (PLOT_LEFT + PLOT_RIGHT) / 2, bottom + 30);
    fprintf(out,
            "<text x=\"10\" y=\"%.0f\" class=\"note\">Bars: median of the runs; whiskers: "
            "slowest to fastest run; (Nx base): median rate over the baseline's in the same case "
            "and run (",
            bottom + 48);
    put_escaped(out, context->baseline_note);
    fprintf(out,
            ").</text>\n<text x=\"10\" y=\"%.0f\" class=\"note\">Only ratios within one run "
            "mean anything: the machine's speed drifts between runs. The context cases are in the "
            "table only.</text>\n</svg>\n",
            bottom + 64);
    fflush(out);
    return ferror(out) ? -1 : 0;
}

/* ---- the latency chart (--latency-svg) ------------------------------------ */

/* One panel per latency case (workload x capacity), three to a row, a new
 * row for each workload. In a panel, a curve per peer: the latency (y,
 * microseconds, log scale, one axis for every panel so that panels
 * compare) at each of latency_quantiles (x, on a scale of "nines": the
 * distance from 50% to 90% is that from 90% to 99%, and so on; the
 * slowest sample last). A thick curve is the median over the runs at
 * each quantile, thin ones are the runs themselves: their spread is the
 * run-to-run noise. The labels above the curves give p50 and p99 and
 * their ratio to the baseline's. */

enum {
    PANEL_WIDTH = 322,
    PANEL_HEIGHT = 262,
    PANEL_LEFT = 46, /* the latency labels, inside the panel */
    PANEL_TOP = 54,  /* the case name and a line per peer */
    PANEL_RIGHT = 12,
    PANEL_BOTTOM = 30, /* the percentile labels */
    PANELS_PER_ROW = 3,
    LATENCY_HEADER = 70,
    LATENCY_FOOTER = 92,
};

#define NINES_MAX 4.6 /* where the slowest sample is drawn */

/* A quantile's place on the nines scale: 0 at 0, 0.3 at 50%, 1 at 90%,
 * 2 at 99%, ..., NINES_MAX at the slowest sample. */
static double nines(double quantile) {
    if (quantile >= 1) return NINES_MAX;
    double place = -log10(1 - quantile);
    return place < NINES_MAX - 0.4 ? place : NINES_MAX - 0.4;
}

/* The frame of one panel's plot, in SVG units. */
typedef struct panel {
    double left, top, right, bottom;
    axis scale; /* microseconds, shared */
} panel;

static double panel_x(const panel *frame, double quantile) {
    return frame->left + nines(quantile) / NINES_MAX * (frame->right - frame->left);
}

static double panel_y(const panel *frame, double microseconds) {
    double exponent = microseconds > 0 ? log10(microseconds) : frame->scale.low_exponent;
    double fraction = (exponent - frame->scale.low_exponent) /
                      (frame->scale.high_exponent - frame->scale.low_exponent);
    if (fraction < 0) fraction = 0;
    if (fraction > 1) fraction = 1;
    return frame->bottom - fraction * (frame->bottom - frame->top);
}

/* The decades that hold every run's every point, in microseconds. */
static axis latency_axis_for(const bench_report *report) {
    double lowest = INFINITY, highest = 0;
    for (size_t c = 0; c < report_latency_case_count(report); c++) {
        const case_result *result = report_latency_case(report, c);
        for (size_t p = 0; p < result->peer_count; p++) {
            const peer_result *peer = &result->peers[p];
            for (size_t i = 0; i < (size_t)peer->runs * LATENCY_POINTS; i++) {
                double microseconds = peer->latency_ns[i] / 1e3;
                if (!usable(microseconds)) continue;
                if (microseconds < lowest) lowest = microseconds;
                if (microseconds > highest) highest = microseconds;
            }
        }
    }
    if (!(highest > 0)) return (axis){-1, 3};
    axis scale = {floor(log10(lowest)), ceil(log10(highest))};
    if (scale.high_exponent <= scale.low_exponent) scale.high_exponent = scale.low_exponent + 1;
    return scale;
}

static void draw_panel_grid(FILE *out, const panel *frame) {
    fprintf(out,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fafafa\" "
            "stroke=\"#bbbbbb\"/>\n",
            frame->left, frame->top, frame->right - frame->left, frame->bottom - frame->top);
    for (double exponent = frame->scale.low_exponent; exponent <= frame->scale.high_exponent;
         exponent++) {
        double y = panel_y(frame, pow(10, exponent));
        fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#cccccc\"/>\n",
                frame->left, y, frame->right, y);
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" class=\"tick\">",
                frame->left - 4, y + 3);
        put_decade(out, exponent);
        fputs("</text>\n", out);
        if (exponent == frame->scale.high_exponent) break;
        for (int step = 2; step <= 5; step += 3) {
            double minor = panel_y(frame, step * pow(10, exponent));
            fprintf(out,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\" "
                    "stroke-dasharray=\"3,3\"/>\n",
                    frame->left, minor, frame->right, minor);
        }
    }
    static const struct {
        double quantile;
        const char *label;
    } ticks[] = {{0.5, "50"},     {0.9, "90"},       {0.99, "99"},
                 {0.999, "99.9"}, {0.9999, "99.99"}, {1, "max"}};
    for (size_t i = 0; i < sizeof ticks / sizeof ticks[0]; i++) {
        double x = panel_x(frame, ticks[i].quantile);
        fprintf(out,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"tick\">%s</text>\n",
                x, frame->top, x, frame->bottom, x, frame->bottom + 12, ticks[i].label);
    }
}

/* A polyline through values[0..LATENCY_POINTS) (ns). */
static void draw_curve(FILE *out, const panel *frame, const double *values, const char *colour,
                       bool thick) {
    fputs("<polyline points=\"", out);
    for (size_t i = 0; i < LATENCY_POINTS; i++)
        fprintf(out, "%s%.1f,%.1f", i ? " " : "", panel_x(frame, latency_quantiles[i]),
                panel_y(frame, values[i] / 1e3));
    fprintf(out, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\"%s/>\n", colour,
            thick ? "2" : "1", thick ? "" : " stroke-opacity=\"0.35\"");
}

/* "p50 3.21 p99 45.1 us (1.5x/0.91x condvar)" */
static void put_latency_label(FILE *out, const peer_result *peer, const peer_result *baseline) {
    measure_summary p50, p99;
    report_summarize_latency(peer, LATENCY_P50, &p50);
    report_summarize_latency(peer, LATENCY_P99, &p99);
    fputs(": p50 ", out);
    put_rate(out, p50.median / 1e3);
    fputs(", p99 ", out);
    put_rate(out, p99.median / 1e3);
    fputs(" us", out);
    if (baseline == NULL || peer->is_baseline) return;
    measure_summary base50, base99;
    report_summarize_latency(baseline, LATENCY_P50, &base50);
    report_summarize_latency(baseline, LATENCY_P99, &base99);
    fprintf(out, " <tspan class=\"ratio\">(%.2gx/%.2gx %s)</tspan>", base50.median / p50.median,
            base99.median / p99.median, baseline->peer);
}

static void draw_latency_panel(FILE *out, const case_result *result, double left, double top,
                               const axis *scale, const char *const *names, size_t name_count) {
    char capacity[32];
    report_capacity_text(result, capacity, sizeof capacity);
    fprintf(out,
            "<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">%s <tspan class=\"cap\">cap "
            "%s</tspan></text>\n",
            left + 4, top + 14, result->workload, capacity);
    panel frame = {left + PANEL_LEFT, top + PANEL_TOP, left + PANEL_WIDTH - PANEL_RIGHT,
                   top + PANEL_HEIGHT - PANEL_BOTTOM, *scale};
    draw_panel_grid(out, &frame);
    const peer_result *baseline = report_baseline_of(result);
    double label_y = top + 29;
    for (size_t p = 0; p < result->peer_count; p++) {
        const peer_result *peer = &result->peers[p];
        if (peer->runs == 0) continue;
        const char *colour = peer_colour(peer->peer, peer_index(names, name_count, peer->peer));
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" class=\"value\" fill=\"%s\">%s", left + 4,
                label_y, colour, peer->peer);
        put_latency_label(out, peer, baseline);
        fputs("</text>\n", out);
        label_y += 12;
        for (int run = 0; peer->runs > 1 && run < peer->runs; run++)
            draw_curve(out, &frame, &peer->latency_ns[(size_t)run * LATENCY_POINTS], colour, false);
        double medians[LATENCY_POINTS];
        for (size_t i = 0; i < LATENCY_POINTS; i++) {
            measure_summary summary;
            report_summarize_latency(peer, i, &summary);
            medians[i] = summary.median;
        }
        draw_curve(out, &frame, medians, colour, true);
        for (size_t i = 0; i < LATENCY_POINTS; i++)
            fprintf(out,
                    "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"><title>%s %s cap %s: "
                    "%.6g%% of messages within %.4g us (median of %d runs)</title></circle>\n",
                    panel_x(&frame, latency_quantiles[i]), panel_y(&frame, medians[i] / 1e3),
                    colour, result->workload, peer->peer, capacity, latency_quantiles[i] * 100,
                    medians[i] / 1e3, peer->runs);
    }
}

/* The peers that ran in any latency case, in order of first appearance. */
static size_t latency_peers_in(const bench_report *report, const char **names, size_t room) {
    size_t count = 0;
    for (size_t c = 0; c < report_latency_case_count(report); c++) {
        const case_result *result = report_latency_case(report, c);
        for (size_t p = 0; p < result->peer_count; p++) {
            if (result->peers[p].runs == 0) continue;
            if (peer_index(names, count, result->peers[p].peer) == count && count < room)
                names[count++] = result->peers[p].peer;
        }
    }
    return count;
}

int chart_write_latency_svg(const bench_report *report, const chart_info *info, FILE *out) {
    const report_context *context = report_get_context(report);
    const char *names[16];
    size_t name_count = latency_peers_in(report, names, sizeof names / sizeof names[0]);
    axis scale = latency_axis_for(report);
    size_t case_count = report_latency_case_count(report);

    /* Panel places: three to a row, a new row for each workload. */
    size_t rows = 0, column = PANELS_PER_ROW;
    const char *last_workload = NULL;
    for (size_t c = 0; c < case_count; c++) {
        const char *workload = report_latency_case(report, c)->workload;
        if (column == PANELS_PER_ROW || strcmp(workload, last_workload) != 0) {
            rows++;
            column = 0;
        }
        column++;
        last_workload = workload;
    }
    double height = LATENCY_HEADER + (double)(rows ? rows : 1) * PANEL_HEIGHT + LATENCY_FOOTER;

    fprintf(out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" "
            "viewBox=\"0 0 %d %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<title>weft-bench: send-to-receive latency by percentile, us (log scale)</title>\n"
            "<style>.tick{font-size:10px;fill:#555}.cap{fill:#666;font-weight:normal}"
            ".value{font-size:10px}.ratio{fill:#666}.note{font-size:11px;fill:#444}</style>\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
            WIDTH, height, WIDTH, height);
    fputs("<text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">weft-bench, ", out);
    put_escaped(out, info->date);
    fputs(": send-to-receive latency by percentile, us (log scale)</text>\n", out);
    fputs("<text x=\"10\" y=\"40\" class=\"note\">$ ", out);
    put_escaped(out, info->command);
    fputs("</text>\n", out);
    fprintf(out,
            "<text x=\"10\" y=\"56\" class=\"note\">%d threads (T), %d runs per case, %ld CPUs, "
            "load average %.2f at start; ",
            context->threads, context->repeat, context->cpus, context->load_average);
    put_escaped(out, context->cpu_model);
    if (isnan(context->round_trip_ns))
        fputs(", cache-line round trip not measured</text>\n", out);
    else
        fprintf(out, ", cache-line round trip %.0f ns</text>\n", context->round_trip_ns);

    if (case_count == 0)
        fprintf(out, "<text x=\"10\" y=\"%d\">no latency cases in this run (-w latency)</text>\n",
                LATENCY_HEADER + 24);
    size_t row = 0;
    column = PANELS_PER_ROW;
    last_workload = NULL;
    for (size_t c = 0; c < case_count; c++) {
        const case_result *result = report_latency_case(report, c);
        if (column == PANELS_PER_ROW || strcmp(result->workload, last_workload) != 0) {
            if (last_workload != NULL) row++;
            column = 0;
        }
        draw_latency_panel(out, result, 10 + (double)column * PANEL_WIDTH,
                           LATENCY_HEADER + (double)row * PANEL_HEIGHT, &scale, names, name_count);
        column++;
        last_workload = result->workload;
    }

    double bottom = LATENCY_HEADER + (double)(rows ? rows : 1) * PANEL_HEIGHT;
    fprintf(out,
            "<text x=\"10\" y=\"%.0f\" class=\"note\">x: percentile of a run's messages (50, 90, "
            "99, ... evenly spaced: each step ten times rarer), then the slowest; y: us from just "
            "before the send to just after the receive.</text>\n",
            bottom + 20);
    fprintf(out,
            "<text x=\"10\" y=\"%.0f\" class=\"note\">Thick: the median over the runs at each "
            "percentile; thin: each run. latency_light: one message every %ld us, the receiver "
            "idle (the wake-up path);</text>\n",
            bottom + 36, LATENCY_GAP_NS / 1000);
    fprintf(out,
            "<text x=\"10\" y=\"%.0f\" class=\"note\">latency_full: T producers back to back "
            "(queueing included; at cap N the backlog). (a/b base): the baseline's p50 and p99 "
            "over the peer's, above 1 faster.</text>\n",
            bottom + 52);
    fprintf(out,
            "<text x=\"10\" y=\"%.0f\" class=\"note\">Only figures within one run compare: the "
            "machine's speed drifts between runs.</text>\n",
            bottom + 68);
    fputs("</svg>\n", out);
    fflush(out);
    return ferror(out) ? -1 : 0;
}
