#!/bin/sh
# check.sh: the man pages' test (`make man-check`, from the top directory).
#
#  1. Every function declared in include/weft/*.h is listed in the NAME
#     section of exactly one page of man/man3/ and appears in that page's
#     SYNOPSIS, so a function cannot be added without its documentation.
#     When lib/libweft.so is built, every weft_ function it exports must be
#     among the declared ones (a declaration this script failed to parse).
#  2. groff renders every page without a warning (-ww: all of them).
#  3. With man(1): the pages, installed as `make install` does into a
#     temporary tree, resolve every name (`man -w 3 NAME`), and each page
#     renders through man without a warning, shown through a link page.
# Parts 2 and 3 are skipped, with a note, when groff or man is missing.
set -eu
cd "$(dirname "$0")/.."
failed=0
fail() {
    echo "man-check: $*" >&2
    failed=1
}

pages=$(ls man/man3/*.3)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-man.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# 1. Declared functions against the pages' NAME sections and SYNOPSIS.
grep -hoE '^[A-Za-z_][A-Za-z0-9_ ]*[ *]weft_[a-z0-9_]+\(' include/weft/*.h |
    sed -E 's/.*[ *](weft_[a-z0-9_]+)\($/\1/' | grep -v '^weft__' | sort -u >"$tmp/declared"
[ -s "$tmp/declared" ] || fail "found no function declarations in include/weft/*.h"
sh man/names.sh $pages | sort >"$tmp/names"
cut -d' ' -f1 "$tmp/names" | uniq -d | while read -r name; do
    echo "man-check: $name is listed by more than one page" >&2
    echo x >>"$tmp/errors"
done
while read -r function; do
    page=$(awk -v name="$function" '$1 == name { print $2 }' "$tmp/names" | head -n 1)
    if [ -z "$page" ]; then
        fail "$function (include/weft/) has no man page: list it in a page's NAME section"
        continue
    fi
    awk '/^\.SH/ { in_synopsis = ($2 == "SYNOPSIS"); next } in_synopsis' "man/man3/$page" |
        grep -q "$function(" ||
        fail "$function is named by man/man3/$page but missing from its SYNOPSIS"
done <"$tmp/declared"
if [ -f lib/libweft.so ] && command -v nm >/dev/null 2>&1; then
    nm -D --defined-only lib/libweft.so | awk '$2 == "T" && $3 ~ /^weft_[a-z]/ { print $3 }' |
        sort -u | comm -23 - "$tmp/declared" >"$tmp/undeclared"
    while read -r function; do
        fail "lib/libweft.so exports $function, which include/weft/*.h does not declare (as this script reads them)"
    done <"$tmp/undeclared"
fi
[ ! -f "$tmp/errors" ] || failed=1
echo "man-check: $(wc -l <"$tmp/declared") functions, $(wc -l <"$tmp/names") names in $(echo "$pages" | wc -l) pages"

# 2. groff, every warning on.
if command -v groff >/dev/null 2>&1; then
    for page in $pages; do
        warnings=$(groff -man -Tutf8 -ww -z "$page" 2>&1) ||
            fail "groff failed on $page"
        [ -z "$warnings" ] || fail "groff warns on $page: $warnings"
    done
else
    echo "man-check: groff not installed; rendering not checked (apt-get install groff-base)"
fi

# 3. man, on an installed copy.
if command -v man >/dev/null 2>&1; then
    VERSION=${VERSION:-0} sh man/install.sh "$tmp/man/man3" $pages
    # One man for every name (one each is slow); man follows a link page
    # to the page that documents the name.
    cut -d' ' -f1 "$tmp/names" >"$tmp/queries"
    awk -v dir="$tmp/man/man3" '{ print dir "/" $2 }' "$tmp/names" >"$tmp/expected"
    man -M "$tmp/man" -w 3 $(cat "$tmp/queries") >"$tmp/found" 2>"$tmp/stderr" || true
    if ! cmp -s "$tmp/expected" "$tmp/found"; then
        fail "man -w 3 NAME does not find each name's page: $(cat "$tmp/stderr")"
        diff "$tmp/expected" "$tmp/found" >&2 || true
    fi
    for page in $pages; do
        name=${page##*/}
        name=${name%.3}
        link=$(awk -v page="$name.3" -v own="$name" '$2 == page && $1 != own { print $1 }' \
            "$tmp/names" | head -n 1)
        # Through a link page when there is one: that renders the page too.
        for shown in ${link:-$name}; do
            text=$(MANWIDTH=80 MANPAGER=cat man -M "$tmp/man" 3 "$shown" 2>"$tmp/stderr") ||
                fail "man 3 $shown failed: $(cat "$tmp/stderr")"
            [ ! -s "$tmp/stderr" ] || fail "man 3 $shown warns: $(cat "$tmp/stderr")"
            echo "$text" | grep -q "$shown" || fail "man 3 $shown does not show $shown"
        done
    done
else
    echo "man-check: man not installed; names not resolved through man (apt-get install man-db)"
fi

[ "$failed" = 0 ] || exit 1
echo "man-check: OK"
