/* Misuse that Go turns into a panic: print one line "weft: <what>" to
 * stderr and abort. */
#ifndef WEFT_LIB_PANIC_H
#define WEFT_LIB_PANIC_H

_Noreturn void weft__panic(const char *what);

/* Write text to stderr with write(2) alone: no stdio lock, no allocation,
 * so it is safe where a thread may hold either (an abort, the deadlock
 * report). Gives up quietly if stderr fails. */
void weft__say(const char *text);

/* A pthread call that cannot fail in a correct program failed: abort with
 * the call's name and the error. */
_Noreturn void weft__panic_errno(const char *call, int error);

#endif
