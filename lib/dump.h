/* The goroutine dump (weft_debug_dump, weft/go.h; dump.c): what the
 * runtime's other files give it and take from it.
 *
 * How a dump is taken
 *   Two snapshots, each under its own lock and without allocating or
 *   writing anything while the lock is held: the goroutines of every pool
 *   (go.c, under the pools' locks: which threads hold a task) and the wait
 *   records of every parker (parker.c, under the parkers' list lock: who
 *   waits on what, since when; waitrecord.h). The dump then joins them by
 *   kernel thread id, formats and writes with no lock held. A goroutine
 *   with no record is running user code (or about to block, or just
 *   woken); a record with no goroutine is another thread (main, a plain
 *   pthread) blocked in weft. The two snapshots are a moment apart, so a
 *   goroutine that blocks or wakes in between may be shown either way;
 *   no object a record names is ever read (waitrecord.h).
 *
 * The SIGQUIT handler (WEFT_DEBUG=dump)
 *   Writing a dump takes locks and allocates, which a signal handler may
 *   not do. So the handler only write(2)s one byte to a pipe, with errno
 *   saved and restored; a thread of weft's own ("weft/dump", every signal
 *   blocked, weft__start_service_thread) sleeps in read(2) on the other end
 *   and writes the dump to stderr for each wake-up (several signals before
 *   it reads may give one dump). The pipe's write end is non-blocking: a
 *   full pipe means a dump is coming anyway. A forked child gets a pipe and
 *   a thread of its own in an atfork child handler, so that its SIGQUIT
 *   never wakes the parent's dump thread. */
#ifndef WEFT_LIB_DUMP_H
#define WEFT_LIB_DUMP_H

#include <stddef.h>

enum { WEFT__POOL_NAME_SIZE = 16 /* Linux thread names: 15 characters and the NUL */ };

/* One goroutine: its pool's name and its thread's kernel id (0 while the
 * thread is still being started). */
typedef struct weft__goroutine_snapshot {
    char pool[WEFT__POOL_NAME_SIZE];
    long thread_id;
} weft__goroutine_snapshot;

/* go.c: copy every goroutine of every pool into out[0..room) and return
 * how many there are (more than room: call again with more). */
size_t weft__pool_goroutines(weft__goroutine_snapshot *out, size_t room);

/* deadlock.c, reading WEFT_DEBUG before main: "dump" installs the SIGQUIT
 * handler and starts the dump thread. Once; later calls do nothing. */
void weft__dump_on_sigquit(void);

#endif
