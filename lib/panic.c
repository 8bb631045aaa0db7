/* One-line diagnostics for misuse, then abort. write(2) rather than stdio:
 * the message must get out even when stdio's locks are held or its
 * buffers are full. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "panic.h"

void weft__say(const char *text) {
    size_t length = strlen(text);
    while (length > 0) {
        ssize_t written = write(STDERR_FILENO, text, length);
        if (written <= 0) return;
        text += written;
        length -= (size_t)written;
    }
}

_Noreturn void weft__panic(const char *what) {
    weft__say("weft: ");
    weft__say(what);
    weft__say("\n");
    abort();
}

_Noreturn void weft__panic_errno(const char *call, int error) {
    weft__say("weft: ");
    weft__say(call);
    weft__say(" failed: ");
    weft__say(strerror(error));
    weft__say("\n");
    abort();
}
