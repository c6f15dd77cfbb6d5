#!/usr/bin/env bash
# Counts the instructions the media core spends per forwarded packet: the criterion benchmark
# `sfu/benches/routing.rs` (one studio, 10 in-memory sites by default) run under valgrind's
# callgrind, counting only inside `diemcau_sfu::worker::Worker`'s calls, twice with different
# lengths; the difference of the two counts over the difference of the packets forwarded
# leaves out the joins and handshakes. A count, not a time: it does not move with the
# machine's load, so a change of a few per cent shows where timings cannot.
#
#   benches/routing-instructions.sh [CONSUMERS]      (default 10)
#
# Needs valgrind (Debian's `valgrind` package; installed when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
consumers=${1:-10}
if ! command -v valgrind > /dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq valgrind > /dev/null
    else
        echo "routing-instructions: valgrind is missing (apt-get install valgrind)" >&2
        exit 1
    fi
fi
bench=$(cargo bench -p diemcau-sfu --bench routing --no-run --message-format=json 2> /dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "routing" and m.get("executable"):
        print(m["executable"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A ir forwarded
for seconds in 3 12; do
    out=$(ROUTING_CONSUMERS=$consumers valgrind --tool=callgrind \
        --callgrind-out-file="$work/callgrind.$seconds" \
        --toggle-collect='diemcau_sfu::worker::Worker::*' \
        "$bench" --bench --profile-time "$seconds" 2>&1)
    ir[$seconds]=$(echo "$out" | grep 'Collected' | tail -1 | awk '{print $4}')
    forwarded[$seconds]=$(echo "$out" | grep ' forwarded, ' | sed -E 's/.* ([0-9]+) forwarded,.*/\1/')
done
python3 -c "
ir3, ir12, f3, f12 = ${ir[3]}, ${ir[12]}, ${forwarded[3]}, ${forwarded[12]}
print(f'{$consumers} consumers: {(ir12 - ir3) / (f12 - f3):.0f} instructions per forwarded packet '
      f'({f12 - f3} packets forwarded between the two runs)')"
