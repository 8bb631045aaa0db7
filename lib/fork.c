/* pthread_atfork handlers; see fork.h. */
#include <pthread.h>

#include "deadlock.h"
#include "fork.h"
#include "panic.h"
#include "parker.h"

/* The timer first: its prepare waits for a fire in progress, which may
 * need a pool's mutex (an after-function starting) to finish. */
static void prepare(void) {
    weft__timer_fork_prepare();
    weft__pool_fork_prepare();
}

static void parent(void) {
    weft__pool_fork_parent();
    weft__timer_fork_parent();
}

static void child(void) {
    weft__deadlock_fork_child();
    weft__pool_fork_child();
    weft__timer_fork_child();
}

static pthread_once_t installed = PTHREAD_ONCE_INIT;

/* The parker's handlers first, so that they run inside these (fork.h). */
static void install(void) {
    weft__parker_fork_watch();
    int error = pthread_atfork(prepare, parent, child);
    if (error) weft__panic_errno("pthread_atfork", error);
}

void weft__fork_watch(void) { pthread_once(&installed, install); }
