#!/usr/bin/env bash
# check.sh PREFIX [shared|static|all]: build and run programs against the
# weft that `make install PREFIX=PREFIX` put in PREFIX, as its users would.
#
#   shared  hello.c with `pkg-config --cflags --libs weft`, linked to
#           libweft.so.0 (checked with readelf) and run; hello.cpp (and
#           layout.c) the same way, when there is a C++ compiler; the CMake
#           consumer (cmake/) against a moved copy of PREFIX: app
#           (weft::weft) and app_cxx, run; the version file's answers
#           (cmake/version.cmake); `man 3 weft_chan_send` with
#           MANPATH=PREFIX/share/man
#           When the optional NNG module is installed (weft-nng.pc):
#           hello_nng.c with `pkg-config --cflags --libs weft-nng` and the
#           CMake consumer's app_nng (weft::nng), run
#   static  hello.c with `pkg-config --static ...` and -static, checked to
#           need no libweft.so, run; the CMake consumer's app_static
#           (weft::weft_static), checked and run
#   all     both (the default)
#
# CC (default cc), CXX (default c++ or g++) and PKG_CONFIG (default
# pkg-config) are honoured. pkg-config, cmake and man are installed with
# apt-get when missing and root; without pkg-config the check fails,
# without cmake or man their part is skipped with a message saying so.
set -euo pipefail

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 PREFIX [shared|static|all]" >&2
    exit 2
fi
prefix=$(cd "$1" && pwd)
mode=${2:-all}
here=$(cd "$(dirname "$0")" && pwd)
CC=${CC:-cc}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}
if [ -z "${CXX:-}" ]; then
    CXX=$(command -v c++ || command -v g++ || true)
fi
export CC CXX
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
work=$(mktemp -d "${TMPDIR:-/tmp}/weft-install-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
warnings=(-Wall -Wextra -Wpedantic -Werror)

say() { echo "install-check: $*"; }
die() {
    echo "install-check: $*" >&2
    exit 1
}

# need PROGRAM PACKAGE: PROGRAM is there, or was installed from Debian's
# PACKAGE (as root with apt-get). Fails quietly otherwise.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
    say "installing $2 (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "$2" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$2" >/dev/null 2>&1; } ||
        true
    command -v "$1" >/dev/null 2>&1
}

# run_expect_ok [NAME=VALUE...] EXE: run EXE (env NAME=VALUE... EXE, for
# -u NAME too); its output must be exactly OK.
run_expect_ok() {
    local out exe=${*: -1}
    out=$(env "$@")
    say "${exe##*/}: $out"
    [ "$out" = OK ] || die "$exe printed '$out', not OK"
}

needs_libweft_so() { readelf -d "$1" | grep -q 'NEEDED.*\[libweft\.so\.[0-9]*\]'; }

pkg_config_shared() {
    local flags=()
    read -r -a flags <<<"$("$PKG_CONFIG" --cflags --libs weft)"
    say "pkg-config --cflags --libs weft: ${flags[*]}"
    "$CC" -std=c11 "${warnings[@]}" -o "$work/hello-shared" "$here/hello.c" "${flags[@]}"
    readelf -d "$work/hello-shared" | grep -q 'NEEDED.*\[libweft\.so\.0\]' ||
        die "hello-shared does not link libweft.so.0"
    run_expect_ok LD_LIBRARY_PATH="$prefix/lib" "$work/hello-shared"
}

pkg_config_static() {
    local flags=()
    read -r -a flags <<<"$("$PKG_CONFIG" --static --cflags --libs weft)"
    say "pkg-config --static --cflags --libs weft: ${flags[*]}"
    "$CC" -std=c11 "${warnings[@]}" -static -o "$work/hello-static" "$here/hello.c" "${flags[@]}"
    ! needs_libweft_so "$work/hello-static" || die "hello-static needs libweft.so; it should be static"
    run_expect_ok -u LD_LIBRARY_PATH "$work/hello-static"
}

pkg_config_cxx() {
    if [ -z "$CXX" ] || ! command -v "$CXX" >/dev/null 2>&1; then
        say "no C++ compiler (CXX): the C++ consumer is skipped"
        return 0
    fi
    local flags=()
    read -r -a flags <<<"$("$PKG_CONFIG" --cflags --libs weft)"
    "$CC" -std=c11 "${warnings[@]}" -I"$here" $("$PKG_CONFIG" --cflags weft) \
        -c "$here/layout.c" -o "$work/layout.o"
    "$CXX" -std=c++11 "${warnings[@]}" -pthread -I"$here" -o "$work/hello-cxx" \
        "$here/hello.cpp" "$work/layout.o" "${flags[@]}"
    run_expect_ok LD_LIBRARY_PATH="$prefix/lib" "$work/hello-cxx"
}

# cmake_consumer shared|static: configure cmake/ against a moved copy of
# the installed tree (so a path written into the package at install time
# would be caught), build the mode's targets, run them.
cmake_consumer() {
    local mode=$1 moved="$work/moved-$1" build="$work/cmake-$1"
    cp -a "$prefix" "$moved"
    cmake -S "$here/cmake" -B "$build" -DCMAKE_PREFIX_PATH="$moved" \
        -DWEFT_EXPECT_PREFIX="$moved" -DCMAKE_BUILD_TYPE=Release >"$build.log" 2>&1 ||
        { cat "$build.log" >&2; die "cmake could not configure the consumer"; }
    grep -E 'weft .* from|no C\+\+ compiler' "$build.log" | sed 's/^-- /install-check: cmake: /'
    if [ "$mode" = static ]; then
        cmake --build "$build" --target app_static >>"$build.log" 2>&1 ||
            { cat "$build.log" >&2; die "cmake could not build app_static"; }
        ! needs_libweft_so "$build/app_static" ||
            die "app_static (weft::weft_static) needs libweft.so"
        run_expect_ok -u LD_LIBRARY_PATH "$build/app_static"
        return 0
    fi
    local targets=(app)
    grep -q 'no C++ compiler' "$build.log" || targets+=(app_cxx)
    ! grep -q 'weft::nng found' "$build.log" || targets+=(app_nng)
    cmake --build "$build" --target "${targets[@]}" >>"$build.log" 2>&1 ||
        { cat "$build.log" >&2; die "cmake could not build ${targets[*]}"; }
    needs_libweft_so "$build/app" || die "app (weft::weft) does not link libweft.so"
    # The build tree's RUNPATH points at the moved copy: no LD_LIBRARY_PATH.
    local target
    for target in "${targets[@]}"; do
        run_expect_ok -u LD_LIBRARY_PATH "$build/$target"
    done
    cmake -DCONFIG_DIR="$moved/lib/cmake/weft" -P "$here/cmake/version.cmake" |
        sed 's/^-- /install-check: cmake: /'
}

# The optional NNG module, when it is installed.
pkg_config_nng() {
    if ! "$PKG_CONFIG" --exists weft-nng; then
        say "SKIPPED the NNG module's consumer: weft-nng is not installed (NNG was not found)"
        return 0
    fi
    local flags=()
    read -r -a flags <<<"$("$PKG_CONFIG" --cflags --libs weft-nng)"
    say "pkg-config --cflags --libs weft-nng: ${flags[*]}"
    "$CC" -std=c11 "${warnings[@]}" -o "$work/hello-nng" "$here/hello_nng.c" "${flags[@]}"
    readelf -d "$work/hello-nng" | grep -q 'NEEDED.*\[libweft-nng\.so\.0\]' ||
        die "hello-nng does not link libweft-nng.so.0"
    run_expect_ok LD_LIBRARY_PATH="$prefix/lib" "$work/hello-nng"
}

cmake_part() {
    if ! need cmake cmake; then
        say "SKIPPED the CMake consumer: cmake is not installed and cannot be (not root, or no apt-get)"
        return 0
    fi
    cmake_consumer "$1"
}

man_part() {
    if ! need man man-db; then
        say "SKIPPED the man page check: man is not installed and cannot be"
        return 0
    fi
    local text
    text=$(MANPATH="$prefix/share/man" MANPAGER=cat MANWIDTH=80 man 3 weft_chan_send 2>&1) ||
        die "man 3 weft_chan_send failed: $text"
    grep -q 'weft_chan_send(weft_chan' <<<"$text" ||
        die "man 3 weft_chan_send does not show weft_chan_send's synopsis"
    say "man 3 weft_chan_send: $(grep -m1 'NAME' -A1 <<<"$text" | tail -n 1 | sed 's/^ *//' | cut -c1-60)..."
}

need "$PKG_CONFIG" pkg-config || die "pkg-config is missing; install it: sudo apt-get install pkg-config"
"$PKG_CONFIG" --exists weft || die "$PKG_CONFIG finds no weft in $PKG_CONFIG_PATH"
say "weft $("$PKG_CONFIG" --modversion weft) in $prefix ($mode)"

case $mode in
shared | static | all) ;;
*) die "unknown mode '$mode' (shared, static or all)" ;;
esac
if [ "$mode" != static ]; then
    pkg_config_shared
    pkg_config_cxx
    pkg_config_nng
    cmake_part shared
    man_part
fi
if [ "$mode" != shared ]; then
    pkg_config_static
    cmake_part static
fi
say "all passed ($mode)"
