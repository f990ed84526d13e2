#!/usr/bin/env bash
# Instructions per call of infuse's fast paths, counted by callgrind: deterministic, so
# meaningful on a busy machine where timings are not.
#
#   infuse-bench/callgrind.sh          # 100 000 calls per path
#   N=10000 infuse-bench/callgrind.sh
#
# Builds `callgrind-probe` (src/bin/callgrind-probe.rs) in release mode, then runs it
# under `valgrind --tool=callgrind --toggle-collect=<fn>` once per probe function, so that
# only the instructions executed inside that function (and what it calls) are counted;
# per call = that count / N. "− bare" subtracts the `probe_bare` loop (the unguarded call
# and the loop itself). Needs valgrind (Debian/Ubuntu: apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
if ! command -v valgrind >/dev/null; then
    echo "callgrind.sh: valgrind not found (apt-get install valgrind)" >&2
    exit 1
fi
cargo build --release --quiet -p infuse-bench --bin callgrind-probe
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
probe="$target_dir/release/callgrind-probe"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Each probe must be a symbol of its own (identical functions can be folded into one,
# and then its count would cover both loops).
addresses=$(nm "$probe" | awk '$3 ~ /^probe_/ { print $1 }')
if [ "$(printf '%s\n' "$addresses" | sort -u | wc -l)" -ne "$(printf '%s\n' "$addresses" | wc -l)" ]; then
    echo "callgrind.sh: two probe functions share an address:" >&2
    nm "$probe" | grep ' probe_' >&2
    exit 1
fi

# Instructions (Ir) counted inside function $1.
count() {
    valgrind --tool=callgrind --toggle-collect="$1" \
        --callgrind-out-file="$out/$1.out" "$probe" "$N" >"$out/$1.stdout" 2>"$out/$1.log" || {
        cat "$out/$1.log" >&2
        exit 1
    }
    awk '/^(summary|totals):/ { print $2; exit }' "$out/$1.out"
}

bare=$(count probe_bare)
printf '%s\n' "callgrind instruction counts, $N calls per path ($(valgrind --version))"
printf '%-26s %14s %12s %12s\n' "path" "instructions" "per call" "− bare"
for fn in probe_bare probe_closed_call probe_closed_attribute probe_closed_call_owned probe_open_rejection \
    probe_forced_rejection probe_closed_rate probe_closed_timeout probe_closed_slow_rate probe_closed_metrics \
    probe_closed_capped; do
    if [ "$fn" = probe_bare ]; then ir=$bare; else ir=$(count "$fn"); fi
    awk -v fn="$fn" -v ir="$ir" -v bare="$bare" -v n="$N" 'BEGIN {
        printf "%-26s %14d %12.2f %12.2f\n", fn, ir, ir / n, (ir - bare) / n
    }'
done
