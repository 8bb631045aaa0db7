/* Which sanitizer this test program is built with, for gcc (which defines
 * __SANITIZE_*__) and clang (which answers __has_feature): UNDER_TSAN,
 * UNDER_ASAN. Some tests must skip themselves under one, for example a
 * fork that ThreadSanitizer cannot follow. */
#ifndef WEFT_TEST_SANITIZERS_H
#define WEFT_TEST_SANITIZERS_H

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#endif
