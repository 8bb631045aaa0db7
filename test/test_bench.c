/* weft-bench, the throughput tool (bench/): its command line and its
 * output formats.
 *
 * Two halves. The option parser (bench/options.c) is linked into this
 * program (the Makefile links every bench module but its main) and
 * tested directly: defaults, every option in its long, short and
 * `--name=value` forms, the workload groups, the messages a case gets,
 * and each error. Then the program itself, bench/weft-bench, runs as a
 * user runs it (fork and exec, stdout and stderr kept apart): every error
 * path exits 2 with one line and the usage on stderr; --help and --list
 * say what they should; tiny runs (-m 1000 -r 1) print a table, CSV that
 * has the same number of fields on every line, JSON that parses, and an
 * SVG that is well-formed XML. Every workload runs once on a few
 * thousand messages: a run checks its own results and exits 1 on a
 * wrong one. The tests assert structure, never speed. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../bench/ctx_cases.h"
#include "../bench/options.h"
#include "../bench/peers.h"
#include "../bench/report.h"
#include "../bench/workloads.h"
#include "testutil.h"

/* ---- the parser, linked in ------------------------------------------------ */

/* options_parse over "weft-bench" and the NULL-terminated arguments; its
 * error line and usage (stderr) are thrown away. */
static int parse(bench_options *options, ...) {
    char *argv[32] = {"weft-bench"};
    int argc = 1;
    va_list arguments;
    va_start(arguments, options);
    for (char *argument; (argument = va_arg(arguments, char *)) != NULL;) {
        ck_assert_int_lt(argc, 31);
        argv[argc++] = argument;
    }
    va_end(arguments);
    fflush(stderr);
    int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
    ck_assert(saved >= 0 && null >= 0);
    dup2(null, STDERR_FILENO);
    close(null);
    int result = options_parse(options, argc, argv);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    return result;
}

static size_t workload_index(const char *name) {
    const bench_workload *workload = workload_find(name);
    ck_assert_msg(workload != NULL, "no workload %s", name);
    return (size_t)(workload - workloads);
}

static size_t count_selected(const bool *selected, size_t count) {
    size_t total = 0;
    for (size_t i = 0; i < count; i++) total += selected[i];
    return total;
}

START_TEST(test_defaults) {
    bench_options options;
    ck_assert_int_eq(parse(&options, NULL), 0);
    ck_assert_int_eq(options.threads, DEFAULT_THREADS);
    ck_assert_int_eq(options.repeat, DEFAULT_REPEAT);
    ck_assert_int_eq(options.timeout_seconds, DEFAULT_TIMEOUT_SECONDS);
    ck_assert_int_eq(options.format, FORMAT_TABLE);
    ck_assert_int_eq(options.messages, 0);
    ck_assert_ptr_null(options.svg_path);
    ck_assert_ptr_null(options.latency_svg_path);
    ck_assert(!options.list && !options.help && !options.quiet);
    ck_assert_uint_eq(options.capacity_count, 3);
    ck_assert_int_eq(options.capacities[0], 0);
    ck_assert_int_eq(options.capacities[1], 1);
    ck_assert_int_eq(options.capacities[2], CAPACITY_MESSAGES);
    ck_assert_uint_eq(count_selected(options.workload_selected, workload_count), workload_count);
    ck_assert_uint_eq(count_selected(options.ctx_case_selected, ctx_case_count), ctx_case_count);
    ck_assert_uint_eq(count_selected(options.peer_selected, peer_count), peer_count);
}
END_TEST

/* Each option with a value, in three spellings, and what it sets. */
typedef struct spelled {
    const char *long_name, *short_name, *value;
} spelled;

static const spelled valued[] = {
    {"--workload", "-w", "spsc"},     {"--cap", "-c", "0,N"},   {"--messages", "-m", "2k"},
    {"--threads", "-t", "2"},         {"--repeat", "-r", "5"},  {"--peers", "-p", "weft"},
    {"--format", "-f", "json"},       {"--svg", "-s", "x.svg"}, {"--timeout", NULL, "7"},
    {"--latency-svg", NULL, "l.svg"},
};

static void assert_set(const bench_options *options, const char *long_name) {
    if (strcmp(long_name, "--workload") == 0) {
        ck_assert_uint_eq(count_selected(options->workload_selected, workload_count), 1);
        ck_assert(options->workload_selected[workload_index("spsc")]);
        ck_assert_uint_eq(count_selected(options->ctx_case_selected, ctx_case_count), 0);
    } else if (strcmp(long_name, "--cap") == 0) {
        ck_assert_uint_eq(options->capacity_count, 2);
        ck_assert_int_eq(options->capacities[0], 0);
        ck_assert_int_eq(options->capacities[1], CAPACITY_MESSAGES);
    } else if (strcmp(long_name, "--messages") == 0) {
        ck_assert_int_eq(options->messages, 2000);
    } else if (strcmp(long_name, "--threads") == 0) {
        ck_assert_int_eq(options->threads, 2);
    } else if (strcmp(long_name, "--repeat") == 0) {
        ck_assert_int_eq(options->repeat, 5);
    } else if (strcmp(long_name, "--peers") == 0) {
        ck_assert_uint_eq(count_selected(options->peer_selected, peer_count), 1);
        ck_assert(options->peer_selected[peer_find("weft") - peers]);
    } else if (strcmp(long_name, "--format") == 0) {
        ck_assert_int_eq(options->format, FORMAT_JSON);
    } else if (strcmp(long_name, "--svg") == 0) {
        ck_assert_str_eq(options->svg_path, "x.svg");
    } else if (strcmp(long_name, "--timeout") == 0) {
        ck_assert_int_eq(options->timeout_seconds, 7);
    } else if (strcmp(long_name, "--latency-svg") == 0) {
        ck_assert_str_eq(options->latency_svg_path, "l.svg");
    } else {
        ck_abort_msg("no check for %s", long_name);
    }
}

START_TEST(test_every_option_with_a_value_in_each_spelling) {
    for (size_t i = 0; i < sizeof valued / sizeof valued[0]; i++) {
        bench_options options;
        ck_assert_int_eq(parse(&options, valued[i].long_name, valued[i].value, NULL), 0);
        assert_set(&options, valued[i].long_name);
        char joined[64];
        snprintf(joined, sizeof joined, "%s=%s", valued[i].long_name, valued[i].value);
        ck_assert_int_eq(parse(&options, joined, NULL), 0);
        assert_set(&options, valued[i].long_name);
        if (valued[i].short_name != NULL) {
            ck_assert_int_eq(parse(&options, valued[i].short_name, valued[i].value, NULL), 0);
            assert_set(&options, valued[i].long_name);
        }
    }
}
END_TEST

START_TEST(test_flags_in_long_and_short_form) {
    bench_options options;
    ck_assert_int_eq(parse(&options, "--quiet", "--list", "--help", NULL), 0);
    ck_assert(options.quiet && options.list && options.help);
    ck_assert_int_eq(parse(&options, "-q", "-l", "-h", NULL), 0);
    ck_assert(options.quiet && options.list && options.help);
}
END_TEST

START_TEST(test_formats_and_counts) {
    bench_options options;
    ck_assert_int_eq(parse(&options, "-f", "csv", NULL), 0);
    ck_assert_int_eq(options.format, FORMAT_CSV);
    ck_assert_int_eq(parse(&options, "-f", "json", "-f", "table", NULL), 0);
    ck_assert_int_eq(options.format, FORMAT_TABLE); /* the last one counts */
    ck_assert_int_eq(parse(&options, "-m", "3M", "-c", "1k,16,n,16", NULL), 0);
    ck_assert_int_eq(options.messages, 3000000);
    ck_assert_uint_eq(options.capacity_count, 3); /* duplicates run once */
    ck_assert_int_eq(options.capacities[0], 1000);
    ck_assert_int_eq(options.capacities[1], 16);
    ck_assert_int_eq(options.capacities[2], CAPACITY_MESSAGES);
    ck_assert_int_eq(parse(&options, "--timeout", "0", NULL), 0);
    ck_assert_int_eq(options.timeout_seconds, 0);
}
END_TEST

START_TEST(test_workload_groups) {
    bench_options options;
    ck_assert_int_eq(parse(&options, "-w", "grid", NULL), 0);
    for (size_t i = 0; i < workload_count; i++)
        ck_assert_msg(options.workload_selected[i] ==
                          (workload_in_grid(&workloads[i]) && !workloads[i].latency),
                      "%s", workloads[i].name);
    ck_assert_uint_eq(count_selected(options.workload_selected, workload_count), 6);
    ck_assert_uint_eq(count_selected(options.ctx_case_selected, ctx_case_count), 0);

    ck_assert_int_eq(parse(&options, "-w", "go", NULL), 0);
    static const char *const go[] = {"chan_nonblocking",   "chan_uncontended", "chan_contended",
                                     "chan_sync",          "chan_prodcons0",   "chan_prodcons10",
                                     "chan_prodcons100",   "chan_sem",         "chan_creation",
                                     "select_uncontended", "select_nonblock"};
    ck_assert_uint_eq(count_selected(options.workload_selected, workload_count),
                      sizeof go / sizeof go[0]);
    for (size_t i = 0; i < sizeof go / sizeof go[0]; i++)
        ck_assert_msg(options.workload_selected[workload_index(go[i])], "%s", go[i]);

    ck_assert_int_eq(parse(&options, "-w", "latency", NULL), 0);
    ck_assert_uint_eq(count_selected(options.workload_selected, workload_count), 2);
    ck_assert(options.workload_selected[workload_index("latency_light")]);
    ck_assert(options.workload_selected[workload_index("latency_full")]);
    ck_assert_uint_eq(count_selected(options.ctx_case_selected, ctx_case_count), 0);
    for (size_t i = 0; i < workload_count; i++) /* latency runs at every --cap */
        ck_assert(!workloads[i].latency || workload_in_grid(&workloads[i]));

    ck_assert_int_eq(parse(&options, "-w", "chan", NULL), 0);
    ck_assert_uint_eq(count_selected(options.workload_selected, workload_count), workload_count);
    ck_assert_uint_eq(count_selected(options.ctx_case_selected, ctx_case_count), 0);

    ck_assert_int_eq(parse(&options, "-w", "ctx", NULL), 0);
    ck_assert_uint_eq(count_selected(options.workload_selected, workload_count), 0);
    ck_assert_uint_eq(count_selected(options.ctx_case_selected, ctx_case_count), ctx_case_count);

    ck_assert_int_eq(parse(&options, "-w", "spawn,recv_ctx,mpmc", NULL), 0);
    ck_assert_uint_eq(count_selected(options.workload_selected, workload_count), 2);
    ck_assert(options.workload_selected[workload_index("spawn")]);
    ck_assert(options.workload_selected[workload_index("mpmc")]);
    ck_assert_uint_eq(count_selected(options.ctx_case_selected, ctx_case_count), 1);
}
END_TEST

START_TEST(test_messages_per_case) {
    bench_options options;
    ck_assert_int_eq(parse(&options, NULL), 0);
    const bench_workload *spsc = workload_find("spsc"), *sync = workload_find("chan_sync");
    ck_assert_int_eq(options_messages_for(&options, spsc, CAPACITY_MESSAGES), DEFAULT_MESSAGES);
    ck_assert_int_eq(options_messages_for(&options, spsc, 1000), DEFAULT_MESSAGES);
    ck_assert_int_eq(options_messages_for(&options, spsc, 0), DEFAULT_SMALL_CAPACITY_MESSAGES);
    ck_assert_int_eq(options_messages_for(&options, spsc, 1), DEFAULT_SMALL_CAPACITY_MESSAGES);
    ck_assert_int_eq(options_messages_for(&options, sync, 0), sync->default_messages);
    for (size_t i = 0; i < workload_count; i++)
        if (!workload_in_grid(&workloads[i]))
            ck_assert_msg(workloads[i].default_messages > 0, "%s", workloads[i].name);
    ck_assert_int_eq(parse(&options, "-m", "1234", NULL), 0);
    ck_assert_int_eq(options_messages_for(&options, spsc, 0), 1234);
    ck_assert_int_eq(options_messages_for(&options, sync, 0), 1234);
}
END_TEST

/* Arguments the parser must refuse (status 2). */
static const char *const refused[][3] = {
    {"--bogus"},         {"-x"},           {"extra"},       {"-w"}, /* missing value */
    {"--cap"},           {"-w", "nosuch"}, {"-w", "spsc,"}, {"-w", ""},
    {"-c", "x"},         {"-c", "1.5"},    {"-c", "-1"},    {"-c", "0,,1"},
    {"-m", "0"},         {"-m", "abc"},    {"-m", "-5"},    {"-m", "10x"},
    {"-m", " 5"},        {"-t", "0"},      {"-t", "2000"},  {"-r", "0"},
    {"-r", "many"},      {"-p", "go"},     {"-f", "xml"},   {"-s", ""},
    {"--timeout", "-1"}, {"--quiet=yes"},  {"--help=1"},    {"--latency-svg", ""},
};

START_TEST(test_each_error_is_refused) {
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        bench_options options;
        int result = parse(&options, refused[i][0], refused[i][1], NULL);
        ck_assert_msg(result == 2, "'%s %s': %d, not 2", refused[i][0],
                      refused[i][1] ? refused[i][1] : "", result);
    }
}
END_TEST

/* ---- the program -------------------------------------------------------- */

/* bench/weft-bench of this tree. */
static void bench_path(char *path, size_t size) {
    built_program_path("bench/weft-bench", path, size);
}

typedef struct run_result {
    char *out, *err; /* all of stdout and stderr, NUL-terminated; free_run */
    int status;      /* exit status; -1 if it did not exit */
} run_result;

static char *slurp(FILE *file) {
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    ck_assert(size >= 0);
    rewind(file);
    char *text = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(text);
    size_t got = fread(text, 1, (size_t)size, file);
    text[got] = '\0';
    fclose(file);
    return text;
}

/* Runs weft-bench with the NULL-terminated arguments. */
static run_result run_bench(const char *first, ...) {
    char path[PATH_MAX];
    bench_path(path, sizeof path);
    char *argv[40] = {path};
    int argc = 1;
    va_list arguments;
    va_start(arguments, first);
    for (const char *argument = first; argument != NULL; argument = va_arg(arguments, char *)) {
        ck_assert_int_lt(argc, 39);
        argv[argc++] = (char *)argument;
    }
    va_end(arguments);
    FILE *out = tmpfile(), *err = tmpfile();
    ck_assert(out != NULL && err != NULL);
    fflush(NULL);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        dup2(fileno(out), STDOUT_FILENO);
        dup2(fileno(err), STDERR_FILENO);
        execv(path, argv);
        _exit(127);
    }
    int status;
    while (waitpid(child, &status, 0) < 0) ck_assert_int_eq(errno, EINTR);
    run_result result = {slurp(out), slurp(err), WIFEXITED(status) ? WEXITSTATUS(status) : -1};
    return result;
}

static void free_run(run_result *result) {
    free(result->out);
    free(result->err);
}

static size_t count_lines(const char *text) {
    size_t lines = 0;
    for (; *text; text++) lines += *text == '\n';
    return lines;
}

/* Exit status 2, nothing on stdout, and on stderr one "weft-bench: ..."
 * line followed by the usage. */
static void assert_usage_error(run_result *result, const char *what) {
    ck_assert_msg(result->status == 2, "%s: exit status %d, not 2; stderr: %s", what,
                  result->status, result->err);
    ck_assert_msg(result->out[0] == '\0', "%s: printed on stdout: %s", what, result->out);
    ck_assert_msg(strncmp(result->err, "weft-bench: ", 12) == 0, "%s: stderr: %s", what,
                  result->err);
    const char *second = strchr(result->err, '\n');
    ck_assert_msg(second != NULL && strncmp(second + 1, "usage: weft-bench", 17) == 0,
                  "%s: no usage after the error line: %s", what, result->err);
}

START_TEST(test_program_errors_exit_2_with_one_line_and_usage) {
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        run_result result = run_bench(refused[i][0], refused[i][1], NULL);
        char what[64];
        snprintf(what, sizeof what, "'%s %s'", refused[i][0], refused[i][1] ? refused[i][1] : "");
        assert_usage_error(&result, what);
        free_run(&result);
    }
}
END_TEST

START_TEST(test_unwritable_svg_is_refused_before_the_run) {
    static const char *const paths[] = {"/nonexistent-weft-dir/chart.svg", "/tmp", "/proc/x.svg"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        run_result result =
            run_bench("-w", "spsc", "-c", "1", "-m", "100", "-r", "1", "--svg", paths[i], NULL);
        assert_usage_error(&result, paths[i]);
        ck_assert_msg(strstr(result.err, paths[i]) != NULL, "the error names no path: %s",
                      result.err);
        ck_assert_msg(strstr(result.err, "[1/") == NULL, "it ran first: %s", result.err);
        free_run(&result);
    }
    run_result result = run_bench("-w", "latency_light", "-c", "1", "-m", "100", "-r", "1",
                                  "--latency-svg", paths[0], NULL);
    assert_usage_error(&result, "--latency-svg");
    ck_assert_ptr_nonnull(strstr(result.err, "--latency-svg"));
    free_run(&result);
}
END_TEST

START_TEST(test_nothing_to_run_is_a_usage_error) {
    run_result result = run_bench("-w", "seq", "-c", "0", NULL); /* seq needs capacity N */
    assert_usage_error(&result, "-w seq -c 0");
    free_run(&result);
    result = run_bench("-w", "select_rx", "-p", "condvar", NULL);
    assert_usage_error(&result, "-w select_rx -p condvar");
    free_run(&result);
}
END_TEST

START_TEST(test_help_names_every_option) {
    run_result result = run_bench("--help", NULL);
    ck_assert_int_eq(result.status, 0);
    ck_assert_str_eq(result.err, "");
    ck_assert(strncmp(result.out, "usage: weft-bench", 17) == 0);
    static const char *const names[] = {
        "-w, --workload", "-c, --cap",    "-m, --messages", "-t, --threads", "-r, --repeat",
        "-p, --peers",    "-f, --format", "-s, --svg",      "--latency-svg", "--timeout",
        "-q, --quiet",    "-l, --list",   "-h, --help"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        ck_assert_msg(strstr(result.out, names[i]) != NULL, "--help lacks %s", names[i]);
    free_run(&result);
    result = run_bench("-h", NULL);
    ck_assert_int_eq(result.status, 0);
    ck_assert(strncmp(result.out, "usage: weft-bench", 17) == 0);
    free_run(&result);
}
END_TEST

/* Whether text has a line starting with "  name " (as --list prints). */
static bool has_listed(const char *text, const char *name) {
    char needle[80];
    snprintf(needle, sizeof needle, "\n  %s ", name);
    return strstr(text, needle) != NULL;
}

START_TEST(test_list_names_workloads_peers_and_context_cases) {
    run_result result = run_bench("--list", NULL);
    ck_assert_int_eq(result.status, 0);
    ck_assert_str_eq(result.err, "");
    for (size_t i = 0; i < workload_count; i++)
        ck_assert_msg(has_listed(result.out, workloads[i].name), "--list lacks %s",
                      workloads[i].name);
    for (size_t i = 0; i < peer_count; i++)
        ck_assert_msg(has_listed(result.out, peers[i].name), "--list lacks %s", peers[i].name);
    for (size_t i = 0; i < ctx_case_count; i++)
        ck_assert_msg(has_listed(result.out, ctx_cases[i].name), "--list lacks %s",
                      ctx_cases[i].name);
    /* Go's figure beside each of Go's benchmarks, and the groups */
    size_t references = 0;
    for (const char *at = result.out; (at = strstr(at, "Go 1.19 here")) != NULL; at++) references++;
    size_t go_workloads = 0;
    for (size_t i = 0; i < workload_count; i++) go_workloads += workloads[i].go_reference != NULL;
    ck_assert_uint_eq(references, go_workloads);
    ck_assert_uint_ge(go_workloads, 11);
    ck_assert_ptr_nonnull(strstr(result.out, "groups: grid"));
    ck_assert_ptr_nonnull(strstr(result.out, "latency (latency_light and latency_full"));
    free_run(&result);
    result = run_bench("-l", NULL);
    ck_assert_int_eq(result.status, 0);
    ck_assert(has_listed(result.out, "spawn"));
    free_run(&result);
}
END_TEST

START_TEST(test_table_has_the_header_and_a_row_per_peer) {
    run_result result = run_bench("-m", "1000", "-r", "1", "-w", "spsc", "-c", "1", "-q", NULL);
    ck_assert_msg(result.status == 0, "exit %d: %s", result.status, result.err);
    ck_assert_str_eq(result.err, ""); /* -q: no progress */
    const char *header = strstr(result.out, "\nworkload ");
    ck_assert_msg(header != NULL, "no header line: %s", result.out);
    static const char *const columns[] = {"cap",    "messages", "peer",   "M msg/s",
                                          "ns/msg", "CPU s/M",  "vs base"};
    const char *end = strchr(header + 1, '\n');
    ck_assert_ptr_nonnull(end);
    for (size_t i = 0; i < sizeof columns / sizeof columns[0]; i++) {
        const char *at = strstr(header, columns[i]);
        ck_assert_msg(at != NULL && at < end, "the header lacks %s", columns[i]);
    }
    /* a row per peer: workload, capacity, messages, peer, ..., the ratio last */
    size_t rows = 0;
    for (const char *line = end + 1; *line; line = strchr(line, '\n') + 1) {
        char workload[32], capacity[8], peer[16];
        long messages;
        if (sscanf(line, "%31s %7s %ld %15s", workload, capacity, &messages, peer) == 4 &&
            strcmp(workload, "spsc") == 0) {
            ck_assert_str_eq(capacity, "1");
            ck_assert_int_eq(messages, 1000);
            const char *line_end = strchr(line, '\n');
            ck_assert_ptr_nonnull(line_end);
            if (rows++ == 0) {
                ck_assert_str_eq(peer, "condvar");
            } else {
                ck_assert_str_eq(peer, "weft");
                ck_assert(line_end[-1] == 'x'); /* its ratio to condvar, "1.23x" */
            }
        }
        if (strchr(line, '\n') == NULL) break;
    }
    ck_assert_msg(rows == 2, "%zu spsc rows: %s", rows, result.out);
    free_run(&result);
}
END_TEST

START_TEST(test_progress_lines_on_stderr_unless_quiet) {
    run_result result = run_bench("-m", "1000", "-r", "1", "-w", "spsc,mpsc", "-c", "1", NULL);
    ck_assert_int_eq(result.status, 0);
    ck_assert_ptr_nonnull(strstr(result.err, "weft-bench: [1/2] spsc cap 1, 1000 messages:"));
    ck_assert_ptr_nonnull(strstr(result.err, "weft-bench: [2/2] mpsc cap 1,"));
    ck_assert_ptr_nonnull(strstr(result.err, "weft-bench: 2 cases in "));
    ck_assert_uint_eq(count_lines(result.err), 3);
    free_run(&result);
}
END_TEST

/* ---- CSV ------------------------------------------------------------------ */

/* Fields of one CSV line (to its '\n' or NUL): commas outside quotes. */
static size_t csv_fields(const char *line, const char **next) {
    size_t fields = 1;
    bool quoted = false;
    for (; *line && *line != '\n'; line++) {
        if (*line == '"') quoted = !quoted;
        if (*line == ',' && !quoted) fields++;
    }
    ck_assert_msg(!quoted, "unbalanced quotes");
    *next = *line ? line + 1 : line;
    return fields;
}

/* The field'th (0-based) field of a line without quotes, into buffer. */
static const char *csv_field(const char *line, size_t field, char *buffer, size_t size) {
    for (size_t i = 0; i < field; i++) {
        line = strchr(line, ',');
        ck_assert_ptr_nonnull(line);
        line++;
    }
    size_t length = strcspn(line, ",\n");
    ck_assert_uint_lt(length, size);
    memcpy(buffer, line, length);
    buffer[length] = '\0';
    return buffer;
}

/* Checks a CSV block (header, then rows, up to a blank line or the end);
 * returns its rows; *next is after it. */
static size_t check_csv_block(const char *text, size_t want_columns, const char **next) {
    const char *line = text;
    size_t columns = csv_fields(line, &line);
    ck_assert_uint_eq(columns, want_columns);
    size_t rows = 0;
    while (*line && *line != '\n') {
        size_t fields = csv_fields(line, &line);
        ck_assert_msg(fields == columns, "row %zu has %zu fields, the header %zu", rows + 1, fields,
                      columns);
        rows++;
    }
    *next = *line == '\n' ? line + 1 : line;
    return rows;
}

START_TEST(test_csv_rows_have_the_header_s_columns) {
    run_result result =
        run_bench("-f", "csv", "-m", "1000", "-r", "2", "-w", "spsc,mpsc", "-c", "1,N", "-q", NULL);
    ck_assert_msg(result.status == 0, "exit %d: %s", result.status, result.err);
    ck_assert(strncmp(result.out, "workload,capacity,", 18) == 0);
    const char *rest;
    size_t rows = check_csv_block(result.out, 18, &rest);
    ck_assert_uint_eq(rows, 8); /* 2 workloads x 2 capacities x 2 peers */
    ck_assert_str_eq(rest, "");
    /* the second row: spsc at capacity 1, weft, 2 runs, a rate, a ratio */
    const char *row = strchr(strchr(result.out, '\n') + 1, '\n') + 1;
    char field[64];
    ck_assert_str_eq(csv_field(row, 0, field, sizeof field), "spsc");
    ck_assert_str_eq(csv_field(row, 3, field, sizeof field), "1");
    ck_assert_str_eq(csv_field(row, 4, field, sizeof field), "1000");
    ck_assert_str_eq(csv_field(row, 6, field, sizeof field), "weft");
    ck_assert_str_eq(csv_field(row, 7, field, sizeof field), "2");
    ck_assert(strtod(csv_field(row, 11, field, sizeof field), NULL) > 0); /* median M msg/s */
    ck_assert_str_eq(csv_field(row, 16, field, sizeof field), "condvar");
    ck_assert(strtod(csv_field(row, 17, field, sizeof field), NULL) > 0);
    free_run(&result);
}
END_TEST

START_TEST(test_csv_context_cases_come_as_a_second_block) {
    run_result result = run_bench("-f", "csv", "-m", "1000", "-r", "1", "-w", "spsc,recv_ctx", "-c",
                                  "1", "-q", NULL);
    ck_assert_msg(result.status == 0, "exit %d: %s", result.status, result.err);
    const char *rest;
    ck_assert_uint_eq(check_csv_block(result.out, 18, &rest), 2);
    ck_assert(strncmp(rest, "case,measure,", 13) == 0);
    ck_assert_uint_eq(check_csv_block(rest, 9, &rest), 3); /* recv_ctx's three measures */
    ck_assert_str_eq(rest, "");
    free_run(&result);
}
END_TEST

/* ---- JSON: a minimal validating parser -------------------------------------- */

typedef struct json_cursor {
    const char *at;
    const char *error; /* the first problem, or NULL */
} json_cursor;

static void json_space(json_cursor *cursor) {
    while (*cursor->at == ' ' || *cursor->at == '\n' || *cursor->at == '\t' || *cursor->at == '\r')
        cursor->at++;
}

static bool json_fail(json_cursor *cursor, const char *what) {
    if (cursor->error == NULL) cursor->error = what;
    return false;
}

static bool json_value(json_cursor *cursor, int depth);

static bool json_string(json_cursor *cursor) {
    if (*cursor->at != '"') return json_fail(cursor, "a string expected");
    for (cursor->at++; *cursor->at != '"'; cursor->at++) {
        if (*cursor->at == '\0' || (unsigned char)*cursor->at < 0x20)
            return json_fail(cursor, "an unterminated string or a control character");
        if (*cursor->at == '\\') {
            cursor->at++;
            if (strchr("\"\\/bfnrtu", *cursor->at) == NULL || *cursor->at == '\0')
                return json_fail(cursor, "a bad escape");
        }
    }
    cursor->at++;
    return true;
}

static bool json_number(json_cursor *cursor) {
    const char *start = cursor->at;
    if (*cursor->at == '-') cursor->at++;
    if (*cursor->at < '0' || *cursor->at > '9') return json_fail(cursor, "a number expected");
    if (*cursor->at == '0' && cursor->at[1] >= '0' && cursor->at[1] <= '9')
        return json_fail(cursor, "a leading zero");
    while (*cursor->at >= '0' && *cursor->at <= '9') cursor->at++;
    if (*cursor->at == '.') {
        cursor->at++;
        if (*cursor->at < '0' || *cursor->at > '9') return json_fail(cursor, "digits after '.'");
        while (*cursor->at >= '0' && *cursor->at <= '9') cursor->at++;
    }
    if (*cursor->at == 'e' || *cursor->at == 'E') {
        cursor->at++;
        if (*cursor->at == '+' || *cursor->at == '-') cursor->at++;
        if (*cursor->at < '0' || *cursor->at > '9') return json_fail(cursor, "an exponent");
        while (*cursor->at >= '0' && *cursor->at <= '9') cursor->at++;
    }
    return cursor->at > start;
}

/* An object or array: open, values (object: "key": value), close. */
static bool json_container(json_cursor *cursor, int depth, bool object) {
    cursor->at++;
    json_space(cursor);
    if (*cursor->at == (object ? '}' : ']')) {
        cursor->at++;
        return true;
    }
    for (;;) {
        json_space(cursor);
        if (object) {
            if (!json_string(cursor)) return false;
            json_space(cursor);
            if (*cursor->at != ':') return json_fail(cursor, "':' expected");
            cursor->at++;
        }
        if (!json_value(cursor, depth + 1)) return false;
        json_space(cursor);
        if (*cursor->at == ',') {
            cursor->at++;
            continue;
        }
        if (*cursor->at == (object ? '}' : ']')) {
            cursor->at++;
            return true;
        }
        return json_fail(cursor, object ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static bool json_value(json_cursor *cursor, int depth) {
    if (depth > 32) return json_fail(cursor, "nested too deep");
    json_space(cursor);
    switch (*cursor->at) {
    case '{': return json_container(cursor, depth, true);
    case '[': return json_container(cursor, depth, false);
    case '"': return json_string(cursor);
    case 't':
        if (strncmp(cursor->at, "true", 4) != 0) return json_fail(cursor, "true?");
        cursor->at += 4;
        return true;
    case 'f':
        if (strncmp(cursor->at, "false", 5) != 0) return json_fail(cursor, "false?");
        cursor->at += 5;
        return true;
    case 'n':
        if (strncmp(cursor->at, "null", 4) != 0) return json_fail(cursor, "null?");
        cursor->at += 4;
        return true;
    default: return json_number(cursor);
    }
}

/* Fails the test unless text is one JSON value and nothing else. */
static void assert_json(const char *text) {
    json_cursor cursor = {text, NULL};
    bool parsed = json_value(&cursor, 0);
    json_space(&cursor);
    ck_assert_msg(parsed && *cursor.at == '\0', "not JSON: %s at offset %td: %.40s",
                  cursor.error ? cursor.error : "text after the value", cursor.at - text,
                  cursor.at);
}

static size_t occurrences(const char *text, const char *needle) {
    size_t count = 0;
    for (const char *at = text; (at = strstr(at, needle)) != NULL; at += strlen(needle)) count++;
    return count;
}

START_TEST(test_json_validator_refuses_broken_json) {
    static const char *const broken[] = {"{",   "{\"a\": }", "[1, 2,]", "{\"a\" 1}",   "[01]",
                                         "\"x", "{} {}",     "[1.]",    "{\"a\":nul}", "[\"\\q\"]"};
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        json_cursor cursor = {broken[i], NULL};
        bool parsed = json_value(&cursor, 0);
        json_space(&cursor);
        ck_assert_msg(!parsed || *cursor.at != '\0', "accepted %s", broken[i]);
    }
    assert_json("{\"a\": [1, -2.5e3, true, false, null, \"\\\"\"], \"b\": {}}");
}
END_TEST

START_TEST(test_json_is_valid_with_a_result_per_row) {
    run_result result = run_bench("-f", "json", "-m", "1000", "-r", "2", "-w",
                                  "spsc,select_rx,recv_ctx", "-c", "0,N", "-q", NULL);
    ck_assert_msg(result.status == 0, "exit %d: %s", result.status, result.err);
    assert_json(result.out);
    ck_assert_ptr_nonnull(strstr(result.out, "\"tool\": \"weft-bench\""));
    ck_assert_ptr_nonnull(strstr(result.out, "\"results\": ["));
    ck_assert_ptr_nonnull(strstr(result.out, "\"context_results\": ["));
    /* spsc: 2 capacities x 2 peers; select_rx: 2 x weft */
    ck_assert_uint_eq(occurrences(result.out, "\"workload\": "), 6);
    ck_assert_uint_eq(occurrences(result.out, "\"case\": \"recv_ctx\""), 3);
    ck_assert_uint_eq(occurrences(result.out, "\"ratio_to_baseline\": null"), 2 + 2 + 3);
    free_run(&result);
}
END_TEST

/* ---- SVG ------------------------------------------------------------------- */

/* Why text is not well-formed XML as far as tags go, or NULL: every
 * element closed in order, one root <svg>, attributes quoted, '&' only in
 * entities, no '<' inside a tag. */
static const char *svg_problem(const char *text) {
    static char problem[128];
    const char *at = text;
    if (strncmp(at, "<?xml", 5) == 0) {
        at = strstr(at, "?>");
        if (at == NULL) return "an unclosed <?xml";
        at += 2;
    }
    while (*at == '\n' || *at == ' ') at++;
    if (strncmp(at, "<svg", 4) != 0) return "it does not start with <svg";
    char stack[64][32];
    int depth = 0;
    bool closed_root = false;
    while (*at) {
        if (*at != '<') {
            if (closed_root && *at != '\n' && *at != ' ') return "text after </svg>";
            if (*at == '&') {
                size_t length = strcspn(at, ";& <");
                if (length >= 8 || at[length] != ';') return "a bare '&'";
            }
            at++;
            continue;
        }
        const char *end = strchr(at, '>');
        if (end == NULL) return "an unclosed tag";
        size_t quotes = 0;
        for (const char *c = at + 1; c < end; c++) {
            if (*c == '<') return "'<' inside a tag";
            quotes += *c == '"';
        }
        if (quotes % 2 != 0) return "unbalanced quotes in a tag";
        bool closing = at[1] == '/', self_closing = end[-1] == '/';
        const char *name = at + (closing ? 2 : 1);
        size_t length = strcspn(name, " />\n");
        if (length == 0 || length >= 32) return "a bad tag name";
        if (closing) {
            if (depth == 0) return "a closing tag that closes nothing";
            depth--;
            if (strlen(stack[depth]) != length || strncmp(stack[depth], name, length) != 0) {
                snprintf(problem, sizeof problem, "</%.*s> closes <%.31s>", (int)length, name,
                         stack[depth]);
                return problem;
            }
            if (depth == 0) closed_root = true;
        } else if (!self_closing) {
            if (closed_root) return "a second root element";
            if (depth == 64) return "nested too deep";
            memcpy(stack[depth], name, length);
            stack[depth][length] = '\0';
            depth++;
        }
        at = end + 1;
    }
    if (depth != 0 || !closed_root) return "elements left open";
    return NULL;
}

START_TEST(test_svg_checker_refuses_broken_svg) {
    static const char *const broken[] = {"<svg><g></svg>",
                                         "<svg>a & b</svg>",
                                         "<g></g>",
                                         "<svg></svg><svg></svg>",
                                         "<svg><text x=\"1>a</text></svg>",
                                         "<svg>"};
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++)
        ck_assert_msg(svg_problem(broken[i]) != NULL, "accepted %s", broken[i]);
    ck_assert_ptr_null(
        svg_problem("<?xml version=\"1.0\"?>\n<svg a=\"&amp;\"><g/><t>x</t></svg>\n"));
}
END_TEST

START_TEST(test_svg_chart_is_a_standalone_svg_file) {
    char directory[] = "/tmp/weft-test-bench-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(directory));
    char path[sizeof directory + 16];
    snprintf(path, sizeof path, "%s/chart.svg", directory);
    run_result result = run_bench("-m", "1000", "-r", "2", "-w", "spsc,select_rx,spawn", "-c",
                                  "0,N", "-q", "-s", path, NULL);
    ck_assert_msg(result.status == 0, "exit %d: %s", result.status, result.err);
    ck_assert_ptr_nonnull(strstr(result.out, "\nworkload ")); /* the table still prints */
    FILE *file = fopen(path, "r");
    ck_assert_msg(file != NULL, "no %s", path);
    char *svg = slurp(file);
    const char *problem = svg_problem(svg);
    ck_assert_msg(problem == NULL, "not well-formed: %s", problem);
    ck_assert_ptr_nonnull(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    ck_assert_ptr_nonnull(strstr(svg, "</svg>"));
    ck_assert_ptr_nonnull(strstr(svg, "log scale"));
    ck_assert_ptr_nonnull(strstr(svg, "-w spsc,select_rx,spawn")); /* the command */
    /* a group per case: spsc x 2, select_rx x 2, spawn */
    ck_assert_uint_eq(occurrences(svg, "dominant-baseline=\"middle\">spsc"), 2);
    ck_assert_uint_eq(occurrences(svg, "dominant-baseline=\"middle\">select_rx"), 2);
    ck_assert_uint_eq(occurrences(svg, "dominant-baseline=\"middle\">spawn"), 1);
    /* a bar per peer and case: spsc 2 x 2, select_rx 2 x 1, spawn 2 */
    ck_assert_uint_eq(occurrences(svg, "<rect x=\"240\""), 8);
    ck_assert_uint_eq(occurrences(svg, "class=\"whisker\""), 8);
    free(svg);
    free_run(&result);
    remove(path);
    rmdir(directory);
}
END_TEST

/* ---- latency ---------------------------------------------------------------- */

static void shuffle(long *values, size_t count, uint64_t seed) {
    for (size_t i = count - 1; i > 0; i--) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        size_t j = (size_t)(seed % (i + 1));
        long kept = values[i];
        values[i] = values[j];
        values[j] = kept;
    }
}

START_TEST(test_latency_points_are_nearest_rank_quantiles) {
    static long samples[10000];
    for (size_t i = 0; i < 10000; i++) samples[i] = (long)i + 1;
    shuffle(samples, 10000, 42);
    double points[LATENCY_POINTS];
    report_latency_points(samples, 10000, points);
    ck_assert_double_eq(points[LATENCY_MIN], 1);
    ck_assert_double_eq(points[LATENCY_P50], 5000);
    ck_assert_double_eq(points[LATENCY_P99], 9900);
    ck_assert_double_eq(points[LATENCY_P999], 9990);
    ck_assert_double_eq(points[9], 9999); /* 99.99%: not the slowest */
    ck_assert_double_eq(points[LATENCY_MAX], 10000);
    for (size_t i = 1; i < LATENCY_POINTS; i++) ck_assert(points[i - 1] <= points[i]);
    long one = 7;
    report_latency_points(&one, 1, points);
    for (size_t i = 0; i < LATENCY_POINTS; i++) ck_assert_double_eq(points[i], 7);
}
END_TEST

/* The figures of one latency row, in microseconds. */
typedef struct latency_figures {
    long samples;
    int runs;
    double min, p50, p50_low, p50_high, p99, p99_low, p99_high, p999, max;
} latency_figures;

/* Every figure positive (the sample array starts as -1s: a slot not
 * written would be the min) and in order. */
static void assert_ordered(const latency_figures *row, const char *what) {
    ck_assert_msg(row->min > 0, "%s: min %g", what, row->min);
    ck_assert_msg(row->min <= row->p50 && row->p50 <= row->p99 && row->p99 <= row->p999 &&
                      row->p999 <= row->max,
                  "%s: %g %g %g %g %g out of order", what, row->min, row->p50, row->p99, row->p999,
                  row->max);
    ck_assert_msg(row->p50_low <= row->p50 && row->p50 <= row->p50_high, "%s: p50 spread", what);
    ck_assert_msg(row->p99_low <= row->p99 && row->p99 <= row->p99_high, "%s: p99 spread", what);
}

START_TEST(test_latency_table_has_ordered_percentiles_for_every_case) {
    run_result result =
        run_bench("-w", "latency", "-c", "0,1,N", "-m", "300", "-t", "2", "-r", "2", "-q", NULL);
    ck_assert_msg(result.status == 0, "exit %d: %s", result.status, result.err);
    ck_assert_msg(strncmp(result.out, "weft-bench latency", 18) == 0, "%s", result.out);
    ck_assert_ptr_null(strstr(result.out, "M msg/s")); /* no throughput section */
    ck_assert_ptr_nonnull(strstr(result.out, "\nmachine: "));
    const char *header = strstr(result.out, "\nworkload ");
    ck_assert_ptr_nonnull(header);
    size_t rows = 0, with_ratio = 0;
    for (const char *line = strchr(header + 1, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
        char workload[32], capacity[8], peer[16], p50_spread[40], p99_spread[40];
        latency_figures row = {0};
        if (*line != '\n' && sscanf(line, "%31s %7s %ld %15s %lf %lf %39s %lf %39s %lf %lf",
                                    workload, capacity, &row.samples, peer, &row.min, &row.p50,
                                    p50_spread, &row.p99, p99_spread, &row.p999, &row.max) == 11) {
            ck_assert(sscanf(p50_spread, "(%lf-%lf)", &row.p50_low, &row.p50_high) == 2);
            ck_assert(sscanf(p99_spread, "(%lf-%lf)", &row.p99_low, &row.p99_high) == 2);
            ck_assert_msg(strcmp(workload, "latency_light") == 0 ||
                              strcmp(workload, "latency_full") == 0,
                          "%s", line);
            ck_assert_int_eq(row.samples, 300); /* every message is a sample */
            assert_ordered(&row, line);
            const char *end = strchr(line, '\n');
            if (strcmp(peer, "weft") == 0 && end[-1] == 'x') with_ratio++;
            rows++;
        }
        if (strchr(line, '\n') == NULL) break;
    }
    ck_assert_msg(rows == 12, "%zu rows: %s", rows, result.out); /* 2 x 3 capacities x 2 peers */
    ck_assert_uint_eq(with_ratio, 6);
    free_run(&result);
}
END_TEST

START_TEST(test_latency_csv_block_between_channel_and_context_blocks) {
    run_result result = run_bench("-f", "csv", "-m", "200", "-r", "2", "-t", "3", "-w",
                                  "spsc,latency_full,recv_ctx", "-c", "1", "-q", NULL);
    ck_assert_msg(result.status == 0, "exit %d: %s", result.status, result.err);
    const char *rest;
    ck_assert_uint_eq(check_csv_block(result.out, 18, &rest), 2); /* spsc only */
    ck_assert_msg(
        strncmp(rest, "workload,capacity,capacity_is_messages,capacity_label,samples,", 62) == 0,
        "%s", rest);
    const char *block = rest;
    ck_assert_uint_eq(check_csv_block(block, 20, &rest), 2);
    ck_assert(strncmp(rest, "case,measure,", 13) == 0);
    static const char *const names[] = {"min_us",
                                        "p50_us",
                                        "p99_us",
                                        "p999_us",
                                        "max_us",
                                        "p50_ratio_to_baseline",
                                        "p99_ratio_to_baseline"};
    const char *header_end = strchr(block, '\n');
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *at = strstr(block, names[i]);
        ck_assert_msg(at != NULL && at < header_end, "the header lacks %s", names[i]);
    }
    char field[64];
    for (const char *row = header_end + 1; *row != '\n'; row = strchr(row, '\n') + 1) {
        ck_assert_str_eq(csv_field(row, 0, field, sizeof field), "latency_full");
        ck_assert_str_eq(csv_field(row, 4, field, sizeof field), "198"); /* 3 x 66 */
        ck_assert_str_eq(csv_field(row, 5, field, sizeof field), "3");
        ck_assert_str_eq(csv_field(row, 7, field, sizeof field), "2");
        latency_figures figures;
        double *targets[] = {&figures.min,      &figures.p50,  &figures.p50_low,
                             &figures.p50_high, &figures.p99,  &figures.p99_low,
                             &figures.p99_high, &figures.p999, &figures.max};
        for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
            *targets[i] = strtod(csv_field(row, 8 + i, field, sizeof field), NULL);
        assert_ordered(&figures, row);
        bool weft = strcmp(csv_field(row, 6, field, sizeof field), "weft") == 0;
        ck_assert_str_eq(csv_field(row, 17, field, sizeof field), "condvar");
        ck_assert(weft == (strtod(csv_field(row, 18, field, sizeof field), NULL) > 0));
        ck_assert(weft == (strtod(csv_field(row, 19, field, sizeof field), NULL) > 0));
    }
    free_run(&result);
}
END_TEST

START_TEST(test_latency_json_has_a_row_per_peer_and_the_machine) {
    run_result result = run_bench("-f", "json", "-m", "200", "-r", "3", "-w", "spsc,latency_light",
                                  "-c", "0,N", "-q", NULL);
    ck_assert_msg(result.status == 0, "exit %d: %s", result.status, result.err);
    assert_json(result.out);
    ck_assert_ptr_nonnull(strstr(result.out, "\"cpu_model\": \""));
    ck_assert_ptr_nonnull(strstr(result.out, "\"round_trip_ns\": "));
    ck_assert_ptr_nonnull(strstr(result.out, "\"latency_quantiles\": [0.000000, 0.250000"));
    const char *latency = strstr(result.out, "\"latency_results\": [");
    ck_assert_ptr_nonnull(latency);
    ck_assert_uint_eq(occurrences(result.out, "\"workload\": \"spsc\""), 4);
    ck_assert_uint_eq(occurrences(latency, "\"workload\": \"latency_light\""), 4);
    ck_assert_uint_eq(occurrences(latency, "\"samples\": 200"), 4);
    ck_assert_uint_eq(occurrences(latency, "\"p99_us\": {\"median\": "), 4);
    ck_assert_uint_eq(occurrences(latency, "\"p50_ratio_to_baseline\": null"), 2); /* condvar */
    free_run(&result);
}
END_TEST

START_TEST(test_latency_svg_has_a_panel_per_case_and_a_curve_per_run) {
    char directory[] = "/tmp/weft-test-bench-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(directory));
    char path[sizeof directory + 16];
    snprintf(path, sizeof path, "%s/latency.svg", directory);
    run_result result = run_bench("-m", "200", "-r", "2", "-w", "latency", "-c", "0,1,N", "-q",
                                  "--latency-svg", path, NULL);
    ck_assert_msg(result.status == 0, "exit %d: %s", result.status, result.err);
    FILE *file = fopen(path, "r");
    ck_assert_msg(file != NULL, "no %s", path);
    char *svg = slurp(file);
    const char *problem = svg_problem(svg);
    ck_assert_msg(problem == NULL, "not well-formed: %s", problem);
    ck_assert_ptr_nonnull(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    ck_assert_ptr_nonnull(strstr(svg, "latency by percentile"));
    ck_assert_ptr_nonnull(strstr(svg, "-w latency")); /* the command */
    ck_assert_uint_eq(occurrences(svg, "font-weight=\"bold\">latency_light <tspan"), 3);
    ck_assert_uint_eq(occurrences(svg, "font-weight=\"bold\">latency_full <tspan"), 3);
    /* 6 cases x 2 peers: a median curve and 2 runs each, a dot per quantile */
    ck_assert_uint_eq(occurrences(svg, "<polyline "), 6 * 2 * 3);
    ck_assert_uint_eq(occurrences(svg, "stroke-width=\"2\""), 6 * 2);
    ck_assert_uint_eq(occurrences(svg, "<circle "), 6 * 2 * LATENCY_POINTS);
    free(svg);
    free_run(&result);
    remove(path);
    rmdir(directory);
}
END_TEST

/* ---- every workload once -------------------------------------------------------- */

START_TEST(test_every_workload_runs_and_checks_itself) {
    /* A few thousand messages each, 2 threads; each run checks its sums
     * or counts and exits 1 on a wrong one. */
    run_result result = run_bench("-w", "chan", "-c", "0,1,N", "-m", "2000", "-t", "2", "-r", "1",
                                  "-f", "csv", "-q", NULL);
    ck_assert_msg(result.status == 0, "exit %d: %s", result.status, result.err);
    ck_assert_str_eq(result.err, "");
    const char *rest;
    check_csv_block(result.out, 18, &rest);
    for (size_t i = 0; i < workload_count; i++) {
        char row[64];
        snprintf(row, sizeof row, "\n%s,", workloads[i].name);
        ck_assert_msg(strstr(result.out, row) != NULL, "%s did not run", workloads[i].name);
        for (size_t p = 0; p < peer_count; p++) {
            bool runs = (peers[p].provides & workloads[i].needs) == workloads[i].needs;
            char peer_field[64];
            snprintf(peer_field, sizeof peer_field, ",%s,", peers[p].name);
            bool ran = false;
            for (const char *at = result.out; (at = strstr(at, row)) != NULL; at++) {
                const char *end = strchr(at + 1, '\n');
                const char *hit = strstr(at + 1, peer_field);
                if (hit != NULL && (end == NULL || hit < end)) ran = true;
            }
            ck_assert_msg(ran == runs, "%s on %s: ran %d, should %d", workloads[i].name,
                          peers[p].name, ran, runs);
        }
    }
    /* Go's channel benchmarks on the condvar queue have a ratio; chan_sync
     * always runs 2 threads */
    ck_assert_ptr_nonnull(strstr(result.out, "\nchan_prodcons10,10,0,10,2000,2,weft,1,"));
    ck_assert_ptr_nonnull(strstr(result.out, "\nchan_sync,0,0,0,2000,2,condvar,1,"));
    ck_assert_ptr_nonnull(strstr(result.out, "\nchan_contended,200,0,100T,2000,2,weft,1,"));
    ck_assert_ptr_nonnull(strstr(result.out, "\nspawn,0,0,-,2000,2,pthread,1,"));
    free_run(&result);
}
END_TEST

START_TEST(test_shares_round_to_at_least_one_each) {
    run_result result = run_bench("-w", "mpsc", "-c", "N", "-m", "3", "-t", "4", "-r", "1", "-f",
                                  "csv", "-q", NULL);
    ck_assert_msg(result.status == 0, "exit %d: %s", result.status, result.err);
    /* capacity N is the messages asked for; 4 went through, 1 per producer */
    ck_assert_ptr_nonnull(strstr(result.out, "\nmpsc,3,1,N,4,4,condvar,1,"));
    free_run(&result);
}
END_TEST

static Suite *bench_suite(void) {
    Suite *suite = suite_create("bench");
    TCase *tc;

    tc = new_case(suite, "options");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_every_option_with_a_value_in_each_spelling);
    tcase_add_test(tc, test_flags_in_long_and_short_form);
    tcase_add_test(tc, test_formats_and_counts);
    tcase_add_test(tc, test_workload_groups);
    tcase_add_test(tc, test_messages_per_case);
    tcase_add_test(tc, test_each_error_is_refused);

    tc = new_case(suite, "usage");
    tcase_add_test(tc, test_program_errors_exit_2_with_one_line_and_usage);
    tcase_add_test(tc, test_unwritable_svg_is_refused_before_the_run);
    tcase_add_test(tc, test_nothing_to_run_is_a_usage_error);
    tcase_add_test(tc, test_help_names_every_option);
    tcase_add_test(tc, test_list_names_workloads_peers_and_context_cases);

    tc = new_case(suite, "formats");
    tcase_add_test(tc, test_table_has_the_header_and_a_row_per_peer);
    tcase_add_test(tc, test_progress_lines_on_stderr_unless_quiet);
    tcase_add_test(tc, test_csv_rows_have_the_header_s_columns);
    tcase_add_test(tc, test_csv_context_cases_come_as_a_second_block);
    tcase_add_test(tc, test_json_validator_refuses_broken_json);
    tcase_add_test(tc, test_json_is_valid_with_a_result_per_row);
    tcase_add_test(tc, test_svg_checker_refuses_broken_svg);
    tcase_add_test(tc, test_svg_chart_is_a_standalone_svg_file);

    tc = new_case(suite, "latency");
    tcase_add_test(tc, test_latency_points_are_nearest_rank_quantiles);
    tcase_add_test(tc, test_latency_table_has_ordered_percentiles_for_every_case);
    tcase_add_test(tc, test_latency_csv_block_between_channel_and_context_blocks);
    tcase_add_test(tc, test_latency_json_has_a_row_per_peer_and_the_machine);
    tcase_add_test(tc, test_latency_svg_has_a_panel_per_case_and_a_curve_per_run);

    tc = new_case(suite, "workloads");
    tcase_add_test(tc, test_every_workload_runs_and_checks_itself);
    tcase_add_test(tc, test_shares_round_to_at_least_one_each);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(bench_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
