/* weft/version.h — which weft this is, at compile time and at run time.
 *
 * This header is the one place the version is written: the Makefile reads
 * WEFT_VERSION_MAJOR, _MINOR and _PATCH from it (the shared library's file
 * name and soname, weft.pc, the CMake package version), so each line below
 * must keep its "#define NAME number" form.
 *
 * The macros say which headers a program was compiled against;
 * weft_version() says which library it is running with. They differ when
 * a program built against one release runs with another release's shared
 * library of the same major version (the soname is libweft.so.MAJOR). */
#ifndef WEFT_VERSION_H
#define WEFT_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0

/* "MAJOR.MINOR.PATCH", as a string literal. */
#define WEFT__VERSION_TEXT(x) #x
#define WEFT__VERSION_JOIN(major, minor, patch) \
    WEFT__VERSION_TEXT(major) "." WEFT__VERSION_TEXT(minor) "." WEFT__VERSION_TEXT(patch)
#define WEFT_VERSION_STRING \
    WEFT__VERSION_JOIN(WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR, WEFT_VERSION_PATCH)

/* MAJOR * 10000 + MINOR * 100 + PATCH, for #if: 0.1.0 is 100. */
#define WEFT_VERSION_NUMBER \
    (WEFT_VERSION_MAJOR * 10000 + WEFT_VERSION_MINOR * 100 + WEFT_VERSION_PATCH)

/* The version of the library the program is running with, as
 * WEFT_VERSION_STRING was when that library was built ("0.1.0"). A static
 * string; never NULL. Never blocks. */
const char *weft_version(void);

/* The same as a number, as WEFT_VERSION_NUMBER was when the library was
 * built. */
int weft_version_number(void);

#ifdef __cplusplus
}
#endif
#endif
