/* layout.c — the public structs' layouts as the C compiler sees them, for
 * hello.cpp to compare with its own view (see layout.h). */
#include "layout.h"

const struct layout_entry c_layout[] = {LAYOUT_FIELDS(LAYOUT_ENTRY)};
const size_t c_layout_count = sizeof c_layout / sizeof c_layout[0];
