/* weft.h — Go-style concurrency for C: the one header users include.
 *
 * goroutines on pooled threads (weft/go.h), channels (weft/chan.h),
 * select (weft/select.h), WaitGroup, mutexes, once and semaphores
 * (weft/sync.h), contexts (weft/ctx.h), task groups (weft/group.h), error
 * codes (weft/error.h), time and timers (weft/time.h), and the version
 * (weft/version.h). */
#ifndef WEFT_H
#define WEFT_H

#include "weft/version.h"
#include "weft/error.h"
#include "weft/time.h"
#include "weft/select.h"
#include "weft/chan.h"
#include "weft/go.h"
#include "weft/sync.h"
#include "weft/ctx.h"
#include "weft/group.h"

#endif
