/* options.c — parsing weft-bench's command line and its usage text.
 *
 * Options take their value as the next argument or after '=':
 * `--cap 0,1,N` or `--cap=0,1,N`. Counts accept a k or M suffix. Any
 * error prints one line and the usage to stderr, and parsing returns 2. */
#include "options.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ctx_cases.h"
#include "peers.h"
#include "workloads.h"

void options_usage(FILE *out) {
    fprintf(
        out,
        "usage: weft-bench [options]\n"
        "Channel throughput and send-to-receive latency of weft against a mutex+condvar\n"
        "queue, measured in the same run; Go's runtime channel benchmarks; goroutine spawn\n"
        "against pthread_create+join; and what weft's contexts cost.\n"
        "\n"
        "  -w, --workload LIST  comma-separated workloads and context cases, or the groups\n"
        "                       'grid' (seq..select_both, at every --cap), 'go' (Go's\n"
        "                       runtime benchmarks), 'latency' (latency_light and\n"
        "                       latency_full, at every --cap: p50, p99, p99.9, max of each\n"
        "                       message's send-to-receive time), 'chan' (every workload:\n"
        "                       grid, go, spawn and latency), 'ctx' (every context case)\n"
        "                       and 'all' (the default);\n"
        "                       see --list. Go's benchmarks and spawn run once, with Go's\n"
        "                       capacities, whatever --cap says. The context cases run\n"
        "                       weft alone on one thread, in sizes of their own: --cap,\n"
        "                       --messages and --threads do not apply to them\n"
        "  -c, --cap LIST       the grid's channel capacities: numbers and N (= messages,\n"
        "                       never fills); default 0,1,N\n"
        "  -m, --messages N     messages per case (k and M suffixes allowed); default %ld\n"
        "                       in the grid, %ld at capacity 0 and 1 (where the condvar\n"
        "                       baseline sleeps and wakes on every message); Go's\n"
        "                       benchmarks, spawn and latency have their own (see --list)\n"
        "  -t, --threads T      producer (and consumer) threads, the threads of Go's\n"
        "                       parallel benchmarks (Go runs GOMAXPROCS: -t $(nproc) to\n"
        "                       match), the tasks spawned at a time; default %d\n"
        "  -r, --repeat R       runs per case and peer, interleaved; reports median, min,\n"
        "                       max; default %d\n"
        "  -p, --peers LIST     peers to run: condvar,weft,pthread (default all); ratios\n"
        "                       need the baseline (condvar; pthread for spawn); the context\n"
        "                       cases need weft\n"
        "  -f, --format F       table (default), csv or json, on stdout; the latency and\n"
        "                       context cases print as sections of their own (CSV blocks\n"
        "                       of their own, after a blank line; \"latency_results\" and\n"
        "                       \"context_results\" in JSON)\n"
        "  -s, --svg FILE       also write a bar chart of the channel cases and spawn\n"
        "                       (median rate, min-max whiskers, log scale) to FILE, SVG\n"
        "      --latency-svg FILE  also write the latency cases' distributions (latency\n"
        "                       by percentile, a panel per case, log scale) to FILE, SVG\n"
        "      --timeout S      abort (exit 3) when one run takes longer than S seconds;\n"
        "                       0: never; default %d\n"
        "  -q, --quiet          no progress lines on stderr\n"
        "  -l, --list           list workloads and peers, then exit\n"
        "  -h, --help           this text\n"
        "\n"
        "Exit status: 0 ok, 1 a run failed (wrong checksum, channel error) or the chart\n"
        "could not be written, 2 bad usage or no memory or threads to run, 3 a run timed out.\n",
        DEFAULT_MESSAGES, DEFAULT_SMALL_CAPACITY_MESSAGES, DEFAULT_THREADS, DEFAULT_REPEAT,
        DEFAULT_TIMEOUT_SECONDS);
}

int options_error(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    fputs("weft-bench: ", stderr);
    vfprintf(stderr, format, arguments);
    fputc('\n', stderr);
    va_end(arguments);
    options_usage(stderr);
    return 2;
}

/* A whole decimal number with an optional k (1000) or M (1000000)
 * suffix, within [minimum, maximum]. */
static bool parse_count(const char *text, long minimum, long maximum, long *out) {
    if (*text < '0' || *text > '9') return false; /* no sign, no space */
    errno = 0;
    char *end;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text) return false;
    long scale = 1;
    if (*end == 'k' || *end == 'K') scale = 1000;
    if (*end == 'M') scale = 1000000;
    if (scale != 1) end++;
    if (*end != '\0' || value > LONG_MAX / scale) return false;
    value *= scale;
    if (value < minimum || value > maximum) return false;
    *out = value;
    return true;
}

/* Calls accept on each item of a comma-separated list (the list itself is
 * left as it is); stops at the first item refused. */
typedef int accept_item(bench_options *options, const char *item, size_t length);

static int for_each_item(bench_options *options, const char *list, accept_item *accept) {
    if (*list == '\0') return options_error("empty list");
    for (const char *item = list;;) {
        const char *comma = strchr(item, ',');
        size_t length = comma ? (size_t)(comma - item) : strlen(item);
        int result = accept(options, item, length);
        if (result != 0) return result;
        if (comma == NULL) return 0;
        item = comma + 1;
    }
}

static bool item_is(const char *item, size_t length, const char *word) {
    return strlen(word) == length && strncmp(item, word, length) == 0;
}

/* Selects every workload for which in_group is true. */
static void select_workloads(bench_options *options, bool (*in_group)(const bench_workload *)) {
    for (size_t i = 0; i < workload_count; i++)
        if (in_group(&workloads[i])) options->workload_selected[i] = true;
}

static bool in_grid(const bench_workload *workload) {
    return workload_in_grid(workload) && !workload->latency;
}

static bool in_latency(const bench_workload *workload) { return workload->latency; }

static bool in_go(const bench_workload *workload) { return workload->go_reference != NULL; }

static bool in_chan(const bench_workload *workload) {
    (void)workload;
    return true;
}

static int accept_workload(bench_options *options, const char *item, size_t length) {
    bool all = item_is(item, length, "all");
    if (all || item_is(item, length, "chan")) {
        select_workloads(options, in_chan);
    } else if (item_is(item, length, "grid")) {
        select_workloads(options, in_grid);
    } else if (item_is(item, length, "go")) {
        select_workloads(options, in_go);
    } else if (item_is(item, length, "latency")) {
        select_workloads(options, in_latency);
    } else if (!item_is(item, length, "ctx")) {
        for (size_t i = 0; i < workload_count; i++) {
            if (item_is(item, length, workloads[i].name)) {
                options->workload_selected[i] = true;
                return 0;
            }
        }
        for (size_t i = 0; i < ctx_case_count; i++) {
            if (item_is(item, length, ctx_cases[i].name)) {
                options->ctx_case_selected[i] = true;
                return 0;
            }
        }
        return options_error("unknown workload '%.*s' (try --list)", (int)length, item);
    }
    if (all || item_is(item, length, "ctx"))
        for (size_t i = 0; i < ctx_case_count; i++) options->ctx_case_selected[i] = true;
    return 0;
}

static int accept_peer(bench_options *options, const char *item, size_t length) {
    for (size_t i = 0; i < peer_count; i++) {
        if (item_is(item, length, peers[i].name)) {
            options->peer_selected[i] = true;
            return 0;
        }
    }
    return options_error("unknown peer '%.*s' (try --list)", (int)length, item);
}

static int accept_capacity(bench_options *options, const char *item, size_t length) {
    char text[32];
    if (length == 0 || length >= sizeof text)
        return options_error("bad capacity '%.*s'", (int)length, item);
    memcpy(text, item, length);
    text[length] = '\0';
    long capacity;
    if (strcmp(text, "N") == 0 || strcmp(text, "n") == 0)
        capacity = CAPACITY_MESSAGES;
    else if (!parse_count(text, 0, LONG_MAX / 2, &capacity))
        return options_error("bad capacity '%s' (a number or N)", text);
    for (size_t i = 0; i < options->capacity_count; i++)
        if (options->capacities[i] == capacity) return 0; /* duplicates run once */
    if (options->capacity_count == MAX_CAPACITIES)
        return options_error("more than %d capacities", MAX_CAPACITIES);
    options->capacities[options->capacity_count++] = capacity;
    return 0;
}

/* The option table: long name, short letter, whether it takes a value. */
typedef enum option_id {
    OPTION_WORKLOAD,
    OPTION_CAP,
    OPTION_MESSAGES,
    OPTION_THREADS,
    OPTION_REPEAT,
    OPTION_PEERS,
    OPTION_FORMAT,
    OPTION_SVG,
    OPTION_LATENCY_SVG,
    OPTION_TIMEOUT,
    OPTION_QUIET,
    OPTION_LIST,
    OPTION_HELP,
} option_id;

typedef struct option_spec {
    const char *name;
    char letter; /* 0: long form only */
    bool takes_value;
    option_id id;
} option_spec;

static const option_spec option_specs[] = {
    {"workload", 'w', true, OPTION_WORKLOAD},
    {"cap", 'c', true, OPTION_CAP},
    {"messages", 'm', true, OPTION_MESSAGES},
    {"threads", 't', true, OPTION_THREADS},
    {"repeat", 'r', true, OPTION_REPEAT},
    {"peers", 'p', true, OPTION_PEERS},
    {"format", 'f', true, OPTION_FORMAT},
    {"svg", 's', true, OPTION_SVG},
    {"latency-svg", 0, true, OPTION_LATENCY_SVG},
    {"timeout", 0, true, OPTION_TIMEOUT},
    {"quiet", 'q', false, OPTION_QUIET},
    {"list", 'l', false, OPTION_LIST},
    {"help", 'h', false, OPTION_HELP},
};

/* Finds the spec of argument (`--name`, `--name=value` or `-x`); sets
 * *inline_value to the text after '=' (or NULL). */
static const option_spec *find_spec(const char *argument, const char **inline_value) {
    *inline_value = NULL;
    size_t count = sizeof option_specs / sizeof option_specs[0];
    if (argument[0] == '-' && argument[1] == '-') {
        const char *name = argument + 2;
        const char *equals = strchr(name, '=');
        size_t length = equals ? (size_t)(equals - name) : strlen(name);
        for (size_t i = 0; i < count; i++) {
            if (item_is(name, length, option_specs[i].name)) {
                if (equals) *inline_value = equals + 1;
                return &option_specs[i];
            }
        }
    } else if (argument[0] == '-' && argument[1] != '\0' && argument[2] == '\0') {
        for (size_t i = 0; i < count; i++)
            if (option_specs[i].letter == argument[1]) return &option_specs[i];
    }
    return NULL;
}

static int apply(bench_options *options, const option_spec *spec, const char *value) {
    long number;
    switch (spec->id) {
    case OPTION_WORKLOAD:
        memset(options->workload_selected, 0, sizeof options->workload_selected);
        memset(options->ctx_case_selected, 0, sizeof options->ctx_case_selected);
        return for_each_item(options, value, accept_workload);
    case OPTION_CAP:
        options->capacity_count = 0;
        return for_each_item(options, value, accept_capacity);
    case OPTION_PEERS:
        memset(options->peer_selected, 0, sizeof options->peer_selected);
        return for_each_item(options, value, accept_peer);
    case OPTION_MESSAGES:
        if (!parse_count(value, 1, LONG_MAX / 4, &number))
            return options_error("bad --messages '%s' (a count >= 1)", value);
        options->messages = number;
        return 0;
    case OPTION_THREADS:
        if (!parse_count(value, 1, 1024, &number))
            return options_error("bad --threads '%s' (1..1024)", value);
        options->threads = (int)number;
        return 0;
    case OPTION_REPEAT:
        if (!parse_count(value, 1, 1000, &number))
            return options_error("bad --repeat '%s' (1..1000)", value);
        options->repeat = (int)number;
        return 0;
    case OPTION_TIMEOUT:
        if (!parse_count(value, 0, 86400, &number))
            return options_error("bad --timeout '%s' (seconds, 0..86400)", value);
        options->timeout_seconds = (int)number;
        return 0;
    case OPTION_FORMAT:
        if (strcmp(value, "table") == 0)
            options->format = FORMAT_TABLE;
        else if (strcmp(value, "csv") == 0)
            options->format = FORMAT_CSV;
        else if (strcmp(value, "json") == 0)
            options->format = FORMAT_JSON;
        else
            return options_error("bad --format '%s' (table, csv or json)", value);
        return 0;
    case OPTION_SVG:
        if (*value == '\0') return options_error("bad --svg '' (a file name)");
        options->svg_path = value;
        return 0;
    case OPTION_LATENCY_SVG:
        if (*value == '\0') return options_error("bad --latency-svg '' (a file name)");
        options->latency_svg_path = value;
        return 0;
    case OPTION_QUIET: options->quiet = true; return 0;
    case OPTION_LIST: options->list = true; return 0;
    case OPTION_HELP: options->help = true; return 0;
    }
    return options_error("internal: unhandled option");
}

int options_parse(bench_options *options, int argc, char **argv) {
    *options = (bench_options){.threads = DEFAULT_THREADS,
                               .repeat = DEFAULT_REPEAT,
                               .timeout_seconds = DEFAULT_TIMEOUT_SECONDS,
                               .format = FORMAT_TABLE,
                               .capacities = {0, 1, CAPACITY_MESSAGES},
                               .capacity_count = 3};
    for (size_t i = 0; i < workload_count; i++) options->workload_selected[i] = true;
    for (size_t i = 0; i < ctx_case_count; i++) options->ctx_case_selected[i] = true;
    for (size_t i = 0; i < peer_count; i++) options->peer_selected[i] = true;

    for (int index = 1; index < argc; index++) {
        const char *argument = argv[index];
        const char *value;
        const option_spec *spec = find_spec(argument, &value);
        if (spec == NULL) return options_error("unknown option '%s'", argument);
        if (spec->takes_value && value == NULL) {
            if (index + 1 == argc) return options_error("%s needs a value", argument);
            value = argv[++index];
        } else if (!spec->takes_value && value != NULL) {
            return options_error("--%s takes no value", spec->name);
        }
        int result = apply(options, spec, value);
        if (result != 0) return result;
    }
    return 0;
}

long options_messages_for(const bench_options *options, const bench_workload *workload,
                          long capacity) {
    if (options->messages > 0) return options->messages;
    if (workload->default_messages > 0) return workload->default_messages;
    if (!workload_in_grid(workload)) return DEFAULT_MESSAGES;
    if (capacity == 0 || capacity == 1) return DEFAULT_SMALL_CAPACITY_MESSAGES;
    return DEFAULT_MESSAGES;
}
