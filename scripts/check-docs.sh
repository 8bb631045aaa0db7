#!/usr/bin/env bash
# Every complete C program in the README and docs/*.md (a ```c block with a
# main) must compile, warning-free, against this tree's headers and static
# library, and the README's must print what the README says it prints.
#
#   scripts/check-docs.sh [CC]       (run from the top of the tree, after make)
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${1:-${CC:-cc}}
[ -f lib/libweft.a ] || { echo "check-docs: lib/libweft.a missing: run make first" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/weft-docs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Split each file's ```c blocks into work/<file>-<n>.c.
for doc in README.md docs/*.md; do
    awk -v prefix="$work/$(basename "$doc" .md)" '
        /^```c[ \t]*$/ { inside = 1; n++; file = prefix "-" n ".c"; next }
        /^```/ && inside { inside = 0; close(file); next }
        inside { print > file }
    ' "$doc"
done

programs=0
for source in "$work"/*.c; do
    [ -e "$source" ] || continue
    grep -q 'int main' "$source" || continue # a fragment, not a program
    programs=$((programs + 1))
    "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror -Iinclude -o "${source%.c}" "$source" \
        lib/libweft.a -pthread ||
        { echo "check-docs: $(basename "$source") does not compile (see above)" >&2; exit 1; }
done

# The README's usage example prints 1 to 5.
out=$("$work/README-1")
[ "$out" = "$(printf '1\n2\n3\n4\n5')" ] ||
    { echo "check-docs: the README example printed: $out" >&2; exit 1; }
echo "check-docs: $programs programs compile; the README example prints 1 to 5"
