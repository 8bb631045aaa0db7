#!/usr/bin/env bash
# CPU time per message beside throughput, for weft, crossbeam-channel and Go
# at capacities 0 and 1: the anchors' own binaries, each case in a fresh
# process under /usr/bin/time, peers interleaved, medians of REPS.
#
#   scripts/anchors-cpu.sh     (after ../shared/anchors/run.sh with WEFT=$PWD has
#                               built the binaries into BUILD)
#
# Env: BUILD (default ${TMPDIR:-/tmp}/weft-anchors), MESSAGES (300000),
# THREADS (4), REPS (5), FLAVOURS, WORKLOADS.
# CPU s/M is user+system seconds of the whole process per million messages
# (start-up included, a few milliseconds).
set -euo pipefail
BUILD=${BUILD:-${TMPDIR:-/tmp}/weft-anchors}
export MESSAGES=${MESSAGES:-300000} THREADS=${THREADS:-4}
REPS=${REPS:-5}
read -r -a flavours <<<"${FLAVOURS:-bounded0 bounded1}"
read -r -a workloads <<<"${WORKLOADS:-spsc mpsc mpmc select_rx select_both}"
peers=("weft=$BUILD/weft" "crossbeam=$BUILD/anchors-rust crossbeam" "go=$BUILD/anchors-go")
for p in "${peers[@]}"; do
    binary=${p#*=}
    [ -x "${binary%% *}" ] || { echo "anchors-cpu: ${binary%% *} missing: run the anchors first" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "anchors-cpu: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
for ((rep = 0; rep < REPS; rep++)); do
    for f in "${flavours[@]}"; do
        for w in "${workloads[@]}"; do
            for ((k = 0; k < ${#peers[@]}; k++)); do
                p=${peers[$(((k + rep) % ${#peers[@]}))]}
                # shellcheck disable=SC2086 # the command carries its arguments
                out=$({ /usr/bin/time -f "TIME %U %S" ${p#*=} "$f" "$w"; } 2>&1)
                rate=$(awk '!/^TIME/ {print $5}' <<<"$out")
                cpu=$(awk '/^TIME/ {print $2 + $3}' <<<"$out")
                [ -z "$rate" ] || echo "${p%%=*} $f $w $rate $cpu" >>"$raw"
            done
        done
    done
done

awk -v messages="$MESSAGES" '
    function median(list,    n, values, i, j, t) {
        n = split(list, values, " ")
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && values[j - 1] + 0 > values[j] + 0; j--) {
                t = values[j]; values[j] = values[j - 1]; values[j - 1] = t
            }
        return n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
    }
    { key = $2 " " $3 " " $1; rates[key] = rates[key] " " $4; cpus[key] = cpus[key] " " $5 }
    END {
        printf "%-9s %-12s %-10s %8s %8s\n", "flavour", "workload", "peer", "M msg/s", "CPU s/M"
        for (key in rates) {
            split(key, part, " ")
            printf "%-9s %-12s %-10s %8.3f %8.3f\n", part[1], part[2], part[3],
                median(rates[key]) / 1e6, median(cpus[key]) / (messages / 1e6)
        }
    }' "$raw" | { read -r header; echo "$header"; sort; }
