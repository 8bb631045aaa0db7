# weft — non-recursive GNU make build.
#
#   make                 lib/libweft.a, lib/libweft.so (soname libweft.so.0), weft.pc, bench/weft-bench
#   make test            build and run every test/test_*.c (Check; installs it if missing and root)
#   make build-tests     build them without running
#   make tsan / asan     the same tests under ThreadSanitizer / AddressSanitizer+UBSan
#   make torture         build test/torture.c and run it (SEED=n SECONDS=s); torture-tsan,
#                        torture-asan: the same under the sanitizers
#   make scale           build test/scale.c and run it (SCALE_FLAGS=...); scale-tsan,
#                        scale-asan: the same under the sanitizers
#   make valgrind        the unit tests under valgrind (CK_FORK=no; heavy loops
#                        divided by WEFT_TEST_SCALE, default 10)
#   make bench-rss       an unbounded channel's resident set through a burst (RSS_VALUES=n)
#   make bench           build bench/weft-bench and run it, then bench/echo/echo_load: the
#                        echo server under load, beside its Go twin when go is installed
#                        (ECHO_LOAD_FLAGS=...: its options)
#   make examples        build examples/*.c into build/release/examples/
#   make install / uninstall   PREFIX=/usr/local DESTDIR= (BINDIR: weft-bench; headers,
#                        libraries, weft.pc, the CMake package in CMAKEDIR, man pages in MANDIR)
#   make install-check   install into build/install-check/ and build and run consumers against
#                        it (test/install/check.sh: pkg-config, CMake, C++, man)
#   make cxx-check       every public header and test/install/hello.cpp as C++ (CXX, CXX_STDS)
#   make man-check       every public function has a man page; every page renders cleanly
#   make docs-check      the C programs in README.md and docs/*.md compile (and the README's runs)
#   make format / check-format  clang-format on every source
#   make clean
#
# Knobs: CC, CFLAGS (optimisation and warnings), CPPFLAGS, LDFLAGS, LDLIBS,
# WERROR=1 (warnings are errors), V=1 (show full commands),
# TESTS="test/test_chan.c ..." (run a subset), TEST_TIMEOUT (Check's
# CK_DEFAULT_TIMEOUT, seconds), SAN_TIMEOUT_MULTIPLIER (CK_TIMEOUT_MULTIPLIER
# under the sanitizers: scales the default and every tcase_set_timeout).
#
# Objects live under build/<variant>/ (release, tsan, asan) with -MMD
# dependency files, so the three builds never mix. Each variant records its
# compiler command line in build/<variant>/flags; a change (say CC=clang)
# rebuilds that variant.

# The version is written once, in include/weft/version.h; the library's
# file name (libweft.so.VERSION), its soname (libweft.so.SOVERSION, the
# major version), weft.pc and the CMake package take it from there.
version_part = $(shell sed -n 's/^[#]define WEFT_VERSION_$(1) \([0-9][0-9]*\)$$/\1/p' include/weft/version.h)
VERSION_MAJOR := $(call version_part,MAJOR)
VERSION_MINOR := $(call version_part,MINOR)
VERSION_PATCH := $(call version_part,PATCH)
ifeq ($(words $(VERSION_MAJOR) $(VERSION_MINOR) $(VERSION_PATCH)),3)
VERSION     := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)
else
$(error cannot read WEFT_VERSION_MAJOR, _MINOR and _PATCH from include/weft/version.h)
endif
SOVERSION   := $(VERSION_MAJOR)

PKG_CONFIG  ?= pkg-config
CLANG_FORMAT ?= clang-format
VALGRIND    ?= valgrind

CFLAGS      ?= -O2 -g -Wall -Wextra -Wpedantic
LDFLAGS     ?=
LDLIBS      ?=

# Recipes use bash (pipefail); Debian always has it.
SHELL       := /bin/bash

# Flags the build cannot do without: they stay when CFLAGS is overridden.
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -pthread -fPIC -Iinclude -Ilib
ifeq ($(WERROR),1)
BASE_CFLAGS += -Werror
endif

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CMAKEDIR    ?= $(LIBDIR)/cmake/weft
MANDIR      ?= $(PREFIX)/share/man

TEST_TIMEOUT           ?= 120
SAN_TIMEOUT_MULTIPLIER ?= 5

ifeq ($(V),1)
Q :=
quiet = @:
else
Q := @
quiet = @printf '  %-6s %s\n'
endif

# ---------------------------------------------------------------------------
# Sources (wildcards: modules, tests, benches and examples come and go)

LIB_SRCS     := $(sort $(wildcard lib/*.c))
PUB_HEADERS  := $(wildcard include/weft/*.h)
TESTS        ?= $(sort $(wildcard test/test_*.c))
BENCH_SRCS   := $(sort $(wildcard bench/*.c))
EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
FORMAT_SRCS   = $(wildcard include/weft.h include/weft/*.h lib/*.[ch] test/*.[ch] \
                  test/*/*.[ch] test/*/*.cpp bench/*.[ch] bench/*/*.[ch] examples/*.[ch])

MAN_PAGES   := $(sort $(wildcard man/man3/*.3))

STATIC_LIB  := lib/libweft.a
SONAME      := libweft.so.$(SOVERSION)
SHARED_REAL := lib/libweft.so.$(VERSION)
SHARED_LIBS := lib/libweft.so lib/$(SONAME) $(SHARED_REAL)

BENCH       := bench/weft-bench
# test/test_bench.c runs the bench binary: the test rules build it first.
BENCH_FOR_TESTS := $(if $(filter test/test_bench.c,$(TESTS)),$(BENCH))
EXAMPLES    := $(patsubst examples/%.c,build/release/examples/%,$(EXAMPLE_SRCS))
# The echo benchmark (bench/echo/; its rules are with the benchmark's below).
GO          ?= go
ECHO_LOAD   := build/release/bench/echo/echo_load
ECHO_GO     := build/release/bench/echo/echo_server_go
ECHO_THREADS := build/release/bench/echo/echo_server_threads
HAVE_GO      = $(shell command -v $(GO) 2>/dev/null)
ECHO_LOAD_FLAGS ?=

# Check's flags, asked of pkg-config only when a test is compiled (after
# scripts/need-check.sh has made sure it is there), then remembered.
CHECK_CFLAGS = $(eval CHECK_CFLAGS := $$(shell $(PKG_CONFIG) --cflags check))$(CHECK_CFLAGS)
CHECK_LIBS   = $(eval CHECK_LIBS := $$(shell $(PKG_CONFIG) --libs check))$(CHECK_LIBS)

# ---------------------------------------------------------------------------
# The NNG module (optional; issue 17): everything about it is in this block.
#
#   include/weft/nng.h + lib/nng/*.c   lib/libweft-nng.a, lib/libweft-nng.so
#                                      (soname libweft-nng.so.SOVERSION), weft-nng.pc,
#                                      build/cmake/weftNng.cmake (CMake: weft::nng)
#   test/test_nng.c                    a Check suite like the others, linked with the
#                                      variant's libweft-nng.a and -lnng
#   examples/distributed_pool.c        linked the same way
#   make bench-nng                     bench/nng/nng_bench.c: the stream bridge beside raw
#                                      NNG PUSH/PULL; `make bench` runs it first
#   make fuzz                          test/fuzz/frame_fuzz.c (clang's libFuzzer) for
#                                      FUZZ_SECONDS (default 60), seeded from test/fuzz/corpus/;
#                                      needs clang, not NNG (the frame decoder is pure)
#
# NNG ships no .pc file in Debian: scripts/need-optional.sh looks for its header
# (installing libnng-dev with apt-get when root). Without it, the module, its suite, its
# example and its benchmark are left out, with one line saying so; the core library
# never depends on NNG (the lib/*.c wildcard does not reach lib/nng/).

NNG_GOALS    := $(filter-out clean format check-format man-check fuzz,$(or $(MAKECMDGOALS),all))
NNG_PROBE    := $(if $(NNG_GOALS),$(shell CC='$(CC)' sh scripts/need-optional.sh nng/nng.h libnng-dev \
                    2>&1; echo "nng-status=$$?"))
HAVE_NNG     := $(if $(filter nng-status=0,$(NNG_PROBE)),1)
NNG_LIBS     := -lnng
NNG_SRCS     := $(sort $(wildcard lib/nng/*.c))
NNG_STATIC   := lib/libweft-nng.a
NNG_SONAME   := libweft-nng.so.$(SOVERSION)
NNG_SHARED_REAL := lib/libweft-nng.so.$(VERSION)
NNG_SHARED   := lib/libweft-nng.so lib/$(NNG_SONAME) $(NNG_SHARED_REAL)
NNG_TESTS    := test/test_nng.c
NNG_EXAMPLES := build/release/examples/distributed_pool
NNG_BENCH    := build/release/bench/nng/nng_bench
FORMAT_SRCS  += $(wildcard lib/nng/*.[ch])

ifeq ($(HAVE_NNG),1)
all: $(NNG_STATIC) $(NNG_SHARED) weft-nng.pc

# $(call nng-variant,VARIANT): that variant's libweft-nng.a, and its suite linked to it.
define nng-variant
$(1)_NNG_LIB := $$(if $$(filter release,$(1)),$$(NNG_STATIC),build/$(1)/libweft-nng.a)
$$($(1)_NNG_LIB): $$(patsubst %.c,build/$(1)/%.o,$$(NNG_SRCS))
	@mkdir -p $$(@D)
	$$(quiet) AR $$@
	$$(Q)rm -f $$@ && $$(AR) rcs $$@ $$^
build/$(1)/test/test_nng: $$($(1)_NNG_LIB)
build/$(1)/test/test_nng: TEST_MODULES = $$($(1)_NNG_LIB) $$(NNG_LIBS)
endef
$(foreach v,release tsan asan,$(eval $(call nng-variant,$(v))))

$(NNG_SHARED_REAL): $(patsubst %.c,build/release/%.o,$(NNG_SRCS)) lib/libweft.so
	$(quiet) LD $@
	$(Q)$(CC) $(LDFLAGS) -shared -pthread -Wl,-soname,$(NNG_SONAME) -Wl,-z,defs -o $@ \
	    $(filter %.o,$^) -Llib -lweft $(NNG_LIBS) $(LDLIBS)

lib/$(NNG_SONAME): $(NNG_SHARED_REAL)
	$(Q)ln -sf $(notdir $<) $@

lib/libweft-nng.so: lib/$(NNG_SONAME)
	$(Q)ln -sf $(notdir $<) $@

weft-nng.pc: weft-nng.pc.in FORCE
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@.tmp
	$(Q)if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; echo "  GEN    $@"; fi


build/release/examples/distributed_pool: build/release/examples/distributed_pool.o \
        $(NNG_STATIC) $(STATIC_LIB)
	$(quiet) LD $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(NNG_STATIC) $(STATIC_LIB) $(NNG_LIBS) -pthread -lm $(LDLIBS)

$(NNG_BENCH): bench/nng/nng_bench.c $(NNG_STATIC) $(STATIC_LIB) build/release/flags
	@mkdir -p $(@D)
	$(quiet) CC $@
	$(Q)$(CC) $(release_FLAGS) $(LDFLAGS) -o $@ $< $(NNG_STATIC) $(STATIC_LIB) $(NNG_LIBS) \
	    -pthread -lm $(LDLIBS)

.PHONY: bench-nng install-nng uninstall-nng
bench-nng: $(NNG_BENCH)
	./$(NNG_BENCH) $(NNG_BENCH_FLAGS)
bench: bench-nng

install: install-nng
install-nng: $(NNG_STATIC) $(NNG_SHARED) weft-nng.pc build/cmake/weftNng.cmake
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(CMAKEDIR)
	install -m 644 build/cmake/weftNng.cmake $(DESTDIR)$(CMAKEDIR)/
	install -m 644 $(NNG_STATIC) $(DESTDIR)$(LIBDIR)/libweft-nng.a
	install -m 755 $(NNG_SHARED_REAL) $(DESTDIR)$(LIBDIR)/$(notdir $(NNG_SHARED_REAL))
	ln -sf $(notdir $(NNG_SHARED_REAL)) $(DESTDIR)$(LIBDIR)/$(NNG_SONAME)
	ln -sf $(NNG_SONAME) $(DESTDIR)$(LIBDIR)/libweft-nng.so
	install -m 644 weft-nng.pc $(DESTDIR)$(PKGCONFIGDIR)/weft-nng.pc
else
TESTS        := $(filter-out $(NNG_TESTS),$(TESTS))
EXAMPLE_SRCS := $(filter-out examples/distributed_pool.c,$(EXAMPLE_SRCS))
EXAMPLES     := $(filter-out $(NNG_EXAMPLES),$(EXAMPLES))
ifneq ($(NNG_GOALS),)
$(info $(filter-out nng-status=%,$(NNG_PROBE)) [libweft-nng, test/test_nng.c, examples/distributed_pool.c, bench-nng])
endif
endif

uninstall: uninstall-nng
uninstall-nng:
	rm -f $(DESTDIR)$(LIBDIR)/libweft-nng.a $(DESTDIR)$(LIBDIR)/libweft-nng.so \
	    $(DESTDIR)$(LIBDIR)/$(NNG_SONAME) $(DESTDIR)$(LIBDIR)/$(notdir $(NNG_SHARED_REAL)) \
	    $(DESTDIR)$(PKGCONFIGDIR)/weft-nng.pc $(DESTDIR)$(CMAKEDIR)/weftNng.cmake

# The module's objects are one level deeper than the final -include reaches.
-include $(wildcard build/*/lib/nng/*.d)

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
.PHONY: fuzz
build/fuzz/frame_fuzz: test/fuzz/frame_fuzz.c lib/nng/frame.c lib/nng/frame.h
	@mkdir -p $(@D)
	$(quiet) CC $@
	$(Q)$(FUZZ_CC) -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Ilib/nng -o $@ \
	    test/fuzz/frame_fuzz.c lib/nng/frame.c
fuzz: build/fuzz/frame_fuzz
	@rm -rf build/fuzz/corpus && mkdir -p build/fuzz/corpus && cp test/fuzz/corpus/* build/fuzz/corpus/
	./build/fuzz/frame_fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=1024 \
	    build/fuzz/corpus test/fuzz/corpus

# ---------------------------------------------------------------------------
# Optional examples (issue 15, event loops): examples/uv_offload.c needs
# libuv, examples/event_offload.c libevent. For the goals that build
# examples, scripts/need-optional.sh looks for each library (installing its
# Debian package when run as root); a missing one leaves its example out of
# EXAMPLES, and test/test_event_loops.c then reports its tests skipped.
# Their own rules below add the library's pkg-config flags.
OPTIONAL_EXAMPLE_GOALS := test tsan asan valgrind examples
# $(call have-optional,PKG-CONFIG NAME,DEBIAN PACKAGE): yes, or empty
have-optional = $(if $(filter $(OPTIONAL_EXAMPLE_GOALS),$(MAKECMDGOALS)),$(shell \
    CC='$(CC)' PKG_CONFIG='$(PKG_CONFIG)' sh scripts/need-optional.sh $(1) $(2) >&2 && echo yes))

# $(call optional-example,NAME,PKG-CONFIG NAME,DEBIAN PACKAGE)
define optional-example
ifeq ($$(call have-optional,$(2),$(3)),yes)
build/release/examples/$(1).o: examples/$(1).c build/release/flags
	@mkdir -p $$(@D)
	$$(quiet) CC $$@
	$$(Q)$$(CC) $$(release_FLAGS) $$(shell $$(PKG_CONFIG) --cflags $(2)) -MMD -MP -c $$< -o $$@

build/release/examples/$(1): build/release/examples/$(1).o $$(STATIC_LIB)
	$$(quiet) LD $$@
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$< $$(STATIC_LIB) $$(shell $$(PKG_CONFIG) --libs $(2)) \
	    -pthread -lm $$(LDLIBS)
else
EXAMPLES := $$(filter-out build/release/examples/$(1),$$(EXAMPLES))
endif
endef

$(eval $(call optional-example,uv_offload,libuv,libuv1-dev))
$(eval $(call optional-example,event_offload,libevent,libevent-dev))
# (end of the optional examples)

# ---------------------------------------------------------------------------
# Variants: release (the library users get), tsan, asan.

release_CFLAGS  :=
release_LDFLAGS :=
release_LIB     := $(STATIC_LIB)
tsan_CFLAGS     := -fsanitize=thread -O1 -g
tsan_LDFLAGS    := -fsanitize=thread
tsan_LIB        := build/tsan/libweft.a
asan_CFLAGS     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
asan_LDFLAGS    := -fsanitize=address,undefined
asan_LIB        := build/asan/libweft.a

# How each variant runs a test binary.
release_RUN_ENV := CK_DEFAULT_TIMEOUT=$(TEST_TIMEOUT)
tsan_RUN_ENV    := CK_DEFAULT_TIMEOUT=$(TEST_TIMEOUT) CK_TIMEOUT_MULTIPLIER=$(SAN_TIMEOUT_MULTIPLIER) \
                   TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 atexit_sleep_ms=0 $(TSAN_OPTIONS)"
asan_RUN_ENV    := CK_DEFAULT_TIMEOUT=$(TEST_TIMEOUT) CK_TIMEOUT_MULTIPLIER=$(SAN_TIMEOUT_MULTIPLIER) \
                   ASAN_OPTIONS="detect_leaks=1 $(ASAN_OPTIONS)" \
                   LSAN_OPTIONS="suppressions=$(CURDIR)/test/lsan.supp $(LSAN_OPTIONS)" \
                   UBSAN_OPTIONS="print_stacktrace=1 $(UBSAN_OPTIONS)"
# gcc 12's ThreadSanitizer cannot map its shadow memory when the kernel
# randomizes mmap with more than 28 bits; run without ASLR there.
tsan_RUN_WRAP    = $(shell r=$$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0); \
                     [ "$$r" -gt 28 ] && command -v setarch >/dev/null && echo "setarch $$(uname -m) -R")

.PHONY: all test build-tests tsan asan valgrind bench examples install uninstall clean \
        format check-format check-deps install-check cxx-check man-check docs-check FORCE
.SUFFIXES:
.DELETE_ON_ERROR:

all: $(STATIC_LIB) $(SHARED_LIBS) weft.pc $(BENCH)

# $(call variant,NAME): objects, library and test programs of one variant.
define variant
$(1)_FLAGS   = $$(BASE_CFLAGS) $$(CPPFLAGS) $$(CFLAGS) $$($(1)_CFLAGS)
$(1)_OBJS   := $$(patsubst %.c,build/$(1)/%.o,$$(LIB_SRCS))
$(1)_TESTS  := $$(patsubst test/%.c,build/$(1)/test/%,$$(TESTS))
# The bench's modules but its main: test_bench links them to test them directly.
$(1)_BENCH_MODULES := $$(patsubst %.c,build/$(1)/%.o,$$(filter-out bench/weft_bench.c,$$(BENCH_SRCS)))

build/$(1)/flags: FORCE
	@mkdir -p $$(@D)
	@echo '$$(CC) $$($(1)_FLAGS) $$(LDFLAGS) $$($(1)_LDFLAGS)' | cmp -s - $$@ \
	    || echo '$$(CC) $$($(1)_FLAGS) $$(LDFLAGS) $$($(1)_LDFLAGS)' > $$@

build/$(1)/lib/%.o: lib/%.c build/$(1)/flags
	@mkdir -p $$(@D)
	$$(quiet) CC $$@
	$$(Q)$$(CC) $$($(1)_FLAGS) -MMD -MP -c $$< -o $$@

build/$(1)/bench/%.o: bench/%.c build/$(1)/flags
	@mkdir -p $$(@D)
	$$(quiet) CC $$@
	$$(Q)$$(CC) $$($(1)_FLAGS) -MMD -MP -c $$< -o $$@

build/$(1)/test/test_bench: $$($(1)_BENCH_MODULES)
build/$(1)/test/test_bench: TEST_MODULES = $$($(1)_BENCH_MODULES)

build/$(1)/test/%.o: test/%.c build/$(1)/flags | check-deps
	@mkdir -p $$(@D)
	$$(quiet) CC $$@
	$$(Q)$$(CC) $$($(1)_FLAGS) $$(CHECK_CFLAGS) -MMD -MP -c $$< -o $$@

build/$(1)/test/%: build/$(1)/test/%.o $$($(1)_LIB) | check-deps
	$$(quiet) LD $$@
	$$(Q)$$(CC) $$(LDFLAGS) $$($(1)_LDFLAGS) -o $$@ $$< $$(TEST_MODULES) $$($(1)_LIB) $$(CHECK_LIBS) -pthread -lm $$(LDLIBS)

$$($(1)_LIB): $$($(1)_OBJS)
	@mkdir -p $$(@D)
	$$(quiet) AR $$@
	$$(Q)rm -f $$@ && $$(AR) rcs $$@ $$^
endef

$(eval $(call variant,release))
$(eval $(call variant,tsan))
$(eval $(call variant,asan))

# Keep test objects: they are not intermediate junk to delete after linking.
.SECONDARY:

# ---------------------------------------------------------------------------
# The library

$(SHARED_REAL): $(release_OBJS)
	$(quiet) LD $@
	$(Q)$(CC) $(LDFLAGS) -shared -pthread -Wl,-soname,$(SONAME) -Wl,-z,defs -o $@ $^ $(LDLIBS)

lib/$(SONAME): $(SHARED_REAL)
	$(Q)ln -sf $(notdir $<) $@

lib/libweft.so: lib/$(SONAME)
	$(Q)ln -sf $(notdir $<) $@

# weft.pc carries PREFIX; it is rewritten only when its text changes, so
# `make install PREFIX=...` gets the right one without needless rebuilds.
weft.pc: weft.pc.in FORCE
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@.tmp
	$(Q)if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; echo "  GEN    $@"; fi

# The CMake package (cmake/*.cmake.in) finds everything from its own
# location, so an installed tree can be moved or staged with DESTDIR: the
# prefix is written as the way up from CMAKEDIR (../../.. for
# lib/cmake/weft), LIBDIR and INCLUDEDIR relative to the prefix; each stays
# absolute when it does not lie under PREFIX. Rewritten, like weft.pc, only
# when the text changes.
CMAKE_FILES := build/cmake/weftConfig.cmake build/cmake/weftConfigVersion.cmake
empty       :=
space       := $(empty) $(empty)
from_prefix  = $(patsubst $(PREFIX)/%,%,$(1))
prefix_from_cmakedir = $(if $(filter /%,$(call from_prefix,$(CMAKEDIR))),$(PREFIX),$(subst \
    $(space),/,$(patsubst %,..,$(subst /, ,$(call from_prefix,$(CMAKEDIR))))))
# The pointer size the library is built for: CMake refuses it to a 32-bit build.
SIZEOF_VOID_P = $(shell echo __SIZEOF_POINTER__ | $(CC) $(CPPFLAGS) $(CFLAGS) -E -P -x c - | tail -n 1)

build/cmake/%.cmake: cmake/%.cmake.in FORCE
	@mkdir -p $(@D)
	$(Q)sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@VERSION_MAJOR@|$(VERSION_MAJOR)|g' \
	    -e 's|@SOVERSION@|$(SOVERSION)|g' -e 's|@PREFIX_FROM_CMAKEDIR@|$(prefix_from_cmakedir)|g' \
	    -e 's|@LIBDIR_FROM_PREFIX@|$(call from_prefix,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR_FROM_PREFIX@|$(call from_prefix,$(INCLUDEDIR))|g' \
	    -e 's|@SIZEOF_VOID_P@|$(SIZEOF_VOID_P)|g' $< > $@.tmp
	$(Q)if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; echo "  GEN    $@"; fi

# ---------------------------------------------------------------------------
# Tests

check-deps:
	@PKG_CONFIG='$(PKG_CONFIG)' sh scripts/need-check.sh

# $(call run-tests,VARIANT,WRAPPER): run each test binary in turn, show its
# output (and keep it in <binary>.log), fail if any exits non-zero or any
# Check summary reports failures or errors.
define run-tests
	@set -o pipefail; failed=""; n=0; \
	[ -n "$($(1)_TESTS)" ] || { echo "weft: no tests (test/test_*.c)"; exit 1; }; \
	for t in $($(1)_TESTS); do \
	    n=$$((n + 1)); \
	    echo "== $(1): $$t"; \
	    if env $($(1)_RUN_ENV) $(2) ./$$t 2>&1 | tee $$t.log; \
	       then rc=0; else rc=$$?; fi; \
	    if [ $$rc -ne 0 ] || grep -Eq 'Failures: [1-9]|Errors: [1-9]' $$t.log; then \
	        failed="$$failed $${t##*/}"; echo "== $(1): $$t FAILED (exit $$rc)"; fi; \
	done; \
	echo "== $(1) summary:"; \
	grep -H -E '^[0-9]+%: Checks:' $(addsuffix .log,$($(1)_TESTS)) | sed 's|^build/[^/]*/test/||; s|\.log:|: |' ; \
	if [ -n "$$failed" ]; then echo "== $(1): FAILED:$$failed"; exit 1; fi; \
	echo "== $(1): all $$n test programs passed"
endef

test: $(release_TESTS) $(EXAMPLES) $(BENCH_FOR_TESTS) $(ECHO_LOAD) $(ECHO_THREADS)
	$(call run-tests,release,)

# Build the test programs without running them.
build-tests: $(release_TESTS)

tsan: $(tsan_TESTS) $(EXAMPLES) $(BENCH_FOR_TESTS) $(ECHO_LOAD) $(ECHO_THREADS)
	$(call run-tests,tsan,$(tsan_RUN_WRAP))

asan: $(asan_TESTS) $(EXAMPLES) $(BENCH_FOR_TESTS) $(ECHO_LOAD) $(ECHO_THREADS)
	$(call run-tests,asan,)

valgrind: $(release_TESTS) $(EXAMPLES) $(BENCH_FOR_TESTS) $(ECHO_LOAD) $(ECHO_THREADS)
	@command -v $(VALGRIND) >/dev/null || \
	    { echo "weft: valgrind not found; install it: sudo apt-get install valgrind"; exit 1; }
	@failed=""; \
	[ -n "$(release_TESTS)" ] || { echo "weft: no tests (test/test_*.c)"; exit 1; }; \
	for t in $(release_TESTS); do \
	    echo "== valgrind: $$t"; \
	    CK_FORK=no WEFT_TEST_SCALE=$${WEFT_TEST_SCALE:-10} CK_DEFAULT_TIMEOUT=600 \
	    $(VALGRIND) -q --fair-sched=yes --leak-check=full --suppressions=test/valgrind.supp \
	        --error-exitcode=1 --errors-for-leak-kinds=definite,indirect ./$$t \
	        || failed="$$failed $${t##*/}"; \
	done; \
	if [ -n "$$failed" ]; then echo "== valgrind: FAILED:$$failed"; exit 1; fi; \
	echo "== valgrind: all test programs clean"

# ---------------------------------------------------------------------------
# Torture test: test/torture.c, a randomized, seeded program that runs every
# operation at once in rounds and checks the invariants after each. Not a
# Check suite (test/test_*.c), so `make test` does not run it.
#
#   make torture SEED=n SECONDS=s      release build, build/release/test/torture
#   make torture-tsan / torture-asan   the same under ThreadSanitizer / ASan+UBSan
#
# SEED: the run's seed (default: from the clock); SECONDS: how long to run
# (default 10); TORTURE_FLAGS: more options (--round SEED replays one round,
# --hang S, --verbose, --earliest-free: mostly the free-at-first-sight
# shapes of issue 12), e.g. make torture-asan TORTURE_FLAGS=--earliest-free.

SEED          ?=
SECONDS       ?= 10
TORTURE_FLAGS ?=
TORTURE_ARGS   = $(if $(SEED),--seed $(SEED)) --seconds $(SECONDS) $(TORTURE_FLAGS)

# $(call torture-program,VARIANT): build/VARIANT/test/torture, without Check.
define torture-program
build/$(1)/test/torture.o: test/torture.c build/$(1)/flags
	@mkdir -p $$(@D)
	$$(quiet) CC $$@
	$$(Q)$$(CC) $$($(1)_FLAGS) -MMD -MP -c $$< -o $$@

build/$(1)/test/torture: build/$(1)/test/torture.o $$($(1)_LIB)
	$$(quiet) LD $$@
	$$(Q)$$(CC) $$(LDFLAGS) $$($(1)_LDFLAGS) -o $$@ $$< $$($(1)_LIB) -pthread -lm $$(LDLIBS)
endef

$(foreach v,release tsan asan,$(eval $(call torture-program,$(v))))

.PHONY: torture torture-tsan torture-asan

torture: build/release/test/torture
	./$< $(TORTURE_ARGS)

torture-tsan: build/tsan/test/torture
	env $(tsan_RUN_ENV) $(tsan_RUN_WRAP) ./$< $(TORTURE_ARGS)

# UBSan's abort_on_error: its reports then raise SIGABRT, whose handler in
# torture prints the failing round's seed (ASan and TSan call it directly).
torture-asan: build/asan/test/torture
	env $(asan_RUN_ENV) UBSAN_OPTIONS="print_stacktrace=1 abort_on_error=1 $(UBSAN_OPTIONS)" \
	    ./$< $(TORTURE_ARGS)

# ---------------------------------------------------------------------------
# Scale runs: test/scale.c, a program (a full run takes about a minute, too
# long for `make test`): 10,000 goroutines blocked on one channel, 1,000,000
# short goroutines, a context with 1,000,000 children. It prints one
# "scale:" line of figures per run and fails on a broken invariant.
#
#   make scale                    release build, build/release/test/scale
#   make scale-tsan / scale-asan  the same under ThreadSanitizer / ASan+UBSan
#
# SCALE_FLAGS: its options (--divide N: every count / N; --only NAME).

SCALE_FLAGS ?=

# $(call scale-program,VARIANT): build/VARIANT/test/scale, without Check.
define scale-program
build/$(1)/test/scale.o: test/scale.c build/$(1)/flags
	@mkdir -p $$(@D)
	$$(quiet) CC $$@
	$$(Q)$$(CC) $$($(1)_FLAGS) -MMD -MP -c $$< -o $$@

build/$(1)/test/scale: build/$(1)/test/scale.o $$($(1)_LIB)
	$$(quiet) LD $$@
	$$(Q)$$(CC) $$(LDFLAGS) $$($(1)_LDFLAGS) -o $$@ $$< $$($(1)_LIB) -pthread -lm $$(LDLIBS)
endef

$(foreach v,release tsan asan,$(eval $(call scale-program,$(v))))

.PHONY: scale scale-tsan scale-asan

scale: build/release/test/scale
	./$< $(SCALE_FLAGS)

scale-tsan: build/tsan/test/scale
	env $(tsan_RUN_ENV) $(tsan_RUN_WRAP) ./$< $(SCALE_FLAGS)

scale-asan: build/asan/test/scale
	env $(asan_RUN_ENV) ./$< $(SCALE_FLAGS)

# ---------------------------------------------------------------------------
# Benchmark and examples (release flags, static library)

# (build/release/bench/%.o: the variant rules above)
BENCH_OBJS := $(patsubst %.c,build/release/%.o,$(BENCH_SRCS))

build/release/examples/%.o: examples/%.c build/release/flags
	@mkdir -p $(@D)
	$(quiet) CC $@
	$(Q)$(CC) $(release_FLAGS) -MMD -MP -c $< -o $@

$(BENCH): $(BENCH_OBJS) $(STATIC_LIB)
	$(quiet) LD $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $(BENCH_OBJS) $(STATIC_LIB) -pthread -lm $(LDLIBS)

build/release/examples/%: build/release/examples/%.o $(STATIC_LIB)
	$(quiet) LD $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(STATIC_LIB) -pthread -lm $(LDLIBS)

# The echo benchmark (bench/echo/): a load generator of its own (no weft
# in it, so it loads both servers alike) and the Go twin of
# examples/echo_server, built only when go is installed (its cache under
# build/, so nothing needs HOME). `make test` builds the load generator
# (test/test_echo_load.c runs it for a moment); only `make bench` runs the
# full benchmark.

$(ECHO_LOAD): bench/echo/echo_load.c build/release/flags
	@mkdir -p $(@D)
	$(quiet) CC $@
	$(Q)$(CC) $(release_FLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

$(ECHO_THREADS): bench/echo/echo_server_threads.c build/release/flags
	@mkdir -p $(@D)
	$(quiet) CC $@
	$(Q)$(CC) $(release_FLAGS) $(LDFLAGS) -o $@ $< -pthread

$(ECHO_GO): bench/echo/echo_server.go
	@mkdir -p $(@D)
	$(quiet) GO $@
	$(Q)GOCACHE=$(CURDIR)/build/go-cache $(GO) build -o $@ $<

.PHONY: bench-echo
bench-echo: $(ECHO_LOAD) $(ECHO_THREADS) build/release/examples/echo_server $(if $(HAVE_GO),$(ECHO_GO))
	@[ -n "$(HAVE_GO)" ] || echo "weft: go not found (Debian: apt-get install golang-go); weft alone"
	./$(ECHO_LOAD) --weft build/release/examples/echo_server --threads $(ECHO_THREADS) \
	    $(if $(HAVE_GO),--go $(ECHO_GO)) $(ECHO_LOAD_FLAGS)

# An unbounded channel's memory through a burst (bench/rss/): peak and
# after-drain resident set for RSS_VALUES queued values, sent by the main
# thread and by another one.
RSS_BENCH  := build/release/bench/rss/unbounded_rss
RSS_VALUES ?= 10000000

$(RSS_BENCH): bench/rss/unbounded_rss.c $(STATIC_LIB) build/release/flags
	@mkdir -p $(@D)
	$(quiet) CC $@
	$(Q)$(CC) $(release_FLAGS) $(LDFLAGS) -o $@ $< $(STATIC_LIB) -pthread $(LDLIBS)

.PHONY: bench-rss
bench-rss: $(RSS_BENCH)
	./$(RSS_BENCH) $(RSS_VALUES)
	./$(RSS_BENCH) $(RSS_VALUES) thread

ifeq ($(wildcard bench/weft_bench.c),)
bench:
	@echo "weft: bench/weft_bench.c does not exist yet; nothing to run"; exit 1
else
bench: $(BENCH)
	./$(BENCH)
	$(MAKE) --no-print-directory bench-echo
endif

examples: $(EXAMPLES)

# ---------------------------------------------------------------------------
# Install

install: $(STATIC_LIB) $(SHARED_LIBS) weft.pc $(BENCH) $(CMAKE_FILES)
	install -d $(DESTDIR)$(INCLUDEDIR)/weft $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	    $(DESTDIR)$(BINDIR) $(DESTDIR)$(CMAKEDIR) $(DESTDIR)$(MANDIR)/man3
	install -m 644 include/weft.h $(DESTDIR)$(INCLUDEDIR)/weft.h
	install -m 644 $(PUB_HEADERS) $(DESTDIR)$(INCLUDEDIR)/weft/
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/libweft.a
	install -m 755 $(SHARED_REAL) $(DESTDIR)$(LIBDIR)/$(notdir $(SHARED_REAL))
	ln -sf $(notdir $(SHARED_REAL)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libweft.so
	install -m 644 weft.pc $(DESTDIR)$(PKGCONFIGDIR)/weft.pc
	install -m 644 $(CMAKE_FILES) $(DESTDIR)$(CMAKEDIR)/
	VERSION=$(VERSION) sh man/install.sh $(DESTDIR)$(MANDIR)/man3 $(MAN_PAGES)
	install -m 755 $(BENCH) $(DESTDIR)$(BINDIR)/weft-bench
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

uninstall:
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/weft/,$(notdir $(PUB_HEADERS)))
	rm -f $(DESTDIR)$(INCLUDEDIR)/weft.h
	rmdir $(DESTDIR)$(INCLUDEDIR)/weft 2>/dev/null || true
	rm -f $(DESTDIR)$(LIBDIR)/libweft.a $(DESTDIR)$(LIBDIR)/libweft.so \
	    $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/$(notdir $(SHARED_REAL))
	rm -f $(DESTDIR)$(PKGCONFIGDIR)/weft.pc
	rm -f $(addprefix $(DESTDIR)$(CMAKEDIR)/,$(notdir $(CMAKE_FILES)))
	rmdir $(DESTDIR)$(CMAKEDIR) 2>/dev/null || true
	sh man/install.sh --uninstall $(DESTDIR)$(MANDIR)/man3 $(MAN_PAGES)
	rm -f $(DESTDIR)$(BINDIR)/weft-bench
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

# Install into build/install-check/prefix (rebuilding weft.pc and the
# CMake files for that prefix), then build and run programs against it as
# a user would: test/install/check.sh (pkg-config shared and static, the
# CMake package, C++, man). A CI stage; `make test` does not run it.
INSTALL_CHECK_PREFIX := $(CURDIR)/build/install-check/prefix

install-check:
	rm -rf $(INSTALL_CHECK_PREFIX)
	$(MAKE) --no-print-directory install PREFIX=$(INSTALL_CHECK_PREFIX) DESTDIR=
	CC='$(CC)' CXX='$(CXX)' PKG_CONFIG='$(PKG_CONFIG)' bash test/install/check.sh $(INSTALL_CHECK_PREFIX)

# ---------------------------------------------------------------------------
# C++: every public header, alone and as weft.h, must compile as C++ in
# each standard of CXX_STDS with warnings as errors; test/install/hello.cpp
# is then built in each and run against the static library (it also
# compares the public structs' layouts with the C compiler's, through
# test/install/layout.c). CXX=clang++ for clang.
CXX_STDS     ?= c++11 c++14 c++17 c++20
CXX_WARNINGS := -Wall -Wextra -Wpedantic -Werror

build/release/test/install/layout.o: test/install/layout.c build/release/flags
	@mkdir -p $(@D)
	$(quiet) CC $@
	$(Q)$(CC) $(release_FLAGS) -MMD -MP -c $< -o $@

cxx-check: $(STATIC_LIB) build/release/test/install/layout.o
	@command -v $(CXX) >/dev/null || { echo "weft: no C++ compiler ($(CXX))"; exit 1; }
	@mkdir -p build/cxx
	$(Q)set -e; for std in $(CXX_STDS); do \
	    for header in include/weft.h $(PUB_HEADERS); do \
	        echo "#include \"$${header#include/}\"" | \
	            $(CXX) -std=$$std $(CXX_WARNINGS) -Iinclude -x c++ -fsyntax-only - \
	            || { echo "weft: $$header does not compile as $$std"; exit 1; }; \
	    done; \
	    echo "  CXX    build/cxx/hello-$$std"; \
	    $(CXX) -std=$$std $(CXX_WARNINGS) -pthread -Iinclude -Itest/install \
	        -o build/cxx/hello-$$std test/install/hello.cpp build/release/test/install/layout.o \
	        $(STATIC_LIB) $(LDLIBS); \
	    printf '  RUN    build/cxx/hello-%s: ' $$std; ./build/cxx/hello-$$std; \
	done

# Man pages: every function declared in include/weft/*.h is named by a
# page, every page renders without a groff warning, and each name resolves
# through man(1) once installed (when man is present).
man-check:
	VERSION=$(VERSION) sh man/check.sh

# The complete programs in README.md and docs/*.md compile against this
# tree; the README's example prints what the README says.
docs-check: $(STATIC_LIB)
	bash scripts/check-docs.sh '$(CC)'

# ---------------------------------------------------------------------------
# Formatting and cleaning

format:
	$(CLANG_FORMAT) -i $(FORMAT_SRCS)

check-format:
	$(CLANG_FORMAT) --dry-run --Werror $(FORMAT_SRCS)

clean:
	rm -rf build
	rm -f $(STATIC_LIB) lib/libweft.so lib/libweft.so.* weft.pc weft.pc.tmp $(BENCH)
	rm -f lib/libweft-nng.a lib/libweft-nng.so lib/libweft-nng.so.* weft-nng.pc weft-nng.pc.tmp

FORCE:

-include $(wildcard build/*/*/*.d)
