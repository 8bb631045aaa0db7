/* weft/error.h — error codes shared by every module.
 *
 * Functions that can fail return int: 0 (WEFT_OK) on success, one of the
 * negative codes below otherwise. Constructors return NULL and set errno. */
#ifndef WEFT_ERROR_H
#define WEFT_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
    WEFT_OK = 0,
    WEFT_ECLOSED = -1,   /* channel closed */
    WEFT_EAGAIN = -2,    /* would block (try forms, WEFT_NOWAIT), or a limit reached */
    WEFT_ECANCELED = -3, /* context canceled */
    WEFT_ETIMEDOUT = -4, /* deadline passed */
    WEFT_ENOMEM = -5,    /* out of memory or threads */
    WEFT_EINVAL = -6,    /* bad argument */
    WEFT_ESYS = -7,      /* a system call failed; errno says which (weft/io.h) */
};

/* A static, human-readable description of a WEFT_E* code (or of 0).
 * Unknown codes give "unknown weft error". Never returns NULL. */
const char *weft_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
