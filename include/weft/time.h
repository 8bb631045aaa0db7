/* weft/time.h — time points and durations.
 *
 * weft_time counts nanoseconds on CLOCK_MONOTONIC. Blocking calls take an
 * absolute deadline: WEFT_FOREVER blocks without limit, a deadline at or
 * before now (WEFT_NOWAIT is 0) tries once and never blocks. */
#ifndef WEFT_TIME_H
#define WEFT_TIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int64_t weft_time;

#define WEFT_FOREVER INT64_MAX
#define WEFT_NOWAIT ((weft_time)0)

/* clang-format off */
#define WEFT_US(x) ((weft_time)(x) * 1000)
#define WEFT_MS(x) ((weft_time)(x) * 1000000)
#define WEFT_SEC(x) ((weft_time)(x) * 1000000000)
/* clang-format on */

/* The current CLOCK_MONOTONIC time in nanoseconds. Never blocks. */
weft_time weft_now(void);

/* now + timeout, saturating at WEFT_FOREVER; a timeout <= 0 gives now
 * (a deadline that has passed: "try once"). WEFT_FOREVER stays WEFT_FOREVER. */
weft_time weft_deadline(weft_time timeout);

#ifdef __cplusplus
}
#endif
#endif
