/* libFuzzer target for the bridges' frame decoder (lib/nng/frame.c), a
 * pure function: whatever the bytes, it must return without reading
 * outside them, and a frame it accepts must be whole and consistent.
 *
 *   make fuzz FUZZ_SECONDS=60      (clang -fsanitize=fuzzer,address,undefined)
 *
 * Seeds: test/fuzz/corpus/ (valid DATA and END frames, and near misses). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

static void check(const uint8_t *data, size_t size, const frame_expect *expect) {
    frame f;
    frame_reject why = weft__frame_decode(data, size, expect, &f);
    char words[256];
    weft__frame_describe(why, &f, expect, words, sizeof words);
    if (strlen(words) == 0) abort();
    if (why != FRAME_OK) return;
    /* Accepted: whole, inside the bytes, and of the size announced. */
    if (size != FRAME_HEADER + (size_t)f.body_len) abort();
    if (f.body != data + FRAME_HEADER) abort();
    if (f.body_len > expect->max_body) abort();
    if (f.kind == FRAME_DATA && !expect->encoded && f.body_len != expect->elem_size) abort();
    if (f.kind == FRAME_END && f.body_len != 0) abort();
    if (f.kind != FRAME_ERROR && f.elem_size != expect->elem_size) abort();
    volatile uint8_t sum = 0;
    for (uint32_t i = 0; i < f.body_len; i++) sum += f.body[i];
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const frame_expect expects[] = {
        {8, 8, false}, {1024, 1024, false}, {16, 64, true}, {0, 256, false}};
    for (size_t i = 0; i < sizeof expects / sizeof expects[0]; i++) check(data, size, &expects[i]);
    return 0;
}
