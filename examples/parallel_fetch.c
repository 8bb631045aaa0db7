/* Fetch resources in parallel, at most three at a time, and give up on
 * all of them at the first failure: an errgroup with a limit. It is Go's
 *
 *     g, ctx := errgroup.WithContext(context.Background())
 *     g.SetLimit(3)
 *     for i, page := range pages {
 *         g.Go(func() error { // waits while 3 fetches are running
 *             statuses[i] = fetch(ctx, page)
 *             return statuses[i]
 *         })
 *     }
 *     err := g.Wait() // the first error, or nil
 *
 * where fetch waits for the server's answer or for ctx, whichever comes
 * first:
 *
 *     select {
 *     case <-time.After(page.latency):
 *         return nil
 *     case <-ctx.Done():
 *         return ctx.Err()
 *     }
 *
 * The first fetch to fail cancels the group's context: fetches in
 * progress stop waiting, and fetches started after that fail at once.
 * The program fetches one site whose pages are all there, then one whose
 * first page is missing and whose others are slow (so each of them is
 * surely still waiting when the 404 comes, and shows as canceled). Last,
 * it prints the most fetches it ever saw in flight: between 1 and the
 * limit, depending on how the threads were scheduled. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

enum { LIMIT = 3, PAGES = 5 };
enum { NOT_FOUND = 404, NOT_FETCHED = 1 }; /* a task may fail with any non-zero int */

typedef struct {
    const char *path;
    weft_time latency; /* how long the server takes to answer */
    bool missing;      /* the server answers 404 */
    int status;        /* out: 0, NOT_FOUND or the context's error; NOT_FETCHED until then */
} page;

static atomic_int in_flight, most_in_flight;

static int wait_for_server(weft_ctx *ctx, const page *wanted) {
    if (wanted->missing) return NOT_FOUND;
    weft_chan *answer = weft_after(wanted->latency); /* time.After */
    if (!answer) return WEFT_ENOMEM;
    weft_case arrived = WEFT_RECV_CASE(answer, NULL);
    int chosen = weft_select_ctx(&arrived, 1, ctx); /* 0 (the answer), or ctx's error */
    weft_chan_release(answer);
    return chosen;
}

/* The group's task: ctx is the group's context. */
static int fetch(weft_ctx *ctx, void *arg) {
    page *wanted = arg;
    int now = atomic_fetch_add(&in_flight, 1) + 1;
    int most = atomic_load(&most_in_flight); /* raise the peak to now, unless it is higher */
    while (now > most && !atomic_compare_exchange_weak(&most_in_flight, &most, now)) {}
    wanted->status = wait_for_server(ctx, wanted);
    atomic_fetch_sub(&in_flight, 1);
    return wanted->status;
}

static const char *describe(int status) {
    switch (status) {
    case 0: return "200 OK";
    case NOT_FOUND: return "404 not found";
    case NOT_FETCHED: return "not fetched";
    default: return weft_strerror(status);
    }
}

/* Fetch every page; return the group's first error. */
static int fetch_all(page *pages) {
    weft_group *group = weft_group_new(NULL);
    if (!group) {
        perror("weft_group_new");
        exit(1);
    }
    weft_group_set_limit(group, LIMIT);
    for (int i = 0; i < PAGES; i++) {
        pages[i].status = NOT_FETCHED;
        int err = weft_group_go(group, fetch, &pages[i]); /* waits for a free slot */
        if (err != WEFT_OK) {
            fprintf(stderr, "weft_group_go: %s\n", weft_strerror(err));
            exit(1);
        }
    }
    int first_error = weft_group_wait(group);
    weft_group_free(group);
    printf("fetched %d pages, at most %d at once:\n", PAGES, LIMIT);
    for (int i = 0; i < PAGES; i++) printf("  %s: %s\n", pages[i].path, describe(pages[i].status));
    printf("first error: %s\n", first_error ? describe(first_error) : "none");
    return first_error;
}

int main(void) {
    page good_site[PAGES] = {
        {.path = "/index.html", .latency = WEFT_MS(10)},
        {.path = "/about.html", .latency = WEFT_MS(20)},
        {.path = "/news.html", .latency = WEFT_MS(5)},
        {.path = "/blog.html", .latency = WEFT_MS(15)},
        {.path = "/faq.html", .latency = WEFT_MS(10)},
    };
    page broken_site[PAGES] = {
        {.path = "/missing.html", .missing = true},
        {.path = "/slow/1.html", .latency = WEFT_SEC(30)},
        {.path = "/slow/2.html", .latency = WEFT_SEC(30)},
        {.path = "/slow/3.html", .latency = WEFT_SEC(30)},
        {.path = "/slow/4.html", .latency = WEFT_SEC(30)},
    };
    int good = fetch_all(good_site);
    int broken = fetch_all(broken_site);

    int most = atomic_load(&most_in_flight);
    printf("most fetches in flight: %d (limit %d)\n", most, LIMIT);
    bool expected = good == 0 && broken == NOT_FOUND && most >= 1 && most <= LIMIT;
    for (int i = 1; i < PAGES; i++) expected &= broken_site[i].status == WEFT_ECANCELED;
    return expected ? 0 : 1;
}
