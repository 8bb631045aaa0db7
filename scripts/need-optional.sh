#!/bin/sh
# need-optional.sh NAME DEBIAN-PACKAGE: make an optional dependency
# (libuv, libevent, NNG) available if it can be. NAME is a pkg-config
# module (libuv, libevent) or, for a library that ships no .pc file
# (Debian's NNG), a header ending in .h (nng/nng.h) that $CC must find.
#
# Found: exit 0. Missing, as root with apt-get: install
# DEBIAN-PACKAGE (and pkg-config), then exit 0 if it is now found.
# Otherwise one line saying what is skipped and how to get it, exit 1.
# The parts that need it are optional: callers skip them on exit 1.
# PKG_CONFIG names the pkg-config program (default: pkg-config).
PKG_CONFIG=${PKG_CONFIG:-pkg-config}
name=$1
package=$2

have() {
    case $name in
    *.h) echo "#include <$name>" | ${CC:-cc} -E -x c - >/dev/null 2>&1 ;;
    *) command -v "$PKG_CONFIG" >/dev/null 2>&1 && "$PKG_CONFIG" --exists "$name" ;;
    esac
}

have && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "weft: $name is missing; installing $package (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "$package" pkg-config >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 &&
            apt-get install -y -q "$package" pkg-config >/dev/null 2>&1; }
    have && exit 0
fi

echo "weft: $name not found; the parts that use it are skipped (Debian: apt-get install $package)"
exit 1
