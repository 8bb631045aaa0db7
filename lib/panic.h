/* Misuse that Go turns into a panic: print one line "weft: <what>" to
 * stderr and abort. */
#ifndef WEFT_LIB_PANIC_H
#define WEFT_LIB_PANIC_H

_Noreturn void weft__panic(const char *what);

/* A pthread call that cannot fail in a correct program failed: abort with
 * the call's name and the error. */
_Noreturn void weft__panic_errno(const char *call, int error);

#endif
