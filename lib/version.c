/* The library's version, fixed when it is compiled: a program compares it
 * with the WEFT_VERSION_* macros of the headers it was compiled against
 * to tell which shared library it runs with. */
#include "weft/version.h"

const char *weft_version(void) { return WEFT_VERSION_STRING; }

int weft_version_number(void) { return WEFT_VERSION_NUMBER; }
