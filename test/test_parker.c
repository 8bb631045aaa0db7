/* The parker's life cycle (lib/parker.c): a thread's parker goes back to
 * the recycling list in its pthread key destructor, and no two live
 * threads may ever use one parker.
 *
 * glibc runs key destructors in the order the keys were made, so a key
 * made after weft's runs after weft's destructor in each round: a weft
 * call from it comes after this thread's parker was recycled. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "weft/chan.h"
#include "weft/error.h"
#include "weft/time.h"

#include "testutil.h"

enum { VALUES = 20000 };

/* A wake-up or hand-off that takes longer than this went astray. */
#define HANDOFF_LIMIT WEFT_SEC(2)

static weft_chan *values; /* unbuffered: a receiver waits parked for each value */
static _Atomic unsigned char seen[VALUES];
static atomic_int failed_receives; /* a wait that timed out before the close */
static pthread_key_t late_key;     /* made after weft's key */

/* Block in weft for a moment: the calling thread takes a parker. */
static void take_a_parker(void) {
    weft_chan *never = weft_chan_make(sizeof(int), 0);
    int value;
    weft_chan_recv_until(never, &value, weft_deadline(WEFT_MS(1)));
    weft_chan_release(never);
}

/* Until the channel closes: mark each value received. */
static void receive_values(void) {
    int value, result;
    while ((result = weft_chan_recv_until(values, &value, weft_deadline(HANDOFF_LIMIT))) == 0)
        if (value >= 0 && value < VALUES) atomic_fetch_add(&seen[value], 1);
    if (result != WEFT_ECLOSED) atomic_fetch_add(&failed_receives, 1);
}

/* Started from the destructor: its first blocking call takes the parker
 * at the top of the recycling list, the one the exiting thread has just
 * given back. */
static void *receive_beside_the_destructor(void *unused) {
    (void)unused;
    take_a_parker();
    receive_values();
    return NULL;
}

static void receive_in_destructor(void *unused) {
    (void)unused;
    pthread_t other;
    if (pthread_create(&other, NULL, receive_beside_the_destructor, NULL) != 0) abort();
    receive_values();
    pthread_join(other, NULL);
}

static void *exit_with_late_destructor(void *unused) {
    (void)unused;
    take_a_parker();
    pthread_setspecific(late_key, &late_key);
    return NULL;
}

START_TEST(test_destructor_after_parker_recycled_gets_a_parker_of_its_own) {
    take_a_parker(); /* makes weft's key before late_key */
    ck_assert_int_eq(pthread_key_create(&late_key, receive_in_destructor), 0);
    values = weft_chan_make(sizeof(int), 0);
    ck_assert_ptr_nonnull(values);
    pthread_t exiting;
    start_thread(&exiting, exit_with_late_destructor, NULL);
    int failed_sends = 0;
    for (int value = 0; value < VALUES; value++)
        failed_sends += weft_chan_send_until(values, &value, weft_deadline(HANDOFF_LIMIT)) != 0;
    weft_chan_close(values);
    join_thread(exiting);
    ck_assert_int_eq(failed_sends, 0);
    ck_assert_int_eq(atomic_load(&failed_receives), 0);
    assert_each_seen_once(seen, VALUES);
    weft_chan_release(values);
    pthread_key_delete(late_key);
}
END_TEST

static Suite *parker_suite(void) {
    Suite *suite = suite_create("parker");
    TCase *tc = new_case(suite, "recycling");
    tcase_add_test(tc, test_destructor_after_parker_recycled_gets_a_parker_of_its_own);
    return suite;
}

int main(void) {
    SRunner *runner = srunner_create(parker_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
