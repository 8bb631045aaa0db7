/* The bridges' wire format (private to lib/nng/). Pure functions: no NNG,
 * no allocation, so the decoder can be tested and fuzzed alone
 * (test/fuzz/frame_fuzz.c).
 *
 *   offset size  field
 *        0    4  magic "weft"
 *        4    1  version (1)
 *        5    1  kind: DATA, END, ERROR
 *        6    2  flags: FRAME_BIG_ENDIAN (the sender's byte order),
 *                FRAME_ENCODED (the body is a codec's output)
 *        8    4  elem_size: the sender's element size
 *       12    4  body_len: bytes after the header
 *       16    8  stream: the sending bridge's id
 *       24    8  seq: DATA: the value's number in its stream; END: how
 *                many values the stream sent
 *       32       body: DATA: the element (elem_size bytes unless encoded);
 *                END: nothing; ERROR: a message, not NUL-terminated
 *
 * Header integers are little-endian whatever the host; the element is the
 * sender's own bytes, so its byte order must match (or a codec be used). */
#ifndef WEFT_LIB_NNG_FRAME_H
#define WEFT_LIB_NNG_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER 32
#define FRAME_VERSION 1
#define FRAME_MAX_BODY (64u << 20) /* no body is ever larger */

enum { FRAME_DATA = 1, FRAME_END = 2, FRAME_ERROR = 3 };
enum { FRAME_BIG_ENDIAN = 1, FRAME_ENCODED = 2 };

typedef struct {
    int kind;
    unsigned flags;
    uint32_t elem_size;
    uint32_t body_len;
    uint64_t stream;
    uint64_t seq;
    const unsigned char *body; /* points into the decoded buffer */
} frame;

/* What a receiver accepts. */
typedef struct {
    uint32_t elem_size; /* its channel's element size */
    uint32_t max_body;  /* the largest body it takes */
    bool encoded;       /* it decodes with a codec (else raw elements) */
} frame_expect;

/* Why a frame was rejected; FRAME_OK when it was not. */
typedef enum {
    FRAME_OK = 0,
    FRAME_SHORT, /* fewer bytes than a header */
    FRAME_MAGIC, /* not a weft frame */
    FRAME_VERSION_MISMATCH,
    FRAME_KIND,           /* an unknown kind */
    FRAME_FLAGS,          /* unknown flags */
    FRAME_TRUNCATED,      /* fewer bytes than the header announces */
    FRAME_TRAILING,       /* more bytes than the header announces */
    FRAME_OVERSIZED,      /* a body larger than the receiver takes */
    FRAME_SIZE_MISMATCH,  /* another element size */
    FRAME_ORDER_MISMATCH, /* another byte order */
    FRAME_CODEC_MISMATCH, /* encoded at one end only */
    FRAME_BAD_BODY,       /* a body of the wrong length for its kind */
} frame_reject;

/* This host's byte-order flag (0 or FRAME_BIG_ENDIAN). */
unsigned weft__frame_host_order(void);

/* Write a header into out[FRAME_HEADER]. */
void weft__frame_header(unsigned char *out, int kind, unsigned flags, uint32_t elem_size,
                        uint32_t body_len, uint64_t stream, uint64_t seq);

/* Decode len bytes at buf into *f against *expect; FRAME_OK or why not.
 * Reads no byte outside buf[0..len). On FRAME_OK, f->body points at
 * f->body_len bytes inside buf. */
frame_reject weft__frame_decode(const void *buf, size_t len, const frame_expect *expect, frame *f);

/* Whether a rejection means the peer is configured differently (a
 * mismatch the user must fix) rather than garbled. */
bool weft__frame_is_mismatch(frame_reject why);

/* Describe a rejection in words, with the figures of *f and *expect
 * where they matter, into buf (at most len bytes, NUL-terminated). */
void weft__frame_describe(frame_reject why, const frame *f, const frame_expect *expect, char *buf,
                          size_t len);

#endif
