/* Deadlock detection: the registry of counted sleepers, the watchdog
 * thread and the report. The argument (what is counted, why a report is
 * never made while something can still wake a sleeper, and what it costs
 * when off) is at the top of deadlock.h.
 *
 * What the registry lock protects
 *   The list of listed sleepers (first_sleeper, last_sleeper and each
 *   parker's sleeper links and goroutine flag), the counts asleep_goroutines
 *   and asleep_others, epoch, and the watchdog's start-up state (watch,
 *   watch_ready, watchdog_started). A parker is listed from its owner's
 *   compare-and-swap into a counted sleep until the owner has woken; the
 *   counts follow the parker states exactly except between an unparker's
 *   exchange and its unparked (the observer hook), a window the watchdog's final
 *   walk closes by looking at the states themselves.
 *
 * The watchdog
 *   It sleeps on `watch` until the counts match (every goroutine asleep,
 *   and another thread too). Then it notes the epoch and whether a timer is
 *   pending, and waits out the grace period. It reports only if the epoch
 *   did not move, no timer was pending at either end, and every listed
 *   sleeper is still asleep and unclaimed with the counts still matching;
 *   otherwise it starts over (a pending timer is re-checked each grace
 *   period: it may fire into a channel nobody reads and leave everyone
 *   asleep). Pokes come from the sleeper whose registration makes the
 *   counts match and from a goroutine's end; both also move the epoch. */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deadlock.h"
#include "dump.h"
#include "fork.h"
#include "panic.h"
#include "parker.h"
#include "thread.h"
#include "time_internal.h"
#include "timer.h"
#include "weft/chan.h"
#include "weft/go.h"
#include "weft/select.h"

/* How long the counts must hold, with nothing else happening, before a
 * report. Long enough that a thread outside weft that is about to wake a
 * sleeper usually shows itself; short enough for a person waiting. */
#define GRACE WEFT_MS(500)

enum { NAME_SIZE = 16 /* Linux thread names: 15 characters and the NUL */, LINE_SIZE = 512 };

atomic_bool weft__deadlock_on;

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t watch;        /* the watchdog waits here; CLOCK_MONOTONIC; registry */
static bool watch_ready;            /* watch initialised; registry */
static bool watchdog_started;       /* the watchdog thread exists; registry */
static weft__parker *first_sleeper; /* oldest listed sleeper; registry */
static weft__parker *last_sleeper;  /* newest; registry */
static int asleep_goroutines;       /* parkers in ASLEEP_GOROUTINE; registry */
static int asleep_others;           /* parkers in ASLEEP_OTHER; registry */
static uint64_t epoch;              /* moves at every change above; registry */

static const weft__sleep_observer observer;

/* ---- Turning it on ---- */

/* Before the first sleep it must count: hand the parker the observer
 * (for good, see deadlock.h), and make sure a forked child forgets the
 * sleepers (fork.c's child handler). */
static void turn_on(void) {
    weft__parker_observe(&observer);
    weft__fork_watch();
    atomic_store(&weft__deadlock_on, true);
}

/* WEFT_DEBUG is a comma-separated list; "deadlock" or "deadlock=1" turns
 * detection on, "deadlock=0" off; "dump" or "dump=1" installs the SIGQUIT
 * dump (dump.h), read here so that the one constructor that must run
 * before main reads the whole list (and links dump.c with this file). */
static void read_environment(void) {
    const char *text = getenv("WEFT_DEBUG");
    if (!text) return;
    while (*text) {
        size_t length = strcspn(text, ",");
        if ((length == 8 && strncmp(text, "deadlock", 8) == 0) ||
            (length == 10 && strncmp(text, "deadlock=1", 10) == 0))
            turn_on();
        else if (length == 10 && strncmp(text, "deadlock=0", 10) == 0)
            atomic_store(&weft__deadlock_on, false);
        else if ((length == 4 && strncmp(text, "dump", 4) == 0) ||
                 (length == 6 && strncmp(text, "dump=1", 6) == 0))
            weft__dump_on_sigquit();
        text += length;
        if (*text == ',') text++;
    }
}

static void setup(void) { pthread_once(&setup_once, read_environment); }

/* Before main, so before any park (deadlock.h: when WEFT_DEBUG is read). */
__attribute__((constructor)) static void setup_at_load(void) { setup(); }

void weft_debug_deadlock(bool on) {
    setup(); /* the environment never overrides this call */
    if (on)
        turn_on();
    else
        atomic_store(&weft__deadlock_on, false);
}

/* ---- The registry: the sleep observer's hooks (parker.h) ---- */

static bool counting(void) { return weft__deadlock_enabled(); }

static void lock_registry(void) { pthread_mutex_lock(&registry); }

static void unlock_registry(void) { pthread_mutex_unlock(&registry); }

/* Under the registry lock: every goroutine is asleep, and so is another
 * thread. The first hint of a deadlock; the watchdog checks the rest. */
static bool counts_match(void) {
    return atomic_load_explicit(&weft__deadlock_on, memory_order_relaxed) && asleep_others > 0 &&
           asleep_goroutines == weft_goroutines();
}

static void *watchdog_main(void *unused);

/* Under the registry lock: make sure the watchdog looks at the counts. */
static void poke_watchdog(void) {
    if (watchdog_started) {
        pthread_cond_signal(&watch);
        return;
    }
    if (!watch_ready) {
        if (weft__monotonic_cond_init(&watch) != 0) return;
        watch_ready = true;
    }
    if (weft__start_service_thread(watchdog_main) != 0) return; /* the next poke tries again */
    watchdog_started = true;
}

/* Under the registry lock, right after the owner's compare-and-swap into
 * a counted sleep: list the parker, count it (as a goroutine or not),
 * advance the epoch, and poke the watchdog if the counts now match. */
static void asleep(weft__parker *parker, bool goroutine) {
    parker->goroutine = goroutine;
    parker->sleeper_next = NULL;
    parker->sleeper_prev = last_sleeper;
    if (last_sleeper)
        last_sleeper->sleeper_next = parker;
    else
        first_sleeper = parker;
    last_sleeper = parker;
    if (goroutine)
        asleep_goroutines++;
    else
        asleep_others++;
    epoch++;
    if (counts_match()) poke_watchdog();
}

/* The owner, after its counted sleep ended: take the parker off the list. */
static void awake(weft__parker *parker) {
    pthread_mutex_lock(&registry);
    if (parker->sleeper_prev)
        parker->sleeper_prev->sleeper_next = parker->sleeper_next;
    else
        first_sleeper = parker->sleeper_next;
    if (parker->sleeper_next)
        parker->sleeper_next->sleeper_prev = parker->sleeper_prev;
    else
        last_sleeper = parker->sleeper_prev;
    parker->sleeper_next = parker->sleeper_prev = NULL;
    epoch++;
    pthread_mutex_unlock(&registry);
}

/* An unparker whose exchange found a counted sleeper: uncount it, touching
 * nothing of the parker's (its owner may already be reusing it). */
static void unparked(bool goroutine) {
    pthread_mutex_lock(&registry);
    if (goroutine)
        asleep_goroutines--;
    else
        asleep_others--;
    epoch++;
    pthread_mutex_unlock(&registry);
}

static const weft__sleep_observer observer = {
    .counting = counting,
    .in_goroutine = weft__go_in_goroutine,
    .lock = lock_registry,
    .unlock = unlock_registry,
    .asleep = asleep,
    .awake = awake,
    .unparked = unparked,
};

void weft__deadlock_goroutine_ended(void) {
    pthread_mutex_lock(&registry);
    epoch++;
    if (counts_match()) poke_watchdog();
    pthread_mutex_unlock(&registry);
}

void weft__deadlock_fork_child(void) {
    pthread_mutex_init(&registry, NULL);
    watch_ready = false; /* poke_watchdog initialises it again */
    watchdog_started = false;
    first_sleeper = last_sleeper = NULL;
    asleep_goroutines = asleep_others = 0;
    epoch++;
}

/* ---- The report ---- */

/* Append to line (of LINE_SIZE bytes, *used of them taken), cutting at
 * the end. */
__attribute__((format(printf, 3, 4))) static void append(char *line, size_t *used,
                                                         const char *format, ...) {
    if (*used >= LINE_SIZE - 1) return;
    va_list arguments;
    va_start(arguments, format);
    int added = vsnprintf(line + *used, LINE_SIZE - *used, format, arguments);
    va_end(arguments);
    if (added > 0)
        *used += (size_t)added < LINE_SIZE - *used ? (size_t)added : LINE_SIZE - 1 - *used;
}

static void append_channel(char *line, size_t *used, const weft_chan *channel) {
    size_t cap = weft_chan_cap(channel);
    if (cap == 0)
        append(line, used, "channel %p (unbuffered)", (const void *)channel);
    else if (cap == WEFT_UNBOUNDED)
        append(line, used, "channel %p (unbounded, %zu queued)", (const void *)channel,
               weft_chan_len(channel));
    else
        append(line, used, "channel %p (buffered, %zu of %zu)", (const void *)channel,
               weft_chan_len(channel), cap);
}

static void append_select(char *line, size_t *used, const weft_case *cases, size_t n) {
    enum { SHOWN = 8 };
    size_t channels = 0;
    for (size_t i = 0; i < n; i++) channels += cases[i].ch != NULL;
    if (channels == 0) {
        append(line, used, " with no channels (blocks forever)");
        return;
    }
    append(line, used, " on %zu channel%s:", channels, channels == 1 ? "" : "s");
    size_t shown = 0;
    for (size_t i = 0; i < n && shown < SHOWN; i++) {
        if (!cases[i].ch) continue;
        append(line, used, "%s %s ", shown ? "," : "", cases[i].dir == WEFT_SEND ? "send" : "recv");
        append_channel(line, used, cases[i].ch);
        shown++;
    }
    if (channels > shown) append(line, used, ", ...");
}

/* One line: the thread, then what it waits on. */
static void describe(const weft__parker *parker, char *line) {
    char name[NAME_SIZE] = "";
    if (pthread_getname_np(parker->owner, name, sizeof name) != 0) strcpy(name, "?");
    const char *kind = parker->goroutine                     ? " (goroutine)"
                       : parker->thread_id == (long)getpid() ? " (main)"
                                                             : "";
    /* The sleeper is stuck: its record stays put, and so does its object. */
    weft__wait_snapshot wait;
    if (!weft__wait_record_read(&parker->record, &wait)) wait = (weft__wait_snapshot){.call = "?"};
    size_t used = 0;
    append(line, &used, "  thread \"%s\"%s: %s", name, kind, wait.call);
    if (strcmp(wait.call, "weft_select") == 0) {
        append_select(line, &used, wait.object, wait.count);
    } else if (strncmp(wait.call, "weft_chan_", 10) == 0) {
        append(line, &used, " on ");
        append_channel(line, &used, wait.object);
    } else {
        append(line, &used, " on %p", wait.object);
    }
    append(line, &used, "\n");
}

/* Under the registry lock: every listed sleeper is still asleep and
 * unclaimed (no unpark can be on its way), and they are every goroutine
 * and at least one other thread. */
static bool all_stuck(void) {
    int goroutines = 0, others = 0;
    for (weft__parker *parker = first_sleeper; parker; parker = parker->sleeper_next) {
        if (!weft__parker_stuck(parker)) return false;
        if (parker->goroutine)
            goroutines++;
        else
            others++;
    }
    return others > 0 && goroutines == weft_goroutines();
}

/* Under the registry lock, with every sleeper stuck. None of them can
 * leave its park meanwhile (it must take the lock to unlist itself), so
 * its description and thread stay valid. */
static _Noreturn void report(void) {
    weft__say("weft: all goroutines are asleep - deadlock!\n");
    char line[LINE_SIZE];
    for (weft__parker *parker = first_sleeper; parker; parker = parker->sleeper_next) {
        describe(parker, line);
        weft__say(line);
    }
    abort();
}

/* ---- The watchdog ---- */

/* Under the registry lock, which it drops meanwhile (the timer lock is
 * never taken under it): whether no timer is pending. */
static bool no_timer_pending(void) {
    pthread_mutex_unlock(&registry);
    size_t pending = weft__timer_pending();
    pthread_mutex_lock(&registry);
    return pending == 0;
}

/* Under the registry lock: wait until the epoch moves from seen or the
 * grace period has passed. Returns whether it stayed at seen. */
static bool quiet_for_grace(uint64_t seen) {
    weft_time until = weft_deadline(GRACE);
    struct timespec at = weft__timespec(until);
    while (epoch == seen && weft_now() < until) pthread_cond_timedwait(&watch, &registry, &at);
    return epoch == seen;
}

static void *watchdog_main(void *unused) {
    (void)unused;
    pthread_setname_np(pthread_self(), "weft/deadlock");
    pthread_mutex_lock(&registry);
    for (;;) {
        while (!counts_match()) pthread_cond_wait(&watch, &registry);
        uint64_t seen = epoch;
        bool no_timer_before = no_timer_pending();
        if (!quiet_for_grace(seen) || !no_timer_before) continue;
        if (!counts_match() || !no_timer_pending() || epoch != seen) continue;
        if (all_stuck()) report();
    }
    return NULL;
}
