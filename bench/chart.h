/* chart.h — weft-bench's charts, each a standalone SVG file written by
 * hand (no library): the bar chart of the channel cases and spawn (--svg)
 * and the percentile curves of the latency cases (--latency-svg). */
#ifndef WEFT_BENCH_CHART_H
#define WEFT_BENCH_CHART_H

#include <stdio.h>

#include "report.h"

typedef struct chart_info {
    const char *command; /* the command line, for the subtitle */
    const char *date;    /* when the run started, for the title */
} chart_info;

/* Writes the chart of report's channel cases (the context cases are not
 * drawn) to out. Returns 0, or -1 when out reports a write error. */
int chart_write_svg(const bench_report *report, const chart_info *info, FILE *out);

/* Writes the latency chart of report's latency cases to out: a panel per
 * case, a curve per peer of latency against percentile. Returns 0, or -1
 * when out reports a write error. */
int chart_write_latency_svg(const bench_report *report, const chart_info *info, FILE *out);

#endif
