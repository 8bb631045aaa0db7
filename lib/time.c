/* Monotonic clock readings and deadline arithmetic. */
#include <time.h>

#include "weft/time.h"
#include "time_internal.h"

weft_time weft_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (weft_time)now.tv_sec * 1000000000 + now.tv_nsec;
}

weft_time weft_deadline(weft_time timeout) {
    if (timeout == WEFT_FOREVER) return WEFT_FOREVER;
    weft_time now = weft_now();
    if (timeout <= 0) return now;
    if (timeout > WEFT_FOREVER - now) return WEFT_FOREVER;
    return now + timeout;
}

struct timespec weft__timespec(weft_time t) {
    struct timespec ts;
    ts.tv_sec = (time_t)(t / 1000000000);
    ts.tv_nsec = (long)(t % 1000000000);
    return ts;
}
