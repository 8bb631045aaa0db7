#!/bin/sh
# install.sh DIR PAGE...             install the man pages into DIR (a man3
#                                    directory) and a link page for each
#                                    other name they document
# install.sh --uninstall DIR PAGE... remove them again
#
# A link page is one line, ".so man3/weft_chan.3", named after a function
# (weft_chan_send.3), so that `man 3 weft_chan_send` shows the page that
# documents it. @VERSION@ in a page becomes $VERSION.
set -e
uninstall=false
if [ "$1" = --uninstall ]; then
    uninstall=true
    shift
fi
dir=$1
shift
here=$(dirname "$0")

if $uninstall; then
    sh "$here/names.sh" "$@" | while read -r name page; do
        rm -f "$dir/$name.3"
    done
    for page in "$@"; do rm -f "$dir/${page##*/}"; done
    rmdir "$dir" 2>/dev/null || true
    exit 0
fi

mkdir -p "$dir"
for page in "$@"; do
    sed "s/@VERSION@/${VERSION:-unknown}/g" "$page" >"$dir/${page##*/}"
    chmod 644 "$dir/${page##*/}"
done
sh "$here/names.sh" "$@" | while read -r name page; do
    [ "$name.3" = "$page" ] && continue
    printf '.so man3/%s\n' "$page" >"$dir/$name.3"
    chmod 644 "$dir/$name.3"
done
