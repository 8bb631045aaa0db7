#!/bin/sh
# Make sure the test framework is there before `make test` (tsan, asan,
# valgrind) compiles anything: Check, found through pkg-config.
#
# Missing, as root with apt-get: install `check` and `pkg-config`, go on.
# Missing otherwise: one line saying what to run, exit 1.
# PKG_CONFIG names the pkg-config program (default: pkg-config).
PKG_CONFIG=${PKG_CONFIG:-pkg-config}

have_check() {
    command -v "$PKG_CONFIG" >/dev/null 2>&1 && "$PKG_CONFIG" --exists check
}

have_check && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "weft: Check or pkg-config is missing; installing check and pkg-config (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -q || ! apt-get install -y -q check pkg-config; then
        echo "weft: apt-get install check pkg-config failed" >&2
        exit 1
    fi
    have_check && exit 0
    echo "weft: Check still not found by $PKG_CONFIG after installing it" >&2
    exit 1
fi

echo "weft: the tests need Check and pkg-config; install them: sudo apt-get install check pkg-config" >&2
exit 1
