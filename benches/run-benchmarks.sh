#!/usr/bin/env bash
# Runs the fan-out benchmark suite of BENCHMARKS.md and writes one JSON report per run.
#
#   benches/run-benchmarks.sh [OUT_DIR]     (default: $TMPDIR/diemcau-benchmarks)
#
# Environment:
#   BIN_DIR      where diemcau and diemcau-loadgen are (default: target/release, built first)
#   HUB_CPUS     CPUs the hub is pinned to (default 0)
#   GEN_CPUS     CPUs the generator is pinned to (default 1)
#   HUB_WORKERS  the hub's media workers (default: number of HUB_CPUS)
#   THREADS      generator engine threads (default 1)
#   SUITE        which runs: "small" (50 and 200 sites, for a 2-core machine), "large"
#                (1,000-site fan-out and 500-site join storm; needs more cores than the hub's),
#                "links" (50 and 100 sites, simulcast studio: all on good links, then 70 % good,
#                20 % at 1 Mbit/s, 10 % at 300 kbit/s with 2 % loss, back to back)
#                "recording" (50 sites with the meeting recorded and not, twice),
#                "tree" (a national tree on one machine: 60 communes on one hub and through
#                one province, 120 through 2 and 4, and the chair's wall of 60 through 2),
#                "capacity" (the 3-layer studio to 1,000 and 600 sites, and the 300-site
#                wall, on a 2-core machine: hub on one core with one worker, generator on
#                the other, its sites counting from the RTP headers)
#                "overload" (300, 450, 600 sites of a 3-layer studio on one hub core: the
#                hub sheds video to keep the sound), "janus" (the same one-layer studio to 50
#                and 200 sites through Janus's VideoRoom, then through the hub, and the two
#                side by side; installs Debian's janus when missing), or "smoke" (3 sites,
#                1 s: checks the setup)
#   JANUS_IP     the address Janus and its sites use (default: this machine's own address
#                on its default route; Janus gathers no candidates on the loopback interface,
#                and packets to one's own address stay on the machine)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-${TMPDIR:-/tmp}/diemcau-benchmarks}
mkdir -p "$out"
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release -p diemcau -p diemcau-loadgen
  BIN_DIR=target/release
fi
HUB_CPUS=${HUB_CPUS:-0}
GEN_CPUS=${GEN_CPUS:-1}
HUB_WORKERS=${HUB_WORKERS:-$(echo "$HUB_CPUS" | tr ',' '\n' | wc -l)}
THREADS=${THREADS:-1}
SUITE=${SUITE:-small}

# A thousand peers hold a thousand UDP sockets and WebSockets on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

pin_hub=(--hub-cpus "$HUB_CPUS")
pin_gen=(taskset -c "$GEN_CPUS")
if ! command -v taskset >/dev/null; then
  echo "run-benchmarks: no taskset here, running unpinned" >&2
  pin_hub=()
  pin_gen=()
fi

run() {
  local name=$1
  shift
  echo "=== $name: $*"
  "${pin_gen[@]}" "$BIN_DIR/diemcau-loadgen" "$@" \
    --spawn-hub "$BIN_DIR/diemcau" "${pin_hub[@]}" --hub-workers "$HUB_WORKERS" \
    --threads "$THREADS" --json "$out/$name.json" || echo "=== $name failed: $?"
}

case "$SUITE" in
  smoke)
    run smoke fanout --sites 3 --duration 1 --warmup 0.5 --floor-seconds 0.05
    ;;
  small)
    run fanout-50 fanout --sites 50 --duration 10
    run fanout-200 fanout --sites 200 --duration 10
    run join-storm-200 join-storm --sites 200 --duration 5 --floor-seconds 0
    run wall-50 wall --sites 50 --duration 10 --floor-seconds 0
    ;;
  large)
    run fanout-1000 fanout --sites 1000 --duration 10 --join-rate 200
    run join-storm-500 join-storm --sites 500 --duration 5 --floor-seconds 0
    run fanout-500 fanout --sites 500 --duration 10 --join-rate 200 --floor-seconds 0.5
    run fanout-200 fanout --sites 200 --duration 10 --floor-seconds 0.5
    ;;
  links)
    # The same build, the same sites, back to back: what weak links cost the hub. The long
    # warm-up lets the hub climb the layers (one step per 3 s) and settle.
    mix=(--link good=70% --link 1mbit=20%,rate=1mbit,delay=30ms
      --link weak=10%,rate=300kbit,delay=80ms,jitter=10ms,loss=2%)
    for sites in 50 100; do
      run "links-good-$sites" fanout --sites "$sites" --duration 10 --warmup 12 --simulcast \
        --link good=100% --floor-seconds 0
      run "links-mix-$sites" fanout --sites "$sites" --duration 10 --warmup 12 --simulcast \
        "${mix[@]}" --floor-seconds 0
    done
    ;;
  recording)
    # The same fan-out with the hub recording the meeting (its default) and not, back to back.
    for mode in off auto off auto; do
      run "recording-$mode-50" fanout --sites 50 --duration 10 --hub-arg --recording \
        --hub-arg "$mode" --hub-arg --recording-min-free-mb --hub-arg 0
    done
    ;;
  tree)
    # BENCHMARKS.md "A national tree" and "Up each link": every hub on HUB_CPUS.
    run tree-flat-60 fanout --sites 60 --duration 10 --floor-seconds 0
    run tree-1x60 fanout --sites 60 --provinces 1 --duration 10 --floor-seconds 0
    run tree-2x120 fanout --sites 120 --provinces 2 --duration 10 --floor-seconds 0
    run tree-4x120 fanout --sites 120 --provinces 4 --duration 10 --floor-seconds 0
    run tree-wall-flat-60 wall --sites 60 --site-audio --duration 10 --floor-seconds 0
    run tree-wall-2x60 wall --sites 60 --provinces 2 --site-audio --duration 10 --floor-seconds 0
    ;;
  capacity)
    # What one hub core carries: the 3-layer studio to 1,000 sites (joins at 200 a second)
    # and to 600, and the 300-site wall, each report saying how many sites had media, at
    # which loss and on which layers. The sites count from the RTP headers (--receive
    # headers), so that the generator's one core plays 1,000 of them.
    run capacity-fanout-1000 fanout --sites 1000 --simulcast --receive headers --duration 15 \
      --warmup 15 --join-rate 200 --floor-seconds 0.5
    run capacity-fanout-600 fanout --sites 600 --simulcast --receive headers --duration 15 \
      --warmup 15 --join-rate 200 --floor-seconds 0
    run capacity-wall-300 wall --sites 300 --site-audio --receive headers --duration 15 \
      --warmup 15 --floor-seconds 0
    ;;
  overload)
    # BENCHMARKS.md "Over capacity": the 3-layer studio to more sites than one hub core
    # carries; the hub sheds video (docs/operations.md) and every site keeps its sound.
    for sites in 300 450 600; do
      run "overload-$sites" fanout --sites "$sites" --simulcast --duration 15 --warmup 15 \
        --join-rate 200
    done
    ;;
  janus)
    # BENCHMARKS.md "Side by side with Janus": one publisher and N subscribers on Janus 1.1
    # (VideoRoom over its WebSocket API, benches/janus), then the same load on the hub.
    if ! command -v janus >/dev/null; then
      if [ "$(id -u)" = 0 ]; then s=(); else s=(sudo); fi
      "${s[@]}" apt-get update -qq
      "${s[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq janus >/dev/null
    fi
    lib=$(dirname "$(dirname "$(dpkg -L janus | grep '/plugins/libjanus_videoroom.so$' | head -1)")")
    JANUS_IP=${JANUS_IP:-$(ip -4 route get 1.1.1.1 | awk '{for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1)}')}
    port=${JANUS_PORT:-18188}
    for sites in 50 200; do
      cfg=$(mktemp -d)
      cp benches/janus/*.jcfg "$cfg/"
      sed -i "s#@DIR@#$cfg#; s#@LIB@#$lib#g; s#@PORT@#$port#; s#@ADDRESS@#$JANUS_IP#" "$cfg"/*.jcfg
      taskset -c "$HUB_CPUS" janus --configs-folder="$cfg" --config="$cfg/janus.jcfg" \
        >"$out/janus-$sites.log" 2>&1 &
      janus_pid=$!
      for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.2
      done
      echo "=== janus-$sites"
      "${pin_gen[@]}" "$BIN_DIR/diemcau-loadgen" fanout --sites "$sites" --duration 15 --warmup 10 \
        --receive headers --floor-seconds 0 --local-ip "$JANUS_IP" \
        --janus "ws://127.0.0.1:$port" --hub-pid "$janus_pid" --threads "$THREADS" \
        --json "$out/janus-$sites.json" || echo "=== janus-$sites failed: $?"
      kill "$janus_pid"
      wait "$janus_pid" 2>/dev/null || true
      rm -rf "$cfg"
      run "diemcau-$sites" fanout --sites "$sites" --duration 15 --warmup 10 --receive headers \
        --floor-seconds 1
    done
    if command -v python3 >/dev/null; then
      python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print(f"{'server':<8} {'sites':>5} {'with media':>10} {'µs/packet':>10} {'KiB/site':>9} {'loss %':>7} {'p50 ms':>7} {'p99 ms':>7}")
for sites in (50, 200):
    for server in ("janus", "diemcau"):
        try:
            r = json.load(open(f"{out}/{server}-{sites}.json"))
        except OSError:
            continue
        c, d = r["hub_cost"], r["downstream"]
        us = c.get("cpu_us_per_forwarded_packet") or 0
        kib = (c.get("rss_per_site_bytes") or 0) / 1024
        print(f"{server:<8} {sites:>5} {r['joins']['succeeded']:>10} {us:>10.2f} {kib:>9.0f} "
              f"{d['loss_percent']:>7.3f} {d['delay']['p50_ms']:>7.2f} {d['delay']['p99_ms']:>7.2f}")
PY
    fi
    ;;
  *)
    echo "run-benchmarks: SUITE is smoke, small, large, links, recording, tree, capacity, overload or janus" >&2
    exit 2
    ;;
esac
