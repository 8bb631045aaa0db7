#!/bin/sh
# names.sh PAGE...: print "NAME PAGE" for every name each man page's NAME
# section lists ("weft_chan_make, weft_chan_send \- channels" gives two).
#
# A page's NAME section is the one list of what it documents: man/install.sh
# makes a link page for each name, man/check.sh checks that every public
# function is among them.
for page in "$@"; do
    awk -v page="${page##*/}" '
        /^\.SH/ { in_name = ($2 == "NAME"); next }
        in_name { text = text " " $0 }
        END {
            sub(/\\-.*/, "", text)
            count = split(text, names, /[ ,]+/)
            for (i = 1; i <= count; i++)
                if (names[i] != "") print names[i], page
        }' "$page"
done
