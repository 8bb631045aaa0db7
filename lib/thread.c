/* Private helpers for weft's own threads and condition variables. */
#include <signal.h>
#include <time.h>

#include "thread.h"

int weft__monotonic_cond_init(pthread_cond_t *cond) {
    pthread_condattr_t attributes;
    int error = pthread_condattr_init(&attributes);
    if (error != 0) return error;
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    error = pthread_cond_init(cond, &attributes);
    pthread_condattr_destroy(&attributes);
    return error;
}

int weft__start_service_thread(void *(*body)(void *)) {
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pthread_t thread;
    int error = pthread_create(&thread, NULL, body, NULL);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (error == 0) pthread_detach(thread);
    return error;
}
