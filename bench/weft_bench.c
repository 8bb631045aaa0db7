/* weft_bench.c — main of weft-bench, the channel throughput tool.
 *
 * Runs every selected case (workload x capacity) on every selected peer,
 * repetition by repetition, alternating the peer order between
 * repetitions so that slow and fast periods of the machine fall on both;
 * times each run (wall clock and the process's CPU time). Then runs the
 * selected cases of the context group (weft alone; each repetition
 * measures and interleaves by itself; last, because they turn malloc's
 * heap trimming off), and prints the report. Progress
 * goes to stderr, the report to stdout.
 *
 * A latency case also hands its run a preallocated array for one sample
 * per message and turns the samples into percentiles after each run.
 *
 * Modules: options.c (command line), workloads.c (what a run does),
 * peers.c (weft, the condvar baseline, pthread for spawning), ctx_cases.c
 * (the context group), report.c (statistics, output), chart.c (--svg,
 * --latency-svg), machine.c (the CPU and its cache-line round trip). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "chart.h"
#include "ctx_cases.h"
#include "machine.h"
#include "options.h"
#include "peers.h"
#include "report.h"
#include "workloads.h"

/* ---- timing ------------------------------------------------------------- */

static double wall_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* User + system CPU time of the whole process (every thread, including
 * threads that have exited), so spinning shows even when wall time hides it. */
static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec * 1e-6 +
           (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec * 1e-6;
}

/* ---- watchdog: a run that hangs (a lost wake-up) must not hang the tool -- */

static char timeout_message[256];
static size_t timeout_message_length;

static void on_timeout(int signal_number) {
    (void)signal_number;
    ssize_t written = write(STDERR_FILENO, timeout_message, timeout_message_length);
    (void)written;
    _exit(3);
}

/* what: the run, e.g. "weft spsc capacity 1, 50000 messages". */
static void watchdog_arm(const bench_options *options, const char *what) {
    if (options->timeout_seconds == 0) return;
    snprintf(timeout_message, sizeof timeout_message,
             "weft-bench: %s: no result after %d s (deadlock or lost wake-up?)\n", what,
             options->timeout_seconds);
    timeout_message_length = strlen(timeout_message);
    alarm((unsigned)options->timeout_seconds);
}

static void watchdog_disarm(void) { alarm(0); }

/* ---- the runs ----------------------------------------------------------- */

/* Runs one repetition of a case on a peer and records it in result. */
static long measure(const bench_options *options, const bench_workload *workload,
                    const workload_params *params, peer_result *result) {
    char what[160];
    snprintf(what, sizeof what, "%s %s capacity %zu, %ld messages", params->peer->name,
             workload->name, params->capacity, params->messages);
    watchdog_arm(options, what);
    double cpu_before = cpu_seconds();
    double wall_before = wall_seconds();
    long transferred = workload->run(params);
    double wall_after = wall_seconds();
    double cpu_after = cpu_seconds();
    watchdog_disarm();
    result->seconds[result->runs] = wall_after - wall_before;
    result->cpu_seconds[result->runs] = cpu_after - cpu_before;
    result->runs++;
    return transferred;
}

typedef struct case_plan {
    const bench_workload *workload;
    long capacity_entry; /* as listed: a number or CAPACITY_MESSAGES; Go's: their own */
    size_t capacity;
    long messages;
    int threads;
    const bench_peer *peers[MAX_PEERS];
    size_t peer_count;
} case_plan;

/* Fills plan for a workload and capacity entry (ignored for workloads of
 * fixed capacity); false if no selected peer runs it (seq below capacity
 * N, select without weft, spawn without weft and pthread). */
static bool plan_case(const bench_options *options, const bench_workload *workload,
                      long capacity_entry, case_plan *plan) {
    if (!workload_in_grid(workload)) capacity_entry = workload->fixed_capacity;
    *plan = (case_plan){.workload = workload,
                        .capacity_entry = capacity_entry,
                        .threads = workload_threads(workload, options->threads)};
    plan->messages = options_messages_for(options, workload, capacity_entry);
    plan->capacity =
        capacity_entry == CAPACITY_MESSAGES ? (size_t)plan->messages : (size_t)capacity_entry;
    if (workload->capacity_per_thread) plan->capacity *= (size_t)plan->threads;
    for (size_t i = 0; i < peer_count; i++)
        if (options->peer_selected[i] &&
            workload_applies(workload, &peers[i], plan->capacity, plan->messages))
            plan->peers[plan->peer_count++] = &peers[i];
    return plan->peer_count > 0;
}

/* The progress line's figures of one peer: its median rate, or for a
 * latency case its median p50 and p99. */
static void print_progress_figures(const case_result *result, const peer_result *peer) {
    if (peer->latency_ns != NULL) {
        measure_summary p50, p99;
        report_summarize_latency(peer, LATENCY_P50, &p50);
        report_summarize_latency(peer, LATENCY_P99, &p99);
        fprintf(stderr, " %s p50 %.3g us p99 %.3g us", peer->peer, p50.median / 1e3,
                p99.median / 1e3);
        return;
    }
    run_summary summary;
    report_summarize(peer, result->messages, &summary);
    fprintf(stderr, " %s %.3g M/s", peer->peer, summary.median_rate / 1e6);
}

/* Room for every sample of a latency case's run (shares round up to one
 * per thread). */
static size_t sample_room(const case_plan *plan) {
    return (size_t)plan->messages + (size_t)plan->threads;
}

/* A latency case's sample array (run_case resets it before each run,
 * which touches every page: no page fault falls inside a run). Exits with
 * status 2 when memory runs out. */
static long *allocate_samples(const case_plan *plan) {
    long *samples = calloc(sample_room(plan), sizeof *samples);
    if (samples == NULL) {
        fputs("weft-bench: out of memory\n", stderr);
        exit(2);
    }
    return samples;
}

static void run_case(const bench_options *options, const case_plan *plan, bench_report *report,
                     size_t number, size_t total) {
    const char *names[MAX_PEERS];
    bool is_baseline[MAX_PEERS];
    for (size_t i = 0; i < plan->peer_count; i++) {
        names[i] = plan->peers[i]->name;
        is_baseline[i] = (plan->peers[i]->baseline_for & plan->workload->needs) != 0;
    }
    bool latency = plan->workload->latency;
    case_result *result =
        latency ? report_add_latency_case(report, plan->workload->name, plan->capacity,
                                          plan->capacity_entry == CAPACITY_MESSAGES, plan->messages,
                                          plan->threads, plan->peer_count, names, is_baseline,
                                          options->repeat)
                : report_add_case(report, plan->workload->name, plan->capacity,
                                  plan->capacity_entry == CAPACITY_MESSAGES,
                                  plan->workload->capacity_label, plan->messages, plan->threads,
                                  plan->peer_count, names, is_baseline, options->repeat);
    char capacity_text[32];
    report_capacity_text(result, capacity_text, sizeof capacity_text);
    long *samples = latency ? allocate_samples(plan) : NULL;

    double started = wall_seconds();
    for (int repetition = 0; repetition < options->repeat; repetition++) {
        for (size_t step = 0; step < plan->peer_count; step++) {
            /* even repetitions run the peers in table order, odd ones reversed */
            size_t index = repetition % 2 == 0 ? step : plan->peer_count - 1 - step;
            workload_params params = {plan->peers[index], plan->capacity, plan->messages,
                                      plan->threads, samples};
            peer_result *peer = &result->peers[index];
            /* -1 ns everywhere: a sample the run did not store shows as the min */
            if (latency) memset(samples, 0xff, sample_room(plan) * sizeof *samples);
            result->messages = measure(options, plan->workload, &params, peer);
            if (latency)
                report_latency_points(samples, (size_t)result->messages,
                                      &peer->latency_ns[(size_t)(peer->runs - 1) * LATENCY_POINTS]);
        }
    }
    free(samples);

    if (!options->quiet) {
        fprintf(stderr, "weft-bench: [%zu/%zu] %s cap %s, %ld messages:", number, total,
                plan->workload->name, capacity_text, result->messages);
        for (size_t i = 0; i < plan->peer_count; i++)
            print_progress_figures(result, &result->peers[i]);
        fprintf(stderr, " (%.2f s)\n", wall_seconds() - started);
    }
}

/* ---- the context group --------------------------------------------------- */

/* Runs the repetitions of a context case (weft only, this thread) and
 * records each measure of each in the report. */
static void run_ctx_case(const bench_options *options, const ctx_case *which, bench_report *report,
                         size_t number, size_t total) {
    measures_result *result = report_add_measures(report, which->name, which->measure_count,
                                                  which->measures, options->repeat);
    char what[160];
    snprintf(what, sizeof what, "weft %s", which->name);
    double started = wall_seconds();
    for (int repetition = 0; repetition < options->repeat; repetition++) {
        double values[CTX_MAX_MEASURES];
        watchdog_arm(options, what);
        which->run(values);
        watchdog_disarm();
        for (size_t m = 0; m < which->measure_count; m++)
            result->measures[m].values[result->measures[m].runs++] = values[m];
    }
    if (!options->quiet) {
        fprintf(stderr, "weft-bench: [%zu/%zu] %s:", number, total, which->name);
        for (size_t m = 0; m < which->measure_count; m++) {
            measure_summary summary;
            report_summarize_measure(&result->measures[m], &summary);
            fprintf(stderr, "%s %.4g %s", m ? "," : "", summary.median, which->measures[m].unit);
        }
        fprintf(stderr, " (%.2f s)\n", wall_seconds() - started);
    }
}

/* Whether the weft peer is selected: the context group needs it. */
static bool weft_selected(const bench_options *options) {
    const bench_peer *weft = peer_find("weft");
    return weft != NULL && options->peer_selected[weft - peers];
}

/* ---- --list ------------------------------------------------------------- */

/* The peers that run workload, as "condvar, weft". */
static void print_peers_of(const bench_workload *workload) {
    const char *separator = "";
    for (size_t i = 0; i < peer_count; i++) {
        if ((peers[i].provides & workload->needs) != workload->needs) continue;
        printf("%s%s", separator, peers[i].name);
        separator = ", ";
    }
}

static void print_list(void) {
    puts("workloads (T = --threads; [peers that run it]):");
    for (size_t i = 0; i < workload_count; i++) {
        const bench_workload *workload = &workloads[i];
        printf("  %-18s %s [", workload->name, workload->summary);
        print_peers_of(workload);
        putchar(']');
        if (!workload_in_grid(workload)) {
            printf(" [");
            if (workload->capacity_label == NULL)
                printf("capacity %ld, ", workload->fixed_capacity);
            else if (strcmp(workload->capacity_label, "-") != 0)
                printf("capacity %s, ", workload->capacity_label);
            printf("%ld messages by default]", workload->default_messages);
        } else if (workload->default_messages > 0) {
            printf(" [%ld messages by default]", workload->default_messages);
        }
        putchar('\n');
        if (workload->go_reference != NULL)
            printf("  %-18s   Go 1.19 here (GOMAXPROCS=2): %s\n", "", workload->go_reference);
    }
    puts(
        "groups: grid (the first six, at every --cap), go (Go's benchmarks), latency "
        "(latency_light and latency_full, at every --cap), chan (every workload), ctx (the context "
        "cases), all");
    puts("peers:");
    for (size_t i = 0; i < peer_count; i++) {
        printf("  %-18s %s", peers[i].name, peers[i].summary);
        if (peers[i].baseline_for & PEER_CHANNEL) printf(" [baseline of the channel workloads]");
        if (peers[i].baseline_for & PEER_SPAWN) printf(" [baseline of spawn]");
        putchar('\n');
    }
    puts("context cases (-w ctx; weft only, one thread; --cap, --messages, --threads do not "
         "apply):");
    for (size_t i = 0; i < ctx_case_count; i++) {
        printf("  %-18s %s\n", ctx_cases[i].name, ctx_cases[i].summary);
        for (size_t m = 0; m < ctx_cases[i].measure_count; m++) {
            const measure_spec *measure = &ctx_cases[i].measures[m];
            printf("  %-18s   - %s (%s", "", measure->name, measure->unit);
            if (measure->limit > 0) printf("; limit %g", measure->limit);
            puts(")");
        }
    }
}

/* ---- the command line, the baselines and the chart ----------------------- */

/* argv as a shell would take it back: words with anything but letters,
 * digits and -_.,/=: in single quotes. Cut short (with "...") when long. */
static void describe_command(int argc, char **argv, char *out, size_t size) {
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < argc && used + 1 < size; i++) {
        const char *word = i == 0 ? "weft-bench" : argv[i];
        bool plain = *word != '\0';
        for (const char *c = word; *c; c++)
            plain &= (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || strchr("-_.,/=:+", *c) != NULL;
        int written =
            snprintf(out + used, size - used, plain ? "%s%s" : "%s'%s'", i ? " " : "", word);
        if (written < 0 || (size_t)written >= size - used) {
            snprintf(out + (size > 4 ? size - 4 : 0), size > 4 ? 4 : size, "...");
            return;
        }
        used += (size_t)written;
    }
}

/* "condvar; pthread for spawn": every peer that is a baseline, and of what. */
static void describe_baselines(char *out, size_t size) {
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < peer_count && used < size; i++) {
        if (peers[i].baseline_for == 0) continue;
        int written = snprintf(out + used, size - used, "%s%s%s", used ? "; " : "", peers[i].name,
                               peers[i].baseline_for & PEER_CHANNEL ? "" : " for spawn");
        if (written < 0) return;
        used += (size_t)written;
    }
}

/* Whether path can be written, found before the run rather than a minute
 * after it: opened for appending (which neither truncates it nor makes a
 * directory writable), and removed again if it did not exist. errno is
 * set when not. */
static bool can_write(const char *path) {
    bool existed = access(path, F_OK) == 0;
    FILE *file = fopen(path, "a");
    if (file == NULL) return false;
    fclose(file);
    if (!existed) remove(path);
    return true;
}

typedef int chart_writer(const bench_report *report, const chart_info *info, FILE *out);

/* Writes a chart with write to path (given as option, for messages); 0,
 * or 1 after one line on stderr. */
static int write_chart(const bench_report *report, chart_writer *write, const char *option,
                       const char *path, const char *command, const char *date) {
    FILE *file = fopen(path, "w");
    if (file == NULL) {
        fprintf(stderr, "weft-bench: cannot write %s '%s': %s\n", option, path, strerror(errno));
        return 1;
    }
    chart_info info = {command, date};
    int written = write(report, &info, file);
    if (fclose(file) != 0 || written != 0) {
        fprintf(stderr, "weft-bench: writing %s '%s' failed\n", option, path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (workload_count > MAX_WORKLOADS || peer_count > MAX_PEERS ||
        ctx_case_count > MAX_CTX_CASES) {
        fputs("weft-bench: internal: raise MAX_WORKLOADS, MAX_PEERS or MAX_CTX_CASES\n", stderr);
        return 2;
    }
    bench_options options;
    int status = options_parse(&options, argc, argv);
    if (status != 0) return status;
    if (options.help) {
        options_usage(stdout);
        return 0;
    }
    if (options.list) {
        print_list();
        return 0;
    }
    signal(SIGALRM, on_timeout);

    /* Plan every case first, to number the progress lines. */
    size_t planned = 0, capacity_slots = workload_count * options.capacity_count;
    case_plan *plans = calloc(capacity_slots ? capacity_slots : 1, sizeof *plans);
    if (plans == NULL) {
        fputs("weft-bench: out of memory\n", stderr);
        return 2;
    }
    for (size_t w = 0; w < workload_count; w++) {
        if (!options.workload_selected[w]) continue;
        /* Go's benchmarks and spawn: once, at their own capacity */
        size_t entries = workload_in_grid(&workloads[w]) ? options.capacity_count : 1;
        for (size_t c = 0; c < entries; c++)
            if (plan_case(&options, &workloads[w], options.capacities[c], &plans[planned]))
                planned++;
    }
    const ctx_case *ctx_planned[MAX_CTX_CASES];
    size_t ctx_planned_count = 0;
    for (size_t i = 0; i < ctx_case_count; i++)
        if (options.ctx_case_selected[i] && weft_selected(&options))
            ctx_planned[ctx_planned_count++] = &ctx_cases[i];
    if (planned + ctx_planned_count == 0) {
        free(plans);
        return options_error("nothing to run (seq needs capacity N; select, Go's non-blocking "
                             "benchmarks and the context cases need weft; spawn needs weft or "
                             "pthread)");
    }
    char command[1024];
    describe_command(argc, argv, command, sizeof command);
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M %Z", localtime(&now));
    const char *const chart_paths[2] = {options.svg_path, options.latency_svg_path};
    static const char *const chart_options[2] = {"--svg", "--latency-svg"};
    for (size_t i = 0; i < 2; i++) {
        if (chart_paths[i] != NULL && !can_write(chart_paths[i])) {
            int error = errno;
            free(plans);
            return options_error("cannot write %s '%s': %s", chart_options[i], chart_paths[i],
                                 strerror(error));
        }
    }

    char messages_note[96];
    if (options.messages > 0)
        snprintf(messages_note, sizeof messages_note, "%ld", options.messages);
    else
        snprintf(messages_note, sizeof messages_note,
                 "%ld (%ld at capacity 0 and 1; Go's benchmarks and spawn: their own)",
                 DEFAULT_MESSAGES, DEFAULT_SMALL_CAPACITY_MESSAGES);
    char baseline_note[128];
    describe_baselines(baseline_note, sizeof baseline_note);
    double load_average = -1;
    if (getloadavg(&load_average, 1) != 1) load_average = -1;
    char cpu_model[128];
    machine_cpu_model(cpu_model, sizeof cpu_model);
    report_context context = {.threads = options.threads,
                              .repeat = options.repeat,
                              .cpus = sysconf(_SC_NPROCESSORS_ONLN),
                              .load_average = load_average,
                              .baseline = peer_baseline(PEER_CHANNEL)->name,
                              .baseline_note = baseline_note,
                              .messages_note = messages_note,
                              .cpu_model = cpu_model,
                              .round_trip_ns = machine_round_trip_ns()};
    bench_report *report = report_new(&context);

    double started = wall_seconds();
    size_t total = planned + ctx_planned_count;
    for (size_t i = 0; i < planned; i++) run_case(&options, &plans[i], report, i + 1, total);
    for (size_t i = 0; i < ctx_planned_count; i++)
        run_ctx_case(&options, ctx_planned[i], report, planned + i + 1, total);
    if (!options.quiet)
        fprintf(stderr, "weft-bench: %zu cases in %.1f s\n", total, wall_seconds() - started);

    report_print(report, options.format, stdout);
    if (options.svg_path != NULL)
        status |= write_chart(report, chart_write_svg, "--svg", options.svg_path, command, date);
    if (options.latency_svg_path != NULL)
        status |= write_chart(report, chart_write_latency_svg, "--latency-svg",
                              options.latency_svg_path, command, date);
    report_free(report);
    free(plans);
    return status;
}
