/* weft_strerror: one static message per WEFT_E* code. */
#include "weft/error.h"

const char *weft_strerror(int err) {
    switch (err) {
    case WEFT_OK: return "success";
    case WEFT_ECLOSED: return "channel closed";
    case WEFT_EAGAIN: return "operation would block";
    case WEFT_ECANCELED: return "context canceled";
    case WEFT_ETIMEDOUT: return "deadline passed";
    case WEFT_ENOMEM: return "out of memory";
    case WEFT_EINVAL: return "invalid argument";
    case WEFT_ESYS: return "system call failed (see errno)";
    default: return "unknown weft error";
    }
}
