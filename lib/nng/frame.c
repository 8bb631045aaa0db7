/* The bridges' wire format: see frame.h. */
#include "frame.h"

#include <stdio.h>
#include <string.h>

static const unsigned char magic[4] = {'w', 'e', 'f', 't'};

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

unsigned weft__frame_host_order(void) {
    const uint16_t probe = 1;
    unsigned char first;
    memcpy(&first, &probe, 1);
    return first ? 0 : FRAME_BIG_ENDIAN;
}

void weft__frame_header(unsigned char *out, int kind, unsigned flags, uint32_t elem_size,
                        uint32_t body_len, uint64_t stream, uint64_t seq) {
    memcpy(out, magic, 4);
    out[4] = FRAME_VERSION;
    out[5] = (unsigned char)kind;
    out[6] = (unsigned char)flags;
    out[7] = (unsigned char)(flags >> 8);
    put32(out + 8, elem_size);
    put32(out + 12, body_len);
    put64(out + 16, stream);
    put64(out + 24, seq);
}

frame_reject weft__frame_decode(const void *buf, size_t len, const frame_expect *expect, frame *f) {
    const unsigned char *p = buf;
    memset(f, 0, sizeof *f);
    if (len < FRAME_HEADER) return FRAME_SHORT;
    if (memcmp(p, magic, 4) != 0) return FRAME_MAGIC;
    if (p[4] != FRAME_VERSION) return FRAME_VERSION_MISMATCH;
    f->kind = p[5];
    f->flags = (unsigned)p[6] | (unsigned)p[7] << 8;
    f->elem_size = get32(p + 8);
    f->body_len = get32(p + 12);
    f->stream = get64(p + 16);
    f->seq = get64(p + 24);
    if (f->kind != FRAME_DATA && f->kind != FRAME_END && f->kind != FRAME_ERROR) return FRAME_KIND;
    if (f->flags & ~(unsigned)(FRAME_BIG_ENDIAN | FRAME_ENCODED)) return FRAME_FLAGS;
    if (f->body_len > FRAME_MAX_BODY || f->body_len > expect->max_body) return FRAME_OVERSIZED;
    if (len - FRAME_HEADER < f->body_len) return FRAME_TRUNCATED;
    if (len - FRAME_HEADER > f->body_len) return FRAME_TRAILING;
    f->body = p + FRAME_HEADER;
    if (f->kind == FRAME_ERROR) return FRAME_OK; /* a message: any length */
    if (f->elem_size != expect->elem_size) return FRAME_SIZE_MISMATCH;
    if (f->kind == FRAME_END) return f->body_len == 0 ? FRAME_OK : FRAME_BAD_BODY;
    /* DATA: the body is the element, or a codec's output. */
    if (((f->flags & FRAME_ENCODED) != 0) != expect->encoded) return FRAME_CODEC_MISMATCH;
    if (!expect->encoded && (f->flags & FRAME_BIG_ENDIAN) != weft__frame_host_order())
        return FRAME_ORDER_MISMATCH;
    if (!expect->encoded && f->body_len != f->elem_size) return FRAME_BAD_BODY;
    return FRAME_OK;
}

bool weft__frame_is_mismatch(frame_reject why) {
    return why == FRAME_VERSION_MISMATCH || why == FRAME_SIZE_MISMATCH ||
           why == FRAME_ORDER_MISMATCH || why == FRAME_CODEC_MISMATCH;
}

void weft__frame_describe(frame_reject why, const frame *f, const frame_expect *expect, char *buf,
                          size_t len) {
    switch (why) {
    case FRAME_OK: snprintf(buf, len, "a valid frame"); break;
    case FRAME_SHORT:
        snprintf(buf, len, "a frame shorter than the %d-byte header", FRAME_HEADER);
        break;
    case FRAME_MAGIC:
        snprintf(buf, len, "not a weft frame (is another program on this address?)");
        break;
    case FRAME_VERSION_MISMATCH:
        snprintf(buf, len, "a frame of another weft wire version (this end speaks %d)",
                 FRAME_VERSION);
        break;
    case FRAME_KIND: snprintf(buf, len, "a frame of unknown kind %d", f->kind); break;
    case FRAME_FLAGS: snprintf(buf, len, "a frame with unknown flags 0x%x", f->flags); break;
    case FRAME_TRUNCATED:
        snprintf(buf, len, "a truncated frame (its header announces %lu body bytes)",
                 (unsigned long)f->body_len);
        break;
    case FRAME_TRAILING:
        snprintf(buf, len, "a frame longer than its header announces (%lu body bytes)",
                 (unsigned long)f->body_len);
        break;
    case FRAME_OVERSIZED:
        snprintf(buf, len, "an oversized frame (%lu body bytes; this end takes at most %lu)",
                 (unsigned long)f->body_len, (unsigned long)expect->max_body);
        break;
    case FRAME_SIZE_MISMATCH:
        snprintf(buf, len, "element size mismatch: the peer's values are %lu bytes, this end's %lu",
                 (unsigned long)f->elem_size, (unsigned long)expect->elem_size);
        break;
    case FRAME_ORDER_MISMATCH:
        snprintf(buf, len,
                 "byte order mismatch: the peer is %s-endian, this end %s-endian (use a codec)",
                 (f->flags & FRAME_BIG_ENDIAN) ? "big" : "little",
                 weft__frame_host_order() ? "big" : "little");
        break;
    case FRAME_CODEC_MISMATCH:
        snprintf(buf, len, "codec mismatch: the peer %s a codec, this end %s",
                 (f->flags & FRAME_ENCODED) ? "uses" : "does not use",
                 expect->encoded ? "does" : "does not");
        break;
    case FRAME_BAD_BODY:
        snprintf(buf, len, "a frame whose body (%lu bytes) does not fit its kind",
                 (unsigned long)f->body_len);
        break;
    default: snprintf(buf, len, "a rejected frame"); break;
    }
}
